//! [`SqliteStore`]: sessions in an SQLite database, through sqlx.
//!
//! ```no_run
//! # async fn run() -> Result<(), session_layer::StoreError> {
//! use session_layer::store::sqlite::SqliteStore;
//!
//! let store = SqliteStore::connect("sqlite://sessions.db").await?;
//! store.migrate().await?;
//! let layer = session_layer::SessionLayer::builder(store, session_layer::Key::generate());
//! # Ok(()) }
//! ```
//!
//! # The table
//!
//! [`migrate`](SqliteStore::migrate) creates it (name configurable, default
//! `sessions`), one row per session:
//!
//! | column | type | holds |
//! |---|---|---|
//! | `id` | `BLOB` primary key | the 32 bytes of the [`IdHash`] (S5: never the id) |
//! | `data` | `TEXT` | the session's values, one JSON object |
//! | `created_at`, `last_active` | `INTEGER` | unix seconds |
//! | `expires_at` | `INTEGER`, indexed | unix seconds; rows at or past it never load |
//! | `expiry` | `TEXT`, nullable | the session's own [`Expiry`](crate::Expiry), JSON |
//! | `version` | `INTEGER` | the format version, 1; rows of another are undecodable |
//!
//! `save` changes `data` key by key with `json_remove`/`json_set` in one
//! `UPDATE` against the current row, so two requests that change different
//! keys both keep their change; `save` and `touch` only update a live row.
//! SQLite runs one writer at a time; a file database in WAL mode (what
//! [`SqliteStore::connect`] sets up) lets readers go on meanwhile.
//!
//! Expired rows stay until purged: run a [`PurgeTask`](super::PurgeTask).
//!
//! ```no_run
//! # async fn run(store: session_layer::SqliteStore) {
//! let purge = session_layer::store::PurgeTask::spawn(store.clone(), std::time::Duration::from_secs(300));
//! # }
//! ```
//!
//! # In memory
//!
//! `sqlite::memory:` is a database that lives as long as its connection. Give
//! the store a pool of exactly one connection that never closes —
//! [`SqliteStore::connect`] does that for memory URLs — or each connection
//! of the pool sees its own empty database and sessions vanish with it:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use sqlx::sqlite::SqlitePoolOptions;
//! use session_layer::store::sqlite::SqliteStore;
//!
//! let pool = SqlitePoolOptions::new()
//!     .max_connections(1)
//!     .min_connections(1)
//!     .idle_timeout(None)
//!     .max_lifetime(None)
//!     .connect("sqlite::memory:")
//!     .await
//!     .unwrap();
//! let store = SqliteStore::new(pool);
//! store.migrate().await.unwrap();
//! # }
//! ```

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::types::Json;
use sqlx::Row as _;
use time::OffsetDateTime;

use super::sql::{self, InvalidName, JsonDialect, Row};
use super::{Changes, Record, SessionStore};
use crate::error::StoreError;
use crate::id::IdHash;

/// How long a connection waits for another connection's write to finish.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Sessions in an SQLite database (feature `sqlite-store`). Cloning gives
/// another handle to the same pool and table.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use session_layer::store::sqlite::SqliteStore;
///
/// let store = SqliteStore::connect("sqlite::memory:").await.unwrap().table_name("app_sessions").unwrap();
/// store.migrate().await.unwrap();
/// assert_eq!(store.table(), "app_sessions");
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    table: Arc<str>,
    queries: Arc<Queries>,
}

/// The statements that do not depend on the changes, formatted once.
#[derive(Debug)]
struct Queries {
    create: String,
    load: String,
    touch: String,
    delete: String,
    purge: String,
    save_head: String,
}

impl Queries {
    fn new(table: &str) -> Self {
        let t = format!("\"{table}\"");
        Self {
            create: format!(
                "INSERT INTO {t} (id, data, created_at, last_active, expires_at, expiry, version) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                 ON CONFLICT (id) DO UPDATE SET data = excluded.data, created_at = excluded.created_at, \
                 last_active = excluded.last_active, expires_at = excluded.expires_at, \
                 expiry = excluded.expiry, version = excluded.version \
                 WHERE {t}.expires_at <= ?8"
            ),
            load: format!(
                "SELECT data, created_at, last_active, expires_at, expiry, version FROM {t} \
                 WHERE id = ?1 AND expires_at > ?2"
            ),
            touch: format!(
                "UPDATE {t} SET last_active = ?1, expires_at = ?2 WHERE id = ?3 AND expires_at > ?4"
            ),
            delete: format!("DELETE FROM {t} WHERE id = ?1"),
            purge: format!("DELETE FROM {t} WHERE expires_at <= ?1"),
            save_head: format!("UPDATE {t} SET "),
        }
    }
}

/// SQLite's JSON paths end a quoted member name at the next `"`, with no
/// escape for it; a `\` starts a JSON escape. So a key's quotes, backslashes
/// and control characters are written as `\uXXXX` / `\\`.
fn path(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    out.push_str("$.\"");
    for c in key.chars() {
        match c {
            '"' => out.push_str("\\u0022"),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

const DIALECT: JsonDialect = JsonDialect {
    empty: "'{}'",
    value: "json(?)",
    path,
    removals_per_call: sql::PATHS_PER_CALL,
};

impl SqliteStore {
    /// The table name unless [`table_name`](Self::table_name) sets another.
    pub const DEFAULT_TABLE: &'static str = "sessions";

    /// A store on `pool`, in the table [`DEFAULT_TABLE`](Self::DEFAULT_TABLE).
    /// Call [`migrate`](Self::migrate) once to create the table. For an
    /// in-memory database, see the [module docs](self).
    pub fn new(pool: SqlitePool) -> Self {
        Self {
            pool,
            table: Self::DEFAULT_TABLE.into(),
            queries: Arc::new(Queries::new(Self::DEFAULT_TABLE)),
        }
    }

    /// Opens the database at `url` (`sqlite://FILE`, created if missing, in
    /// WAL mode; or `sqlite::memory:`, on a single connection that stays
    /// open) and makes a store on it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use session_layer::store::sqlite::SqliteStore;
    ///
    /// let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
    /// store.migrate().await.unwrap();
    /// # }
    /// ```
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(StoreError::backend)?
            .busy_timeout(BUSY_TIMEOUT);
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let pool = if in_memory {
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .test_before_acquire(false)
                .connect_with(options)
                .await
        } else {
            SqlitePoolOptions::new()
                .test_before_acquire(false)
                .connect_with(
                    options
                        .create_if_missing(true)
                        .journal_mode(SqliteJournalMode::Wal),
                )
                .await
        }
        .map_err(StoreError::backend)?;
        Ok(Self::new(pool))
    }

    /// Keeps sessions in table `name` instead of `sessions`; refused unless
    /// it is a plain identifier (see [`InvalidName`]).
    pub fn table_name(mut self, name: &str) -> Result<Self, InvalidName> {
        let name = sql::identifier(name)?;
        self.queries = Arc::new(Queries::new(&name));
        self.table = name.into();
        Ok(self)
    }

    /// The table the sessions are in.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The pool the store runs on.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Creates the table and its expiry index if they do not exist. Safe to
    /// run on every start.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let t = &self.table;
        let mut tx = self.pool.begin().await.map_err(StoreError::backend)?;
        sqlx::query(&format!(
            "CREATE TABLE IF NOT EXISTS \"{t}\" (\
             id BLOB PRIMARY KEY NOT NULL, \
             data TEXT NOT NULL, \
             created_at INTEGER NOT NULL, \
             last_active INTEGER NOT NULL, \
             expires_at INTEGER NOT NULL, \
             expiry TEXT, \
             version INTEGER NOT NULL\
             ) WITHOUT ROWID"
        ))
        .execute(&mut *tx)
        .await
        .map_err(StoreError::backend)?;
        sqlx::query(&format!(
            "CREATE INDEX IF NOT EXISTS \"{t}_expires_at\" ON \"{t}\" (expires_at)"
        ))
        .execute(&mut *tx)
        .await
        .map_err(StoreError::backend)?;
        tx.commit().await.map_err(StoreError::backend)
    }
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn create(&self, id: &IdHash, record: &Record) -> Result<bool, StoreError> {
        let done = sqlx::query(&self.queries.create)
            .bind(&id.as_bytes()[..])
            .bind(sql::data_text(record)?)
            .bind(record.created_at.unix_timestamp())
            .bind(record.last_active.unix_timestamp())
            .bind(record.expires_at.unix_timestamp())
            .bind(sql::expiry_text(record.expiry)?)
            .bind(i64::from(Record::FORMAT_VERSION))
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
            version: sql::column(row.try_get(5))?,
        }
        .into_record()
        .map(Some)
    }

    async fn save(&self, id: &IdHash, changes: &Changes) -> Result<bool, StoreError> {
        let mut statement = self.queries.save_head.clone();
        let edit = DIALECT.edit(changes);
        if let Some((expr, _)) = &edit {
            statement.push_str("data = ");
            statement.push_str(expr);
            statement.push_str(", ");
        }
        statement.push_str(
            "last_active = ?, expires_at = ?, expiry = ? WHERE id = ? AND expires_at > ?",
        );
        let mut query = sqlx::query(&statement);
        for value in edit.into_iter().flat_map(|(_, binds)| binds) {
            query = query.bind(value);
        }
        let done = query
            .bind(changes.last_active.unix_timestamp())
            .bind(changes.expires_at.unix_timestamp())
            .bind(sql::expiry_text(changes.expiry)?)
            .bind(&id.as_bytes()[..])
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
impl super::conformance::RawAccess for SqliteStore {
    async fn raw_dump(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT lower(hex(id)) || ' ' || CAST(data AS TEXT) || ' ' || created_at || ' ' || \
             last_active || ' ' || expires_at || ' ' || coalesce(expiry, '') || ' ' || version \
             FROM \"{}\"",
            self.table
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::backend)?;
        rows.iter()
            .map(|row| row.try_get::<String, _>(0).map_err(StoreError::backend))
            .collect()
    }

    async fn corrupt(&self, id: &IdHash) -> Result<(), StoreError> {
        // Truncated JSON, as a torn write or a hand edit could leave it.
        sqlx::query(&format!(
            "UPDATE \"{}\" SET data = '{{\"unterminated' WHERE id = ?1",
            self.table
        ))
        .bind(&id.as_bytes()[..])
        .execute(&self.pool)
        .await
        .map_err(StoreError::backend)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_quote_every_key() {
        assert_eq!(path("a"), r#"$."a""#);
        assert_eq!(path(r#"a"b\c"#), r#"$."a\u0022b\\c""#);
        assert_eq!(path("a.b[0]\n"), "$.\"a.b[0]\\u000a\"");
    }
}
