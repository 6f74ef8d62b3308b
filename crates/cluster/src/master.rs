//! The master's cluster-wide jobs (DESIGN.md §4): each has a name and an interval and runs
//! only while this node holds the master lease, given the lease's current [`Fence`] to show
//! with its store writes, so that a master paused past its lease writes nothing.
//!
//! A job runs as soon as its node becomes master (a new master takes up the duties at once),
//! then every interval while the lease is held; losing and regaining the lease does not run
//! it again before its interval has passed since its last run. Each job runs in a task of its
//! own, so a long one (a backup) delays no other. A job returns a summary of what it did,
//! logged with its name; a run refused because the lease changed hands is logged as such.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailfleet_store::{BlobStore, Fence, Store, StoreError, now};
use tokio_util::sync::CancellationToken;

use crate::membership::MasterLease;
use crate::settings::{LiveSettings, Settings};

/// What a job's failure carries: any error, with its message.
pub type JobError = Box<dyn std::error::Error + Send + Sync>;

/// One run's future: a summary of what it did (empty: nothing worth a log line).
pub type JobRun = Pin<Box<dyn Future<Output = Result<String, JobError>> + Send>>;

/// How often a job's task looks whether its node is master and the job is due.
const LOOK_EVERY: Duration = Duration::from_millis(250);

struct Job {
    name: String,
    every: Duration,
    run: Arc<dyn Fn(Fence) -> JobRun + Send + Sync>,
}

/// The jobs a node runs when it is master. Built at start ([`MasterJobs::add`]), then
/// [`MasterJobs::spawn`]ed.
#[derive(Default)]
pub struct MasterJobs {
    jobs: Vec<Job>,
}

impl MasterJobs {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a job run every `every` while the node is master; `run` gets the fence of the
    /// lease as it is held at the start of the run.
    pub fn add<F, Fut>(&mut self, name: &str, every: Duration, run: F) -> &mut Self
    where
        F: Fn(Fence) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, JobError>> + Send + 'static,
    {
        self.jobs.push(Job {
            name: name.to_string(),
            every,
            run: Arc::new(move |fence| Box::pin(run(fence))),
        });
        self
    }

    /// The names of the jobs added, in order.
    pub fn names(&self) -> Vec<&str> {
        self.jobs.iter().map(|j| j.name.as_str()).collect()
    }

    /// Starts one task per job; they end when `shutdown` is cancelled (a run under way is
    /// dropped at its next await).
    pub fn spawn(
        self,
        lease: MasterLease,
        shutdown: CancellationToken,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        self.jobs
            .into_iter()
            .map(|job| tokio::spawn(run_job(job, lease.clone(), shutdown.clone())))
            .collect()
    }
}

async fn run_job(job: Job, lease: MasterLease, shutdown: CancellationToken) {
    let mut last_run: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(LOOK_EVERY) => {}
        }
        if last_run.is_some_and(|t| t.elapsed() < job.every) {
            continue;
        }
        let Some(fence) = lease.fence() else {
            continue;
        };
        last_run = Some(Instant::now());
        let token = fence.token;
        let outcome = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = (job.run)(fence) => r,
        };
        match outcome {
            Ok(summary) if summary.is_empty() => {}
            Ok(summary) => tracing::info!(job = %job.name, token, "{summary}"),
            Err(e) if is_fenced(e.as_ref()) => {
                tracing::info!(job = %job.name, token, "stopped: no longer master ({e})")
            }
            Err(e) => tracing::warn!(job = %job.name, token, "failed: {e}"),
        }
    }
}

/// Whether a job's error is the store refusing a write whose lease changed hands.
fn is_fenced(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if matches!(
            err.downcast_ref::<StoreError>(),
            Some(StoreError::Fenced { .. })
        ) {
            return true;
        }
        cur = err.source();
    }
    false
}

/// Blob GC: blobs no message or queue item uses, older than `grace_secs`, go; the fence is
/// checked before each batch of deletions.
pub fn blob_gc(
    store: Arc<dyn Store>,
    blobs: Arc<dyn BlobStore>,
    grace_secs: i64,
) -> impl Fn(Fence) -> JobRun + Send + Sync + 'static {
    move |fence| {
        let (store, blobs) = (store.clone(), blobs.clone());
        Box::pin(async move {
            let removed = mailfleet_store::blob::collect_garbage_fenced(
                store.as_ref(),
                blobs.as_ref(),
                now(),
                grace_secs,
                Some(&fence),
            )
            .await?;
            Ok(format!("blob garbage collection removed {removed} blobs"))
        })
    }
}

/// How the `text-index` job pages through the messages the full-text index lacks.
#[derive(Debug, Clone, Copy)]
pub struct TextIndexPace {
    /// Blobs read per page (one index transaction each).
    pub page: i64,
    /// Longest a run goes on; the next run resumes where it stopped.
    pub budget: Duration,
    /// After a pass that reached the end, how long before the next pass starts. Messages
    /// whose text is too long for the index are read again on each pass, so passes are rare:
    /// new mail is indexed at delivery, and rows go missing only by a restore or a store copy
    /// (which a new master's first pass takes care of) or a failure.
    pub pause: Duration,
}

impl Default for TextIndexPace {
    fn default() -> Self {
        Self {
            page: 200,
            budget: Duration::from_secs(30),
            pause: Duration::from_secs(24 * 3600),
        }
    }
}

/// Text index: puts into the full-text index the text of messages it has no row for
/// (`mailfleet_delivery::text_index`), a page at a time, for at most `pace.budget` per run,
/// resuming where the last run stopped. Its writes are not fenced: a row for a blob is the
/// same whoever writes it, and one already there is kept.
pub fn text_index(
    store: Arc<dyn Store>,
    blobs: Arc<dyn BlobStore>,
    pace: TextIndexPace,
) -> impl Fn(Fence) -> JobRun + Send + Sync + 'static {
    // (where the pass is, when the last pass ended)
    let state = Arc::new(std::sync::Mutex::new((String::new(), None::<Instant>)));
    move |_fence| {
        let (store, blobs, state) = (store.clone(), blobs.clone(), state.clone());
        Box::pin(async move {
            let mut cursor = {
                let guard = state.lock().unwrap_or_else(|p| p.into_inner());
                if guard.1.is_some_and(|ended| ended.elapsed() < pace.pause) {
                    return Ok(String::new());
                }
                guard.0.clone()
            };
            let started = Instant::now();
            let (mut indexed, mut skipped, mut ended) = (0, 0, false);
            while started.elapsed() < pace.budget {
                let page = mailfleet_delivery::text_index::index_missing_text(
                    store.as_ref(),
                    blobs.as_ref(),
                    &cursor,
                    pace.page,
                )
                .await;
                let page = match page {
                    Ok(p) => p,
                    Err(e) => {
                        state.lock().unwrap_or_else(|p| p.into_inner()).0 = cursor;
                        return Err(e.into());
                    }
                };
                indexed += page.indexed;
                skipped += page.skipped;
                match page.last {
                    Some(last) => cursor = last,
                    None => {
                        ended = true;
                        break;
                    }
                }
            }
            {
                let mut guard = state.lock().unwrap_or_else(|p| p.into_inner());
                if ended {
                    *guard = (String::new(), Some(Instant::now()));
                } else {
                    guard.0 = cursor;
                }
            }
            Ok(if indexed + skipped == 0 {
                String::new()
            } else {
                format!(
                    "text index: {indexed} messages indexed, {skipped} left out (too long or \
                     missing){}",
                    if ended {
                        "; pass complete"
                    } else {
                        "; more to do"
                    }
                )
            })
        })
    }
}

/// Stale lease cleanup: leases expired for more than `expired_for_secs` (a dead node's POP3
/// maildrop leases) are deleted, and queue items' leases that ran out as long ago are cleared.
pub fn stale_leases(
    store: Arc<dyn Store>,
    expired_for_secs: i64,
) -> impl Fn(Fence) -> JobRun + Send + Sync + 'static {
    move |fence| {
        let store = store.clone();
        Box::pin(async move {
            let t = now();
            let gone = store
                .delete_stale_leases(&fence, t, t - expired_for_secs)
                .await?;
            Ok(if gone.leases + gone.queue_leases == 0 {
                String::new()
            } else {
                format!(
                    "stale lease cleanup deleted {} leases and cleared {} queue leases",
                    gone.leases, gone.queue_leases
                )
            })
        })
    }
}

/// The purge of expunged messages' tombstones: those older than `days(settings)` days go,
/// and each mailbox's floor rises to the highest MODSEQ purged from it (IMAP then compares
/// UIDs for clients that knew the mailbox from before it).
pub fn tombstone_purge(
    store: Arc<dyn Store>,
    settings: LiveSettings,
    days: fn(&Settings) -> u64,
) -> impl Fn(Fence) -> JobRun + Send + Sync + 'static {
    move |fence| {
        let store = store.clone();
        let days = days(&settings.current());
        Box::pin(async move {
            let t = now();
            let cut = t.saturating_sub(i64::try_from(days).unwrap_or(i64::MAX / 2) * 86_400);
            let done = store.purge_tombstones(&fence, t, cut).await?;
            Ok(if done.tombstones == 0 {
                String::new()
            } else {
                format!(
                    "tombstone purge removed {} tombstones older than {days} days in {} mailboxes",
                    done.tombstones, done.mailboxes
                )
            })
        })
    }
}
