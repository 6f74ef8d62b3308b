//! One transaction on either backend: the catalog (tables, columns, foreign keys, sequences) and
//! the row access the transfer needs.

use super::*;

/// A transaction on either backend, and the catalog and row access the transfer needs.
pub(super) enum Conn {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

pub(super) fn sqlite_native(declared: &str) -> Option<Native> {
    // SQLite's type affinity rules (https://sqlite.org/datatype3.html §3.1), plus BOOL.
    let t = declared.to_ascii_uppercase();
    if t.contains("INT") || t.contains("BOOL") {
        Some(Native::Int)
    } else if t.contains("CHAR") || t.contains("CLOB") || t.contains("TEXT") {
        Some(Native::Text)
    } else if t.contains("BLOB") || t.is_empty() {
        Some(Native::Bytes)
    } else {
        None
    }
}

pub(super) fn postgres_native(data_type: &str) -> Option<Native> {
    match data_type {
        "bigint" | "integer" | "smallint" => Some(Native::Int),
        "boolean" => Some(Native::Bool),
        "text" | "character varying" | "character" => Some(Native::Text),
        "bytea" => Some(Native::Bytes),
        _ => None,
    }
}

pub(super) fn unsupported(table: &str, column: &str, ty: &str) -> StoreError {
    StoreError::Invalid(format!(
        "table {table} column {column} has type {ty}, which a dump cannot carry"
    ))
}

impl Conn {
    /// A read snapshot of the whole store.
    pub(super) async fn snapshot(access: &Access<'_>) -> Result<Self> {
        Ok(match &access.0 {
            Pools::Sqlite { read, .. } => Conn::Sqlite(read.begin().await?),
            Pools::Postgres(pool) => Conn::Postgres(
                pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await?,
            ),
        })
    }

    /// A write transaction (holding SQLite's write lock from the start).
    pub(super) async fn writer(access: &Access<'_>) -> Result<Self> {
        Ok(match &access.0 {
            Pools::Sqlite { write, .. } => Conn::Sqlite(write.begin_with("BEGIN IMMEDIATE").await?),
            Pools::Postgres(pool) => Conn::Postgres(pool.begin().await?),
        })
    }

    pub(super) async fn commit(self) -> Result<()> {
        match self {
            Conn::Sqlite(tx) => tx.commit().await?,
            Conn::Postgres(tx) => tx.commit().await?,
        }
        Ok(())
    }

    pub(super) async fn schema_version(&mut self) -> Result<i64> {
        let q = "SELECT COALESCE(MAX(version), 0) FROM schema_migrations";
        Ok(match self {
            Conn::Sqlite(tx) => sqlx::query_scalar(q).fetch_one(&mut **tx).await?,
            Conn::Postgres(tx) => sqlx::query_scalar(q).fetch_one(&mut **tx).await?,
        })
    }

    /// Every table of the store that a dump carries, from the catalog, by name.
    pub(super) async fn tables(&mut self) -> Result<Vec<Table>> {
        let mut out = Vec::new();
        match self {
            Conn::Sqlite(tx) => {
                // Virtual tables (FTS5) and their shadow tables have types of their own.
                let names: Vec<(String, String)> = sqlx::query_as(
                    "SELECT l.name, COALESCE(s.sql, '') FROM pragma_table_list l \
                     JOIN sqlite_schema s ON s.name = l.name AND s.type = 'table' \
                     WHERE l.schema = 'main' AND l.type = 'table' AND l.name NOT LIKE 'sqlite_%' \
                     ORDER BY l.name",
                )
                .fetch_all(&mut **tx)
                .await?;
                for (name, sql) in names {
                    if NOT_DUMPED.iter().any(|(n, _)| *n == name) {
                        continue;
                    }
                    let cols: Vec<(String, String, i64)> = sqlx::query_as(
                        "SELECT name, type, pk FROM pragma_table_info($1) ORDER BY cid",
                    )
                    .bind(&name)
                    .fetch_all(&mut **tx)
                    .await?;
                    let mut columns = Vec::new();
                    let mut serial = Vec::new();
                    let autoincrement = sql.to_ascii_uppercase().contains("AUTOINCREMENT");
                    for (col, ty, pk) in cols {
                        let native =
                            sqlite_native(&ty).ok_or_else(|| unsupported(&name, &col, &ty))?;
                        if autoincrement && pk == 1 {
                            serial.push((col.clone(), String::new()));
                        }
                        columns.push(Column { name: col, native });
                    }
                    let parents: Vec<String> = sqlx::query_scalar(
                        "SELECT DISTINCT \"table\" FROM pragma_foreign_key_list($1)",
                    )
                    .bind(&name)
                    .fetch_all(&mut **tx)
                    .await?;
                    out.push(Table {
                        name,
                        columns,
                        parents,
                        serial,
                    });
                }
            }
            Conn::Postgres(tx) => {
                let names: Vec<String> = sqlx::query_scalar(
                    "SELECT table_name::text FROM information_schema.tables \
                     WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' \
                     ORDER BY 1",
                )
                .fetch_all(&mut **tx)
                .await?;
                for name in names {
                    if NOT_DUMPED.iter().any(|(n, _)| *n == name) {
                        continue;
                    }
                    let cols: Vec<(String, String, Option<String>)> = sqlx::query_as(
                        "SELECT column_name::text, data_type::text, \
                         pg_get_serial_sequence(quote_ident($1), column_name::text)::text \
                         FROM information_schema.columns \
                         WHERE table_schema = current_schema() AND table_name = $1 \
                         ORDER BY ordinal_position",
                    )
                    .bind(&name)
                    .fetch_all(&mut **tx)
                    .await?;
                    let mut columns = Vec::new();
                    let mut serial = Vec::new();
                    for (col, ty, seq) in cols {
                        let native =
                            postgres_native(&ty).ok_or_else(|| unsupported(&name, &col, &ty))?;
                        if let Some(seq) = seq {
                            serial.push((col.clone(), seq));
                        }
                        columns.push(Column { name: col, native });
                    }
                    let parents: Vec<String> = sqlx::query_scalar(
                        "SELECT DISTINCT p.relname::text FROM pg_constraint k \
                         JOIN pg_class c ON c.oid = k.conrelid \
                         JOIN pg_class p ON p.oid = k.confrelid \
                         JOIN pg_namespace n ON n.oid = c.relnamespace \
                         WHERE k.contype = 'f' AND c.relname = $1 AND n.nspname = current_schema()",
                    )
                    .bind(&name)
                    .fetch_all(&mut **tx)
                    .await?;
                    out.push(Table {
                        name,
                        columns,
                        parents,
                        serial,
                    });
                }
            }
        }
        Ok(out)
    }

    /// The SELECT of a table's dumped columns, each cast so that it decodes as its kind.
    pub(super) fn select(&self, table: &Table) -> String {
        let list: Vec<String> = table
            .dumped_columns()
            .iter()
            .map(|c| {
                let q = quote(&c.name);
                match (self, c.native) {
                    (Conn::Postgres(_), Native::Int) => format!("CAST({q} AS BIGINT)"),
                    (Conn::Postgres(_), Native::Bool) => {
                        format!("CAST(CAST({q} AS INTEGER) AS BIGINT)")
                    }
                    (Conn::Postgres(_), Native::Text) => format!("CAST({q} AS TEXT)"),
                    _ => q,
                }
            })
            .collect();
        format!("SELECT {} FROM {}", list.join(", "), quote(&table.name))
    }

    /// Hands every row of a table (its dumped columns) to `sink`.
    pub(super) async fn for_each_row(
        &mut self,
        table: &Table,
        sink: &mut (dyn RowSink + '_),
    ) -> Result<()> {
        use futures_core::Stream;
        let sql = self.select(table);
        let kinds: Vec<Kind> = table
            .dumped_columns()
            .iter()
            .map(|c| c.native.kind())
            .collect();
        macro_rules! rows {
            ($tx:expr) => {{
                let mut stream = sqlx::query(&sql).fetch(&mut **$tx);
                while let Some(row) =
                    std::future::poll_fn(|cx| std::pin::Pin::new(&mut stream).poll_next(cx)).await
                {
                    let row = row?;
                    let mut values = Vec::with_capacity(kinds.len());
                    for (i, kind) in kinds.iter().enumerate() {
                        values.push(match kind {
                            Kind::Integer => row
                                .try_get::<Option<i64>, _>(i)?
                                .map_or(Value::Null, Value::Int),
                            Kind::Text => row
                                .try_get::<Option<String>, _>(i)?
                                .map_or(Value::Null, Value::Text),
                            Kind::Bytes => row
                                .try_get::<Option<Vec<u8>>, _>(i)?
                                .map_or(Value::Null, Value::Bytes),
                        });
                    }
                    sink.row(values).await?;
                }
            }};
        }
        match self {
            Conn::Sqlite(tx) => rows!(tx),
            Conn::Postgres(tx) => rows!(tx),
        }
        Ok(())
    }

    pub(super) async fn count(&mut self, table: &str) -> Result<i64> {
        let sql = format!("SELECT COUNT(*) FROM {}", quote(table));
        Ok(match self {
            Conn::Sqlite(tx) => sqlx::query_scalar(&sql).fetch_one(&mut **tx).await?,
            Conn::Postgres(tx) => sqlx::query_scalar(&sql).fetch_one(&mut **tx).await?,
        })
    }

    pub(super) async fn execute(&mut self, sql: &str) -> Result<()> {
        match self {
            Conn::Sqlite(tx) => {
                sqlx::query(sql).execute(&mut **tx).await?;
            }
            Conn::Postgres(tx) => {
                sqlx::query(sql).execute(&mut **tx).await?;
            }
        }
        Ok(())
    }

    /// Inserts rows whose values are in the order of `columns`.
    pub(super) async fn insert(
        &mut self,
        table: &str,
        columns: &[&Column],
        rows: &[Vec<Value>],
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = columns.iter().map(|c| quote(&c.name)).collect();
        let mut n = 0;
        let tuples: Vec<String> = rows
            .iter()
            .map(|_| {
                let marks: Vec<String> = columns
                    .iter()
                    .map(|_| {
                        n += 1;
                        format!("${n}")
                    })
                    .collect();
                format!("({})", marks.join(", "))
            })
            .collect();
        let sql = format!(
            "INSERT INTO {} ({}) VALUES {}",
            quote(table),
            names.join(", "),
            tuples.join(", ")
        );
        macro_rules! bind_all {
            ($tx:expr) => {{
                let mut q = sqlx::query(&sql);
                for row in rows {
                    for (value, column) in row.iter().zip(columns) {
                        q = match (value, column.native) {
                            (Value::Null, Native::Int) => q.bind(None::<i64>),
                            (Value::Null, Native::Bool) => q.bind(None::<bool>),
                            (Value::Null, Native::Text) => q.bind(None::<String>),
                            (Value::Null, Native::Bytes) => q.bind(None::<Vec<u8>>),
                            (Value::Int(v), Native::Bool) => q.bind(*v != 0),
                            (Value::Int(v), _) => q.bind(*v),
                            (Value::Text(v), _) => q.bind(v.clone()),
                            (Value::Bytes(v), _) => q.bind(v.clone()),
                        };
                    }
                }
                q.execute(&mut **$tx).await?;
            }};
        }
        match self {
            Conn::Sqlite(tx) => bind_all!(tx),
            Conn::Postgres(tx) => bind_all!(tx),
        }
        Ok(())
    }

    /// The highest value each serial column's sequence has handed out.
    pub(super) async fn sequences(&mut self, tables: &[Table]) -> Result<Vec<Sequence>> {
        let mut out = Vec::new();
        for t in tables {
            for (column, seq) in &t.serial {
                let last: i64 = match self {
                    Conn::Sqlite(tx) => sqlx::query_scalar(
                        "SELECT COALESCE((SELECT MAX(seq) FROM sqlite_sequence WHERE name = $1), 0)",
                    )
                    .bind(&t.name)
                    .fetch_one(&mut **tx)
                    .await?,
                    Conn::Postgres(tx) => {
                        let (last, called): (i64, bool) = sqlx::query_as(&format!(
                            "SELECT last_value, is_called FROM {seq}"
                        ))
                        .fetch_one(&mut **tx)
                        .await?;
                        if called { last } else { last - 1 }
                    }
                };
                out.push(Sequence {
                    table: t.name.clone(),
                    column: column.clone(),
                    last,
                });
            }
        }
        Ok(out)
    }

    /// Sets a serial column's sequence so that its next value is above `last` and above every
    /// value in the column.
    pub(super) async fn continue_sequence(
        &mut self,
        table: &Table,
        column: &str,
        seq: &str,
        last: i64,
    ) -> Result<()> {
        let max_sql = format!(
            "SELECT COALESCE(MAX({}), 0) FROM {}",
            quote(column),
            quote(&table.name)
        );
        match self {
            Conn::Sqlite(tx) => {
                let max: i64 = sqlx::query_scalar(&max_sql).fetch_one(&mut **tx).await?;
                let value = last.max(max);
                if value > 0 {
                    let updated = sqlx::query(
                        "UPDATE sqlite_sequence SET seq = MAX(seq, $2) WHERE name = $1",
                    )
                    .bind(&table.name)
                    .bind(value)
                    .execute(&mut **tx)
                    .await?
                    .rows_affected();
                    if updated == 0 {
                        sqlx::query("INSERT INTO sqlite_sequence (name, seq) VALUES ($1, $2)")
                            .bind(&table.name)
                            .bind(value)
                            .execute(&mut **tx)
                            .await?;
                    }
                }
            }
            Conn::Postgres(tx) => {
                let max: i64 = sqlx::query_scalar(&max_sql).fetch_one(&mut **tx).await?;
                let value = last.max(max);
                if value > 0 {
                    sqlx::query("SELECT setval($1::regclass, $2, true)")
                        .bind(seq)
                        .bind(value)
                        .execute(&mut **tx)
                        .await?;
                } else {
                    sqlx::query("SELECT setval($1::regclass, 1, false)")
                        .bind(seq)
                        .execute(&mut **tx)
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// The blob ids the store refers to: messages still there, queue items.
    pub(super) async fn referenced_blobs(&mut self) -> Result<Vec<String>> {
        let q = "SELECT blob_id FROM messages WHERE NOT expunged UNION SELECT blob_id FROM queue";
        Ok(match self {
            Conn::Sqlite(tx) => sqlx::query_scalar(q).fetch_all(&mut **tx).await?,
            Conn::Postgres(tx) => sqlx::query_scalar(q).fetch_all(&mut **tx).await?,
        })
    }
}

/// Tables in an order where each comes after the tables its foreign keys point to (ties by
/// name).
pub(super) fn parents_first(tables: &[Table]) -> Vec<&Table> {
    let names: BTreeSet<&str> = tables.iter().map(|t| t.name.as_str()).collect();
    let mut done: BTreeSet<&str> = BTreeSet::new();
    let mut out = Vec::new();
    while out.len() < tables.len() {
        let ready: Vec<&Table> = tables
            .iter()
            .filter(|t| !done.contains(t.name.as_str()))
            .filter(|t| {
                t.parents.iter().all(|p| {
                    p == &t.name || !names.contains(p.as_str()) || done.contains(p.as_str())
                })
            })
            .collect();
        if ready.is_empty() {
            // A cycle of foreign keys: take the rest by name (the insert will say what fails).
            out.extend(tables.iter().filter(|t| !done.contains(t.name.as_str())));
            break;
        }
        for t in ready {
            done.insert(t.name.as_str());
            out.push(t);
        }
    }
    out
}
