//! The `ldap` userdb: `user_filter` + `user_attrs` for a lookup, `iterate_filter` +
//! `iterate_attrs` for LIST (streamed from a paged search, never collected).

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::{Lookup, UserList, Userdb, UserdbOutcome};
use crate::config::ldap::LdapUserdb;
use crate::db::ldap::escape::{dn_escape, filter_escape};
use crate::db::ldap::{map_entry, wanted_attrs, Directory, Found};
use crate::request::{expand_with, RequestInfo};

/// The LDAP userdb.
#[derive(Debug)]
pub struct Ldap {
    settings: LdapUserdb,
    directory: Directory,
    attrs: Vec<String>,
}

fn no_attr(_: &str) -> String {
    String::new()
}

impl Ldap {
    /// A userdb over its own connection pool (opened on first use).
    pub fn new(settings: LdapUserdb) -> Ldap {
        let directory = Directory::new(&settings.conn);
        let attrs = wanted_attrs(&[&settings.user_attrs]);
        Ldap { settings, directory, attrs }
    }
}

#[async_trait]
impl Userdb for Ldap {
    fn driver(&self) -> &'static str {
        "ldap"
    }

    async fn lookup(&self, lookup: Lookup<'_>) -> UserdbOutcome {
        let filter = expand_with(&self.settings.user_filter, lookup.user, lookup.info, filter_escape, &no_attr);
        let base = expand_with(&self.settings.conn.base, lookup.user, lookup.info, dn_escape, &no_attr);
        match self.directory.search_one(&base, &filter, &self.attrs).await {
            Err(e) => UserdbOutcome::InternalFailure(e.0),
            Ok(Found::None) => UserdbOutcome::NotFound,
            Ok(Found::One(entry)) => UserdbOutcome::Found(map_entry(&entry, &self.settings.user_attrs, lookup.user, lookup.info).fields),
        }
    }

    async fn iterate(&self) -> Option<UserList> {
        let info = RequestInfo::from_lookup(&crate::protocol::master::LookupInfo::default());
        let filter = expand_with(&self.settings.iterate_filter, "", &info, filter_escape, &no_attr);
        let base = expand_with(&self.settings.conn.base, "", &info, dn_escape, &no_attr);
        let mut entries = self.directory.iterate(base, filter, wanted_attrs(&[&self.settings.iterate_attrs]));
        let map = self.settings.iterate_attrs.clone();
        let (tx, rx) = mpsc::channel(super::USER_LIST_BUFFER);
        tokio::spawn(async move {
            while let Some(item) = entries.recv().await {
                let item = match item {
                    Ok(entry) => match map_entry(&entry, &map, "", &info).fields.get("user") {
                        Some(user) if !user.is_empty() => Ok(user.to_owned()),
                        _ => continue,
                    },
                    Err(e) => Err(e.0),
                };
                let stop = item.is_err();
                if tx.send(item).await.is_err() || stop {
                    break;
                }
            }
        });
        Some(UserList::Stream(rx))
    }
}
