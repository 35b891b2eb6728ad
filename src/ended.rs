//! [`RecentlyEnded`]: the ids a layer ended or rotated a short while ago.
//!
//! The layer looks a session up when the handler first asks for it, not
//! when the request arrives. A request that was sent with the old id before
//! a concurrent sign-in (or sign-out) answered, and that asks for its
//! session only after that answer, finds nothing; if it then wrote, it would
//! start a new session and its cookie would replace the one the sign-in
//! sent: the user would be signed out. Ids that this layer ended a moment
//! ago are known here, with the number of the end, so such a write is
//! dropped instead (S27), as it is for a request that loaded the session
//! before it ended. A request that starts after the end (a replay of the
//! old cookie) is not affected: its write gets a fresh id (S6).
//!
//! In-process and bounded: it knows only what this process ended, for
//! [`KEEP`] seconds, at most [`CAPACITY`] ids (the oldest go first).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::expiry::Unix;
use crate::id::IdHash;

/// How long an end is remembered: longer than a request waits before its
/// handler asks for the session.
pub(crate) const KEEP: Unix = 120;
/// The most ends remembered (≈ 100 bytes each).
pub(crate) const CAPACITY: usize = 16_384;

#[derive(Debug, Default)]
pub(crate) struct RecentlyEnded {
    /// How many ends there have been; a request notes it when it starts.
    count: AtomicU64,
    inner: Mutex<Ids>,
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

    /// Notes that the session under `hash` ended or moved to a new id at `now`.
    pub(crate) fn insert(&self, hash: IdHash, now: Unix) {
        let mut ids = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        while ids
            .order
            .front()
            .is_some_and(|&(_, _, at)| at <= now - KEEP || ids.order.len() >= CAPACITY)
        {
            ids.pop_oldest();
        }
        let number = self.count.fetch_add(1, Ordering::AcqRel) + 1;
        ids.number.insert(hash, number);
        ids.order.push_back((hash, number, now));
    }

    /// Whether any of `hashes` ended after end number `since` (what
    /// [`latest`](Self::latest) said when the request started): while the
    /// request was on its way.
    pub(crate) fn since(&self, mut hashes: impl Iterator<Item = IdHash>, since: u64) -> bool {
        let ids = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        hashes.any(|hash| ids.number.get(&hash).is_some_and(|&n| n > since))
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
        let before = ended.latest();
        ended.insert(hash(1), 1_000);
        let after = ended.latest();
        assert!(ended.since([hash(1)].into_iter(), before));
        assert!(ended.since([hash(2), hash(1)].into_iter(), before));
        assert!(
            !ended.since([hash(1)].into_iter(), after),
            "started after the end"
        );
        assert!(!ended.since([hash(2)].into_iter(), before));
        // An end that much later forgets the old ones.
        ended.insert(hash(2), 1_000 + KEEP);
        assert!(!ended.since([hash(1)].into_iter(), before));
        assert!(ended.since([hash(2)].into_iter(), before));
        // The same id again: the later end counts.
        let between = ended.latest();
        ended.insert(hash(2), 1_000 + KEEP + 1);
        assert!(ended.since([hash(2)].into_iter(), between));
        // Never more than the capacity.
        for n in 0..CAPACITY + 10 {
            let mut bytes = [0u8; 32];
            bytes[..8].copy_from_slice(&(n as u64).to_le_bytes());
            ended.insert(IdHash::from_bytes(bytes), 5_000);
        }
        let ids = ended.inner.lock().unwrap();
        assert_eq!(ids.order.len(), CAPACITY);
        assert_eq!(ids.number.len(), CAPACITY);
    }
}
