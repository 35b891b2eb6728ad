//! [`RedisStore`]: sessions in Redis (or a Redis Cluster), through redis-rs.
//!
//! ```no_run
//! # async fn run() -> Result<(), session_layer::StoreError> {
//! use session_layer::store::redis::RedisStore;
//!
//! let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
//! let layer = session_layer::SessionLayer::builder(store, session_layer::Key::generate());
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! One hash per session, at `<prefix><hex of the IdHash>` (prefix
//! `session:` by default; S5: the key holds the id's hash, never the id):
//!
//! | field | holds |
//! |---|---|
//! | `v` | the format version, `1`; a hash of another is undecodable |
//! | `c`, `l`, `e` | created, last active, expires: unix seconds |
//! | `x` | the session's own [`Expiry`](crate::Expiry) as JSON, if any |
//! | `d:<key>` | the value of session key `<key>`, as JSON |
//!
//! Expiry is Redis's own: every write sets `EXPIREAT` to the record's
//! `expires_at`, so Redis drops the session by itself and
//! [`purge_expired`](SessionStore::purge_expired) has nothing to do. `load`
//! also checks `e`, since a key lives until the end of its last second.
//!
//! # Atomicity and round trips
//!
//! `create`, `save` and `touch` are Lua scripts (`EVALSHA`, loaded on first
//! use): `create` writes only if no live session has the id; `save` edits
//! the fields of the hash as it is now — so two requests that change
//! different keys both keep their change — and, like `touch`, writes
//! nothing if the session is gone (destroyed, rotated, expired). `load` is
//! one `HGETALL`, `delete` one `DEL`: every call is one round trip. Each
//! script touches one key, so all of this works on a Redis Cluster too
//! ([`RedisStore::cluster`]).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Script, Value};
use time::OffsetDateTime;

use super::{Changes, Data, Record, SessionStore};
use crate::error::StoreError;
use crate::id::IdHash;

/// Sessions in Redis (feature `redis-store`), on a tokio
/// [`ConnectionManager`] (one server, reconnecting by itself) or a
/// [`ClusterConnection`] (Redis Cluster). Cloning gives another handle to
/// the same connection.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use redis::aio::{ConnectionManager, ConnectionManagerConfig};
/// use session_layer::store::redis::RedisStore;
/// use std::time::Duration;
///
/// let client = redis::Client::open("redis://127.0.0.1:6379")?;
/// let config = ConnectionManagerConfig::new().set_response_timeout(Some(Duration::from_secs(2)));
/// let manager = ConnectionManager::new_with_config(client, config).await?;
/// let store = RedisStore::new(manager).key_prefix("myapp:session:");
/// assert_eq!(store.prefix(), "myapp:session:");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    connection: Connection,
    prefix: Arc<str>,
}

/// The kinds of connection, one store type for both.
#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(cmd, offset, count),
            Self::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.connection {
            Connection::Single(_) => "single",
            Connection::Cluster(_) => "cluster",
        };
        f.debug_struct("RedisStore")
            .field("mode", &mode)
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// ARGV: now, expires_at, then field/value pairs. Returns 1 if stored (or
/// already over, so nothing to keep), 0 if a live session has the key.
static CREATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local now = tonumber(ARGV[1])
local kind = redis.call('TYPE', KEYS[1]).ok
if kind ~= 'none' then
  if kind ~= 'hash' then return 0 end
  local e = tonumber(redis.call('HGET', KEYS[1], 'e'))
  -- A live session, or one we cannot read: never overwrite it.
  if e == nil or e > now then return 0 end
  redis.call('DEL', KEYS[1])
end
if tonumber(ARGV[2]) <= now then return 1 end
for i = 3, #ARGV, 100 do
  redis.call('HSET', KEYS[1], unpack(ARGV, i, math.min(i + 99, #ARGV)))
end
redis.call('EXPIREAT', KEYS[1], ARGV[2])
return 1
",
    )
});

/// ARGV: now, expires_at, last_active, expiry JSON ('' for none), cleared
/// ('1'/'0'), n, n removed fields, then field/value pairs to set. Returns 1
/// if applied, 0 (and writes nothing) if there is no live session.
static SAVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local now = tonumber(ARGV[1])
if redis.call('TYPE', KEYS[1]).ok ~= 'hash' then return 0 end
local e = tonumber(redis.call('HGET', KEYS[1], 'e'))
if e == nil or e <= now then return 0 end
if ARGV[5] == '1' then
  for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
    if string.sub(f, 1, 2) == 'd:' then redis.call('HDEL', KEYS[1], f) end
  end
end
local last_removed = 6 + tonumber(ARGV[6])
for i = 7, last_removed, 100 do
  redis.call('HDEL', KEYS[1], unpack(ARGV, i, math.min(i + 99, last_removed)))
end
for i = last_removed + 1, #ARGV, 100 do
  redis.call('HSET', KEYS[1], unpack(ARGV, i, math.min(i + 99, #ARGV)))
end
redis.call('HSET', KEYS[1], 'l', ARGV[3], 'e', ARGV[2])
if ARGV[4] == '' then
  redis.call('HDEL', KEYS[1], 'x')
else
  redis.call('HSET', KEYS[1], 'x', ARGV[4])
end
redis.call('EXPIREAT', KEYS[1], ARGV[2])
return 1
",
    )
});

/// ARGV: now, last_active, expires_at. Returns 1 if applied, 0 if there is
/// no live session.
static TOUCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local now = tonumber(ARGV[1])
if redis.call('TYPE', KEYS[1]).ok ~= 'hash' then return 0 end
local e = tonumber(redis.call('HGET', KEYS[1], 'e'))
if e == nil or e <= now then return 0 end
redis.call('HSET', KEYS[1], 'l', ARGV[2], 'e', ARGV[3])
redis.call('EXPIREAT', KEYS[1], ARGV[3])
return 1
",
    )
});

/// The prefix of a data field; meta fields are one letter, so they never
/// clash with a session key.
const DATA: &str = "d:";

impl RedisStore {
    /// The key prefix unless [`key_prefix`](Self::key_prefix) sets another.
    pub const DEFAULT_PREFIX: &'static str = "session:";

    /// A store on one Redis server through `manager`, which reconnects by
    /// itself. Its [`ConnectionManagerConfig`](redis::aio::ConnectionManagerConfig)
    /// decides connection and response timeouts; the layer's store timeout
    /// bounds every call anyway.
    pub fn new(manager: ConnectionManager) -> Self {
        Self {
            connection: Connection::Single(manager),
            prefix: Self::DEFAULT_PREFIX.into(),
        }
    }

    /// A store on a Redis Cluster. Each session is one key, so it lives on
    /// one node and every script runs there.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use session_layer::store::redis::RedisStore;
    ///
    /// let client = redis::cluster::ClusterClient::new(vec!["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"])?;
    /// let store = RedisStore::cluster(client.get_async_connection().await?);
    /// # Ok(()) }
    /// ```
    pub fn cluster(connection: ClusterConnection) -> Self {
        Self {
            connection: Connection::Cluster(connection),
            prefix: Self::DEFAULT_PREFIX.into(),
        }
    }

    /// Connects to the server at `url` (`redis://[user:password@]host[:port][/db]`,
    /// or `rediss://` with redis-rs's TLS features) with a connection
    /// manager, and fails if the server cannot be reached now. To start
    /// while Redis is down, make the manager with
    /// [`ConnectionManager::new_lazy_with_config`] and use [`RedisStore::new`].
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(StoreError::backend)?;
        let manager = ConnectionManager::new(client)
            .await
            .map_err(StoreError::backend)?;
        Ok(Self::new(manager))
    }

    /// Connects to the Redis Cluster that `nodes` (one or more `redis://`
    /// URLs of its nodes) belong to.
    pub async fn connect_cluster(nodes: &[&str]) -> Result<Self, StoreError> {
        let client =
            redis::cluster::ClusterClient::new(nodes.to_vec()).map_err(StoreError::backend)?;
        let connection = client
            .get_async_connection()
            .await
            .map_err(StoreError::backend)?;
        Ok(Self::cluster(connection))
    }

    /// Keeps sessions under keys that start with `prefix` instead of
    /// `session:`: give each app, or each test run, its own.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into().into();
        self
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn key(&self, id: &IdHash) -> String {
        format!("{}{}", self.prefix, id.to_hex())
    }

    async fn run<T: redis::FromRedisValue>(&self, cmd: &Cmd) -> Result<T, StoreError> {
        let mut connection = self.connection.clone();
        cmd.query_async(&mut connection).await.map_err(error)
    }
}

/// A key of another type under our name is a record we cannot decode.
fn error(e: RedisError) -> StoreError {
    if e.code() == Some("WRONGTYPE") {
        StoreError::decode(e)
    } else {
        StoreError::backend(e)
    }
}

fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

fn json(value: &impl serde::Serialize) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(StoreError::backend)
}

/// The record in the hash `fields`, `None` if there is none or it is over.
fn decode(mut fields: HashMap<Vec<u8>, Vec<u8>>, now: i64) -> Result<Option<Record>, StoreError> {
    if fields.is_empty() {
        return Ok(None);
    }
    let mut text = |name: &str| -> Result<Option<String>, StoreError> {
        fields
            .remove(name.as_bytes())
            .map(|v| String::from_utf8(v).map_err(StoreError::decode))
            .transpose()
    };
    let mut time = |name: &str| -> Result<OffsetDateTime, StoreError> {
        let t = text(name)?
            .ok_or_else(|| StoreError::decode(format!("session field `{name}` is missing")))?;
        let t = t.parse::<i64>().map_err(StoreError::decode)?;
        OffsetDateTime::from_unix_timestamp(t).map_err(StoreError::decode)
    };
    let expires_at = time("e")?;
    if expires_at.unix_timestamp() <= now {
        return Ok(None);
    }
    let created_at = time("c")?;
    let last_active = time("l")?;
    let version = text("v")?;
    if version.as_deref() != Some("1") {
        return Err(StoreError::decode(format!(
            "unknown session record version {version:?}"
        )));
    }
    let expiry = text("x")?
        .map(|x| serde_json::from_str(&x).map_err(StoreError::decode))
        .transpose()?;
    let mut data = Data::new();
    for (field, value) in fields {
        let Some(key) = field.strip_prefix(DATA.as_bytes()) else {
            continue; // a meta field of a later version
        };
        let key = String::from_utf8(key.to_vec()).map_err(StoreError::decode)?;
        let value = serde_json::from_slice(&value).map_err(StoreError::decode)?;
        data.insert(key, value);
    }
    Ok(Some(Record {
        data,
        created_at,
        last_active,
        expires_at,
        expiry,
    }))
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn create(&self, id: &IdHash, record: &Record) -> Result<bool, StoreError> {
        let mut call = CREATE.key(self.key(id));
        call.arg(now())
            .arg(record.expires_at.unix_timestamp())
            .arg("v")
            .arg(Record::FORMAT_VERSION)
            .arg("c")
            .arg(record.created_at.unix_timestamp())
            .arg("l")
            .arg(record.last_active.unix_timestamp())
            .arg("e")
            .arg(record.expires_at.unix_timestamp());
        if let Some(expiry) = &record.expiry {
            call.arg("x").arg(json(expiry)?);
        }
        for (key, value) in &record.data {
            call.arg(format!("{DATA}{key}")).arg(json(value)?);
        }
        let mut connection = self.connection.clone();
        let created: i64 = call.invoke_async(&mut connection).await.map_err(error)?;
        Ok(created == 1)
    }

    async fn load(&self, id: &IdHash) -> Result<Option<Record>, StoreError> {
        let fields = self.run(redis::cmd("HGETALL").arg(self.key(id))).await?;
        decode(fields, now())
    }

    async fn save(&self, id: &IdHash, changes: &Changes) -> Result<bool, StoreError> {
        let mut call = SAVE.key(self.key(id));
        call.arg(now())
            .arg(changes.expires_at.unix_timestamp())
            .arg(changes.last_active.unix_timestamp())
            .arg(
                changes
                    .expiry
                    .as_ref()
                    .map(json)
                    .transpose()?
                    .unwrap_or_default(),
            )
            .arg(if changes.cleared { "1" } else { "0" })
            .arg(changes.removed.len());
        for key in &changes.removed {
            call.arg(format!("{DATA}{key}"));
        }
        for (key, value) in &changes.set {
            call.arg(format!("{DATA}{key}")).arg(json(value)?);
        }
        let mut connection = self.connection.clone();
        let saved: i64 = call.invoke_async(&mut connection).await.map_err(error)?;
        Ok(saved == 1)
    }

    async fn delete(&self, id: &IdHash) -> Result<bool, StoreError> {
        Ok(self.run::<u64>(redis::cmd("DEL").arg(self.key(id))).await? > 0)
    }

    async fn touch(
        &self,
        id: &IdHash,
        last_active: OffsetDateTime,
        expires_at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut call = TOUCH.key(self.key(id));
        call.arg(now())
            .arg(last_active.unix_timestamp())
            .arg(expires_at.unix_timestamp());
        let mut connection = self.connection.clone();
        let touched: i64 = call.invoke_async(&mut connection).await.map_err(error)?;
        Ok(touched == 1)
    }
}

#[cfg(any(test, feature = "testing"))]
impl RedisStore {
    /// Every key under the prefix. `KEYS`, which walks the whole keyspace:
    /// fine for a test server, never for production.
    async fn keys(&self) -> Result<Vec<String>, StoreError> {
        let pattern: String = self
            .prefix
            .chars()
            .flat_map(|c| {
                let escape = matches!(c, '*' | '?' | '[' | ']' | '\\');
                escape.then_some('\\').into_iter().chain([c])
            })
            .chain(['*'])
            .collect();
        self.run(redis::cmd("KEYS").arg(pattern)).await
    }
}

#[cfg(any(test, feature = "testing"))]
#[async_trait]
impl super::conformance::RawAccess for RedisStore {
    async fn raw_dump(&self) -> Result<Vec<String>, StoreError> {
        let mut dump = Vec::new();
        for key in self.keys().await? {
            let kind: String = self.run(redis::cmd("TYPE").arg(&key)).await?;
            let content = match kind.as_str() {
                "hash" => {
                    let fields: HashMap<Vec<u8>, Vec<u8>> =
                        self.run(redis::cmd("HGETALL").arg(&key)).await?;
                    fields
                        .iter()
                        .map(|(f, v)| {
                            format!(
                                "{}={}",
                                String::from_utf8_lossy(f),
                                String::from_utf8_lossy(v)
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(" ")
                }
                "string" => {
                    let value: Vec<u8> = self.run(redis::cmd("GET").arg(&key)).await?;
                    String::from_utf8_lossy(&value).into_owned()
                }
                other => format!("<{other}>"),
            };
            dump.push(format!("{key} {content}"));
        }
        Ok(dump)
    }

    async fn corrupt(&self, id: &IdHash) -> Result<(), StoreError> {
        // A data field that is not JSON; the meta fields stay live.
        self.run(
            redis::cmd("HSET")
                .arg(self.key(id))
                .arg(format!("{DATA}corrupt"))
                .arg("{\"unterminated"),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreErrorKind;

    fn fields(pairs: &[(&str, &str)]) -> HashMap<Vec<u8>, Vec<u8>> {
        pairs
            .iter()
            .map(|(f, v)| (f.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    const LIVE: &[(&str, &str)] = &[
        ("v", "1"),
        ("c", "100"),
        ("l", "150"),
        ("e", "1000"),
        ("d:a", "1"),
        ("d:", "\"empty key\""),
        ("d:d:x", "[true]"),
    ];

    #[test]
    fn a_hash_decodes_to_its_record() {
        let record = decode(fields(LIVE), 500).unwrap().unwrap();
        assert_eq!(record.created_at.unix_timestamp(), 100);
        assert_eq!(record.last_active.unix_timestamp(), 150);
        assert_eq!(record.data["a"], 1);
        assert_eq!(record.data[""], "empty key");
        assert_eq!(record.data["d:x"], serde_json::json!([true]));
        assert_eq!(record.expiry, None);
        // At or past `e` it is over, whatever Redis's TTL still says.
        assert_eq!(decode(fields(LIVE), 1000).unwrap(), None);
        assert_eq!(decode(HashMap::new(), 500).unwrap(), None);
    }

    #[test]
    fn a_bad_hash_is_a_decode_error() {
        let with = |name: &str, value: &str| {
            let mut f = fields(LIVE);
            f.insert(name.as_bytes().to_vec(), value.as_bytes().to_vec());
            f
        };
        let without = |name: &str| {
            let mut f = fields(LIVE);
            f.remove(name.as_bytes());
            f
        };
        for bad in [
            with("v", "2"),
            without("v"),
            with("c", "yesterday"),
            without("e"),
            with("x", "{"),
            with("d:a", "{not json"),
            with("d:a", "\u{1}"),
        ] {
            assert_eq!(decode(bad, 500).unwrap_err().kind(), StoreErrorKind::Decode);
        }
        let mut not_utf8 = fields(LIVE);
        not_utf8.insert(b"d:\xff".to_vec(), b"1".to_vec());
        assert_eq!(
            decode(not_utf8, 500).unwrap_err().kind(),
            StoreErrorKind::Decode
        );
    }
}
