//! The `static` passdb: every user name exists, with one password template (or `nopassword`)
//! and fixed extra fields. Typical use: the EXTERNAL-only passdb of the "certificate or
//! password" setup, or a test account.

use async_trait::async_trait;

use super::{Lookup, Passdb, PassdbOutcome, PassdbReply};
use crate::request::var::Template;
use crate::request::{expand_fields, expand_for_user};
use crate::scheme::Scheme;

/// The static passdb. `Debug` hides the password template (it is the password).
pub struct Static {
    password: Option<Template>,
    fields: Vec<(String, Template)>,
}

impl std::fmt::Debug for Static {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Static").field("password", &self.password.as_ref().map(|_| "<hidden>")).field("fields", &self.fields).finish()
    }
}

impl Static {
    /// A passdb answering every user with `password` and `fields`.
    pub fn new(password: Option<Template>, fields: Vec<(String, Template)>) -> Self {
        Static { password, fields }
    }

    fn reply(&self, lookup: Lookup<'_>) -> PassdbReply {
        let fields = expand_fields(&self.fields, lookup.user, lookup.info);
        PassdbReply {
            outcome: PassdbOutcome::Ok,
            fields,
            stored_password: self.password.as_ref().map(|t| zeroize::Zeroizing::new(expand_for_user(t, lookup.user, lookup.info))),
        }
    }
}

#[async_trait]
impl Passdb for Static {
    fn driver(&self) -> &'static str {
        "static"
    }

    async fn lookup(&self, lookup: Lookup<'_>) -> PassdbReply {
        self.reply(lookup)
    }

    fn lookup_now(&self, lookup: Lookup<'_>) -> Option<PassdbReply> {
        Some(self.reply(lookup))
    }

    fn default_scheme(&self) -> Scheme {
        Scheme::Plain
    }
}

#[cfg(test)]
mod debug_redaction_tests {
    use super::*;

    #[test]
    fn static_passdb_never_prints_its_password() {
        let db = Static::new(Some(Template::parse("{PLAIN}hunter2").unwrap()), Vec::new());
        let shown = format!("{db:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
