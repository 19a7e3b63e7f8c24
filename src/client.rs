//! The client side of the protocol, written once: what a peer of saslgate (or of Dovecot's
//! auth) does on a client or master socket. `saslgate cache flush`, `saslgate bench`, the test
//! suites and the fuzz targets' self-checks all speak through it.
//!
//! A [`Connection`] reads lines with the same bounded framing the server uses
//! (`protocol::line`), so a hostile or broken server cannot make a client buffer without
//! limit. The handshakes check what a real peer checks: major version 1, and `DONE` after the
//! mechanism list on client sockets; `VERSION` and `SPID` on master sockets.

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::UnixStream;

use crate::protocol::escape::escape;
use crate::protocol::line::{next_line, Frame};
use crate::protocol::{parse_u32, sanitize, split_tabs, CLIENT_MAX_LINE, MAJOR_VERSION};

/// Handshake lines accepted before `DONE` (a real server sends fewer than 30).
const MAX_HANDSHAKE_LINES: usize = 1000;

/// Why a client-side exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting, reading or writing failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The server closed the connection.
    #[error("the server closed the connection")]
    Closed,
    /// No line came in time.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The server broke the protocol (an overlong line, a wrong version, no `DONE`).
    #[error("the server broke the protocol: {0}")]
    Protocol(String),
}

/// What a client-protocol server announced before `DONE`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Handshake {
    /// Every line, in order, without line endings (`DONE` included).
    pub lines: Vec<String>,
    /// The mechanism names of the `MECH` lines, in order.
    pub mechs: Vec<String>,
    /// The `COOKIE` (hex), when the server sent one.
    pub cookie: Option<String>,
}

/// One connection to an auth socket.
#[derive(Debug)]
pub struct Connection {
    stream: UnixStream,
    buf: Vec<u8>,
}

impl Connection {
    /// Connects without saying anything.
    pub async fn open(path: &Path) -> Result<Connection, ClientError> {
        let stream = UnixStream::connect(path).await?;
        Ok(Connection { stream, buf: Vec::with_capacity(4096) })
    }

    /// Connects to a client socket, reads the server's handshake up to `DONE` (it must come
    /// without our saying anything), then sends `VERSION 1 minor` and `CPID cpid`.
    pub async fn client(path: &Path, minor: u32, cpid: u32) -> Result<(Connection, Handshake), ClientError> {
        let mut conn = Connection::open(path).await?;
        let handshake = conn.read_client_handshake().await?;
        conn.send(format!("VERSION\t{MAJOR_VERSION}\t{minor}\nCPID\t{cpid}\n").as_bytes()).await?;
        Ok((conn, handshake))
    }

    /// Connects to a master or userdb socket: sends `VERSION 1 1`, then reads the server's
    /// `VERSION` and `SPID` lines.
    pub async fn master(path: &Path) -> Result<Connection, ClientError> {
        let mut conn = Connection::open(path).await?;
        conn.send(format!("VERSION\t{MAJOR_VERSION}\t1\n").as_bytes()).await?;
        for want in [&b"VERSION"[..], b"SPID"] {
            let line = conn.line().await?;
            let fields = split_tabs(&line);
            if fields.first() != Some(&want) {
                return Err(ClientError::Protocol(format!("expected {} but got {:?}", String::from_utf8_lossy(want), sanitize(&line, 80))));
            }
            if want == b"VERSION" && fields.get(1).and_then(|m| parse_u32(m)) != Some(MAJOR_VERSION) {
                return Err(ClientError::Protocol(format!("not protocol version {MAJOR_VERSION}: {:?}", sanitize(&line, 80))));
            }
        }
        Ok(conn)
    }

    /// Reads a client socket's handshake lines up to `DONE`.
    pub async fn read_client_handshake(&mut self) -> Result<Handshake, ClientError> {
        let mut handshake = Handshake::default();
        let mut version_seen = false;
        loop {
            if handshake.lines.len() >= MAX_HANDSHAKE_LINES {
                return Err(ClientError::Protocol(format!("more than {MAX_HANDSHAKE_LINES} handshake lines without DONE")));
            }
            let line = self.line().await?;
            let fields = split_tabs(&line);
            match fields.as_slice() {
                [b"VERSION", major, ..] => {
                    if parse_u32(major) != Some(MAJOR_VERSION) {
                        return Err(ClientError::Protocol(format!("the server speaks protocol version {}, not {MAJOR_VERSION}", sanitize(major, 20))));
                    }
                    version_seen = true;
                }
                [b"MECH", name, ..] => handshake.mechs.push(String::from_utf8_lossy(name).into_owned()),
                [b"COOKIE", cookie] => handshake.cookie = Some(String::from_utf8_lossy(cookie).into_owned()),
                _ => {}
            }
            let done = fields.first() == Some(&&b"DONE"[..]);
            handshake.lines.push(String::from_utf8_lossy(&line).into_owned());
            if done {
                if !version_seen {
                    return Err(ClientError::Protocol("the server sent DONE without VERSION".into()));
                }
                return Ok(handshake);
            }
        }
    }

    /// Sends bytes as they are.
    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.stream.write_all(bytes).await?;
        Ok(())
    }

    /// The next line, without its line ending; [`ClientError::Closed`] at end of file.
    pub async fn line(&mut self) -> Result<Vec<u8>, ClientError> {
        loop {
            match next_line(&self.buf, CLIENT_MAX_LINE).map_err(|e| ClientError::Protocol(e.to_string()))? {
                Frame::Line { len, consumed } => {
                    let line = self.buf[..len].to_vec();
                    self.buf.drain(..consumed);
                    return Ok(line);
                }
                Frame::Incomplete => {
                    let room = CLIENT_MAX_LINE.saturating_sub(self.buf.len()).max(1);
                    self.buf.reserve(room.min(4096));
                    let n = (&mut self.stream).take(room as u64).read_buf(&mut self.buf).await?;
                    if n == 0 {
                        return Err(ClientError::Closed);
                    }
                }
            }
        }
    }

    /// [`Connection::line`] within `wait`.
    pub async fn line_within(&mut self, wait: Duration) -> Result<Vec<u8>, ClientError> {
        tokio::time::timeout(wait, self.line()).await.map_err(|_| ClientError::Timeout(wait))?
    }

    /// The stream and the bytes already read but not yet taken as lines, for a caller that
    /// drives the connection itself from here on (the bench's pipelined loop).
    pub fn into_parts(self) -> (UnixStream, Vec<u8>) {
        (self.stream, self.buf)
    }
}

/// An `AUTH` line for PLAIN with the whole exchange in `resp=`, plus `params` (each `key` or
/// `key=value`, escaped here).
pub fn auth_plain(id: u32, service: &str, user: &str, password: &str, params: &[&str]) -> Vec<u8> {
    let resp = crate::protocol::base64::encode(format!("\0{user}\0{password}").as_bytes());
    let mut line = format!("AUTH\t{id}\tPLAIN\tservice=").into_bytes();
    line.extend(escape(service.as_bytes()));
    for p in params {
        line.push(b'\t');
        line.extend(escape(p.as_bytes()));
    }
    line.extend(format!("\tresp={resp}\n").into_bytes());
    line
}

/// A `CACHE-FLUSH` line for these users (none: everything).
pub fn cache_flush(id: u32, users: &[String]) -> Vec<u8> {
    let mut line = format!("CACHE-FLUSH\t{id}").into_bytes();
    for user in users {
        line.push(b'\t');
        line.extend(escape(user.as_bytes()));
    }
    line.push(b'\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_escaped() {
        let line = auth_plain(3, "smtp", "a", "b", &["nologin", "rip=192.0.2.1"]);
        assert_eq!(line, b"AUTH\t3\tPLAIN\tservice=smtp\tnologin\trip=192.0.2.1\tresp=AGEAYg==\n");
        assert_eq!(cache_flush(1, &["x\ty".into()]), b"CACHE-FLUSH\t1\tx\x01ty\n");
    }

    #[tokio::test]
    async fn a_server_without_line_ends_is_refused_not_buffered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let junk = vec![b'x'; CLIENT_MAX_LINE * 4];
            let _ = s.write_all(&junk).await;
        });
        let mut conn = Connection::open(&path).await.unwrap();
        assert!(matches!(conn.line().await, Err(ClientError::Protocol(_))));
    }
}
