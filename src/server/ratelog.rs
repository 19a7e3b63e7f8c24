//! Rate limits for the warnings a peer can cause once per connection: a refused connection, a
//! broken or timed-out handshake, a protocol error. A local user who opens connections in a loop
//! must not be able to fill the disk with log lines, so each kind of line is written at most
//! [`LogLimit::per_window`] times per window; the lines left out are counted and the count is
//! written with the next line of that kind (`suppressed=N`).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One kind of per-connection warning.
pub(crate) struct LogLimit {
    per_window: u32,
    window: Duration,
    // A std Mutex: held for a few integer updates, never across an await.
    state: Mutex<State>,
}

struct State {
    /// When the current window began (`None` before the first line).
    start: Option<Instant>,
    /// Lines written in the current window.
    written: u32,
    /// Lines left out since the last one written.
    suppressed: u64,
}

impl LogLimit {
    /// At most `per_window` lines per `window`.
    pub(crate) const fn new(per_window: u32, window: Duration) -> LogLimit {
        LogLimit { per_window, window, state: Mutex::new(State { start: None, written: 0, suppressed: 0 }) }
    }

    /// The per-connection warnings' limit: 20 lines a minute of each kind.
    pub(crate) const fn per_minute() -> LogLimit {
        LogLimit::new(20, Duration::from_secs(60))
    }

    /// `Some(n)` when a line may be written now (`n` lines were left out before it), `None`
    /// when it is to be left out.
    pub(crate) fn admit(&self, now: Instant) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.start.is_none_or(|start| now.saturating_duration_since(start) >= self.window) {
            s.start = Some(now);
            s.written = 0;
        }
        if s.written < self.per_window {
            s.written += 1;
            Some(std::mem::take(&mut s.suppressed))
        } else {
            s.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_few_per_window_and_counts_the_rest() {
        let limit = LogLimit::new(3, Duration::from_secs(60));
        let t = Instant::now();
        assert_eq!((0..3).map(|_| limit.admit(t)).collect::<Vec<_>>(), vec![Some(0), Some(0), Some(0)]);
        for _ in 0..1000 {
            assert_eq!(limit.admit(t + Duration::from_secs(59)), None);
        }
        // The next window: the first line carries the count of those left out.
        assert_eq!(limit.admit(t + Duration::from_secs(60)), Some(1000));
        assert_eq!(limit.admit(t + Duration::from_secs(61)), Some(0));
    }
}
