//! [`CookieStore`]: cookie sessions, the whole session in one encrypted cookie.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::cookie::Key;
use crate::id::SessionId;
use crate::store::{Record, SessionStore};

/// Cookie sessions: the whole session lives in the client's cookie,
/// encrypted and authenticated with AES-256-GCM (the `cookie` crate's
/// private jar), with the cookie name as associated data and the expiry
/// inside the sealed payload (S39). No store call on the hot path: nothing
/// to run, nothing to scale.
///
/// Pass it where a store goes; nothing else in the app changes:
///
/// ```
/// use session_layer::{Key, SessionLayer};
/// use session_layer::store::CookieStore;
///
/// let layer = SessionLayer::builder(CookieStore::new(), Key::generate()).build().unwrap();
/// ```
///
/// # What it cannot do
///
/// - **Revoke a stolen cookie.** A copy of the cookie stays valid until its
///   sealed expiry, even after sign-out, because the server keeps nothing.
///   The remedy is [`CookieStore::revocation_list`]: sign-out and
///   [`cycle_id`](crate::Session::cycle_id) then record the session's id
///   hash in a server-side store until the cookie would have expired, and
///   every request checks it (one store read per request that carries a
///   session).
/// - **Hold much.** Name plus value may not pass 4096 bytes (S15): an
///   `insert` that would grow past it fails with
///   [`SessionErrorKind::TooLarge`](crate::SessionErrorKind::TooLarge), and
///   the response path checks the sealed size again.
/// - **Merge concurrent changes.** Each response carries the whole session;
///   of two concurrent requests that change it, the browser keeps the cookie
///   of the response it saw last.
/// - **Token transport.** Cookie sessions travel only in a cookie.
#[derive(Debug, Clone, Default)]
pub struct CookieStore {
    pub(crate) revocations: Option<Arc<dyn SessionStore>>,
}

impl CookieStore {
    /// Cookie sessions with no server-side state at all.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records ended sessions in `store`, so that a copy of a signed-out
    /// cookie is refused (see the type's docs).
    pub fn revocation_list(mut self, store: impl SessionStore) -> Self {
        self.revocations = Some(Arc::new(store));
        self
    }
}

/// What the cookie carries: a random id (for `Session::id` and the
/// revocation list) and the record, whose serde form has a version.
#[derive(Serialize, Deserialize)]
struct Payload {
    #[serde(rename = "i", with = "id_base64")]
    id: SessionId,
    #[serde(rename = "r")]
    record: Record,
}

/// Bytes that base64 adds around a sealed payload: nonce and tag.
const SEAL_OVERHEAD: usize = 12 + 16;
/// Browsers keep a cookie whose name plus value fit in 4096 bytes.
pub(crate) const MAX_COOKIE_BYTES: usize = 4096;
/// Room kept in the payload for the id and the record's times and expiry.
const META_RESERVE: usize = 256;

/// The largest sealed payload (JSON) that fits one cookie named `name`.
pub(crate) fn max_payload(name: &str) -> usize {
    (MAX_COOKIE_BYTES.saturating_sub(name.len()) / 4 * 3).saturating_sub(SEAL_OVERHEAD)
}

/// The largest data (JSON) that `insert` lets a cookie session hold.
pub(crate) fn max_data(name: &str) -> usize {
    max_payload(name).saturating_sub(META_RESERVE)
}

/// Seals `record` for the cookie `name` under `key`; `None` if it would not
/// fit in one cookie.
pub(crate) fn seal(name: &str, key: &Key, id: SessionId, record: Record) -> Option<String> {
    let json = serde_json::to_string(&Payload { id, record }).ok()?;
    if json.len() > max_payload(name) {
        return None;
    }
    let mut jar = cookie::CookieJar::new();
    jar.private_mut(key.cookie_key())
        .add(cookie::Cookie::new(name.to_owned(), json));
    let value = jar.get(name)?.value().to_owned();
    (name.len() + value.len() <= MAX_COOKIE_BYTES).then_some(value)
}

/// Opens a sealed value with the first key that authenticates it; the
/// index of that key (0 = current) comes back too. Any changed byte, a
/// value sealed for another cookie name, or an unknown payload version
/// gives `None`.
pub(crate) fn unseal(name: &str, keys: &[Key], value: &[u8]) -> Option<(SessionId, Record, usize)> {
    if name.len() + value.len() > MAX_COOKIE_BYTES {
        return None;
    }
    let value = std::str::from_utf8(value).ok()?;
    keys.iter().enumerate().find_map(|(index, key)| {
        let opened = cookie::CookieJar::new()
            .private(key.cookie_key())
            .decrypt(cookie::Cookie::new(name.to_owned(), value.to_owned()))?;
        let payload: Payload = serde_json::from_str(opened.value()).ok()?;
        Some((payload.id, payload.record, index))
    })
}

mod id_base64 {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    use crate::id::SessionId;

    pub(super) fn serialize<S: Serializer>(id: &SessionId, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&URL_SAFE_NO_PAD.encode(id.expose_bytes()))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SessionId, D::Error> {
        let text = <&str>::deserialize(d)?;
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(D::Error::custom)?;
        SessionId::from_bytes(&bytes).ok_or_else(|| D::Error::custom("bad session id length"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Data;
    use proptest::prelude::*;
    use time::macros::datetime;
    use time::Duration;

    fn record(data: Data) -> Record {
        let t = datetime!(2026-01-01 00:00 UTC);
        Record {
            data,
            created_at: t,
            last_active: t,
            expires_at: t + Duration::hours(1),
            expiry: None,
        }
    }

    fn key(n: u8) -> Key {
        Key::try_from(&[n; 32][..]).unwrap()
    }

    #[test]
    fn s39_round_trip_and_name_binding() {
        let id = SessionId::generate();
        let r = record(Data::from_iter([("k".to_owned(), "v".into())]));
        let sealed = seal("id", &key(1), id, r.clone()).unwrap();
        let (got_id, got, index) = unseal("id", &[key(1)], sealed.as_bytes()).unwrap();
        assert_eq!((got_id, got, index), (id, r, 0));
        assert!(
            unseal("other", &[key(1)], sealed.as_bytes()).is_none(),
            "name swap"
        );
        assert!(
            unseal("id", &[key(2)], sealed.as_bytes()).is_none(),
            "unknown key"
        );
        assert_eq!(
            unseal("id", &[key(2), key(1)], sealed.as_bytes())
                .unwrap()
                .2,
            1,
            "fallback"
        );
    }

    #[test]
    fn s15_a_session_that_does_not_fit_is_refused() {
        let big = Data::from_iter([("k".to_owned(), "x".repeat(4000).into())]);
        assert!(seal("id", &key(1), SessionId::generate(), record(big)).is_none());
        let fits = Data::from_iter([("k".to_owned(), "x".repeat(max_data("id")).into())]);
        let sealed = seal("id", &key(1), SessionId::generate(), record(fits)).unwrap();
        assert!(sealed.len() + 2 <= MAX_COOKIE_BYTES);
    }

    #[test]
    fn s39_every_changed_byte_is_rejected() {
        let sealed = seal("id", &key(1), SessionId::generate(), record(Data::new())).unwrap();
        let bytes = sealed.as_bytes();
        for pos in 0..bytes.len() {
            let mut changed = bytes.to_vec();
            changed[pos] = if changed[pos] == b'A' { b'B' } else { b'A' };
            assert!(unseal("id", &[key(1)], &changed).is_none(), "byte {pos}");
        }
    }

    proptest! {
        #[test]
        fn garbage_never_opens(value in proptest::collection::vec(any::<u8>(), 0..6000)) {
            prop_assert!(unseal("id", &[key(1)], &value).is_none());
        }
    }
}
