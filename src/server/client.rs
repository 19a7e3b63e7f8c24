//! One client-protocol connection (auth-client, login sockets).
//!
//! One task per connection reads lines, runs requests and writes replies. An AUTH is first
//! polled in place, on the connection's task: a request whose answer is ready at once (a
//! password checked inline, no penalty to wait out) is answered there, and the replies to one
//! read's worth of pipelined lines go out in one write. A request that has to wait (a CONT
//! exchange, a penalty or failure delay, hashing on the pool, a directory, a helper) moves to a
//! task of its own and into the connection's table until its final reply is queued, so a
//! CANCEL, a CONT at the wrong time or the end of the connection can stop it, and a stopped
//! request never writes again. Such a task queues its lines in the connection's outbox and wakes
//! the connection, which writes them.
//!
//! An idle connection holds no read buffer (lines are read into a buffer on the stack; only a
//! partial line is kept) and no write buffer.

use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::task::AbortHandle;

use super::Shared;
use crate::auth::{Answer, AuthRequest, Conversation, LoginConnection, Verdict};
use crate::protocol::client::{self as wire, ClientCommand, InitialResponse, Reply};
use crate::protocol::escape::escape_into;
use crate::protocol::line::{next_line, Frame};
use crate::protocol::{base64, sanitize, FailCode, ProtocolError, CLIENT_MAX_LINE};
use crate::request::RequestInfo;

/// Bytes asked for per read. The buffer is on the stack of the poll, so it costs an idle
/// connection nothing.
const READ_CHUNK: usize = 4096;
/// Replies the peer has not read yet, past which no more lines are read (Dovecot also stops
/// reading while its output buffer is full).
const OUT_HIGH_WATER: usize = 64 * 1024;

/// A request's future, boxed so that a connection waiting for its client stays small.
type RequestFuture = Pin<Box<dyn Future<Output = Option<Answer>> + Send>>;

/// What a connection shares with its requests that run as tasks of their own.
struct Link {
    shared: Arc<Shared>,
    state: Mutex<LinkState>,
    /// `state.slots.len()`, readable without the lock (written under it).
    live: AtomicUsize,
    /// `state.out` has lines.
    has_out: AtomicBool,
    /// The sequence number of the request being polled in place on the connection's task (0:
    /// none). Its first CONT registers it in the table.
    inline: AtomicU64,
}

#[derive(Default)]
struct LinkState {
    /// Requests with a task of their own (or waiting for a CONT), by request id.
    slots: HashMap<u32, Slot>,
    /// Lines queued by request tasks.
    out: Vec<u8>,
    /// The connection's task, woken when `out` gets lines.
    waker: Option<Waker>,
}

struct Slot {
    /// Which request of this id (ids may be reused once a request is over).
    seq: u64,
    /// The request sent a CONT and waits for the client's response.
    awaiting: bool,
    /// The client's response, until the request takes it.
    response: Option<Vec<u8>>,
    /// The request's task, woken when the response comes.
    waker: Option<Waker>,
    task: Option<AbortHandle>,
}

impl Slot {
    fn new(seq: u64) -> Slot {
        Slot { seq, awaiting: false, response: None, waker: None, task: None }
    }

    /// Stops the request's task; it will never write a reply.
    fn stop(self) {
        if let Some(task) = self.task {
            task.abort();
        }
    }
}

impl Link {
    /// A std Mutex: every critical section is a map operation or a buffer append.
    fn lock(&self) -> MutexGuard<'_, LinkState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `line` for the connection and wakes it (the caller holds the lock).
    fn queue(&self, state: &mut LinkState, line: &[u8]) {
        state.out.extend_from_slice(line);
        self.has_out.store(true, Ordering::Release);
        if let Some(waker) = &state.waker {
            waker.wake_by_ref();
        }
    }

    /// Removes request `id` if it is still request `seq`; true when it was (its reply may then
    /// be written).
    fn remove(&self, state: &mut LinkState, id: u32, seq: u64) -> Option<Slot> {
        if state.slots.get(&id).is_none_or(|s| s.seq != seq) {
            return None;
        }
        let slot = state.slots.remove(&id);
        self.live.store(state.slots.len(), Ordering::Release);
        slot
    }

    /// A request task's end: its answer is queued only while the request is live (a CANCEL or
    /// the end of the connection removed it, and a timed-out request gets no reply).
    fn finish(&self, id: u32, seq: u64, answer: Option<Answer>) {
        let mut state = self.lock();
        if self.remove(&mut state, id, seq).is_some() {
            if let Some(answer) = answer {
                let mut line = Vec::new();
                answer_into(&mut line, id, &answer);
                self.queue(&mut state, &line);
            }
        }
    }
}

/// Serves one client-protocol connection until the peer leaves or breaks the protocol.
pub async fn serve<S>(stream: S, shared: Arc<Shared>, login: bool)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    serve_with(stream, shared, login, None).await;
}

/// [`serve`] for a listener with its own `disable_plaintext_auth` (which wins over the
/// service's and the global setting).
pub async fn serve_with<S>(stream: S, shared: Arc<Shared>, login: bool, disable_plaintext_auth: Option<bool>)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let mut stream = std::pin::pin!(stream);
    let cuid = shared.next_cuid();
    let cookie: [u8; 16] = rand::random();
    let mechs: Vec<(&str, Vec<&str>)> = shared.auth.mechanisms().iter().map(|m| (m.name(), m.flags().to_vec())).collect();
    let handshake = wire::handshake(&mechs, shared.spid, cuid, &cookie);
    drop(mechs);
    let link = Arc::new(Link {
        shared,
        state: Mutex::new(LinkState::default()),
        live: AtomicUsize::new(0),
        has_out: AtomicBool::new(false),
        inline: AtomicU64::new(0),
    });
    let mut conn = Connection {
        link,
        login,
        disable_plaintext_auth,
        cookie,
        minor: 0,
        cpid: None,
        login_entry: None,
        phase: Phase::ExpectVersion,
        buf: Vec::new(),
        out: handshake,
        written: 0,
        write_failed: false,
        next_seq: 0,
    };
    if let Err(e) = conn.run(stream.as_mut()).await {
        static CLOSED: super::ratelog::LogLimit = super::ratelog::LogLimit::per_minute();
        if let Some(suppressed) = CLOSED.admit(std::time::Instant::now()) {
            tracing::warn!(cuid, suppressed, "closing client connection: {e}");
        }
    }
    // The peer is gone or broke the protocol: stop its requests; their replies are discarded.
    let slots = {
        let mut state = conn.link.lock();
        state.waker = None;
        conn.link.live.store(0, Ordering::Release);
        std::mem::take(&mut state.slots)
    };
    for slot in slots.into_values() {
        slot.stop();
    }
    if let (Some(cpid), Some(entry)) = (conn.cpid, &conn.login_entry) {
        conn.link.shared.auth.unregister_login(cpid, entry);
    }
    // What was answered before the end is still written.
    poll_fn(|cx| conn.poll_flush_all(cx, stream.as_mut())).await;
}

struct Connection {
    link: Arc<Link>,
    login: bool,
    disable_plaintext_auth: Option<bool>,
    cookie: [u8; 16],
    minor: u32,
    cpid: Option<u32>,
    login_entry: Option<Arc<LoginConnection>>,
    phase: Phase,
    /// A partial line (empty, without an allocation, between lines).
    buf: Vec<u8>,
    /// Replies to write; `out[..written]` are written.
    out: Vec<u8>,
    written: usize,
    /// The peer stopped reading: replies are dropped (requests still run to their end).
    write_failed: bool,
    /// The last request's sequence number.
    next_seq: u64,
}

#[derive(Clone, Copy)]
enum Phase {
    ExpectVersion,
    ExpectCpid,
    Commands,
}

/// What [`Connection::poll_io`] saw.
enum Io {
    /// The handshake is done.
    Progress,
    /// The peer closed the connection (or reading failed).
    Eof,
}

impl Connection {
    fn shared(&self) -> &Shared {
        &self.link.shared
    }

    async fn run<S: AsyncRead + AsyncWrite>(&mut self, mut stream: Pin<&mut S>) -> Result<(), ProtocolError> {
        let timeout = self.shared().handshake_timeout;
        let mut handshake_deadline = Some(Box::pin(tokio::time::sleep(timeout)));
        let mut drain = self.shared().drain_signal();
        let mut drain_seen = *drain.borrow_and_update();
        let changed = drain.changed();
        tokio::pin!(changed);
        loop {
            if handshake_deadline.is_some() && matches!(self.phase, Phase::Commands) {
                handshake_deadline = None;
            }
            let draining = self.shared().draining();
            if draining && self.link.live.load(Ordering::Acquire) == 0 {
                return Ok(()); // stopping, and nothing in flight here
            }
            tokio::select! {
                biased;
                io = poll_fn(|cx| self.poll_io(cx, stream.as_mut())) => match io? {
                    Io::Eof => return Ok(()),
                    Io::Progress => {}
                },
                () = async { if let Some(d) = handshake_deadline.as_mut() { d.await } }, if handshake_deadline.is_some() => {
                    return Err(ProtocolError::Handshake(format!("no VERSION and CPID within {timeout:?} (limits.handshake_timeout)")));
                }
                _ = &mut changed, if !drain_seen => drain_seen = true,
                // Stopping: look again soon whether the last request has finished.
                () = async { tokio::time::sleep(Duration::from_millis(20)).await }, if draining => {}
            }
        }
    }

    /// Writes what is queued, then reads and handles lines until the peer has nothing more to
    /// say for now. Ready when the handshake has just finished, the peer left or broke the
    /// protocol; otherwise it keeps serving.
    fn poll_io<S: AsyncRead + AsyncWrite>(&mut self, cx: &mut Context<'_>, mut stream: Pin<&mut S>) -> Poll<Result<Io, ProtocolError>> {
        let handshaken = matches!(self.phase, Phase::Commands);
        loop {
            let progress = !handshaken && matches!(self.phase, Phase::Commands);
            self.collect();
            self.poll_write(cx, stream.as_mut());
            if self.out.len() - self.written >= OUT_HIGH_WATER {
                // The peer does not read its replies: read no more until it does (the write
                // above registered for its room).
                return if progress { Poll::Ready(Ok(Io::Progress)) } else { Poll::Pending };
            }
            let room = CLIENT_MAX_LINE.saturating_sub(self.buf.len()).min(READ_CHUNK);
            let mut chunk = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
            let mut read = ReadBuf::uninit(&mut chunk[..room]);
            match stream.as_mut().poll_read(cx, &mut read) {
                Poll::Pending => {}
                // A read error ends the connection like EOF does.
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(Io::Eof)),
                Poll::Ready(Ok(())) if read.filled().is_empty() => return Poll::Ready(Ok(Io::Eof)),
                Poll::Ready(Ok(())) => {
                    self.input(read.filled(), cx)?;
                    continue;
                }
            }
            // Nothing to read: make sure a request task can wake us, and that nothing it
            // queued meanwhile is left behind.
            if self.link.live.load(Ordering::Acquire) > 0 || self.link.has_out.load(Ordering::Acquire) {
                let mut state = self.link.lock();
                if !state.out.is_empty() {
                    drop(state);
                    continue;
                }
                if !state.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    state.waker = Some(cx.waker().clone());
                }
            }
            if self.written == self.out.len() {
                // Nothing waits to be written: hold no buffer while idle.
                self.out = Vec::new();
                self.written = 0;
            }
            return if progress { Poll::Ready(Ok(Io::Progress)) } else { Poll::Pending };
        }
    }

    /// Moves the lines request tasks queued into `out`.
    fn collect(&mut self) {
        if !self.link.has_out.swap(false, Ordering::AcqRel) {
            return;
        }
        let mut state = self.link.lock();
        if self.written == self.out.len() {
            self.written = 0;
            self.out.clear();
            std::mem::swap(&mut self.out, &mut state.out);
        } else {
            self.out.append(&mut state.out);
        }
    }

    /// Writes as much of `out` as the socket takes now.
    fn poll_write<S: AsyncWrite>(&mut self, cx: &mut Context<'_>, mut stream: Pin<&mut S>) {
        while self.written < self.out.len() {
            if self.write_failed {
                self.written = self.out.len();
                break;
            }
            match stream.as_mut().poll_write(cx, &self.out[self.written..]) {
                Poll::Ready(Ok(n)) if n > 0 => self.written += n,
                Poll::Ready(_) => self.write_failed = true,
                Poll::Pending => return,
            }
        }
        self.written = 0;
        self.out.clear();
    }

    /// Writes everything queued, then shuts the write side down.
    fn poll_flush_all<S: AsyncWrite>(&mut self, cx: &mut Context<'_>, mut stream: Pin<&mut S>) -> Poll<()> {
        self.collect();
        self.poll_write(cx, stream.as_mut());
        if self.written < self.out.len() {
            return Poll::Pending;
        }
        if self.write_failed {
            return Poll::Ready(());
        }
        stream.poll_shutdown(cx).map(|_| ())
    }

    /// Handles the complete lines of what was just read; a partial line is kept for the next read.
    fn input(&mut self, data: &[u8], cx: &mut Context<'_>) -> Result<(), ProtocolError> {
        if self.buf.is_empty() {
            let used = self.lines(data, cx)?;
            self.buf.extend_from_slice(&data[used..]);
            return Ok(());
        }
        let mut buf = std::mem::take(&mut self.buf);
        buf.extend_from_slice(data);
        let used = self.lines(&buf, cx)?;
        buf.drain(..used);
        if !buf.is_empty() {
            self.buf = buf; // else dropped: no buffer between lines
        }
        Ok(())
    }

    /// Handles every complete line at the start of `data`; returns the bytes they took.
    fn lines(&mut self, data: &[u8], cx: &mut Context<'_>) -> Result<usize, ProtocolError> {
        let mut at = 0;
        loop {
            let rest = &data[at..];
            let (len, consumed) = match next_line(rest, CLIENT_MAX_LINE)? {
                Frame::Incomplete => return Ok(at),
                Frame::Line { len, consumed } => (len, consumed),
            };
            let line = &rest[..len];
            self.phase = match self.phase {
                Phase::ExpectVersion => {
                    self.minor = wire::parse_version(line)?.1;
                    Phase::ExpectCpid
                }
                Phase::ExpectCpid => {
                    let cpid = wire::parse_cpid(line)?;
                    self.register_cpid(cpid)?;
                    Phase::Commands
                }
                Phase::Commands => {
                    let cmd = ClientCommand::parse(line)?;
                    self.command(cmd, cx)?;
                    Phase::Commands
                }
            };
            at += consumed;
        }
    }

    fn register_cpid(&mut self, cpid: u32) -> Result<(), ProtocolError> {
        if !self.login {
            return Ok(()); // auth-only sockets forget the CPID, as Dovecot does
        }
        let entry = self.shared().auth.register_login(cpid, self.cookie).map_err(|e| ProtocolError::Handshake(e.to_string()))?;
        self.cpid = Some(cpid);
        self.login_entry = Some(entry);
        Ok(())
    }

    fn send(&mut self, line: &[u8]) {
        self.out.extend_from_slice(line);
    }

    fn command(&mut self, cmd: ClientCommand, cx: &mut Context<'_>) -> Result<(), ProtocolError> {
        match cmd {
            ClientCommand::Auth(auth) => {
                let id = auth.id.0;
                let mech = self
                    .shared()
                    .auth
                    .mechanism(&auth.mechanism)
                    .ok_or_else(|| ProtocolError::broken("AUTH", format!("unsupported mechanism {}", sanitize(auth.mechanism.as_bytes(), 32))))?;
                let initial = match auth.resp {
                    InitialResponse::Absent => None,
                    InitialResponse::EmptyValue if self.minor < crate::protocol::MINOR_EMPTY_RESP_IS_EMPTY => None,
                    InitialResponse::EmptyValue => Some(Vec::new()),
                    InitialResponse::Base64(text) => Some(text),
                };
                // The daemon-wide bounds on requests in flight (count and bytes held).
                let permit = match self.shared().auth.admit(initial.as_ref().map_or(0, Vec::len)) {
                    Ok(permit) => permit,
                    Err(answer) => {
                        answer_into(&mut self.out, id, &answer);
                        return Ok(());
                    }
                };
                // Requests answered in place are over before the next line is read: only
                // those in the table can clash or count.
                let room = match self.link.live.load(Ordering::Acquire) {
                    0 => true,
                    _ => {
                        let state = self.link.lock();
                        if state.slots.contains_key(&id) {
                            return Err(ProtocolError::broken("AUTH", format!("duplicate id {id}")));
                        }
                        state.slots.len() < self.shared().max_requests_per_connection
                    }
                };
                if self.shared().draining() {
                    self.send(&Reply::new("FAIL", id).code(FailCode::TempFail).field("reason", b"Server is shutting down").finish());
                    return Ok(());
                }
                if !room {
                    static CROWDED: super::ratelog::LogLimit = super::ratelog::LogLimit::per_minute();
                    if let Some(suppressed) = CROWDED.admit(std::time::Instant::now()) {
                        tracing::warn!(id, suppressed, "too many requests in flight on one connection");
                    }
                    self.send(&Reply::new("FAIL", id).code(FailCode::TempFail).field("reason", b"Too many requests in flight").finish());
                    return Ok(());
                }
                let (no_penalty, final_resp_ok) = (auth.params.no_penalty, auth.params.final_resp_ok);
                let request = AuthRequest {
                    id,
                    mech,
                    info: RequestInfo { disable_plaintext_auth: self.disable_plaintext_auth, ..RequestInfo::from_auth(auth.params, mech.name(), self.cpid) },
                    no_penalty,
                    final_resp_ok,
                    initial,
                    login: self.login_entry.clone(),
                    permit,
                };
                self.next_seq += 1;
                let seq = self.next_seq;
                let link = Arc::clone(&self.link);
                let mut run: RequestFuture = Box::pin(async move {
                    let mut conv = Cont { id, seq, link: &link };
                    link.shared.auth.authenticate(request, &mut conv).await
                });
                // Polled once in place: most requests are answered here, without a task.
                self.link.inline.store(seq, Ordering::Relaxed);
                let first = run.as_mut().poll(cx);
                self.link.inline.store(0, Ordering::Relaxed);
                match first {
                    Poll::Ready(answer) => {
                        if self.link.live.load(Ordering::Acquire) > 0 {
                            // Registered by a CONT, should one have been answered at once.
                            let mut state = self.link.lock();
                            self.link.remove(&mut state, id, seq);
                        }
                        if let Some(answer) = answer {
                            answer_into(&mut self.out, id, &answer);
                        }
                    }
                    Poll::Pending => self.spawn(id, seq, run, cx),
                }
                Ok(())
            }
            ClientCommand::Cont { id, data } => {
                let reason = {
                    let mut state = self.link.lock();
                    match state.slots.get_mut(&id.0) {
                        None => Some(b"Authentication request timed out".as_slice()),
                        Some(slot) if slot.awaiting => {
                            // Exactly one response per challenge.
                            slot.awaiting = false;
                            slot.response = Some(data);
                            if let Some(waker) = slot.waker.take() {
                                waker.wake();
                            }
                            None
                        }
                        Some(slot) => {
                            let seq = slot.seq;
                            if let Some(slot) = self.link.remove(&mut state, id.0, seq) {
                                slot.stop();
                            }
                            Some(b"Unexpected continuation".as_slice())
                        }
                    }
                };
                if let Some(reason) = reason {
                    self.send(&Reply::new("FAIL", id).field("reason", reason).finish());
                }
                Ok(())
            }
            ClientCommand::Cancel { id } => {
                if self.link.live.load(Ordering::Acquire) > 0 {
                    let mut state = self.link.lock();
                    if let Some(seq) = state.slots.get(&id).map(|s| s.seq) {
                        if let Some(slot) = self.link.remove(&mut state, id, seq) {
                            slot.stop();
                        }
                    }
                }
                if let Some(entry) = &self.login_entry {
                    entry.forget(id);
                }
                Ok(())
            }
        }
    }

    /// A request that has to wait gets a task of its own and a place in the table.
    fn spawn(&mut self, id: u32, seq: u64, run: RequestFuture, cx: &mut Context<'_>) {
        let mut state = self.link.lock();
        let slot = state.slots.entry(id).or_insert_with(|| Slot::new(seq));
        if slot.seq != seq {
            // Cannot happen (a duplicate id is refused before the request starts); were it to,
            // the request is dropped rather than answer under another request's id.
            return;
        }
        self.link.live.store(state.slots.len(), Ordering::Release);
        if !state.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            state.waker = Some(cx.waker().clone());
        }
        let link = Arc::clone(&self.link);
        let task = tokio::spawn(async move {
            let answer = run.await;
            link.finish(id, seq, answer);
        });
        if let Some(slot) = state.slots.get_mut(&id) {
            slot.task = Some(task.abort_handle());
        }
    }
}

/// The server's side of one request's CONT exchange.
struct Cont<'a> {
    id: u32,
    seq: u64,
    link: &'a Link,
}

#[async_trait]
impl Conversation for Cont<'_> {
    async fn challenge(&mut self, data: &[u8]) -> Option<Vec<u8>> {
        let line = Reply::new("CONT", self.id).raw(base64::encode(data).as_bytes()).finish();
        {
            let mut state = self.link.lock();
            match state.slots.get_mut(&self.id) {
                Some(slot) if slot.seq == self.seq => slot.awaiting = true,
                Some(_) => return None, // stopped, and the id taken by another request
                // Still being polled in place: the request goes into the table now.
                None if self.link.inline.load(Ordering::Relaxed) == self.seq => {
                    state.slots.insert(self.id, Slot { awaiting: true, ..Slot::new(self.seq) });
                    self.link.live.store(state.slots.len(), Ordering::Release);
                }
                None => return None, // stopped
            }
            self.link.queue(&mut state, &line);
        }
        poll_fn(|cx| {
            let mut state = self.link.lock();
            match state.slots.get_mut(&self.id) {
                Some(slot) if slot.seq == self.seq => match slot.response.take() {
                    Some(response) => Poll::Ready(Some(response)),
                    None => {
                        if !slot.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                            slot.waker = Some(cx.waker().clone());
                        }
                        Poll::Pending
                    }
                },
                _ => Poll::Ready(None), // the client is gone or cancelled
            }
        })
        .await
    }
}

/// Appends the final reply line of a request: where every `OK` and `FAIL` of an AUTH is
/// written.
fn answer_into(out: &mut Vec<u8>, id: u32, answer: &Answer) {
    // Room for the whole line at once (escapes aside): the buffer grows once, not per field.
    out.reserve(16 + answer.fields.iter().map(|(k, v)| k.len() + v.len() + 2).sum::<usize>());
    out.extend_from_slice(match answer.verdict {
        Verdict::Ok => b"OK\t",
        Verdict::Fail => b"FAIL\t",
    });
    let mut digits = [0u8; 10];
    out.extend_from_slice(decimal(id, &mut digits));
    for (k, v) in answer.fields.iter() {
        out.push(b'\t');
        out.extend_from_slice(k.as_bytes());
        // Dovecot always writes the names as `key=value`, even empty (`user=\toriginal_user=`
        // for an empty name); other empty values are flags, written bare.
        if !v.is_empty() || k == "user" || k == "original_user" {
            out.push(b'=');
            escape_into(v.as_bytes(), out);
        }
    }
    out.push(b'\n');
}

/// `n` in decimal, in `buf`.
fn decimal(mut n: u32, buf: &mut [u8; 10]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Fields;

    #[test]
    fn answer_lines_are_written_as_the_reply_builder_writes_them() {
        for id in [0, 7, 10, 4_294_967_295] {
            let mut fields = Fields::new();
            fields.set("user", "");
            fields.set("original_user", "");
            fields.set("nodelay", "");
            fields.set("reason", "a\tb\nc");
            for verdict in [Verdict::Ok, Verdict::Fail] {
                let answer = Answer { verdict, fields: fields.clone() };
                let verb = if verdict == Verdict::Ok { "OK" } else { "FAIL" };
                let expected = Reply::new(verb, id)
                    .field_explicit("user", b"")
                    .field_explicit("original_user", b"")
                    .field("nodelay", b"")
                    .field("reason", b"a\tb\nc")
                    .finish();
                let mut out = b"before\n".to_vec();
                answer_into(&mut out, id, &answer);
                assert_eq!(out[7..], expected[..], "{}", String::from_utf8_lossy(&out));
            }
        }
    }
}
