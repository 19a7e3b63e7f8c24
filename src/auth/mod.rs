//! The request layer: runs a mechanism's needs against the passdbs and userdbs.
//!
//! It owns user-name rules (`username_format`, illegal password bytes), the passdb chain, the
//! filtering of extra fields, and the shape of a request's [`AuthOutcome`]. It knows nothing of
//! sockets: the server turns outcomes into reply lines and applies the failure delay.

pub mod cache;
pub mod chain;
pub mod decoy;
mod keyed;
mod login;
mod master;
pub mod penalty;
mod request;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::config::rules::{Rule, UserdbSkip};
use crate::config::{AuthSettings, Config};
use crate::db::helper::{HelperSession, MechHelper};
use crate::db::Resources;
use crate::passdb::{self, PassdbOutcome};
use crate::protocol::{sanitize, FailCode};
use crate::request::{expand_for_user, layer_fields, Fields, RequestInfo};
use crate::sasl::{CredentialsRequest, MechContext, PlainCredentials};
use crate::scheme::Scheme;
use crate::secret::Secret;
use crate::userdb::{self, UserdbOutcome};

pub use login::{CpidInUse, LoginConnection};
pub use master::{RequestClaim, UserAnswer};
pub use request::{Answer, AuthRequest, Conversation, Mech, Permit, Verdict};

/// The final result of an authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    /// Authenticated.
    Success {
        /// The user name after `username_format` (and any `user` field).
        user: String,
        /// The name the mechanism gave, when it differs from `user`.
        original_user: Option<String>,
        /// Extra fields for the OK line, in order.
        fields: Fields,
    },
    /// Not authenticated.
    Failure(Failure),
}

/// Why an authentication failed: what the peer is told and what is logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The user name, when one is known (`FAIL ... user=`).
    pub user: Option<String>,
    /// The name the mechanism gave, when it differs from `user`.
    pub original_user: Option<String>,
    /// A `code=` for the peer.
    pub code: Option<FailCode>,
    /// Send at once, with a `nodelay` field (only when a surviving field asked for it).
    pub nodelay: bool,
    /// For the log line; never sent, never contains a password.
    pub log_reason: String,
    /// A message for the client (`reason=`), from a passdb that asked to show it.
    pub reason: Option<String>,
}

impl Failure {
    /// A failure that carries only a log reason.
    pub fn plain(user: Option<String>, log_reason: impl Into<String>) -> Failure {
        Failure { user, original_user: None, code: None, nodelay: false, log_reason: log_reason.into(), reason: None }
    }
}

/// Why a request is refused before any mechanism runs. Sent at once as `reason=`.
pub const NO_CLIENT_CERT: &str = "Client didn't present valid SSL certificate";
/// The certificate is valid but names no user.
pub const CERT_WITHOUT_USERNAME: &str = "SSL certificate didn't contain username";
/// A plaintext mechanism on a connection that is not secured.
pub const PLAINTEXT_DISALLOWED: &str = "Plaintext authentication disallowed on non-secure (SSL/TLS) connections.";

/// The request layer of a running daemon: the mechanisms, passdbs, userdbs and helpers, the
/// rules for using them, and the state that outlives one request (penalties, the auth cache,
/// logins waiting for REQUEST).
#[derive(Debug)]
pub struct Authenticator {
    settings: AuthSettings,
    passdbs: Vec<chain::PassdbEntry>,
    userdbs: Vec<chain::UserdbEntry>,
    pool: crate::blocking::Pool,
    cache: Arc<cache::VerifyCache>,
    mechanisms: Vec<Mech>,
    mech_context: MechContext,
    helpers: HashMap<&'static str, Arc<dyn MechHelper>>,
    request_timeout: Duration,
    ip_penalty: penalty::Penalty,
    account_penalty: Option<penalty::Penalty>,
    logins: login::Logins,
    /// What one request may send, and the requests in flight over the whole daemon.
    bounds: request::Bounds,
    /// `log.successes`: log one line per successful login.
    log_successes: bool,
    /// The ASCII characters of `username_chars`, as a bitmap (bit `c` of the 128).
    username_ascii: u128,
}

/// One pool of helper processes for each offered mechanism that needs one (winbind's
/// `ntlm_auth` for NTLM and GSS-SPNEGO). No process starts before the first exchange.
fn helpers(config: &Config) -> HashMap<&'static str, Arc<dyn MechHelper>> {
    use crate::sasl::winbind::HelperProtocol;
    let mut helpers: HashMap<&'static str, Arc<dyn MechHelper>> = HashMap::new();
    for mech in &config.mechanisms {
        let protocol = match mech.name {
            "NTLM" => HelperProtocol::Ntlmssp,
            "GSS-SPNEGO" => HelperProtocol::GssSpnego,
            _ => continue,
        };
        helpers.insert(mech.name, Arc::new(crate::db::winbind::HelperPool::new(protocol, config.winbind.clone())));
    }
    helpers
}

/// Fields a passdb returns that steer the request and never reach a reply.
const HIDDEN_PASSDB_FIELDS: &[&str] = &["password", "user", "nopassword", "allow_nets", "allow_real_nets", "noauthenticate", "nodelay", "fail"];

/// Bytes no password may contain: they would break the line protocol (Dovecot rejects them
/// before any passdb lookup).
fn has_illegal_password_bytes(password: &[u8]) -> bool {
    password.iter().any(|&b| matches!(b, 0x01 | b'\t' | b'\r' | b'\n'))
}

impl Authenticator {
    /// Builds the request layer from a validated config: every backend is built here, in one
    /// place, over one shared-resources context (`db::Resources`: the blocking pool, the
    /// passwd-file cache, helper processes).
    pub fn from_config(config: &Config, pool: &crate::blocking::Pool) -> Authenticator {
        let cache = Arc::new(cache::VerifyCache::new(config.auth.cache));
        // Drivers that check passwords themselves (LDAP auth_bind) reach the cache through
        // `db::CheckMemo`; with the cache off they get none and never remember anything.
        let memo = cache.enabled().then(|| Arc::clone(&cache) as Arc<dyn crate::db::CheckMemo>);
        let resources = Resources::new(pool.clone()).with_memo(memo);
        let passdbs = config.passdbs.iter().map(|p| chain::PassdbEntry { db: passdb::build(p, &resources), rules: p.rules.clone() }).collect();
        let userdbs = config.userdbs.iter().map(|u| chain::UserdbEntry { db: userdb::build(u, &resources), rules: u.rules.clone() }).collect();
        let request_timeout = Duration::from_secs(crate::protocol::REQUEST_TIMEOUT_SECS);
        Authenticator {
            settings: config.auth.clone(),
            passdbs,
            userdbs,
            pool: pool.clone(),
            cache,
            mechanisms: config.mechanisms.iter().copied().map(Mech::new).collect(),
            mech_context: MechContext { hostname: config.hostname.clone(), realms: config.realms.clone(), ..MechContext::default() },
            helpers: helpers(config),
            request_timeout,
            ip_penalty: penalty::Penalty::new(config.penalty_max),
            account_penalty: config.account_penalty.then(|| penalty::Penalty::new(config.penalty_max)),
            logins: login::Logins::new(request_timeout, config.limits.max_requests_per_connection),
            bounds: request::Bounds::new(&config.limits),
            log_successes: config.log_successes,
            username_ascii: config.auth.username_chars.as_deref().unwrap_or_default().chars().filter(char::is_ascii).fold(0, |m, c| m | 1u128 << (c as u32)),
        }
    }

    /// The mechanisms offered, in the handshake's order.
    pub fn mechanisms(&self) -> &[Mech] {
        &self.mechanisms
    }

    /// The offered mechanism of this name (case-insensitive).
    pub fn mechanism(&self, name: &str) -> Option<Mech> {
        self.mechanisms.iter().copied().find(|m| m.name().eq_ignore_ascii_case(name))
    }

    /// A helper session for one exchange of `mech`.
    async fn helper_session(&self, mech: &str) -> Result<Box<dyn HelperSession>, String> {
        let Some(helper) = self.helpers.get(mech) else {
            return Err(format!("no helper process serves {mech}"));
        };
        helper.session().await.map_err(|e| e.to_string())
    }

    /// Registers a login connection's CPID, whose successful logins wait for REQUEST.
    pub fn register_login(&self, cpid: u32, cookie: [u8; 16]) -> Result<Arc<LoginConnection>, CpidInUse> {
        self.logins.register(cpid, cookie)
    }

    /// Forgets a closed login connection and its unclaimed logins.
    pub fn unregister_login(&self, cpid: u32, conn: &Arc<LoginConnection>) {
        self.logins.unregister(cpid, conn);
    }

    /// Flushes the auth cache: everything, or these users' entries. Returns how many.
    pub fn flush_cache(&self, users: &[String]) -> usize {
        self.cache.flush(users)
    }

    /// The global settings.
    pub fn settings(&self) -> &AuthSettings {
        &self.settings
    }

    /// Refuses a request before its mechanism runs: certificate policy of its service (with
    /// `ssl_username_from_cert`, a valid certificate without a user name is always refused:
    /// CVE-2019-3814), and the plaintext policy.
    pub fn precheck(&self, info: &RequestInfo, plaintext_mech: bool) -> Option<&'static str> {
        let s = &self.settings;
        let policy = s.services.get(&info.service);
        let require = policy.and_then(|p| p.ssl_require_client_cert).unwrap_or(s.ssl_require_client_cert);
        if require && !info.valid_client_cert {
            return Some(NO_CLIENT_CERT);
        }
        if s.ssl_username_from_cert && info.valid_client_cert && info.cert_username.is_none() {
            return Some(CERT_WITHOUT_USERNAME);
        }
        // The listener's setting wins, then the service's, then the global one.
        let no_plaintext = info.disable_plaintext_auth.or(policy.and_then(|p| p.disable_plaintext_auth)).unwrap_or(s.disable_plaintext_auth);
        if plaintext_mech && no_plaintext && !self.is_secured(info) {
            return Some(PLAINTEXT_DISALLOWED);
        }
        None
    }

    /// TLS, a local connection (`lip == rip`), or a trusted network.
    fn is_secured(&self, info: &RequestInfo) -> bool {
        info.secured.is_some() || (info.lip.is_some() && info.lip == info.rip) || self.settings.trusted_networks.contains(info.rip)
    }

    /// The name to authenticate: the certificate's user with `ssl_username_from_cert`,
    /// whatever the mechanism gave (that one becomes `original_user`).
    fn login_name<'a>(&self, given: &'a str, info: &'a RequestInfo) -> &'a str {
        match &info.cert_username {
            Some(cert) if self.settings.ssl_username_from_cert => cert,
            _ => given,
        }
    }

    /// Applies `username_format` to a name given by a client. `None` when the result is empty.
    ///
    /// The steps, in Dovecot's order: `default_realm` is appended to a name without `@`,
    /// `username_translation` maps characters, `username_chars` must allow every character
    /// (else the name is refused), then `username_format` applies.
    pub fn translate_user(&self, given: &str, info: &RequestInfo) -> Option<String> {
        let s = &self.settings;
        // The name is copied only when a realm or a translation changes it.
        let mut name = std::borrow::Cow::Borrowed(given);
        if let Some(realm) = &s.default_realm {
            if !name.contains('@') {
                name = format!("{name}@{realm}").into();
            }
        }
        if !s.username_translation.is_empty() {
            name = name.chars().map(|c| s.username_translation.iter().find(|(from, _)| *from == c).map_or(c, |(_, to)| *to)).collect::<String>().into();
        }
        if let Some(allowed) = &s.username_chars {
            let ascii = self.username_ascii;
            let allows = |c: char| if c.is_ascii() { ascii & (1u128 << (c as u32)) != 0 } else { allowed.contains(c) };
            if let Some(bad) = name.chars().find(|c| !allows(*c)) {
                tracing::info!(user = ?sanitize(given.as_bytes(), 64), "user name refused: character {bad:?} is not in username_chars");
                return None;
            }
        }
        let user = expand_for_user(&s.username_format, &name, info);
        (!user.is_empty()).then_some(user)
    }

    /// The failure for a chain that did not succeed.
    fn chain_failure(&self, result: &chain::ChainResult, original_user: Option<String>, wanted: Option<Scheme>) -> Failure {
        let (code, why) = match &result.outcome {
            PassdbOutcome::InternalFailure(why) => (Some(FailCode::TempFail), format!("internal failure: {why}")),
            PassdbOutcome::UserUnknown => (None, "unknown user".to_owned()),
            PassdbOutcome::PasswordMismatch => (None, "password mismatch".to_owned()),
            PassdbOutcome::UserDisabled => (Some(FailCode::UserDisabled), "user disabled".to_owned()),
            PassdbOutcome::PasswordExpired => (Some(FailCode::PassExpired), "password expired".to_owned()),
            PassdbOutcome::SchemeNotAvailable => match wanted {
                Some(s) => (None, format!("no {} credentials for the user (stored in another scheme)", s.as_str())),
                None => (None, "password scheme not available".to_owned()),
            },
            PassdbOutcome::Ok => (None, "ok".to_owned()),
        };
        Failure { code, original_user, reason: result.reason.clone(), ..Failure::plain(Some(result.user.clone()), why) }
    }

    /// Checks a plaintext password through the passdb chain.
    pub async fn verify_plain(&self, info: &RequestInfo, creds: &PlainCredentials) -> AuthOutcome {
        let given = creds.authcid.as_str();
        let name = self.login_name(given, info);
        // A master-user login: the SASL authzid, or `login<separator>master` in the name. The
        // split comes first, so the separator need not be a valid user name character.
        let target = match (&creds.authzid, &self.settings.master_user_separator) {
            (Some(z), _) => Some((z.as_str(), name)),
            (None, Some(sep)) => name.split_once(sep.as_str()),
            (None, None) => None,
        };
        if let Some((login, master)) = target {
            if has_illegal_password_bytes(creds.password.expose()) {
                return AuthOutcome::Failure(Failure::plain(Some(master.to_owned()), "password has illegal characters"));
            }
            let Some(master) = self.translate_user(master, info) else {
                return AuthOutcome::Failure(Failure::plain(Some(given.to_owned()), "invalid master user name"));
            };
            // Boxed: rare, and its two chains would double every login's future.
            return Box::pin(self.master_login(info, login, &master, &creds.password, given)).await;
        }
        let Some(user) = self.translate_user(name, info) else {
            return AuthOutcome::Failure(Failure::plain(Some(given.to_owned()), "invalid user name (username_chars, username_format)"));
        };
        let original_user = (user != given).then(|| given.to_owned());
        if has_illegal_password_bytes(creds.password.expose()) {
            return AuthOutcome::Failure(Failure { original_user, ..Failure::plain(Some(user), "password has illegal characters") });
        }
        let result = self.passdb_chain(&user, info, chain::Op::Verify(&creds.password)).await;
        self.finish(result, given, None, info)
    }

    /// A master user logs in as another user: the master passdbs check the master's password;
    /// then, if the master passdb's rule went on (`result_success: continue`), the normal
    /// passdbs must know the target user (else `authz_fail`). The reply names the target as
    /// `user` and the master as `auth_user`.
    async fn master_login(&self, info: &RequestInfo, login: &str, master: &str, password: &Secret, given: &str) -> AuthOutcome {
        if !self.passdbs.iter().any(|p| p.rules.master) {
            return AuthOutcome::Failure(Failure::plain(Some(master.to_owned()), format!("master user login attempted without master passdbs (as {login})")));
        }
        let Some(login) = self.translate_user(login, info) else {
            return AuthOutcome::Failure(Failure::plain(Some(master.to_owned()), "empty login user"));
        };
        let verified = self.passdb_chain_with(master, info, chain::Op::Verify(password), chain::Walk::Masters).await;
        if verified.outcome != PassdbOutcome::Ok {
            return self.finish(verified, given, None, info);
        }
        let mut fields = visible_fields(&login, &verified.fields).1;
        let mut user = login.clone();
        if verified.continued {
            let target = self.passdb_chain_with(&login, info, chain::Op::Lookup, chain::Walk::TargetOfMaster).await;
            if target.outcome != PassdbOutcome::Ok {
                tracing::info!(master = ?sanitize(master.as_bytes(), 128), login = ?sanitize(login.as_bytes(), 128), "master user authenticated, but the login user was not found");
                let code = match target.outcome {
                    PassdbOutcome::InternalFailure(_) => FailCode::TempFail,
                    _ => FailCode::AuthzFail,
                };
                return AuthOutcome::Failure(Failure { code: Some(code), ..Failure::plain(Some(login), "login user not found for the master user") });
            }
            let (u, f) = visible_fields(&login, &target.fields);
            user = u;
            fields = f;
        }
        fields.set("auth_user", master);
        let original_user = (user != given).then(|| given.to_owned());
        AuthOutcome::Success { user, original_user, fields }
    }

    fn finish(&self, result: chain::ChainResult, given: &str, wanted: Option<Scheme>, info: &RequestInfo) -> AuthOutcome {
        let original_user = (result.user != given).then(|| given.to_owned());
        let proxied = result.fields.contains("proxy") || result.fields.contains("proxy_maybe");
        // A `proxy` answer normally lets the proxied server check the password. On an auth-only
        // socket (Postfix, Exim) nobody does: an unchecked password would log anyone in.
        if result.outcome == PassdbOutcome::Ok && proxied && result.nopassword_used && info.client_pid.is_none() {
            return AuthOutcome::Failure(Failure {
                original_user,
                ..Failure::plain(Some(result.user.clone()), "proxy with nopassword on an auth-only socket: the password would never be checked")
            });
        }
        if result.outcome != PassdbOutcome::Ok {
            let mut failure = self.chain_failure(&result, original_user, wanted);
            // `nodelay` from a passdb whose result was kept (never the failing one's own).
            failure.nodelay = result.fields.contains("nodelay");
            return AuthOutcome::Failure(failure);
        }
        let (user, mut fields) = visible_fields(&result.user, &result.fields);
        // Flags the login processes read are sent bare, whatever value the passdb gave.
        for flag in ["nologin", "proxy", "proxy_maybe"] {
            if fields.contains(flag) {
                fields.set(flag, "");
            }
        }
        let original_user = (user != given).then(|| given.to_owned());
        AuthOutcome::Success { user, original_user, fields }
    }

    /// Fetches the credential a challenge-response mechanism needs, through the passdb chain.
    pub async fn lookup_credentials(&self, info: &RequestInfo, req: &CredentialsRequest) -> CredentialsOutcome {
        let given = req.authcid.as_str();
        let Some(user) = self.translate_user(self.login_name(given, info), info) else {
            return CredentialsOutcome::Failed(Failure::plain(Some(given.to_owned()), "empty user name after username_format"));
        };
        if req.authzid.is_some() {
            let original_user = (user != given).then(|| given.to_owned());
            return CredentialsOutcome::Failed(Failure { original_user, ..Failure::plain(Some(user), "master user login attempted without master passdbs") });
        }
        // DIGEST-MD5 from a plaintext password hashes the name and realm the client used.
        let identity = req.hash_identity.as_ref().map(|(name, realm)| (name.as_str(), realm.as_str()));
        let mut result = self.passdb_chain(&user, info, chain::Op::Credentials(req.scheme, identity)).await;
        let credential = result.credential.take();
        let failure = match (self.finish(result, given, Some(req.scheme), info), credential) {
            (AuthOutcome::Success { user, original_user, fields }, Some(credential)) => {
                return CredentialsOutcome::Found { user, original_user, fields, credential };
            }
            (AuthOutcome::Success { user, original_user, .. }, None) => {
                Failure { original_user, ..Failure::plain(Some(user), "no credential from the passdbs") }
            }
            (AuthOutcome::Failure(f), _) => f,
        };
        // An ordinary failure (no code: unknown user, no credential in this scheme) must not
        // show before the proof where the mechanism would answer a known user (SCRAM).
        if failure.code.is_none() {
            if let Some(credential) = decoy::credential(req.scheme, &user) {
                return CredentialsOutcome::Decoy { failure, credential };
            }
        }
        CredentialsOutcome::Failed(failure)
    }

    /// A user a helper-backed mechanism authenticated by itself (winbind): the user-name rules
    /// apply, no passdb is asked, and the userdb chain runs at REQUEST as for any login.
    pub fn authenticated(&self, info: &RequestInfo, given: &str) -> AuthOutcome {
        let Some(user) = self.translate_user(given, info) else {
            return AuthOutcome::Failure(Failure::plain(Some(given.to_owned()), "invalid user name from the helper (username_chars, username_format)"));
        };
        let original_user = (user != given).then(|| given.to_owned());
        AuthOutcome::Success { user, original_user, fields: Fields::new() }
    }

    /// ANONYMOUS: the configured anonymous user, flagged `anonymous`; no passdb is asked.
    pub fn anonymous(&self) -> AuthOutcome {
        let mut fields = Fields::new();
        fields.set("anonymous", "");
        AuthOutcome::Success { user: self.settings.anonymous_username.clone(), original_user: None, fields }
    }

    /// EXTERNAL: the user named by a valid client certificate, checked with an empty password
    /// (so only a passdb that says `nopassword` lets it in). A different authzid would be a
    /// master-user login.
    pub async fn external(&self, info: &RequestInfo, authzid: Option<&str>) -> AuthOutcome {
        let cert_user = info.cert_username.as_deref().filter(|_| self.settings.ssl_username_from_cert);
        let Some(cert_user) = cert_user else {
            return AuthOutcome::Failure(Failure::plain(
                None,
                "username not known: no valid client certificate with a user name (needs ssl_username_from_cert)",
            ));
        };
        // Another authzid makes the certificate's user a master user logging in as it.
        let authzid = authzid.filter(|z| *z != cert_user).map(str::to_owned);
        let creds = PlainCredentials { authcid: cert_user.to_owned(), authzid, password: Secret::default() };
        self.verify_plain(info, &creds).await
    }

    /// Looks a user up in the userdbs. `authenticated` is true right after a successful AUTH.
    ///
    /// The userdb chain, as Dovecot's: each userdb's fields are kept when it finds the user
    /// and rolled back otherwise; `return-ok`/`continue-ok` mark success, `return-fail` and
    /// `continue-fail` failure, and at the end the last userdb's own answer counts unless a rule
    /// decided. An internal failure with no success makes the lookup a temporary failure.
    pub async fn lookup_user(&self, user: &str, info: &RequestInfo, authenticated: bool) -> UserdbOutcome {
        self.lookup_user_prefetched(user, info, authenticated, None).await
    }

    /// [`Authenticator::lookup_user`] after a login whose passdb returned `userdb_*` fields, which
    /// a `prefetch` userdb answers with.
    pub async fn lookup_user_prefetched(&self, user: &str, info: &RequestInfo, authenticated: bool, prefetch: Option<&Fields>) -> UserdbOutcome {
        let mut fields = Fields::new();
        let mut snapshot = Fields::new();
        let mut success = false; // set by the -ok rules, cleared by continue-fail
        let mut forced_fail = false; // return-fail
        let mut last_found = false;
        let mut internal: Option<String> = None;
        for entry in &self.userdbs {
            let found_so_far = success || last_found;
            match entry.rules.skip {
                UserdbSkip::Found if found_so_far => continue,
                UserdbSkip::NotFound if !found_so_far => continue,
                _ => {}
            }
            let outcome = if !authenticated && entry.db.needs_passdb_check() {
                match self.lookup_pass(user, info).await {
                    PassLookup::Found(_) => entry.db.lookup(userdb::Lookup { user, info, authenticated, prefetch }).await,
                    PassLookup::NotFound => UserdbOutcome::NotFound,
                    PassLookup::Failed(why) => UserdbOutcome::InternalFailure(why),
                }
            } else {
                entry.db.lookup(userdb::Lookup { user, info, authenticated, prefetch }).await
            };
            let rule = match outcome {
                UserdbOutcome::Found(found) => {
                    let layered = layer_fields(&entry.rules.default_fields, &found, &entry.rules.override_fields, user, info);
                    for (k, v) in layered.iter() {
                        fields.set(k, v);
                    }
                    snapshot = fields.clone();
                    last_found = true;
                    entry.rules.result_success
                }
                UserdbOutcome::NotFound => {
                    fields = snapshot.clone();
                    last_found = false;
                    entry.rules.result_failure
                }
                UserdbOutcome::InternalFailure(why) => {
                    tracing::error!(driver = entry.db.driver(), user = ?sanitize(user.as_bytes(), 128), reason = ?sanitize(why.as_bytes(), 256), "userdb failure");
                    fields = snapshot.clone();
                    internal = Some(why);
                    last_found = false;
                    entry.rules.result_internalfail
                }
            };
            match rule {
                Rule::Return => break,
                Rule::ReturnOk => {
                    success = true;
                    break;
                }
                Rule::ReturnFail => {
                    forced_fail = true;
                    break;
                }
                Rule::Continue => {}
                Rule::ContinueOk => success = true,
                Rule::ContinueFail => success = false,
            }
        }
        match (!forced_fail && (success || last_found), internal) {
            (true, _) => UserdbOutcome::Found(snapshot),
            (false, Some(why)) => UserdbOutcome::InternalFailure(why),
            (false, None) => UserdbOutcome::NotFound,
        }
    }

    /// A passdb lookup without a password (master `PASS`): only passdbs that serve
    /// mechanism-less lookups take part.
    pub async fn lookup_pass(&self, user: &str, info: &RequestInfo) -> PassLookup {
        let result = self.passdb_chain(user, info, chain::Op::Lookup).await;
        match result.outcome {
            PassdbOutcome::Ok => {
                let fields = visible_fields(&result.user, &result.fields).1;
                let mut shown = Fields::new();
                append_passdb_fields(&mut shown, &fields, |k| !k.starts_with("userdb_"));
                PassLookup::Found(shown)
            }
            PassdbOutcome::InternalFailure(why) => PassLookup::Failed(why),
            _ => PassLookup::NotFound,
        }
    }

    /// Every user of every userdb that can iterate, streamed: each userdb's list is asked for
    /// when the one before it ends. An `Err` ends the listing (also when no userdb can list).
    pub fn list_users(&self) -> UserListing<'_> {
        UserListing { dbs: self.userdbs.iter(), current: None, any: false }
    }
}

/// The users of every userdb that can iterate, one at a time (see [`Authenticator::list_users`]).
#[derive(Debug)]
pub struct UserListing<'a> {
    dbs: std::slice::Iter<'a, chain::UserdbEntry>,
    current: Option<userdb::UserList>,
    any: bool,
}

impl UserListing<'_> {
    /// The next user name; `None` at the end.
    pub async fn next(&mut self) -> Option<Result<String, String>> {
        loop {
            if let Some(list) = self.current.as_mut() {
                match list.next().await {
                    Some(item) => return Some(item),
                    None => self.current = None,
                }
            }
            match self.dbs.next() {
                Some(entry) => {
                    if let Some(list) = entry.db.iterate().await {
                        self.any = true;
                        self.current = Some(list);
                    }
                }
                None if !self.any => {
                    self.any = true; // said once
                    return Some(Err("no userdb can list users".into()));
                }
                None => return None,
            }
        }
    }
}

/// A successful passdb's fields as a reply shows them, and the user name after its `user`
/// field (a passdb may rename the user).
fn visible_fields(user: &str, passdb_fields: &Fields) -> (String, Fields) {
    let mut fields = Fields::new();
    let mut user = user.to_owned();
    for (k, v) in passdb_fields.iter() {
        if k == "user" && !v.is_empty() {
            v.clone_into(&mut user);
        } else if !HIDDEN_PASSDB_FIELDS.contains(&k) {
            // `userdb_*` fields stay: the server keeps them for a `prefetch` userdb and never
            // writes them into an OK line.
            fields.set(k, v);
        }
    }
    (user, fields)
}

/// Appends a passdb's fields to a reply (OK, PASS) as Dovecot writes them: the ones `shown`
/// lets through, in order, and, when the passdb returned `userdb_*` fields but nothing that is
/// shown, one empty field: Dovecot writes the TAB before the passdb's fields whenever it
/// returned any (`OK\t1\tuser=alice\t`, `PASS\t1\tuser=alice\t`).
fn append_passdb_fields(reply: &mut Fields, fields: &Fields, shown: impl Fn(&str) -> bool) {
    if fields.iter().any(|(k, _)| k.starts_with("userdb_")) && !fields.iter().any(|(k, _)| shown(k)) {
        reply.set("", "");
    }
    for (k, v) in fields.iter().filter(|(k, _)| shown(k)) {
        reply.set(k, v);
    }
}

/// The `userdb_*` fields of a passdb answer, prefix removed: what a `prefetch` userdb returns.
pub fn prefetch_fields(fields: &Fields) -> Fields {
    let mut out = Fields::new();
    for (k, v) in fields.iter() {
        if let Some(k) = k.strip_prefix("userdb_") {
            if !k.is_empty() {
                out.set(k, v);
            }
        }
    }
    out
}

/// The result of a credentials lookup.
#[derive(Debug)]
pub enum CredentialsOutcome {
    /// A passdb had the credential.
    Found {
        /// The user name after `username_format` and the passdb's `user` field.
        user: String,
        /// The name the mechanism gave, when it differs.
        original_user: Option<String>,
        /// The passdb's visible extra fields.
        fields: Fields,
        /// The credential, raw.
        credential: Secret,
    },
    /// No credential: the request fails.
    Failed(Failure),
    /// No credential, but the mechanism must go on as if there were one ([`decoy`]): it gets
    /// `credential`, and the request ends with `failure` whatever the client answers.
    Decoy {
        /// The real outcome, logged and sent when the exchange ends.
        failure: Failure,
        /// A decoy credential in the requested scheme.
        credential: Secret,
    },
}

/// The result of a passdb lookup without a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassLookup {
    /// Found, with its (visible) fields.
    Found(Fields),
    /// No passdb knows the user.
    NotFound,
    /// A passdb could not answer.
    Failed(String),
}
