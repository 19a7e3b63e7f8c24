//! One master-protocol connection (auth-master, auth-userdb).
//!
//! Commands are handled one at a time, in order: Dovecot's own master clients never pipeline,
//! and while a LIST streams, no other command is read (as Dovecot does).

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufWriter};

use super::Shared;
use crate::auth::{RequestClaim, UserAnswer};
use crate::config::{ListenerConfig, ListenerKind};
use crate::protocol::client::Reply;
use crate::protocol::escape::escape;
use crate::protocol::line::{next_line, Frame};
use crate::protocol::master::{self as wire, MasterCommand};
use crate::protocol::{ProtocolError, MASTER_CLIENT_MAX_REPLY, MASTER_MAX_LINE};

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
        static CLOSED: super::ratelog::LogLimit = super::ratelog::LogLimit::per_minute();
        if let Some(suppressed) = CLOSED.admit(std::time::Instant::now()) {
            tracing::warn!(suppressed, "closing master connection: {e}");
        }
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
        let deadline = tokio::time::Instant::now() + self.shared.handshake_timeout;
        let mut drain = self.shared.drain_signal();
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
                if let MasterCommand::List { id, .. } = &cmd {
                    if !self.list(*id, writer).await {
                        return Ok(());
                    }
                    continue;
                }
                let mut out = Vec::new();
                self.command(cmd, &mut out).await?;
                if writer.write_all(&out).await.is_err() || writer.flush().await.is_err() {
                    return Ok(());
                }
            }
            // Commands run one at a time, so waiting here means nothing is in flight: a
            // stopping daemon closes the connection now.
            if *drain.borrow_and_update() {
                return Ok(());
            }
            tokio::select! {
                n = super::read_more(reader, &mut buf, MASTER_MAX_LINE) => if n == 0 {
                    return Ok(());
                },
                () = tokio::time::sleep_until(deadline), if !handshaken => {
                    return Err(ProtocolError::Handshake(format!("no VERSION within {:?} (limits.handshake_timeout)", self.shared.handshake_timeout)));
                }
                _ = drain.changed() => {}
            }
        }
    }

    /// LIST: the names are written as they come (an LDAP userdb streams them), flushed every
    /// few hundred lines; a failure part-way ends the listing with `DONE fail`. Returns false
    /// when the peer went away.
    async fn list<W: AsyncWrite + Unpin>(&self, id: u32, writer: &mut W) -> bool {
        let mut users = if self.access == Access::Full { Some(self.shared.auth.list_users()) } else { None };
        let mut out = Vec::new();
        let mut failed = users.is_none();
        if failed {
            tracing::info!("LIST failed: restricted peer");
        }
        let mut pending = 0usize;
        while let Some(item) = match users.as_mut() {
            Some(u) => u.next().await,
            None => None,
        } {
            match item {
                Ok(user) => {
                    let line = Reply::new("LIST", id).raw(&escape(user.as_bytes())).finish();
                    // A name too long for the peer's buffer is left out, not sent broken.
                    if line.len() <= MASTER_CLIENT_MAX_REPLY {
                        out.extend(line);
                        pending += 1;
                    }
                }
                Err(why) => {
                    tracing::info!("LIST failed: {why}");
                    failed = true;
                    break;
                }
            }
            if pending >= 256 {
                if writer.write_all(&out).await.is_err() || writer.flush().await.is_err() {
                    return false;
                }
                out.clear();
                pending = 0;
            }
        }
        out.extend(Reply::new("DONE", id).raw(if failed { b"fail".as_slice() } else { b"" }).finish());
        writer.write_all(&out).await.is_ok() && writer.flush().await.is_ok()
    }

    async fn command(&self, cmd: MasterCommand, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
        let auth = &self.shared.auth;
        match cmd {
            MasterCommand::Request { id, client_pid, client_id, cookie, session_pid, request_auth_token: _ } => {
                if self.kind != ListenerKind::Master {
                    return Err(ProtocolError::UnknownCommand("REQUEST on a userdb socket".into()));
                }
                let claim = RequestClaim { client_pid, client_id, cookie, session_pid, peer_pid: self.peer_pid };
                out.extend(user_reply("USER", id, auth.master_request(claim).await));
            }
            MasterCommand::User { id, user, info } => {
                let mut answer = auth.master_user(&user, &info).await;
                if let (Access::OwnUid(uid), UserAnswer::Found { fields, .. }) = (self.access, &answer) {
                    if fields.get("uid") != Some(uid.to_string().as_str()) {
                        answer = UserAnswer::Failed(None);
                    }
                }
                out.extend(user_reply("USER", id, answer));
            }
            MasterCommand::Pass { id, user, info } => {
                let answer = if self.access == Access::Full { auth.master_pass(&user, &info).await } else { UserAnswer::Failed(None) };
                out.extend(user_reply("PASS", id, answer));
            }
            // Streamed by `list`, straight to the peer.
            MasterCommand::List { .. } => {}
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
}

/// The reply line to a USER, REQUEST or PASS. USER and REQUEST replies name the user
/// positionally, PASS replies as `user=`. A reply longer than Dovecot's master clients accept
/// (8192 bytes) would break them, so it becomes a FAIL, logged.
fn user_reply(verb: &str, id: u32, answer: UserAnswer) -> Vec<u8> {
    let line = match answer {
        UserAnswer::Found { user, fields } => {
            let mut reply =
                if verb == "PASS" { Reply::new(verb, id).field("user", user.as_bytes()) } else { Reply::new(verb, id).raw(&escape(user.as_bytes())) };
            for (k, v) in fields.iter() {
                reply = reply.field(k, v.as_bytes());
            }
            reply.finish()
        }
        UserAnswer::NotFound => return Reply::new("NOTFOUND", id).finish(),
        UserAnswer::Failed(None) => return Reply::new("FAIL", id).finish(),
        UserAnswer::Failed(Some(reason)) => return Reply::new("FAIL", id).field("reason", reason.as_bytes()).finish(),
    };
    if line.len() > MASTER_CLIENT_MAX_REPLY {
        tracing::error!(
            id,
            len = line.len(),
            "{verb} reply longer than {MASTER_CLIENT_MAX_REPLY} bytes (the peer could not read it): sent FAIL instead; shorten the userdb's fields"
        );
        return Reply::new("FAIL", id).field("reason", b"Reply too large").finish();
    }
    line
}
