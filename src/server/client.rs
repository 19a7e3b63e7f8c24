//! One client-protocol connection (auth-client, login sockets).
//!
//! The reader task parses lines and routes them; every AUTH runs as a task of its own that owns
//! its mechanism and talks back through the connection's single writer. A request stays in the
//! connection's table until its final reply is written, so a CANCEL, a CONT at the wrong time or
//! the end of the connection can stop it, and a stopped request never writes again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::Shared;
use crate::auth::{Answer, AuthRequest, Conversation, LoginConnection, Verdict};
use crate::protocol::base64;
use crate::protocol::client::{self as wire, ClientCommand, InitialResponse, Reply};
use crate::protocol::line::{next_line, Frame};
use crate::protocol::{sanitize, FailCode, ProtocolError, CLIENT_MAX_LINE};
use crate::request::RequestInfo;

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
    let mechs: Vec<(&str, Vec<&str>)> = shared.auth.mechanisms().iter().map(|m| (m.name(), m.flags().to_vec())).collect();
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
    let mut conn = Connection {
        shared: Arc::clone(&shared),
        tx,
        requests: Arc::clone(&requests),
        login,
        disable_plaintext_auth,
        cookie,
        minor: 0,
        cpid: None,
        login_entry: None,
    };
    if let Err(e) = conn.read_loop(&mut reader).await {
        tracing::warn!(cuid, "closing client connection: {e}");
    }
    // The peer is gone or broke the protocol: stop its requests; their replies are discarded.
    for (_, slot) in requests.lock().drain() {
        slot.stop();
    }
    if let (Some(cpid), Some(entry)) = (conn.cpid, &conn.login_entry) {
        shared.auth.unregister_login(cpid, entry);
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
        let deadline = tokio::time::Instant::now() + self.shared.handshake_timeout;
        let mut drain = self.shared.drain_signal();
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
            let handshaken = matches!(phase, Phase::Commands);
            let draining = *drain.borrow_and_update();
            if draining && self.requests.lock().is_empty() {
                return Ok(()); // stopping, and nothing in flight here
            }
            tokio::select! {
                n = super::read_more(reader, &mut buf, CLIENT_MAX_LINE) => if n == 0 {
                    return Ok(());
                },
                () = tokio::time::sleep_until(deadline), if !handshaken => {
                    return Err(ProtocolError::Handshake(format!("no VERSION and CPID within {:?} (limits.handshake_timeout)", self.shared.handshake_timeout)));
                }
                _ = drain.changed(), if !draining => {}
                // Stopping: look again soon whether the last request has finished.
                () = tokio::time::sleep(std::time::Duration::from_millis(20)), if draining => {}
            }
        }
    }

    fn register_cpid(&mut self, cpid: u32) -> Result<(), ProtocolError> {
        if !self.login {
            return Ok(()); // auth-only sockets forget the CPID, as Dovecot does
        }
        let entry = self.shared.auth.register_login(cpid, self.cookie).map_err(|e| ProtocolError::Handshake(e.to_string()))?;
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
                    .auth
                    .mechanism(&auth.mechanism)
                    .ok_or_else(|| ProtocolError::broken("AUTH", format!("unsupported mechanism {}", sanitize(auth.mechanism.as_bytes(), 32))))?;
                let initial = match auth.resp {
                    InitialResponse::Absent => None,
                    InitialResponse::EmptyValue if self.minor < crate::protocol::MINOR_EMPTY_RESP_IS_EMPTY => None,
                    InitialResponse::EmptyValue => Some(Vec::new()),
                    InitialResponse::Base64(text) => Some(text),
                };
                // The daemon-wide bounds on requests in flight (count and bytes held).
                let permit = match self.shared.auth.admit(initial.as_ref().map_or(0, Vec::len)) {
                    Ok(permit) => permit,
                    Err(answer) => {
                        self.send(answer_line(id, &answer)).await;
                        return Ok(());
                    }
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
                if self.shared.draining() {
                    self.requests.lock().remove(&id);
                    let line = Reply::new("FAIL", id).code(FailCode::TempFail).field("reason", b"Server is shutting down").finish();
                    self.send(line).await;
                    return Ok(());
                }
                if !admitted {
                    tracing::warn!(id, "too many requests in flight on one connection");
                    let line = Reply::new("FAIL", id).code(FailCode::TempFail).field("reason", b"Too many requests in flight").finish();
                    self.send(line).await;
                    return Ok(());
                }
                let request = AuthRequest {
                    id,
                    mech,
                    info: RequestInfo { disable_plaintext_auth: self.disable_plaintext_auth, ..RequestInfo::from_auth(&auth.params, mech.name(), self.cpid) },
                    no_penalty: auth.params.no_penalty,
                    final_resp_ok: auth.params.final_resp_ok,
                    initial,
                    login: self.login_entry.clone(),
                    permit,
                };
                let mut conv = Cont { id, tx: self.tx.clone(), awaiting, cont_rx };
                let (shared, requests, tx) = (Arc::clone(&self.shared), Arc::clone(&self.requests), self.tx.clone());
                let task = tokio::spawn(async move {
                    let answer = shared.auth.authenticate(request, &mut conv).await;
                    // Written only while the request is live: a CANCEL or the end of the
                    // connection removed it, and a timed-out request gets no reply.
                    if requests.finish(id) {
                        if let Some(answer) = answer {
                            let _ = tx.send(answer_line(id, &answer)).await;
                        }
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
                    entry.forget(id);
                }
                Ok(())
            }
        }
    }
}

/// The server's side of one request's CONT exchange.
struct Cont {
    id: u32,
    tx: mpsc::Sender<Vec<u8>>,
    awaiting: Arc<AtomicBool>,
    cont_rx: mpsc::Receiver<Vec<u8>>,
}

#[async_trait]
impl Conversation for Cont {
    async fn challenge(&mut self, data: &[u8]) -> Option<Vec<u8>> {
        self.awaiting.store(true, Ordering::Release);
        let line = Reply::new("CONT", self.id).raw(base64::encode(data).as_bytes()).finish();
        self.tx.send(line).await.ok()?;
        self.cont_rx.recv().await
    }
}

/// The final reply line of a request: where every `OK` and `FAIL` of an AUTH is written.
fn answer_line(id: u32, answer: &Answer) -> Vec<u8> {
    let verb = match answer.verdict {
        Verdict::Ok => "OK",
        Verdict::Fail => "FAIL",
    };
    let mut reply = Reply::new(verb, id);
    for (k, v) in answer.fields.iter() {
        // Dovecot always writes the names as `key=value`, even empty (`user=\toriginal_user=`
        // for an empty name); other empty values are flags, written bare.
        reply = if k == "user" || k == "original_user" { reply.field_explicit(k, v.as_bytes()) } else { reply.field(k, v.as_bytes()) };
    }
    reply.finish()
}
