//! The master side's questions, answered by the request layer: REQUEST (the user of a finished
//! login), USER and PASS lookups. The server turns a [`UserAnswer`] into its reply line.

use super::{Authenticator, PassLookup};
use crate::protocol::master::LookupInfo;
use crate::request::{Fields, RequestInfo};
use crate::userdb::UserdbOutcome;

/// A master REQUEST as the server parsed it, with the peer's pid from its socket credentials.
/// `Debug` hides the cookie.
#[derive(Clone, Copy)]
pub struct RequestClaim {
    /// The login process's CPID.
    pub client_pid: u32,
    /// The request id on that login connection.
    pub client_id: u32,
    /// The cookie, when the line had a valid one.
    pub cookie: Option<[u8; 16]>,
    /// `session_pid`, when given.
    pub session_pid: Option<u32>,
    /// The peer's pid (SO_PEERCRED), when known.
    pub peer_pid: Option<i32>,
}

impl std::fmt::Debug for RequestClaim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestClaim")
            .field("client_pid", &self.client_pid)
            .field("client_id", &self.client_id)
            .field("cookie", &self.cookie.map(|_| "<hidden>"))
            .field("session_pid", &self.session_pid)
            .field("peer_pid", &self.peer_pid)
            .finish()
    }
}

/// The answer to a master lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserAnswer {
    /// Found: the user name and the fields of the reply, in order.
    Found {
        /// The user name.
        user: String,
        /// The fields after it.
        fields: Fields,
    },
    /// No such user (`NOTFOUND`).
    NotFound,
    /// The lookup failed (`FAIL`), with a reason the peer may see.
    Failed(Option<&'static str>),
}

impl Authenticator {
    /// REQUEST: the user of a finished login, looked up in the userdbs with the login's whole
    /// request (so `%s`, `%r`, `%{session}` … expand as they would have during the AUTH), its
    /// passdb's `userdb_*` fields for `prefetch`, and `auth_mech`.
    pub async fn master_request(&self, claim: RequestClaim) -> UserAnswer {
        let Some(login) = self.logins.claim(claim.client_pid, claim.client_id, claim.cookie, claim.session_pid, claim.peer_pid) else {
            return UserAnswer::Failed(None);
        };
        match self.lookup_user_prefetched(&login.user, &login.info, true, Some(&login.prefetch)).await {
            UserdbOutcome::Found(found) => {
                // As Dovecot: the login's passdb `userdb_*` fields come first, and the userdbs'
                // fields set or replace them (a userdb's own value wins).
                let mut fields = login.prefetch.clone();
                for (k, v) in found.iter() {
                    fields.set(k, v);
                }
                if let (false, Some(mech)) = (fields.contains("auth_mech"), login.info.mech) {
                    fields.set("auth_mech", mech);
                }
                UserAnswer::Found { user: login.user, fields }
            }
            UserdbOutcome::NotFound => UserAnswer::NotFound,
            UserdbOutcome::InternalFailure(_) => UserAnswer::Failed(None),
        }
    }

    /// USER: a userdb lookup by name (lmtp, doveadm user).
    pub async fn master_user(&self, user: &str, info: &LookupInfo) -> UserAnswer {
        let info = RequestInfo::from_lookup(info);
        let Some(user) = self.translate_user(user, &info) else {
            return UserAnswer::NotFound;
        };
        match self.lookup_user(&user, &info, false).await {
            UserdbOutcome::Found(fields) => UserAnswer::Found { user, fields },
            UserdbOutcome::NotFound => UserAnswer::NotFound,
            UserdbOutcome::InternalFailure(_) => UserAnswer::Failed(Some("Internal userdb failure")),
        }
    }

    /// PASS: a passdb lookup without a password (doveadm auth lookup).
    pub async fn master_pass(&self, user: &str, info: &LookupInfo) -> UserAnswer {
        let info = RequestInfo::from_lookup(info);
        let Some(user) = self.translate_user(user, &info) else {
            return UserAnswer::NotFound;
        };
        match self.lookup_pass(&user, &info).await {
            PassLookup::Found(fields) => UserAnswer::Found { user, fields },
            PassLookup::NotFound => UserAnswer::NotFound,
            PassLookup::Failed(_) => UserAnswer::Failed(None),
        }
    }
}

#[cfg(test)]
mod debug_redaction_tests {
    use super::*;

    #[test]
    fn request_claim_never_prints_the_cookie() {
        let claim = RequestClaim { client_pid: 1, client_id: 2, cookie: Some([0xab; 16]), session_pid: None, peer_pid: None };
        let shown = format!("{claim:?}");
        assert!(!shown.contains("171"), "{shown}");
    }
}
