//! Queries whose SQL text is the same on SQLite and PostgreSQL (both take `$N` placeholders),
//! written once and run through whichever pool the backend has.

use sqlx::{Database, Executor, IntoArguments};

use crate::store::Result;

/// See [`crate::Store::auth_attempt`]. The conflict branch updates only while the key is
/// under `max` inside the window (or its window has passed); otherwise no row comes back.
const AUTH_ATTEMPT: &str = "INSERT INTO auth_failures (ip, failures, last_at) VALUES ($1, 1, $2) \
     ON CONFLICT (ip) DO UPDATE SET \
     failures = CASE WHEN auth_failures.last_at > $2 - $3 THEN auth_failures.failures + 1 ELSE 1 END, \
     last_at = excluded.last_at \
     WHERE auth_failures.last_at <= $2 - $3 OR auth_failures.failures < $4 \
     RETURNING failures";

const AUTH_ATTEMPT_SUCCEEDED: &str =
    "UPDATE auth_failures SET failures = failures - 1 WHERE ip = $1 AND failures > 0";

pub(crate) async fn auth_attempt<'p, DB, E>(
    pool: E,
    key: &str,
    now: i64,
    window: i64,
    max: i64,
) -> Result<Option<i64>>
where
    DB: Database,
    E: Executor<'p, Database = DB>,
    for<'q> <DB as Database>::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: for<'r> sqlx::Decode<'r, DB>,
    (i64,): for<'r> sqlx::FromRow<'r, DB::Row>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    Ok(sqlx::query_scalar::<DB, i64>(AUTH_ATTEMPT)
        .bind(key)
        .bind(now)
        .bind(window)
        .bind(max)
        .fetch_optional(pool)
        .await?)
}

pub(crate) async fn auth_attempt_succeeded<'p, DB, E>(pool: E, key: &str) -> Result<()>
where
    DB: Database,
    E: Executor<'p, Database = DB>,
    for<'q> <DB as Database>::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    sqlx::query::<DB>(AUTH_ATTEMPT_SUCCEEDED)
        .bind(key)
        .execute(pool)
        .await?;
    Ok(())
}
