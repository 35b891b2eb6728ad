//! [`MemoryStore`]: sessions in this process's memory.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::packed::{self, Writer};
use crate::values::{LoadedRecord, Values};
use async_trait::async_trait;
use time::OffsetDateTime;

use super::{Changes, Record, SessionStore};
use crate::clock::{Clock, SystemClock};
use crate::error::StoreError;
use crate::expiry::Expiry;
use crate::id::IdHash;

/// Shards, each with its own lock: a request locks 1/64 of the table, and a
/// shard's rehash while the table grows moves 1/64 of the entries.
const SHARDS: usize = 64;
/// How often (seconds) a write sweeps expired entries out of its shard.
const SWEEP_EVERY: i64 = 60;

/// Sessions in memory, for one process: development, tests, and apps that
/// run as a single instance. Sessions are lost on restart.
///
/// Sharded (no global lock), compact (a small session costs about 150
/// bytes: see BENCHMARKS.md), and it removes expired sessions by itself:
/// each write sweeps its shard at most once a minute, and
/// [`purge_expired`](SessionStore::purge_expired) sweeps everything.
/// Cloning gives another handle to the same sessions.
///
/// It never waits, so a [`SessionLayer`](crate::SessionLayer) on it runs
/// the session path in place (no boxed future) and calls its methods
/// directly; wrapped in another store (or an `Arc`), it goes through the
/// trait like any store, with the same behaviour, a little slower.
///
/// ```
/// use session_layer::{Key, MemoryStore, SessionLayer};
///
/// let layer = SessionLayer::builder(MemoryStore::new(), Key::generate()).build().unwrap();
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

/// Shows no entries: a derived `Debug` would print every session's data
/// (and lock every shard) wherever a layer or app state is logged.
impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("shards", &self.inner.shards.len())
            .field("clock", &self.inner.clock)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Inner {
    shards: Box<[Mutex<Shard>]>,
    clock: Arc<dyn Clock>,
    /// `clock` is the [`SystemClock`]: a layer on the system clock may
    /// hand in its own reading of it (one clock read per request).
    system_clock: bool,
}

#[derive(Debug, Default)]
struct Shard {
    entries: HashMap<[u8; 32], Entry, BuildHasherDefault<PrehashedHasher>>,
    next_sweep: i64,
}

/// One session, compact: times as unix seconds, data packed (see
/// `packed`).
#[derive(Debug)]
struct Entry {
    created_at: i64,
    last_active: i64,
    expires_at: i64,
    expiry: Option<Box<Expiry>>,
    /// Shared with the requests that loaded it: a load copies no data.
    data: Arc<str>,
}

impl MemoryStore {
    /// An empty store on the system clock.
    pub fn new() -> Self {
        Self::with_clock(SystemClock)
    }

    /// An empty store that reads the time from `clock` (tests share one
    /// [`ManualClock`](crate::clock::ManualClock) with the layer).
    pub fn with_clock<C: Clock>(clock: C) -> Self {
        Self {
            inner: Arc::new(Inner {
                shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
                system_clock: crate::clock::is_system_clock::<C>(),
                clock: Arc::new(clock),
            }),
        }
    }

    /// The number of sessions held, expired ones not yet swept included.
    pub fn len(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|s| lock(s).entries.len())
            .sum()
    }

    /// Whether the store holds no session.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard(&self, id: &IdHash) -> MutexGuard<'_, Shard> {
        // The hasher reads the first bytes of the hash; the shard, the last.
        lock(&self.inner.shards[usize::from(id.as_bytes()[31]) % SHARDS])
    }

    /// Now, as unix seconds, for the `*_at` methods: `layer_now` if the
    /// layer that asks is on the system clock too, else this store's clock.
    pub(crate) fn now_for(&self, layer_now: Option<i64>) -> i64 {
        match layer_now {
            Some(now) if self.inner.system_clock => now,
            _ => self.now(),
        }
    }

    fn now(&self) -> i64 {
        crate::clock::now_seconds(&*self.inner.clock, self.inner.system_clock)
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

/// A poisoned shard only means a panic elsewhere while it was held; entries
/// are replaced whole, so the data is still consistent.
fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shard {
    fn live(&mut self, id: &IdHash, now: i64) -> Option<&mut Entry> {
        self.entries
            .get_mut(id.as_bytes())
            .filter(|e| e.expires_at > now)
    }

    fn sweep_if_due(&mut self, now: i64) {
        if now >= self.next_sweep {
            self.entries.retain(|_, e| e.expires_at > now);
            self.next_sweep = now + SWEEP_EVERY;
        }
    }
}

/// The stored data with `changes` applied, written straight from the
/// stored text: members the request did not touch are copied as they are,
/// without decoding their values (S34: the record as it is now).
fn merge(stored: &str, changes: &Changes) -> Result<Arc<str>, StoreError> {
    // For a save of many keys, a set of them: the members are not searched
    // once per key (quadratic for a request that writes thousands).
    let many = changes.set.len() + changes.removed.len() > 16;
    let touched_keys: Option<HashSet<&str>> = many.then(|| {
        let set = changes.set.iter().map(|(k, _)| k.as_str());
        set.chain(changes.removed.iter().map(String::as_str))
            .collect()
    });
    let touched = |key: &str| match &touched_keys {
        Some(keys) => keys.contains(key),
        None => {
            changes.set.iter().any(|(k, _)| k == key) || changes.removed.iter().any(|k| k == key)
        }
    };
    let mut out = Writer::with_capacity(stored.len() + 64);
    if !changes.cleared {
        for member in packed::members(stored) {
            let member = member.map_err(StoreError::decode)?;
            if !touched(member.key) {
                out.raw(member.whole);
            }
        }
    }
    // A key set twice in one `Changes`: the later value wins, as in
    // `Changes::apply_to`, and the data keeps one member per key.
    if many {
        let mut later = HashSet::new();
        let last: Vec<bool> = changes
            .set
            .iter()
            .rev()
            .map(|(k, _)| later.insert(k.as_str()))
            .collect();
        for ((key, value), last) in changes.set.iter().zip(last.into_iter().rev()) {
            if last {
                out.member(key, value);
            }
        }
    } else {
        for (n, (key, value)) in changes.set.iter().enumerate() {
            if !changes.set[n + 1..].iter().any(|(k, _)| k == key) {
                out.member(key, value);
            }
        }
    }
    Ok(out.finish())
}

/// A stored time (unix seconds) as the record's; out of range is corrupt.
fn unix_time(t: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp(t).map_err(StoreError::decode)
}

impl Entry {
    fn encode(record: &Record) -> Result<Self, StoreError> {
        Ok(Self {
            created_at: record.created_at.unix_timestamp(),
            last_active: record.last_active.unix_timestamp(),
            expires_at: record.expires_at.unix_timestamp(),
            expiry: record.expiry.map(Box::new),
            data: packed::encode(&record.data),
        })
    }

    fn decode(&self) -> Result<Record, StoreError> {
        Ok(Record {
            data: packed::decode(&self.data).map_err(StoreError::decode)?,
            created_at: unix_time(self.created_at)?,
            last_active: unix_time(self.last_active)?,
            expires_at: unix_time(self.expires_at)?,
            expiry: self.expiry.as_deref().copied(),
        })
    }
}

/// The store calls, synchronous: nothing here waits. The layer calls
/// them directly (see `Storage`); the trait impl below wraps them.
impl MemoryStore {
    pub(crate) fn create_at(
        &self,
        id: &IdHash,
        record: &Record,
        now: i64,
    ) -> Result<bool, StoreError> {
        let entry = Entry::encode(record)?;
        let mut shard = self.shard(id);
        shard.sweep_if_due(now);
        if shard.live(id, now).is_some() {
            return Ok(false);
        }
        shard.entries.insert(*id.as_bytes(), entry);
        Ok(true)
    }

    fn load_at(&self, id: &IdHash, now: i64) -> Result<Option<Record>, StoreError> {
        let mut shard = self.shard(id);
        shard.live(id, now).map(|e| e.decode()).transpose()
    }

    /// [`load_at`](Self::load_at) with the data left as it is stored, for
    /// the layer to read in place instead of decoding it (see `Values`).
    pub(crate) fn load_values_at(
        &self,
        id: &IdHash,
        now: i64,
    ) -> Result<Option<LoadedRecord>, StoreError> {
        let (text, created_at, last_active, expires_at, expiry) = {
            let mut shard = self.shard(id);
            let Some(e) = shard.live(id, now) else {
                return Ok(None);
            };
            let expiry = e.expiry.as_deref().copied();
            (
                e.data.clone(),
                e.created_at,
                e.last_active,
                e.expires_at,
                expiry,
            )
        };
        Ok(Some(LoadedRecord {
            values: Values::from_packed(text)?,
            created_at,
            last_active,
            expires_at,
            expiry,
        }))
    }

    pub(crate) fn save_at(
        &self,
        id: &IdHash,
        changes: &Changes,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut shard = self.shard(id);
        let Some(entry) = shard.live(id, now) else {
            return Ok(false);
        };
        entry.data = merge(&entry.data, changes)?;
        entry.last_active = changes.last_active.unix_timestamp();
        entry.expires_at = changes.expires_at.unix_timestamp();
        entry.expiry = changes.expiry.map(Box::new);
        Ok(true)
    }

    pub(crate) fn delete_now(&self, id: &IdHash) -> Result<bool, StoreError> {
        Ok(self.shard(id).entries.remove(id.as_bytes()).is_some())
    }

    pub(crate) fn touch_at(
        &self,
        id: &IdHash,
        last_active: i64,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut shard = self.shard(id);
        Ok(match shard.live(id, now) {
            Some(entry) => {
                entry.last_active = last_active;
                entry.expires_at = expires_at;
                true
            }
            None => false,
        })
    }

    fn purge_expired_now(&self) -> Result<u64, StoreError> {
        let now = self.now();
        let mut purged = 0;
        for shard in self.inner.shards.iter() {
            let mut shard = lock(shard);
            let before = shard.entries.len();
            shard.entries.retain(|_, e| e.expires_at > now);
            shard.next_sweep = now + SWEEP_EVERY;
            purged += (before - shard.entries.len()) as u64;
        }
        Ok(purged)
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn create(&self, id: &IdHash, record: &Record) -> Result<bool, StoreError> {
        self.create_at(id, record, self.now())
    }

    async fn load(&self, id: &IdHash) -> Result<Option<Record>, StoreError> {
        self.load_at(id, self.now())
    }

    async fn save(&self, id: &IdHash, changes: &Changes) -> Result<bool, StoreError> {
        self.save_at(id, changes, self.now())
    }

    async fn delete(&self, id: &IdHash) -> Result<bool, StoreError> {
        self.delete_now(id)
    }

    async fn touch(
        &self,
        id: &IdHash,
        last_active: OffsetDateTime,
        expires_at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let (last_active, expires_at) = (last_active.unix_timestamp(), expires_at.unix_timestamp());
        self.touch_at(id, last_active, expires_at, self.now())
    }

    async fn purge_expired(&self) -> Result<u64, StoreError> {
        self.purge_expired_now()
    }
}

#[cfg(any(test, feature = "testing"))]
#[async_trait]
impl super::conformance::RawAccess for MemoryStore {
    async fn raw_dump(&self) -> Result<Vec<String>, StoreError> {
        let mut dump = Vec::new();
        for shard in self.inner.shards.iter() {
            for (key, e) in &lock(shard).entries {
                let key: String = key.iter().map(|b| format!("{b:02x}")).collect();
                dump.push(format!(
                    "{key} {} {} {} {} {:?}",
                    e.data, e.created_at, e.last_active, e.expires_at, e.expiry
                ));
            }
        }
        Ok(dump)
    }

    async fn corrupt(&self, id: &IdHash) -> Result<(), StoreError> {
        if let Some(entry) = self.shard(id).entries.get_mut(id.as_bytes()) {
            entry.data = "{\"unterminated".into();
        }
        Ok(())
    }
}

/// Keys are SHA-256 outputs, already uniform: the hasher takes their first
/// eight bytes instead of hashing them again.
#[derive(Default)]
struct PrehashedHasher(u64);

impl Hasher for PrehashedHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // `[u8; 32]` hashes as one 32-byte write.
        for chunk in bytes.chunks(8).take(1) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(word);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::id::SessionId;
    use crate::store::Data;
    use time::Duration;

    fn record(now: OffsetDateTime, ttl: Duration) -> Record {
        Record {
            data: Data::from_iter([("n".to_owned(), 1.into())]),
            created_at: now,
            last_active: now,
            expires_at: now + ttl,
            expiry: None,
        }
    }

    #[tokio::test]
    async fn expired_entries_are_swept_by_later_writes() {
        let clock = ManualClock::new();
        let store = MemoryStore::with_clock(clock.clone());
        for _ in 0..200 {
            let id = SessionId::generate().hash();
            assert!(store
                .create(&id, &record(clock.now(), Duration::minutes(1)))
                .await
                .unwrap());
        }
        assert_eq!(store.len(), 200);
        clock.advance(Duration::minutes(5));
        // Each shard sweeps on its next write; 2000 writes reach every shard.
        for _ in 0..2000 {
            let id = SessionId::generate().hash();
            store
                .create(&id, &record(clock.now(), Duration::minutes(1)))
                .await
                .unwrap();
        }
        assert_eq!(store.len(), 2000);
        clock.advance(Duration::minutes(5));
        assert_eq!(store.purge_expired().await.unwrap(), 2000);
        assert!(store.is_empty());
    }

    /// A store holding one live session (`n = 1`), its id and the time.
    fn one_session() -> (MemoryStore, IdHash, OffsetDateTime) {
        let store = MemoryStore::new();
        let id = SessionId::generate().hash();
        let now = OffsetDateTime::now_utc();
        assert!(store
            .create_at(&id, &record(now, Duration::hours(1)), store.now())
            .unwrap());
        (store, id, now)
    }

    #[tokio::test]
    async fn s35_a_corrupt_entry_loads_as_a_decode_error_on_the_layers_path_too() {
        use crate::store::conformance::RawAccess;
        let (store, id, _) = one_session();
        let loaded = store.load_values_at(&id, store.now()).unwrap().unwrap();
        assert_eq!(loaded.values.get::<u32>("n").unwrap().unwrap(), 1);
        store.corrupt(&id).await.unwrap();
        let error = store.load_values_at(&id, store.now()).unwrap_err();
        assert_eq!(error.kind(), crate::StoreErrorKind::Decode);
    }

    #[test]
    fn a_key_set_twice_in_one_save_keeps_the_later_value_once() {
        // A few keys, and many (the merge then keeps a set of them).
        for extra in [0usize, 40] {
            let (store, id, now) = one_session();
            let mut set: Vec<(String, serde_json::Value)> =
                (0..extra).map(|n| (format!("x{n}"), n.into())).collect();
            set.push(("k".into(), "first".into()));
            set.extend((0..extra).map(|n| (format!("x{n}"), (n + 1000).into())));
            set.push(("k".into(), "second".into()));
            let changes = Changes {
                cleared: false,
                set,
                removed: (0..extra / 2).map(|n| format!("x{n}")).collect(),
                last_active: now,
                expires_at: now + Duration::hours(1),
                expiry: None,
            };
            assert!(store.save_at(&id, &changes, store.now()).unwrap());
            let loaded = store.load_values_at(&id, store.now()).unwrap().unwrap();
            assert_eq!(loaded.values.get::<String>("k").unwrap().unwrap(), "second");
            assert_eq!(loaded.values.len(), 2 + extra, "one member per key");
            for n in 0..extra {
                let x = loaded
                    .values
                    .get::<usize>(&format!("x{n}"))
                    .unwrap()
                    .unwrap();
                assert_eq!(x, n + 1000, "the later value");
            }
            // As the trait's `apply_to` does it.
            let mut record = store.load_at(&id, store.now()).unwrap().unwrap();
            let before = record.clone();
            changes.apply_to(&mut record);
            assert_eq!(record.data, before.data);
        }
    }

    #[test]
    fn only_a_store_on_the_system_clock_takes_the_layers_time() {
        assert_eq!(MemoryStore::new().now_for(Some(5)), 5);
        assert_eq!(MemoryStore::with_clock(SystemClock).now_for(Some(5)), 5);
        let clock = ManualClock::new();
        let manual = MemoryStore::with_clock(clock.clone());
        assert_eq!(manual.now_for(Some(5)), clock.now().unix_timestamp());
        let now = OffsetDateTime::now_utc().unix_timestamp();
        assert!((MemoryStore::new().now_for(None) - now).abs() <= 1);
    }

    #[test]
    fn the_hasher_reads_the_prehashed_key() {
        let mut h = PrehashedHasher::default();
        std::hash::Hash::hash(&[1u8; 32], &mut h);
        assert_ne!(h.finish(), 0);
    }
}
