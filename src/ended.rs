//! [`ENDED`]: the ids this process ended or rotated a short while ago.
//!
//! The layer looks a session up when the handler first asks for it, not
//! when the request arrives. A request that was sent with the old id before
//! a concurrent sign-in (or sign-out) answered, and that asks for its
//! session only after that answer, finds nothing; if it then wrote, it would
//! start a new session and its cookie would replace the one the sign-in
//! sent: the user would be signed out. (A cookie session found in such a
//! request's cookie would be re-sealed over the sign-in's the same way.)
//! Ids ended a moment ago are known here, with the number of the end, so
//! such a request commits nothing instead (S27), as a request that loaded
//! the session before it ended does. A request that starts after the end
//! (a replay of the old cookie) is not affected: its write gets a fresh id
//! (S6).
//!
//! One registry for the process, shared by every layer (two routers on one
//! store see each other's ends), kept for [`KEEP`] seconds, at most
//! [`CAPACITY`] ends (the oldest go first), in [`SHARDS`] locks.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};

use crate::expiry::Unix;
use crate::id::IdHash;

/// How long an end is remembered: longer than a request waits before its
/// handler asks for the session.
pub(crate) const KEEP: Unix = 120;
/// The most ends remembered (≈ 100 bytes each).
pub(crate) const CAPACITY: usize = 65_536;
/// Ends are spread over this many locks by their id's hash.
pub(crate) const SHARDS: usize = 16;

/// The process's registry.
pub(crate) static ENDED: LazyLock<RecentlyEnded> = LazyLock::new(RecentlyEnded::default);

#[derive(Debug, Default)]
pub(crate) struct RecentlyEnded {
    /// How many ends there have been; a request notes it when it starts.
    count: AtomicU64,
    shards: [Mutex<Ids>; SHARDS],
}

#[derive(Debug, Default)]
struct Ids {
    /// The number of each id's latest end.
    number: HashMap<IdHash, u64>,
    /// Every end, oldest first, with its time: to forget them in order.
    order: VecDeque<(IdHash, u64, Unix)>,
}

impl RecentlyEnded {
    /// The number of the latest end, for a request that starts now.
    pub(crate) fn latest(&self) -> u64 {
        self.count.load(Ordering::Acquire)
    }

    fn shard(&self, hash: &IdHash) -> std::sync::MutexGuard<'_, Ids> {
        let shard = &self.shards[usize::from(hash.as_bytes()[0]) % SHARDS];
        shard.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes that the session under `hash` ended or moved to a new id at `now`.
    pub(crate) fn insert(&self, hash: IdHash, now: Unix) {
        let mut ids = self.shard(&hash);
        while ids
            .order
            .front()
            .is_some_and(|&(_, _, at)| at <= now - KEEP || ids.order.len() >= CAPACITY / SHARDS)
        {
            ids.pop_oldest();
        }
        let number = self.count.fetch_add(1, Ordering::AcqRel) + 1;
        ids.number.insert(hash, number);
        ids.order.push_back((hash, number, now));
    }

    /// Whether any of `hashes` ended after end number `since` (what
    /// [`latest`](Self::latest) said when the request started): while the
    /// request was on its way. One atomic read when nothing ended since.
    pub(crate) fn since(&self, mut hashes: impl Iterator<Item = IdHash>, since: u64) -> bool {
        self.latest() != since
            && hashes.any(|hash| {
                self.shard(&hash)
                    .number
                    .get(&hash)
                    .is_some_and(|&n| n > since)
            })
    }
}

impl Ids {
    fn pop_oldest(&mut self) {
        if let Some((hash, number, _)) = self.order.pop_front() {
            // A later end of the same id keeps it.
            if self.number.get(&hash) == Some(&number) {
                self.number.remove(&hash);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(n: u8) -> IdHash {
        IdHash::from_bytes([n; 32])
    }

    #[test]
    fn an_end_counts_for_requests_that_started_before_it_for_a_while() {
        let ended = RecentlyEnded::default();
        let one = |n| [hash(n)].into_iter();
        let before = ended.latest();
        ended.insert(hash(1), 1_000);
        let after = ended.latest();
        assert!(ended.since(one(1), before));
        assert!(ended.since([hash(2), hash(1)].into_iter(), before));
        assert!(!ended.since(one(1), after), "started after the end");
        assert!(!ended.since(one(2), before));
        // An end that much later forgets the old ones of its shard.
        ended.insert(hash(1 + SHARDS as u8), 1_000 + KEEP);
        ended.insert(hash(1), 1_000 + KEEP + 1);
        let between = ended.latest();
        assert!(!ended.since(one(1), between));
        assert!(ended.since(one(1 + SHARDS as u8), before));
        // The same id again: the later end counts.
        ended.insert(hash(1), 1_000 + KEEP + 2);
        assert!(ended.since(one(1), between));
        // Never more than the capacity.
        for n in 0..CAPACITY + 100 {
            let mut bytes = [0u8; 32];
            bytes[..8].copy_from_slice(&(n as u64).to_le_bytes());
            ended.insert(IdHash::from_bytes(bytes), 5_000);
        }
        let held: usize = ended
            .shards
            .iter()
            .map(|s| s.lock().unwrap().order.len())
            .sum();
        let indexed: usize = ended
            .shards
            .iter()
            .map(|s| s.lock().unwrap().number.len())
            .sum();
        assert!(held <= CAPACITY && indexed == held, "{held} {indexed}");
    }
}
