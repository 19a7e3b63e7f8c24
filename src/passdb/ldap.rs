//! The `ldap` passdb.
//!
//! - Lookup mode: one search with `pass_filter` (values RFC 4515-escaped) on the lookup pool;
//!   `pass_attrs` gives the stored password and the fields, and the chain verifies the password
//!   with our schemes (through the auth cache, whose key holds the stored password).
//! - `auth_bind` mode: the user's DN comes from `auth_bind_userdn` (values RFC 4514-escaped) or
//!   from a `pass_filter` search, then a bind as that DN on the bind pool checks the password.
//!   Binds run in parallel, one per bind connection. An empty password is never sent.
//!   With `auth.cache` on, bind outcomes are remembered, keyed on (this passdb, user, bind DN,
//!   password), with the cache's TTLs: with `auth_bind_userdn` a remembered answer needs no
//!   directory at all; after a `pass_filter` search it saves the bind. The directory's password
//!   is not part of the key, so a password changed there is answered from the cache until the
//!   TTL runs out (Dovecot's cache does the same).

use std::sync::Arc;

use async_trait::async_trait;

use super::{Lookup, Passdb, PassdbOutcome, PassdbReply};
use crate::config::ldap::LdapPassdb;
use crate::db::ldap::escape::{dn_escape, filter_escape};
use crate::db::ldap::{map_entry, wanted_attrs, BindOutcome, BindPool, Directory, Found};
use crate::db::{memo_scope, CheckMemo, MemoKey};
use crate::request::{expand_with, Fields};
use crate::scheme::Scheme;
use crate::secret::Secret;

/// The LDAP passdb.
#[derive(Debug)]
pub struct Ldap {
    settings: LdapPassdb,
    directory: Directory,
    binds: Option<BindPool>,
    attrs: Vec<String>,
    /// The auth cache for bind outcomes (`None`: cache off).
    memo: Option<Arc<dyn CheckMemo>>,
    /// This passdb's scope in the cache.
    scope: u64,
}

fn no_attr(_: &str) -> String {
    String::new()
}

impl Ldap {
    /// A passdb over its own connection pools (opened on first use).
    pub fn new(settings: LdapPassdb, memo: Option<Arc<dyn CheckMemo>>) -> Ldap {
        let directory = Directory::new(&settings.conn);
        let binds = settings.auth_bind.then(|| directory.bind_pool(settings.auth_bind_connections));
        let attrs = wanted_attrs(&[&settings.pass_attrs]);
        Ldap { settings, directory, binds, attrs, memo, scope: memo_scope() }
    }

    /// Searches the user's entry: `Ok(None)` when there is none.
    async fn find(&self, lookup: Lookup<'_>) -> Result<Option<crate::db::ldap::Entry>, String> {
        let filter = expand_with(&self.settings.pass_filter, lookup.user, lookup.info, filter_escape, &no_attr);
        let base = expand_with(&self.settings.conn.base, lookup.user, lookup.info, dn_escape, &no_attr);
        match self.directory.search_one(&base, &filter, &self.attrs).await {
            Ok(Found::One(entry)) => Ok(Some(entry)),
            Ok(Found::None) => Ok(None),
            Err(e) => Err(e.0),
        }
    }
}

#[async_trait]
impl Passdb for Ldap {
    fn driver(&self) -> &'static str {
        "ldap"
    }

    async fn lookup(&self, lookup: Lookup<'_>) -> PassdbReply {
        if self.settings.auth_bind && self.settings.auth_bind_userdn.is_some() {
            // Nothing to look up without a search: the directory only checks passwords.
            return PassdbReply::bare(PassdbOutcome::SchemeNotAvailable);
        }
        match self.find(lookup).await {
            Err(why) => PassdbReply::bare(PassdbOutcome::InternalFailure(why)),
            Ok(None) => PassdbReply::bare(PassdbOutcome::UserUnknown),
            Ok(Some(entry)) => {
                let mapped = map_entry(&entry, &self.settings.pass_attrs, lookup.user, lookup.info);
                // In auth_bind mode a password attribute is never handed to the chain.
                let stored_password = if self.settings.auth_bind { None } else { mapped.password };
                PassdbReply { outcome: PassdbOutcome::Ok, fields: mapped.fields, stored_password }
            }
        }
    }

    fn verifies_plain(&self) -> bool {
        self.binds.is_some()
    }

    async fn verify_plain(&self, lookup: Lookup<'_>, password: &Secret) -> Option<PassdbReply> {
        let binds = self.binds.as_ref()?;
        let user = lookup.user;
        if password.is_empty() {
            tracing::info!(user, "ldap: empty password (never bound: it would be an anonymous bind)");
            return Some(PassdbReply::bare(PassdbOutcome::PasswordMismatch));
        }
        let (dn, fields) = match &self.settings.auth_bind_userdn {
            Some(template) => (expand_with(template, user, lookup.info, dn_escape, &no_attr), Fields::new()),
            None => match self.find(lookup).await {
                Err(why) => return Some(PassdbReply::bare(PassdbOutcome::InternalFailure(why))),
                Ok(None) => return Some(PassdbReply::bare(PassdbOutcome::UserUnknown)),
                Ok(Some(entry)) => {
                    let mapped = map_entry(&entry, &self.settings.pass_attrs, user, lookup.info);
                    (entry.dn, mapped.fields)
                }
            },
        };
        let key = MemoKey { scope: self.scope, user, against: &dn, password: password.expose() };
        let remembered = self.memo.as_ref().and_then(|m| m.get(&key));
        let outcome = match remembered {
            Some(true) => PassdbOutcome::Ok,
            Some(false) => PassdbOutcome::PasswordMismatch,
            None => {
                let outcome = match binds.bind(&dn, password.expose()).await {
                    Ok(BindOutcome::Ok) => PassdbOutcome::Ok,
                    Ok(BindOutcome::InvalidCredentials) => PassdbOutcome::PasswordMismatch,
                    Ok(BindOutcome::NoSuchObject) => PassdbOutcome::UserUnknown,
                    Err(e) => PassdbOutcome::InternalFailure(e.0),
                };
                // Only right and wrong passwords are kept: never a temporary failure, and never
                // "no such DN" (the entry may be created a moment later).
                if let (Some(memo), PassdbOutcome::Ok | PassdbOutcome::PasswordMismatch) = (&self.memo, &outcome) {
                    memo.put(&key, outcome == PassdbOutcome::Ok);
                }
                outcome
            }
        };
        let fields = if outcome == PassdbOutcome::Ok { fields } else { Fields::new() };
        Some(PassdbReply { outcome, fields, stored_password: None })
    }

    fn default_scheme(&self) -> Scheme {
        if self.settings.auth_bind {
            Scheme::Plain
        } else {
            self.settings.scheme
        }
    }
}
