//! The `pam` passdb: the password is checked by PAM (verify-only, like Dovecot's).
//!
//! Each verification is one PAM transaction on the driver's [`PamPool`]: the service file
//! decides which modules run (`pam_unix`, `pam_ldap`, `pam_sss`, …). PAM cannot hand out a
//! stored password, so this passdb serves only plaintext mechanisms (PLAIN, LOGIN); a lookup
//! without a password answers "scheme not available", as Dovecot's PAM passdb does.

use std::path::PathBuf;

use async_trait::async_trait;

use super::{Lookup, Passdb, PassdbOutcome, PassdbReply};
use crate::db::pam::{PamOutcome, PamPool, PamRequest};
use crate::protocol::sanitize;
use crate::request::expand_for_user;
use crate::request::var::Template;
use crate::request::Fields;
use crate::scheme::Scheme;
use crate::secret::Secret;

/// The PAM passdb.
#[derive(Debug)]
pub struct Pam {
    pool: PamPool,
    service: Template,
    failure_show_msg: bool,
    session: bool,
    setcred: bool,
    config_dir: Option<PathBuf>,
}

/// The PAM passdb's settings (see `PassdbDriver::Pam`).
#[derive(Debug, Clone)]
pub struct PamSettings {
    /// The service name template (`%Ls` for Dovecot's `*`).
    pub service: Template,
    /// Put what PAM said into a failure's `reason` field.
    pub failure_show_msg: bool,
    /// Open and close a PAM session.
    pub session: bool,
    /// Call `pam_setcred`.
    pub setcred: bool,
    /// Where service files are read from (default /etc/pam.d).
    pub config_dir: Option<PathBuf>,
}

impl Pam {
    /// A PAM passdb running its transactions on `pool`.
    pub fn new(settings: PamSettings, pool: PamPool) -> Pam {
        let PamSettings { service, failure_show_msg, session, setcred, config_dir } = settings;
        Pam { pool, service, failure_show_msg, session, setcred, config_dir }
    }
}

#[async_trait]
impl Passdb for Pam {
    fn driver(&self) -> &'static str {
        "pam"
    }

    async fn lookup(&self, lookup: Lookup<'_>) -> PassdbReply {
        tracing::debug!(user = ?sanitize(lookup.user.as_bytes(), 128), "pam: cannot look a user up without a password (verify-only passdb)");
        PassdbReply::bare(PassdbOutcome::SchemeNotAvailable)
    }

    fn verifies_plain(&self) -> bool {
        true
    }

    async fn verify_plain(&self, lookup: Lookup<'_>, password: &Secret) -> Option<PassdbReply> {
        let service = expand_for_user(&self.service, lookup.user, lookup.info);
        if service.is_empty() || service.contains('/') {
            return Some(PassdbReply::bare(PassdbOutcome::InternalFailure(format!(
                "pam: the service `{}` expands to an unusable name {service:?}",
                self.service.source()
            ))));
        }
        let request = PamRequest {
            service: service.clone(),
            user: lookup.user.to_owned(),
            password: password.clone(),
            rhost: lookup.info.rip.map(|ip| ip.to_string()),
            session: self.session,
            setcred: self.setcred,
            config_dir: self.config_dir.clone(),
        };
        let reply = self.pool.authenticate(request).await;
        let user = lookup.user;
        let mut fields = Fields::new();
        let outcome = match reply.outcome {
            PamOutcome::Ok => {
                if let Some(canonical) = &reply.user {
                    fields.set("user", canonical);
                }
                PassdbOutcome::Ok
            }
            PamOutcome::UserUnknown => PassdbOutcome::UserUnknown,
            PamOutcome::PasswordMismatch => PassdbOutcome::PasswordMismatch,
            PamOutcome::UserDisabled => PassdbOutcome::UserDisabled,
            PamOutcome::PasswordExpired => PassdbOutcome::PasswordExpired,
            PamOutcome::TempFail(why) => PassdbOutcome::InternalFailure(format!("pam service {service}: {why}")),
        };
        if outcome != PassdbOutcome::Ok {
            // Module messages may name the account's state; they never hold the password.
            tracing::info!(
                user = ?sanitize(user.as_bytes(), 128),
                service = ?sanitize(service.as_bytes(), 64),
                message = ?sanitize(reply.message.as_deref().unwrap_or("").as_bytes(), 256),
                detail = ?sanitize(reply.detail.as_bytes(), 256),
                "pam: authentication did not succeed"
            );
            if self.failure_show_msg {
                if let Some(message) = &reply.message {
                    // Shown to the client as `reason=`: kept short and on one line.
                    let shown: String = message.chars().filter(|c| !c.is_control()).take(256).collect();
                    fields.set("reason", &shown);
                }
            }
        }
        Some(PassdbReply { outcome, fields, stored_password: None })
    }

    fn default_scheme(&self) -> Scheme {
        // Dovecot's choice: the plaintext password the mechanism gave (for its cache).
        Scheme::Plain
    }
}
