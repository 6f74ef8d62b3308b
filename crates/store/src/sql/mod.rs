//! The store's SQL, written once for both backends, one module per concern of
//! [`crate::store`].
//!
//! Both backends take `$N` placeholders (sqlx's SQLite driver reads `$N` as argument N), and
//! the schemas give every column the same name and a type that decodes to the same Rust type,
//! so most queries have one text. Each module holds its concern's SQL texts and a macro that
//! writes the concern's trait implementation for a backend's store type; each backend expands
//! it once (`sql::limits::impl_limits!(SqliteStore)`). The code the macro writes is plain
//! sqlx on the backend's concrete types; it reads `self.read` and `self.write` (the backend's
//! pools) and starts write transactions with `self.tx()` (`BEGIN IMMEDIATE` on SQLite).
//! Where the dialects differ by a word, the text takes it from [`Dialect`]; where they differ
//! more (SQLite's group-committed message writes, PostgreSQL's array of blob ids),
//! `impl_mailboxes!` takes those methods, in braces, from the backend (rustfmt does not format
//! inside them). SQLite reads IMAP's hot reads (and `get_account`) through its own synchronous
//! readers (`sqlite/reader.rs`, the same SQL texts): it passes `own_reads` to `impl_mailboxes!`
//! and `impl_directory!` and writes those methods in its braces; PostgreSQL gets them with sqlx.
//!
//! A macro rather than functions generic over `sqlx::Database`: a generic query needs an
//! `Encode`/`Decode`/`Type` bound for every type it binds or reads, and an `Executor` bound for
//! every connection it runs on, repeated on each function (Rust does not imply them from a
//! trait), which would outgrow the queries themselves.

pub(crate) mod cluster;
pub(crate) mod directory;
pub(crate) mod limits;
pub(crate) mod mailbox;
pub(crate) mod queue;

/// The words in which the two dialects differ inside an otherwise shared SQL text; each backend
/// implements it for its store type.
pub(crate) trait Dialect {
    /// Follows a `SELECT` of a row that the transaction goes on to update: `FOR UPDATE` on
    /// PostgreSQL; nothing on SQLite, whose write transactions (`BEGIN IMMEDIATE`) hold the
    /// database's write lock from their first statement.
    const FOR_UPDATE: &'static str;
    /// Ends the `SELECT` that picks the queue items to claim: `FOR UPDATE SKIP LOCKED` on
    /// PostgreSQL, so that nodes claiming at once pass over each other's items instead of
    /// waiting for them; nothing on SQLite, where one write transaction runs at a time.
    const SKIP_LOCKED: &'static str;
    /// A `SELECT` of the blob ids whose text in the full-text index matches the query in `$2`
    /// (the backend's `text_query` of a needle): an FTS5 `MATCH` on SQLite's trigram table, a
    /// tsquery on PostgreSQL's `message_text.tsv`.
    const TEXT_MATCH: &'static str;
}

/// `$first, $first+1, ...`: `n` numbered placeholders, for an `IN` list (both backends read
/// `$N`).
pub(crate) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}
