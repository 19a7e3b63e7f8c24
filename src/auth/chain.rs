//! The passdb chain, with Dovecot 2.3's semantics.
//!
//! Each passdb block has rules: which requests it serves (`mechanisms`, `username_filter`,
//! `skip`), what each result does (`result_success`, `result_failure`, `result_internalfail`),
//! whether it is a `deny` list, and field templates applied before (`default_fields`) and after
//! (`override_fields`) the driver's own fields. The chain walks the passdbs in order:
//!
//! - a passdb's fields are kept (snapshotted) when it answers OK, and rolled back otherwise, so
//!   a failing passdb never leaks `nodelay`, `reason` or anything else into the reply;
//! - `continue` after an OK marks the password verified: later passdbs only add fields;
//! - at the end: success if a rule set it, else an internal failure if any passdb had one (an
//!   outage must not look like a wrong password), else the last result.
//!
//! One deliberate difference from Dovecot 2.3: there, `return-fail` after an OK still ends in
//! OK (the flag it clears is only read when no later rule decides). Here `return-fail` always
//! fails, which is what the rule's name promises an admin.

use std::net::IpAddr;

use super::var::Template;
use super::{layer_fields, Fields, RequestInfo};
use crate::passdb::{Lookup, Passdb, PassdbOutcome};
use crate::scheme::{Scheme, StoredPassword};
use crate::secret::Secret;

/// What a rule does with a passdb's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Stop; the outcome is what the chain has decided so far (or this result).
    Return,
    /// Stop with success.
    ReturnOk,
    /// Stop with failure.
    ReturnFail,
    /// Go on with the next passdb (after an OK the password counts as verified).
    Continue,
    /// Go on, and count as success so far.
    ContinueOk,
    /// Go on, and count as failure so far.
    ContinueFail,
}

impl Rule {
    /// Parses a rule name (`return-ok`, ...).
    pub fn parse(text: &str) -> Option<Rule> {
        Some(match text {
            "return" => Rule::Return,
            "return-ok" => Rule::ReturnOk,
            "return-fail" => Rule::ReturnFail,
            "continue" => Rule::Continue,
            "continue-ok" => Rule::ContinueOk,
            "continue-fail" => Rule::ContinueFail,
            _ => return None,
        })
    }
}

/// When a passdb is skipped, by what the chain knows so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Never skipped.
    Never,
    /// Skipped once the password is verified.
    Authenticated,
    /// Skipped while the password is not yet verified.
    Unauthenticated,
}

/// Which requests a passdb serves, by mechanism.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MechFilter {
    /// Every mechanism and mechanism-less lookups (no `mechanisms` setting).
    Any,
    /// Only these (upper-case) mechanisms; `lookups` when the list holds `none`.
    Only {
        /// Mechanism names, upper case.
        mechs: Vec<String>,
        /// Whether lookups without a mechanism (master PASS) are served.
        lookups: bool,
    },
}

impl MechFilter {
    fn allows(&self, mech: Option<&str>) -> bool {
        match (self, mech) {
            (MechFilter::Any, _) => true,
            (MechFilter::Only { lookups, .. }, None) => *lookups,
            (MechFilter::Only { mechs, .. }, Some(m)) => mechs.iter().any(|x| x.eq_ignore_ascii_case(m)),
        }
    }
}

/// `username_filter`: wildcard patterns (`*`, `?`); a `!` pattern that matches vetoes, and
/// when there are positive patterns one of them must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsernameFilter {
    allow: Vec<String>,
    deny: Vec<String>,
}

impl UsernameFilter {
    /// Parses a space- or comma-separated pattern list.
    pub fn parse(text: &str) -> UsernameFilter {
        let mut f = UsernameFilter::default();
        for p in text.split([' ', ',']).filter(|p| !p.is_empty()) {
            match p.strip_prefix('!') {
                Some(neg) => f.deny.push(neg.to_owned()),
                None => f.allow.push(p.to_owned()),
            }
        }
        f
    }

    fn allows(&self, user: &str) -> bool {
        if self.deny.iter().any(|p| wildcard(p, user)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|p| wildcard(p, user))
    }
}

/// `*` matches any run, `?` one character; everything else literally. Iterative, so a hostile
/// user name cannot make it recurse deeply.
pub fn wildcard(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// The rules of one passdb block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassdbRules {
    /// A label for logs (`name`, default the driver).
    pub name: String,
    /// `mechanisms`.
    pub mechanisms: MechFilter,
    /// `username_filter`.
    pub username_filter: UsernameFilter,
    /// `skip`.
    pub skip: Skip,
    /// `result_success` (default `return-ok`; `pass: true` makes it `continue`).
    pub result_success: Rule,
    /// `result_failure` (default `continue`).
    pub result_failure: Rule,
    /// `result_internalfail` (default `continue`).
    pub result_internalfail: Rule,
    /// `deny`: a user found here is refused.
    pub deny: bool,
    /// `master`: this passdb verifies master users (and only them).
    pub master: bool,
    /// `default_fields`: set before the driver's fields.
    pub default_fields: Vec<(String, Template)>,
    /// `override_fields`: set after the driver's fields; they win.
    pub override_fields: Vec<(String, Template)>,
}

impl Default for PassdbRules {
    fn default() -> Self {
        PassdbRules {
            name: String::new(),
            mechanisms: MechFilter::Any,
            username_filter: UsernameFilter::default(),
            skip: Skip::Never,
            result_success: Rule::ReturnOk,
            result_failure: Rule::Continue,
            result_internalfail: Rule::Continue,
            deny: false,
            master: false,
            default_fields: Vec::new(),
            override_fields: Vec::new(),
        }
    }
}

impl PassdbRules {
    fn skipped(&self, mech: Option<&str>, user: &str, verified: bool) -> bool {
        !self.mechanisms.allows(mech)
            || !self.username_filter.allows(user)
            || (self.skip == Skip::Authenticated && verified)
            || (self.skip == Skip::Unauthenticated && !verified)
    }
}

/// When a userdb is skipped, by what the chain found so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserdbSkip {
    /// Never skipped.
    Never,
    /// Skipped once a userdb found the user.
    Found,
    /// Skipped while no userdb found the user.
    NotFound,
}

/// The rules of one userdb block (Dovecot's userdb chain: found/notfound).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserdbRules {
    /// `skip`.
    pub skip: UserdbSkip,
    /// `result_success` (default `return-ok`).
    pub result_success: Rule,
    /// `result_failure`: user not found (default `continue`).
    pub result_failure: Rule,
    /// `result_internalfail` (default `continue`).
    pub result_internalfail: Rule,
    /// `default_fields`.
    pub default_fields: Vec<(String, Template)>,
    /// `override_fields`.
    pub override_fields: Vec<(String, Template)>,
}

impl Default for UserdbRules {
    fn default() -> Self {
        UserdbRules {
            skip: UserdbSkip::Never,
            result_success: Rule::ReturnOk,
            result_failure: Rule::Continue,
            result_internalfail: Rule::Continue,
            default_fields: Vec::new(),
            override_fields: Vec::new(),
        }
    }
}

/// A built userdb with its rules.
#[derive(Debug, Clone)]
pub struct UserdbEntry {
    /// The driver.
    pub db: std::sync::Arc<dyn crate::userdb::Userdb>,
    /// Its rules.
    pub rules: UserdbRules,
}

/// A built passdb with its rules.
#[derive(Debug, Clone)]
pub struct PassdbEntry {
    /// The driver.
    pub db: std::sync::Arc<dyn Passdb>,
    /// Its rules.
    pub rules: PassdbRules,
}

/// What the chain is asked to do.
#[derive(Debug, Clone, Copy)]
pub enum Op<'a> {
    /// Check this password.
    Verify(&'a Secret),
    /// Fetch the credential in this scheme; for a user-dependent one derived from a plaintext
    /// password, hashed for this `name@realm` instead of the looked-up user.
    Credentials(Scheme, Option<(&'a str, &'a str)>),
    /// Find the user, no password (master PASS).
    Lookup,
}

/// Which passdbs a chain walks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Walk {
    /// The normal passdbs, password not yet verified.
    Normal,
    /// The `master: true` passdbs, verifying a master user.
    Masters,
    /// The normal passdbs for the user a verified master logs in as (lookups only).
    TargetOfMaster,
}

/// A chain's final answer.
#[derive(Debug)]
pub struct ChainResult {
    /// Ok, or why not.
    pub outcome: PassdbOutcome,
    /// The user name, possibly renamed by a `user` field.
    pub user: String,
    /// The fields kept from the passdbs that answered OK.
    pub fields: Fields,
    /// The credential, for [`Op::Credentials`].
    pub credential: Option<Secret>,
    /// Every passdb was skipped.
    pub all_skipped: bool,
    /// The rule that ended the chain with success asked to go on (`continue…`): for a master
    /// user, check that the target user exists in the normal passdbs.
    pub continued: bool,
    /// A passdb accepted the password without checking it (`nopassword`).
    pub nopassword_used: bool,
}

/// Fields that steer the chain and are consumed by it.
const PER_PASSDB_FIELDS: &[&str] = &["nopassword", "noauthenticate"];

/// Whether `ip` is in `allow_nets` (comma/space separated CIDRs, `local` for no IP).
pub fn ip_allowed(nets: &str, ip: Option<IpAddr>) -> bool {
    let ip = ip.map(|ip| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    });
    nets.split([',', ' ']).filter(|n| !n.is_empty()).any(|net| {
        if net == "local" {
            return ip.is_none();
        }
        let Some(ip) = ip else { return false };
        let (addr, bits) = match net.split_once('/') {
            Some((a, b)) => (a, b.parse::<u8>().ok()),
            None => (net, None),
        };
        let Ok(addr) = addr.parse::<IpAddr>() else { return false };
        match (addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let bits = u32::from(bits.unwrap_or(32).min(32));
                let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
                u32::from(a) & mask == u32::from(b) & mask
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let bits = u32::from(bits.unwrap_or(128).min(128));
                let mask = if bits == 0 { 0 } else { u128::MAX << (128 - bits) };
                u128::from(a) & mask == u128::from(b) & mask
            }
            _ => false,
        }
    })
}

impl super::Authenticator {
    /// Runs the chain for `user` (already translated).
    pub(crate) async fn passdb_chain(&self, user: &str, info: &RequestInfo, op: Op<'_>) -> ChainResult {
        self.passdb_chain_with(user, info, op, Walk::Normal).await
    }

    /// Runs the chain over the master passdbs (`Walk::Masters`), or over the normal ones for a
    /// master's target user whose password is already verified (`Walk::TargetOfMaster`).
    pub(crate) async fn passdb_chain_with(&self, user: &str, info: &RequestInfo, op: Op<'_>, walk: Walk) -> ChainResult {
        let mut user = user.to_owned();
        let mut fields = Fields::new();
        let mut snapshot = Fields::new();
        let mut success = false;
        let mut verified = walk == Walk::TargetOfMaster;
        let mut seen_internal = false;
        let mut seen_unknown = false;
        let mut credential: Option<Secret> = None;
        let mut last = PassdbOutcome::UserUnknown;
        let mut all_skipped = true;
        let mut stopped = false;
        let mut nopassword_used = false;
        for (index, entry) in self.passdbs.iter().enumerate() {
            if entry.rules.master != (walk == Walk::Masters) || entry.rules.skipped(info.mech, &user, verified) {
                continue;
            }
            all_skipped = false;
            let (mut outcome, passdb_fields, cred) = self.one_passdb(index, entry, &user, info, op, verified).await;
            if entry.rules.deny {
                match outcome {
                    PassdbOutcome::UserUnknown => continue,
                    PassdbOutcome::InternalFailure(_) => {
                        last = outcome;
                        seen_internal = true;
                        stopped = true;
                        break;
                    }
                    _ => {
                        tracing::info!(passdb = %entry.rules.name, user = %user, "user is denied by a deny passdb");
                        return ChainResult { outcome: PassdbOutcome::UserDisabled, user, fields: snapshot, credential: None, all_skipped: false, continued: false, nopassword_used };
                    }
                }
            }
            if matches!(outcome, PassdbOutcome::UserDisabled | PassdbOutcome::PasswordExpired) {
                let mut f = snapshot;
                if outcome == PassdbOutcome::PasswordExpired {
                    f.set("reason", "Password expired");
                }
                return ChainResult { outcome, user, fields: f, credential: None, all_skipped: false, continued: false, nopassword_used };
            }
            let next = matches!(outcome, PassdbOutcome::Ok) && passdb_fields.contains("noauthenticate");
            if outcome == PassdbOutcome::Ok && matches!(op, Op::Verify(_)) && !verified && passdb_fields.contains("nopassword") {
                nopassword_used = true;
            }
            if outcome == PassdbOutcome::Ok || next {
                for (k, v) in passdb_fields.iter() {
                    if k == "user" && !v.is_empty() {
                        v.clone_into(&mut user);
                    } else if !PER_PASSDB_FIELDS.contains(&k) {
                        fields.set(k, v);
                    }
                }
                snapshot = fields.clone();
                if cred.is_some() {
                    credential = cred;
                }
            } else {
                fields = snapshot.clone();
            }
            let rule = match &outcome {
                _ if next => Rule::Continue,
                PassdbOutcome::Ok => entry.rules.result_success,
                PassdbOutcome::InternalFailure(why) => {
                    tracing::error!(passdb = %entry.rules.name, user = %user, "passdb failure: {why}");
                    entry.rules.result_internalfail
                }
                _ => entry.rules.result_failure,
            };
            match &outcome {
                PassdbOutcome::UserUnknown => seen_unknown = true,
                PassdbOutcome::InternalFailure(_) => seen_internal = true,
                _ => {}
            }
            let was_ok = outcome == PassdbOutcome::Ok && !next;
            if next {
                outcome = PassdbOutcome::InternalFailure("the last passdb had noauthenticate".into());
            }
            last = outcome;
            match rule {
                Rule::Return => {
                    success |= was_ok;
                    stopped = true;
                }
                Rule::ReturnOk => {
                    success = true;
                    stopped = true;
                }
                Rule::ReturnFail => {
                    success = false;
                    stopped = true;
                    if was_ok {
                        last = PassdbOutcome::PasswordMismatch;
                    }
                }
                Rule::Continue => verified |= was_ok,
                Rule::ContinueOk => {
                    success = true;
                    verified = true;
                }
                Rule::ContinueFail => success = false,
            }
            if stopped {
                break;
            }
        }
        let outcome = if all_skipped {
            PassdbOutcome::InternalFailure("all password databases were skipped".into())
        } else if success {
            PassdbOutcome::Ok
        } else if seen_internal {
            match last {
                PassdbOutcome::InternalFailure(why) => PassdbOutcome::InternalFailure(why),
                _ => PassdbOutcome::InternalFailure("a passdb failed".into()),
            }
        } else if last == PassdbOutcome::Ok {
            // Only `return-fail`-free paths end here with OK: a plain `continue` after the last
            // OK passdb, which leaves success unset.
            if verified { PassdbOutcome::Ok } else { PassdbOutcome::PasswordMismatch }
        } else if last == PassdbOutcome::SchemeNotAvailable && seen_unknown {
            PassdbOutcome::UserUnknown
        } else {
            last
        };
        if outcome != PassdbOutcome::Ok {
            fields = snapshot;
            credential = None;
        }
        ChainResult { outcome, user, fields, credential, all_skipped, continued: !stopped, nopassword_used }
    }

    /// Asks one passdb, applying its templates and the per-passdb fields.
    async fn one_passdb(&self, index: usize, entry: &PassdbEntry, user: &str, info: &RequestInfo, op: Op<'_>, verified: bool) -> (PassdbOutcome, Fields, Option<Secret>) {
        let lookup = Lookup { user, info };
        // Verify-only drivers (PAM, LDAP bind) check the password themselves.
        if let (Op::Verify(password), false) = (op, verified) {
            if let Some(reply) = entry.db.verify_plain(lookup, password).await {
                let fields = self.merge_templates(entry, user, info, reply.fields);
                return (self.check_fields(reply.outcome, &fields, info), fields, None);
            }
        }
        let reply = entry.db.lookup(lookup).await;
        let fields = self.merge_templates(entry, user, info, reply.fields);
        if reply.outcome != PassdbOutcome::Ok {
            return (reply.outcome, fields, None);
        }
        let nopassword = fields.contains("nopassword") || fields.contains("noauthenticate");
        let stored = reply.stored_password.as_deref().map(|s| s.as_str()).unwrap_or_default();
        let (outcome, credential) = match op {
            Op::Lookup => (PassdbOutcome::Ok, None),
            _ if verified => (PassdbOutcome::Ok, None),
            Op::Verify(_) if nopassword => (PassdbOutcome::Ok, None),
            Op::Verify(password) if stored.is_empty() => {
                let _ = password;
                tracing::info!(passdb = %entry.rules.name, user, "the user has no password");
                (PassdbOutcome::PasswordMismatch, None)
            }
            Op::Verify(password) => (self.verify_cached(index, stored, entry.db.default_scheme(), password, user).await, None),
            Op::Credentials(..) if nopassword => (PassdbOutcome::SchemeNotAvailable, None),
            Op::Credentials(scheme, identity) => credential(stored, entry.db.default_scheme(), scheme, user, identity, &self.pool).await,
        };
        (self.check_fields(outcome, &fields, info), fields, credential)
    }

    /// Verifies through the auth cache: a remembered answer for exactly these inputs (stored
    /// password included), else a real verification whose answer is remembered.
    async fn verify_cached(&self, index: usize, stored: &str, default: Scheme, password: &Secret, user: &str) -> PassdbOutcome {
        let key = super::cache::CacheKey { passdb: index, user, stored, password: password.expose() };
        let now = std::time::Instant::now();
        match self.cache.get(&key, now) {
            Some(true) => return PassdbOutcome::Ok,
            Some(false) => return PassdbOutcome::PasswordMismatch,
            None => {}
        }
        let outcome = verify(stored, default, password, user, &self.pool).await;
        match outcome {
            PassdbOutcome::Ok => self.cache.put(&key, true, now),
            PassdbOutcome::PasswordMismatch => self.cache.put(&key, false, now),
            _ => {}
        }
        outcome
    }

    fn merge_templates(&self, entry: &PassdbEntry, user: &str, info: &RequestInfo, driver: Fields) -> Fields {
        layer_fields(&entry.rules.default_fields, &driver, &entry.rules.override_fields, user, info)
    }

    /// Fields that turn an OK into a failure: `allow_nets`, `allow_real_nets`, `fail`, and an
    /// empty `user` (Dovecot's `request->failed`, which makes OK "unknown user").
    fn check_fields(&self, outcome: PassdbOutcome, fields: &Fields, info: &RequestInfo) -> PassdbOutcome {
        if outcome != PassdbOutcome::Ok {
            return outcome;
        }
        if let Some(nets) = fields.get("allow_nets") {
            if !ip_allowed(nets, info.rip) {
                tracing::info!(rip = ?info.rip, "allow_nets check failed");
                return PassdbOutcome::PasswordMismatch;
            }
        }
        if let Some(nets) = fields.get("allow_real_nets") {
            if !ip_allowed(nets, info.real_rip) {
                tracing::info!(real_rip = ?info.real_rip, "allow_real_nets check failed");
                return PassdbOutcome::PasswordMismatch;
            }
        }
        if fields.contains("fail") || fields.get("user") == Some("") {
            return PassdbOutcome::UserUnknown;
        }
        outcome
    }
}

/// Verifies `password` against a stored value, on the pool when the scheme is expensive.
pub(crate) async fn verify(stored: &str, default: Scheme, password: &Secret, user: &str, pool: &crate::blocking::Pool) -> PassdbOutcome {
    let stored = match StoredPassword::parse(stored, default) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(user, "stored password: {e}");
            return PassdbOutcome::SchemeNotAvailable;
        }
    };
    // `{PLAIN}` with nothing after it would match an empty password (Dovecot accepts that). An
    // empty stored password is far more often a mistake than a choice: it counts as no
    // password, and an admin who wants any password accepted says `nopassword`.
    if stored.text().is_empty() {
        tracing::warn!(user, "the stored password is empty: no password can log in (use the nopassword field to allow any)");
        return PassdbOutcome::PasswordMismatch;
    }
    let result = if stored.is_expensive() {
        let (password, user) = (password.clone(), user.to_owned());
        match pool.run(move || stored.verify(password.expose(), &user)).await {
            Ok(r) => r,
            Err(e) => return PassdbOutcome::InternalFailure(e.to_string()),
        }
    } else {
        stored.verify(password.expose(), user)
    };
    match result {
        Ok(true) => PassdbOutcome::Ok,
        Ok(false) => PassdbOutcome::PasswordMismatch,
        Err(e) => {
            tracing::error!(user, "invalid stored password: {e}");
            PassdbOutcome::PasswordMismatch
        }
    }
}

/// The stored password as a credential in `wanted`: decoded when it is stored in that scheme
/// (or an alias), generated when it is stored as plaintext, else `SchemeNotAvailable`.
///
/// `identity` is the (name, realm) a DIGEST-MD5 client hashed; a credential derived from a
/// plaintext password is hashed over exactly those.
pub(crate) async fn credential(stored: &str, default: Scheme, wanted: Scheme, user: &str, identity: Option<(&str, &str)>, pool: &crate::blocking::Pool) -> (PassdbOutcome, Option<Secret>) {
    let not_available = (PassdbOutcome::SchemeNotAvailable, None);
    if stored.is_empty() {
        return not_available;
    }
    let stored = match StoredPassword::parse(stored, default) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(user, "stored password: {e}");
            return not_available;
        }
    };
    if stored.scheme() == wanted || stored.scheme().is_alias_of(wanted) {
        return match stored.decoded() {
            Ok(raw) => (PassdbOutcome::Ok, Some(Secret::new(raw.to_vec()))),
            Err(e) => {
                tracing::error!(user, "stored {} credential: {e}", wanted.as_str());
                not_available
            }
        };
    }
    // PLAIN-TRUNC keeps only a prefix of the password: it cannot be converted.
    if !stored.scheme().is_plaintext() || stored.scheme() == Scheme::PlainTrunc {
        tracing::info!(user, "{} credentials requested, but the password is stored as {}", wanted.as_str(), stored.scheme().as_str());
        return not_available;
    }
    let Ok(plain) = stored.decoded() else {
        return not_available;
    };
    if let (Scheme::DigestMd5, Some((name, realm))) = (wanted, identity) {
        return (PassdbOutcome::Ok, Some(Secret::new(crate::scheme::digest_md5_credential(name, realm, &plain))));
    }
    let user = user.to_owned();
    let convert = move || -> Option<Secret> {
        let text = crate::scheme::generate(wanted, &plain, &user, None).ok()?;
        let raw = StoredPassword::new(wanted, None, &text).decoded().ok()?;
        Some(Secret::new(raw.to_vec()))
    };
    let converted = if wanted.is_expensive() { pool.run(convert).await.ok().flatten() } else { convert() };
    match converted {
        Some(c) => (PassdbOutcome::Ok, Some(c)),
        None => not_available,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        for (p, t, want) in [
            ("*", "", true),
            ("*@example.com", "a@example.com", true),
            ("*@example.com", "a@example.org", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("*a*b*", "xxaxxbxx", true),
            ("*a*b*", "xxbxxaxx", false),
            ("", "", true),
            ("", "x", false),
        ] {
            assert_eq!(wildcard(p, t), want, "{p} {t}");
        }
        // Hostile patterns and names finish quickly (no backtracking blow-up) and answer right.
        let many_a = "a".repeat(5000);
        let t = std::time::Instant::now();
        assert!(wildcard(&"*a".repeat(200), &many_a));
        assert!(!wildcard(&format!("{}b", "*a".repeat(200)), &many_a));
        assert!(t.elapsed() < std::time::Duration::from_secs(5), "{:?}", t.elapsed());
    }

    #[test]
    fn username_filters() {
        let f = UsernameFilter::parse("*@example.com !bad@example.com");
        assert!(f.allows("a@example.com"));
        assert!(!f.allows("bad@example.com"));
        assert!(!f.allows("a@other.org"));
        let f = UsernameFilter::parse("!root");
        assert!(f.allows("alice") && !f.allows("root"));
        assert!(UsernameFilter::parse("").allows("anyone"));
    }

    #[test]
    fn mech_filters() {
        let f = MechFilter::Only { mechs: vec!["PLAIN".into()], lookups: false };
        assert!(f.allows(Some("plain")) && !f.allows(Some("LOGIN")) && !f.allows(None));
        let f = MechFilter::Only { mechs: vec![], lookups: true };
        assert!(f.allows(None) && !f.allows(Some("PLAIN")));
        assert!(MechFilter::Any.allows(None));
    }

    #[test]
    fn nets() {
        let v4 = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert!(ip_allowed("10.0.0.0/8", v4("10.1.2.3")));
        assert!(!ip_allowed("10.0.0.0/8", v4("11.1.2.3")));
        assert!(ip_allowed("192.0.2.1", v4("192.0.2.1")));
        assert!(ip_allowed("127.0.0.0/8, ::1", v4("::1")));
        assert!(ip_allowed("10.0.0.0/8", v4("::ffff:10.9.9.9")));
        assert!(ip_allowed("local", None));
        assert!(!ip_allowed("10.0.0.0/8", None));
        assert!(!ip_allowed("garbage", v4("10.0.0.1")));
        assert!(ip_allowed("0.0.0.0/0", v4("203.0.113.9")));
        assert!(ip_allowed("2001:db8::/32", v4("2001:db8::1")));
    }
}
