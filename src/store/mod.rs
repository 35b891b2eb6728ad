//! Where sessions live: the [`SessionStore`] trait, its [`Record`] and
//! [`Changes`], and the stores this crate ships.
//!
//! # The contract
//!
//! Every store, ours and yours, keeps these rules; the conformance suite
//! (feature `testing`, module `conformance`) checks them:
//!
//! - [`create`](SessionStore::create) inserts only if the id is absent and
//!   reports a collision as `Ok(false)`: it never overwrites another session
//!   (S3).
//! - [`load`](SessionStore::load) never returns a record whose `expires_at`
//!   has passed (S8). A record it cannot decode is an error of kind
//!   [`StoreErrorKind::Decode`](crate::StoreErrorKind::Decode): the layer
//!   treats it as absent and logs a warning (S35).
//! - [`save`](SessionStore::save) applies one request's [`Changes`] to the
//!   record *as it is in the store now*, so two requests that change different
//!   keys both keep their change (S34); on the same key the later save wins.
//!   It is update-only: if the record is gone (destroyed, rotated away,
//!   expired) it returns `Ok(false)` and writes nothing (S27).
//! - [`touch`](SessionStore::touch) moves `last_active` and `expires_at`
//!   without rewriting data; update-only as well.
//! - Keys are [`IdHash`]es, never raw ids (S5); a store namespaces them (a
//!   key prefix or its own table).
//!
//! # A store of your own
//!
//! ```
//! use std::collections::HashMap;
//! use std::sync::Mutex;
//!
//! use async_trait::async_trait;
//! use session_layer::store::{Changes, Record, SessionStore};
//! use session_layer::{IdHash, StoreError};
//! use time::OffsetDateTime;
//!
//! /// One lock around one map: simple, and fine for a few sessions.
//! #[derive(Debug, Default)]
//! struct MapStore(Mutex<HashMap<IdHash, Record>>);
//!
//! #[async_trait]
//! impl SessionStore for MapStore {
//!     async fn create(&self, id: &IdHash, record: &Record) -> Result<bool, StoreError> {
//!         let mut map = self.0.lock().unwrap();
//!         let now = OffsetDateTime::now_utc();
//!         if map.get(id).is_some_and(|r| r.expires_at > now) {
//!             return Ok(false); // a live session has this id: never overwrite it
//!         }
//!         map.insert(*id, record.clone());
//!         Ok(true)
//!     }
//!
//!     async fn load(&self, id: &IdHash) -> Result<Option<Record>, StoreError> {
//!         let now = OffsetDateTime::now_utc();
//!         Ok(self.0.lock().unwrap().get(id).filter(|r| r.expires_at > now).cloned())
//!     }
//!
//!     async fn save(&self, id: &IdHash, changes: &Changes) -> Result<bool, StoreError> {
//!         let now = OffsetDateTime::now_utc();
//!         match self.0.lock().unwrap().get_mut(id).filter(|r| r.expires_at > now) {
//!             Some(record) => {
//!                 changes.apply_to(record);
//!                 Ok(true)
//!             }
//!             None => Ok(false), // destroyed or expired: do not bring it back
//!         }
//!     }
//!
//!     async fn delete(&self, id: &IdHash) -> Result<bool, StoreError> {
//!         Ok(self.0.lock().unwrap().remove(id).is_some())
//!     }
//!
//!     async fn touch(
//!         &self,
//!         id: &IdHash,
//!         last_active: OffsetDateTime,
//!         expires_at: OffsetDateTime,
//!     ) -> Result<bool, StoreError> {
//!         let now = OffsetDateTime::now_utc();
//!         match self.0.lock().unwrap().get_mut(id).filter(|r| r.expires_at > now) {
//!             Some(record) => {
//!                 record.last_active = last_active;
//!                 record.expires_at = expires_at;
//!                 Ok(true)
//!             }
//!             None => Ok(false),
//!         }
//!     }
//!
//!     async fn purge_expired(&self) -> Result<u64, StoreError> {
//!         let now = OffsetDateTime::now_utc();
//!         let mut map = self.0.lock().unwrap();
//!         let before = map.len();
//!         map.retain(|_, r| r.expires_at > now);
//!         Ok((before - map.len()) as u64)
//!     }
//! }
//! ```

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::error::StoreError;
use crate::expiry::Expiry;
use crate::id::IdHash;

#[cfg(any(test, feature = "testing"))]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod conformance;
pub mod cookie;
#[cfg(feature = "memory-store")]
pub mod memory;
#[cfg(feature = "mysql-store")]
#[cfg_attr(docsrs, doc(cfg(feature = "mysql-store")))]
pub mod mysql;
#[cfg(feature = "postgres-store")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres-store")))]
pub mod postgres;
mod purge;
#[cfg(feature = "redis-store")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis-store")))]
pub mod redis;
#[cfg(feature = "sqlx")]
mod sql;
#[cfg(feature = "sqlite-store")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite-store")))]
pub mod sqlite;

pub use cookie::CookieStore;
pub use purge::PurgeTask;
#[cfg(feature = "sqlx")]
pub use sql::InvalidName;

/// A session's data: JSON values by key.
pub type Data = Map<String, Value>;

/// One session as a store keeps it.
///
/// Times are whole seconds in UTC. Its serde form (what stores that keep a
/// blob write) carries a format version, `"v"`; a blob of another version
/// fails to decode and counts as absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RecordRepr", into = "RecordRepr")]
pub struct Record {
    /// The values the handlers stored.
    pub data: Data,
    /// When the session was created: the absolute timeout counts from here.
    pub created_at: OffsetDateTime,
    /// The last recorded activity: the idle timeout counts from here.
    pub last_active: OffsetDateTime,
    /// When the session ends; `load` never returns a record past it.
    pub expires_at: OffsetDateTime,
    /// This session's own expiry ("remember me"), if it is not the layer's.
    pub expiry: Option<Expiry>,
}

impl Record {
    /// The format version of the serde form.
    pub const FORMAT_VERSION: u8 = 1;

    /// Whether the record has expired at `now`.
    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        self.expires_at <= now
    }
}

#[derive(Serialize, Deserialize)]
struct RecordRepr {
    v: u8,
    #[serde(rename = "d")]
    data: Data,
    #[serde(rename = "c", with = "time::serde::timestamp")]
    created_at: OffsetDateTime,
    #[serde(rename = "l", with = "time::serde::timestamp")]
    last_active: OffsetDateTime,
    #[serde(rename = "e", with = "time::serde::timestamp")]
    expires_at: OffsetDateTime,
    #[serde(rename = "x", default, skip_serializing_if = "Option::is_none")]
    expiry: Option<Expiry>,
}

impl From<Record> for RecordRepr {
    fn from(r: Record) -> Self {
        Self {
            v: Record::FORMAT_VERSION,
            data: r.data,
            created_at: r.created_at,
            last_active: r.last_active,
            expires_at: r.expires_at,
            expiry: r.expiry,
        }
    }
}

impl TryFrom<RecordRepr> for Record {
    type Error = String;

    fn try_from(r: RecordRepr) -> Result<Self, String> {
        if r.v != Record::FORMAT_VERSION {
            return Err(format!("unknown session record version {}", r.v));
        }
        Ok(Self {
            data: r.data,
            created_at: r.created_at,
            last_active: r.last_active,
            expires_at: r.expires_at,
            expiry: r.expiry,
        })
    }
}

/// What one request changed in a session: the keys it set, the keys it
/// removed, or that it cleared everything first; and the new activity and
/// expiry times.
#[derive(Debug, Clone, PartialEq)]
pub struct Changes {
    /// Remove every key before applying `set`.
    pub cleared: bool,
    /// Keys set, with their new values.
    pub set: Vec<(String, Value)>,
    /// Keys removed.
    pub removed: Vec<String>,
    /// The new last-activity time.
    pub last_active: OffsetDateTime,
    /// The new deadline.
    pub expires_at: OffsetDateTime,
    /// The session's own expiry after this request.
    pub expiry: Option<Expiry>,
}

impl Changes {
    /// Applies the changes to `record`: what a store's `save` does to the
    /// current record. Stores that keep a blob call this; stores with
    /// per-key operations (SQL JSON functions, Redis hashes) do the same in
    /// their own terms.
    pub fn apply_to(&self, record: &mut Record) {
        if self.cleared {
            record.data.clear();
        }
        for key in &self.removed {
            record.data.remove(key);
        }
        for (key, value) in &self.set {
            record.data.insert(key.clone(), value.clone());
        }
        record.last_active = self.last_active;
        record.expires_at = self.expires_at;
        record.expiry = self.expiry;
    }
}

/// An async session store. Object safe: the layer holds an
/// `Arc<dyn SessionStore>`. See the [module docs](self) for the contract
/// and a complete example.
#[async_trait]
pub trait SessionStore: fmt::Debug + Send + Sync + 'static {
    /// Inserts `record` under `id` if no live record has that id. Returns
    /// `Ok(false)` on a collision, and then writes nothing.
    async fn create(&self, id: &IdHash, record: &Record) -> Result<bool, StoreError>;

    /// The live record under `id`, or `None` (absent or expired).
    async fn load(&self, id: &IdHash) -> Result<Option<Record>, StoreError>;

    /// Applies `changes` to the live record under `id`; `Ok(false)`, and no
    /// write, if there is none.
    async fn save(&self, id: &IdHash, changes: &Changes) -> Result<bool, StoreError>;

    /// Removes the record under `id`; `Ok(true)` if there was one. Of two
    /// requests that end or rotate the same session at once, only the one
    /// that sees `true` goes on, so a logout is never undone by a
    /// concurrent sign-in (S27).
    async fn delete(&self, id: &IdHash) -> Result<bool, StoreError>;

    /// Sets `last_active` and `expires_at` of the live record under `id`
    /// without rewriting its data; `Ok(false)` if there is none.
    async fn touch(
        &self,
        id: &IdHash,
        last_active: OffsetDateTime,
        expires_at: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    /// Removes expired records and returns how many. Stores with native
    /// expiry (Redis TTL) keep the default, which does nothing.
    async fn purge_expired(&self) -> Result<u64, StoreError> {
        Ok(0)
    }
}

#[async_trait]
impl<S: SessionStore + ?Sized> SessionStore for Arc<S> {
    async fn create(&self, id: &IdHash, record: &Record) -> Result<bool, StoreError> {
        (**self).create(id, record).await
    }
    async fn load(&self, id: &IdHash) -> Result<Option<Record>, StoreError> {
        (**self).load(id).await
    }
    async fn save(&self, id: &IdHash, changes: &Changes) -> Result<bool, StoreError> {
        (**self).save(id, changes).await
    }
    async fn delete(&self, id: &IdHash) -> Result<bool, StoreError> {
        (**self).delete(id).await
    }
    async fn touch(
        &self,
        id: &IdHash,
        last_active: OffsetDateTime,
        expires_at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        (**self).touch(id, last_active, expires_at).await
    }
    async fn purge_expired(&self) -> Result<u64, StoreError> {
        (**self).purge_expired().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn record() -> Record {
        let t = datetime!(2026-01-01 00:00 UTC);
        Record {
            data: Data::from_iter([
                ("a".to_owned(), Value::from(1)),
                ("b".to_owned(), Value::from(2)),
            ]),
            created_at: t,
            last_active: t,
            expires_at: t + time::Duration::hours(1),
            expiry: None,
        }
    }

    #[test]
    fn record_serde_carries_a_version() {
        let r = record();
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.starts_with(r#"{"v":1,"#), "{json}");
        assert_eq!(serde_json::from_str::<Record>(&json).unwrap(), r);
        let future = json.replacen(r#""v":1"#, r#""v":9"#, 1);
        assert!(serde_json::from_str::<Record>(&future).is_err());
    }

    #[test]
    fn changes_apply_clear_then_remove_then_set() {
        let mut r = record();
        let t = r.created_at + time::Duration::minutes(1);
        let changes = Changes {
            cleared: false,
            set: vec![("c".into(), Value::from(3))],
            removed: vec!["a".into()],
            last_active: t,
            expires_at: t,
            expiry: None,
        };
        changes.apply_to(&mut r);
        assert_eq!(r.data.keys().collect::<Vec<_>>(), ["b", "c"]);
        assert_eq!(r.last_active, t);
        let clear = Changes {
            cleared: true,
            ..changes
        };
        clear.apply_to(&mut r);
        assert_eq!(r.data.keys().collect::<Vec<_>>(), ["c"]);
    }
}
