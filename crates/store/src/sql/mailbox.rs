//! Mailboxes and messages (and message bytes kept in the database): the SQL, written once,
//! and the implementation of [`crate::store::Mailboxes`] that both backends expand, with the
//! methods each writes its own way (message writes, which SQLite commits in groups; the blob
//! ids still in use, a list that PostgreSQL binds as one array) given by the backend.

/// A mailbox's columns; `subscribed` is whether the account's subscriptions hold its name
/// (schema v4: the column `mailboxes.subscribed` is no longer read or written).
pub(crate) const MAILBOX_COLS: &str = "id, account_id, name, special_use, \
     EXISTS (SELECT 1 FROM subscriptions s \
     WHERE s.account_id = mailboxes.account_id AND s.name = mailboxes.name) AS subscribed, \
     uidvalidity, uidnext, highestmodseq";

pub(crate) const MAILBOX_ID: &str = "SELECT id FROM mailboxes WHERE account_id = $1 AND name = $2";

/// A mailbox a delivery names that does not exist yet (`$3` UIDVALIDITY).
pub(crate) const INSERT_MAILBOX_IF_NEW: &str = "INSERT INTO mailboxes \
     (account_id, name, uidvalidity) VALUES ($1, $2, $3) \
     ON CONFLICT (account_id, name) DO NOTHING";

/// Takes the mailbox's next UID and MODSEQ, and counts the new message (`$2` 1 if unseen,
/// `$3` 1 if deleted, `$4` its size).
pub(crate) const NEXT_UID: &str = "UPDATE mailboxes \
     SET uidnext = uidnext + 1, highestmodseq = highestmodseq + 1, messages = messages + 1, \
     unseen = unseen + $2, deleted = deleted + $3, bytes = bytes + $4 \
     WHERE id = $1 RETURNING uidnext - 1 AS uid, highestmodseq, account_id";

pub(crate) const INSERT_MESSAGE: &str = "INSERT INTO messages \
     (mailbox_id, uid, modseq, system_flags, keywords, internal_date, size, blob_id) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

/// A keyword joins its mailbox's list (FLAGS, PERMANENTFLAGS) when a message first has it.
pub(crate) const INSERT_MAILBOX_KEYWORD: &str = "INSERT INTO mailbox_keywords \
     (mailbox_id, keyword) VALUES ($1, $2) ON CONFLICT DO NOTHING";

pub(crate) const MAILBOX_KEYWORDS: &str =
    "SELECT keyword FROM mailbox_keywords WHERE mailbox_id = $1";

/// A blob's metadata, written once by whichever delivery or append first stores it.
pub(crate) const INSERT_META: &str =
    "INSERT INTO message_meta (blob_id, meta) VALUES ($1, $2) ON CONFLICT DO NOTHING";

pub(crate) const GET_META: &str = "SELECT meta FROM message_meta WHERE blob_id = $1";

/// A blob's metadata goes once no message still there uses the blob.
pub(crate) const FORGET_META: &str = "DELETE FROM message_meta WHERE blob_id = $1 \
     AND NOT EXISTS (SELECT 1 FROM messages WHERE blob_id = $1 AND NOT expunged)";

/// A blob's text leaves the index once no message still there uses the blob (SQLite's
/// trigger takes its FTS5 row with it).
pub(crate) const FORGET_TEXT: &str = "DELETE FROM message_text WHERE blob_id = $1 \
     AND NOT EXISTS (SELECT 1 FROM messages WHERE blob_id = $1 AND NOT expunged)";

/// The UIDs of a mailbox's messages (not expunged) whose blob has no row in the text index or
/// one that `text_match` (the backend's [`crate::sql::Dialect::TEXT_MATCH`], reading the
/// query from `$2`) selects.
pub(crate) fn text_candidates_sql(text_match: &str) -> String {
    format!(
        "SELECT m.uid FROM messages m WHERE m.mailbox_id = $1 AND NOT m.expunged \
         AND (NOT EXISTS (SELECT 1 FROM message_text t WHERE t.blob_id = m.blob_id) \
         OR m.blob_id IN ({text_match})) ORDER BY m.uid"
    )
}

/// Lower-cases text as IMAP SEARCH compares it: ASCII directly, other characters by Unicode
/// `to_lowercase` (what `mailfleet_message::index_text` gives).
pub(crate) fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii() {
            out.push(c.to_ascii_lowercase());
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// The words of a text as the PostgreSQL index cuts them: longest runs of alphanumeric
/// characters.
pub(crate) fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
}

/// The words of a needle with a non-word character on both sides inside the needle: in any
/// text that holds the needle they are whole words.
pub(crate) fn interior_words(needle: &str) -> impl Iterator<Item = &str> {
    let mut pieces: Vec<&str> = needle.split(|c: char| !c.is_alphanumeric()).collect();
    // The first and last pieces touch the needle's ends (or are empty).
    pieces.pop();
    pieces.into_iter().skip(1).filter(|w| !w.is_empty())
}

/// Counts a message's bytes against its account, only if they fit its quota (`quota_bytes`
/// 0 or less is none): no row comes back when they do not. Checked here, in the writing
/// transaction under the account row's lock, so deliveries at once cannot overshoot.
pub(crate) const ADD_USED_BYTES: &str = "UPDATE accounts SET used_bytes = used_bytes + $1 \
     WHERE id = $2 AND (quota_bytes <= 0 OR used_bytes + $1 <= quota_bytes) RETURNING id";

pub(crate) const INSERT_BLOB: &str =
    "INSERT INTO blobs (id, data, created) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";

pub(crate) const CREATE_MAILBOX: &str = "INSERT INTO mailboxes \
     (account_id, name, special_use, uidvalidity) VALUES ($1, $2, $3, $4) RETURNING id";

/// A mailbox's counters, which every message write keeps; `WHERE` follows.
pub(crate) const STATUS_COLS: &str = "SELECT name, uidnext, uidvalidity, \
     messages, unseen, deleted, bytes, highestmodseq, (SELECT COUNT(*) FROM messages x \
     WHERE x.mailbox_id = mailboxes.id AND x.uid >= mailboxes.recent_from AND NOT x.expunged) \
     AS recent FROM mailboxes";

/// The first UID still recent (`$1` the mailbox) and the next UID.
pub(crate) const RECENT_FROM: &str = "SELECT recent_from, uidnext FROM mailboxes WHERE id = $1";

/// Claims the recent messages below `$2` if nobody did since `recent_from` was read as `$3`.
pub(crate) const CLAIM_RECENT: &str =
    "UPDATE mailboxes SET recent_from = $2 WHERE id = $1 AND recent_from = $3";

/// Each mailbox of an account with its counters.
pub(crate) const MAILBOX_STATUS: &str = "WHERE account_id = $1 ORDER BY name";

pub(crate) const STATUS_OF: &str = "WHERE id = $1";

/// `(id, highestmodseq)` of mailboxes; ` IN (...)` with a placeholder per id follows.
pub(crate) const MAILBOX_VERSIONS: &str = "SELECT id, highestmodseq FROM mailboxes WHERE id";

/// Ids per [`MAILBOX_VERSIONS`] query (SQLite's limit on parameters is far above).
pub(crate) const VERSIONS_CHUNK: usize = 500;

/// A page of messages with their blobs' metadata (`$4` the most rows).
/// A page of messages with their metadata as one text, as [`LIST_MESSAGES_TEXT`] does: a line
/// per message (UID, MODSEQ, system flags, internal date, size, blob, expunged, keywords, then a
/// tab and the stored metadata, empty if none). Stored metadata is compact JSON, which has no
/// raw tab or line break; keywords have no control characters.
pub(crate) const FETCH_MESSAGES_TEXT: &str = "SELECT string_agg(\
     CAST(m.uid AS TEXT) || ' ' || CAST(m.modseq AS TEXT) || ' ' \
     || CAST(m.system_flags AS TEXT) || ' ' || CAST(m.internal_date AS TEXT) || ' ' \
     || CAST(m.size AS TEXT) || ' ' || m.blob_id || ' ' \
     || CASE WHEN m.expunged THEN '1' ELSE '0' END || ' ' || m.keywords || '\t' \
     || COALESCE(mm.meta, ''), '\n') AS list, COUNT(*) AS n \
     FROM (SELECT uid, modseq, system_flags, internal_date, size, blob_id, expunged, keywords \
     FROM messages WHERE mailbox_id = $1 AND uid >= $2 AND uid <= $3 ORDER BY uid LIMIT $4) m \
     LEFT JOIN message_meta mm ON mm.blob_id = m.blob_id";

/// One line of [`FETCH_MESSAGES_TEXT`].
pub(crate) fn fetched_from_line(
    mailbox_id: i64,
    line: &str,
) -> Option<(crate::model::Message, Option<String>)> {
    let (head, meta) = line.split_once('\t')?;
    let mut f = head.splitn(8, ' ');
    let uid: u32 = f.next()?.parse().ok()?;
    let modseq: i64 = f.next()?.parse().ok()?;
    let system_flags: i64 = f.next()?.parse().ok()?;
    let internal_date: i64 = f.next()?.parse().ok()?;
    let size: i64 = f.next()?.parse().ok()?;
    let blob_id = f.next()?.to_string();
    let expunged = f.next()? == "1";
    let keywords = f.next().unwrap_or("");
    Some((
        crate::model::Message {
            mailbox_id,
            uid,
            modseq,
            flags: crate::schema::join_flags(system_flags, keywords),
            internal_date,
            size,
            blob_id,
            expunged,
        },
        (!meta.is_empty()).then(|| meta.to_string()),
    ))
}

/// A page of [`FETCH_MESSAGES_TEXT`] (`n` rows as `text`) as messages by UID.
pub(crate) fn fetched_from_text(
    mailbox_id: i64,
    n: i64,
    text: &str,
) -> crate::store::Result<Vec<(crate::model::Message, Option<String>)>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let mut out = text
        .split('\n')
        .map(|line| {
            fetched_from_line(mailbox_id, line).ok_or_else(|| {
                crate::error::StoreError::Corrupt(format!(
                    "mailbox {mailbox_id}: a message row cannot be read: {:?}",
                    line.get(..200).unwrap_or(line)
                ))
            })
        })
        .collect::<crate::store::Result<Vec<_>>>()?;
    if out.len() as i64 != n {
        return Err(crate::error::StoreError::Corrupt(format!(
            "mailbox {mailbox_id}: {n} messages read as {}",
            out.len()
        )));
    }
    out.sort_unstable_by_key(|(m, _)| m.uid);
    Ok(out)
}

/// A mailbox's keywords as IMAP FLAGS lists them: keywords compare without case, so one of
/// each (the first by bytes), sorted without case whatever the database's collation.
pub(crate) fn normalize_keywords(mut keywords: Vec<String>) -> Vec<String> {
    keywords.sort();
    let mut seen = std::collections::HashSet::new();
    keywords.retain(|k| seen.insert(k.to_ascii_lowercase()));
    keywords.sort_by_key(|k| k.to_ascii_lowercase());
    keywords
}

/// Locks the source and destination rows of a copy, in ascending id order;
/// [`crate::sql::Dialect::FOR_UPDATE`] follows.
pub(crate) const LOCK_MAILBOX_PAIR: &str =
    "SELECT id, account_id FROM mailboxes WHERE id = $1 OR id = $2 ORDER BY id";

/// The messages a copy may take, between its first and last UID.
pub(crate) const COPY_SOURCE: &str = "SELECT uid, system_flags, keywords, internal_date, size, \
     blob_id FROM messages WHERE mailbox_id = $1 AND uid >= $2 AND uid <= $3 AND NOT expunged \
     ORDER BY uid";

/// Takes `$2` UIDs and one MODSEQ of a copy's destination and counts the copies (`$3` unseen,
/// `$4` deleted, `$5` bytes); returns the first UID taken.
pub(crate) const COPY_TARGET: &str = "UPDATE mailboxes SET uidnext = uidnext + $2, \
     highestmodseq = highestmodseq + 1, messages = messages + $2, unseen = unseen + $3, \
     deleted = deleted + $4, bytes = bytes + $5 \
     WHERE id = $1 RETURNING uidnext - $2 AS first_uid, highestmodseq";

/// Rows of copies (`$1` mailbox, `$2` MODSEQ): ` VALUES` with
/// `($1, uid, $2, system_flags, keywords, internal_date, size, blob_id)` per copy follows.
pub(crate) const INSERT_COPIES: &str = "INSERT INTO messages \
     (mailbox_id, uid, modseq, system_flags, keywords, internal_date, size, blob_id)";

/// Rows per [`INSERT_COPIES`] or [`EXPUNGE_UIDS`] statement.
pub(crate) const COPY_CHUNK: usize = 100;

/// A move's source: one new MODSEQ for its tombstones, and the moved messages out of its
/// counters (`$2` messages, `$3` unseen, `$4` deleted, `$5` bytes).
pub(crate) const MOVE_SOURCE: &str = "UPDATE mailboxes SET highestmodseq = highestmodseq + 1, \
     messages = messages - $2, unseen = unseen - $3, deleted = deleted - $4, \
     bytes = bytes - $5 WHERE id = $1 RETURNING highestmodseq";

/// Tombstones for moved messages (`$1` mailbox, `$2` MODSEQ, `$3` the time of the expunge);
/// ` IN (...)` with a placeholder per UID follows.
pub(crate) const EXPUNGE_UIDS: &str = "UPDATE messages SET expunged = TRUE, modseq = $2, \
     expunged_at = $3 WHERE mailbox_id = $1 AND NOT expunged AND uid";

/// The mailbox a rename names and those below it (`$3` the length of `$4`, which is the name
/// and `/`), locked in ascending id order; [`crate::sql::Dialect::FOR_UPDATE`] follows.
pub(crate) const LOCK_RENAMED: &str = "SELECT id, name FROM mailboxes \
     WHERE account_id = $1 AND (name = $2 OR substr(name, 1, $3) = $4) ORDER BY id";

pub(crate) const ACCOUNT_MAILBOX_NAMES: &str = "SELECT name FROM mailboxes WHERE account_id = $1";

pub(crate) const RENAME_MAILBOX: &str = "UPDATE mailboxes SET name = $2 WHERE id = $1";

/// A mailbox to delete, locked; its bytes come off its account.
/// [`crate::sql::Dialect::FOR_UPDATE`] follows.
pub(crate) const LOCK_DELETED: &str =
    "SELECT id, account_id, bytes FROM mailboxes WHERE account_id = $1 AND name = $2";

/// Its messages and keywords go with it (`ON DELETE CASCADE`).
pub(crate) const DELETE_MAILBOX: &str = "DELETE FROM mailboxes WHERE id = $1";

pub(crate) const SUBSCRIBE: &str =
    "INSERT INTO subscriptions (account_id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING";

pub(crate) const UNSUBSCRIBE: &str =
    "DELETE FROM subscriptions WHERE account_id = $1 AND name = $2";

pub(crate) const SUBSCRIPTIONS: &str =
    "SELECT name FROM subscriptions WHERE account_id = $1 ORDER BY name";

/// The messages of a mailbox with `$2 <= uid <= $3`, not expunged, as one text per page of at most
/// [`LIST_PAGE`] (`$4`) messages: a line per message
/// (UID, MODSEQ, system flags, internal date, size, blob, then the keywords), by UID. sqlx's
/// SQLite driver hands rows over from its connection thread one at a time (a wake-up each), so a
/// SELECT of 100,000 messages read as rows spent most of its time switching threads; as text it
/// is a few queries. Keywords are IMAP atoms (no spaces or control characters), blob ids hex.
/// `string_agg` is in PostgreSQL and in SQLite since 3.44 (sqlx bundles 3.46). The lines come
/// in no promised order (an ORDER BY inside the aggregate made SQLite sort the page through a
/// temporary b-tree, spilling to disk) and are sorted by UID after parsing.
pub(crate) const LIST_MESSAGES_TEXT: &str = "SELECT string_agg(\
     CAST(uid AS TEXT) || ' ' || CAST(modseq AS TEXT) || ' ' || CAST(system_flags AS TEXT) \
     || ' ' || CAST(internal_date AS TEXT) || ' ' || CAST(size AS TEXT) || ' ' || blob_id \
     || ' ' || keywords, '\n') AS list, COUNT(*) AS n, MAX(uid) AS last \
     FROM (SELECT uid, modseq, system_flags, internal_date, size, blob_id, keywords \
     FROM messages WHERE mailbox_id = $1 AND uid >= $2 AND uid <= $3 AND NOT expunged \
     ORDER BY uid LIMIT $4) page";

/// Messages per [`LIST_MESSAGES_TEXT`] page.
pub(crate) const LIST_PAGE: u32 = 20_000;

/// One line of [`LIST_MESSAGES_TEXT`].
pub(crate) fn message_from_line(mailbox_id: i64, line: &str) -> Option<crate::model::Message> {
    let mut f = line.splitn(7, ' ');
    let uid: u32 = f.next()?.parse().ok()?;
    let modseq: i64 = f.next()?.parse().ok()?;
    let system_flags: i64 = f.next()?.parse().ok()?;
    let internal_date: i64 = f.next()?.parse().ok()?;
    let size: i64 = f.next()?.parse().ok()?;
    let blob_id = f.next()?.to_string();
    let keywords = f.next().unwrap_or("");
    Some(crate::model::Message {
        mailbox_id,
        uid,
        modseq,
        flags: crate::schema::join_flags(system_flags, keywords),
        internal_date,
        size,
        blob_id,
        expunged: false,
    })
}

/// One MODSEQ for an expunge; the account whose bytes go down.
/// The MODSEQ a flag change or an expunge would take, and the account; the mailbox row is
/// locked ([`crate::sql::Dialect::FOR_UPDATE`] follows) and HIGHESTMODSEQ is raised to it
/// ([`SET_HIGHESTMODSEQ`]) only if something changes.
pub(crate) const NEXT_MODSEQ: &str =
    "SELECT highestmodseq + 1 AS highestmodseq, account_id FROM mailboxes WHERE id = $1";

pub(crate) const SET_HIGHESTMODSEQ: &str = "UPDATE mailboxes SET highestmodseq = $2 WHERE id = $1";

/// `$4`: the time of the expunge, from which the tombstone's age counts.
pub(crate) const EXPUNGE_MESSAGE: &str = "UPDATE messages SET expunged = TRUE, modseq = $3, \
     expunged_at = $4 WHERE mailbox_id = $1 AND uid = $2 AND NOT expunged \
     RETURNING size, system_flags";

/// Takes messages out of a mailbox's counters (`$2` messages, `$3` unseen, `$4` deleted, `$5`
/// bytes).
pub(crate) const UNCOUNT_MESSAGES: &str = "UPDATE mailboxes SET messages = messages - $2, \
     unseen = unseen - $3, deleted = deleted - $4, bytes = bytes - $5 WHERE id = $1";

/// The messages a flag change may touch, between its first and last UID.
pub(crate) const FLAGS_OF_RANGE: &str = "SELECT uid, modseq, system_flags, keywords \
     FROM messages WHERE mailbox_id = $1 AND uid >= $2 AND uid <= $3 AND NOT expunged \
     ORDER BY uid";

pub(crate) const SET_MESSAGE_FLAGS: &str = "UPDATE messages \
     SET system_flags = $3, keywords = $4, modseq = $5 WHERE mailbox_id = $1 AND uid = $2";

/// Moves a mailbox's counters of unseen (`$2`) and deleted (`$3`) messages.
pub(crate) const RECOUNT_FLAGS: &str =
    "UPDATE mailboxes SET unseen = unseen + $2, deleted = deleted + $3 WHERE id = $1";

pub(crate) const CHANGES_SINCE: &str = "SELECT uid, modseq, system_flags, keywords, expunged \
     FROM messages WHERE mailbox_id = $1 AND modseq > $2 ORDER BY uid";

/// A mailbox's tombstone floor: expunges with a MODSEQ up to it may have been purged.
pub(crate) const PURGED_MODSEQ: &str = "SELECT purged_modseq FROM mailboxes WHERE id = $1";

/// The mailboxes that have tombstones of expunges made before `$1`.
pub(crate) const MAILBOXES_WITH_OLD_TOMBSTONES: &str = "SELECT DISTINCT mailbox_id \
     FROM messages WHERE expunged AND expunged_at < $1 ORDER BY mailbox_id";

/// Locks a mailbox row for its tombstone purge; [`crate::sql::Dialect::FOR_UPDATE`] follows.
pub(crate) const LOCK_MAILBOX_FLOOR: &str = "SELECT purged_modseq FROM mailboxes WHERE id = $1";

/// One mailbox's tombstones of expunges made before `$2`, deleted.
pub(crate) const PURGE_TOMBSTONES: &str = "DELETE FROM messages \
     WHERE mailbox_id = $1 AND expunged AND expunged_at < $2 RETURNING modseq";

pub(crate) const SET_PURGED_MODSEQ: &str =
    "UPDATE mailboxes SET purged_modseq = $2 WHERE id = $1 AND purged_modseq < $2";

pub(crate) const SUB_USED_BYTES: &str = "UPDATE accounts SET used_bytes = \
     CASE WHEN used_bytes > $1 THEN used_bytes - $1 ELSE 0 END WHERE id = $2";

pub(crate) const BLOB_GET: &str = "SELECT data FROM blobs WHERE id = $1";

pub(crate) const BLOB_DELETE: &str = "DELETE FROM blobs WHERE id = $1";

pub(crate) const BLOB_LIST: &str = "SELECT id, created FROM blobs ORDER BY id";

/// Implements [`crate::store::Mailboxes`] for a backend's store, whose connection type is
/// `$conn`, with the methods in braces as the backend writes them (see [`crate::sql`]); and,
/// for those, the helpers that write a delivery's rows inside the caller's transaction:
/// `mailbox_id_in`, `insert_messages`, `insert_blob` and `deliver_in`.
macro_rules! impl_mailboxes {
    // The reads below are the trait's, with sqlx; a backend that reads its own way (SQLite:
    // `sqlite/reader.rs`) says `own_reads` and writes them in its braces. They are spliced in
    // here rather than by a macro of their own because `#[async_trait]` rewrites the impl's
    // methods before any macro inside it would expand.
    ($store:ty, $conn:ty, { $($backend:tt)* }) => {
        $crate::sql::mailbox::impl_mailboxes!(@impl $store, $conn, {
                async fn get_mailbox(
                    &self,
                    account_id: i64,
                    name: &str,
                ) -> Result<Option<Mailbox>> {
                    let row = sqlx::query(&format!(
                        "SELECT {MAILBOX_COLS} FROM mailboxes WHERE account_id = $1 AND name = $2"
                    ))
                    .bind(account_id)
                    .bind(mailbox_name(name))
                    .fetch_optional(&self.read)
                    .await?;
                    row.as_ref().map(mailbox_from).transpose()
                }

                async fn list_mailboxes(&self, account_id: i64) -> Result<Vec<Mailbox>> {
                    let rows = sqlx::query(&format!(
                        "SELECT {MAILBOX_COLS} FROM mailboxes WHERE account_id = $1 ORDER BY name"
                    ))
                    .bind(account_id)
                    .fetch_all(&self.read)
                    .await?;
                    rows.iter().map(mailbox_from).collect()
                }

                async fn mailbox_by_id(&self, mailbox_id: i64) -> Result<Option<Mailbox>> {
                    let row = sqlx::query(&format!(
                        "SELECT {MAILBOX_COLS} FROM mailboxes WHERE id = $1"
                    ))
                    .bind(mailbox_id)
                    .fetch_optional(&self.read)
                    .await?;
                    row.as_ref().map(mailbox_from).transpose()
                }

                async fn mailbox_status(&self, account_id: i64) -> Result<Vec<MailboxStatus>> {
                    let rows = sqlx::query(&format!("{STATUS_COLS} {MAILBOX_STATUS}"))
                        .bind(account_id)
                        .fetch_all(&self.read)
                        .await?;
                    rows.iter().map(status_from).collect()
                }

                async fn status_of(&self, mailbox_id: i64) -> Result<MailboxStatus> {
                    let row = sqlx::query(&format!("{STATUS_COLS} {STATUS_OF}"))
                        .bind(mailbox_id)
                        .fetch_optional(&self.read)
                        .await?
                        .ok_or_else(|| StoreError::MailboxNotFound(format!("id {mailbox_id}")))?;
                    status_from(&row)
                }

                async fn recent_from(&self, mailbox_id: i64, claim: bool) -> Result<(u32, u32)> {
                    // Read without the writer; claim (when there is something to claim) with
                    // one compare-and-set statement, again if another session claimed first.
                    loop {
                        let row = sqlx::query(RECENT_FROM)
                            .bind(mailbox_id)
                            .fetch_optional(&self.read)
                            .await?
                            .ok_or_else(|| {
                                StoreError::MailboxNotFound(format!("id {mailbox_id}"))
                            })?;
                        let from: i64 = row.try_get("recent_from")?;
                        let next: i64 = row.try_get("uidnext")?;
                        let uid = |v: i64| v.clamp(0, i64::from(u32::MAX)) as u32;
                        if !claim {
                            return Ok((uid(from), u32::MAX));
                        }
                        if next <= from {
                            return Ok((uid(from), uid(from)));
                        }
                        let done = sqlx::query(CLAIM_RECENT)
                            .bind(mailbox_id)
                            .bind(next)
                            .bind(from)
                            .execute(&self.write)
                            .await?;
                        if done.rows_affected() == 1 {
                            return Ok((uid(from), uid(next)));
                        }
                    }
                }

                async fn mailbox_versions(&self, mailbox_ids: &[i64]) -> Result<Vec<(i64, i64)>> {
                    let mut out = Vec::with_capacity(mailbox_ids.len());
                    for chunk in mailbox_ids.chunks(VERSIONS_CHUNK) {
                        let sql = format!(
                            "{MAILBOX_VERSIONS} IN ({})",
                            $crate::sql::placeholders(1, chunk.len())
                        );
                        let mut q = sqlx::query(&sql);
                        for id in chunk {
                            q = q.bind(*id);
                        }
                        for r in q.fetch_all(&self.read).await? {
                            out.push((r.try_get("id")?, r.try_get("highestmodseq")?));
                        }
                    }
                    Ok(out)
                }

                async fn fetch_messages(
                    &self,
                    mailbox_id: i64,
                    first_uid: u32,
                    last_uid: u32,
                    limit: u32,
                ) -> Result<Vec<(Message, Option<String>)>> {
                    let row = sqlx::query(FETCH_MESSAGES_TEXT)
                        .bind(mailbox_id)
                        .bind(i64::from(first_uid))
                        .bind(i64::from(last_uid))
                        .bind(i64::from(limit))
                        .fetch_one(&self.read)
                        .await?;
                    let n: i64 = row.try_get("n")?;
                    let text: Option<String> = row.try_get("list")?;
                    fetched_from_text(mailbox_id, n, text.as_deref().unwrap_or(""))
                }

                async fn changes_since(&self, mailbox_id: i64, modseq: i64) -> Result<Changes> {
                    let rows = sqlx::query(CHANGES_SINCE)
                        .bind(mailbox_id)
                        .bind(modseq)
                        .fetch_all(&self.read)
                        .await?;
                    let mut out = Changes::default();
                    // Read after the rows: a purge that removed some of them has raised it by
                    // now (it does both in one transaction), so the reader knows to look.
                    out.purged_up_to = sqlx::query_scalar(PURGED_MODSEQ)
                        .bind(mailbox_id)
                        .fetch_optional(&self.read)
                        .await?
                        .unwrap_or(0);
                    for r in &rows {
                        let uid = r.try_get::<i64, _>("uid")? as u32;
                        out.highest = out.highest.max(r.try_get("modseq")?);
                        if r.try_get::<bool, _>("expunged")? {
                            out.expunged.push(uid);
                        } else {
                            let keywords: String = r.try_get("keywords")?;
                            out.changed.push(FlagChange {
                                uid,
                                flags: join_flags(r.try_get("system_flags")?, &keywords),
                                modseq: r.try_get("modseq")?,
                            });
                        }
                    }
                    Ok(out)
                }

                async fn mailbox_keywords(&self, mailbox_id: i64) -> Result<Vec<String>> {
                    let keywords: Vec<String> = sqlx::query_scalar(MAILBOX_KEYWORDS)
                        .bind(mailbox_id)
                        .fetch_all(&self.read)
                        .await?;
                    Ok(normalize_keywords(keywords))
                }

                async fn message_meta(&self, blob_id: &str) -> Result<Option<String>> {
                    Ok(sqlx::query_scalar(GET_META)
                        .bind(blob_id)
                        .fetch_optional(&self.read)
                        .await?)
                }

                async fn blob_get(&self, id: &str) -> Result<Option<Vec<u8>>> {
                    Ok(sqlx::query_scalar(BLOB_GET)
                        .bind(id)
                        .fetch_optional(&self.read)
                        .await?)
                }

                async fn list_messages(
                    &self,
                    mailbox_id: i64,
                    first: u32,
                    last: u32,
                ) -> Result<Vec<Message>> {
                    let mut out = Vec::new();
                    let mut from = first;
                    while from <= last {
                        let row = sqlx::query(LIST_MESSAGES_TEXT)
                            .bind(mailbox_id)
                            .bind(i64::from(from))
                            .bind(i64::from(last))
                            .bind(i64::from(LIST_PAGE))
                            .fetch_one(&self.read)
                            .await?;
                        let n: i64 = row.try_get("n")?;
                        if n == 0 {
                            break;
                        }
                        let text: String = row.try_get("list")?;
                        let before = out.len();
                        for line in text.split('\n') {
                            match message_from_line(mailbox_id, line) {
                                Some(m) => out.push(m),
                                None => {
                                    return Err(StoreError::Corrupt(format!(
                                        "mailbox {mailbox_id}: a message row cannot be listed: {line:?}"
                                    )));
                                }
                            }
                        }
                        if (out.len() - before) as i64 != n {
                            return Err(StoreError::Corrupt(format!(
                                "mailbox {mailbox_id}: {n} messages listed as {}",
                                out.len() - before
                            )));
                        }
                        let page_last: i64 = row.try_get("last")?;
                        if n < i64::from(LIST_PAGE) || page_last >= i64::from(last) {
                            break;
                        }
                        from = page_last as u32 + 1;
                    }
                    out.sort_unstable_by_key(|m| m.uid);
                    Ok(out)
                }

                async fn subscriptions(&self, account_id: i64) -> Result<Vec<String>> {
                    Ok(sqlx::query_scalar(SUBSCRIPTIONS)
                        .bind(account_id)
                        .fetch_all(&self.read)
                        .await?)
                }

            $($backend)*
        });
    };
    ($store:ty, $conn:ty, own_reads, { $($backend:tt)* }) => {
        $crate::sql::mailbox::impl_mailboxes!(@impl $store, $conn, { $($backend)* });
    };
    (@impl $store:ty, $conn:ty, { $($backend:tt)* }) => {
        const _: () = {
            use sqlx::Row;
            use $crate::error::StoreError;
            use $crate::model::{
                BlobEntry, Changes, Delivered, Delivery, FlagChange, FlagOp, FlagOutcome, Mailbox,
                MailboxStatus, Message, NewMessage, Timestamp, now,
            };
            use $crate::sql::Dialect;
            use $crate::schema::{
                DELETED, NEXT_UIDVALIDITY, SEEN, apply_flags, join_flags, mailbox_name,
                split_flags,
            };
            use $crate::sql::mailbox::*;
            use $crate::store::{Mailboxes, Result};

            type DbRow = <<$conn as sqlx::Connection>::Database as sqlx::Database>::Row;

            // Used by `sqlx_mailbox_reads!`, which the SQLite backend does not expand.
            #[allow(dead_code)]
            fn status_from(r: &DbRow) -> Result<MailboxStatus> {
                Ok(MailboxStatus {
                    name: r.try_get("name")?,
                    messages: r.try_get("messages")?,
                    unseen: r.try_get("unseen")?,
                    deleted: r.try_get("deleted")?,
                    uidnext: r.try_get::<i64, _>("uidnext")? as u32,
                    uidvalidity: r.try_get::<i64, _>("uidvalidity")? as u32,
                    bytes: r.try_get("bytes")?,
                    highestmodseq: r.try_get("highestmodseq")?,
                    recent: r.try_get("recent")?,
                })
            }

            impl $store {
                /// [`Mailboxes::expunge`] in the caller's transaction.
                pub(crate) async fn expunge_in(
                    tx: &mut $conn,
                    mailbox_id: i64,
                    uids: &[u32],
                ) -> Result<u64> {
                    if uids.is_empty() {
                        return Ok(0);
                    }
                    let lock = format!("{NEXT_MODSEQ}{}", <$store as Dialect>::FOR_UPDATE);
                    let Some(row) = sqlx::query(&lock)
                        .bind(mailbox_id)
                        .fetch_optional(&mut *tx)
                        .await?
                    else {
                        return Ok(0);
                    };
                    let modseq: i64 = row.try_get("highestmodseq")?;
                    let account_id: i64 = row.try_get("account_id")?;
                    let expunged_at = now();
                    let (mut count, mut bytes, mut unseen, mut deleted) = (0u64, 0i64, 0i64, 0i64);
                    for &uid in uids {
                        if let Some(row) = sqlx::query(EXPUNGE_MESSAGE)
                            .bind(mailbox_id)
                            .bind(i64::from(uid))
                            .bind(modseq)
                            .bind(expunged_at)
                            .fetch_optional(&mut *tx)
                            .await?
                        {
                            let bits: i64 = row.try_get("system_flags")?;
                            count += 1;
                            bytes += row.try_get::<i64, _>("size")?;
                            unseen += i64::from(bits & SEEN == 0);
                            deleted += i64::from(bits & DELETED != 0);
                        }
                    }
                    if count == 0 {
                        // Nothing changed: no new MODSEQ either.
                        return Ok(0);
                    }
                    sqlx::query(SET_HIGHESTMODSEQ)
                        .bind(mailbox_id)
                        .bind(modseq)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query(UNCOUNT_MESSAGES)
                        .bind(mailbox_id)
                        .bind(count as i64)
                        .bind(unseen)
                        .bind(deleted)
                        .bind(bytes)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query(SUB_USED_BYTES)
                        .bind(bytes)
                        .bind(account_id)
                        .execute(&mut *tx)
                        .await?;
                    Ok(count)
                }

                /// [`Mailboxes::set_flags`] in the caller's transaction.
                pub(crate) async fn set_flags_in(
                    tx: &mut $conn,
                    mailbox_id: i64,
                    uids: &[u32],
                    op: FlagOp,
                    flags: &[String],
                    unchanged_since: Option<i64>,
                ) -> Result<FlagOutcome> {
                    let mut out = FlagOutcome::default();
                    let wanted: std::collections::BTreeSet<u32> = uids.iter().copied().collect();
                    let (Some(&first), Some(&last)) = (wanted.first(), wanted.last()) else {
                        return Ok(out);
                    };
                    let (bits, keywords) = split_flags(flags);
                    let lock = format!("{NEXT_MODSEQ}{}", <$store as Dialect>::FOR_UPDATE);
                    let Some(modseq) = sqlx::query_scalar::<_, i64>(&lock)
                        .bind(mailbox_id)
                        .fetch_optional(&mut *tx)
                        .await?
                    else {
                        return Err(StoreError::MailboxNotFound(format!("id {mailbox_id}")));
                    };
                    let rows = sqlx::query(FLAGS_OF_RANGE)
                        .bind(mailbox_id)
                        .bind(i64::from(first))
                        .bind(i64::from(last))
                        .fetch_all(&mut *tx)
                        .await?;
                    let (mut unseen, mut deleted) = (0i64, 0i64);
                    for r in &rows {
                        let uid = r.try_get::<i64, _>("uid")? as u32;
                        if !wanted.contains(&uid) {
                            continue;
                        }
                        let was: i64 = r.try_get("modseq")?;
                        if unchanged_since.is_some_and(|m| was > m) {
                            out.modified.push(uid);
                            continue;
                        }
                        let old_bits: i64 = r.try_get("system_flags")?;
                        let old_kw: String = r.try_get("keywords")?;
                        let (new_bits, new_kw) =
                            apply_flags((old_bits, &old_kw), op, (bits, &keywords));
                        if new_bits == old_bits && new_kw == old_kw {
                            continue;
                        }
                        sqlx::query(SET_MESSAGE_FLAGS)
                            .bind(mailbox_id)
                            .bind(i64::from(uid))
                            .bind(new_bits)
                            .bind(&new_kw)
                            .bind(modseq)
                            .execute(&mut *tx)
                            .await?;
                        for k in new_kw.split_whitespace() {
                            sqlx::query(INSERT_MAILBOX_KEYWORD)
                                .bind(mailbox_id)
                                .bind(k)
                                .execute(&mut *tx)
                                .await?;
                        }
                        unseen += i64::from(new_bits & SEEN == 0) - i64::from(old_bits & SEEN == 0);
                        deleted +=
                            i64::from(new_bits & DELETED != 0) - i64::from(old_bits & DELETED != 0);
                        out.changed.push(FlagChange {
                            uid,
                            flags: join_flags(new_bits, &new_kw),
                            modseq,
                        });
                    }
                    if out.changed.is_empty() {
                        // Nothing changed: no new MODSEQ either.
                        return Ok(out);
                    }
                    sqlx::query(SET_HIGHESTMODSEQ)
                        .bind(mailbox_id)
                        .bind(modseq)
                        .execute(&mut *tx)
                        .await?;
                    if unseen != 0 || deleted != 0 {
                        sqlx::query(RECOUNT_FLAGS)
                            .bind(mailbox_id)
                            .bind(unseen)
                            .bind(deleted)
                            .execute(&mut *tx)
                            .await?;
                    }
                    Ok(out)
                }

                /// The id of an account's mailbox, created if it does not exist yet.
                pub(crate) async fn mailbox_id_in(
                    conn: &mut $conn,
                    account_id: i64,
                    name: &str,
                ) -> Result<i64> {
                    let name = mailbox_name(name);
                    if let Some(id) = sqlx::query_scalar::<_, i64>(MAILBOX_ID)
                        .bind(account_id)
                        .bind(name)
                        .fetch_optional(&mut *conn)
                        .await?
                    {
                        return Ok(id);
                    }
                    let uidvalidity: i64 = sqlx::query_scalar(NEXT_UIDVALIDITY)
                        .fetch_one(&mut *conn)
                        .await?;
                    sqlx::query(INSERT_MAILBOX_IF_NEW)
                        .bind(account_id)
                        .bind(name)
                        .bind(uidvalidity)
                        .execute(&mut *conn)
                        .await
                        .map_err(|e| {
                            if is_fk(&e) {
                                StoreError::AccountNotFound(format!("id {account_id}"))
                            } else {
                                StoreError::from(e)
                            }
                        })?;
                    Ok(sqlx::query_scalar(MAILBOX_ID)
                        .bind(account_id)
                        .bind(name)
                        .fetch_one(&mut *conn)
                        .await?)
                }

                /// Appends messages to one mailbox in the caller's transaction, taking its locks
                /// in the order of [`Self::deliver_in`]: the metadata's keys (in blob id order),
                /// the mailbox, the account (charged once for the total).
                pub(crate) async fn insert_messages(
                    conn: &mut $conn,
                    mailbox_id: i64,
                    messages: &[NewMessage],
                    texts: &[Option<String>],
                ) -> Result<Vec<u32>> {
                    let mut metas: Vec<(&str, &str)> = messages
                        .iter()
                        .filter_map(|m| Some((m.blob_id.as_str(), m.meta.as_deref()?)))
                        .collect();
                    metas.sort();
                    metas.dedup_by(|a, b| a.0 == b.0);
                    for (blob_id, meta) in metas {
                        Self::insert_meta(conn, blob_id, meta).await?;
                    }
                    let mut with_text: Vec<(&str, &str)> = messages
                        .iter()
                        .zip(texts)
                        .filter_map(|(m, t)| Some((m.blob_id.as_str(), t.as_deref()?)))
                        .collect();
                    with_text.sort_by_key(|t| t.0);
                    with_text.dedup_by(|a, b| a.0 == b.0);
                    for (blob_id, text) in with_text {
                        Self::insert_text(conn, blob_id, &fold(text)).await?;
                    }
                    let mut uids = Vec::with_capacity(messages.len());
                    let (mut account, mut total) = (None, 0i64);
                    for m in messages {
                        let (uid, account_id) = Self::insert_message_row(
                            conn,
                            mailbox_id,
                            &m.blob_id,
                            m.size,
                            m.internal_date,
                            &m.flags,
                        )
                        .await?;
                        uids.push(uid);
                        account = Some(account_id);
                        total += m.size;
                    }
                    if let Some(account_id) = account {
                        Self::charge(conn, account_id, total).await?;
                    }
                    Ok(uids)
                }

                /// Copies or moves messages of `from` (`uids`, or every message with `None`) to
                /// `to` in the caller's transaction, as [`Mailboxes::copy_messages`] describes;
                /// writes nothing when there is nothing to copy. Locks the two mailbox rows in
                /// ascending id order, then the accounts in ascending id order.
                async fn copy_in(
                    conn: &mut $conn,
                    from: i64,
                    uids: Option<&[u32]>,
                    to: i64,
                    remove_source: bool,
                ) -> Result<Vec<(u32, u32)>> {
                    let wanted: Option<std::collections::BTreeSet<u32>> =
                        uids.map(|u| u.iter().copied().collect());
                    let (first, last) = match &wanted {
                        Some(w) => match (w.first(), w.last()) {
                            (Some(&f), Some(&l)) => (f, l),
                            _ => return Ok(Vec::new()),
                        },
                        None => (1, u32::MAX),
                    };
                    let lock = format!("{LOCK_MAILBOX_PAIR}{}", <$store as Dialect>::FOR_UPDATE);
                    let locked = sqlx::query(&lock)
                        .bind(from)
                        .bind(to)
                        .fetch_all(&mut *conn)
                        .await?;
                    let mut accounts = std::collections::HashMap::new();
                    for r in &locked {
                        let id: i64 = r.try_get("id")?;
                        accounts.insert(id, r.try_get::<i64, _>("account_id")?);
                    }
                    let account_of = |id: i64| {
                        accounts
                            .get(&id)
                            .copied()
                            .ok_or_else(|| StoreError::MailboxNotFound(format!("id {id}")))
                    };
                    let (from_account, to_account) = (account_of(from)?, account_of(to)?);
                    let rows = sqlx::query(COPY_SOURCE)
                        .bind(from)
                        .bind(i64::from(first))
                        .bind(i64::from(last))
                        .fetch_all(&mut *conn)
                        .await?;
                    struct Source {
                        uid: u32,
                        bits: i64,
                        keywords: String,
                        internal_date: Timestamp,
                        size: i64,
                        blob_id: String,
                    }
                    let mut sources = Vec::with_capacity(rows.len());
                    for r in &rows {
                        let uid = r.try_get::<i64, _>("uid")? as u32;
                        if wanted.as_ref().is_some_and(|w| !w.contains(&uid)) {
                            continue;
                        }
                        sources.push(Source {
                            uid,
                            bits: r.try_get("system_flags")?,
                            keywords: r.try_get("keywords")?,
                            internal_date: r.try_get("internal_date")?,
                            size: r.try_get("size")?,
                            blob_id: r.try_get("blob_id")?,
                        });
                    }
                    if sources.is_empty() {
                        return Ok(Vec::new());
                    }
                    let count = sources.len() as i64;
                    let bytes: i64 = sources.iter().map(|m| m.size).sum();
                    let unseen = sources.iter().filter(|m| m.bits & SEEN == 0).count() as i64;
                    let deleted = sources.iter().filter(|m| m.bits & DELETED != 0).count() as i64;
                    let target = sqlx::query(COPY_TARGET)
                        .bind(to)
                        .bind(count)
                        .bind(unseen)
                        .bind(deleted)
                        .bind(bytes)
                        .fetch_one(&mut *conn)
                        .await?;
                    let first_uid: i64 = target.try_get("first_uid")?;
                    let modseq: i64 = target.try_get("highestmodseq")?;
                    let pairs: Vec<(u32, u32)> = sources
                        .iter()
                        .enumerate()
                        .map(|(i, m)| (m.uid, (first_uid + i as i64) as u32))
                        .collect();
                    for (chunk, uids) in sources.chunks(COPY_CHUNK).zip(pairs.chunks(COPY_CHUNK)) {
                        let values: Vec<String> = (0..chunk.len())
                            .map(|i| {
                                let n = 3 + 6 * i;
                                format!(
                                    "($1, ${n}, $2, ${}, ${}, ${}, ${}, ${})",
                                    n + 1,
                                    n + 2,
                                    n + 3,
                                    n + 4,
                                    n + 5
                                )
                            })
                            .collect();
                        let sql = format!("{INSERT_COPIES} VALUES {}", values.join(", "));
                        let mut q = sqlx::query(&sql).bind(to).bind(modseq);
                        for (m, (_, new_uid)) in chunk.iter().zip(uids) {
                            q = q
                                .bind(i64::from(*new_uid))
                                .bind(m.bits)
                                .bind(&m.keywords)
                                .bind(m.internal_date)
                                .bind(m.size)
                                .bind(&m.blob_id);
                        }
                        q.execute(&mut *conn).await?;
                    }
                    let keywords: std::collections::BTreeSet<&str> =
                        sources.iter().flat_map(|m| m.keywords.split_whitespace()).collect();
                    for k in keywords {
                        sqlx::query(INSERT_MAILBOX_KEYWORD)
                            .bind(to)
                            .bind(k)
                            .execute(&mut *conn)
                            .await?;
                    }
                    if remove_source {
                        let modseq: i64 = sqlx::query_scalar(MOVE_SOURCE)
                            .bind(from)
                            .bind(count)
                            .bind(unseen)
                            .bind(deleted)
                            .bind(bytes)
                            .fetch_one(&mut *conn)
                            .await?;
                        for chunk in sources.chunks(COPY_CHUNK) {
                            let sql = format!(
                                "{EXPUNGE_UIDS} IN ({})",
                                $crate::sql::placeholders(4, chunk.len())
                            );
                            let mut q = sqlx::query(&sql).bind(from).bind(modseq).bind(now());
                            for m in chunk {
                                q = q.bind(i64::from(m.uid));
                            }
                            q.execute(&mut *conn).await?;
                        }
                    }
                    // Used bytes: the destination's account grows (within its quota), a moved
                    // message's account shrinks; nothing moves within one account.
                    let mut deltas = std::collections::BTreeMap::<i64, i64>::new();
                    *deltas.entry(to_account).or_default() += bytes;
                    if remove_source {
                        *deltas.entry(from_account).or_default() -= bytes;
                    }
                    for (account_id, delta) in deltas {
                        if delta > 0 {
                            Self::charge(conn, account_id, delta).await?;
                        } else if delta < 0 {
                            sqlx::query(SUB_USED_BYTES)
                                .bind(-delta)
                                .bind(account_id)
                                .execute(&mut *conn)
                                .await?;
                        }
                    }
                    Ok(pairs)
                }

                /// A blob's metadata, unless it has some. Written before any mailbox or account
                /// row is locked: a transaction that waits here for another writing the same
                /// blob's metadata then holds nothing that one may wait for.
                async fn insert_meta(conn: &mut $conn, blob_id: &str, meta: &str) -> Result<()> {
                    sqlx::query(INSERT_META)
                        .bind(blob_id)
                        .bind(meta)
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                }

                /// Takes the next UID and MODSEQ of a mailbox (locking its row) and inserts the
                /// message row and its keywords into the mailbox's list; returns the UID and the
                /// mailbox's account.
                async fn insert_message_row(
                    conn: &mut $conn,
                    mailbox_id: i64,
                    blob_id: &str,
                    size: i64,
                    internal_date: Timestamp,
                    flags: &[String],
                ) -> Result<(u32, i64)> {
                    let (bits, keywords) = split_flags(flags);
                    let row = sqlx::query(NEXT_UID)
                        .bind(mailbox_id)
                        .bind(i64::from(bits & SEEN == 0))
                        .bind(i64::from(bits & DELETED != 0))
                        .bind(size)
                        .fetch_optional(&mut *conn)
                        .await?
                        .ok_or_else(|| StoreError::MailboxNotFound(format!("id {mailbox_id}")))?;
                    let uid: i64 = row.try_get("uid")?;
                    let modseq: i64 = row.try_get("highestmodseq")?;
                    let account_id: i64 = row.try_get("account_id")?;
                    sqlx::query(INSERT_MESSAGE)
                        .bind(mailbox_id)
                        .bind(uid)
                        .bind(modseq)
                        .bind(bits)
                        .bind(&keywords)
                        .bind(internal_date)
                        .bind(size)
                        .bind(blob_id)
                        .execute(&mut *conn)
                        .await?;
                    for k in keywords.split_whitespace() {
                        sqlx::query(INSERT_MAILBOX_KEYWORD)
                            .bind(mailbox_id)
                            .bind(k)
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok((uid as u32, account_id))
                }

                /// Counts `bytes` against an account (locking its row), refused with
                /// [`StoreError::OverQuota`] when they do not fit its quota.
                async fn charge(conn: &mut $conn, account_id: i64, bytes: i64) -> Result<()> {
                    sqlx::query(ADD_USED_BYTES)
                        .bind(bytes)
                        .bind(account_id)
                        .fetch_optional(&mut *conn)
                        .await?
                        .ok_or(StoreError::OverQuota(account_id))?;
                    Ok(())
                }

                /// A blob kept in the database; one already there stays as it is.
                pub(crate) async fn insert_blob(
                    conn: &mut $conn,
                    id: &str,
                    bytes: &[u8],
                ) -> Result<()> {
                    sqlx::query(INSERT_BLOB)
                        .bind(id)
                        .bind(bytes)
                        .bind(now())
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                }

                /// One delivery's rows, inside the caller's transaction. Its locks are taken in
                /// one order whatever the order of the targets, so that deliveries naming the
                /// same accounts in different orders never wait for each other in a cycle
                /// (PostgreSQL would abort one as a deadlock): the blob's metadata key; the
                /// UIDVALIDITY counter, for mailboxes made here; the mailbox rows in ascending
                /// id order; the account rows in ascending id order (used bytes and quota, for
                /// all of an account's copies at once).
                pub(crate) async fn deliver_in(
                    conn: &mut $conn,
                    d: &Delivery,
                ) -> Result<Vec<Delivered>> {
                    if let (Some(meta), false) = (&d.meta, d.targets.is_empty()) {
                        Self::insert_meta(conn, &d.blob_id, meta).await?;
                    }
                    if let (Some(text), false) = (&d.text, d.targets.is_empty()) {
                        Self::insert_text(conn, &d.blob_id, &fold(text)).await?;
                    }
                    let mut out = Vec::with_capacity(d.targets.len());
                    for t in &d.targets {
                        let mailbox_id = Self::mailbox_id_in(conn, t.account_id, &t.mailbox).await?;
                        out.push(Delivered { mailbox_id, uid: 0 });
                    }
                    let mut order: Vec<usize> = (0..out.len()).collect();
                    order.sort_by_key(|&i| out[i].mailbox_id);
                    let mut charges = std::collections::BTreeMap::<i64, i64>::new();
                    for i in order {
                        let (uid, account_id) = Self::insert_message_row(
                            conn,
                            out[i].mailbox_id,
                            &d.blob_id,
                            d.size,
                            d.internal_date,
                            &d.targets[i].flags,
                        )
                        .await?;
                        out[i].uid = uid;
                        *charges.entry(account_id).or_default() += d.size;
                    }
                    for (account_id, bytes) in charges {
                        Self::charge(conn, account_id, bytes).await?;
                    }
                    for q in &d.queue {
                        Self::insert_queue(conn, &d.blob_id, d.size, q).await?;
                    }
                    Ok(out)
                }
            }

            #[async_trait::async_trait]
            impl Mailboxes for $store {
                async fn create_mailbox(
                    &self,
                    account_id: i64,
                    name: &str,
                    special_use: Option<&str>,
                ) -> Result<Mailbox> {
                    let name = mailbox_name(name);
                    let mut tx = self.tx().await?;
                    let uidvalidity: i64 = sqlx::query_scalar(NEXT_UIDVALIDITY)
                        .fetch_one(&mut *tx)
                        .await?;
                    let id: i64 = sqlx::query_scalar(CREATE_MAILBOX)
                        .bind(account_id)
                        .bind(name)
                        .bind(special_use)
                        .bind(uidvalidity)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(|e| {
                            if is_fk(&e) {
                                StoreError::AccountNotFound(format!("id {account_id}"))
                            } else {
                                map_unique(e, || StoreError::MailboxExists(name.into()))
                            }
                        })?;
                    let row = sqlx::query(&format!(
                        "SELECT {MAILBOX_COLS} FROM mailboxes WHERE id = $1"
                    ))
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?;
                    let mailbox = mailbox_from(&row)?;
                    tx.commit().await?;
                    Ok(mailbox)
                }

                async fn rename_mailbox(
                    &self,
                    account_id: i64,
                    from: &str,
                    to: &str,
                ) -> Result<()> {
                    let (from, to) = (mailbox_name(from), mailbox_name(to));
                    let mut tx = self.tx().await?;
                    if from == "INBOX" {
                        let inbox: i64 = sqlx::query_scalar(MAILBOX_ID)
                            .bind(account_id)
                            .bind(from)
                            .fetch_optional(&mut *tx)
                            .await?
                            .ok_or_else(|| StoreError::MailboxNotFound(from.into()))?;
                        // The new mailbox first: the UIDVALIDITY counter before any mailbox
                        // row, in the order of `deliver_in` (nobody else sees the new row yet).
                        let uidvalidity: i64 = sqlx::query_scalar(NEXT_UIDVALIDITY)
                            .fetch_one(&mut *tx)
                            .await?;
                        let new: i64 = sqlx::query_scalar(CREATE_MAILBOX)
                            .bind(account_id)
                            .bind(to)
                            .bind(None::<String>)
                            .bind(uidvalidity)
                            .fetch_one(&mut *tx)
                            .await
                            .map_err(|e| map_unique(e, || StoreError::MailboxExists(to.into())))?;
                        Self::copy_in(&mut tx, inbox, None, new, true).await?;
                        tx.commit().await?;
                        return Ok(());
                    }
                    let prefix = format!("{from}/");
                    let lock = format!("{LOCK_RENAMED}{}", <$store as Dialect>::FOR_UPDATE);
                    let rows = sqlx::query(&lock)
                        .bind(account_id)
                        .bind(from)
                        .bind(prefix.chars().count() as i32)
                        .bind(&prefix)
                        .fetch_all(&mut *tx)
                        .await?;
                    let mut renamed = Vec::with_capacity(rows.len());
                    for r in &rows {
                        let id: i64 = r.try_get("id")?;
                        let name: String = r.try_get("name")?;
                        let new = format!("{to}{}", &name[from.len()..]);
                        renamed.push((id, name, new));
                    }
                    if !renamed.iter().any(|(_, name, _)| name == from) {
                        return Err(StoreError::MailboxNotFound(from.into()));
                    }
                    // Every name the account has now: a new name among them is taken (a name
                    // being renamed too included, so no update below meets a name in use).
                    let names: std::collections::HashSet<String> =
                        sqlx::query_scalar(ACCOUNT_MAILBOX_NAMES)
                            .bind(account_id)
                            .fetch_all(&mut *tx)
                            .await?
                            .into_iter()
                            .collect();
                    if renamed.iter().any(|(_, _, new)| names.contains(new.as_str())) {
                        return Err(StoreError::MailboxExists(to.into()));
                    }
                    for (id, old, new) in &renamed {
                        sqlx::query(RENAME_MAILBOX)
                            .bind(id)
                            .bind(new)
                            .execute(&mut *tx)
                            .await
                            .map_err(|e| map_unique(e, || StoreError::MailboxExists(to.into())))?;
                        let was = sqlx::query(UNSUBSCRIBE)
                            .bind(account_id)
                            .bind(old)
                            .execute(&mut *tx)
                            .await?;
                        if was.rows_affected() > 0 {
                            sqlx::query(SUBSCRIBE)
                                .bind(account_id)
                                .bind(new)
                                .execute(&mut *tx)
                                .await?;
                        }
                    }
                    tx.commit().await?;
                    Ok(())
                }

                async fn delete_mailbox(&self, account_id: i64, name: &str) -> Result<()> {
                    let name = mailbox_name(name);
                    if name == "INBOX" {
                        return Err(StoreError::Invalid("INBOX cannot be deleted".into()));
                    }
                    let mut tx = self.tx().await?;
                    let lock = format!("{LOCK_DELETED}{}", <$store as Dialect>::FOR_UPDATE);
                    let row = sqlx::query(&lock)
                        .bind(account_id)
                        .bind(name)
                        .fetch_optional(&mut *tx)
                        .await?
                        .ok_or_else(|| StoreError::MailboxNotFound(name.into()))?;
                    let id: i64 = row.try_get("id")?;
                    let bytes: i64 = row.try_get("bytes")?;
                    sqlx::query(DELETE_MAILBOX).bind(id).execute(&mut *tx).await?;
                    if bytes != 0 {
                        sqlx::query(SUB_USED_BYTES)
                            .bind(bytes)
                            .bind(account_id)
                            .execute(&mut *tx)
                            .await?;
                    }
                    tx.commit().await?;
                    Ok(())
                }

                async fn subscribe(&self, account_id: i64, name: &str) -> Result<()> {
                    sqlx::query(SUBSCRIBE)
                        .bind(account_id)
                        .bind(mailbox_name(name))
                        .execute(&self.write)
                        .await
                        .map_err(|e| {
                            if is_fk(&e) {
                                StoreError::AccountNotFound(format!("id {account_id}"))
                            } else {
                                StoreError::from(e)
                            }
                        })?;
                    Ok(())
                }

                async fn unsubscribe(&self, account_id: i64, name: &str) -> Result<()> {
                    sqlx::query(UNSUBSCRIBE)
                        .bind(account_id)
                        .bind(mailbox_name(name))
                        .execute(&self.write)
                        .await?;
                    Ok(())
                }

                async fn copy_messages(
                    &self,
                    from_mailbox: i64,
                    uids: &[u32],
                    to_mailbox: i64,
                    remove_source: bool,
                ) -> Result<Vec<(u32, u32)>> {
                    if uids.is_empty() {
                        return Ok(Vec::new());
                    }
                    let mut tx = self.tx().await?;
                    let pairs =
                        Self::copy_in(&mut tx, from_mailbox, Some(uids), to_mailbox, remove_source)
                            .await?;
                    if pairs.is_empty() {
                        // Nothing copied: no new MODSEQ either.
                        tx.rollback().await?;
                    } else {
                        tx.commit().await?;
                    }
                    Ok(pairs)
                }

                async fn put_message_meta(&self, blob_id: &str, meta: &str) -> Result<()> {
                    let mut conn = self.write.acquire().await?;
                    Self::insert_meta(&mut conn, blob_id, meta).await
                }

                async fn purge_tombstones(
                    &self,
                    fence: &$crate::model::Fence,
                    now: Timestamp,
                    expunged_before: Timestamp,
                ) -> Result<$crate::model::TombstonePurge> {
                    let mailboxes: Vec<i64> = sqlx::query_scalar(MAILBOXES_WITH_OLD_TOMBSTONES)
                        .bind(expunged_before)
                        .fetch_all(&self.read)
                        .await?;
                    let mut done = $crate::model::TombstonePurge::default();
                    // One short transaction per mailbox: it locks that mailbox's row only.
                    for id in mailboxes {
                        let mut tx = self.tx().await?;
                        $crate::sql::cluster::hold_fence!($store, tx, fence, now);
                        let lock = format!("{LOCK_MAILBOX_FLOOR}{}", <$store as Dialect>::FOR_UPDATE);
                        if sqlx::query(&lock).bind(id).fetch_optional(&mut *tx).await?.is_none() {
                            continue;
                        }
                        let purged: Vec<i64> = sqlx::query_scalar(PURGE_TOMBSTONES)
                            .bind(id)
                            .bind(expunged_before)
                            .fetch_all(&mut *tx)
                            .await?;
                        let Some(floor) = purged.iter().copied().max() else {
                            continue;
                        };
                        sqlx::query(SET_PURGED_MODSEQ)
                            .bind(id)
                            .bind(floor)
                            .execute(&mut *tx)
                            .await?;
                        tx.commit().await?;
                        done.mailboxes += 1;
                        done.tombstones += purged.len() as u64;
                    }
                    Ok(done)
                }

                async fn forget_meta(&self, blob_id: &str) -> Result<()> {
                    let mut tx = self.tx().await?;
                    sqlx::query(FORGET_META)
                        .bind(blob_id)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query(FORGET_TEXT)
                        .bind(blob_id)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn text_candidates(
                    &self,
                    mailbox_id: i64,
                    needle: &str,
                ) -> Result<Option<Vec<u32>>> {
                    // The index keeps a message's pieces (header blocks, bodies) on lines of
                    // their own and NUL as a space: a needle with a line break or a NUL may
                    // span what it does not hold.
                    if needle.contains(['\0', '\r', '\n']) {
                        return Ok(None);
                    }
                    let Some(query) = Self::text_query(needle) else {
                        return Ok(None);
                    };
                    let uids: Vec<i64> =
                        sqlx::query_scalar(&text_candidates_sql(<Self as Dialect>::TEXT_MATCH))
                            .bind(mailbox_id)
                            .bind(query)
                            .fetch_all(&self.read)
                            .await?;
                    Ok(Some(uids.into_iter().map(|u| u as u32).collect()))
                }

                async fn blob_put(&self, id: &str, bytes: &[u8]) -> Result<()> {
                    let mut conn = self.write.acquire().await?;
                    Self::insert_blob(&mut conn, id, bytes).await
                }

                async fn blob_delete(&self, id: &str) -> Result<()> {
                    sqlx::query(BLOB_DELETE)
                        .bind(id)
                        .execute(&self.write)
                        .await?;
                    Ok(())
                }

                async fn blob_list(&self) -> Result<Vec<BlobEntry>> {
                    let rows = sqlx::query(BLOB_LIST).fetch_all(&self.read).await?;
                    rows.iter()
                        .map(|r| {
                            Ok(BlobEntry {
                                id: r.try_get("id")?,
                                created: r.try_get("created")?,
                            })
                        })
                        .collect()
                }

                $($backend)*
            }
        };
    };
}

pub(crate) use impl_mailboxes;
