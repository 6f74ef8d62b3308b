//! Password verification on a fixed set of threads.
//!
//! An argon2id check takes the memory its hash names (19 MiB for mailfleet's own hashes) and
//! tens of milliseconds of CPU. Run on tokio's blocking pool, a burst of failed logins would
//! start hundreds of threads, each with its own allocator arena holding its 19 MiB afterwards.
//! Here a few threads (about one per core) take checks from a bounded queue, so memory is
//! bounded by the thread count whatever the burst, and is handed back to the system when the
//! queue runs dry. A caller that stops waiting (its session's timeout) leaves a check that is
//! skipped when its turn comes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// Why a check did not run.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PoolError {
    #[error("too many password checks waiting")]
    Busy,
    #[error("password check pool stopped")]
    Stopped,
}

struct Job {
    hash: String,
    password: String,
    done: oneshot::Sender<bool>,
}

/// A fixed pool of password-checking threads with a bounded queue.
pub struct VerifyPool {
    jobs: SyncSender<Job>,
    waiting: Arc<AtomicUsize>,
    workers: usize,
}

impl VerifyPool {
    /// `workers` threads (at least one) and room for `queue` waiting checks.
    pub fn new(workers: usize, queue: usize) -> VerifyPool {
        fix_mmap_threshold();
        let workers = workers.max(1);
        let (jobs, rx) = std::sync::mpsc::sync_channel::<Job>(queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let waiting = Arc::new(AtomicUsize::new(0));
        for i in 0..workers {
            let rx = rx.clone();
            let waiting = waiting.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("mailfleet-auth-{i}"))
                .spawn(move || worker(&rx, &waiting));
            if let Err(e) = spawned {
                tracing::error!("cannot start password check thread {i}: {e}");
            }
        }
        VerifyPool {
            jobs,
            waiting,
            workers,
        }
    }

    /// A pool sized to the machine: one thread per core, a queue of 64 per thread.
    pub fn for_this_machine() -> VerifyPool {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        VerifyPool::new(cores, 64 * cores)
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Checks `password` against the PHC string `hash` on the pool. `Busy` at once when the
    /// queue is full.
    pub async fn verify(&self, hash: String, password: String) -> Result<bool, PoolError> {
        let (done, result) = oneshot::channel();
        self.waiting.fetch_add(1, Ordering::SeqCst);
        match self.jobs.try_send(Job {
            hash,
            password,
            done,
        }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                return Err(PoolError::Busy);
            }
            Err(TrySendError::Disconnected(_)) => {
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                return Err(PoolError::Stopped);
            }
        }
        result.await.map_err(|_| PoolError::Stopped)
    }
}

fn worker(rx: &Mutex<Receiver<Job>>, waiting: &AtomicUsize) {
    loop {
        let job = {
            let rx = rx.lock().unwrap_or_else(|p| p.into_inner());
            rx.recv()
        };
        let Ok(job) = job else {
            return;
        };
        let Job {
            hash,
            password,
            done,
        } = job;
        if !done.is_closed() {
            let ok = mailfleet_store::password::verify_password(&hash, &password);
            let _ = done.send(ok);
        }
        drop((hash, password));
        if waiting.fetch_sub(1, Ordering::SeqCst) == 1 {
            release_free_memory();
        }
    }
}

/// Allocations of 4 MiB and more get their own mapping, returned to the system when freed.
///
/// glibc raises its mmap threshold each time such a mapping is freed, so after the first
/// check every argon2 block array (19 MiB) comes from a thread's heap instead, where it stays
/// after the check, and a burst leaves several of them behind across arenas (measured: a
/// node went from 25 to 180 MiB during its first burst of 100 failed logins, with two
/// checking threads). A fixed threshold turns the adjustment off, for the whole process:
/// the other large allocations (whole messages read from the blob store) gain from it too.
fn fix_mmap_threshold() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: mallopt only sets an allocator parameter.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        }
    });
}

/// Hands freed heap memory back to the system (glibc keeps a thread's arena otherwise).
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn checks_run_and_a_full_queue_is_busy() {
        let hash = mailfleet_store::password::hash_password("right").unwrap();
        let pool = Arc::new(VerifyPool::new(1, 2));
        assert_eq!(pool.verify(hash.clone(), "right".into()).await, Ok(true));
        assert_eq!(pool.verify(hash.clone(), "wrong".into()).await, Ok(false));
        // One running, two queued: the rest are refused at once rather than piling up.
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (pool, hash) = (pool.clone(), hash.clone());
            tasks.push(tokio::spawn(async move {
                pool.verify(hash, "wrong".into()).await
            }));
        }
        let mut busy = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(false) => {}
                Err(PoolError::Busy) => busy += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        // Eight offered within microseconds to a queue of two behind a check of tens of
        // milliseconds: most are refused (all but three when nothing finishes meanwhile).
        assert!(busy >= 1, "{busy} of 8 refused");
        assert_eq!(pool.verify(hash, "right".into()).await, Ok(true));
    }
}
