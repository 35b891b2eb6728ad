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
//! A request that reaches the layer only after a sign-in rotated its id
//! (it waited in the network, in the accept queue or in an outer layer) is
//! on its way too, but started after the end: for a rotation (not for a
//! sign-out), a write from the old id is also dropped for [`GRACE`] after
//! it. That check needs the registry's lock, so it is made only where a
//! request would otherwise start a new session, or re-seal a cookie
//! session; a store session found under a rotated id cannot be (its old
//! record is gone).
//!
//! One registry for the process, shared by every layer (two routers on one
//! store see each other's ends), kept for [`KEEP`], at most [`CAPACITY`]
//! ends (the oldest go first), in [`SHARDS`] locks. Its times are the
//! process's monotonic clock, not a layer's [`Clock`](crate::clock::Clock).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use crate::id::IdHash;

/// How long an end is remembered: longer than a request waits before its
/// handler asks for the session.
pub(crate) const KEEP: Duration = Duration::from_secs(120);
/// How long after a rotation a request that arrives with the old id (it
/// was sent before the new one reached the client) still has its writes
/// dropped.
pub(crate) const GRACE: Duration = Duration::from_secs(10);
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
    /// Each id's latest end.
    latest: HashMap<IdHash, End>,
    /// Every end, oldest first, with its time: to forget them in order.
    order: VecDeque<(IdHash, u64, Instant)>,
}

#[derive(Debug, Clone, Copy)]
struct End {
    number: u64,
    /// When a new id took over (a sign-in): kept by a later sign-out of
    /// the same old id, which must not shorten the rotation's window.
    rotated_at: Option<Instant>,
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

    /// Notes that the session under `hash` ended (`rotated`: moved to a
    /// new id) now.
    pub(crate) fn insert(&self, hash: IdHash, rotated: bool) {
        self.insert_at(hash, rotated, Instant::now());
    }

    fn insert_at(&self, hash: IdHash, rotated: bool, now: Instant) {
        let mut ids = self.shard(&hash);
        while ids.order.front().is_some_and(|&(_, _, at)| {
            now.saturating_duration_since(at) >= KEEP || ids.order.len() >= CAPACITY / SHARDS
        }) {
            ids.pop_oldest();
        }
        let number = self.count.fetch_add(1, Ordering::AcqRel) + 1;
        let earlier = ids.latest.get(&hash).and_then(|end| end.rotated_at);
        let end = End {
            number,
            rotated_at: if rotated { Some(now) } else { earlier },
        };
        ids.latest.insert(hash, end);
        ids.order.push_back((hash, number, now));
    }

    /// Whether any of `hashes` ended after end number `since` (what
    /// [`latest`](Self::latest) said when the request started): while the
    /// request was on its way; with `rotations`, also a rotation less than
    /// [`GRACE`] ago. Without `rotations`, one atomic read when nothing
    /// ended since.
    pub(crate) fn since(
        &self,
        hashes: impl Iterator<Item = IdHash>,
        since: u64,
        rotations: bool,
    ) -> bool {
        if !rotations && self.latest() == since {
            return false;
        }
        self.since_at(hashes, since, rotations, Instant::now())
    }

    fn since_at(
        &self,
        mut hashes: impl Iterator<Item = IdHash>,
        since: u64,
        rotations: bool,
        now: Instant,
    ) -> bool {
        hashes.any(|hash| {
            self.shard(&hash).latest.get(&hash).is_some_and(|end| {
                end.number > since
                    || (rotations
                        && end
                            .rotated_at
                            .is_some_and(|at| now.saturating_duration_since(at) < GRACE))
            })
        })
    }
}

impl Ids {
    fn pop_oldest(&mut self) {
        if let Some((hash, number, _)) = self.order.pop_front() {
            // A later end of the same id keeps it.
            if self
                .latest
                .get(&hash)
                .is_some_and(|end| end.number == number)
            {
                self.latest.remove(&hash);
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
        let t0 = Instant::now();
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        let one = |n| [hash(n)].into_iter();
        let before = ended.latest();
        ended.insert_at(hash(1), false, at(0));
        let after = ended.latest();
        assert!(ended.since_at(one(1), before, false, at(0)));
        assert!(ended.since_at([hash(2), hash(1)].into_iter(), before, false, at(0)));
        assert!(
            !ended.since_at(one(1), after, false, at(0)),
            "started after the end"
        );
        assert!(
            !ended.since_at(one(1), after, true, at(0)),
            "a sign-out has no grace"
        );
        assert!(!ended.since_at(one(2), before, false, at(0)));
        // A rotation: also for requests that started after it, for a while.
        ended.insert_at(hash(3), true, at(1));
        let later = ended.latest();
        assert!(ended.since_at(one(3), later, true, at(1) + GRACE / 2));
        assert!(!ended.since_at(one(3), later, false, at(1)));
        assert!(!ended.since_at(one(3), later, true, at(1) + GRACE));
        // A sign-out of the old id afterwards keeps the rotation's window.
        ended.insert_at(hash(3), false, at(2));
        let last = ended.latest();
        assert!(ended.since_at(one(3), last, true, at(1) + GRACE / 2));
        assert!(!ended.since_at(one(3), last, true, at(1) + GRACE));
        // An end that much later forgets the old ones of its shard.
        ended.insert_at(hash(1 + SHARDS as u8), false, at(0) + KEEP);
        ended.insert_at(hash(1), false, at(1) + KEEP);
        let between = ended.latest();
        assert!(!ended.since_at(one(1), between, false, at(1) + KEEP));
        assert!(ended.since_at(one(1 + SHARDS as u8), before, false, at(0) + KEEP));
        // The same id again: the later end counts.
        ended.insert_at(hash(1), false, at(2) + KEEP);
        assert!(ended.since_at(one(1), between, false, at(2) + KEEP));
        // Never more than the capacity.
        for n in 0..CAPACITY + 100 {
            let mut bytes = [0u8; 32];
            bytes[..8].copy_from_slice(&(n as u64).to_le_bytes());
            ended.insert_at(IdHash::from_bytes(bytes), false, at(3) + KEEP);
        }
        let held: usize = ended
            .shards
            .iter()
            .map(|s| s.lock().unwrap().order.len())
            .sum();
        let indexed: usize = ended
            .shards
            .iter()
            .map(|s| s.lock().unwrap().latest.len())
            .sum();
        assert!(held <= CAPACITY && indexed == held, "{held} {indexed}");
    }
}
