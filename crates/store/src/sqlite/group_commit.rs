//! Group commit for the SQLite store: every message write (and claim of `\Recent` messages)
//! waiting when a transaction starts joins it, and one commit (one WAL fsync) makes the whole
//! group durable.

use std::time::Duration;

use sqlx::SqliteConnection;
use sqlx::sqlite::SqlitePool;
use tokio::sync::{mpsc, oneshot};

use super::SqliteStore;
use crate::error::StoreError;
use crate::model::*;
use crate::store::Result;

/// The outcome of a blob write still under way when its job reached the committer.
pub(super) type BlobReady = oneshot::Receiver<Result<()>>;

/// A message write waiting for the group committer.
pub(super) enum Job {
    Deliver {
        delivery: Delivery,
        /// A blob being written elsewhere, to wait for before the commit.
        blob_ready: Option<BlobReady>,
        /// A blob to keep in the database, written in the delivery's own transaction.
        blob_bytes: Option<Vec<u8>>,
        reply: oneshot::Sender<Result<Vec<Delivered>>>,
    },
    /// A flag change (IMAP STORE).
    SetFlags {
        mailbox_id: i64,
        uids: Vec<u32>,
        op: FlagOp,
        flags: Vec<String>,
        unchanged_since: Option<i64>,
        reply: oneshot::Sender<Result<FlagOutcome>>,
    },
    /// An expunge (IMAP EXPUNGE, POP3 QUIT).
    Expunge {
        mailbox_id: i64,
        uids: Vec<u32>,
        reply: oneshot::Sender<Result<u64>>,
    },
    /// One or more messages for one mailbox, all or none (MULTIAPPEND).
    Append {
        mailbox_id: i64,
        messages: Vec<NewMessage>,
        /// The messages' searchable texts, by position (missing ones are `None`).
        texts: Vec<Option<String>>,
        reply: oneshot::Sender<Result<Vec<u32>>>,
    },
    /// A claim of a mailbox's recent messages (IMAP4rev1 `\Recent`, see
    /// [`crate::Mailboxes::recent_from`]): `recent_from` moves up to `uidnext`.
    ClaimRecent {
        mailbox_id: i64,
        reply: oneshot::Sender<Result<(u32, u32)>>,
    },
}

/// Most jobs one transaction takes.
pub(super) const GROUP_MAX: usize = 256;

/// Longest a group commit waits for the blobs of its deliveries.
const BLOB_WAIT_MAX: Duration = if cfg!(test) {
    Duration::from_millis(500)
} else {
    Duration::from_secs(10)
};

/// Largest message whose blob write overlaps its transaction
/// ([`crate::Mailboxes::deliver_with_blob`]): writing this much takes about as long as one fsync.
pub(super) const OVERLAP_MAX_BYTES: i64 = 256 * 1024;

/// Group commit: every message write waiting when a transaction starts joins it, each in its own
/// savepoint (a failing job is rolled back alone), and one commit (one WAL fsync) makes the whole
/// group durable. Each caller is answered only after that commit, so a write is acknowledged only
/// once it is on disk, and concurrent writers share the fsync instead of queueing for one each.
pub(super) async fn group_committer(pool: SqlitePool, mut rx: mpsc::Receiver<Job>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < GROUP_MAX {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        run_group(pool.clone(), batch).await;
    }
}

enum Done {
    Deliver(
        Result<Vec<Delivered>>,
        oneshot::Sender<Result<Vec<Delivered>>>,
    ),
    Append(Result<Vec<u32>>, oneshot::Sender<Result<Vec<u32>>>),
    SetFlags(Result<FlagOutcome>, oneshot::Sender<Result<FlagOutcome>>),
    Expunge(Result<u64>, oneshot::Sender<Result<u64>>),
    ClaimRecent(Result<(u32, u32)>, oneshot::Sender<Result<(u32, u32)>>),
}

/// What a job gave, before its commit.
enum Output {
    Delivered(Vec<Delivered>),
    Uids(Vec<u32>),
    Flags(FlagOutcome),
    Count(u64),
    Claimed((u32, u32)),
}

type JobResult = Result<Output>;

/// Boxed so the committer task's future is `Send` for every lifetime (sqlx's executors and
/// async fns otherwise trip the compiler's higher-ranked inference).
fn run_job<'a>(
    conn: &'a mut SqliteConnection,
    job: &'a Job,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = JobResult> + Send + 'a>> {
    Box::pin(async move {
        match job {
            Job::Deliver {
                delivery,
                blob_bytes,
                ..
            } => {
                if let Some(bytes) = blob_bytes {
                    SqliteStore::insert_blob(conn, &delivery.blob_id, bytes).await?;
                }
                SqliteStore::deliver_in(conn, delivery)
                    .await
                    .map(Output::Delivered)
            }
            Job::Append {
                mailbox_id,
                messages,
                texts,
                ..
            } => SqliteStore::insert_messages(conn, *mailbox_id, messages, texts)
                .await
                .map(Output::Uids),
            Job::SetFlags {
                mailbox_id,
                uids,
                op,
                flags,
                unchanged_since,
                ..
            } => SqliteStore::set_flags_in(conn, *mailbox_id, uids, *op, flags, *unchanged_since)
                .await
                .map(Output::Flags),
            Job::Expunge {
                mailbox_id, uids, ..
            } => SqliteStore::expunge_in(conn, *mailbox_id, uids)
                .await
                .map(Output::Count),
            Job::ClaimRecent { mailbox_id, .. } => {
                claim_recent(conn, *mailbox_id).await.map(Output::Claimed)
            }
        }
    })
}

fn run_group(
    pool: SqlitePool,
    batch: Vec<Job>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    Box::pin(async move {
        let mut batch = batch;
        loop {
            let mut tx = match pool.begin_with("BEGIN IMMEDIATE").await {
                Ok(tx) => tx,
                Err(e) => {
                    let done = batch
                        .into_iter()
                        .map(|job| finished(job, Err(StoreError::CommitFailed(e.to_string()))))
                        .collect();
                    return answer(done, Some(e.to_string()));
                }
            };
            // Alone in its transaction, a job needs no savepoint: if it fails, the whole
            // transaction is rolled back.
            let alone = batch.len() == 1;
            let mut results = Vec::with_capacity(batch.len());
            for job in &batch {
                results.push(if alone {
                    run_job(&mut tx, job).await
                } else {
                    run_in_savepoint(&mut tx, job).await
                });
            }
            // Rows are committed only after their blobs are on disk. A job whose blob failed
            // cannot be taken out of the transaction any more (its savepoint is released):
            // the whole group is rolled back and the others run again, their blobs now written.
            // The transaction holds the database's write lock meanwhile, so a stalled blob
            // write (a hung disk or mount) may hold it only so long: its delivery then fails
            // (the client gets a temporary error and sends again) and the others go on.
            let deadline = tokio::time::Instant::now() + BLOB_WAIT_MAX;
            let mut blob_errors = Vec::with_capacity(batch.len());
            for (job, result) in batch.iter_mut().zip(&results) {
                let ready = match (job, result) {
                    (Job::Deliver { blob_ready, .. }, Ok(_)) => blob_ready.take(),
                    _ => None,
                };
                blob_errors.push(match ready {
                    Some(ready) => tokio::time::timeout_at(deadline, blob_outcome(ready))
                        .await
                        .unwrap_or_else(|_| {
                            Some(StoreError::CommitFailed(format!(
                                "the message's blob was not written within {BLOB_WAIT_MAX:?}"
                            )))
                        }),
                    None => None,
                });
            }
            if blob_errors.iter().any(Option::is_some) {
                let _ = tx.rollback().await;
                let mut again = Vec::with_capacity(batch.len());
                let mut done = Vec::new();
                for (job, err) in batch.into_iter().zip(blob_errors) {
                    match err {
                        Some(e) => done.push(finished(job, Err(e))),
                        None => again.push(job),
                    }
                }
                answer(done, None);
                if again.is_empty() {
                    return;
                }
                batch = again;
                continue;
            }
            let failed = if alone && results.iter().any(Result::is_err) {
                let _ = tx.rollback().await;
                None
            } else {
                tx.commit().await.err().map(|e| e.to_string())
            };
            let done = batch
                .into_iter()
                .zip(results)
                .map(|(job, result)| finished(job, result))
                .collect();
            return answer(done, failed);
        }
    })
}

/// Claims a mailbox's recent messages inside the group's transaction, which holds the write
/// lock: no other claim can come between the read and the update.
async fn claim_recent(conn: &mut SqliteConnection, mailbox_id: i64) -> Result<(u32, u32)> {
    use sqlx::Row;
    let row = sqlx::query(crate::sql::mailbox::RECENT_FROM)
        .bind(mailbox_id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::MailboxNotFound(format!("id {mailbox_id}")))?;
    let from: i64 = row.try_get("recent_from")?;
    let next: i64 = row.try_get("uidnext")?;
    let uid = |v: i64| v.clamp(0, i64::from(u32::MAX)) as u32;
    if next <= from {
        return Ok((uid(from), uid(from)));
    }
    sqlx::query(crate::sql::mailbox::CLAIM_RECENT)
        .bind(mailbox_id)
        .bind(next)
        .bind(from)
        .execute(&mut *conn)
        .await?;
    Ok((uid(from), uid(next)))
}

/// How a job's blob write ended: `None` when the blob is on disk.
async fn blob_outcome(ready: BlobReady) -> Option<StoreError> {
    match ready.await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(_) => Some(StoreError::CommitFailed(
            "the message's writer went away before its blob was written".into(),
        )),
    }
}

/// Sends each job its result, or the commit's failure to all of them.
fn answer(done: Vec<Done>, failed: Option<String>) {
    for d in done {
        match d {
            Done::Deliver(r, reply) => {
                let _ = reply.send(match &failed {
                    Some(e) => Err(StoreError::CommitFailed(e.clone())),
                    None => r,
                });
            }
            Done::Append(r, reply) => {
                let _ = reply.send(match &failed {
                    Some(e) => Err(StoreError::CommitFailed(e.clone())),
                    None => r,
                });
            }
            Done::SetFlags(r, reply) => {
                let _ = reply.send(match &failed {
                    Some(e) => Err(StoreError::CommitFailed(e.clone())),
                    None => r,
                });
            }
            Done::Expunge(r, reply) => {
                let _ = reply.send(match &failed {
                    Some(e) => Err(StoreError::CommitFailed(e.clone())),
                    None => r,
                });
            }
            Done::ClaimRecent(r, reply) => {
                let _ = reply.send(match &failed {
                    Some(e) => Err(StoreError::CommitFailed(e.clone())),
                    None => r,
                });
            }
        }
    }
}

/// Runs one job in a savepoint of the group's transaction; a failing job is undone alone.
fn run_in_savepoint<'a>(
    conn: &'a mut SqliteConnection,
    job: &'a Job,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = JobResult> + Send + 'a>> {
    Box::pin(async move {
        exec(conn, "SAVEPOINT job").await?;
        match run_job(conn, job).await {
            Ok(v) => {
                exec(conn, "RELEASE job").await?;
                Ok(v)
            }
            Err(e) => {
                let _ = exec(conn, "ROLLBACK TO job").await;
                let _ = exec(conn, "RELEASE job").await;
                Err(e)
            }
        }
    })
}

async fn exec(conn: &mut SqliteConnection, sql: &'static str) -> Result<()> {
    sqlx::query(sql).execute(&mut *conn).await?;
    Ok(())
}

fn finished(job: Job, result: JobResult) -> Done {
    let mixup = || StoreError::Corrupt("job mix-up".into());
    match job {
        Job::Deliver { reply, .. } => Done::Deliver(
            result.and_then(|o| match o {
                Output::Delivered(v) => Ok(v),
                _ => Err(mixup()),
            }),
            reply,
        ),
        Job::Append { reply, .. } => Done::Append(
            result.and_then(|o| match o {
                Output::Uids(v) => Ok(v),
                _ => Err(mixup()),
            }),
            reply,
        ),
        Job::SetFlags { reply, .. } => Done::SetFlags(
            result.and_then(|o| match o {
                Output::Flags(v) => Ok(v),
                _ => Err(mixup()),
            }),
            reply,
        ),
        Job::Expunge { reply, .. } => Done::Expunge(
            result.and_then(|o| match o {
                Output::Count(v) => Ok(v),
                _ => Err(mixup()),
            }),
            reply,
        ),
        Job::ClaimRecent { reply, .. } => Done::ClaimRecent(
            result.and_then(|o| match o {
                Output::Claimed(v) => Ok(v),
                _ => Err(mixup()),
            }),
            reply,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{BlobWrite, Directory, Mailboxes};

    /// A blob write that stalls fails its own delivery after BLOB_WAIT_MAX and no longer holds
    /// up the others.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stalled_blob_write_does_not_hold_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("s.db").display());
        let s = std::sync::Arc::new(SqliteStore::open(&url).await.unwrap());
        s.add_domain("example.test").await.unwrap();
        let a = s
            .create_account(&NewAccount {
                address: "a@example.test".into(),
                password_hash: crate::password::hash_password("pw").unwrap(),
                quota_bytes: 0,
                shard: "default".into(),
            })
            .await
            .unwrap();
        let delivery = |blob: &str| Delivery {
            blob_id: blob.into(),
            size: 10,
            internal_date: 1,
            targets: vec![DeliveryTarget {
                account_id: a.id,
                mailbox: "INBOX".into(),
                flags: vec![],
            }],
            queue: vec![],
            meta: None,
            text: None,
        };
        let stalled = {
            let s = s.clone();
            let d = delivery("stalled");
            tokio::spawn(async move {
                let blob: BlobWrite<'_> = Box::pin(async {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    Ok(())
                });
                s.deliver_with_blob(&d, blob).await
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Waits behind the stalled group for at most about BLOB_WAIT_MAX.
        let started = std::time::Instant::now();
        let out = s.deliver(&delivery("quick")).await.unwrap();
        assert!(
            started.elapsed() < Duration::from_millis(1200),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(out[0].uid, 1, "the stalled delivery took no UID");
        let err = stalled.await.unwrap().unwrap_err();
        assert!(err.to_string().contains("not written within"), "{err}");
        let inbox = s.get_mailbox(a.id, "INBOX").await.unwrap().unwrap();
        let rows = s.list_messages(inbox.id, 1, u32::MAX).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].blob_id, "quick");
    }
}
