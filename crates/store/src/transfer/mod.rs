//! The whole store as backend-neutral files, and back: what `mailfleet backup`, `restore` and
//! `store copy` are made of.
//!
//! [`export`] reads every table in one snapshot (a read transaction on SQLite,
//! `REPEATABLE READ READ ONLY` on PostgreSQL) into `DIR/tables/NAME.jsonl`: a header line naming
//! the columns and their neutral kinds (`integer`, `text`, `bytes`), then one JSON array per
//! row (bytes as hex, booleans as 0/1). The tables and their columns come from the database's
//! catalog, so a table or column a later migration adds is dumped without a change here; a
//! column of a type the dump cannot carry is refused by name, never skipped. Left out, by name:
//! `schema_migrations` (the target has its own) and the full-text index (`message_text` and
//! SQLite's FTS5 tables), which each backend keeps in its own form and which a search does
//! without (a message with no index row is always a candidate). The `blobs` table is dumped
//! without its `data` column: the bytes go with the other blobs (see [`crate::backup`]).
//!
//! Each table has a row count and a checksum that does not depend on the backend or the row
//! order (the wrapping sum of each row's SHA-256, its values taken in column-name order), so a
//! SQLite dump and its PostgreSQL restore have the same checksums. [`import`] loads a dump into
//! an empty store in one transaction, parents before children (from the catalog's foreign
//! keys), sets every id sequence past the restored values, re-reads every table and commits only
//! when each count and checksum equals the dump's.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::{Postgres, Row, Sqlite, Transaction};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use crate::blob::BlobStore;
use crate::error::StoreError;
use crate::store::{Result, Store};

mod conn;
mod dump;

use conn::*;
use dump::*;

/// Tables that are never dumped, and why.
pub const NOT_DUMPED: &[(&str, &str)] = &[
    ("schema_migrations", "the target store keeps its own"),
    (
        "message_text",
        "the full-text index, kept in each backend's own form; searches scan messages without it",
    ),
];

/// The table whose rows are the blobs kept in the database; its `data` column travels as blobs.
pub const BLOB_TABLE: &str = "blobs";
const BLOB_DATA: &str = "data";

/// Tables that must be empty in a store that a dump is loaded into.
const MUST_BE_EMPTY: &[&str] = &[
    "accounts",
    "domains",
    "aliases",
    "mailboxes",
    "messages",
    "queue",
    "blobs",
    "message_meta",
];

/// Rows per `INSERT`, at most (times the columns, well under both backends' parameter limits).
const MAX_PARAMS: usize = 8000;

/// What the store's backend gives the transfer code: its pools.
pub struct Access<'a>(pub(crate) Pools<'a>);

pub(crate) enum Pools<'a> {
    Sqlite {
        read: &'a sqlx::SqlitePool,
        write: &'a sqlx::SqlitePool,
    },
    Postgres(&'a sqlx::PgPool),
}

/// A column's value as the dump carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
}

/// A column's kind in the dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Integer,
    Text,
    Bytes,
}

/// How the backend keeps a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Native {
    Int,
    Bool,
    Text,
    Bytes,
}

impl Native {
    fn kind(self) -> Kind {
        match self {
            Native::Int | Native::Bool => Kind::Integer,
            Native::Text => Kind::Text,
            Native::Bytes => Kind::Bytes,
        }
    }
}

#[derive(Debug, Clone)]
struct Column {
    name: String,
    native: Native,
}

#[derive(Debug, Clone)]
struct Table {
    name: String,
    columns: Vec<Column>,
    /// Tables this one's foreign keys point to.
    parents: Vec<String>,
    /// Columns whose values come from a sequence (SQLite AUTOINCREMENT, PostgreSQL serial or
    /// identity), with the sequence's name on PostgreSQL.
    serial: Vec<(String, String)>,
}

impl Table {
    /// The columns the dump carries (all but the blob table's bytes).
    fn dumped_columns(&self) -> Vec<&Column> {
        self.columns
            .iter()
            .filter(|c| !(self.name == BLOB_TABLE && c.name == BLOB_DATA))
            .collect()
    }
}

/// One table of a dump: its row count, the checksum of its rows and the SHA-256 of its file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSummary {
    pub name: String,
    pub rows: u64,
    pub checksum: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub file_sha256: String,
}

/// The highest value a sequence has handed out (0: none), for `TABLE.COLUMN`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sequence {
    pub table: String,
    pub column: String,
    pub last: i64,
}

/// What [`export`] wrote.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Export {
    pub schema_version: i64,
    pub backend: String,
    pub tables: Vec<TableSummary>,
    pub sequences: Vec<Sequence>,
    /// Every blob the store refers to (messages still there, queue items) or keeps in its
    /// `blobs` table, sorted.
    #[serde(skip)]
    pub blob_ids: Vec<String>,
    /// Those kept in the `blobs` table.
    #[serde(skip)]
    pub db_blob_ids: BTreeSet<String>,
}

/// The dump file of a table, under a dump directory.
pub fn table_file(dir: &Path, table: &str) -> std::path::PathBuf {
    dir.join("tables").join(format!("{table}.jsonl"))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::BlobIo {
        path: path.display().to_string(),
        source,
    }
}

fn bad_dump(path: &Path, what: impl std::fmt::Display) -> StoreError {
    StoreError::Invalid(format!("{}: {what}", path.display()))
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

// ---------------------------------------------------------------- export

/// Writes every table of `store` (one snapshot) under `dir/tables/`, and lists the blobs the
/// snapshot refers to.
pub async fn export(store: &dyn Store, dir: &Path) -> Result<Export> {
    let tables_dir = dir.join("tables");
    tokio::fs::create_dir_all(&tables_dir)
        .await
        .map_err(io(&tables_dir))?;
    let access = store.transfer_access();
    let mut conn = Conn::snapshot(&access).await?;
    let schema_version = conn.schema_version().await?;
    let tables = conn.tables().await?;
    let mut summaries = Vec::new();
    let mut db_blob_ids = BTreeSet::new();
    for table in &tables {
        let path = table_file(dir, &table.name);
        let mut writer = DumpWriter::create(&path, table).await?;
        conn.for_each_row(table, &mut writer).await?;
        db_blob_ids.append(&mut writer.blob_ids);
        summaries.push(writer.finish(&table.name).await?);
    }
    let sequences = conn.sequences(&tables).await?;
    let mut blob_ids: BTreeSet<String> = conn.referenced_blobs().await?.into_iter().collect();
    blob_ids.extend(db_blob_ids.iter().cloned());
    // Read-only: nothing to keep, but ending it cleanly frees the snapshot at once.
    conn.commit().await?;
    sync_dir(&tables_dir).await?;
    Ok(Export {
        schema_version,
        backend: store.backend().to_string(),
        tables: summaries,
        sequences,
        blob_ids: blob_ids.into_iter().collect(),
        db_blob_ids,
    })
}

/// Makes a directory's entries durable.
pub(crate) async fn sync_dir(dir: &Path) -> Result<()> {
    let d = dir.to_path_buf();
    tokio::task::spawn_blocking(move || std::fs::File::open(&d).and_then(|f| f.sync_all()))
        .await
        .map_err(|e| StoreError::Invalid(format!("fsync task failed: {e}")))?
        .map_err(io(dir))
}

// ---------------------------------------------------------------- verify and import

/// Checks a dump against its summaries: every file's SHA-256, then every row's values, the row
/// count and the checksum. Returns the blob ids in the dump's `blobs` table.
pub async fn verify(dir: &Path, expected: &[TableSummary]) -> Result<BTreeSet<String>> {
    let mut db_blob_ids = BTreeSet::new();
    for t in expected {
        let path = table_file(dir, &t.name);
        let bytes_sha = {
            let p = path.clone();
            tokio::task::spawn_blocking(move || -> std::io::Result<String> {
                let mut f = std::fs::File::open(&p)?;
                let mut h = Sha256::new();
                std::io::copy(&mut f, &mut h)?;
                Ok(hex::encode(h.finalize()))
            })
            .await
            .map_err(|e| StoreError::Invalid(format!("checksum task failed: {e}")))?
            .map_err(io(&path))?
        };
        if !t.file_sha256.is_empty() && bytes_sha != t.file_sha256 {
            return Err(bad_dump(
                &path,
                "its SHA-256 differs from the manifest's: the file is damaged",
            ));
        }
        let mut reader = DumpReader::open(&path).await?;
        if reader.header.table != t.name {
            return Err(bad_dump(
                &path,
                format!("holds table {}, not {}", reader.header.table, t.name),
            ));
        }
        let names = reader.column_names();
        let id_at = (t.name == BLOB_TABLE)
            .then(|| names.iter().position(|c| *c == "id"))
            .flatten();
        let mut sum = RowSum::new(&names);
        while let Some(row) = reader.next_row().await? {
            if let Some(Value::Text(id)) = id_at.map(|i| &row[i]) {
                db_blob_ids.insert(id.clone());
            }
            sum.add(&row);
        }
        if sum.rows != t.rows || sum.hex() != t.checksum {
            return Err(bad_dump(
                &path,
                format!(
                    "{} rows with checksum {}, the manifest says {} rows with checksum {}",
                    sum.rows,
                    sum.hex(),
                    t.rows,
                    t.checksum
                ),
            ));
        }
    }
    Ok(db_blob_ids)
}

/// The store is refused as a target if one of the tables holding mail or accounts has rows.
async fn require_empty(conn: &mut Conn, tables: &[Table]) -> Result<()> {
    for name in MUST_BE_EMPTY {
        if tables.iter().any(|t| t.name == *name) {
            let rows = conn.count(name).await?;
            if rows > 0 {
                return Err(StoreError::NotEmpty {
                    table: name.to_string(),
                    rows,
                });
            }
        }
    }
    Ok(())
}

/// Whether a store may be the target of [`import`]: none of the tables holding mail or accounts
/// has rows.
pub async fn check_empty(store: &dyn Store) -> Result<()> {
    let access = store.transfer_access();
    let mut conn = Conn::snapshot(&access).await?;
    let tables = conn.tables().await?;
    require_empty(&mut conn, &tables).await?;
    conn.commit().await
}

/// Loads a dump (checked first with [`verify`]) into `store`, which must be empty and at the
/// dump's schema version, in one transaction; the `blobs` table's bytes come from `blob_bytes`.
/// Returns the tables as read back from the store before commit, each equal to the dump's.
pub async fn import(
    store: &dyn Store,
    dir: &Path,
    schema_version: i64,
    expected: &[TableSummary],
    sequences: &[Sequence],
    blob_bytes: &dyn BlobStore,
) -> Result<Vec<TableSummary>> {
    let access = store.transfer_access();
    let mut conn = Conn::writer(&access).await?;
    let target_version = conn.schema_version().await?;
    if target_version != schema_version {
        return Err(StoreError::Invalid(format!(
            "the dump is of schema version {schema_version}, the target store's is \
             {target_version}: restore with the mailfleet version that made it"
        )));
    }
    let tables = conn.tables().await?;
    require_empty(&mut conn, &tables).await?;
    let in_dump: BTreeMap<&str, &TableSummary> =
        expected.iter().map(|t| (t.name.as_str(), t)).collect();
    let in_store: BTreeSet<&str> = tables.iter().map(|t| t.name.as_str()).collect();
    if let Some(missing) = in_store.iter().find(|n| !in_dump.contains_key(*n)) {
        return Err(StoreError::Invalid(format!(
            "the dump has no table {missing}, which the target store has"
        )));
    }
    if let Some(extra) = in_dump.keys().find(|n| !in_store.contains(*n)) {
        return Err(StoreError::Invalid(format!(
            "the dump has a table {extra}, which the target store does not"
        )));
    }
    let order = parents_first(&tables);
    // What a fresh store holds already (counters, a node's heartbeat): replaced by the dump.
    for t in order.iter().rev() {
        conn.execute(&format!("DELETE FROM {}", quote(&t.name)))
            .await?;
    }
    for t in &order {
        load_table(&mut conn, dir, t, blob_bytes).await?;
    }
    let seq_of: HashMap<(&str, &str), i64> = sequences
        .iter()
        .map(|s| ((s.table.as_str(), s.column.as_str()), s.last))
        .collect();
    for t in &tables {
        for (column, seq) in &t.serial {
            let last = seq_of
                .get(&(t.name.as_str(), column.as_str()))
                .copied()
                .unwrap_or(0);
            conn.continue_sequence(t, column, seq, last).await?;
        }
    }
    // Read back what went in, inside the transaction.
    let mut loaded = Vec::new();
    for t in &tables {
        let columns = t.dumped_columns();
        let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
        let mut sum = RowSum::new(&names);
        conn.for_each_row(t, &mut sum).await?;
        let got = TableSummary {
            name: t.name.clone(),
            rows: sum.rows,
            checksum: sum.hex(),
            file_sha256: String::new(),
        };
        let want = in_dump[t.name.as_str()];
        if got.rows != want.rows || got.checksum != want.checksum {
            return Err(StoreError::Invalid(format!(
                "table {} read back {} rows with checksum {}, the dump has {} rows with \
                 checksum {}; nothing was written",
                t.name, got.rows, got.checksum, want.rows, want.checksum
            )));
        }
        loaded.push(got);
    }
    conn.commit().await?;
    Ok(loaded)
}

async fn load_table(
    conn: &mut Conn,
    dir: &Path,
    table: &Table,
    blob_bytes: &dyn BlobStore,
) -> Result<()> {
    let path = table_file(dir, &table.name);
    let mut reader = DumpReader::open(&path).await?;
    let dumped: Vec<&str> = reader.column_names();
    let wanted: Vec<&Column> = table.dumped_columns();
    {
        let a: BTreeSet<&str> = dumped.iter().copied().collect();
        let b: BTreeSet<&str> = wanted.iter().map(|c| c.name.as_str()).collect();
        if a != b {
            return Err(bad_dump(
                &path,
                format!(
                    "columns {:?} differ from the target table's {:?}",
                    a.iter().collect::<Vec<_>>(),
                    b.iter().collect::<Vec<_>>()
                ),
            ));
        }
    }
    // The target's columns, in the dump's order; then the blob bytes, for the blobs table.
    let mut columns: Vec<&Column> = dumped
        .iter()
        .filter_map(|n| table.columns.iter().find(|c| c.name == *n))
        .collect();
    let blob_data = if table.name == BLOB_TABLE {
        let id_at = dumped
            .iter()
            .position(|c| *c == "id")
            .ok_or_else(|| bad_dump(&path, "the blobs table has no id column"))?;
        let data = table
            .columns
            .iter()
            .find(|c| c.name == BLOB_DATA)
            .ok_or_else(|| bad_dump(&path, "the target's blobs table has no data column"))?;
        columns.push(data);
        Some(id_at)
    } else {
        None
    };
    let per_batch = (MAX_PARAMS / columns.len().max(1)).max(1);
    // Rows with blob bytes are few per batch: a batch holds at most ~8 MiB of them.
    let mut batch: Vec<Vec<Value>> = Vec::new();
    let mut batch_bytes = 0usize;
    while let Some(mut row) = reader.next_row().await? {
        if let Some(id_at) = blob_data {
            let Value::Text(id) = &row[id_at] else {
                return Err(bad_dump(&path, "a blob row without an id"));
            };
            let bytes = blob_bytes.get(id).await?;
            if crate::blob::blob_id(&bytes) != *id {
                return Err(StoreError::Invalid(format!(
                    "blob {id}: its bytes do not hash to its id (damaged)"
                )));
            }
            batch_bytes += bytes.len();
            row.push(Value::Bytes(bytes));
        }
        batch.push(row);
        if batch.len() >= per_batch || batch_bytes >= 8 << 20 {
            conn.insert(&table.name, &columns, &batch).await?;
            batch.clear();
            batch_bytes = 0;
        }
    }
    conn.insert(&table.name, &columns, &batch).await?;
    Ok(())
}

/// Reads every table of `store` in one snapshot: name, rows and checksum (no file).
pub async fn summarize(store: &dyn Store) -> Result<Vec<TableSummary>> {
    let access = store.transfer_access();
    let mut conn = Conn::snapshot(&access).await?;
    let tables = conn.tables().await?;
    let mut out = Vec::new();
    for t in &tables {
        let columns = t.dumped_columns();
        let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
        let mut sum = RowSum::new(&names);
        conn.for_each_row(t, &mut sum).await?;
        out.push(TableSummary {
            name: t.name.clone(),
            rows: sum.rows,
            checksum: sum.hex(),
            file_sha256: String::new(),
        });
    }
    conn.commit().await?;
    Ok(out)
}

/// Every table in the store's catalog, dumped or not (for tests that check coverage).
pub async fn catalog_tables(store: &dyn Store) -> Result<Vec<String>> {
    let access = store.transfer_access();
    let q_sqlite = "SELECT name FROM pragma_table_list WHERE schema = 'main' AND type = 'table' \
                    AND name NOT LIKE 'sqlite_%' ORDER BY name";
    let q_pg = "SELECT table_name::text FROM information_schema.tables \
                WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY 1";
    Ok(match &access.0 {
        Pools::Sqlite { read, .. } => sqlx::query_scalar(q_sqlite).fetch_all(*read).await?,
        Pools::Postgres(pool) => sqlx::query_scalar(q_pg).fetch_all(*pool).await?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_checksum_ignores_row_and_column_order() {
        let rows = [
            vec![Value::Int(1), Value::Text("a".into()), Value::Null],
            vec![
                Value::Int(2),
                Value::Text("b".into()),
                Value::Bytes(vec![1]),
            ],
        ];
        let mut one = RowSum::new(&["id", "name", "x"]);
        one.add(&rows[0]);
        one.add(&rows[1]);
        let mut two = RowSum::new(&["id", "name", "x"]);
        two.add(&rows[1]);
        two.add(&rows[0]);
        assert_eq!(one.hex(), two.hex());
        // The same rows with their columns in another order.
        let mut three = RowSum::new(&["x", "id", "name"]);
        for r in &rows {
            three.add(&[r[2].clone(), r[0].clone(), r[1].clone()]);
        }
        assert_eq!(one.hex(), three.hex());
        // A changed value changes it; a text "1" is not the integer 1.
        let mut four = RowSum::new(&["id", "name", "x"]);
        four.add(&rows[0]);
        four.add(&[
            Value::Text("2".into()),
            Value::Text("b".into()),
            Value::Bytes(vec![1]),
        ]);
        assert_ne!(one.hex(), four.hex());
    }

    #[test]
    fn values_round_trip_through_json_by_kind() {
        for (v, k) in [
            (Value::Int(i64::MIN), Kind::Integer),
            (Value::Int(i64::MAX), Kind::Integer),
            (Value::Text("é\"\n".into()), Kind::Text),
            (Value::Bytes(vec![0, 255, 10]), Kind::Bytes),
            (Value::Null, Kind::Text),
        ] {
            assert_eq!(from_json(&to_json(&v), k).unwrap(), v);
        }
        assert!(from_json(&serde_json::json!("12"), Kind::Integer).is_err());
        assert!(from_json(&serde_json::json!(1.5), Kind::Integer).is_err());
        assert!(from_json(&serde_json::json!("zz"), Kind::Bytes).is_err());
    }
}
