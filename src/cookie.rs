//! The signing key, the signed-id codec, and reading and writing the session
//! cookie.
//!
//! A signed id is `base64url(id || HMAC-SHA256(key, label || name || 0 || id))`.
//! The MAC binds the cookie (or token header) name, which the `cookie`
//! crate's signed jar does not, so a value signed for another cookie is
//! rejected (S10). Verification is constant time (S9) and happens before
//! any store call (S7).

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use http::header::COOKIE;
use http::HeaderMap;
use sha2::Sha256;

use crate::error::ConfigError;
use crate::expiry::{to_datetime, Unix};
use crate::id::{SessionId, MAX_ID_BYTES, MIN_ID_BYTES};

/// A secret key for signing ids and encrypting cookie sessions.
///
/// Made from at least [`Key::MIN_LEN`] bytes of secret (S41); the signing and
/// encryption keys are derived from it with HKDF. Its `Debug` shows nothing
/// of the secret; comparison is constant time.
///
/// ```
/// use session_layer::{ConfigError, Key};
///
/// let key = Key::try_from(&[7u8; 32][..]).unwrap(); // in real life: 32+ random bytes from a secret store
/// assert_eq!(format!("{key:?}"), "Key(<redacted>)");
/// assert_eq!(Key::try_from(&b"short"[..]).unwrap_err(), ConfigError::KeyTooShort { len: 5 });
/// ```
#[derive(Clone, PartialEq)]
pub struct Key(cookie::Key);

impl Key {
    /// The shortest secret accepted, in bytes (256 bits).
    pub const MIN_LEN: usize = 32;

    /// A random key, for development and tests only: sessions signed with it
    /// do not survive a restart, nor work across several instances.
    pub fn generate() -> Self {
        Self(cookie::Key::generate())
    }

    /// A key from a base64 (standard or URL-safe, padding optional) secret,
    /// e.g. read from an environment variable.
    pub fn from_base64(secret: &str) -> Result<Self, ConfigError> {
        let secret = secret.trim().trim_end_matches('=');
        let bytes = URL_SAFE_NO_PAD
            .decode(secret.replace('+', "-").replace('/', "_"))
            .map_err(|_| ConfigError::InvalidKeyEncoding)?;
        Self::try_from(bytes.as_slice())
    }

    fn signing(&self) -> &[u8] {
        self.0.signing()
    }

    /// Not public API, and may change at any time: the signed-id codec and
    /// the cookie scan of the request path, for `benches/micro.rs` (their
    /// modules are private). Returns `(sign, verify, find)` for cookie
    /// `name`; `find` gives the total length of our cookie's values.
    #[doc(hidden)]
    #[allow(clippy::type_complexity)]
    pub fn __bench_codec(
        &self,
        name: &str,
    ) -> (
        impl Fn(&SessionId) -> String,
        impl Fn(&[u8]) -> Option<SessionId>,
        impl Fn(&HeaderMap) -> usize,
    ) {
        let codec = std::sync::Arc::new(IdCodec::new(name.into(), self.clone(), vec![]));
        let (signer, name) = (codec.clone(), name.to_owned());
        (
            move |id| signer.sign(id),
            move |value| codec.verify(value).map(|v| v.id),
            move |headers| cookie_values(headers, &name).map(<[u8]>::len).sum(),
        )
    }

    /// The `cookie` crate's key, for its private (AEAD) jar.
    pub(crate) fn cookie_key(&self) -> &cookie::Key {
        &self.0
    }
}

impl TryFrom<&[u8]> for Key {
    type Error = ConfigError;

    fn try_from(secret: &[u8]) -> Result<Self, ConfigError> {
        if secret.len() < Self::MIN_LEN {
            return Err(ConfigError::KeyTooShort { len: secret.len() });
        }
        Ok(Self(cookie::Key::derive_from(secret)))
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

/// Longest value we even try to decode; anything longer is garbage (S7).
const MAX_VALUE_LEN: usize = (MAX_ID_BYTES + MAC_LEN).div_ceil(3) * 4;
const MIN_VALUE_LEN: usize = (MIN_ID_BYTES + MAC_LEN) * 4 / 3;
const MAC_LEN: usize = 32;
const LABEL: &[u8] = b"session-layer id v1\0";

/// Signs and verifies ids for one cookie or header name, with the current
/// key and any fallbacks.
#[derive(Debug, Clone)]
pub(crate) struct IdCodec {
    /// The current key first, then the fallbacks.
    keys: Vec<Key>,
    /// For each key, the HMAC state after the key and the `label || name ||
    /// 0` prefix: keying is two of a MAC's four SHA-256 blocks, so it is
    /// done once here, and each MAC clones the state (see BENCHMARKS.md).
    keyed: Vec<Hmac<Sha256>>,
}

/// A verified id, and whether a fallback key signed it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Verified {
    pub(crate) id: SessionId,
    pub(crate) by_fallback: bool,
}

impl IdCodec {
    pub(crate) fn new(name: String, current: Key, fallbacks: Vec<Key>) -> Self {
        let mut keys = vec![current];
        keys.extend(fallbacks);
        let keyed = keys
            .iter()
            .map(|key| {
                let mut mac = Hmac::<Sha256>::new_from_slice(key.signing())
                    .expect("HMAC takes any key length");
                mac.update(LABEL);
                mac.update(name.as_bytes());
                mac.update(&[0]);
                mac
            })
            .collect();
        Self { keys, keyed }
    }

    /// The MAC of `id` under the key at `index`.
    fn mac(&self, index: usize, id: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.keyed[index].clone();
        mac.update(id);
        mac
    }

    /// The current key first, then the fallbacks.
    pub(crate) fn keys(&self) -> &[Key] {
        &self.keys
    }

    /// The signed value for `id`, under the current key only (S9).
    pub(crate) fn sign(&self, id: &SessionId) -> String {
        let mut raw = Vec::with_capacity(MAX_ID_BYTES + MAC_LEN);
        raw.extend_from_slice(id.expose_bytes());
        raw.extend_from_slice(&self.mac(0, id.expose_bytes()).finalize().into_bytes());
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// The id in `value` if its MAC verifies under one of our keys.
    pub(crate) fn verify(&self, value: &[u8]) -> Option<Verified> {
        if !(MIN_VALUE_LEN..=MAX_VALUE_LEN).contains(&value.len()) {
            return None;
        }
        let mut raw = [0u8; MAX_ID_BYTES + MAC_LEN];
        let len = URL_SAFE_NO_PAD.decode_slice(value, &mut raw).ok()?;
        let (id, tag) = raw[..len].split_at(len.checked_sub(MAC_LEN)?);
        let id = SessionId::from_bytes(id)?;
        // Every key is tried, so timing tells nothing about which one matched.
        let mut matched = None;
        for index in 0..self.keyed.len() {
            if self.mac(index, id.expose_bytes()).verify_slice(tag).is_ok() && matched.is_none() {
                matched = Some(index);
            }
        }
        matched.map(|index| Verified {
            id,
            by_fallback: index > 0,
        })
    }
}

/// Every value of every cookie named exactly `name`, across all `Cookie`
/// header fields (S19, S20, S22), in order.
///
/// Works on bytes: a neighbour cookie with non-ASCII bytes, bad
/// percent-encoding or stray quotes is skipped over, never an error (S21).
/// The `cookie` crate's parser takes `&str` only, so a header with one
/// non-UTF-8 byte would hide every cookie in it.
pub(crate) fn cookie_values<'a>(
    headers: &'a HeaderMap,
    name: &'a str,
) -> impl Iterator<Item = &'a [u8]> + 'a {
    headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|header| pairs(header.as_bytes()))
        .filter_map(move |pair| {
            // Most pairs are other cookies: reject them on their first bytes
            // instead of searching each for its `=`. Names are tokens (no
            // `=`, no whitespace), so this is `trim(key) == name`.
            let rest = pair.trim_ascii_start().strip_prefix(name.as_bytes())?;
            let value = rest.trim_ascii_start().strip_prefix(b"=")?.trim_ascii();
            // RFC 6265 allows the value in double quotes; they are not part
            // of it.
            Some(match value {
                [b'"', inner @ .., b'"'] => inner,
                _ => value,
            })
        })
}

/// The `;`-separated pairs of one `Cookie` field: `split`, with the
/// separator found by `memchr` instead of a byte at a time (a browser's
/// header is often a kilobyte of other cookies).
fn pairs(header: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(header);
    std::iter::from_fn(move || {
        let field = rest?;
        Some(match memchr::memchr(b';', field) {
            Some(at) => {
                rest = Some(&field[at + 1..]);
                &field[..at]
            }
            None => {
                rest = None;
                field
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use proptest::prelude::*;

    fn codec(name: &str) -> IdCodec {
        IdCodec::new(name.into(), Key::try_from(&[1u8; 32][..]).unwrap(), vec![])
    }

    #[test]
    fn s41_short_keys_are_refused() {
        assert_eq!(
            Key::try_from(&[0u8; 31][..]),
            Err(ConfigError::KeyTooShort { len: 31 })
        );
        assert!(Key::from_base64("c2hvcnQ=").is_err());
        assert_eq!(
            Key::from_base64("!!not base64!!").unwrap_err(),
            ConfigError::InvalidKeyEncoding
        );
        let long = URL_SAFE_NO_PAD.encode([9u8; 48]);
        assert!(Key::from_base64(&long).is_ok());
    }

    #[test]
    fn s9_fallback_keys_verify_and_only_the_current_key_signs() {
        let old = Key::try_from(&[1u8; 32][..]).unwrap();
        let new = Key::try_from(&[2u8; 32][..]).unwrap();
        let id = SessionId::generate();
        let old_value = IdCodec::new("id".into(), old.clone(), vec![]).sign(&id);
        let rotated = IdCodec::new("id".into(), new.clone(), vec![old.clone()]);
        let verified = rotated.verify(old_value.as_bytes()).unwrap();
        assert!(verified.by_fallback);
        assert_eq!(verified.id, id);
        let new_value = rotated.sign(&id);
        assert!(!rotated.verify(new_value.as_bytes()).unwrap().by_fallback);
        // A key that is no longer listed is rejected.
        assert!(IdCodec::new("id".into(), new, vec![])
            .verify(old_value.as_bytes())
            .is_none());
    }

    #[test]
    fn s10_a_value_signed_for_another_name_is_rejected() {
        let id = SessionId::generate();
        let value = codec("other").sign(&id);
        assert!(codec("id").verify(value.as_bytes()).is_none());
        assert!(codec("other").verify(value.as_bytes()).is_some());
    }

    #[test]
    fn s16_values_are_base64url() {
        let value = codec("id").sign(&SessionId::generate());
        assert_eq!(value.len(), 64);
        assert!(value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    }

    #[test]
    fn s19_s21_s22_cookie_parsing() {
        let mut headers = HeaderMap::new();
        headers.append(
            COOKIE,
            HeaderValue::from_bytes(b"a=\xff\xfe; id=one; x=\"unbalanced").unwrap(),
        );
        headers.append(
            COOKIE,
            HeaderValue::from_static("ID=upper; id =two;  id=three"),
        );
        headers.append(COOKIE, HeaderValue::from_static("%zz=%%; noequals; id"));
        let found: Vec<_> = cookie_values(&headers, "id").collect();
        assert_eq!(found, [&b"one"[..], b"two", b"three"]);
        assert_eq!(cookie_values(&headers, "__Host-id").count(), 0);
    }

    proptest! {
        #[test]
        fn signed_ids_round_trip(bytes in proptest::collection::vec(any::<u8>(), 16..=32)) {
            let id = SessionId::from_bytes(&bytes).unwrap();
            let codec = codec("id");
            let verified = codec.verify(codec.sign(&id).as_bytes()).unwrap();
            prop_assert_eq!(verified.id, id);
        }

        #[test]
        fn s7_any_changed_byte_is_rejected(pos in 0usize..64, replacement in any::<u8>()) {
            let codec = codec("id");
            let mut value = codec.sign(&SessionId::generate()).into_bytes();
            prop_assume!(value[pos] != replacement);
            value[pos] = replacement;
            prop_assert!(codec.verify(&value).is_none());
        }

        #[test]
        fn s7_truncated_values_are_rejected(cut in 0usize..64) {
            let codec = codec("id");
            let value = codec.sign(&SessionId::generate());
            prop_assert!(codec.verify(&value.as_bytes()[..cut]).is_none());
        }

        #[test]
        fn s7_garbage_never_panics(value in proptest::collection::vec(any::<u8>(), 0..10_240)) {
            prop_assert!(codec("id").verify(&value).is_none());
        }

        #[test]
        fn s21_garbage_headers_never_hide_or_fake_our_cookie(
            noise in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let codec = codec("id");
            let good = codec.sign(&SessionId::generate());
            let mut headers = HeaderMap::new();
            // Header values cannot hold CR, LF or NUL; anything else goes.
            let noise: Vec<u8> = noise.into_iter().filter(|b| !matches!(b, b'\r' | b'\n' | 0 | 0x7f)).collect();
            if let Ok(v) = HeaderValue::from_bytes(&noise) {
                headers.append(COOKIE, v);
            }
            headers.append(COOKIE, HeaderValue::from_str(&format!("id={good}")).unwrap());
            let verified: Vec<_> = cookie_values(&headers, "id").filter_map(|v| codec.verify(v)).collect();
            prop_assert_eq!(verified.len(), 1);
        }
    }

    #[test]
    fn a_value_in_double_quotes_is_the_value_without_them() {
        let codec = codec("id");
        let signed = codec.sign(&SessionId::generate());
        let mut headers = HeaderMap::new();
        let quoted = format!("a=1; id=\"{signed}\"; b=\"\"");
        headers.insert(COOKIE, HeaderValue::from_str(&quoted).unwrap());
        let values: Vec<_> = cookie_values(&headers, "id").collect();
        assert_eq!(values, [signed.as_bytes()]);
        assert!(codec.verify(values[0]).is_some());
        // A lone quote is not a pair of them: the value stays as sent.
        headers.insert(COOKIE, HeaderValue::from_static("id=\"abc"));
        assert_eq!(
            cookie_values(&headers, "id").collect::<Vec<_>>(),
            [&b"\"abc"[..]]
        );
    }

    #[test]
    fn s7_a_10_kb_value_is_rejected() {
        assert!(codec("id").verify(&[b'A'; 10 * 1024]).is_none());
    }

    /// What the `cookie` crate writes for the same cookie: the reference
    /// the hand-written `set_cookie` must match byte for byte.
    fn set_cookie_by_the_cookie_crate(
        config: &CookieConfig,
        value: &str,
        max_age: Option<time::Duration>,
        now: time::OffsetDateTime,
    ) -> String {
        let mut c = config.base(value.to_owned());
        if let Some(age) = max_age {
            c.set_max_age(age);
            c.set_expires(now + age);
        }
        c.to_string()
    }

    proptest! {
        /// `pairs` is `split(';')`, on any bytes (`;` made frequent).
        #[test]
        fn pairs_split_like_split(header in prop::collection::vec(prop_oneof![Just(b';'), any::<u8>()], 0..64)) {
            let split: Vec<&[u8]> = header.split(|&b| b == b';').collect();
            prop_assert_eq!(pairs(&header).collect::<Vec<_>>(), split);
        }
    }

    proptest! {
        #[test]
        fn set_cookie_is_what_the_cookie_crate_writes(
            name in prop::sample::select(vec!["id", "__Host-session", "s"]),
            path in prop::sample::select(vec!["/", "/app", "/a/b"]),
            domain in prop::option::of(prop::sample::select(vec!["example.com", "a.b.example"])),
            secure: bool,
            http_only: bool,
            same_site in prop::sample::select(vec![SameSite::Strict, SameSite::Lax, SameSite::None]),
            // 1970 to 2100, and every Max-Age a layer can send (0 to 400 days).
            now in 0i64..4_102_444_800,
            age in prop::option::of(0i64..=400 * 86_400),
        ) {
            let config = CookieConfig {
                name: name.to_owned(),
                path: path.to_owned(),
                domain: domain.map(str::to_owned),
                secure,
                http_only,
                same_site,
            };
            let at = time::OffsetDateTime::from_unix_timestamp(now).unwrap();
            let age = age.map(time::Duration::seconds);
            let value = "AbC-_09";
            prop_assert_eq!(
                config.set_cookie(value.to_owned(), age, now),
                set_cookie_by_the_cookie_crate(&config, value, age, at)
            );
        }
    }

    #[test]
    fn set_cookie_dates_around_leap_days_and_year_ends() {
        let config = CookieConfig::default();
        // 2000-02-28 23:59:59, 2024-02-29 12:00:00, 2026-12-31 23:59:59.
        for now in [951_782_399, 1_709_208_000, 1_798_761_599] {
            let at = time::OffsetDateTime::from_unix_timestamp(now).unwrap();
            for age in [0, 1, 59, 3_600, 86_399, 86_400, 34_560_000] {
                let age = Some(time::Duration::seconds(age));
                assert_eq!(
                    config.set_cookie("v".into(), age, now),
                    set_cookie_by_the_cookie_crate(&config, "v", age, at)
                );
            }
        }
        assert_eq!(
            config.set_cookie("v".into(), Some(time::Duration::seconds(1)), 0),
            "id=v; HttpOnly; SameSite=Lax; Secure; Path=/; Max-Age=1; Expires=Thu, 01 Jan 1970 00:00:01 GMT"
        );
    }
}

/// The `SameSite` attribute of the session cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    /// Sent only on same-site requests.
    Strict,
    /// Sent on same-site requests and top-level cross-site navigations: the
    /// default, and what a sign-in that must survive a link from an email
    /// needs.
    Lax,
    /// Sent on every request; needs `Secure` (S13).
    None,
}

/// The attributes of the session cookie.
#[derive(Debug, Clone)]
pub(crate) struct CookieConfig {
    pub(crate) name: String,
    pub(crate) path: String,
    pub(crate) domain: Option<String>,
    pub(crate) secure: bool,
    pub(crate) http_only: bool,
    pub(crate) same_site: SameSite,
}

/// The defaults (S12): `id`, `Path=/`, host-only, `Secure`, `HttpOnly`,
/// `SameSite=Lax`.
impl Default for CookieConfig {
    fn default() -> Self {
        Self {
            name: "id".into(),
            path: "/".into(),
            domain: None,
            secure: true,
            http_only: true,
            same_site: SameSite::Lax,
        }
    }
}

impl CookieConfig {
    /// Checks the rules of RFC 6265 and its prefixes (S13, S22).
    pub(crate) fn validate(&self, secure_set_explicitly: bool) -> Result<(), ConfigError> {
        // token = 1*<any CHAR except CTLs or separators>
        let is_token = |b: u8| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b);
        if self.name.is_empty() || !self.name.bytes().all(is_token) {
            return Err(ConfigError::InvalidCookieName);
        }
        let attribute_safe = |s: &str| s.bytes().all(|b| b.is_ascii_graphic() && b != b';');
        if !self.path.starts_with('/') || !attribute_safe(&self.path) {
            return Err(ConfigError::InvalidPath);
        }
        if let Some(domain) = &self.domain {
            // The builder drops one leading dot; a second is no domain.
            if domain.is_empty() || domain.starts_with('.') || !attribute_safe(domain) {
                return Err(ConfigError::InvalidDomain);
            }
        }
        // Browsers match the prefixes case-insensitively (RFC 6265bis) and
        // drop a cookie that breaks their rules: `__host-id` is held to them.
        let lower = self.name.to_ascii_lowercase();
        let host = lower.starts_with("__host-");
        if (host || lower.starts_with("__secure-")) && !self.secure && secure_set_explicitly {
            return Err(ConfigError::PrefixNeedsSecure);
        }
        if host && (self.domain.is_some() || self.path != "/") {
            return Err(ConfigError::HostPrefixRules);
        }
        if self.same_site == SameSite::None && !self.secure {
            return Err(ConfigError::SameSiteNoneWithoutSecure);
        }
        Ok(())
    }

    /// Borrows name, path and domain: a `Set-Cookie` costs one string.
    fn base(&self, value: String) -> cookie::Cookie<'_> {
        let mut c = cookie::Cookie::new(self.name.as_str(), value);
        c.set_path(self.path.as_str());
        if let Some(domain) = &self.domain {
            c.set_domain(domain.as_str());
        }
        c.set_secure(self.secure);
        c.set_http_only(self.http_only);
        c.set_same_site(match self.same_site {
            SameSite::Strict => cookie::SameSite::Strict,
            SameSite::Lax => cookie::SameSite::Lax,
            SameSite::None => cookie::SameSite::None,
        });
        c
    }

    /// The `Set-Cookie` value for a signed id; `max_age` `None` for a
    /// browser session (S14). `Expires` repeats `Max-Age` for old clients.
    ///
    /// Written by hand, byte for byte what the `cookie` crate writes (a
    /// test holds the two together): through `fmt` and `time`'s format
    /// descriptions it was ≈ 1 000 instructions, a third of the layer's
    /// own work on a new session (BENCHMARKS.md).
    pub(crate) fn set_cookie(
        &self,
        value: String,
        max_age: Option<time::Duration>,
        now: Unix,
    ) -> String {
        let mut out = String::with_capacity(self.name.len() + value.len() + 120);
        out.push_str(&self.name);
        out.push('=');
        out.push_str(&value);
        if self.http_only {
            out.push_str("; HttpOnly");
        }
        out.push_str(match self.same_site {
            SameSite::Strict => "; SameSite=Strict",
            SameSite::Lax => "; SameSite=Lax",
            SameSite::None => "; SameSite=None",
        });
        if self.secure {
            out.push_str("; Secure");
        }
        out.push_str("; Path=");
        out.push_str(&self.path);
        if let Some(domain) = &self.domain {
            out.push_str("; Domain=");
            out.push_str(domain);
        }
        if let Some(age) = max_age {
            out.push_str("; Max-Age=");
            push_decimal(&mut out, age.whole_seconds());
            out.push_str("; Expires=");
            push_http_date(
                &mut out,
                to_datetime(now.saturating_add(age.whole_seconds())),
            );
        }
        out
    }

    /// The `Set-Cookie` value that removes the cookie: same name, path,
    /// domain and flags, empty value, `Max-Age=0`, `Expires` in the past (S18).
    pub(crate) fn removal(&self) -> String {
        let mut c = self.base(String::new());
        c.make_removal();
        c.to_string()
    }
}

/// `n` in decimal.
fn push_decimal(out: &mut String, n: i64) {
    if n < 0 {
        out.push('-');
    }
    let mut digits = [0u8; 20];
    let mut rest = n.unsigned_abs();
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    digits[at..].iter().for_each(|&d| out.push(char::from(d)));
}

/// `t` as the `cookie` crate writes `Expires` (RFC 1123, as RFC 6265
/// wants): `Fri, 04 Dec 2026 02:50:00 GMT`; `t` is in UTC.
fn push_http_date(out: &mut String, t: time::OffsetDateTime) {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let two = |out: &mut String, n: u8| {
        out.push(char::from(b'0' + n / 10));
        out.push(char::from(b'0' + n % 10));
    };
    let (year, month, day) = t.to_calendar_date();
    out.push_str(DAYS[usize::from(t.weekday().number_days_from_monday())]);
    out.push_str(", ");
    two(out, day);
    out.push(' ');
    out.push_str(MONTHS[usize::from(u8::from(month) - 1)]);
    out.push(' ');
    push_decimal(out, i64::from(year));
    out.push(' ');
    two(out, t.hour());
    out.push(':');
    two(out, t.minute());
    out.push(':');
    two(out, t.second());
    out.push_str(" GMT");
}
