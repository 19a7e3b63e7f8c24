//! A pool of long-lived `ntlm_auth` helper processes for one mechanism (NTLM or GSS-SPNEGO).
//!
//! Each [`HelperSession`] is pinned to one process for its whole exchange (`ntlm_auth` keeps the
//! NTLMSSP state between `YR` and `KK`; a new `YR` resets it, so a process serves exchange after
//! exchange). At most `helpers` processes run; a session waits at most `busy_timeout` for a free
//! one, then fails with [`HelperError::Busy`]. Every call has a timeout. A helper that exited,
//! timed out, wrote an overlong or surplus line, was left with a call in flight (the exchange
//! was abandoned mid-call) or was poisoned is killed, never reused; the next session starts a
//! fresh one. The helper runs with an empty environment plus what the admin configured, and
//! its stderr goes to our log, quoted, one bounded line at a time.

use crate::config::WinbindSettings;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::helper::{HelperError, HelperSession, MechHelper};
use crate::sasl::winbind::HelperProtocol;

/// Longest stderr line logged; the rest of a longer line is dropped.
const MAX_STDERR_LINE: usize = 512;

/// The helper pool for one mechanism.
#[derive(Debug, Clone)]
pub struct HelperPool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    protocol: HelperProtocol,
    settings: WinbindSettings,
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<Helper>>,
}

#[derive(Debug)]
struct Helper {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl HelperPool {
    /// A pool for `protocol`; no process starts before the first exchange.
    pub fn new(protocol: HelperProtocol, settings: WinbindSettings) -> Self {
        let permits = Arc::new(Semaphore::new(settings.helpers.max(1)));
        HelperPool { inner: Arc::new(Inner { protocol, settings, permits, idle: Mutex::new(Vec::new()) }) }
    }

    /// The protocol its helpers speak.
    pub fn protocol(&self) -> HelperProtocol {
        self.inner.protocol
    }

    /// Process ids of the idle helpers (for tests and diagnostics).
    pub fn idle_pids(&self) -> Vec<u32> {
        self.inner.lock_idle().iter().filter_map(|h| h.child.id()).collect()
    }
}

impl Inner {
    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Helper>> {
        self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn spawn(&self) -> Result<Helper, HelperError> {
        let s = &self.settings;
        let mut cmd = Command::new(&s.helper_path);
        cmd.args(&s.args)
            .arg(self.protocol.helper_arg())
            .env_clear()
            .envs(&s.env)
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| {
            tracing::error!(helper = ?s.helper_path, error = %e, "cannot start the winbind helper");
            HelperError::Failed(format!("cannot start {:?}: {e}", s.helper_path))
        })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(HelperError::Failed("helper pipes missing".into()));
        };
        if let Some(stderr) = child.stderr.take() {
            let pid = child.id();
            tokio::spawn(log_stderr(BufReader::new(stderr), pid));
        }
        tracing::debug!(pid = child.id(), mechanism = self.protocol.mechanism(), "started winbind helper");
        Ok(Helper { child, stdin, stdout: BufReader::new(stdout) })
    }

    /// An idle helper that is still alive, if any.
    fn take_idle(&self) -> Option<Helper> {
        let mut idle = self.lock_idle();
        while let Some(mut h) = idle.pop() {
            match h.child.try_wait() {
                Ok(None) => return Some(h),
                _ => tracing::warn!(pid = h.child.id(), "winbind helper exited while idle; starting another"),
            }
        }
        None
    }
}

#[async_trait]
impl MechHelper for HelperPool {
    async fn session(&self) -> Result<Box<dyn HelperSession>, HelperError> {
        let permit = tokio::time::timeout(self.inner.settings.busy_timeout, self.inner.permits.clone().acquire_owned())
            .await
            .map_err(|_| HelperError::Busy)?
            .map_err(|_| HelperError::Busy)?;
        let helper = self.inner.take_idle();
        Ok(Box::new(PoolSession { pool: self.inner.clone(), reused: helper.is_some(), helper, poisoned: false, calls: 0, _permit: permit }))
    }
}

/// One exchange on one helper.
struct PoolSession {
    pool: Arc<Inner>,
    /// `None` until the first call starts one, and after the helper was killed.
    helper: Option<Helper>,
    /// Whether `helper` came from the idle list (it may have died since).
    reused: bool,
    poisoned: bool,
    calls: usize,
    _permit: OwnedSemaphorePermit,
}

enum CallError {
    /// The helper is gone (EOF, broken pipe) before answering anything.
    Gone(String),
    Other(HelperError),
}

impl PoolSession {
    async fn call_once(&mut self, line: &[u8]) -> Result<Vec<u8>, CallError> {
        let helper = match &mut self.helper {
            Some(h) => h,
            None => self.helper.insert(self.pool.spawn().map_err(CallError::Other)?),
        };
        let max_line = self.pool.settings.max_line;
        let exchange = async {
            helper.stdin.write_all(line).await.map_err(|e| CallError::Gone(format!("write: {e}")))?;
            helper.stdin.write_all(b"\n").await.map_err(|e| CallError::Gone(format!("write: {e}")))?;
            helper.stdin.flush().await.map_err(|e| CallError::Gone(format!("write: {e}")))?;
            let reply = read_line(&mut helper.stdout, max_line).await?;
            if !helper.stdout.buffer().is_empty() {
                return Err(CallError::Other(HelperError::Failed("the helper wrote more than one line".into())));
            }
            Ok(reply)
        };
        // While this runs, a dropped future leaves the helper mid-call: the helper is taken
        // out first, so that cannot return it to the pool.
        match tokio::time::timeout(self.pool.settings.timeout, exchange).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => {
                self.kill();
                Err(e)
            }
            Err(_) => {
                self.kill();
                Err(CallError::Other(HelperError::Timeout))
            }
        }
    }

    fn kill(&mut self) {
        if let Some(mut h) = self.helper.take() {
            tracing::debug!(pid = h.child.id(), "killing winbind helper");
            let _ = h.child.start_kill();
        }
    }
}

#[async_trait]
impl HelperSession for PoolSession {
    async fn call(&mut self, line: &[u8]) -> Result<Vec<u8>, HelperError> {
        if line.len() > self.pool.settings.max_line || line.contains(&b'\n') {
            return Err(HelperError::Failed("request line too long or has a line break".into()));
        }
        // Mark the call in flight: if this future is dropped before it finishes, `Drop` sees
        // `calls` odd and kills the helper instead of reusing it with an unread answer pending.
        self.calls += 1;
        let first = self.calls == 1;
        let result = match self.call_once(line).await {
            // An idle helper may have died since it was checked; the first line (YR) can be
            // repeated on a fresh one.
            Err(CallError::Gone(why)) if first && self.reused => {
                tracing::warn!(reason = %why, "reused winbind helper is gone; retrying on a fresh one");
                self.reused = false;
                self.call_once(line).await
            }
            other => other,
        };
        self.calls += 1;
        result.map_err(|e| match e {
            CallError::Gone(why) => HelperError::Failed(format!("the helper is gone ({why})")),
            CallError::Other(e) => e,
        })
    }

    fn poison(&mut self) {
        self.poisoned = true;
    }
}

impl Drop for PoolSession {
    fn drop(&mut self) {
        if self.poisoned || self.calls % 2 == 1 {
            self.kill();
            return;
        }
        if let Some(h) = self.helper.take() {
            let mut idle = self.pool.lock_idle();
            if idle.len() < self.pool.settings.helpers.max(1) {
                idle.push(h);
            }
        }
    }
}

/// Reads one line without its `\n`, failing (without growing further) past `max` bytes.
async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R, max: usize) -> Result<Vec<u8>, CallError> {
    let mut line = Vec::new();
    loop {
        let buf = r.fill_buf().await.map_err(|e| CallError::Gone(format!("read: {e}")))?;
        if buf.is_empty() {
            return Err(CallError::Gone("end of output".into()));
        }
        let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        if line.len() + chunk.len() > max {
            return Err(CallError::Other(HelperError::Failed(format!("the helper's answer is longer than {max} bytes"))));
        }
        line.extend_from_slice(chunk);
        let used = done.unwrap_or(buf.len());
        r.consume(used);
        if done.is_some() {
            return Ok(line);
        }
    }
}

/// Logs the helper's stderr, quoted, in bounded lines, until it closes.
async fn log_stderr<R: AsyncBufRead + Unpin>(mut r: R, pid: Option<u32>) {
    let mut line = Vec::new();
    let mut truncated = false;
    loop {
        let buf = match r.fill_buf().await {
            Ok([]) | Err(_) => break,
            Ok(buf) => buf,
        };
        let (chunk, end) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        let room = MAX_STDERR_LINE.saturating_sub(line.len());
        truncated |= chunk.len() > room;
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let used = end.unwrap_or(buf.len());
        r.consume(used);
        if end.is_some() {
            let text = String::from_utf8_lossy(&line);
            tracing::warn!(pid, truncated, "winbind helper stderr: {:?}", text);
            line.clear();
            truncated = false;
        }
    }
    if !line.is_empty() {
        tracing::warn!(pid, truncated, "winbind helper stderr: {:?}", String::from_utf8_lossy(&line));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A pool whose "helper" is `/bin/sh -c script` (the protocol argument becomes `$1`).
    fn pool(script: &str, tweak: impl FnOnce(&mut WinbindSettings)) -> HelperPool {
        let mut s = WinbindSettings {
            helper_path: "/bin/sh".into(),
            args: vec!["-c".into(), script.into(), "sh".into()],
            timeout: Duration::from_secs(5),
            busy_timeout: Duration::from_millis(200),
            ..WinbindSettings::default()
        };
        tweak(&mut s);
        HelperPool::new(HelperProtocol::Ntlmssp, s)
    }

    /// Answers every line with `<line> pid=<pid> arg=<$1> env=<$FOO>`.
    const ECHO: &str = r#"while read -r l; do echo "$l pid=$$ arg=$1 env=${FOO-unset} home=${HOME-unset}"; done"#;

    #[tokio::test]
    async fn session_is_pinned_and_helper_reused() {
        let p = pool(ECHO, |s| {
            s.env.insert("FOO".into(), "bar".into());
        });
        let mut s = p.session().await.unwrap();
        let a = String::from_utf8(s.call(b"YR a").await.unwrap()).unwrap();
        let b = String::from_utf8(s.call(b"KK b").await.unwrap()).unwrap();
        assert!(a.starts_with("YR a pid="), "{a}");
        assert!(a.ends_with("arg=--helper-protocol=squid-2.5-ntlmssp env=bar home=unset"), "{a}");
        let pid = |t: &str| t.split(' ').find(|f| f.starts_with("pid=")).map(str::to_owned);
        assert_eq!(pid(&a), pid(&b));
        drop(s);
        assert_eq!(p.idle_pids().len(), 1);
        let mut s = p.session().await.unwrap();
        let c = String::from_utf8(s.call(b"YR c").await.unwrap()).unwrap();
        assert_eq!(pid(&a), pid(&c));
    }

    #[tokio::test]
    async fn poisoned_helper_is_replaced() {
        let p = pool(ECHO, |_| {});
        let mut s = p.session().await.unwrap();
        s.call(b"YR a").await.unwrap();
        s.poison();
        drop(s);
        assert!(p.idle_pids().is_empty());
        let mut s = p.session().await.unwrap();
        assert!(s.call(b"YR a").await.is_ok());
    }

    #[tokio::test]
    async fn timeout_kills_and_next_exchange_succeeds() {
        // Answers only lines starting with "YR"; sleeps on anything else.
        let p = pool(r#"while read -r l; do case "$l" in YR*) echo "TT x";; *) exec /bin/sleep 30;; esac; done"#, |s| s.timeout = Duration::from_millis(300));
        let mut s = p.session().await.unwrap();
        assert_eq!(s.call(b"YR a").await.unwrap(), b"TT x");
        assert_eq!(s.call(b"KK a").await, Err(HelperError::Timeout));
        // The exchange is over: a further call starts a fresh helper, which has no state.
        drop(s);
        let mut s = p.session().await.unwrap();
        assert_eq!(s.call(b"YR b").await.unwrap(), b"TT x");
    }

    #[tokio::test]
    async fn dead_helper_fails_its_exchange_only() {
        let p = pool(r#"read -r l; echo "TT x"; read -r l; exit 3"#, |_| {});
        let mut s = p.session().await.unwrap();
        assert_eq!(s.call(b"YR a").await.unwrap(), b"TT x");
        assert!(matches!(s.call(b"KK a").await, Err(HelperError::Failed(_))));
        drop(s);
        let mut s = p.session().await.unwrap();
        assert_eq!(s.call(b"YR b").await.unwrap(), b"TT x");
    }

    #[tokio::test]
    async fn helper_that_died_while_idle_is_not_used() {
        let p = pool(r#"read -r l; echo "TT x"; exit 0"#, |_| {});
        let mut s = p.session().await.unwrap();
        assert_eq!(s.call(b"YR a").await.unwrap(), b"TT x");
        drop(s);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut s = p.session().await.unwrap();
        assert_eq!(s.call(b"YR b").await.unwrap(), b"TT x");
    }

    #[tokio::test]
    async fn overlong_and_surplus_lines_are_refused() {
        let p = pool(r#"read -r l; while :; do printf aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa; done"#, |s| s.max_line = 1000);
        let mut s = p.session().await.unwrap();
        assert!(matches!(s.call(b"YR a").await, Err(HelperError::Failed(m)) if m.contains("longer than 1000")));
        let p = pool(r#"read -r l; printf 'TT x\nTT y\n'; read -r l"#, |_| {});
        let mut s = p.session().await.unwrap();
        // Both lines may arrive in one read or two; either way the helper must not be trusted.
        match s.call(b"YR a").await {
            Err(HelperError::Failed(m)) => assert!(m.contains("more than one line"), "{m}"),
            Ok(first) => assert_eq!(first, b"TT x"),
            Err(e) => panic!("{e}"),
        }
    }

    #[tokio::test]
    async fn busy_pool_refuses_after_the_wait() {
        let p = pool(ECHO, |s| s.helpers = 1);
        let s1 = p.session().await.unwrap();
        assert_eq!(p.session().await.err(), Some(HelperError::Busy));
        drop(s1);
        assert!(p.session().await.is_ok());
    }

    #[tokio::test]
    async fn abandoned_call_does_not_return_the_helper() {
        let p = pool(r#"read -r l; /bin/sleep 1; echo "TT late"; while read -r l; do echo "TT $l"; done"#, |_| {});
        let mut s = p.session().await.unwrap();
        let r = tokio::time::timeout(Duration::from_millis(100), s.call(b"YR a")).await;
        assert!(r.is_err());
        drop(s);
        assert!(p.idle_pids().is_empty());
    }

    #[tokio::test]
    async fn missing_helper_is_a_failure() {
        let p = pool("", |s| s.helper_path = "/nonexistent/ntlm_auth".into());
        let mut s = p.session().await.unwrap();
        assert!(matches!(s.call(b"YR a").await, Err(HelperError::Failed(_))));
    }

    #[test]
    fn debug_hides_env_values() {
        let mut s = WinbindSettings::default();
        s.env.insert("KRB5_SECRET".into(), "hunter2".into());
        let text = format!("{s:?}");
        assert!(text.contains("KRB5_SECRET") && !text.contains("hunter2"), "{text}");
    }
}
