//! Session ids and their hashes.
//!
//! A [`SessionId`] is the secret the client holds (signed, in a cookie or a
//! token header). Stores never see it: they get its [`IdHash`], a SHA-256 of
//! the id, so a leaked store or log gives no usable cookie (S5).

use std::fmt;
use std::sync::Arc;

use sha2::{Digest, Sha256};

/// The fewest random bytes an id may carry: 128 bits (S1, S2).
pub const MIN_ID_BYTES: usize = 16;
/// The most bytes an id may carry.
pub const MAX_ID_BYTES: usize = 32;

/// How many bytes of OS randomness each thread fetches at a time: 32 ids.
const POOL_BYTES: usize = 512;

thread_local! {
    static POOL: std::cell::RefCell<Pool> = const {
        std::cell::RefCell::new(Pool { bytes: [0; POOL_BYTES], used: POOL_BYTES })
    };
}

/// Bytes from the OS CSPRNG not handed out yet: `bytes[used..]`.
struct Pool {
    bytes: [u8; POOL_BYTES],
    used: usize,
}

impl Pool {
    fn take(&mut self, out: &mut [u8]) {
        if POOL_BYTES - self.used < out.len() {
            // The OS CSPRNG failing is unrecoverable for a session layer:
            // nothing else is an acceptable source of ids.
            getrandom::getrandom(&mut self.bytes).expect("the OS random number generator failed");
            self.used = 0;
        }
        let fresh = &mut self.bytes[self.used..self.used + out.len()];
        out.copy_from_slice(fresh);
        fresh.fill(0);
        self.used += out.len();
    }
}

/// A session id: 16 to 32 random bytes. Its `Debug` never shows the bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SessionId {
    bytes: [u8; MAX_ID_BYTES],
    len: u8,
}

impl SessionId {
    /// A new id of 128 random bits from the operating system's CSPRNG (S1).
    ///
    /// The bytes come straight from `getrandom(2)`, nothing derived: each
    /// thread asks the OS for 512 bytes at a time and hands out 16 of
    /// them per id, which spares a system call (≈ 0.4 µs here) on all but
    /// one of every 32 new sessions. Handed-out bytes are wiped from the
    /// pool. A process that `fork`s without `exec` and then creates
    /// sessions in both parent and child would draw the same pooled bytes
    /// in both: don't (tokio runtimes do not survive a fork anyway).
    pub fn generate() -> Self {
        let mut bytes = [0u8; MAX_ID_BYTES];
        POOL.with(|pool| pool.borrow_mut().take(&mut bytes[..MIN_ID_BYTES]));
        Self {
            bytes,
            len: MIN_ID_BYTES as u8,
        }
    }

    /// Wraps bytes from a custom generator; `None` when there are fewer than
    /// [`MIN_ID_BYTES`] or more than [`MAX_ID_BYTES`] (S2).
    pub fn from_bytes(raw: &[u8]) -> Option<Self> {
        if !(MIN_ID_BYTES..=MAX_ID_BYTES).contains(&raw.len()) {
            return None;
        }
        let mut bytes = [0u8; MAX_ID_BYTES];
        bytes[..raw.len()].copy_from_slice(raw);
        Some(Self {
            bytes,
            len: raw.len() as u8,
        })
    }

    /// The raw bytes. Treat them as a secret: never log or store them.
    pub fn expose_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The hash under which stores keep this session.
    pub fn hash(&self) -> IdHash {
        IdHash(Sha256::digest(self.expose_bytes()).into())
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionId(<redacted>)")
    }
}

/// The SHA-256 of a [`SessionId`]: what stores use as the key, and what is
/// safe to log or show (it cannot be turned back into a cookie).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdHash([u8; 32]);

impl IdHash {
    /// Wraps 32 bytes read back from a store.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 bytes of the hash.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The hash as 64 lowercase hex digits, e.g. for a store key.
    pub fn to_hex(&self) -> String {
        self.to_string()
    }

    /// Parses 64 hex digits, as written by [`IdHash::to_hex`].
    pub fn from_hex(hex: &str) -> Option<Self> {
        let hex = hex.as_bytes();
        if hex.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
            let digit = |c: u8| (c as char).to_digit(16);
            *byte = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
        }
        Some(Self(out))
    }
}

impl fmt::Display for IdHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for IdHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdHash({self})")
    }
}

/// A source of session ids, for deployments that must use their own (an HSM,
/// a tested generator). Each id must carry at least [`MIN_ID_BYTES`] random
/// bytes: a generator that yields fewer is refused when the layer is built,
/// and any short id it yields later fails that request (S2).
pub trait IdGenerator: fmt::Debug + Send + Sync + 'static {
    /// Fresh random bytes for one id.
    fn generate(&self) -> Vec<u8>;
}

#[derive(Debug, Clone)]
pub(crate) enum IdSource {
    Os,
    Custom(Arc<dyn IdGenerator>),
}

impl IdSource {
    pub(crate) fn next(&self) -> Option<SessionId> {
        match self {
            Self::Os => Some(SessionId::generate()),
            Self::Custom(generator) => SessionId::from_bytes(&generator.generate()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s1_ids_are_128_bits_and_distinct() {
        let a = SessionId::generate();
        let b = SessionId::generate();
        assert_eq!(a.expose_bytes().len(), 16);
        assert_ne!(a, b);
        assert_ne!(a.expose_bytes(), &[0u8; 16]);
    }

    #[test]
    fn s1_pooled_ids_stay_distinct_across_refills_and_are_wiped_from_the_pool() {
        // 1000 ids span 31 refills of the per-thread pool.
        let ids: std::collections::HashSet<[u8; 16]> = (0..1000)
            .map(|_| SessionId::generate().expose_bytes().try_into().unwrap())
            .collect();
        assert_eq!(ids.len(), 1000);
        assert!(!ids.contains(&[0u8; 16]));

        let mut pool = Pool {
            bytes: [0; POOL_BYTES],
            used: POOL_BYTES,
        };
        let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
        pool.take(&mut a);
        pool.take(&mut b);
        assert_eq!(pool.used, 32);
        assert_ne!(a, b);
        assert!(
            pool.bytes[..32].iter().all(|&x| x == 0),
            "handed-out bytes are wiped"
        );
        assert!(
            pool.bytes[32..].iter().any(|&x| x != 0),
            "the rest is fresh randomness"
        );
    }

    #[test]
    fn s2_short_and_long_ids_are_refused() {
        assert!(SessionId::from_bytes(&[7; 15]).is_none());
        assert!(SessionId::from_bytes(&[7; 33]).is_none());
        assert!(SessionId::from_bytes(&[7; 16]).is_some());
    }

    #[test]
    fn s5_debug_hides_the_id_and_the_hash_is_sha256() {
        let id = SessionId::from_bytes(&[0u8; 16]).unwrap();
        assert_eq!(format!("{id:?}"), "SessionId(<redacted>)");
        // sha256 of 16 zero bytes
        assert_eq!(
            id.hash().to_hex(),
            "374708fff7719dd5979ec875d56cd2286f6d3cf7ec317a3b25632aab28ec37bb"
        );
        assert_eq!(IdHash::from_hex(&id.hash().to_hex()), Some(id.hash()));
        assert_eq!(IdHash::from_hex("zz"), None);
    }
}
