//! What the SQL stores share: checked table and schema names, and turning a
//! row back into a [`Record`].
//!
//! Every SQL store keeps one row per session with the same columns:
//!
//! | column | holds |
//! |---|---|
//! | `id` | the 32 bytes of the [`IdHash`](crate::IdHash) (primary key) |
//! | `data` | the session's values, one JSON object |
//! | `created_at`, `last_active` | unix seconds |
//! | `expires_at` | unix seconds, indexed: `load` filters and purges on it |
//! | `expiry` | the session's own [`Expiry`] as JSON text, or `NULL` |
//! | `version` | [`Record::FORMAT_VERSION`]; a row of another version is undecodable |
//!
//! Times are whole seconds, as [`Record`] keeps them, so they round-trip
//! exactly and compare the same way in every engine.

use std::error::Error as StdError;
use std::fmt;

use serde_json::Value;
use time::OffsetDateTime;

use super::Record;
use crate::error::StoreError;
use crate::expiry::Expiry;

/// Longest table or schema name accepted: PostgreSQL cuts names at 63
/// bytes, and the index name appends `_expires_at`.
const MAX_NAME_LEN: usize = 48;

/// A table or schema name that is not a plain SQL identifier.
///
/// Names are spliced into SQL text (they cannot be bound parameters), so
/// only ASCII letters, digits and `_`, not starting with a digit, at most 48
/// bytes, are accepted: nothing that could close a quote.
///
/// ```
/// # #[cfg(feature = "sqlite-store")] {
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use session_layer::store::sqlite::SqliteStore;
///
/// let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
/// let err = store.table_name("sessions; DROP TABLE users").unwrap_err();
/// assert_eq!(err.to_string(), "`sessions; DROP TABLE users` is not a valid table or schema name: use ASCII letters, digits and `_`, not starting with a digit, at most 48 bytes");
/// # }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidName {
    name: String,
}

impl InvalidName {
    /// The name that was refused.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for InvalidName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is not a valid table or schema name: use ASCII letters, digits and `_`, not starting with a digit, at most {MAX_NAME_LEN} bytes",
            self.name
        )
    }
}

impl StdError for InvalidName {}

/// Checks that `name` is a plain identifier (see [`InvalidName`]).
pub(crate) fn identifier(name: &str) -> Result<String, InvalidName> {
    let mut chars = name.chars();
    let plain = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= MAX_NAME_LEN;
    if plain {
        Ok(name.to_owned())
    } else {
        Err(InvalidName {
            name: name.to_owned(),
        })
    }
}

/// Now, in whole seconds: what `load`, `save` and `purge` compare
/// `expires_at` with.
pub(crate) fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// The `expiry` column's text for `expiry`.
pub(crate) fn expiry_text(expiry: Option<Expiry>) -> Result<Option<String>, StoreError> {
    expiry
        .map(|e| serde_json::to_string(&e).map_err(StoreError::backend))
        .transpose()
}

/// The session's values as the `data` column's JSON text.
pub(crate) fn data_text(record: &Record) -> Result<String, StoreError> {
    serde_json::to_string(&record.data).map_err(StoreError::backend)
}

/// One row's columns, as read; [`Row::into_record`] checks them.
pub(crate) struct Row {
    pub(crate) data: Value,
    pub(crate) created_at: i64,
    pub(crate) last_active: i64,
    pub(crate) expires_at: i64,
    pub(crate) expiry: Option<String>,
    pub(crate) version: i64,
}

impl Row {
    /// The record, or a [`StoreErrorKind::Decode`](crate::StoreErrorKind::Decode)
    /// error if any column holds what this version never writes.
    pub(crate) fn into_record(self) -> Result<Record, StoreError> {
        if self.version != i64::from(Record::FORMAT_VERSION) {
            return Err(StoreError::decode(format!(
                "unknown session record version {}",
                self.version
            )));
        }
        let Value::Object(data) = self.data else {
            return Err(StoreError::decode("session data is not a JSON object"));
        };
        let time = |t| OffsetDateTime::from_unix_timestamp(t).map_err(StoreError::decode);
        Ok(Record {
            data,
            created_at: time(self.created_at)?,
            last_active: time(self.last_active)?,
            expires_at: time(self.expires_at)?,
            expiry: self
                .expiry
                .map(|e| serde_json::from_str(&e).map_err(StoreError::decode))
                .transpose()?,
        })
    }
}

/// How one engine spells per-key JSON edits: SQLite and MySQL/MariaDB both
/// have `json_remove`/`json_set` with one path per key, and differ in how a
/// key is quoted in a path and how a bound value is read as JSON.
#[cfg(any(feature = "sqlite-store", feature = "mysql-store"))]
pub(crate) struct JsonDialect {
    /// `data` with every key removed.
    pub(crate) empty: &'static str,
    /// A bound JSON text read as a JSON value, e.g. `json(?)`.
    pub(crate) value: &'static str,
    /// The path of an object member named `key`.
    pub(crate) path: fn(&str) -> String,
    /// Most paths per `json_remove` call.
    pub(crate) removals_per_call: usize,
}

/// Most pairs per `json_set` call, and paths per `json_remove` call: SQLite
/// caps a function at 127 arguments. Longer lists nest calls.
#[cfg(any(feature = "sqlite-store", feature = "mysql-store"))]
pub(crate) const PATHS_PER_CALL: usize = 60;

#[cfg(any(feature = "sqlite-store", feature = "mysql-store"))]
impl JsonDialect {
    /// The SQL expression for the session's new `data`, applied to the
    /// current row in one statement, and the values to bind to its
    /// placeholders, in order; `None` when `changes` leaves the data alone.
    pub(crate) fn edit(&self, changes: &super::Changes) -> Option<(String, Vec<String>)> {
        if !changes.cleared && changes.set.is_empty() && changes.removed.is_empty() {
            return None;
        }
        let mut expr = if changes.cleared { self.empty } else { "data" }.to_owned();
        let mut binds = Vec::with_capacity(changes.removed.len() + 2 * changes.set.len());
        // Inner calls come first in the SQL text, so they bind first.
        for chunk in changes.removed.chunks(self.removals_per_call) {
            expr = format!("json_remove({expr}{})", ", ?".repeat(chunk.len()));
            binds.extend(chunk.iter().map(|key| (self.path)(key)));
        }
        let pair = format!(", ?, {}", self.value);
        for chunk in changes.set.chunks(PATHS_PER_CALL / 2) {
            expr = format!("json_set({expr}{})", pair.repeat(chunk.len()));
            for (key, value) in chunk {
                binds.push((self.path)(key));
                binds.push(value.to_string());
            }
        }
        Some((expr, binds))
    }
}

/// A column that could not be read counts as an undecodable record.
pub(crate) fn column<T>(value: Result<T, sqlx::Error>) -> Result<T, StoreError> {
    value.map_err(StoreError::decode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreErrorKind;

    #[test]
    fn only_plain_identifiers_are_names() {
        for ok in ["sessions", "_s", "Sessions_2", &"a".repeat(48)] {
            assert_eq!(identifier(ok).as_deref(), Ok(ok));
        }
        for bad in [
            "",
            "1sessions",
            "sessions;",
            "a\"b",
            "a`b",
            "a b",
            "a.b",
            "sessiöns",
            &"a".repeat(49),
        ] {
            assert_eq!(identifier(bad).unwrap_err().name(), bad);
        }
    }

    fn row() -> Row {
        Row {
            data: serde_json::json!({"a": 1}),
            created_at: 1_700_000_000,
            last_active: 1_700_000_001,
            expires_at: 1_700_000_002,
            expiry: Some(r#"{"i":60,"p":true}"#.into()),
            version: 1,
        }
    }

    #[test]
    fn a_row_decodes_and_bad_columns_are_decode_errors() {
        let record = row().into_record().unwrap();
        assert_eq!(record.data["a"], 1);
        assert_eq!(
            record.expiry,
            Some(Expiry::idle(time::Duration::seconds(60)))
        );
        assert_eq!(record.expires_at.unix_timestamp(), 1_700_000_002);

        let bad = [
            Row {
                version: 2,
                ..row()
            },
            Row {
                data: serde_json::json!([1]),
                ..row()
            },
            Row {
                expiry: Some("{".into()),
                ..row()
            },
            Row {
                created_at: i64::MAX,
                ..row()
            },
        ];
        for row in bad {
            assert_eq!(
                row.into_record().unwrap_err().kind(),
                StoreErrorKind::Decode
            );
        }
    }
}
