//! The one bounded pool for expensive or blocking work: password hashing, file parsing, and
//! later PAM and helper calls.
//!
//! It has one thread per core and a bounded queue. The async reactor never runs such work
//! itself, so a flood of BLF-CRYPT or ARGON2 logins cannot delay the replies of users whose
//! schemes are cheap: those are verified inline, while the expensive ones queue here. When the
//! queue is full, new work is refused at once (a temporary failure) instead of piling up
//! without bound.
//!
//! Its threads run at a lower CPU priority than the reactor (`pool.nice`, `pool.scheduling`):
//! when a cheap login wakes a reactor thread while every core is hashing, the kernel runs the
//! reactor at once instead of letting the hashing thread finish its time slice.
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

/// The Linux scheduling policy of the pool's threads (see `sched(7)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scheduling {
    /// `SCHED_OTHER`, weighted by the nice value.
    #[default]
    Normal,
    /// `SCHED_BATCH`: like `SCHED_OTHER` with the nice value, but never preempts on wakeup.
    Batch,
    /// `SCHED_IDLE`: runs only on CPU time nobody else wants (the nice value is ignored).
    Idle,
}

/// The CPU priority of the pool's threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Priority {
    /// Nice value, 0 (the reactor's) to 19 (the lowest).
    pub nice: u8,
    /// Scheduling policy.
    pub scheduling: Scheduling,
}

/// A fixed set of worker threads fed through a bounded queue.
#[derive(Clone, Debug)]
pub struct Pool {
    tx: SyncSender<Job>,
    threads: usize,
}

impl Pool {
    /// Starts `threads` workers (0 means one per core) with room for `queue` waiting jobs, at
    /// the reactor's own priority.
    pub fn new(threads: usize, queue: usize) -> std::io::Result<Pool> {
        Pool::with_priority(threads, queue, Priority::default())
    }

    /// [`Pool::new`] with the workers at `priority`. Each thread sets its own priority before it
    /// takes its first job; if the kernel refuses, it logs a warning and runs at the inherited one.
    pub fn with_priority(threads: usize, queue: usize, priority: Priority) -> std::io::Result<Pool> {
        let threads = if threads == 0 { thread::available_parallelism().map(usize::from).unwrap_or(2) } else { threads };
        let (tx, rx) = sync_channel::<Job>(queue.max(1));
        // A std Mutex around the receiver: workers hold it only while taking the next job.
        let rx = Arc::new(Mutex::new(rx));
        for n in 0..threads {
            let rx = Arc::clone(&rx);
            thread::Builder::new().name(format!("saslgate-pool-{n}")).spawn(move || {
                // Before the first job. A refusal (a seccomp filter, say) costs latency under
                // load, not logins: the thread works on at the inherited priority.
                if let Err(e) = os::set_current_thread_priority(priority) {
                    tracing::warn!("cannot lower the CPU priority of hashing thread {n} to {priority:?}: {e}");
                }
                worker(&rx);
            })?;
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

/// The one place the pool calls libc: `setpriority(2)` and `sched_setscheduler(2)` on the calling
/// thread (Linux applies both per thread when given 0). Neither `nix` nor std exposes them.
#[allow(unsafe_code)]
mod os {
    use super::{Priority, Scheduling};

    pub(super) fn set_current_thread_priority(priority: Priority) -> std::io::Result<()> {
        if priority == Priority::default() {
            return Ok(()); // inherit the process's (usually nice 0, SCHED_OTHER): no call
        }
        let policy = match priority.scheduling {
            Scheduling::Normal => libc::SCHED_OTHER,
            Scheduling::Batch => libc::SCHED_BATCH,
            Scheduling::Idle => libc::SCHED_IDLE,
        };
        if priority.scheduling != Scheduling::Normal {
            let param = libc::sched_param { sched_priority: 0 };
            // SAFETY: `param` is a valid, initialised sched_param that outlives the call; pid 0
            // is the calling thread; the kernel only reads the struct.
            if unsafe { libc::sched_setscheduler(0, policy, &param) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        if priority.scheduling != Scheduling::Idle {
            // SAFETY: plain integer arguments; with PRIO_PROCESS and 0, Linux changes the
            // calling thread only. Raising one's own nice value needs no privilege.
            if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, libc::c_int::from(priority.nice)) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
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

    /// The nice value (field 19) and policy (field 41) of one of this process's threads, from
    /// /proc/self/task/TID/stat (fields counted after the `(comm)` one, which may hold spaces).
    fn nice_and_policy(tid: i32) -> (i64, u32) {
        let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = rest.split(' ').collect();
        (fields[19 - 3].parse().unwrap(), fields[41 - 3].parse().unwrap())
    }

    #[tokio::test]
    async fn pool_threads_run_at_the_configured_priority() {
        let me = nix::unistd::gettid().as_raw();
        let mine = nice_and_policy(me);
        let cases = [
            (Priority { nice: 7, scheduling: Scheduling::Normal }, (7, 0)),
            (Priority { nice: 19, scheduling: Scheduling::Batch }, (19, 3)),
            (Priority { nice: 0, scheduling: Scheduling::Idle }, (0, 5)),
        ];
        for (priority, want) in cases {
            let pool = Pool::with_priority(2, 8, priority).unwrap();
            for _ in 0..4 {
                let tid = pool.run(|| nix::unistd::gettid().as_raw()).await.unwrap();
                assert_ne!(tid, me);
                assert_eq!(nice_and_policy(tid), want, "{priority:?}");
            }
        }
        // The default pool leaves its threads at the process's priority; the caller is unchanged.
        let pool = Pool::new(1, 8).unwrap();
        let tid = pool.run(|| nix::unistd::gettid().as_raw()).await.unwrap();
        assert_eq!(nice_and_policy(tid), mine);
        assert_eq!(nice_and_policy(me), mine);
    }
}
