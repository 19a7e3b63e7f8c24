//! The one bounded pool for expensive or blocking work: password hashing, file parsing, and
//! later PAM and helper calls.
//!
//! It has one thread per core and a bounded queue. The async reactor never runs such work
//! itself, so a flood of BLF-CRYPT or ARGON2 logins cannot delay the replies of users whose
//! schemes are cheap: those are verified inline, while the expensive ones queue here. When the
//! queue is full, new work is refused at once (a temporary failure) instead of piling up
//! without bound.
//!
//! A job whose waiter is gone by the time a worker takes it (the request was cancelled, timed
//! out, or its connection closed) is dropped unrun: a client that queues expensive logins and
//! leaves costs no hashing. A job already running finishes; its value is discarded.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread;

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Why pool work did not produce a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// The queue is full: the daemon is overloaded.
    #[error("the blocking pool's queue is full")]
    Busy,
    /// The job panicked (a bug); the pool thread survives.
    #[error("a blocking job panicked")]
    Panicked,
    /// The pool is shutting down.
    #[error("the blocking pool is shut down")]
    Closed,
}

/// A fixed set of worker threads fed through a bounded queue.
#[derive(Clone, Debug)]
pub struct Pool {
    tx: SyncSender<Job>,
    threads: usize,
}

impl Pool {
    /// Starts `threads` workers (0 means one per core) with room for `queue` waiting jobs.
    pub fn new(threads: usize, queue: usize) -> std::io::Result<Pool> {
        let threads = if threads == 0 { thread::available_parallelism().map(usize::from).unwrap_or(2) } else { threads };
        let (tx, rx) = sync_channel::<Job>(queue.max(1));
        // A std Mutex around the receiver: workers hold it only while taking the next job.
        let rx = Arc::new(Mutex::new(rx));
        for n in 0..threads {
            let rx = Arc::clone(&rx);
            thread::Builder::new().name(format!("saslgate-pool-{n}")).spawn(move || worker(&rx))?;
        }
        Ok(Pool { tx, threads })
    }

    /// Number of worker threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f` on a pool thread and waits for its value without blocking the reactor.
    pub async fn run<T, F>(&self, f: F) -> Result<T, PoolError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (done_tx, done_rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            // The request that wanted this is gone: never start the work.
            if done_tx.is_closed() {
                return;
            }
            let result = catch_unwind(AssertUnwindSafe(f)).map_err(|_| PoolError::Panicked);
            // The waiter may be gone (request cancelled); the value is then dropped.
            let _ = done_tx.send(result);
        });
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(PoolError::Busy),
            Err(TrySendError::Disconnected(_)) => return Err(PoolError::Closed),
        }
        done_rx.await.map_err(|_| PoolError::Closed)?
    }
}

fn worker(rx: &Mutex<Receiver<Job>>) {
    loop {
        let job = {
            let rx = rx.lock().unwrap_or_else(|e| e.into_inner());
            rx.recv()
        };
        match job {
            Ok(job) => job(),
            Err(_) => return, // every sender is gone
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn runs_jobs_and_survives_panics() {
        let pool = Pool::new(2, 8).unwrap();
        assert_eq!(pool.run(|| 6 * 7).await, Ok(42));
        assert_eq!(pool.run(|| -> u8 { panic!("boom") }).await, Err(PoolError::Panicked));
        assert_eq!(pool.run(|| 1).await, Ok(1));
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once() {
        let pool = Pool::new(1, 1).unwrap();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let release_rx = Arc::new(Mutex::new(release_rx));
        let blocker = {
            let pool = pool.clone();
            let r = Arc::clone(&release_rx);
            tokio::spawn(async move { pool.run(move || r.lock().unwrap().recv().ok()).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await; // the worker holds the blocker
        let queued = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.run(|| 2).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await; // the queue's one slot is taken
        assert_eq!(pool.run(|| 3).await, Err(PoolError::Busy));
        release_tx.send(()).unwrap();
        assert_eq!(blocker.await.unwrap(), Ok(Some(())));
        assert_eq!(queued.await.unwrap(), Ok(2));
    }

    #[tokio::test]
    async fn a_job_whose_waiter_left_never_runs() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let pool = Pool::new(1, 8).unwrap();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let release_rx = Arc::new(Mutex::new(release_rx));
        let blocker = {
            let pool = pool.clone();
            let r = Arc::clone(&release_rx);
            tokio::spawn(async move { pool.run(move || r.lock().unwrap().recv().ok()).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await; // the worker holds the blocker
        let ran = Arc::new(AtomicUsize::new(0));
        let mut waiters = Vec::new();
        for _ in 0..5 {
            let (pool, ran) = (pool.clone(), Arc::clone(&ran));
            waiters.push(tokio::spawn(async move { pool.run(move || ran.fetch_add(1, Ordering::SeqCst)).await }));
        }
        tokio::time::sleep(Duration::from_millis(50)).await; // all five are queued
        for w in &waiters {
            w.abort(); // the requests are cancelled while their jobs wait
        }
        for w in waiters {
            let _ = w.await;
        }
        release_tx.send(()).unwrap();
        assert_eq!(blocker.await.unwrap(), Ok(Some(())));
        // A job queued after them runs, so the worker has passed the abandoned ones.
        assert_eq!(pool.run(|| 7).await, Ok(7));
        assert_eq!(ran.load(Ordering::SeqCst), 0, "abandoned jobs ran");
    }
}
