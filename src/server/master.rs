//! One master-protocol connection (auth-master, auth-userdb).
//!
//! Commands are handled one at a time, in order: Dovecot's own master clients never pipeline,
//! and while a LIST streams, no other command is read (as Dovecot does).

use std::sync::Arc;
use std::time::Duration;

use subtle::ConstantTimeEq;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufWriter};

use super::Shared;
use crate::auth::{PassLookup, RequestInfo};
use crate::config::{ListenerConfig, ListenerKind};
use crate::protocol::client::Reply;
use crate::protocol::line::{next_line, Frame};
use crate::protocol::master::{self as wire, MasterCommand};
use crate::protocol::{ProtocolError, MASTER_MAX_LINE};
use crate::userdb::UserdbOutcome;

/// What a peer on a userdb socket may see (Dovecot's rule for a 0666 `-userdb` socket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Everything.
    Full,
    /// Only USER lookups whose `uid` is this peer's uid; PASS and LIST fail.
    OwnUid(u32),
}

impl Access {
    /// On a userdb socket with mode 0666, a peer that is neither the socket's owner nor in its
    /// group only sees its own uid.
    pub fn for_peer(config: &ListenerConfig, peer: Option<&tokio::net::unix::UCred>) -> Access {
        use std::os::unix::fs::MetadataExt;
        if config.kind != ListenerKind::Userdb || config.mode != 0o666 {
            return Access::Full;
        }
        let Some(peer) = peer else { return Access::OwnUid(u32::MAX) };
        match std::fs::metadata(&config.path) {
            Ok(meta) if meta.uid() == peer.uid() || meta.gid() == peer.gid() || peer.uid() == 0 => Access::Full,
            _ => Access::OwnUid(peer.uid()),
        }
    }
}

/// Serves one master-protocol connection.
pub async fn serve<S>(stream: S, shared: Arc<Shared>, kind: ListenerKind, access: Access, peer_pid: Option<i32>)
where
    S: AsyncRead + AsyncWrite + Send,
{
    let (mut reader, writer) = tokio::io::split(stream);
    let mut writer = BufWriter::new(writer);
    let conn = Master { shared, kind, access, peer_pid };
    if writer.write_all(&wire::handshake(conn.shared.spid)).await.is_err() || writer.flush().await.is_err() {
        return;
    }
    if let Err(e) = conn.read_loop(&mut reader, &mut writer).await {
        tracing::warn!("closing master connection: {e}");
    }
    let _ = writer.shutdown().await;
}

struct Master {
    shared: Arc<Shared>,
    kind: ListenerKind,
    access: Access,
    peer_pid: Option<i32>,
}

impl Master {
    async fn read_loop<R, W>(&self, reader: &mut R, writer: &mut W) -> Result<(), ProtocolError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut buf: Vec<u8> = Vec::new();
        let mut handshaken = false;
        loop {
            while let Frame::Line { len, consumed } = next_line(&buf, MASTER_MAX_LINE)? {
                let line = buf[..len].to_vec();
                buf.drain(..consumed);
                if !handshaken {
                    wire::parse_version(&line)?;
                    handshaken = true;
                    continue;
                }
                let cmd = MasterCommand::parse(&line)?;
                let mut out = Vec::new();
                self.command(cmd, &mut out).await?;
                if writer.write_all(&out).await.is_err() || writer.flush().await.is_err() {
                    return Ok(());
                }
            }
            if super::read_more(reader, &mut buf, MASTER_MAX_LINE).await == 0 {
                return Ok(());
            }
        }
    }

    async fn command(&self, cmd: MasterCommand, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
        let auth = &self.shared.auth;
        match cmd {
            MasterCommand::Request { id, client_pid, client_id, cookie, session_pid, request_auth_token: _ } => {
                if self.kind != ListenerKind::Master {
                    return Err(ProtocolError::UnknownCommand("REQUEST on a userdb socket".into()));
                }
                let Some(login) = self.claim(client_pid, client_id, cookie, session_pid) else {
                    out.extend(Reply::new("FAIL", id).finish());
                    return Ok(());
                };
                let info = RequestInfo { mech: Some(login.mech), ..RequestInfo::default() };
                match auth.lookup_user_prefetched(&login.user, &info, true, Some(&login.prefetch)).await {
                    UserdbOutcome::Found(fields) => {
                        let mut reply = Reply::new("USER", id).raw(&crate::protocol::escape::escape(login.user.as_bytes()));
                        for (k, v) in fields.iter() {
                            reply = reply.field(k, v.as_bytes());
                        }
                        if !fields.contains("auth_mech") {
                            reply = reply.field("auth_mech", login.mech.as_bytes());
                        }
                        out.extend(reply.finish());
                    }
                    UserdbOutcome::NotFound => out.extend(Reply::new("NOTFOUND", id).finish()),
                    UserdbOutcome::InternalFailure(_) => out.extend(Reply::new("FAIL", id).finish()),
                }
            }
            MasterCommand::User { id, user, info } => {
                let info = RequestInfo::from_lookup(&info);
                let Some(user) = auth.translate_user(&user, &info) else {
                    out.extend(Reply::new("NOTFOUND", id).finish());
                    return Ok(());
                };
                match auth.lookup_user(&user, &info, false).await {
                    UserdbOutcome::Found(fields) => {
                        if let Access::OwnUid(uid) = self.access {
                            if fields.get("uid") != Some(uid.to_string().as_str()) {
                                out.extend(Reply::new("FAIL", id).finish());
                                return Ok(());
                            }
                        }
                        let mut reply = Reply::new("USER", id).raw(&crate::protocol::escape::escape(user.as_bytes()));
                        for (k, v) in fields.iter() {
                            reply = reply.field(k, v.as_bytes());
                        }
                        out.extend(reply.finish());
                    }
                    UserdbOutcome::NotFound => out.extend(Reply::new("NOTFOUND", id).finish()),
                    UserdbOutcome::InternalFailure(_) => {
                        out.extend(Reply::new("FAIL", id).field("reason", b"Internal userdb failure").finish());
                    }
                }
            }
            MasterCommand::Pass { id, user, info } => {
                if self.access != Access::Full {
                    out.extend(Reply::new("FAIL", id).finish());
                    return Ok(());
                }
                let info = RequestInfo::from_lookup(&info);
                let Some(user) = auth.translate_user(&user, &info) else {
                    out.extend(Reply::new("NOTFOUND", id).finish());
                    return Ok(());
                };
                match auth.lookup_pass(&user, &info).await {
                    PassLookup::Found(fields) => {
                        let mut reply = Reply::new("PASS", id).field("user", user.as_bytes());
                        for (k, v) in fields.iter() {
                            reply = reply.field(k, v.as_bytes());
                        }
                        out.extend(reply.finish());
                    }
                    PassLookup::NotFound => out.extend(Reply::new("NOTFOUND", id).finish()),
                    PassLookup::Failed(_) => out.extend(Reply::new("FAIL", id).finish()),
                }
            }
            MasterCommand::List { id, .. } => {
                let users = if self.access == Access::Full { auth.list_users().await } else { Err("restricted peer".into()) };
                match users {
                    Ok(users) => {
                        for user in users {
                            out.extend(Reply::new("LIST", id).raw(&crate::protocol::escape::escape(user.as_bytes())).finish());
                        }
                        out.extend(Reply::new("DONE", id).raw(b"").finish());
                    }
                    Err(why) => {
                        tracing::info!("LIST failed: {why}");
                        out.extend(Reply::new("DONE", id).raw(b"fail").finish());
                    }
                }
            }
            MasterCommand::CacheFlush { id, users } => {
                if self.kind != ListenerKind::Master {
                    return Err(ProtocolError::UnknownCommand("CACHE-FLUSH on a userdb socket".into()));
                }
                let flushed = auth.flush_cache(&users);
                tracing::info!(flushed, users = users.len(), "auth cache flushed");
                out.extend(Reply::new("OK", id).raw(flushed.to_string().as_bytes()).finish());
            }
        }
        Ok(())
    }

    /// Takes a finished login off its login connection (one-shot), checking the cookie in
    /// constant time and the session pid against the peer's credentials.
    fn claim(&self, client_pid: u32, client_id: u32, cookie: Option<[u8; 16]>, session_pid: Option<u32>) -> Option<super::FinishedLogin> {
        let conn = self.shared.logins().get(&client_pid).cloned()?;
        let finished = conn.finished.lock().unwrap_or_else(|e| e.into_inner()).remove(&client_id);
        let cookie = cookie?;
        if !bool::from(conn.cookie.ct_eq(&cookie)) {
            tracing::warn!(client_pid, "REQUEST with a wrong cookie");
            return None;
        }
        if let (Some(session_pid), Some(peer)) = (session_pid, self.peer_pid) {
            if i64::from(session_pid) != i64::from(peer) {
                tracing::warn!(session_pid, peer, "REQUEST session pid does not match the peer's credentials");
                return None;
            }
        }
        finished.filter(|f| f.at.elapsed() < self.shared.request_timeout.max(Duration::from_secs(1)))
    }
}
