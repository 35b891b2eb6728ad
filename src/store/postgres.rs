//! [`PostgresStore`]: sessions in a PostgreSQL table, through sqlx.
//!
//! ```no_run
//! # async fn run() -> Result<(), session_layer::StoreError> {
//! use session_layer::store::postgres::PostgresStore;
//!
//! let store = PostgresStore::connect("postgres://app@localhost/app").await?;
//! store.migrate().await?;
//! let layer = session_layer::SessionLayer::builder(store, session_layer::Key::generate());
//! # Ok(()) }
//! ```
//!
//! # The table
//!
//! [`migrate`](PostgresStore::migrate) creates it (schema and name
//! configurable, default `sessions` on the search path), one row per
//! session:
//!
//! | column | type | holds |
//! |---|---|---|
//! | `id` | `BYTEA` primary key | the 32 bytes of the [`IdHash`] (S5: never the id) |
//! | `data` | `JSONB` | the session's values, one object |
//! | `created_at`, `last_active` | `BIGINT` | unix seconds |
//! | `expires_at` | `BIGINT`, indexed | unix seconds; rows at or past it never load |
//! | `expiry` | `TEXT`, nullable | the session's own [`Expiry`](crate::Expiry), JSON |
//! | `version` | `SMALLINT` | the format version, 1; rows of another are undecodable |
//!
//! `save` is one `UPDATE` that edits the current row's `data` with the
//! `jsonb` operators (`- text[]` for removed keys, `||` for set ones), so two
//! requests that change different keys both keep their change; `save` and
//! `touch` only update a live row. Expired rows stay until purged: run a
//! [`PurgeTask`](super::PurgeTask).
//!
//! ```no_run
//! # async fn run(store: session_layer::PostgresStore) {
//! let purge = session_layer::store::PurgeTask::spawn(store.clone(), std::time::Duration::from_secs(300));
//! # }
//! ```
//!
//! # Round trips
//!
//! Each call is one statement: one round trip on the request's path, once
//! sqlx has prepared the statement on that connection (its first use) —
//! provided the pool does not ping before every acquire, which is sqlx's
//! default: [`PostgresStore::connect`] turns that off
//! (`test_before_acquire(false)`); do the same for a pool of your own.
//! sqlx 0.8 also pings each connection as it goes back to the pool, after
//! the call has returned: a second exchange on the wire, off the request's
//! path (`tests/stores.rs` counts both).

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Map;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::types::Json;
use sqlx::Row as _;
use time::OffsetDateTime;

use super::sql::{self, InvalidName, Row};
use super::{Changes, Record, SessionStore};
use crate::error::StoreError;
use crate::id::IdHash;

/// Sessions in a PostgreSQL table (feature `postgres-store`). Cloning gives
/// another handle to the same pool and table.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use session_layer::store::postgres::PostgresStore;
/// use sqlx::postgres::PgPoolOptions;
///
/// let pool = PgPoolOptions::new()
///     .test_before_acquire(false)
///     .connect("postgres://app@localhost/app")
///     .await?;
/// let store = PostgresStore::new(pool).schema_name("auth")?.table_name("web_sessions")?;
/// store.migrate().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    schema: Option<Arc<str>>,
    table: Arc<str>,
    queries: Arc<Queries>,
}

/// The statements, formatted once for the table.
#[derive(Debug)]
struct Queries {
    /// `"schema"."table"`, or `"table"`.
    qualified: String,
    create: String,
    load: String,
    save: String,
    touch: String,
    delete: String,
    purge: String,
}

impl Queries {
    fn new(schema: Option<&str>, table: &str) -> Self {
        let t = match schema {
            Some(schema) => format!("\"{schema}\".\"{table}\""),
            None => format!("\"{table}\""),
        };
        Self {
            create: format!(
                "INSERT INTO {t} AS s (id, data, created_at, last_active, expires_at, expiry, version) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (id) DO UPDATE SET data = EXCLUDED.data, created_at = EXCLUDED.created_at, \
                 last_active = EXCLUDED.last_active, expires_at = EXCLUDED.expires_at, \
                 expiry = EXCLUDED.expiry, version = EXCLUDED.version \
                 WHERE s.expires_at <= $8"
            ),
            load: format!(
                "SELECT data, created_at, last_active, expires_at, expiry, version FROM {t} \
                 WHERE id = $1 AND expires_at > $2"
            ),
            // Clear, then remove, then set: what `Changes::apply_to` does.
            save: format!(
                "UPDATE {t} SET \
                 data = ((CASE WHEN $2 THEN '{{}}'::jsonb ELSE data END) - $3::text[]) || $4::jsonb, \
                 last_active = $5, expires_at = $6, expiry = $7 \
                 WHERE id = $1 AND expires_at > $8"
            ),
            touch: format!(
                "UPDATE {t} SET last_active = $1, expires_at = $2 WHERE id = $3 AND expires_at > $4"
            ),
            delete: format!("DELETE FROM {t} WHERE id = $1"),
            purge: format!("DELETE FROM {t} WHERE expires_at <= $1"),
            qualified: t,
        }
    }
}

impl PostgresStore {
    /// The table name unless [`table_name`](Self::table_name) sets another.
    pub const DEFAULT_TABLE: &'static str = "sessions";

    /// A store on `pool`, in the table [`DEFAULT_TABLE`](Self::DEFAULT_TABLE)
    /// of the connection's search path. Call [`migrate`](Self::migrate) once
    /// to create the table.
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            schema: None,
            table: Self::DEFAULT_TABLE.into(),
            queries: Arc::new(Queries::new(None, Self::DEFAULT_TABLE)),
        }
    }

    /// Connects a pool to `url` (one that does not ping before each use, so
    /// a call is one round trip) and makes a store on it.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .test_before_acquire(false)
            .connect(url)
            .await
            .map_err(StoreError::backend)?;
        Ok(Self::new(pool))
    }

    /// Keeps sessions in table `name` instead of `sessions`; refused unless
    /// it is a plain identifier (see [`InvalidName`]).
    pub fn table_name(mut self, name: &str) -> Result<Self, InvalidName> {
        self.table = sql::identifier(name)?.into();
        self.queries = Arc::new(Queries::new(self.schema.as_deref(), &self.table));
        Ok(self)
    }

    /// Puts the table in schema `name` instead of the search path's first;
    /// [`migrate`](Self::migrate) creates the schema if needed. Refused
    /// unless it is a plain identifier (see [`InvalidName`]).
    pub fn schema_name(mut self, name: &str) -> Result<Self, InvalidName> {
        self.schema = Some(sql::identifier(name)?.into());
        self.queries = Arc::new(Queries::new(self.schema.as_deref(), &self.table));
        Ok(self)
    }

    /// The table the sessions are in.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The schema of the table, if one was set.
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// The pool the store runs on.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Creates the schema (if set), the table and its expiry index if they
    /// do not exist. Safe to run on every start, from several instances at
    /// once: it holds an advisory lock while it runs.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let t = &self.queries.qualified;
        let statements = [
            self.schema
                .as_ref()
                .map(|schema| format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"")),
            Some(format!(
                "CREATE TABLE IF NOT EXISTS {t} (\
                 id BYTEA PRIMARY KEY, \
                 data JSONB NOT NULL, \
                 created_at BIGINT NOT NULL, \
                 last_active BIGINT NOT NULL, \
                 expires_at BIGINT NOT NULL, \
                 expiry TEXT, \
                 version SMALLINT NOT NULL)"
            )),
            Some(format!(
                "CREATE INDEX IF NOT EXISTS \"{}_expires_at\" ON {t} (expires_at)",
                self.table
            )),
        ];
        let mut tx = self.pool.begin().await.map_err(StoreError::backend)?;
        // `IF NOT EXISTS` alone races: two instances starting together can
        // both try to create the table's type.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(t)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::backend)?;
        for statement in statements.iter().flatten() {
            sqlx::query(statement)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::backend)?;
        }
        tx.commit().await.map_err(StoreError::backend)
    }
}

#[async_trait]
impl SessionStore for PostgresStore {
    async fn create(&self, id: &IdHash, record: &Record) -> Result<bool, StoreError> {
        let done = sqlx::query(&self.queries.create)
            .bind(&id.as_bytes()[..])
            .bind(Json(&record.data))
            .bind(record.created_at.unix_timestamp())
            .bind(record.last_active.unix_timestamp())
            .bind(record.expires_at.unix_timestamp())
            .bind(sql::expiry_text(record.expiry)?)
            .bind(i16::from(Record::FORMAT_VERSION))
            .bind(sql::now())
            .execute(&self.pool)
            .await
            .map_err(StoreError::backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn load(&self, id: &IdHash) -> Result<Option<Record>, StoreError> {
        let row = sqlx::query(&self.queries.load)
            .bind(&id.as_bytes()[..])
            .bind(sql::now())
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::backend)?;
        let Some(row) = row else { return Ok(None) };
        Row {
            data: sql::column(row.try_get::<Json<_>, _>(0))?.0,
            created_at: sql::column(row.try_get(1))?,
            last_active: sql::column(row.try_get(2))?,
            expires_at: sql::column(row.try_get(3))?,
            expiry: sql::column(row.try_get(4))?,
            version: sql::column(row.try_get::<i16, _>(5))?.into(),
        }
        .into_record()
        .map(Some)
    }

    async fn save(&self, id: &IdHash, changes: &Changes) -> Result<bool, StoreError> {
        let set: Map<_, _> = changes.set.iter().cloned().collect();
        let done = sqlx::query(&self.queries.save)
            .bind(&id.as_bytes()[..])
            .bind(changes.cleared)
            .bind(&changes.removed)
            .bind(Json(set))
            .bind(changes.last_active.unix_timestamp())
            .bind(changes.expires_at.unix_timestamp())
            .bind(sql::expiry_text(changes.expiry)?)
            .bind(sql::now())
            .execute(&self.pool)
            .await
            .map_err(StoreError::backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete(&self, id: &IdHash) -> Result<bool, StoreError> {
        let done = sqlx::query(&self.queries.delete)
            .bind(&id.as_bytes()[..])
            .execute(&self.pool)
            .await
            .map_err(StoreError::backend)?;
        Ok(done.rows_affected() > 0)
    }

    async fn touch(
        &self,
        id: &IdHash,
        last_active: OffsetDateTime,
        expires_at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(&self.queries.touch)
            .bind(last_active.unix_timestamp())
            .bind(expires_at.unix_timestamp())
            .bind(&id.as_bytes()[..])
            .bind(sql::now())
            .execute(&self.pool)
            .await
            .map_err(StoreError::backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn purge_expired(&self) -> Result<u64, StoreError> {
        let done = sqlx::query(&self.queries.purge)
            .bind(sql::now())
            .execute(&self.pool)
            .await
            .map_err(StoreError::backend)?;
        Ok(done.rows_affected())
    }
}

#[cfg(any(test, feature = "testing"))]
#[async_trait]
impl super::conformance::RawAccess for PostgresStore {
    async fn raw_dump(&self) -> Result<Vec<String>, StoreError> {
        // `row_to_json` shows every column, `bytea` as `\x` and hex.
        let rows = sqlx::query(&format!(
            "SELECT row_to_json(s)::text FROM {} AS s",
            self.queries.qualified
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::backend)?;
        rows.iter()
            .map(|row| row.try_get::<String, _>(0).map_err(StoreError::backend))
            .collect()
    }

    async fn corrupt(&self, id: &IdHash) -> Result<(), StoreError> {
        // `jsonb` only holds valid JSON, so: JSON that is not an object.
        sqlx::query(&format!(
            "UPDATE {} SET data = '[\"not\", \"an object\"]'::jsonb WHERE id = $1",
            self.queries.qualified
        ))
        .bind(&id.as_bytes()[..])
        .execute(&self.pool)
        .await
        .map_err(StoreError::backend)?;
        Ok(())
    }
}
