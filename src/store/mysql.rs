//! [`MySqlStore`]: sessions in a MySQL or MariaDB table, through sqlx.
//!
//! ```no_run
//! # async fn run() -> Result<(), session_layer::StoreError> {
//! use session_layer::store::mysql::MySqlStore;
//!
//! let store = MySqlStore::connect("mysql://app@localhost/app").await?;
//! store.migrate().await?;
//! let layer = session_layer::SessionLayer::builder(store, session_layer::Key::generate());
//! # Ok(()) }
//! ```
//!
//! # The table
//!
//! [`migrate`](MySqlStore::migrate) creates it (name configurable, default
//! `sessions`, in the connection's database), one row per session:
//!
//! | column | type | holds |
//! |---|---|---|
//! | `id` | `BINARY(32)` primary key | the 32 bytes of the [`IdHash`] (S5: never the id) |
//! | `data` | `JSON` | the session's values, one object |
//! | `created_at`, `last_active` | `BIGINT` | unix seconds |
//! | `expires_at` | `BIGINT`, indexed | unix seconds; rows at or past it never load |
//! | `expiry` | `TEXT`, nullable | the session's own [`Expiry`](crate::Expiry), JSON |
//! | `version` | `SMALLINT` | the format version, 1; rows of another are undecodable |
//!
//! On MariaDB, `JSON` is `LONGTEXT` with a validity check and a binary
//! collation; the JSON functions used (`JSON_SET`, `JSON_REMOVE`,
//! `JSON_EXTRACT`, `JSON_OBJECT`) exist in both engines, so one store serves
//! both. `save` is one `UPDATE` that edits the current row's `data` key by
//! key, so two requests that change different keys both keep their change;
//! `save` and `touch` only update a live row. Expired rows stay until
//! purged: run a [`PurgeTask`](super::PurgeTask).
//!
//! ```no_run
//! # async fn run(store: session_layer::MySqlStore) {
//! let purge = session_layer::store::PurgeTask::spawn(store.clone(), std::time::Duration::from_secs(300));
//! # }
//! ```
//!
//! # Round trips
//!
//! Each call but a colliding `create` is one statement: one round trip on
//! the request's path once sqlx has prepared it on that connection, with a
//! pool that does not ping before each acquire ([`MySqlStore::connect`]
//! makes one; sqlx's default pings). sqlx 0.8 also pings each connection as
//! it goes back to the pool, after the call has returned.

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::mysql::{MySqlPool, MySqlPoolOptions};
use sqlx::types::Json;
use sqlx::Row as _;
use time::OffsetDateTime;

use super::sql::{self, InvalidName, JsonDialect, Row};
use super::{Changes, Record, SessionStore};
use crate::error::StoreError;
use crate::id::IdHash;

/// Sessions in a MySQL or MariaDB table (feature `mysql-store`). Cloning
/// gives another handle to the same pool and table.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use session_layer::store::mysql::MySqlStore;
/// use sqlx::mysql::MySqlPoolOptions;
///
/// let pool = MySqlPoolOptions::new()
///     .test_before_acquire(false)
///     .connect("mysql://app@localhost/app")
///     .await?;
/// let store = MySqlStore::new(pool).table_name("web_sessions")?;
/// store.migrate().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct MySqlStore {
    pool: MySqlPool,
    table: Arc<str>,
    queries: Arc<Queries>,
}

/// The statements that do not depend on the changes, formatted once.
#[derive(Debug)]
struct Queries {
    insert: String,
    delete_expired: String,
    load: String,
    touch: String,
    delete: String,
    purge: String,
    save_head: String,
}

impl Queries {
    fn new(table: &str) -> Self {
        let t = format!("`{table}`");
        Self {
            insert: format!(
                "INSERT INTO {t} (id, data, created_at, last_active, expires_at, expiry, version) \
                 VALUES (?, ?, ?, ?, ?, ?, ?)"
            ),
            delete_expired: format!("DELETE FROM {t} WHERE id = ? AND expires_at <= ?"),
            load: format!(
                "SELECT data, created_at, last_active, expires_at, expiry, version FROM {t} \
                 WHERE id = ? AND expires_at > ?"
            ),
            touch: format!(
                "UPDATE {t} SET last_active = ?, expires_at = ? WHERE id = ? AND expires_at > ?"
            ),
            delete: format!("DELETE FROM {t} WHERE id = ?"),
            purge: format!("DELETE FROM {t} WHERE expires_at <= ?"),
            save_head: format!("UPDATE {t} SET "),
        }
    }
}

/// A JSON path names a member with a double-quoted JSON string. Every ASCII
/// character but letters, digits and `_` is written as a `\uXXXX` escape:
/// MariaDB's path parser trips over some of them even inside quotes (a key
/// starting with `-` reads as a negative array index), and both engines
/// compare member names after unescaping.
fn path(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    out.push_str("$.\"");
    for c in key.chars() {
        if c.is_ascii_alphanumeric() || c == '_' || !c.is_ascii() {
            out.push(c);
        } else {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        }
    }
    out.push('"');
    out
}

const DIALECT: JsonDialect = JsonDialect {
    empty: "JSON_OBJECT()",
    // MariaDB has no `CAST(? AS JSON)`; `JSON_EXTRACT` of the whole document
    // is JSON in both engines, so `JSON_SET` stores it as a value, not a string.
    value: "JSON_EXTRACT(?, '$')",
    path,
    // MariaDB 10.11's `JSON_REMOVE` with several paths can miss a member
    // with a 4-byte character (an emoji) after an escaped path; one path
    // per call, nested, does not.
    removals_per_call: 1,
};

impl MySqlStore {
    /// The table name unless [`table_name`](Self::table_name) sets another.
    pub const DEFAULT_TABLE: &'static str = "sessions";

    /// A store on `pool`, in the table [`DEFAULT_TABLE`](Self::DEFAULT_TABLE)
    /// of the connection's database. Call [`migrate`](Self::migrate) once to
    /// create the table.
    pub fn new(pool: MySqlPool) -> Self {
        Self {
            pool,
            table: Self::DEFAULT_TABLE.into(),
            queries: Arc::new(Queries::new(Self::DEFAULT_TABLE)),
        }
    }

    /// Connects a pool to `url` (one that does not ping before each use, so
    /// a call is one round trip) and makes a store on it.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = MySqlPoolOptions::new()
            .test_before_acquire(false)
            .connect(url)
            .await
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
    pub fn pool(&self) -> &MySqlPool {
        &self.pool
    }

    /// Creates the table, with its expiry index, if it does not exist. Safe
    /// to run on every start.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let t = &self.table;
        sqlx::query(&format!(
            "CREATE TABLE IF NOT EXISTS `{t}` (\
             id BINARY(32) NOT NULL PRIMARY KEY, \
             data JSON NOT NULL, \
             created_at BIGINT NOT NULL, \
             last_active BIGINT NOT NULL, \
             expires_at BIGINT NOT NULL, \
             expiry TEXT NULL, \
             version SMALLINT NOT NULL, \
             INDEX `{t}_expires_at` (expires_at)\
             ) DEFAULT CHARSET = utf8mb4"
        ))
        .execute(&self.pool)
        .await
        .map_err(StoreError::backend)?;
        Ok(())
    }

    async fn insert(&self, id: &IdHash, record: &Record) -> Result<bool, StoreError> {
        let inserted = sqlx::query(&self.queries.insert)
            .bind(&id.as_bytes()[..])
            .bind(sql::data_text(record)?)
            .bind(record.created_at.unix_timestamp())
            .bind(record.last_active.unix_timestamp())
            .bind(record.expires_at.unix_timestamp())
            .bind(sql::expiry_text(record.expiry)?)
            .bind(i16::from(Record::FORMAT_VERSION))
            .execute(&self.pool)
            .await;
        match inserted {
            Ok(_) => Ok(true),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(false),
            Err(e) => Err(StoreError::backend(e)),
        }
    }
}

#[async_trait]
impl SessionStore for MySqlStore {
    async fn create(&self, id: &IdHash, record: &Record) -> Result<bool, StoreError> {
        // Not `INSERT IGNORE`, which also turns bad data into warnings; and
        // `ON DUPLICATE KEY UPDATE` cannot tell "inserted" from "kept the
        // live row" under sqlx's found-rows counting. Ids are random, so the
        // second and third statements only run on a (rare) expired leftover.
        if self.insert(id, record).await? {
            return Ok(true);
        }
        let removed = sqlx::query(&self.queries.delete_expired)
            .bind(&id.as_bytes()[..])
            .bind(sql::now())
            .execute(&self.pool)
            .await
            .map_err(StoreError::backend)?;
        if removed.rows_affected() == 0 {
            return Ok(false); // a live session has this id
        }
        self.insert(id, record).await
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
        // sqlx asks for found rows, so a save that changes nothing still
        // counts its row.
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
impl super::conformance::RawAccess for MySqlStore {
    async fn raw_dump(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT CONCAT_WS(' ', LOWER(HEX(id)), CAST(data AS CHAR), created_at, last_active, \
             expires_at, COALESCE(expiry, ''), version) FROM `{}`",
            self.table
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::backend)?;
        rows.iter()
            .map(|row| {
                // CONCAT_WS over a binary column may come back as bytes.
                row.try_get::<String, _>(0)
                    .or_else(|_| {
                        row.try_get::<Vec<u8>, _>(0)
                            .map(|b| String::from_utf8_lossy(&b).into_owned())
                    })
                    .map_err(StoreError::backend)
            })
            .collect()
    }

    async fn corrupt(&self, id: &IdHash) -> Result<(), StoreError> {
        // The column only takes valid JSON, so: JSON that is not an object.
        sqlx::query(&format!(
            "UPDATE `{}` SET data = '[\"not\", \"an object\"]' WHERE id = ?",
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
    fn paths_are_json_strings() {
        assert_eq!(path("a_Z9"), r#"$."a_Z9""#);
        assert_eq!(path("--"), r#"$."\u002d\u002d""#);
        assert_eq!(path("a\"b\\c\n"), r#"$."a\u0022b\u005cc\u000a""#);
        assert_eq!(path("é🦀"), r#"$."é🦀""#);
    }
}
