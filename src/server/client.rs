//! One client-protocol connection (auth-client, login sockets).
//!
//! The reader task parses lines and routes them; every AUTH runs as a task of its own that owns
//! its mechanism and talks back through the connection's single writer. A request stays in the
//! connection's table until its final reply is written, so a CANCEL, a CONT at the wrong time or
//! the end of the connection can stop it, and a stopped request never writes again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::{penalty, FinishedLogin, LoginConnection, Shared};
use crate::auth::{AuthOutcome, CredentialsOutcome, Failure, RequestInfo};
use crate::protocol::base64;
use crate::protocol::client::{self as wire, ClientCommand, InitialResponse, Reply};
use crate::protocol::line::{next_line, Frame};
use crate::protocol::{sanitize, FailCode, ProtocolError, RequestId, CLIENT_MAX_LINE};
use crate::sasl::{MechInfo, Step};

/// Replies queued for the writer before request tasks wait for room.
const WRITE_QUEUE: usize = 256;

struct Slot {
    cont: mpsc::Sender<Vec<u8>>,
    awaiting_cont: Arc<AtomicBool>,
    task: Option<AbortHandle>,
}

impl Slot {
    /// Stops the request's task; it will never write a reply.
    fn stop(self) {
        if let Some(task) = self.task {
            task.abort();
        }
    }
}

/// The connection's live requests. A std Mutex: every critical section is a map operation.
#[derive(Default)]
struct Requests(Mutex<HashMap<u32, Slot>>);

impl Requests {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Slot>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Removes the request; true when it was still live (so its reply may be written).
    fn finish(&self, id: u32) -> bool {
        self.lock().remove(&id).is_some()
    }
}

/// Serves one client-protocol connection until the peer leaves or breaks the protocol.
pub async fn serve<S>(stream: S, shared: Arc<Shared>, login: bool)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    serve_with(stream, shared, login, None).await;
}

/// [`serve`] for a listener with its own `disable_plaintext_auth` (which wins over the
/// service's and the global setting).
pub async fn serve_with<S>(stream: S, shared: Arc<Shared>, login: bool, disable_plaintext_auth: Option<bool>)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
    let cuid = shared.next_cuid();
    let cookie: [u8; 16] = rand::random();
    let mechs: Vec<(&str, Vec<&str>)> = shared.mechanisms.iter().map(|m| (m.name, m.flags.to_vec())).collect();
    let handshake = wire::handshake(&mechs, shared.spid, cuid, &cookie);
    let writer_task = tokio::spawn(async move {
        if writer.write_all(&handshake).await.is_err() {
            return;
        }
        while let Some(line) = rx.recv().await {
            if writer.write_all(&line).await.is_err() {
                return;
            }
            // Write everything already queued before flushing.
            while let Ok(more) = rx.try_recv() {
                if writer.write_all(&more).await.is_err() {
                    return;
                }
            }
            if writer.flush().await.is_err() {
                return;
            }
        }
        let _ = writer.shutdown().await;
    });

    let requests = Arc::new(Requests::default());
    let mut conn = Connection { shared: Arc::clone(&shared), tx, requests: Arc::clone(&requests), login, disable_plaintext_auth, cookie, minor: 0, cpid: None, login_entry: None };
    if let Err(e) = conn.read_loop(&mut reader).await {
        tracing::warn!(cuid, "closing client connection: {e}");
    }
    // The peer is gone or broke the protocol: stop its requests; their replies are discarded.
    for (_, slot) in requests.lock().drain() {
        slot.stop();
    }
    if let (Some(cpid), Some(entry)) = (conn.cpid, &conn.login_entry) {
        let mut logins = shared.logins();
        if logins.get(&cpid).is_some_and(|e| Arc::ptr_eq(e, entry)) {
            logins.remove(&cpid);
        }
    }
    drop(conn);
    let _ = writer_task.await;
}

struct Connection {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Vec<u8>>,
    requests: Arc<Requests>,
    login: bool,
    disable_plaintext_auth: Option<bool>,
    cookie: [u8; 16],
    minor: u32,
    cpid: Option<u32>,
    login_entry: Option<Arc<LoginConnection>>,
}

enum Phase {
    ExpectVersion,
    ExpectCpid,
    Commands,
}

impl Connection {
    async fn read_loop<R: AsyncRead + Unpin>(&mut self, reader: &mut R) -> Result<(), ProtocolError> {
        let mut buf: Vec<u8> = Vec::new();
        let mut phase = Phase::ExpectVersion;
        loop {
            loop {
                let (len, consumed) = match next_line(&buf, CLIENT_MAX_LINE)? {
                    Frame::Incomplete => break,
                    Frame::Line { len, consumed } => (len, consumed),
                };
                let line = &buf[..len];
                phase = match phase {
                    Phase::ExpectVersion => {
                        self.minor = wire::parse_version(line)?.1;
                        Phase::ExpectCpid
                    }
                    Phase::ExpectCpid => {
                        let cpid = wire::parse_cpid(line)?;
                        self.register_cpid(cpid)?;
                        Phase::Commands
                    }
                    Phase::Commands => {
                        let cmd = ClientCommand::parse(line)?;
                        self.command(cmd).await?;
                        Phase::Commands
                    }
                };
                buf.drain(..consumed);
            }
            if super::read_more(reader, &mut buf, CLIENT_MAX_LINE).await == 0 {
                return Ok(());
            }
        }
    }

    fn register_cpid(&mut self, cpid: u32) -> Result<(), ProtocolError> {
        if !self.login {
            return Ok(()); // auth-only sockets forget the CPID, as Dovecot does
        }
        let entry = Arc::new(LoginConnection { cookie: self.cookie, finished: Mutex::new(HashMap::new()) });
        let mut logins = self.shared.logins();
        if logins.contains_key(&cpid) {
            return Err(ProtocolError::Handshake(format!("CPID {cpid} belongs to a live connection")));
        }
        logins.insert(cpid, Arc::clone(&entry));
        self.cpid = Some(cpid);
        self.login_entry = Some(entry);
        Ok(())
    }

    async fn send(&self, line: Vec<u8>) {
        let _ = self.tx.send(line).await;
    }

    async fn command(&mut self, cmd: ClientCommand) -> Result<(), ProtocolError> {
        match cmd {
            ClientCommand::Auth(auth) => {
                let id = auth.id.0;
                let mech = self
                    .shared
                    .mechanisms
                    .iter()
                    .copied()
                    .find(|m| m.name.eq_ignore_ascii_case(&auth.mechanism))
                    .ok_or_else(|| ProtocolError::broken("AUTH", format!("unsupported mechanism {}", sanitize(auth.mechanism.as_bytes(), 32))))?;
                let initial = match auth.resp {
                    InitialResponse::Absent => None,
                    InitialResponse::EmptyValue if self.minor < crate::protocol::MINOR_EMPTY_RESP_IS_EMPTY => None,
                    InitialResponse::EmptyValue => Some(Vec::new()),
                    InitialResponse::Base64(text) => Some(text),
                };
                let (cont_tx, cont_rx) = mpsc::channel(1);
                let awaiting = Arc::new(AtomicBool::new(false));
                let admitted = {
                    let mut requests = self.requests.lock();
                    if requests.contains_key(&id) {
                        return Err(ProtocolError::broken("AUTH", format!("duplicate id {id}")));
                    }
                    let room = requests.len() < self.shared.max_requests_per_connection;
                    if room {
                        requests.insert(id, Slot { cont: cont_tx, awaiting_cont: Arc::clone(&awaiting), task: None });
                    }
                    room
                };
                if !admitted {
                    tracing::warn!(id, "too many requests in flight on one connection");
                    let line = Reply::new("FAIL", id).code(FailCode::TempFail).field("reason", b"Too many requests in flight").finish();
                    self.send(line).await;
                    return Ok(());
                }
                let request = Request {
                    id: auth.id,
                    mech,
                    info: RequestInfo { disable_plaintext_auth: self.disable_plaintext_auth, ..RequestInfo::from_auth(&auth.params, mech.name, self.cpid) },
                    no_penalty: auth.params.no_penalty,
                    final_resp_ok: auth.params.final_resp_ok,
                    shared: Arc::clone(&self.shared),
                    tx: self.tx.clone(),
                    requests: Arc::clone(&self.requests),
                    awaiting,
                    login: self.login_entry.clone(),
                };
                let timeout = self.shared.request_timeout;
                let requests = Arc::clone(&self.requests);
                let task = tokio::spawn(async move {
                    if tokio::time::timeout(timeout, request.run(initial, cont_rx)).await.is_err() {
                        // Dovecot drops a timed-out request without a reply.
                        requests.finish(id);
                        tracing::info!(id, "request timed out");
                    }
                });
                if let Some(slot) = self.requests.lock().get_mut(&id) {
                    slot.task = Some(task.abort_handle());
                }
                Ok(())
            }
            ClientCommand::Cont { id, data } => {
                let reply = {
                    let mut requests = self.requests.lock();
                    match requests.get(&id.0) {
                        None => Some(b"Authentication request timed out".as_slice()),
                        Some(slot) if slot.awaiting_cont.swap(false, Ordering::AcqRel) => {
                            // Room for exactly one response: we only accept one per challenge.
                            let _ = slot.cont.try_send(data);
                            None
                        }
                        Some(_) => {
                            if let Some(slot) = requests.remove(&id.0) {
                                slot.stop();
                            }
                            Some(b"Unexpected continuation".as_slice())
                        }
                    }
                };
                if let Some(reason) = reply {
                    self.send(Reply::new("FAIL", id).field("reason", reason).finish()).await;
                }
                Ok(())
            }
            ClientCommand::Cancel { id } => {
                if let Some(slot) = self.requests.lock().remove(&id) {
                    slot.stop();
                }
                if let Some(entry) = &self.login_entry {
                    entry.finished.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
                }
                Ok(())
            }
        }
    }
}

/// One AUTH, from its first line to its final reply.
struct Request {
    id: RequestId,
    mech: &'static MechInfo,
    info: RequestInfo,
    no_penalty: bool,
    final_resp_ok: bool,
    shared: Arc<Shared>,
    tx: mpsc::Sender<Vec<u8>>,
    requests: Arc<Requests>,
    awaiting: Arc<AtomicBool>,
    login: Option<Arc<LoginConnection>>,
}

enum End {
    /// The request is decided; a success may carry final SASL data for a `resp=` field.
    Done(AuthOutcome, Option<Vec<u8>>),
    /// A protocol-level FAIL sent at once, without delay (bad base64, certificate policy).
    Immediate(Option<FailCode>, &'static str),
}

impl Request {
    async fn run(self, initial: Option<Vec<u8>>, mut cont_rx: mpsc::Receiver<Vec<u8>>) {
        if !self.no_penalty {
            let wait = self.shared.ip_penalty.delay(&penalty::ip_key(self.info.rip), Instant::now());
            if !wait.is_zero() {
                tracing::debug!(id = self.id.0, rip = %self.rip_text(), ?wait, "penalty delay");
                tokio::time::sleep(wait).await;
            }
        }
        let mut last_input = Instant::now();
        let end = self.exchange(initial, &mut cont_rx, &mut last_input).await;
        match end {
            End::Immediate(code, reason) => {
                self.log_failure(None, reason);
                let mut reply = Reply::new("FAIL", self.id);
                if let Some(code) = code {
                    reply = reply.code(code);
                }
                let line = reply.field("reason", reason.as_bytes()).finish();
                self.reply(line).await;
            }
            End::Done(AuthOutcome::Success { user, original_user, fields }, final_resp) => {
                // `no-penalty` requests neither wait for nor change the address's penalty.
                if !self.no_penalty {
                    self.shared.ip_penalty.succeeded(&penalty::ip_key(self.info.rip));
                }
                if let Some(p) = &self.shared.account_penalty {
                    p.succeeded(&user);
                }
                tracing::info!(
                    target: "saslgate::auth::ok",
                    rip = %self.rip_text(),
                    user = ?sanitize(user.as_bytes(), 128),
                    mech = %self.mech.name,
                    service = ?sanitize(self.info.service.as_bytes(), 32),
                    id = self.id.0,
                    "auth succeeded"
                );
                let mut reply = Reply::new("OK", self.id).field("user", user.as_bytes());
                for (k, v) in fields.iter().filter(|(k, _)| !k.starts_with("userdb_")) {
                    reply = reply.field(k, v.as_bytes());
                }
                if let Some(orig) = &original_user {
                    if !fields.contains("original_user") {
                        reply = reply.field("original_user", orig.as_bytes());
                    }
                }
                if let Some(data) = &final_resp {
                    reply = reply.field("resp", base64::encode(data).as_bytes());
                }
                let keep_for_request = !(fields.contains("nologin") || fields.contains("proxy"));
                if let (Some(login), true) = (&self.login, keep_for_request) {
                    let mut finished = login.finished.lock().unwrap_or_else(|e| e.into_inner());
                    let cap = self.shared.max_requests_per_connection;
                    finished.retain(|_, f| f.at.elapsed() < self.shared.request_timeout);
                    if finished.len() < cap {
                        finished.insert(self.id.0, FinishedLogin { user: user.clone(), prefetch: crate::auth::prefetch_fields(&fields), mech: self.mech.name, at: Instant::now() });
                    }
                }
                self.reply(reply.finish()).await;
            }
            End::Done(AuthOutcome::Failure(failure), _) => self.fail(failure, last_input).await,
        }
    }

    /// Waits for the client's next response, decoded. `Err` ends the request.
    async fn response(&self, challenge: &[u8], cont_rx: &mut mpsc::Receiver<Vec<u8>>, last_input: &mut Instant) -> Result<Vec<u8>, End> {
        self.awaiting.store(true, Ordering::Release);
        let line = Reply::new("CONT", self.id).raw(base64::encode(challenge).as_bytes()).finish();
        if self.tx.send(line).await.is_err() {
            return Err(self.fail_mech("connection closed"));
        }
        let Some(text) = cont_rx.recv().await else {
            return Err(self.fail_mech("connection closed"));
        };
        *last_input = Instant::now();
        let data = base64::decode(&text).map_err(|_| End::Immediate(Some(FailCode::InvalidBase64), "Invalid base64 data in continued response"))?;
        if !self.mech.allows_nul && data.contains(&0) {
            return Err(self.fail_mech("unexpected NUL in a response"));
        }
        Ok(data)
    }

    async fn exchange(&self, initial: Option<Vec<u8>>, cont_rx: &mut mpsc::Receiver<Vec<u8>>, last_input: &mut Instant) -> End {
        if let Some(reason) = self.shared.auth.precheck(&self.info, self.mech.flags.contains(&"plaintext")) {
            return End::Immediate(None, reason);
        }
        let mut mech = self.mech.start(&self.shared.mech_context);
        let initial = match initial {
            None => None,
            Some(text) => match base64::decode(&text) {
                Ok(data) => Some(data),
                Err(_) => return End::Immediate(Some(FailCode::InvalidBase64), "Invalid base64 data in initial response"),
            },
        };
        if let Some(data) = &initial {
            if !self.mech.allows_nul && data.contains(&0) {
                return self.fail_mech("unexpected NUL in the initial response");
            }
        }
        let auth = &self.shared.auth;
        // Set once a passdb handed over a credential: who the user is, should the proof hold.
        let mut found: Option<(String, Option<String>, crate::auth::Fields)> = None;
        let mut step = mech.start(initial.as_deref());
        loop {
            step = match step {
                Step::Challenge(challenge) => match self.response(&challenge, cont_rx, last_input).await {
                    Ok(data) => mech.step(&data),
                    Err(end) => return end,
                },
                Step::VerifyPlain(creds) => {
                    self.account_wait(&creds.authcid).await;
                    let mut outcome = auth.verify_plain(&self.info, &creds).await;
                    // A proxy answer on a login socket carries the client's password, so the
                    // login process can log in to the backend (unless the passdb gave `pass`).
                    // Never on auth-only sockets: Postfix has no use for it.
                    if let AuthOutcome::Success { fields, .. } = &mut outcome {
                        let proxied = fields.contains("proxy") || fields.contains("proxy_maybe");
                        if self.login.is_some() && proxied && !fields.contains("pass") {
                            if let Ok(password) = std::str::from_utf8(creds.password.expose()) {
                                fields.set("pass", password);
                            }
                        }
                    }
                    return End::Done(outcome, None);
                }
                Step::Anonymous { trace } => {
                    tracing::debug!(id = self.id.0, trace = %trace, "anonymous login");
                    return End::Done(auth.anonymous(), None);
                }
                Step::Helper(_) | Step::Authenticated { .. } => return self.fail_mech("no helper serves this mechanism"),
                Step::External { authzid } => return End::Done(auth.external(&self.info, authzid.as_deref()).await, None),
                Step::LookupCredentials(req) => {
                    self.account_wait(&req.authcid).await;
                    let outcome = auth.lookup_credentials(&self.info, &req).await;
                    match outcome {
                    CredentialsOutcome::Found { user, original_user, fields, credential } => {
                        found = Some((user, original_user, fields));
                        mech.credentials(credential.expose())
                    }
                        CredentialsOutcome::Failed(failure) => return End::Done(AuthOutcome::Failure(failure), None),
                    }
                }
                Step::Success { final_data } => {
                    let Some((user, original_user, fields)) = found.take() else {
                        // A mechanism may only succeed on a credential it was given.
                        return self.fail_mech("mechanism succeeded without credentials");
                    };
                    let outcome = AuthOutcome::Success { user, original_user, fields };
                    return match final_data {
                        None => End::Done(outcome, None),
                        Some(data) if self.final_resp_ok => End::Done(outcome, Some(data)),
                        // Without final-resp-ok the final data goes in a CONT; any answer then
                        // gets the OK.
                        Some(data) => match self.response(&data, cont_rx, last_input).await {
                            Ok(_) => End::Done(outcome, None),
                            Err(end) => end,
                        },
                    };
                }
                Step::Fail(why) => {
                    let failure = match found.take() {
                        Some((user, original_user, _)) => Failure { original_user, ..Failure::plain(Some(user), why.to_string()) },
                        None => Failure::plain(None, why.to_string()),
                    };
                    return End::Done(AuthOutcome::Failure(failure), None);
                }
            };
        }
    }

    fn fail_mech(&self, why: &str) -> End {
        End::Done(AuthOutcome::Failure(Failure::plain(None, why)), None)
    }

    /// Logs the failure now (for fail2ban), then sends the FAIL after the failure delay.
    async fn fail(&self, failure: Failure, last_input: Instant) {
        self.log_failure(failure.user.as_deref(), &failure.log_reason);
        // A temporary failure is the server's fault, not the client's: no penalty for it.
        if failure.code != Some(FailCode::TempFail) {
            if !self.no_penalty {
                self.shared.ip_penalty.failed(&penalty::ip_key(self.info.rip), Instant::now());
            }
            if let (Some(p), Some(user)) = (&self.shared.account_penalty, &failure.user) {
                p.failed(user, Instant::now());
            }
        }
        let mut reply = Reply::new("FAIL", self.id);
        if let Some(user) = &failure.user {
            reply = reply.field("user", user.as_bytes());
        }
        if let Some(orig) = &failure.original_user {
            reply = reply.field("original_user", orig.as_bytes());
        }
        if let Some(code) = failure.code {
            reply = reply.code(code);
        }
        if failure.nodelay {
            reply = reply.field("nodelay", b"");
        } else {
            // Jitter of up to a quarter second hides which of several failures took longer.
            let jitter = std::time::Duration::from_millis(rand::random::<u64>() % 250);
            let delay = self.shared.failure_delay;
            if !delay.is_zero() {
                tokio::time::sleep_until((last_input + delay + jitter).into()).await;
            }
        }
        self.reply(reply.finish()).await;
    }

    /// With `account_penalty`, an account with recent failures waits before its password is
    /// checked, whatever address the attempt comes from.
    async fn account_wait(&self, given: &str) {
        let Some(p) = &self.shared.account_penalty else { return };
        let Some(user) = self.shared.auth.translate_user(given, &self.info) else { return };
        let wait = p.delay(&user, Instant::now());
        if !wait.is_zero() {
            tracing::debug!(id = self.id.0, ?wait, "account penalty delay");
            tokio::time::sleep(wait).await;
        }
    }

    fn rip_text(&self) -> String {
        self.info.rip.map_or_else(|| "-".to_owned(), |ip| ip.to_string())
    }

    /// The failure log line, written at the moment of failure (before the failure delay), so
    /// fail2ban sees it at once. The remote IP comes first, right after the message, and every
    /// text a client chose is quoted and escaped, so no user name can forge another IP.
    fn log_failure(&self, user: Option<&str>, reason: &str) {
        tracing::info!(
            target: "saslgate::auth::fail",
            rip = %self.rip_text(),
            user = ?user.map(|u| sanitize(u.as_bytes(), 128)).unwrap_or_default(),
            mech = %self.mech.name,
            service = ?sanitize(self.info.service.as_bytes(), 32),
            id = self.id.0,
            reason = ?reason,
            "auth failed"
        );
    }

    /// Writes the final reply, unless the request was cancelled meanwhile.
    async fn reply(&self, line: Vec<u8>) {
        if self.requests.finish(self.id.0) {
            let _ = self.tx.send(line).await;
        }
    }
}
