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

use crate::config::rules::{PassdbRules, Rule, UserdbRules};
use crate::passdb::{Lookup, Passdb, PassdbOutcome};
use crate::protocol::sanitize;
use crate::request::{layer_fields, Fields, RequestInfo};
use crate::scheme::{Scheme, StoredPassword, StoredRef};
use crate::secret::Secret;

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
    /// For a failure: the message the failing verify-only passdb wants the client to see
    /// (PAM with `failure_show_msg`), sent as `reason=`. Other fields of a failing passdb never
    /// reach the reply.
    pub reason: Option<String>,
}

/// Fields that steer the chain and are consumed by it.
const PER_PASSDB_FIELDS: &[&str] = &["nopassword", "noauthenticate"];

impl super::Authenticator {
    /// Runs the chain for `user` (already translated). Not an `async fn` of its own: the
    /// chain's future is returned as it is, not wrapped in (and copied into) another.
    pub(crate) fn passdb_chain<'a>(&'a self, user: &'a str, info: &'a RequestInfo, op: Op<'a>) -> impl std::future::Future<Output = ChainResult> + Send + 'a {
        self.passdb_chain_with(user, info, op, Walk::Normal)
    }

    /// Runs the chain over the master passdbs (`Walk::Masters`), or over the normal ones for a
    /// master's target user whose password is already verified (`Walk::TargetOfMaster`).
    pub(crate) async fn passdb_chain_with(&self, user: &str, info: &RequestInfo, op: Op<'_>, walk: Walk) -> ChainResult {
        // `%w` in this chain's templates: the password being checked (Dovecot's
        // `mech_password`), only for a password login.
        let with_password;
        let info = match op {
            // The request layer usually sets it already (a PLAIN or LOGIN exchange): no copy.
            Op::Verify(password) if info.password.as_ref().map(Secret::expose) != Some(password.expose()) => {
                with_password = RequestInfo { password: Some(password.clone()), ..info.clone() };
                &with_password
            }
            _ => info,
        };
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
        let mut reason: Option<String> = None;
        for (index, entry) in self.passdbs.iter().enumerate() {
            if entry.rules.master != (walk == Walk::Masters) || entry.rules.skipped(info.mech, &user, verified) {
                continue;
            }
            all_skipped = false;
            let (mut outcome, passdb_fields, cred, shown) = self.one_passdb(index, entry, &user, info, op, verified).await;
            reason = shown;
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
                        tracing::info!(passdb = %entry.rules.name, user = ?sanitize(user.as_bytes(), 128), "user is denied by a deny passdb");
                        return ChainResult {
                            outcome: PassdbOutcome::UserDisabled,
                            user,
                            fields: snapshot,
                            credential: None,
                            all_skipped: false,
                            continued: false,
                            nopassword_used,
                            reason: None,
                        };
                    }
                }
            }
            if matches!(outcome, PassdbOutcome::UserDisabled | PassdbOutcome::PasswordExpired) {
                let mut f = snapshot;
                if outcome == PassdbOutcome::PasswordExpired {
                    f.set("reason", "Password expired");
                }
                return ChainResult { outcome, user, fields: f, credential: None, all_skipped: false, continued: false, nopassword_used, reason };
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
                    tracing::error!(passdb = %entry.rules.name, user = ?sanitize(user.as_bytes(), 128), reason = ?sanitize(why.as_bytes(), 256), "passdb failure");
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
            if verified {
                PassdbOutcome::Ok
            } else {
                PassdbOutcome::PasswordMismatch
            }
        } else if last == PassdbOutcome::SchemeNotAvailable && seen_unknown {
            PassdbOutcome::UserUnknown
        } else {
            last
        };
        if outcome != PassdbOutcome::Ok {
            fields = snapshot;
            credential = None;
        } else {
            reason = None;
        }
        ChainResult { outcome, user, fields, credential, all_skipped, continued: !stopped, nopassword_used, reason }
    }

    /// Asks one passdb, applying its templates and the per-passdb fields.
    /// One passdb's answer: its outcome, fields, credential, and (for a verify-only driver's
    /// failure) the `reason` it wants the client to see.
    async fn one_passdb(
        &self,
        index: usize,
        entry: &PassdbEntry,
        user: &str,
        info: &RequestInfo,
        op: Op<'_>,
        verified: bool,
    ) -> (PassdbOutcome, Fields, Option<Secret>, Option<String>) {
        let lookup = Lookup { user, info };
        // Verify-only drivers (PAM, LDAP bind) check the password themselves.
        if let (Op::Verify(password), false, true) = (op, verified, entry.db.verifies_plain()) {
            if let Some(reply) = entry.db.verify_plain(lookup, password).await {
                let shown = (reply.outcome != PassdbOutcome::Ok).then(|| reply.fields.get("reason").map(str::to_owned)).flatten();
                let fields = self.merge_templates(entry, user, info, reply.fields);
                return (self.check_fields(reply.outcome, &fields, info), fields, None, shown);
            }
        }
        let reply = match entry.db.lookup_now(lookup) {
            Some(reply) => reply,
            None => entry.db.lookup(lookup).await,
        };
        let fields = self.merge_templates(entry, user, info, reply.fields);
        if reply.outcome != PassdbOutcome::Ok {
            return (reply.outcome, fields, None, None);
        }
        let nopassword = fields.contains("nopassword") || fields.contains("noauthenticate");
        let stored = reply.stored_password.as_deref().map(|s| s.as_str()).unwrap_or_default();
        let (outcome, credential) = match op {
            Op::Lookup => (PassdbOutcome::Ok, None),
            _ if verified => (PassdbOutcome::Ok, None),
            Op::Verify(_) if nopassword => (PassdbOutcome::Ok, None),
            Op::Verify(password) if stored.is_empty() => {
                let _ = password;
                tracing::info!(passdb = %entry.rules.name, user = ?sanitize(user.as_bytes(), 128), "the user has no password");
                (PassdbOutcome::PasswordMismatch, None)
            }
            Op::Verify(password) => (self.verify_cached(index, stored, entry.db.default_scheme(), password, user).await, None),
            Op::Credentials(..) if nopassword => (PassdbOutcome::SchemeNotAvailable, None),
            Op::Credentials(scheme, identity) => Box::pin(credential(stored, entry.db.default_scheme(), scheme, user, identity, &self.pool)).await,
        };
        (self.check_fields(outcome, &fields, info), fields, credential, None)
    }

    /// Verifies through the auth cache: a remembered answer for exactly these inputs (stored
    /// password included), else a real verification whose answer is remembered.
    async fn verify_cached(&self, index: usize, stored: &str, default: Scheme, password: &Secret, user: &str) -> PassdbOutcome {
        if !self.cache.enabled() {
            return verify(stored, default, password, user, &self.pool).await;
        }
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
            if !crate::request::nets::allowed(nets, info.rip) {
                tracing::info!(rip = ?info.rip, "allow_nets check failed");
                return PassdbOutcome::PasswordMismatch;
            }
        }
        if let Some(nets) = fields.get("allow_real_nets") {
            if !crate::request::nets::allowed(nets, info.real_rip) {
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
    // Split in place: only a verification moved to the pool takes a copy.
    let stored = match StoredRef::parse(stored, default) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(user = ?sanitize(user.as_bytes(), 128), "stored password: {e}");
            return PassdbOutcome::SchemeNotAvailable;
        }
    };
    // `{PLAIN}` with nothing after it would match an empty password (Dovecot accepts that). An
    // empty stored password is far more often a mistake than a choice: it counts as no
    // password, and an admin who wants any password accepted says `nopassword`.
    if stored.text().is_empty() {
        tracing::warn!(user = ?sanitize(user.as_bytes(), 128), "the stored password is empty: no password can log in (use the nopassword field to allow any)");
        return PassdbOutcome::PasswordMismatch;
    }
    let result = if stored.is_expensive() {
        let (stored, password, user) = (stored.to_owned(), password.clone(), user.to_owned());
        // Boxed, like every wait below that only some requests have: a future is moved whole
        // each time it is built, and this one would make every request's larger.
        match Box::pin(pool.run(move || stored.verify(password.expose(), &user))).await {
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
            tracing::error!(user = ?sanitize(user.as_bytes(), 128), "invalid stored password: {e}");
            PassdbOutcome::PasswordMismatch
        }
    }
}

/// The stored password as a credential in `wanted`: decoded when it is stored in that scheme
/// (or an alias), generated when it is stored as plaintext, else `SchemeNotAvailable`.
///
/// `identity` is the (name, realm) a DIGEST-MD5 client hashed; a credential derived from a
/// plaintext password is hashed over exactly those.
pub(crate) async fn credential(
    stored: &str,
    default: Scheme,
    wanted: Scheme,
    user: &str,
    identity: Option<(&str, &str)>,
    pool: &crate::blocking::Pool,
) -> (PassdbOutcome, Option<Secret>) {
    let not_available = (PassdbOutcome::SchemeNotAvailable, None);
    if stored.is_empty() {
        return not_available;
    }
    let stored = match StoredPassword::parse(stored, default) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(user = ?sanitize(user.as_bytes(), 128), "stored password: {e}");
            return not_available;
        }
    };
    if stored.scheme() == wanted || stored.scheme().is_alias_of(wanted) {
        return match stored.decoded() {
            Ok(raw) => (PassdbOutcome::Ok, Some(Secret::new(raw.to_vec()))),
            Err(e) => {
                tracing::error!(user = ?sanitize(user.as_bytes(), 128), "stored {} credential: {e}", wanted.as_str());
                not_available
            }
        };
    }
    // PLAIN-TRUNC keeps only a prefix of the password: it cannot be converted.
    if !stored.scheme().is_plaintext() || stored.scheme() == Scheme::PlainTrunc {
        tracing::info!(user = ?sanitize(user.as_bytes(), 128), "{} credentials requested, but the password is stored as {}", wanted.as_str(), stored.scheme().as_str());
        return not_available;
    }
    let Ok(plain) = stored.decoded() else {
        return not_available;
    };
    if let (Scheme::DigestMd5, Some((name, realm))) = (wanted, identity) {
        return (PassdbOutcome::Ok, Some(Secret::new(crate::scheme::digest_md5_credential(name, realm, &plain))));
    }
    // SCRAM from a plaintext password uses the salt an unknown user's decoy would get (keyed
    // hash of the name, stable while the process lives): a random salt per attempt would tell
    // a repeating client that this user exists (`super::decoy`).
    if let Some(algorithm) = crate::scheme::ScramAlgorithm::from_scheme(wanted) {
        let salt = super::decoy::scram_salt(algorithm, user);
        let convert = move || {
            let salted = crate::scheme::scram_salted_password(algorithm, &plain, &salt, super::decoy::SCRAM_DECOY_ITERATIONS);
            let client_key = crate::scheme::scram_client_key(algorithm, &salted);
            let creds = crate::scheme::ScramCredentials {
                algorithm,
                iterations: super::decoy::SCRAM_DECOY_ITERATIONS,
                salt: salt.to_vec(),
                stored_key: crate::scheme::scram_stored_key(algorithm, &client_key),
                server_key: crate::scheme::scram_server_key(algorithm, &salted),
            };
            Secret::new(creds.to_stored_string().into_bytes())
        };
        return match pool.run(convert).await {
            Ok(c) => (PassdbOutcome::Ok, Some(c)),
            Err(_) => not_available,
        };
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
