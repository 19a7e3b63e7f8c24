//! Configuration: YAML loaded in two stages.
//!
//! `raw` mirrors the file with serde (unknown keys are errors). Validation turns it into a
//! [`Config`] whose values are typed: durations, octal modes, parsed `%variable` templates,
//! mechanism descriptors and scheme ids, paths resolved against the config file's folder. Every
//! error names the file, the line and the setting, and says what to do. The YAML crate is used in
//! this module only, so it can be swapped in one place.

pub mod ldap;
mod locate;
mod raw;
pub mod rules;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use locate::Seg;

use crate::request::nets::NetList;
use crate::request::var::Template;
use crate::sasl::{self, MechInfo, PassdbNeed};
use crate::scheme::Scheme;
use rules::{MechFilter, PassdbRules, Rule, Skip, UserdbRules, UserdbSkip, UsernameFilter};

/// The configuration used when `saslgate` runs without `--config`: sockets under `./run/`, a
/// demo passwd-file beside it. Its users are listed in the README.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../conf.example/minimal.yaml");
/// The demo passwd-file of the embedded default (written to `./run/users.passwd`).
pub const EMBEDDED_USERS: &str = include_str!("../../conf.example/users.passwd");

/// A configuration error, with where it is and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (or `<embedded default>`).
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// The setting, as a path (`passdbs[0].scheme`).
    pub setting: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}: {}", self.file, line, self.setting, self.message),
            None => write!(f, "{}: {}: {}", self.file, self.setting, self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// A setting that loads but that the admin must see (e.g. a `nopassword` passdb that serves
/// every mechanism). Collected while the config is validated, before logging starts; the daemon
/// logs each one once logging is up, and `saslgate check` prints them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// The file (or `<embedded default>`).
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// The setting, as a path (`passdbs[0].fields`).
    pub setting: String,
    /// What is risky and what to do.
    pub message: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}: {}", self.file, line, self.setting, self.message),
            None => write!(f, "{}: {}: {}", self.file, self.setting, self.message),
        }
    }
}

/// What a listener speaks (`type:` in the YAML, by name; without it, from the socket name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerKind {
    /// Client protocol, auth-only (Postfix, Exim, `doveadm auth test`).
    Client,
    /// Client protocol for login processes: OK'd requests wait for a master REQUEST.
    Login,
    /// Master protocol: REQUEST, USER, PASS, LIST, CACHE-FLUSH.
    Master,
    /// Master protocol limited to USER, PASS, LIST.
    Userdb,
}

impl ListenerKind {
    /// Dovecot's rule: the text after the last `-` of the file name (or the whole name).
    pub fn from_socket_name(path: &Path) -> ListenerKind {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let suffix = name.rsplit('-').next().unwrap_or_default();
        match suffix {
            "login" => ListenerKind::Login,
            "master" => ListenerKind::Master,
            "userdb" => ListenerKind::Userdb,
            _ => ListenerKind::Client,
        }
    }

    /// Whether this listener speaks the client protocol.
    pub fn is_client(self) -> bool {
        matches!(self, ListenerKind::Client | ListenerKind::Login)
    }
}

/// One Unix socket to listen on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    /// The socket path (absolute).
    pub path: PathBuf,
    /// What it speaks.
    pub kind: ListenerKind,
    /// Permission bits.
    pub mode: u32,
    /// Owner, by name.
    pub user: Option<String>,
    /// Group, by name.
    pub group: Option<String>,
    /// This listener's `disable_plaintext_auth` (client protocol), over the service's and the
    /// global setting.
    pub disable_plaintext_auth: Option<bool>,
    /// Connections served at once on this listener; `None` takes `limits.max_connections`.
    /// Every listener has a budget of its own, so idle connections to one socket (a 0666
    /// auth-userdb) cannot starve another (Postfix's auth-client).
    pub max_connections: Option<usize>,
}

impl ListenerConfig {
    /// Whether any local user may connect (the mode grants others write).
    pub fn world_accessible(&self) -> bool {
        self.mode & 0o002 != 0
    }
}

/// A validated passdb block: the driver and its chain rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassdbConfig {
    /// The driver and its settings.
    pub driver: PassdbDriver,
    /// Filters, result rules and field templates.
    pub rules: PassdbRules,
}

/// A passdb driver and its own settings.
/// `Debug` hides the static passdb's password.
#[derive(Clone, PartialEq, Eq)]
pub enum PassdbDriver {
    /// `driver: passwd-file`.
    PasswdFile {
        /// The file (may hold `%variables`).
        path: Template,
        /// Scheme of passwords without a `{SCHEME}` prefix (default CRYPT).
        scheme: Scheme,
        /// The key looked up in the file (default `%u`).
        username_format: Template,
    },
    /// `driver: static`: every user exists, with this password (or `nopassword` in `fields`).
    Static {
        /// The password template (`{SCHEME}…`, default scheme PLAIN); none with `nopassword`.
        password: Option<Template>,
        /// Extra field templates.
        fields: Vec<(String, Template)>,
    },
    /// `driver: pam`: PAM checks the password (verify-only: PLAIN and LOGIN).
    Pam {
        /// The PAM service name; `*` in the file means `%Ls`, the request's service lowercased
        /// (Dovecot's `*`). Default `saslgate` (Dovecot's default is `dovecot`).
        service: Template,
        /// Put what the PAM modules said into a failure's `reason` field.
        failure_show_msg: bool,
        /// Open and close a PAM session after the account check.
        session: bool,
        /// Establish credentials with `pam_setcred`.
        setcred: bool,
        /// How long one PAM transaction may take before the login gets a temporary failure
        /// (default 60s, Dovecot's auth-worker lookup timeout).
        timeout: Duration,
        /// PAM transactions at once, each on its own thread (default 16).
        max_requests: usize,
        /// Where the service files are read from (`pam_start_confdir`); none means /etc/pam.d.
        config_dir: Option<PathBuf>,
    },
    /// `driver: ldap`: a directory, in lookup mode (the stored password is verified here) or
    /// in `auth_bind` mode (the directory checks the password with a bind).
    Ldap(Box<ldap::LdapPassdb>),
    /// `driver: shadow`: system users' hashes from a shadow file (verified as CRYPT).
    Shadow {
        /// The shadow file (default `/etc/shadow`).
        path: PathBuf,
    },
}

impl fmt::Debug for PassdbDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PassdbDriver::PasswdFile { path, scheme, username_format } => {
                f.debug_struct("PasswdFile").field("path", path).field("scheme", scheme).field("username_format", username_format).finish()
            }
            PassdbDriver::Static { password, fields } => {
                f.debug_struct("Static").field("password", &password.as_ref().map(|_| "<hidden>")).field("fields", fields).finish()
            }
            PassdbDriver::Pam { service, failure_show_msg, session, setcred, timeout, max_requests, config_dir } => f
                .debug_struct("Pam")
                .field("service", service)
                .field("failure_show_msg", failure_show_msg)
                .field("session", session)
                .field("setcred", setcred)
                .field("timeout", timeout)
                .field("max_requests", max_requests)
                .field("config_dir", config_dir)
                .finish(),
            PassdbDriver::Ldap(ldap) => f.debug_tuple("Ldap").field(ldap).finish(),
            PassdbDriver::Shadow { path } => f.debug_struct("Shadow").field("path", path).finish(),
        }
    }
}

/// The default `first_valid_uid` of the passwd userdb (Dovecot's).
pub const PASSWD_DEFAULT_FIRST_VALID_UID: u32 = 500;

/// The default `service` of the pam passdb.
pub const PAM_DEFAULT_SERVICE: &str = "saslgate";
/// The default `timeout` of the pam passdb (Dovecot's auth-worker lookup timeout).
pub const PAM_DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// The default `max_requests` of the pam passdb.
pub const PAM_DEFAULT_MAX_REQUESTS: usize = 16;
/// The largest `max_requests` accepted: each slot may become a hung thread.
pub const PAM_MAX_MAX_REQUESTS: usize = 1024;

impl PassdbConfig {
    /// Whether this passdb can ever answer a credentials lookup (CRAM-MD5, DIGEST-MD5, SCRAM).
    pub fn can_lookup_credentials(&self) -> bool {
        match &self.driver {
            PassdbDriver::PasswdFile { .. } | PassdbDriver::Static { .. } => true,
            // Crypt hashes only: never a credential for CRAM-MD5, DIGEST-MD5 or SCRAM.
            PassdbDriver::Shadow { .. } => false,
            PassdbDriver::Pam { .. } => false,
            PassdbDriver::Ldap(ldap) => !ldap.auth_bind,
        }
    }
}

/// A validated userdb block: the driver and its chain rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserdbConfig {
    /// The driver and its settings.
    pub driver: UserdbDriver,
    /// Skip and result rules, field templates.
    pub rules: UserdbRules,
}

/// A userdb driver and its own settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserdbDriver {
    /// `driver: prefetch`: the `userdb_*` fields the passdb returned at login.
    Prefetch,
    /// `driver: passwd-file`.
    PasswdFile {
        /// The file (may hold `%variables`).
        path: Template,
        /// The key looked up in the file (default `%u`).
        username_format: Template,
    },
    /// `driver: static`.
    Static {
        /// Field templates.
        fields: Vec<(String, Template)>,
        /// Answer for any user name without asking the passdbs whether it exists.
        allow_all_users: bool,
    },
    /// `driver: ldap`.
    Ldap(Box<ldap::LdapUserdb>),
    /// `driver: passwd`: system users through NSS (`getpwnam`); LIST keeps uids in
    /// `first_valid_uid..=last_valid_uid`.
    Passwd {
        /// The lowest uid LIST returns (default 500, Dovecot's `first_valid_uid`).
        first_valid_uid: u32,
        /// The highest uid LIST returns; `None` (the default, or 0 as in Dovecot) for no bound.
        last_valid_uid: Option<u32>,
    },
}

/// Resource limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once on each listener that sets no `max_connections` of its own.
    pub max_connections: usize,
    /// Requests in flight on one connection.
    pub max_requests_per_connection: usize,
    // Request-layer bounds.
    /// Longest password a plaintext mechanism may send, in bytes (`limits.max_password_length`,
    /// default 1024); a longer one fails without being hashed.
    pub max_password_length: usize,
    /// Longest user name (authentication or authorization id) a mechanism may send, in bytes
    /// (`limits.max_username_length`, default 512); a longer one fails at once.
    pub max_username_length: usize,
    /// Requests in flight over the whole daemon (`limits.max_requests`, default 10,000).
    pub max_requests: usize,
    /// Bytes of client data held by the requests in flight over the whole daemon: initial
    /// responses and every CONT response (`limits.max_request_bytes`, default 16 MiB).
    pub max_request_bytes: usize,
    /// Connections one peer uid may hold on a world-accessible listener (mode with o+w); root,
    /// the socket's owner and peers in its group are exempt. 0 turns the cap off.
    pub max_connections_per_uid: usize,
    /// A connection that has not finished its handshake (VERSION, plus CPID on the client
    /// protocol) by then is closed.
    pub handshake_timeout: Duration,
    /// On SIGTERM, how long requests in flight may take to finish before the daemon exits.
    pub shutdown_timeout: Duration,
}

/// Default `limits.max_password_length`.
pub const DEFAULT_MAX_PASSWORD_LENGTH: usize = 1024;
/// Default `limits.max_username_length`: room for any e-mail address (RFC 5321: 64 + 1 + 255).
pub const DEFAULT_MAX_USERNAME_LENGTH: usize = 512;
/// Default `limits.max_requests`.
pub const DEFAULT_MAX_REQUESTS: usize = 10_000;
/// Default `limits.max_request_bytes`.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;

/// The largest connection budget of one listener (the drain at shutdown counts in u32).
pub const MAX_CONNECTIONS_LIMIT: usize = 1_000_000;

/// The blocking pool's size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// Worker threads; 0 means one per core.
    pub threads: usize,
    /// Jobs that may wait; beyond, new expensive work fails at once (temporary failure).
    pub queue: usize,
    /// The workers' CPU priority below the reactor's (`pool.nice`, `pool.scheduling`).
    pub priority: crate::blocking::Priority,
}

/// The most `reactor.threads`.
pub const MAX_REACTOR_THREADS: usize = 256;

/// Default `pool.nice`: the hashing threads yield the CPU to the reactor (cheap logins) at once.
pub const DEFAULT_POOL_NICE: u8 = 10;

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it came from (for messages).
    pub source: String,
    /// The folder relative paths were resolved against.
    pub base_dir: PathBuf,
    /// Drop to this user after binding the sockets.
    pub user: Option<String>,
    /// Drop to this group after binding the sockets.
    pub group: Option<String>,
    /// Supplementary groups kept after the drop (`extra_groups`, e.g. `winbindd_priv` for
    /// `ntlm_auth`, `shadow` for PAM's pam_unix); none by default: every other group is cleared.
    pub extra_groups: Vec<String>,
    /// The sockets.
    pub listeners: Vec<ListenerConfig>,
    /// Mechanisms offered, in order.
    pub mechanisms: Vec<&'static MechInfo>,
    /// Host name used in challenges (`auth.hostname`, default the system's).
    pub hostname: String,
    /// Realms DIGEST-MD5 offers (`auth.realms`).
    pub realms: Vec<String>,
    /// Longest penalty delay for a remote address with recent failures (`auth.penalty_max`).
    pub penalty_max: Duration,
    /// Also delay by account after failures (`auth.account_penalty`).
    pub account_penalty: bool,
    /// Global authentication settings.
    pub auth: AuthSettings,
    /// Limits.
    pub limits: Limits,
    /// Pool size.
    pub pool: PoolConfig,
    /// `reactor.threads`: threads of the async reactor (sockets, protocol, cheap logins, LDAP
    /// I/O). 1 (the default) runs it on one thread, which costs the least CPU per login and gives
    /// the shortest tail latency; hashing, PAM and NSS run on their pools whatever this is.
    /// 0 means one per core.
    pub reactor_threads: usize,
    /// Default log filter (`info`, `debug`, or a tracing filter).
    pub log_level: String,
    /// `log.successes`: one `auth succeeded` line per successful login (default off, as
    /// Dovecot's `auth_verbose = no`). Failures are always logged.
    pub log_successes: bool,
    /// Password databases, in chain order.
    pub passdbs: Vec<PassdbConfig>,
    /// User databases, in chain order.
    pub userdbs: Vec<UserdbConfig>,
    /// The `ntlm_auth` helpers for NTLM and GSS-SPNEGO (`auth.winbind_helper_path`,
    /// `auth.winbind.{args,env,helpers,timeout,busy_timeout}`); one pool per mechanism.
    pub winbind: WinbindSettings,
    /// Settings that load but that the admin must see, in file order; logged at start-up and
    /// printed by `saslgate check`.
    pub warnings: Vec<ConfigWarning>,
}

/// Global authentication settings.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// `username_format` (default `%Lu`).
    pub username_format: Template,
    /// `failure_delay` (default 2 s).
    pub failure_delay: Duration,
    /// `anonymous_username`: who ANONYMOUS logs in as (default `anonymous`).
    pub anonymous_username: String,
    /// `ssl_username_from_cert`: take the user name from a valid client certificate.
    pub ssl_username_from_cert: bool,
    /// `ssl_require_client_cert`: refuse requests without a valid client certificate.
    pub ssl_require_client_cert: bool,
    /// `disable_plaintext_auth`: plaintext mechanisms only on secured connections.
    pub disable_plaintext_auth: bool,
    /// `trusted_networks`: remote addresses that count as secured (CIDRs).
    pub trusted_networks: NetList,
    /// Per-service overrides (`services: { smtp: { ssl_require_client_cert: false } }`).
    pub services: std::collections::HashMap<String, ServicePolicy>,
    /// The verification cache (`auth.cache`).
    pub cache: CacheConfig,
    /// `master_user_separator`: `login*master` logs a master user in as `login`.
    pub master_user_separator: Option<String>,
    /// `username_chars`: the characters a user name may hold (`None`: any).
    pub username_chars: Option<String>,
    /// `username_translation`: character pairs applied to every user name.
    pub username_translation: Vec<(char, char)>,
    /// `default_realm`: appended as `@realm` to names without a domain.
    pub default_realm: Option<String>,
}

/// Dovecot 2.3's default `auth_username_chars`.
pub const DEFAULT_USERNAME_CHARS: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ01234567890.-_@";

/// Settings a `services:` entry may override for one service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServicePolicy {
    /// Overrides `auth.ssl_require_client_cert`.
    pub ssl_require_client_cert: Option<bool>,
    /// Overrides `auth.disable_plaintext_auth`.
    pub disable_plaintext_auth: Option<bool>,
}

/// Cache settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// Entries kept at most; 0 turns the cache off.
    pub size: usize,
    /// How long a success is remembered.
    pub ttl: Duration,
    /// How long a failure is remembered.
    pub negative_ttl: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig { size: 0, ttl: Duration::from_secs(3600), negative_ttl: Duration::from_secs(60) }
    }
}

/// How the helpers are started and bounded.
#[derive(Clone, PartialEq, Eq)]
pub struct WinbindSettings {
    /// The helper program (`auth.winbind_helper_path`, default `/usr/bin/ntlm_auth`).
    pub helper_path: PathBuf,
    /// Arguments before `--helper-protocol=…` (e.g. `--require-membership-of=…`).
    pub args: Vec<String>,
    /// The helper's whole environment (it inherits nothing).
    pub env: BTreeMap<String, String>,
    /// Most helper processes per mechanism.
    pub helpers: usize,
    /// Longest wait for one helper answer.
    pub timeout: Duration,
    /// Longest wait for a free helper.
    pub busy_timeout: Duration,
    /// Longest helper answer line accepted.
    pub max_line: usize,
}

impl Default for WinbindSettings {
    fn default() -> Self {
        WinbindSettings {
            helper_path: PathBuf::from("/usr/bin/ntlm_auth"),
            args: Vec::new(),
            env: BTreeMap::new(),
            helpers: 4,
            timeout: Duration::from_secs(10),
            busy_timeout: Duration::from_secs(5),
            max_line: sasl::winbind::MAX_HELPER_LINE,
        }
    }
}

impl fmt::Debug for WinbindSettings {
    // The environment may hold secrets (a KRB5 keytab password, a machine password): names only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WinbindSettings")
            .field("helper_path", &self.helper_path)
            .field("args", &self.args)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("helpers", &self.helpers)
            .field("timeout", &self.timeout)
            .field("busy_timeout", &self.busy_timeout)
            .field("max_line", &self.max_line)
            .finish()
    }
}

/// Loads and validates a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    load_with(path, false)
}

/// Loads and validates the config of `saslgate --dovecot-service`: Dovecot's master hands the
/// sockets over, so `listeners:` may be empty or absent (any listed are ignored by the caller).
pub fn load_for_dovecot_service(path: &Path) -> Result<Config, ConfigError> {
    load_with(path, true)
}

fn load_with(path: &Path, listeners_optional: bool) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: file.clone(),
        line: None,
        setting: "(file)".into(),
        message: format!("cannot read the config file: {e}"),
    })?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let base = if base.as_os_str().is_empty() { PathBuf::from(".") } else { base };
    let base = std::fs::canonicalize(&base).unwrap_or(base);
    parse_with(&text, &file, &base, listeners_optional)
}

/// Parses and validates config text. Relative paths resolve against `base_dir`.
pub fn parse(text: &str, file: &str, base_dir: &Path) -> Result<Config, ConfigError> {
    parse_with(text, file, base_dir, false)
}

fn parse_with(text: &str, file: &str, base_dir: &Path, listeners_optional: bool) -> Result<Config, ConfigError> {
    let raw: raw::Root = if text.trim().is_empty() {
        raw::Root::default()
    } else {
        serde_norway::from_str(text).map_err(|e| {
            // serde names the setting first (`passdbs[0].result_success: unknown variant …`)
            // and the position last; the error keeps them apart.
            let text = e.to_string();
            let text = text.split(" at line ").next().unwrap_or(&text);
            let (setting, message) = match text.split_once(": ") {
                Some((path, rest)) if !path.contains(' ') => (path.to_owned(), rest.to_owned()),
                _ => ("(syntax)".to_owned(), text.to_owned()),
            };
            ConfigError {
                file: file.to_owned(),
                line: e.location().map(|l| l.line()),
                setting,
                message: format!("{message}; see conf.example/saslgate.yaml for every setting"),
            }
        })?
    };
    Validator { text, file, base_dir, listeners_optional, warnings: Default::default() }.config(raw)
}

struct Validator<'a> {
    text: &'a str,
    file: &'a str,
    base_dir: &'a Path,
    /// `--dovecot-service`: the listeners come from Dovecot, so none need be configured.
    listeners_optional: bool,
    /// Warnings found so far; moved into `Config::warnings` at the end.
    warnings: std::cell::RefCell<Vec<ConfigWarning>>,
}

fn setting_name(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) if out.is_empty() => out.push_str(k),
            Seg::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

fn key(k: &str) -> Seg {
    Seg::Key(k.to_owned())
}

impl Validator<'_> {
    fn err(&self, path: &[Seg], message: impl Into<String>) -> ConfigError {
        ConfigError { file: self.file.to_owned(), line: locate::line_of(self.text, path), setting: setting_name(path), message: message.into() }
    }

    fn warn(&self, path: &[Seg], message: impl Into<String>) {
        let w = ConfigWarning { file: self.file.to_owned(), line: locate::line_of(self.text, path), setting: setting_name(path), message: message.into() };
        self.warnings.borrow_mut().push(w);
    }

    fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.base_dir.join(p)
        }
    }

    fn template(&self, path: &[Seg], value: &str) -> Result<Template, ConfigError> {
        Template::parse(value).map_err(|e| self.err(path, format!("{e}; known variables: %u %n %d %s %l %r %a %b %h %p %m %c %k and %{{user}} %{{session}} %{{real_rip}} …; modifiers L U E X R M D T and %3u / %-3u / %1.2u slices; %% is a literal %")))
    }

    fn config(&self, raw: raw::Root) -> Result<Config, ConfigError> {
        let listeners = self.listeners(&raw.listeners)?;
        let mechanisms = self.mechanisms(raw.auth.mechanisms.as_deref())?;
        let winbind = self.winbind(&raw.auth)?;
        let failure_delay = match &raw.auth.failure_delay {
            None => Duration::from_secs(2),
            Some(d) => parse_duration(d)
                .ok_or_else(|| self.err(&[key("auth"), key("failure_delay")], format!("`{d}` is not a duration; write e.g. 2s, 500ms or 0s")))?,
        };
        if failure_delay > Duration::from_secs(8) {
            return Err(self.err(&[key("auth"), key("failure_delay")], "more than 8s would run into Postfix's 10s reply timeout; use at most 8s"));
        }
        let account_penalty = raw.auth.account_penalty.unwrap_or(false);
        // With `account_penalty`, one request can wait out two penalties (its address's, then
        // its account's): the default halves so the sum stays what it was.
        let penalty_max = match &raw.auth.penalty_max {
            None if account_penalty => Duration::from_secs(3),
            None => Duration::from_secs(6),
            Some(d) => {
                parse_duration(d).ok_or_else(|| self.err(&[key("auth"), key("penalty_max")], format!("`{d}` is not a duration; write e.g. 6s or 0s")))?
            }
        };
        self.check_reply_time(penalty_max, account_penalty, failure_delay, raw.auth.penalty_max.is_some())?;
        let cache = {
            let raw_cache = raw.auth.cache.as_ref();
            let default = CacheConfig::default();
            let dur = |name: &str, value: Option<&String>, default: Duration| -> Result<Duration, ConfigError> {
                match value {
                    None => Ok(default),
                    Some(d) => parse_duration(d)
                        .ok_or_else(|| self.err(&[key("auth"), key("cache"), key(name)], format!("`{d}` is not a duration; write e.g. 1h, 10m or 30s"))),
                }
            };
            CacheConfig {
                size: raw_cache.and_then(|c| c.size).unwrap_or(default.size),
                ttl: dur("ttl", raw_cache.and_then(|c| c.ttl.as_ref()), default.ttl)?,
                negative_ttl: dur("negative_ttl", raw_cache.and_then(|c| c.negative_ttl.as_ref()), default.negative_ttl)?,
            }
        };
        // Pairs of characters: `#@/@` maps # to @ and / to @.
        let username_translation = match raw.auth.username_translation.as_deref() {
            None | Some("") => Vec::new(),
            Some(t) => {
                let chars: Vec<char> = t.chars().collect();
                if chars.len() % 2 != 0 {
                    return Err(self.err(&[key("auth"), key("username_translation")], "needs pairs of characters (from, to), e.g. \"#@/@\""));
                }
                chars.chunks(2).map(|p| (p[0], p[1])).collect()
            }
        };
        let username_format = self.template(&[key("auth"), key("username_format")], raw.auth.username_format.as_deref().unwrap_or("%Lu"))?;
        let passdbs = raw.passdbs.iter().enumerate().map(|(i, db)| self.passdb(&[key("passdbs"), Seg::Index(i)], db)).collect::<Result<Vec<_>, _>>()?;
        let userdbs = raw.userdbs.iter().enumerate().map(|(i, db)| self.userdb(&[key("userdbs"), Seg::Index(i)], db)).collect::<Result<Vec<_>, _>>()?;
        if passdbs.is_empty() && mechanisms.iter().any(|m| m.need == PassdbNeed::VerifyPlain) {
            return Err(self.err(
                &[key("passdbs")],
                "no passdb is configured, so no mechanism can check a password; add a passdb (e.g. `- { driver: passwd-file, path: users.passwd }`)",
            ));
        }
        for (i, m) in mechanisms.iter().enumerate() {
            if let PassdbNeed::Credentials(scheme) = m.need {
                if !passdbs.iter().any(PassdbConfig::can_lookup_credentials) {
                    return Err(self.err(
                        &[key("auth"), key("mechanisms"), Seg::Index(i)],
                        format!(
                            "{} needs {} credentials, and no configured passdb can look credentials up; remove the mechanism or add a passwd-file passdb",
                            m.name,
                            scheme.as_str()
                        ),
                    ));
                }
            }
        }
        let mut trusted_networks = NetList::default();
        for (i, net) in raw.auth.trusted_networks.iter().flatten().enumerate() {
            let one = NetList::parse_items([net.as_str()]).map_err(|_| {
                self.err(&[key("auth"), key("trusted_networks"), Seg::Index(i)], format!("`{net}` is not an address or CIDR; write e.g. 192.0.2.0/24 or ::1"))
            })?;
            trusted_networks.extend(one);
        }
        let hostname = match raw.auth.hostname {
            Some(h) if !h.is_empty() => h,
            _ => nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "localhost".into()),
        };
        let duration = |name: &str, value: &Option<String>, default: Duration| -> Result<Duration, ConfigError> {
            match value {
                None => Ok(default),
                Some(d) => match parse_duration(d) {
                    Some(v) if !v.is_zero() => Ok(v),
                    _ => Err(self.err(&[key("limits"), key(name)], format!("`{d}` is not a positive duration; write e.g. 30s or 500ms"))),
                },
            }
        };
        let limits = Limits {
            max_connections: connection_budget(raw.limits.max_connections, 1000).map_err(|m| self.err(&[key("limits"), key("max_connections")], m))?,
            max_requests_per_connection: positive(raw.limits.max_requests_per_connection, 256)
                .map_err(|m| self.err(&[key("limits"), key("max_requests_per_connection")], m))?,
            // Request-layer bounds.
            max_password_length: positive(raw.limits.max_password_length, DEFAULT_MAX_PASSWORD_LENGTH)
                .map_err(|m| self.err(&[key("limits"), key("max_password_length")], m))?,
            max_username_length: positive(raw.limits.max_username_length, DEFAULT_MAX_USERNAME_LENGTH)
                .map_err(|m| self.err(&[key("limits"), key("max_username_length")], m))?,
            max_requests: positive(raw.limits.max_requests, DEFAULT_MAX_REQUESTS).map_err(|m| self.err(&[key("limits"), key("max_requests")], m))?,
            max_request_bytes: match raw.limits.max_request_bytes {
                Some(n) if n < crate::protocol::CLIENT_MAX_LINE => {
                    return Err(self.err(
                        &[key("limits"), key("max_request_bytes")],
                        format!("{n} is less than one full request line; use at least {}", crate::protocol::CLIENT_MAX_LINE),
                    ));
                }
                n => n.unwrap_or(DEFAULT_MAX_REQUEST_BYTES),
            },
            max_connections_per_uid: raw.limits.max_connections_per_uid.unwrap_or(100),
            handshake_timeout: duration("handshake_timeout", &raw.limits.handshake_timeout, Duration::from_secs(30))?,
            shutdown_timeout: duration("shutdown_timeout", &raw.limits.shutdown_timeout, Duration::from_secs(10))?,
        };
        let pool = PoolConfig {
            threads: raw.pool.threads.unwrap_or(0),
            queue: positive(raw.pool.queue, 4096).map_err(|m| self.err(&[key("pool"), key("queue")], m))?,
            priority: crate::blocking::Priority {
                nice: match raw.pool.nice {
                    None => DEFAULT_POOL_NICE,
                    Some(n) => u8::try_from(n).ok().filter(|n| *n <= 19).ok_or_else(|| {
                        self.err(
                            &[key("pool"), key("nice")],
                            format!("{n} is not a nice value for the hashing threads; use 0 (the reactor's) to 19 (the lowest)"),
                        )
                    })?,
                },
                scheduling: match raw.pool.scheduling.as_deref() {
                    None | Some("normal") => crate::blocking::Scheduling::Normal,
                    Some("batch") => crate::blocking::Scheduling::Batch,
                    Some("idle") => crate::blocking::Scheduling::Idle,
                    Some(other) => {
                        return Err(self.err(&[key("pool"), key("scheduling")], format!("`{other}` is not a scheduling policy; use normal, batch or idle")))
                    }
                },
            },
        };
        let reactor_threads = match raw.reactor.threads {
            None => 1,
            Some(n) if n <= MAX_REACTOR_THREADS => n,
            Some(n) => {
                return Err(self.err(
                    &[key("reactor"), key("threads")],
                    format!("{n} reactor threads is too many; use 1 (the default), up to {MAX_REACTOR_THREADS}, or 0 for one per core"),
                ))
            }
        };
        let log_level = raw.log.level.unwrap_or_else(|| "info".to_owned());
        if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
            return Err(self.err(&[key("log"), key("level")], format!("`{log_level}` is not a log level; use error, warn, info, debug or trace")));
        }
        Ok(Config {
            source: self.file.to_owned(),
            base_dir: self.base_dir.to_owned(),
            extra_groups: match (&raw.user, raw.extra_groups) {
                (None, Some(g)) if !g.is_empty() => {
                    return Err(self.err(&[key("extra_groups")], "`extra_groups:` is set without `user:`; they are kept when saslgate drops to that user"))
                }
                (_, g) => g.unwrap_or_default(),
            },
            user: raw.user,
            group: raw.group,
            listeners,
            mechanisms,
            hostname,
            realms: raw.auth.realms.unwrap_or_default(),
            penalty_max,
            account_penalty,
            auth: AuthSettings {
                username_format,
                failure_delay,
                anonymous_username: raw.auth.anonymous_username.unwrap_or_else(|| "anonymous".into()),
                ssl_username_from_cert: raw.auth.ssl_username_from_cert.unwrap_or(false),
                ssl_require_client_cert: raw.auth.ssl_require_client_cert.unwrap_or(false),
                disable_plaintext_auth: raw.auth.disable_plaintext_auth.unwrap_or(false),
                trusted_networks,
                services: raw
                    .services
                    .iter()
                    .map(|(name, s)| {
                        (name.clone(), ServicePolicy { ssl_require_client_cert: s.ssl_require_client_cert, disable_plaintext_auth: s.disable_plaintext_auth })
                    })
                    .collect(),
                cache,
                master_user_separator: raw.auth.master_user_separator.clone().filter(|s| !s.is_empty()),
                // Dovecot's default set; an empty value allows every character.
                username_chars: match raw.auth.username_chars.as_deref() {
                    None => Some(DEFAULT_USERNAME_CHARS.to_owned()),
                    Some("") => None,
                    Some(chars) => Some(chars.to_owned()),
                },
                username_translation,
                default_realm: raw.auth.default_realm.clone().filter(|r| !r.is_empty()),
            },
            limits,
            pool,
            reactor_threads,
            winbind,
            log_level,
            log_successes: raw.log.successes.unwrap_or(false),
            passdbs,
            userdbs,
            // Last: every validation step above has run and added its warnings.
            warnings: self.warnings.take(),
        })
    }

    /// Postfix waits 10 s for a reply. Every delay one failing request can meet must fit in
    /// it: the address's penalty, the account's penalty (`account_penalty`), the failure delay
    /// and its jitter (up to 250 ms). Otherwise Postfix answers 454 (try again) instead of 535.
    fn check_reply_time(&self, penalty_max: Duration, account_penalty: bool, failure_delay: Duration, penalty_set: bool) -> Result<(), ConfigError> {
        let jitter = Duration::from_millis(250);
        let account = if account_penalty { penalty_max } else { Duration::ZERO };
        let total = penalty_max + account + failure_delay + jitter;
        if total < Duration::from_secs(10) {
            return Ok(());
        }
        let parts = if account_penalty {
            format!("auth.penalty_max ({penalty_max:?}) for the address, again for the account (auth.account_penalty: true), auth.failure_delay ({failure_delay:?}) and up to 250ms jitter")
        } else {
            format!("auth.penalty_max ({penalty_max:?}), auth.failure_delay ({failure_delay:?}) and up to 250ms jitter")
        };
        // Name the setting the admin wrote: the one to lower.
        let at = if penalty_set { key("penalty_max") } else { key("failure_delay") };
        Err(self.err(
            &[key("auth"), at],
            format!(
                "{parts} add up to {total:?}, which is not below Postfix's 10s reply timeout; lower auth.penalty_max or auth.failure_delay{}",
                if account_penalty { ", or turn auth.account_penalty off" } else { "" }
            ),
        ))
    }

    /// NTLM and GSS-SPNEGO need no passdb (`PassdbNeed::Helper`): only the helper settings.
    fn winbind(&self, auth: &raw::Auth) -> Result<WinbindSettings, ConfigError> {
        let mut s = WinbindSettings::default();
        if let Some(path) = auth.winbind_helper_path.as_deref() {
            if !path.starts_with('/') {
                return Err(self.err(&[key("auth"), key("winbind_helper_path")], format!("`{path}` is not an absolute path; write e.g. /usr/bin/ntlm_auth")));
            }
            s.helper_path = PathBuf::from(path);
        }
        let Some(w) = &auth.winbind else { return Ok(s) };
        let at = |name: &str| [key("auth"), key("winbind"), key(name)];
        if let Some(args) = &w.args {
            if let Some(bad) = args.iter().find(|a| a.starts_with("--helper-protocol")) {
                return Err(self.err(&at("args"), format!("`{bad}` is chosen by the mechanism; remove it")));
            }
            s.args = args.clone();
        }
        if let Some(env) = &w.env {
            s.env = env.clone();
        }
        if let Some(n) = w.helpers {
            if n == 0 || n > 256 {
                return Err(self.err(&at("helpers"), "between 1 and 256 helper processes per mechanism"));
            }
            s.helpers = n;
        }
        for (name, value, slot) in [("timeout", &w.timeout, &mut s.timeout), ("busy_timeout", &w.busy_timeout, &mut s.busy_timeout)] {
            if let Some(d) = value {
                match parse_duration(d) {
                    Some(v) if !v.is_zero() => *slot = v,
                    _ => return Err(self.err(&at(name), format!("`{d}` is not a positive duration; write e.g. 10s or 500ms"))),
                }
            }
        }
        Ok(s)
    }

    fn listeners(&self, raw: &[raw::Listener]) -> Result<Vec<ListenerConfig>, ConfigError> {
        if raw.is_empty() && !self.listeners_optional {
            return Err(self.err(&[key("listeners")], "no listeners; add one, e.g. `- { path: run/auth-client, type: client, mode: \"0660\" }`"));
        }
        let mut out: Vec<ListenerConfig> = Vec::new();
        for (i, l) in raw.iter().enumerate() {
            let at = |k: &str| vec![key("listeners"), Seg::Index(i), key(k)];
            if l.path.is_empty() {
                return Err(self.err(&at("path"), "empty socket path"));
            }
            let path = self.resolve(&l.path);
            if out.iter().any(|o| o.path == path) {
                return Err(self.err(&at("path"), format!("{} is already used by another listener", path.display())));
            }
            let kind = l.kind.unwrap_or_else(|| ListenerKind::from_socket_name(&path));
            let mode = match &l.mode {
                None => 0o600,
                Some(serde_norway::Value::String(s)) => {
                    parse_mode(s).ok_or_else(|| self.err(&at("mode"), format!("`{s}` is not an octal mode; write it quoted, like \"0660\"")))?
                }
                Some(_) => {
                    return Err(self.err(&at("mode"), "write the mode as a quoted octal string, like \"0660\" (an unquoted number is ambiguous in YAML)"))
                }
            };
            if l.disable_plaintext_auth.is_some() && !kind.is_client() {
                return Err(self.err(&at("disable_plaintext_auth"), "only client and login listeners authenticate; remove this setting"));
            }
            let max_connections = match l.max_connections {
                None => None,
                Some(n) => Some(connection_budget(Some(n), n).map_err(|m| self.err(&at("max_connections"), m))?),
            };
            out.push(ListenerConfig {
                path,
                kind,
                mode,
                user: l.user.clone(),
                group: l.group.clone(),
                disable_plaintext_auth: l.disable_plaintext_auth,
                max_connections,
            });
        }
        Ok(out)
    }

    fn mechanisms(&self, raw: Option<&[String]>) -> Result<Vec<&'static MechInfo>, ConfigError> {
        let names: Vec<String> = match raw {
            None => vec!["plain".into(), "login".into()],
            Some(list) => list.to_vec(),
        };
        let mut out: Vec<&'static MechInfo> = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let mech = sasl::lookup(name).ok_or_else(|| {
                let known: Vec<&str> = sasl::MECHANISMS.iter().map(|m| m.name).collect();
                self.err(&[key("auth"), key("mechanisms"), Seg::Index(i)], format!("unknown mechanism `{name}`; this build knows {}", known.join(", ")))
            })?;
            if !out.iter().any(|m| m.name == mech.name) {
                out.push(mech);
            }
        }
        if out.is_empty() {
            return Err(self.err(&[key("auth"), key("mechanisms")], "no mechanisms; list at least one, e.g. [plain, login]"));
        }
        Ok(out)
    }

    fn only(&self, at: &[Seg], db: &raw::Db, allowed: &[&str]) -> Result<(), ConfigError> {
        let present = [
            ("path", db.path.is_some()),
            ("scheme", db.scheme.is_some()),
            ("username_format", db.username_format.is_some()),
            ("fields", db.fields.is_some()),
            ("allow_all_users", db.allow_all_users.is_some()),
            ("password", db.password.is_some()),
            ("service", db.service.is_some()),
            ("failure_show_msg", db.failure_show_msg.is_some()),
            ("session", db.session.is_some()),
            ("setcred", db.setcred.is_some()),
            ("timeout", db.timeout.is_some()),
            ("max_requests", db.max_requests.is_some()),
            ("config_dir", db.config_dir.is_some()),
            ("first_valid_uid", db.first_valid_uid.is_some()),
            ("last_valid_uid", db.last_valid_uid.is_some()),
            ("uris", db.uris.is_some()),
            ("dn", db.dn.is_some()),
            ("dnpass", db.dnpass.is_some()),
            ("dnpass_file", db.dnpass_file.is_some()),
            ("base", db.base.is_some()),
            ("scope", db.scope.is_some()),
            ("deref", db.deref.is_some()),
            ("auth_bind", db.auth_bind.is_some()),
            ("auth_bind_userdn", db.auth_bind_userdn.is_some()),
            ("pass_filter", db.pass_filter.is_some()),
            ("pass_attrs", db.pass_attrs.is_some()),
            ("user_filter", db.user_filter.is_some()),
            ("user_attrs", db.user_attrs.is_some()),
            ("iterate_filter", db.iterate_filter.is_some()),
            ("iterate_attrs", db.iterate_attrs.is_some()),
            ("tls", db.tls.is_some()),
            ("tls_ca_cert_file", db.tls_ca_cert_file.is_some()),
            ("tls_require_cert", db.tls_require_cert.is_some()),
            ("connections", db.connections.is_some()),
            ("auth_bind_connections", db.auth_bind_connections.is_some()),
            ("max_ops_per_connection", db.max_ops_per_connection.is_some()),
            ("mechanisms", db.mechanisms.is_some()),
            ("username_filter", db.username_filter.is_some()),
            ("deny", db.deny.is_some()),
            ("master", db.master.is_some()),
            ("pass", db.pass.is_some()),
            ("skip", db.skip.is_some()),
            ("result_success", db.result_success.is_some()),
            ("result_failure", db.result_failure.is_some()),
            ("result_internalfail", db.result_internalfail.is_some()),
            ("override_fields", db.override_fields.is_some()),
            ("default_fields", db.default_fields.is_some()),
        ];
        for (name, set) in present {
            if set && !allowed.contains(&name) {
                let mut p = at.to_vec();
                p.push(key(name));
                return Err(self.err(&p, format!("`{name}` is not a setting of driver {}; it takes: driver, {}", db.driver, allowed.join(", "))));
            }
        }
        Ok(())
    }

    fn path_template(&self, at: &[Seg], db: &raw::Db) -> Result<Template, ConfigError> {
        let mut p = at.to_vec();
        p.push(key("path"));
        let raw = db.path.as_deref().ok_or_else(|| self.err(&p, format!("driver {} needs `path`, the passwd-file to read", db.driver)))?;
        let resolved = self.resolve(raw);
        let template = self.template(&p, &resolved.to_string_lossy())?;
        if template.is_per_user() {
            return Ok(template);
        }
        if !resolved.exists() {
            return Err(self.err(&p, format!("{} does not exist; create it (format: user:{{SCHEME}}password:uid:gid::home::extra_fields)", resolved.display())));
        }
        Ok(template)
    }

    fn username_format(&self, at: &[Seg], db: &raw::Db) -> Result<Template, ConfigError> {
        let mut p = at.to_vec();
        p.push(key("username_format"));
        self.template(&p, db.username_format.as_deref().unwrap_or("%u"))
    }

    fn field_templates(&self, at: &[Seg], name: &str, map: Option<&raw::Fields>) -> Result<Vec<(String, Template)>, ConfigError> {
        let mut out = Vec::new();
        for (k, v) in map.into_iter().flatten() {
            let k = &match k {
                serde_norway::Value::String(s) => s.clone(),
                other => serde_norway::to_string(other).unwrap_or_default().trim().to_owned(),
            };
            let mut p = at.to_vec();
            p.extend([key(name), key(k)]);
            let text = match v {
                serde_norway::Value::String(s) => s.clone(),
                serde_norway::Value::Number(n) => n.to_string(),
                serde_norway::Value::Bool(b) => {
                    if *b {
                        "yes".into()
                    } else {
                        "no".into()
                    }
                }
                serde_norway::Value::Null => String::new(),
                _ => return Err(self.err(&p, "a field value must be a string, a number, a boolean or empty")),
            };
            out.push((k.clone(), self.template(&p, &text)?));
        }
        Ok(out)
    }

    fn passdb_rules(&self, at: &[Seg], db: &raw::Db) -> Result<PassdbRules, ConfigError> {
        let here = |k: &str| {
            let mut p = at.to_vec();
            p.push(key(k));
            p
        };
        let mechanisms = match &db.mechanisms {
            None => MechFilter::Any,
            Some(v) => {
                let names: Vec<String> = match v {
                    serde_norway::Value::String(s) => s.split([' ', ',']).filter(|n| !n.is_empty()).map(str::to_owned).collect(),
                    serde_norway::Value::Sequence(items) => items
                        .iter()
                        .map(|i| i.as_str().map(str::to_owned).ok_or_else(|| self.err(&here("mechanisms"), "list mechanism names, e.g. [plain, login]")))
                        .collect::<Result<_, _>>()?,
                    _ => return Err(self.err(&here("mechanisms"), "list mechanism names, e.g. [plain, login]")),
                };
                // `none` alone disables the passdb; `none` in a list means mechanism-less lookups.
                let alone = names.len() == 1 && names[0].eq_ignore_ascii_case("none");
                let mut mechs = Vec::new();
                let mut lookups = false;
                for (i, n) in names.iter().enumerate() {
                    if n.eq_ignore_ascii_case("none") {
                        lookups = !alone;
                    } else if let Some(m) = sasl::lookup(n) {
                        mechs.push(m.name.to_owned());
                    } else {
                        let mut p = here("mechanisms");
                        p.push(Seg::Index(i));
                        return Err(self.err(&p, format!("unknown mechanism `{n}`")));
                    }
                }
                MechFilter::Only { mechs, lookups }
            }
        };
        let skip = match db.skip.as_deref() {
            None | Some("never") => Skip::Never,
            Some("authenticated") => Skip::Authenticated,
            Some("unauthenticated") => Skip::Unauthenticated,
            Some(other) => return Err(self.err(&here("skip"), format!("`{other}` is not a skip rule; use never, authenticated or unauthenticated"))),
        };
        let success_default = if db.pass == Some(true) { Rule::Continue } else { Rule::ReturnOk };
        Ok(PassdbRules {
            name: db.name.clone().unwrap_or_else(|| db.driver.clone()),
            mechanisms,
            username_filter: UsernameFilter::parse(db.username_filter.as_deref().unwrap_or_default()),
            skip,
            result_success: db.result_success.unwrap_or(success_default),
            result_failure: db.result_failure.unwrap_or(Rule::Continue),
            result_internalfail: db.result_internalfail.unwrap_or(Rule::Continue),
            deny: db.deny.unwrap_or(false),
            master: db.master.unwrap_or(false),
            default_fields: self.field_templates(at, "default_fields", db.default_fields.as_ref())?,
            override_fields: self.field_templates(at, "override_fields", db.override_fields.as_ref())?,
        })
    }

    fn passdb(&self, at: &[Seg], db: &raw::Db) -> Result<PassdbConfig, ConfigError> {
        const CHAIN: [&str; 12] = [
            "mechanisms",
            "username_filter",
            "deny",
            "master",
            "pass",
            "skip",
            "result_success",
            "result_failure",
            "result_internalfail",
            "override_fields",
            "default_fields",
            "username_format",
        ];
        let with_chain = |own: &[&'static str]| -> Vec<&'static str> { own.iter().copied().chain(CHAIN).collect() };
        let driver = match db.driver.as_str() {
            "passwd-file" => {
                self.only(at, db, &with_chain(&["path", "scheme"]))?;
                let mut p = at.to_vec();
                p.push(key("scheme"));
                let scheme = match &db.scheme {
                    None => Scheme::Crypt,
                    Some(s) => s.parse::<Scheme>().map_err(|_| self.err(&p, format!("unknown password scheme `{s}`; `saslgate pw -l` lists them")))?,
                };
                PassdbDriver::PasswdFile { path: self.path_template(at, db)?, scheme, username_format: self.username_format(at, db)? }
            }
            "static" => {
                self.only(at, db, &with_chain(&["password", "fields"]))?;
                let mut p = at.to_vec();
                p.push(key("password"));
                let password = db.password.as_ref().map(|pw| self.template(&p, &pw.0)).transpose()?;
                let fields = self.field_templates(at, "fields", db.fields.as_ref())?;
                if password.is_none() && !fields.iter().any(|(k, _)| k == "nopassword") {
                    return Err(self.err(&p, "a static passdb needs `password` (e.g. \"{PLAIN}secret\") or `fields: { nopassword: \"\" }`"));
                }
                PassdbDriver::Static { password, fields }
            }
            "pam" => {
                self.only(at, db, &with_chain(&["service", "failure_show_msg", "session", "setcred", "timeout", "max_requests", "config_dir"]))?;
                self.pam(at, db)?
            }
            "ldap" => {
                let own: Vec<&'static str> = ldap::CONNECTION_KEYS.iter().chain(ldap::PASSDB_KEYS).copied().collect();
                self.only(at, db, &with_chain(&own))?;
                PassdbDriver::Ldap(Box::new(self.ldap_passdb(at, db)?))
            }
            "shadow" => {
                self.only(at, db, &with_chain(&["path"]))?;
                let path = match db.path.as_deref() {
                    None => PathBuf::from("/etc/shadow"),
                    Some(p) if p.trim().is_empty() || p.contains('%') => {
                        let mut at = at.to_vec();
                        at.push(key("path"));
                        return Err(self.err(&at, "the shadow file is one file without %variables; leave `path` out for /etc/shadow"));
                    }
                    Some(p) => self.resolve(p),
                };
                PassdbDriver::Shadow { path }
            }
            other => {
                let mut p = at.to_vec();
                p.push(key("driver"));
                return Err(self.err(&p, format!("unknown passdb driver `{other}`; this build has: passwd-file, static, pam, ldap, shadow")));
            }
        };
        let rules = self.passdb_rules(at, db)?;
        let nopassword = rules.override_fields.iter().chain(rules.default_fields.iter()).any(|(k, _)| k == "nopassword")
            || matches!(&driver, PassdbDriver::Static { fields, .. } if fields.iter().any(|(k, _)| k == "nopassword"));
        if nopassword && rules.mechanisms == MechFilter::Any {
            self.warn(
                at,
                "a passdb that sets `nopassword` serves every mechanism: any password is accepted for its users; limit it, e.g. `mechanisms: [external]`",
            );
        }
        Ok(PassdbConfig { driver, rules })
    }

    fn pam(&self, at: &[Seg], db: &raw::Db) -> Result<PassdbDriver, ConfigError> {
        let here = |k: &str| {
            let mut p = at.to_vec();
            p.push(key(k));
            p
        };
        let source = match db.service.as_deref().map(str::trim) {
            None => PAM_DEFAULT_SERVICE,
            Some("") => {
                return Err(self.err(&here("service"), "an empty PAM service; name the file under /etc/pam.d (e.g. saslgate), or `*` for the request's service"))
            }
            // Dovecot's `*`: the service the client named (smtp, imap), lowercased.
            Some("*") => "%Ls",
            Some(s) => s,
        };
        if source.contains('/') {
            return Err(self.err(
                &here("service"),
                format!("`{source}` is a path; a PAM service is a file name under the config folder (set `config_dir` for another folder)"),
            ));
        }
        let service = self.template(&here("service"), source)?;
        let timeout = match &db.timeout {
            None => PAM_DEFAULT_TIMEOUT,
            Some(t) => match parse_duration(t) {
                Some(d) if !d.is_zero() => d,
                _ => return Err(self.err(&here("timeout"), format!("`{t}` is not a positive duration; write e.g. 60s or 2m"))),
            },
        };
        let max_requests = match db.max_requests {
            None => PAM_DEFAULT_MAX_REQUESTS,
            Some(n) if (1..=PAM_MAX_MAX_REQUESTS).contains(&n) => n,
            Some(n) => {
                return Err(self.err(
                    &here("max_requests"),
                    format!("{n} is out of range; PAM transactions at once must be 1 to {PAM_MAX_MAX_REQUESTS} (each may hold a thread while a module hangs)"),
                ))
            }
        };
        let config_dir = match &db.config_dir {
            None => None,
            Some(d) => {
                let dir = self.resolve(d);
                if !dir.is_dir() {
                    return Err(self.err(
                        &here("config_dir"),
                        format!("{} is not a folder; create it with the PAM service files, or remove `config_dir` to use /etc/pam.d", dir.display()),
                    ));
                }
                Some(dir)
            }
        };
        if !source.contains('%') {
            let file = config_dir.clone().unwrap_or_else(|| PathBuf::from("/etc/pam.d")).join(source);
            if !file.exists() {
                self.warn(
                    &here("service"),
                    format!(
                        "the PAM service file {} does not exist: PAM will use its `other` service (usually: deny everyone); create it (packaging/pam.d/saslgate is an example)",
                        file.display()
                    ),
                );
            }
        }
        Ok(PassdbDriver::Pam {
            service,
            failure_show_msg: db.failure_show_msg.unwrap_or(false),
            session: db.session.unwrap_or(false),
            setcred: db.setcred.unwrap_or(false),
            timeout,
            max_requests,
            config_dir,
        })
    }

    fn userdb(&self, at: &[Seg], db: &raw::Db) -> Result<UserdbConfig, ConfigError> {
        const CHAIN: [&str; 6] = ["skip", "result_success", "result_failure", "result_internalfail", "override_fields", "default_fields"];
        let with_chain = |own: &[&'static str]| -> Vec<&'static str> { own.iter().copied().chain(CHAIN).collect() };
        let driver = match db.driver.as_str() {
            "passwd-file" => {
                self.only(at, db, &with_chain(&["path", "username_format"]))?;
                UserdbDriver::PasswdFile { path: self.path_template(at, db)?, username_format: self.username_format(at, db)? }
            }
            "prefetch" => {
                self.only(at, db, &with_chain(&[]))?;
                UserdbDriver::Prefetch
            }
            "static" => {
                self.only(at, db, &with_chain(&["fields", "allow_all_users"]))?;
                let fields = self.field_templates(at, "fields", db.fields.as_ref())?;
                UserdbDriver::Static { fields, allow_all_users: db.allow_all_users.unwrap_or(false) }
            }
            "ldap" => {
                let own: Vec<&'static str> = ldap::CONNECTION_KEYS.iter().chain(ldap::USERDB_KEYS).copied().collect();
                self.only(at, db, &with_chain(&own))?;
                UserdbDriver::Ldap(Box::new(self.ldap_userdb(at, db)?))
            }
            "passwd" => {
                self.only(at, db, &with_chain(&["first_valid_uid", "last_valid_uid"]))?;
                let first_valid_uid = db.first_valid_uid.unwrap_or(PASSWD_DEFAULT_FIRST_VALID_UID);
                let last_valid_uid = db.last_valid_uid.filter(|&n| n != 0);
                if last_valid_uid.is_some_and(|last| last < first_valid_uid) {
                    let mut p = at.to_vec();
                    p.push(key("last_valid_uid"));
                    return Err(self.err(
                        &p,
                        format!("last_valid_uid is below first_valid_uid ({first_valid_uid}): LIST would return nobody; raise it, or 0 for no bound"),
                    ));
                }
                UserdbDriver::Passwd { first_valid_uid, last_valid_uid }
            }
            other => {
                let mut p = at.to_vec();
                p.push(key("driver"));
                return Err(self.err(&p, format!("unknown userdb driver `{other}`; this build has: passwd-file, static, prefetch, ldap, passwd")));
            }
        };
        let mut p = at.to_vec();
        p.push(key("skip"));
        let skip = match db.skip.as_deref() {
            None | Some("never") => UserdbSkip::Never,
            Some("found") => UserdbSkip::Found,
            Some("notfound") => UserdbSkip::NotFound,
            Some(other) => return Err(self.err(&p, format!("`{other}` is not a userdb skip rule; use never, found or notfound"))),
        };
        let rules = UserdbRules {
            skip,
            result_success: db.result_success.unwrap_or(Rule::ReturnOk),
            result_failure: db.result_failure.unwrap_or(Rule::Continue),
            result_internalfail: db.result_internalfail.unwrap_or(Rule::Continue),
            default_fields: self.field_templates(at, "default_fields", db.default_fields.as_ref())?,
            override_fields: self.field_templates(at, "override_fields", db.override_fields.as_ref())?,
        };
        Ok(UserdbConfig { driver, rules })
    }
}

fn positive(value: Option<usize>, default: usize) -> Result<usize, String> {
    match value {
        None => Ok(default),
        Some(0) => Err("must be at least 1".into()),
        Some(n) => Ok(n),
    }
}

fn connection_budget(value: Option<usize>, default: usize) -> Result<usize, String> {
    match positive(value, default)? {
        n if n > MAX_CONNECTIONS_LIMIT => Err(format!("at most {MAX_CONNECTIONS_LIMIT}")),
        n => Ok(n),
    }
}

/// Parses `2s`, `500ms`, `1m`, `0`, or Dovecot's `2 secs`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let number: u64 = text[..digits].parse().ok()?;
    let unit = text[digits..].trim();
    let ms = match unit {
        "" if number == 0 => 0,
        "ms" | "msec" | "msecs" => number,
        "s" | "sec" | "secs" | "second" | "seconds" => number.checked_mul(1000)?,
        "m" | "min" | "mins" | "minute" | "minutes" => number.checked_mul(60_000)?,
        "h" | "hour" | "hours" => number.checked_mul(3_600_000)?,
        _ => return None,
    };
    Some(Duration::from_millis(ms))
}

fn parse_mode(text: &str) -> Option<u32> {
    if text.is_empty() || text.len() > 4 || !text.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    u32::from_str_radix(text, 8).ok()
}

#[cfg(test)]
mod tests;
