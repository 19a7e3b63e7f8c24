//! One AUTH, from its first line to its final reply.
//!
//! The server parses the AUTH line into an [`AuthRequest`] and hands it here with a
//! [`Conversation`], its side of the `CONT` exchange. Everything between is decided in this
//! module: the penalty wait, the certificate and plaintext policy, the mechanism loop, the
//! passdb chain, helper processes, `pass=` for proxies, the failure log line, the failure
//! delay, and the finished login kept for the master's REQUEST. What comes back is an
//! [`Answer`]: the verdict and the reply's fields in order, which the server writes as an `OK`
//! or `FAIL` line in one place.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use super::login::LoginConnection;
use super::{penalty, AuthOutcome, Authenticator, CredentialsOutcome, Failure};
use crate::db::helper::HelperSession;
use crate::protocol::{base64, sanitize, FailCode};
use crate::request::{Fields, RequestInfo};
use crate::sasl::{MechFailure, MechInfo, Step};

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
}

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
}

/// A running request: the parsed AUTH, the authenticator, and when the client last spoke.
struct Running<'a> {
    auth: &'a Authenticator,
    req: AuthRequest,
    last_input: Instant,
}

impl Authenticator {
    /// Runs an AUTH to its final answer. `None` when it ran past the request timeout: such a
    /// request is dropped without a reply, as Dovecot does.
    pub async fn authenticate(&self, req: AuthRequest, conv: &mut dyn Conversation) -> Option<Answer> {
        let id = req.id;
        let run = Running { auth: self, req, last_input: Instant::now() };
        match tokio::time::timeout(self.request_timeout, run.run(conv)).await {
            Ok(answer) => Some(answer),
            Err(_) => {
                tracing::info!(id, "request timed out");
                None
            }
        }
    }
}

impl Running<'_> {
    async fn run(mut self, conv: &mut dyn Conversation) -> Answer {
        if !self.req.no_penalty {
            let wait = self.auth.ip_penalty.delay(&penalty::ip_key(self.req.info.rip), Instant::now());
            if !wait.is_zero() {
                tracing::debug!(id = self.req.id, rip = %self.rip_text(), ?wait, "penalty delay");
                tokio::time::sleep(wait).await;
            }
        }
        self.last_input = Instant::now();
        match self.exchange(conv).await {
            End::Immediate(code, reason) => {
                self.log_failure(None, reason);
                let mut fields = Fields::new();
                if let Some(code) = code {
                    fields.set("code", code.as_str());
                }
                fields.set("reason", reason);
                Answer { verdict: Verdict::Fail, fields }
            }
            End::Done(AuthOutcome::Success { user, original_user, fields }, final_resp) => self.succeed(user, original_user, fields, final_resp),
            End::Done(AuthOutcome::Failure(failure), _) => self.fail(failure).await,
        }
    }

    fn succeed(&self, user: String, original_user: Option<String>, fields: Fields, final_resp: Option<Vec<u8>>) -> Answer {
        let auth = self.auth;
        if !self.req.no_penalty {
            auth.ip_penalty.succeeded(&penalty::ip_key(self.req.info.rip));
        }
        if let Some(p) = &auth.account_penalty {
            p.succeeded(&user);
        }
        tracing::info!(
            target: "saslgate::auth::ok",
            rip = %self.rip_text(),
            user = ?sanitize(user.as_bytes(), 128),
            mech = %self.req.mech.name(),
            service = ?sanitize(self.req.info.service.as_bytes(), 32),
            id = self.req.id,
            "auth succeeded"
        );
        // `userdb_*` fields are for a `prefetch` userdb at REQUEST time, never for the OK line.
        let mut reply = Fields::new();
        reply.set("user", &user);
        for (k, v) in fields.iter().filter(|(k, _)| !k.starts_with("userdb_")) {
            reply.set(k, v);
        }
        if let Some(orig) = &original_user {
            if !fields.contains("original_user") {
                reply.set("original_user", orig);
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
            return Err(fail_mech("connection closed"));
        };
        self.last_input = Instant::now();
        self.decode(&text, false)
    }

    async fn exchange(&mut self, conv: &mut dyn Conversation) -> End {
        let auth = self.auth;
        let info = self.req.info.clone();
        let mech_info = self.req.mech.0;
        if let Some(reason) = auth.precheck(&info, mech_info.flags.contains(&"plaintext")) {
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
                    self.account_wait(&creds.authcid).await;
                    let mut outcome = auth.verify_plain(&info, &creds).await;
                    // A proxy answer on a login socket carries the client's password, so the
                    // login process can log in to the backend (unless the passdb gave `pass`).
                    // Never on auth-only sockets: Postfix has no use for it.
                    if let AuthOutcome::Success { fields, .. } = &mut outcome {
                        let proxied = fields.contains("proxy") || fields.contains("proxy_maybe");
                        if self.req.login.is_some() && proxied && !fields.contains("pass") {
                            if let Ok(password) = std::str::from_utf8(creds.password.expose()) {
                                fields.set("pass", password);
                            }
                        }
                    }
                    return End::Done(outcome, None);
                }
                Step::Anonymous { trace } => {
                    tracing::debug!(id = self.req.id, trace = ?sanitize(trace.as_bytes(), 256), "anonymous login");
                    return End::Done(auth.anonymous(), None);
                }
                Step::External { authzid } => return End::Done(auth.external(&info, authzid.as_deref()).await, None),
                Step::LookupCredentials(req) => {
                    self.account_wait(&req.authcid).await;
                    match auth.lookup_credentials(&info, &req).await {
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
                    let outcome = auth.authenticated(&info, &user);
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
        if failure.nodelay {
            fields.set("nodelay", "");
        } else {
            // Jitter of up to a quarter second hides which of several failures took longer.
            let jitter = std::time::Duration::from_millis(rand::random::<u64>() % 250);
            let delay = auth.settings.failure_delay;
            if !delay.is_zero() {
                tokio::time::sleep_until((self.last_input + delay + jitter).into()).await;
            }
        }
        Answer { verdict: Verdict::Fail, fields }
    }

    /// With `account_penalty`, an account with recent failures waits before its password is
    /// checked, whatever address the attempt comes from.
    async fn account_wait(&self, given: &str) {
        let Some(p) = &self.auth.account_penalty else { return };
        let Some(user) = self.auth.translate_user(given, &self.req.info) else { return };
        let wait = p.delay(&user, Instant::now());
        if !wait.is_zero() {
            tracing::debug!(id = self.req.id, ?wait, "account penalty delay");
            tokio::time::sleep(wait).await;
        }
    }

    fn rip_text(&self) -> String {
        self.req.info.rip.map_or_else(|| "-".to_owned(), |ip| ip.to_string())
    }

    /// The failure log line, written at the moment of failure (before the failure delay), so
    /// fail2ban sees it at once. The remote IP comes first, right after the message, and every
    /// text a client chose is quoted and escaped, so no user name can forge another IP.
    fn log_failure(&self, user: Option<&str>, reason: &str) {
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

fn fail_mech(why: &str) -> End {
    End::Done(AuthOutcome::Failure(Failure::plain(None, why)), None)
}

/// The server could not decide (a helper is down, busy or broken): `code=temp_fail`.
fn temp_fail(why: impl Into<String>) -> Failure {
    Failure { code: Some(FailCode::TempFail), ..Failure::plain(None, why) }
}
