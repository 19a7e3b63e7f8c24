//! One AUTH, from its first line to its final reply.
//!
//! The server parses the AUTH line into an [`AuthRequest`] and hands it here with a
//! [`Conversation`], its side of the `CONT` exchange. Everything between is decided in this
//! module: the penalty wait, the certificate and plaintext policy, the mechanism loop, the
//! passdb chain, helper processes, `pass=` for proxies, the failure log line, the failure
//! delay, and the finished login kept for the master's REQUEST. What comes back is an
//! [`Answer`]: the verdict and the reply's fields in order, which the server writes as an `OK`
//! or `FAIL` line in one place.
//!
//! Bounds on what a client controls live here too. Before a request runs, the server asks
//! [`Authenticator::admit`] for a [`Permit`]: requests in flight over the whole daemon are
//! bounded by count (`limits.max_requests`) and by the bytes of client data they hold
//! (`limits.max_request_bytes`: initial responses and every CONT response), and past either a
//! request gets `FAIL code=temp_fail` at once. User names and passwords longer than
//! `limits.max_username_length` / `limits.max_password_length` fail before any passdb or hash
//! sees them. A request that ends without an answer (CANCEL, a closed connection, the request
//! timeout) logs one `auth abandoned` line, which the shipped fail2ban filter does not count.

use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use async_trait::async_trait;

use super::login::LoginConnection;
use super::{penalty, AuthOutcome, Authenticator, CredentialsOutcome, Failure};
use crate::db::helper::HelperSession;
use crate::protocol::{base64, sanitize, FailCode};
use crate::request::{Fields, RequestInfo};
use crate::sasl::{MechFailure, MechInfo, PlainCredentials, Step};

/// A mechanism this daemon offers, as the server sees it: a name to match AUTH lines against.
#[derive(Debug, Clone, Copy)]
pub struct Mech(&'static MechInfo);

impl Mech {
    /// The upper-case name.
    pub fn name(self) -> &'static str {
        self.0.name
    }

    /// The security flags announced in the handshake's `MECH` line.
    pub fn flags(self) -> &'static [&'static str] {
        self.0.flags
    }

    pub(crate) fn new(info: &'static MechInfo) -> Mech {
        Mech(info)
    }
}

/// The server's side of a request's `CONT` exchange.
#[async_trait]
pub trait Conversation: Send {
    /// Sends a challenge (raw bytes; the server base64-encodes it into a `CONT`) and waits for
    /// the client's response as sent (base64 text). `None`: the client is gone.
    async fn challenge(&mut self, data: &[u8]) -> Option<Vec<u8>>;
}

/// What an AUTH line asked for, parsed by the server.
#[derive(Debug)]
pub struct AuthRequest {
    /// The request id of the connection.
    pub id: u32,
    /// The mechanism.
    pub mech: Mech,
    /// What is known of the request (service, addresses, TLS, certificate, listener policy).
    pub info: RequestInfo,
    /// `no-penalty`: neither wait for nor change the address's penalty.
    pub no_penalty: bool,
    /// `final-resp-ok`: final SASL data may go in the OK line.
    pub final_resp_ok: bool,
    /// The initial response as sent (base64 text), when the client gave one.
    pub initial: Option<Vec<u8>>,
    /// The login connection, on login sockets: a success waits there for REQUEST, and proxy
    /// answers carry the password.
    pub login: Option<Arc<LoginConnection>>,
    /// The request's share of the daemon-wide bounds, from [`Authenticator::admit`]; released
    /// when the request ends in any way (answered, cancelled, its connection closed).
    pub permit: Permit,
}

/// The daemon-wide bounds on requests, and the per-request limits on user names and passwords.
#[derive(Debug)]
pub(crate) struct Bounds {
    max_password_length: usize,
    max_username_length: usize,
    inflight: Arc<Inflight>,
    /// Set while admissions are being refused, so a flood logs one warning, not one per request.
    saturated: AtomicBool,
}

impl Bounds {
    pub(crate) fn new(limits: &crate::config::Limits) -> Bounds {
        Bounds {
            max_password_length: limits.max_password_length,
            max_username_length: limits.max_username_length,
            inflight: Arc::new(Inflight {
                count: AtomicUsize::new(0),
                bytes: AtomicUsize::new(0),
                max_count: limits.max_requests,
                max_bytes: limits.max_request_bytes,
            }),
            saturated: AtomicBool::new(false),
        }
    }
}

/// Requests in flight and the client bytes they hold, over the whole daemon.
#[derive(Debug)]
struct Inflight {
    count: AtomicUsize,
    bytes: AtomicUsize,
    max_count: usize,
    max_bytes: usize,
}

impl Inflight {
    /// Adds `n` to `counter` unless that passes `max`.
    fn take(counter: &AtomicUsize, n: usize, max: usize) -> bool {
        counter.fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| now.checked_add(n).filter(|&after| after <= max)).is_ok()
    }
}

/// One request's share of the daemon-wide bounds: one request and the client bytes it holds.
/// Dropping it gives both back.
pub struct Permit {
    inflight: Arc<Inflight>,
    bytes: usize,
}

impl Permit {
    /// Counts `n` more bytes of client data held by the request. False when that would pass
    /// `limits.max_request_bytes` (nothing is counted then).
    fn grow(&mut self, n: usize) -> bool {
        if !Inflight::take(&self.inflight.bytes, n, self.inflight.max_bytes) {
            return false;
        }
        self.bytes += n;
        true
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.inflight.bytes.fetch_sub(self.bytes, Ordering::AcqRel);
        self.inflight.count.fetch_sub(1, Ordering::AcqRel);
    }
}

impl std::fmt::Debug for Permit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit").field("bytes", &self.bytes).finish()
    }
}

/// The reply to a request refused for load (`limits.max_requests`, `limits.max_request_bytes`).
const BUSY_REASON: &str = "Too many requests in flight";

/// Whether a request succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// `OK`.
    Ok,
    /// `FAIL`.
    Fail,
}

/// The final reply to an AUTH: its verb and its fields, in order (a field with an empty value
/// is written bare, like `nodelay`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// `OK` or `FAIL`.
    pub verdict: Verdict,
    /// The fields after the request id.
    pub fields: Fields,
}

enum End {
    /// The request is decided; a success may carry final SASL data for a `resp=` field.
    Done(AuthOutcome, Option<Vec<u8>>),
    /// A protocol-level FAIL sent at once, without delay (bad base64, certificate policy).
    Immediate(Option<FailCode>, &'static str),
    /// Over `limits.max_request_bytes`: `FAIL code=temp_fail` at once, no penalty, and no
    /// `auth failed` line (the daemon is loaded; the client is not known to be wrong).
    Busy,
    /// The client left mid-exchange: no answer.
    Gone,
}

/// A running request: the parsed AUTH, the authenticator, when it started and when the client
/// last spoke, and what its log lines need. Dropped without an answer (its task aborted on
/// CANCEL or when the connection closed), it logs one `auth abandoned` line.
struct Running<'a> {
    auth: &'a Authenticator,
    req: AuthRequest,
    started: Instant,
    last_input: Instant,
    /// The verdict was logged (`auth failed` or `auth succeeded`) or the request was answered:
    /// a client that leaves during the failure delay abandoned nothing.
    decided: AtomicBool,
    /// A plaintext login's credentials, kept while the request runs: the user name for an
    /// `auth abandoned` line, the password for a proxy answer's `pass=` (login sockets only).
    plain: Option<PlainCredentials>,
    /// The user name a credentials lookup asked for (challenge-response mechanisms), for an
    /// `auth abandoned` line.
    named: Option<String>,
}

impl Authenticator {
    /// Admits a new AUTH whose initial response holds `initial_bytes`, within the daemon-wide
    /// bounds (`limits.max_requests`, `limits.max_request_bytes`). The permit goes into the
    /// [`AuthRequest`]. `Err` is the answer to send at once: `FAIL code=temp_fail`.
    pub fn admit(&self, initial_bytes: usize) -> Result<Permit, Answer> {
        let bounds = &self.bounds;
        let inflight = &bounds.inflight;
        if Inflight::take(&inflight.count, 1, inflight.max_count) {
            let mut permit = Permit { inflight: Arc::clone(inflight), bytes: 0 };
            if permit.grow(initial_bytes) {
                if bounds.saturated.load(Ordering::Relaxed) {
                    bounds.saturated.store(false, Ordering::Relaxed);
                }
                return Ok(permit);
            }
        }
        if !bounds.saturated.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                target: "saslgate::auth::busy",
                requests = inflight.count.load(Ordering::Relaxed),
                bytes = inflight.bytes.load(Ordering::Relaxed),
                "refusing new requests (temp_fail): limits.max_requests ({}) or limits.max_request_bytes ({}) reached",
                inflight.max_count,
                inflight.max_bytes
            );
        }
        Err(busy_answer())
    }

    /// Runs an AUTH to its final answer. `None` when it ends without one: it ran past the
    /// request timeout (dropped without a reply, as Dovecot does) or the client left. Either
    /// way, and when the task running this is aborted (CANCEL, the connection closed), one
    /// `auth abandoned` line is logged.
    ///
    /// The request is set up here, before the future exists: the future holds it once, in
    /// place (an `async fn` would keep its argument and a moved copy of it).
    pub fn authenticate<'a>(&'a self, req: AuthRequest, conv: &'a mut dyn Conversation) -> impl Future<Output = Option<Answer>> + Send + 'a {
        let started = Instant::now();
        let mut run = Running { auth: self, req, started, last_input: started, decided: AtomicBool::new(false), plain: None, named: None };
        async move { run.run(conv).await }
    }
}

fn busy_answer() -> Answer {
    let mut fields = Fields::new();
    fields.set("code", FailCode::TempFail.as_str());
    fields.set("reason", BUSY_REASON);
    Answer { verdict: Verdict::Fail, fields }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.abandoned("aborted by client");
    }
}

// `End` is a request's final state, returned once per request: its size does not matter, and boxing
// it would only add an allocation.
#[allow(clippy::result_large_err)]
impl Running<'_> {
    /// The request to its answer, within the request timeout; logs `auth abandoned` when it
    /// ends without one.
    async fn run(&mut self, conv: &mut dyn Conversation) -> Option<Answer> {
        let deadline = self.started + self.auth.request_timeout;
        let result = {
            let mut answer = std::pin::pin!(self.answer(conv));
            // Polled once without a timer: a request whose answer is ready at once (a cheap
            // scheme, no penalty) needs none. The timeout counts from the start either way.
            match std::future::poll_fn(|cx| Poll::Ready(answer.as_mut().poll(cx))).await {
                Poll::Ready(answer) => Ok(answer),
                // Boxed: only a request that waits needs the timer.
                Poll::Pending => Box::pin(tokio::time::timeout_at(deadline.into(), answer)).await,
            }
        };
        match result {
            Ok(Some(answer)) => {
                self.decided();
                Some(answer)
            }
            Ok(None) => {
                self.abandoned("connection closed");
                None
            }
            Err(_) => {
                self.abandoned("request timed out");
                None
            }
        }
    }

    fn decided(&self) {
        self.decided.store(true, Ordering::Relaxed);
    }

    /// Logs the `auth abandoned` line, unless the request was decided or already logged.
    fn abandoned(&self, reason: &'static str) {
        if self.decided.swap(true, Ordering::Relaxed) {
            return;
        }
        let given = self.plain.as_ref().map(|c| c.authcid.as_str()).or(self.named.as_deref()).unwrap_or_default();
        tracing::info!(
            target: "saslgate::auth::abandoned",
            rip = %self.rip_text(),
            user = ?sanitize(given.as_bytes(), 128),
            mech = %self.req.mech.name(),
            service = ?sanitize(self.req.info.service.as_bytes(), 32),
            id = self.req.id,
            reason = ?reason,
            "auth abandoned"
        );
    }

    async fn answer(&mut self, conv: &mut dyn Conversation) -> Option<Answer> {
        if !self.req.no_penalty && !self.auth.ip_penalty.is_empty() {
            let wait = self.auth.ip_penalty.delay(&penalty::ip_key(self.req.info.rip), Instant::now());
            if !wait.is_zero() {
                tracing::debug!(id = self.req.id, rip = %self.rip_text(), ?wait, "penalty delay");
                Box::pin(tokio::time::sleep(wait)).await;
                // The failure delay counts from the end of the wait.
                self.last_input = Instant::now();
            }
        }
        Some(match self.exchange(conv).await {
            End::Immediate(code, reason) => {
                self.log_failure(None, reason);
                let mut fields = Fields::new();
                if let Some(code) = code {
                    fields.set("code", code.as_str());
                }
                fields.set("reason", reason);
                Answer { verdict: Verdict::Fail, fields }
            }
            End::Busy => {
                self.decided();
                tracing::warn!(target: "saslgate::auth::busy", id = self.req.id, rip = %self.rip_text(), "request refused (temp_fail): limits.max_request_bytes reached");
                busy_answer()
            }
            End::Gone => return None,
            End::Done(AuthOutcome::Success { user, original_user, fields }, final_resp) => self.succeed(user, original_user, fields, final_resp),
            End::Done(AuthOutcome::Failure(failure), _) => self.fail(failure).await,
        })
    }

    fn succeed(&self, user: String, original_user: Option<String>, fields: Fields, final_resp: Option<Vec<u8>>) -> Answer {
        let auth = self.auth;
        self.decided();
        // An empty table has nothing to clear (and the key is not even formatted).
        if !self.req.no_penalty && !auth.ip_penalty.is_empty() {
            auth.ip_penalty.succeeded(&penalty::ip_key(self.req.info.rip));
        }
        if let Some(p) = &auth.account_penalty {
            p.succeeded(&user);
        }
        // Off by default (`log.successes`), as Dovecot's `auth_verbose = no`; checked before
        // anything is formatted.
        if auth.log_successes {
            tracing::info!(
                target: "saslgate::auth::ok",
                rip = %self.rip_text(),
                user = ?sanitize(user.as_bytes(), 128),
                mech = %self.req.mech.name(),
                service = ?sanitize(self.req.info.service.as_bytes(), 32),
                id = self.req.id,
                "auth succeeded"
            );
        }
        // Dovecot's order (`auth_str_append_extra_fields`): the passdb's fields, then the
        // generated `original_user`, `auth_user`, and for a proxy on a login socket `pass` and
        // `master`, each unless the passdb gave it. `userdb_*` fields are for a `prefetch`
        // userdb at REQUEST time, never for the OK line.
        let mut reply = Fields::new();
        reply.set("user", &user);
        // `auth_user` is generated below, in its place.
        super::append_passdb_fields(&mut reply, &fields, |k| !k.starts_with("userdb_") && k != "auth_user");
        if let Some(orig) = &original_user {
            if !fields.contains("original_user") {
                reply.set("original_user", orig);
            }
        }
        let master = fields.get("auth_user").filter(|m| !m.is_empty());
        if let Some(master) = master {
            reply.set("auth_user", master);
        }
        let proxied = fields.contains("proxy") || fields.contains("proxy_maybe");
        if self.req.login.is_some() && proxied {
            // The login process logs in to the backend with these; never on auth-only
            // sockets (Postfix has no use for the password).
            if let (false, Some(creds)) = (fields.contains("pass"), &self.plain) {
                let password = &creds.password;
                if let Ok(password) = std::str::from_utf8(password.expose()) {
                    reply.set("pass", password);
                }
            }
            if let (false, Some(master)) = (fields.contains("master"), master) {
                reply.set("master", master);
            }
        }
        if let Some(data) = &final_resp {
            reply.set("resp", &base64::encode(data));
        }
        let keep_for_request = !(fields.contains("nologin") || fields.contains("proxy"));
        if let (Some(login), true) = (&self.req.login, keep_for_request) {
            auth.logins.finish(login, self.req.id, user, self.req.info.clone(), super::prefetch_fields(&fields));
        }
        Answer { verdict: Verdict::Ok, fields: reply }
    }

    /// Decodes a client response (initial or continued) and checks it for NULs.
    fn decode(&self, text: &[u8], initial: bool) -> Result<Vec<u8>, End> {
        let Ok(data) = base64::decode(text) else {
            let why = if initial { "Invalid base64 data in initial response" } else { "Invalid base64 data in continued response" };
            return Err(End::Immediate(Some(FailCode::InvalidBase64), why));
        };
        if !self.req.mech.0.allows_nul && data.contains(&0) {
            return Err(fail_mech(if initial { "unexpected NUL in the initial response" } else { "unexpected NUL in a response" }));
        }
        Ok(data)
    }

    /// Sends a challenge and waits for the client's decoded response. `Err` ends the request.
    async fn response(&mut self, challenge: &[u8], conv: &mut dyn Conversation) -> Result<Vec<u8>, End> {
        let Some(text) = conv.challenge(challenge).await else {
            return Err(End::Gone);
        };
        // The mechanism may keep what the client sent (LOGIN keeps the name while it asks
        // for the password): counted until the request ends.
        if !self.req.permit.grow(text.len()) {
            return Err(End::Busy);
        }
        self.last_input = Instant::now();
        self.decode(&text, false)
    }

    /// The mechanism exchange.
    async fn exchange(&mut self, conv: &mut dyn Conversation) -> End {
        let auth = self.auth;
        let mech_info = self.req.mech.0;
        if let Some(reason) = auth.precheck(&self.req.info, mech_info.flags.contains(&"plaintext")) {
            return End::Immediate(None, reason);
        }
        let mut mech = mech_info.start(&auth.mech_context);
        let initial = match self.req.initial.take() {
            None => None,
            Some(text) => match self.decode(&text, true) {
                Ok(data) => Some(data),
                Err(end) => return end,
            },
        };
        // Set once a passdb handed over a credential: who the user is, should the proof hold.
        let mut found: Option<(String, Option<String>, Fields)> = None;
        // Set when the mechanism runs on a decoy credential: the request ends with this failure.
        let mut decoy: Option<Failure> = None;
        // The helper process this exchange is pinned to, once it first needs one.
        let mut helper: Option<Box<dyn HelperSession>> = None;
        let mut step = mech.start(initial.as_deref());
        loop {
            step = match step {
                Step::Challenge(challenge) => match self.response(&challenge, conv).await {
                    Ok(data) => mech.step(&data),
                    Err(end) => return end,
                },
                Step::VerifyPlain(creds) => {
                    // Kept for the log line should the request be abandoned, and for `pass=`.
                    self.plain = Some(creds);
                    let Some(creds) = &self.plain else { return fail_mech("credentials lost") };
                    if let Some(end) = self.too_long(&creds.authcid, creds.authzid.as_deref(), creds.password.expose().len(), &self.req.info) {
                        return end;
                    }
                    self.account_wait(&creds.authcid, &self.req.info).await;
                    // `%w` in the chain's templates is this password while the chain runs (the
                    // chain would otherwise copy the whole request to add it); never kept after.
                    self.req.info.password = Some(creds.password.clone());
                    // Boxed, here and below: a request waiting for the client stays small in memory.
                    let outcome = Box::pin(auth.verify_plain(&self.req.info, creds)).await;
                    self.req.info.password = None;
                    return End::Done(outcome, None);
                }
                Step::Anonymous { trace } => {
                    tracing::debug!(id = self.req.id, trace = ?sanitize(trace.as_bytes(), 256), "anonymous login");
                    return End::Done(auth.anonymous(), None);
                }
                Step::External { authzid } => return End::Done(Box::pin(auth.external(&self.req.info, authzid.as_deref())).await, None),
                Step::LookupCredentials(req) => {
                    self.named = Some(req.authcid.clone());
                    if let Some(end) = self.too_long(&req.authcid, req.authzid.as_deref(), 0, &self.req.info) {
                        return end;
                    }
                    self.account_wait(&req.authcid, &self.req.info).await;
                    match Box::pin(auth.lookup_credentials(&self.req.info, &req)).await {
                        CredentialsOutcome::Found { user, original_user, fields, credential } => {
                            found = Some((user, original_user, fields));
                            mech.credentials(credential.expose())
                        }
                        CredentialsOutcome::Failed(failure) => return End::Done(AuthOutcome::Failure(failure), None),
                        CredentialsOutcome::Decoy { failure, credential } => {
                            decoy = Some(failure);
                            mech.credentials(credential.expose())
                        }
                    }
                }
                Step::Helper(line) => {
                    let session = match &mut helper {
                        Some(session) => session,
                        None => match auth.helper_session(mech_info.name).await {
                            Ok(session) => helper.insert(session),
                            Err(why) => return End::Done(AuthOutcome::Failure(temp_fail(why)), None),
                        },
                    };
                    match session.call(&line).await {
                        Ok(reply) => match mech.helper_reply(&reply) {
                            Step::Fail(MechFailure::HelperBroken(why)) => {
                                session.poison();
                                return End::Done(AuthOutcome::Failure(temp_fail(format!("helper failure: {why}"))), None);
                            }
                            // The helper works, but the directory behind it does not answer.
                            Step::Fail(MechFailure::Unavailable(why)) => {
                                return End::Done(AuthOutcome::Failure(temp_fail(format!("authentication service unavailable: {why}"))), None);
                            }
                            next => next,
                        },
                        Err(e) => return End::Done(AuthOutcome::Failure(temp_fail(e.to_string())), None),
                    }
                }
                Step::Authenticated { user, final_data } => {
                    let outcome = auth.authenticated(&self.req.info, &user);
                    if let AuthOutcome::Failure(_) = outcome {
                        return End::Done(outcome, None);
                    }
                    return self.finish_success(outcome, final_data, conv).await;
                }
                Step::Success { final_data } => {
                    if let Some(failure) = decoy.take() {
                        // Cannot happen (the decoy's keys are random), and must never succeed.
                        return End::Done(AuthOutcome::Failure(failure), None);
                    }
                    let Some((user, original_user, fields)) = found.take() else {
                        // A mechanism may only succeed on a credential it was given.
                        return fail_mech("mechanism succeeded without credentials");
                    };
                    return self.finish_success(AuthOutcome::Success { user, original_user, fields }, final_data, conv).await;
                }
                Step::Fail(why) => {
                    if let Some(failure) = decoy.take() {
                        return End::Done(AuthOutcome::Failure(failure), None);
                    }
                    let failure = match found.take() {
                        Some((user, original_user, _)) => Failure { original_user, ..Failure::plain(Some(user), why.to_string()) },
                        // Dovecot answers an empty name with both names, empty:
                        // `FAIL <id> user= original_user=`.
                        None if why == MechFailure::InvalidInput(crate::sasl::EMPTY_USER_NAME) => {
                            Failure { original_user: Some(String::new()), ..Failure::plain(Some(String::new()), why.to_string()) }
                        }
                        None => Failure::plain(None, why.to_string()),
                    };
                    return End::Done(AuthOutcome::Failure(failure), None);
                }
            };
        }
    }

    /// A success with the mechanism's final data: in the OK line with `final-resp-ok`, else in
    /// a last CONT whose answer, whatever it is, gets the OK.
    async fn finish_success(&mut self, outcome: AuthOutcome, final_data: Option<Vec<u8>>, conv: &mut dyn Conversation) -> End {
        match final_data {
            None => End::Done(outcome, None),
            Some(data) if self.req.final_resp_ok => End::Done(outcome, Some(data)),
            Some(data) => match self.response(&data, conv).await {
                Ok(_) => End::Done(outcome, None),
                Err(end) => end,
            },
        }
    }

    /// Logs the failure now (for fail2ban), then waits out the failure delay.
    async fn fail(&self, failure: Failure) -> Answer {
        let auth = self.auth;
        self.log_failure(failure.user.as_deref(), &failure.log_reason);
        // A temporary failure is the server's fault, not the client's: no penalty for it.
        if failure.code != Some(FailCode::TempFail) {
            if !self.req.no_penalty {
                auth.ip_penalty.failed(&penalty::ip_key(self.req.info.rip), Instant::now());
            }
            if let (Some(p), Some(user)) = (&auth.account_penalty, &failure.user) {
                p.failed(user, Instant::now());
            }
        }
        let mut fields = Fields::new();
        if let Some(user) = &failure.user {
            fields.set("user", user);
        }
        if let Some(orig) = &failure.original_user {
            fields.set("original_user", orig);
        }
        if let Some(code) = failure.code {
            fields.set("code", code.as_str());
        }
        if let Some(reason) = &failure.reason {
            fields.set("reason", reason);
        }
        if failure.nodelay {
            fields.set("nodelay", "");
        } else {
            // Jitter of up to a quarter second hides which of several failures took longer.
            let jitter = std::time::Duration::from_millis(rand::random::<u64>() % 250);
            let delay = auth.settings.failure_delay;
            if !delay.is_zero() {
                Box::pin(tokio::time::sleep_until((self.last_input + delay + jitter).into())).await;
            }
        }
        Answer { verdict: Verdict::Fail, fields }
    }

    /// A user name or password past `limits.max_username_length` / `limits.max_password_length`:
    /// a failure at once, before any passdb lookup or hash, logged and penalized like a wrong
    /// password. An over-long name is neither echoed in `user=` nor kept as a penalty key.
    fn too_long(&self, authcid: &str, authzid: Option<&str>, password_len: usize, info: &RequestInfo) -> Option<End> {
        let bounds = &self.auth.bounds;
        let name_len = authcid.len().max(authzid.map_or(0, str::len));
        if name_len > bounds.max_username_length {
            let why = format!("user name too long ({name_len} bytes; limits.max_username_length is {})", bounds.max_username_length);
            return Some(End::Done(AuthOutcome::Failure(Failure::plain(None, why)), None));
        }
        if password_len > bounds.max_password_length {
            let why = format!("password too long ({password_len} bytes; limits.max_password_length is {}): not checked", bounds.max_password_length);
            let user = self.auth.translate_user(authcid, info);
            let original_user = user.as_deref().filter(|u| *u != authcid).map(|_| authcid.to_owned());
            return Some(End::Done(AuthOutcome::Failure(Failure { original_user, ..Failure::plain(user, why) }), None));
        }
        None
    }

    /// With `account_penalty`, an account with recent failures waits before its password is
    /// checked, whatever address the attempt comes from.
    async fn account_wait(&self, given: &str, info: &RequestInfo) {
        let Some(p) = &self.auth.account_penalty else { return };
        let Some(user) = self.auth.translate_user(given, info) else { return };
        let wait = p.delay(&user, Instant::now());
        if !wait.is_zero() {
            tracing::debug!(id = self.req.id, ?wait, "account penalty delay");
            Box::pin(tokio::time::sleep(wait)).await;
        }
    }

    /// The remote IP as log lines show it (`-` without one), formatted only when a line is.
    fn rip_text(&self) -> RipText {
        RipText(self.req.info.rip)
    }

    /// The failure log line, written at the moment of failure (before the failure delay), so
    /// fail2ban sees it at once. The remote IP comes first, right after the message, and every
    /// text a client chose is quoted and escaped, so no user name can forge another IP.
    fn log_failure(&self, user: Option<&str>, reason: &str) {
        self.decided();
        tracing::info!(
            target: "saslgate::auth::fail",
            rip = %self.rip_text(),
            user = ?user.map(|u| sanitize(u.as_bytes(), 128)).unwrap_or_default(),
            mech = %self.req.mech.name(),
            service = ?sanitize(self.req.info.service.as_bytes(), 32),
            id = self.req.id,
            reason = ?reason,
            "auth failed"
        );
    }
}

/// A remote IP in a log line: the address, or `-` without one.
struct RipText(Option<IpAddr>);

impl std::fmt::Display for RipText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(ip) => ip.fmt(f),
            None => f.write_str("-"),
        }
    }
}

fn fail_mech(why: &str) -> End {
    End::Done(AuthOutcome::Failure(Failure::plain(None, why)), None)
}

/// The server could not decide (a helper is down, busy or broken): `code=temp_fail`.
fn temp_fail(why: impl Into<String>) -> Failure {
    Failure { code: Some(FailCode::TempFail), ..Failure::plain(None, why) }
}
