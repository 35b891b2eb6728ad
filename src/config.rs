//! [`SessionLayerBuilder`]: the layer's settings, checked when it is built.

use std::sync::Arc;
use std::time::Duration;

use http::header::AUTHORIZATION;
use http::{HeaderName, StatusCode};

use crate::clock::{Clock, SystemClock};
use crate::cookie::{CookieConfig, IdCodec, Key, SameSite};
use crate::error::ConfigError;
use crate::expiry::Expiry;
use crate::id::{IdGenerator, IdSource, MIN_ID_BYTES};
use crate::layer::{Backend, SessionLayer, Shared};
use crate::store::cookie::CookieStore;
use crate::store::SessionStore;

/// Where the client carries the session: a cookie (the default) or a
/// request header (tokens, for APIs and mobile apps, S40).
///
/// With a header, the id is read only from that header (never from a
/// cookie, the URL or the body, S11); a response that creates or cycles a
/// session carries the new signed token in the response header, and one
/// that destroys it carries that header with an empty value. No cookie is
/// ever set. The token is signed for the header's name, so a cookie value
/// cannot stand in for a token or the other way round.
///
/// ```
/// use session_layer::{Key, MemoryStore, SessionLayer, Transport};
///
/// // `Authorization: Bearer <token>` in; `x-session-token: <token>` out.
/// let api = SessionLayer::builder(MemoryStore::new(), Key::generate())
///     .transport(Transport::bearer())
///     .build()
///     .unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// The session cookie.
    Cookie,
    /// A request header carries the token; `response` carries new tokens.
    Header {
        /// The request header. `Authorization` means `Bearer <token>`.
        request: HeaderName,
        /// The response header for new tokens and the removal signal.
        response: HeaderName,
    },
}

impl Transport {
    /// The response header [`Transport::bearer`] answers with.
    pub const TOKEN_HEADER: HeaderName = HeaderName::from_static("x-session-token");

    /// The same named header in both directions, e.g. `x-session-token`.
    pub fn header(name: HeaderName) -> Self {
        Self::Header {
            request: name.clone(),
            response: name,
        }
    }

    /// `Authorization: Bearer <token>` in, [`Transport::TOKEN_HEADER`] out.
    pub fn bearer() -> Self {
        Self::Header {
            request: AUTHORIZATION,
            response: Self::TOKEN_HEADER,
        }
    }

    /// The name that signed ids are bound to (S10).
    pub(crate) fn binding<'a>(&'a self, cookie_name: &'a str) -> &'a str {
        match self {
            Self::Cookie => cookie_name,
            Self::Header { request, .. } => request.as_str(),
        }
    }
}

/// What a layer keeps sessions in: any [`SessionStore`] (server-side
/// sessions), or a [`CookieStore`] (cookie sessions). Made with `.into()`,
/// which [`SessionLayer::builder`] calls for you.
#[derive(Debug, Clone)]
pub struct Storage {
    pub(crate) backend: Backend,
    /// The memory store, called directly instead of through its trait.
    #[cfg(feature = "memory-store")]
    pub(crate) memory: Option<crate::MemoryStore>,
}

impl<S: SessionStore> From<S> for Storage {
    fn from(store: S) -> Self {
        #[cfg(feature = "memory-store")]
        let memory = (&store as &dyn std::any::Any)
            .downcast_ref::<crate::MemoryStore>()
            .cloned();
        Self {
            #[cfg(feature = "memory-store")]
            memory,
            backend: Backend::Store(Arc::new(store)),
        }
    }
}

impl From<CookieStore> for Storage {
    fn from(store: CookieStore) -> Self {
        Self {
            backend: Backend::Cookie(store),
            #[cfg(feature = "memory-store")]
            memory: None,
        }
    }
}

/// The settings of a [`SessionLayer`]. Start from
/// [`SessionLayer::builder`]; every setter has a secure default:
///
/// | setting | default | why |
/// |---|---|---|
/// | [`cookie_name`](Self::cookie_name) | `id` | says nothing about the framework (S4) |
/// | [`secure`](Self::secure) | `true` | never sent over plain HTTP (S12) |
/// | [`http_only`](Self::http_only) | `true` | out of reach of page scripts (S12) |
/// | [`same_site`](Self::same_site) | `Lax` | not sent on cross-site subrequests (S12) |
/// | [`path`](Self::path) | `/` | one session for the whole site |
/// | [`domain`](Self::domain) | none (host-only) | not shared with subdomains |
/// | [`expiry`](Self::expiry) | browser session, 1 day idle | gone when the browser closes |
/// | [`refresh_after`](Self::refresh_after) | 0.25 | read-only requests write at most once per quarter of the idle window |
/// | [`save_on_server_error`](Self::save_on_server_error) | `false` | a failed request changes nothing (S28) |
/// | [`store_timeout`](Self::store_timeout) | 5 s | a stuck store never hangs a request (S36) |
/// | [`error_status`](Self::error_status) | 500 | what the client sees when the store fails |
/// | [`transport`](Self::transport) | cookie | [`Transport::bearer`] or a named header for APIs |
/// | [`eager_load`](Self::eager_load) | `false` | a request that never asks for its session costs no store call |
///
/// Settings that cannot work together are refused by
/// [`build`](Self::build) with a [`ConfigError`]:
///
/// ```
/// use session_layer::{ConfigError, Key, MemoryStore, SameSite, SessionLayer};
///
/// let err = SessionLayer::builder(MemoryStore::new(), Key::generate())
///     .same_site(SameSite::None)
///     .secure(false)
///     .build()
///     .unwrap_err();
/// assert_eq!(err, ConfigError::SameSiteNoneWithoutSecure);
/// ```
#[derive(Debug)]
#[must_use = "call `build` to get the layer"]
pub struct SessionLayerBuilder {
    backend: Backend,
    transport: Transport,
    key: Key,
    fallback_keys: Vec<Key>,
    cookie: CookieConfig,
    secure_set: bool,
    expiry: Expiry,
    refresh_after: f64,
    save_on_server_error: bool,
    store_timeout: Duration,
    error_status: StatusCode,
    eager_load: bool,
    ids: IdSource,
    clock: Arc<dyn Clock>,
    system_clock: bool,
    #[cfg(feature = "memory-store")]
    memory: Option<crate::MemoryStore>,
}

impl SessionLayerBuilder {
    pub(crate) fn new(storage: Storage, key: Key) -> Self {
        Self {
            backend: storage.backend,
            #[cfg(feature = "memory-store")]
            memory: storage.memory,
            transport: Transport::Cookie,
            key,
            fallback_keys: Vec::new(),
            cookie: CookieConfig::default(),
            secure_set: false,
            expiry: Expiry::default(),
            refresh_after: 0.25,
            save_on_server_error: false,
            store_timeout: Duration::from_secs(5),
            error_status: StatusCode::INTERNAL_SERVER_ERROR,
            eager_load: false,
            ids: IdSource::Os,
            clock: Arc::new(SystemClock),
            system_clock: true,
        }
    }

    /// A key that still verifies ids but no longer signs them: add the old
    /// key here when rotating, and remove it once every session signed with
    /// it has expired. Ids under a fallback key are re-signed with the
    /// current one on their next request (S9).
    pub fn fallback_key(mut self, key: Key) -> Self {
        self.fallback_keys.push(key);
        self
    }

    /// The cookie's name. `__Host-` and `__Secure-` names get the browser's
    /// prefix protections, and their rules are checked.
    pub fn cookie_name(mut self, name: impl Into<String>) -> Self {
        self.cookie.name = name.into();
        self
    }

    /// The cookie's `Path`.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.cookie.path = path.into();
        self
    }

    /// The cookie's `Domain`, which shares it with subdomains; host-only when
    /// unset. A leading dot is dropped, as browsers drop it (RFC 6265,
    /// 5.2.3): `.example.com` is `example.com`.
    pub fn domain(mut self, domain: impl Into<String>) -> Self {
        let domain = domain.into();
        self.cookie.domain = Some(match domain.strip_prefix('.') {
            Some(rest) => rest.to_owned(),
            None => domain,
        });
        self
    }

    /// The cookie's `Secure` flag. Turn it off only for plain-HTTP
    /// development on loopback.
    pub fn secure(mut self, secure: bool) -> Self {
        self.cookie.secure = secure;
        self.secure_set = true;
        self
    }

    /// The cookie's `HttpOnly` flag.
    pub fn http_only(mut self, http_only: bool) -> Self {
        self.cookie.http_only = http_only;
        self
    }

    /// The cookie's `SameSite` attribute.
    pub fn same_site(mut self, same_site: SameSite) -> Self {
        self.cookie.same_site = same_site;
        self
    }

    /// The expiry of sessions that do not set their own.
    pub fn expiry(mut self, expiry: Expiry) -> Self {
        self.expiry = expiry;
        self
    }

    /// Which fraction (0 to 1) of the idle window must pass before a
    /// read-only request extends it with a store `touch` (S32). 0 refreshes
    /// on every request.
    pub fn refresh_after(mut self, fraction: f64) -> Self {
        self.refresh_after = fraction;
        self
    }

    /// Whether changes are saved when the handler answers 5xx.
    pub fn save_on_server_error(mut self, save: bool) -> Self {
        self.save_on_server_error = save;
        self
    }

    /// The longest one store call may take before the request fails.
    pub fn store_timeout(mut self, timeout: Duration) -> Self {
        self.store_timeout = timeout;
        self
    }

    /// The status of the response when the store fails or times out.
    pub fn error_status(mut self, status: StatusCode) -> Self {
        self.error_status = status;
        self
    }

    /// Whether the layer loads the session before the inner service runs.
    /// By default it only checks the cookie's signature there, and the
    /// store is asked when the handler first asks for the session (the
    /// axum extractor, or [`Session::load`](crate::Session::load)), so a
    /// page that never takes a `Session` costs no store call (and does not
    /// extend the session's idle time). Turn it on for plain tower or
    /// hyper services that use the session without calling `load`, or for
    /// a layer further in that reads it; a store failure then answers with
    /// [`error_status`](Self::error_status) before the inner service runs.
    pub fn eager_load(mut self, eager: bool) -> Self {
        self.eager_load = eager;
        self
    }

    /// A custom source of ids; it must yield at least 16 bytes (S2).
    pub fn id_generator(mut self, generator: impl IdGenerator) -> Self {
        self.ids = IdSource::Custom(Arc::new(generator));
        self
    }

    /// Where the client carries the session id: cookie (default) or a
    /// header (tokens).
    pub fn transport(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }

    /// The clock that expiry is computed with.
    pub fn clock<C: Clock>(mut self, clock: C) -> Self {
        self.system_clock = crate::clock::is_system_clock::<C>();
        self.clock = Arc::new(clock);
        self
    }

    /// Checks the settings and builds the layer.
    pub fn build(mut self) -> Result<SessionLayer, ConfigError> {
        let lower = self.cookie.name.to_ascii_lowercase();
        let prefixed = lower.starts_with("__host-") || lower.starts_with("__secure-");
        if prefixed && !self.secure_set {
            self.cookie.secure = true;
        }
        self.cookie.validate(self.secure_set)?;
        // A zero or negative timeout would end every session as it starts.
        let positive = |d: Option<time::Duration>| d.is_none_or(|d| d.is_positive());
        if !(0.0..=1.0).contains(&self.refresh_after)
            || self.store_timeout.is_zero()
            || !positive(self.expiry.idle_timeout())
            || !positive(self.expiry.absolute_timeout())
        {
            return Err(ConfigError::InvalidDuration);
        }
        if let IdSource::Custom(generator) = &self.ids {
            let len = generator.generate().len();
            if len < MIN_ID_BYTES {
                return Err(ConfigError::WeakIdGenerator { len });
            }
        }
        if matches!(self.backend, Backend::Cookie(_)) && self.transport != Transport::Cookie {
            return Err(ConfigError::CookieSessionsNeedCookies);
        }
        let binding = self.transport.binding(&self.cookie.name).to_owned();
        let codec = IdCodec::new(binding, self.key, self.fallback_keys);
        Ok(SessionLayer::from_shared(Shared {
            backend: self.backend,
            #[cfg(feature = "memory-store")]
            memory: self.memory,
            transport: self.transport,
            codec,
            cookie: self.cookie,
            expiry: self.expiry,
            refresh_after: self.refresh_after,
            save_on_server_error: self.save_on_server_error,
            store_timeout: self.store_timeout,
            error_status: self.error_status,
            eager_load: self.eager_load,
            ids: self.ids,
            clock: self.clock,
            system_clock: self.system_clock,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;

    fn builder() -> SessionLayerBuilder {
        SessionLayer::builder(MemoryStore::new(), Key::generate())
    }

    #[test]
    fn only_stores_that_never_wait_run_inline() {
        let inline = |storage: Storage| {
            let layer = SessionLayer::builder(storage, Key::generate())
                .build()
                .unwrap();
            layer.shared().inline()
        };
        assert!(inline(MemoryStore::new().into()));
        assert!(Storage::from(MemoryStore::new()).memory.is_some());
        // Wrapped, the memory store is just some store: boxed path, trait calls.
        let wrapped = Storage::from(Arc::new(MemoryStore::new()));
        assert!(wrapped.memory.is_none());
        assert!(!inline(wrapped));
        assert!(inline(CookieStore::new().into()));
        let revocable = CookieStore::new().revocation_list(MemoryStore::new());
        assert!(!inline(revocable.into()));
    }

    #[test]
    fn s13_insecure_combinations_are_build_errors() {
        let e = |b: SessionLayerBuilder| b.build().unwrap_err();
        assert_eq!(
            e(builder().same_site(SameSite::None).secure(false)),
            ConfigError::SameSiteNoneWithoutSecure
        );
        assert_eq!(
            e(builder().cookie_name("__Host-id").domain("example.com")),
            ConfigError::HostPrefixRules
        );
        assert_eq!(
            e(builder().cookie_name("__Host-id").path("/app")),
            ConfigError::HostPrefixRules
        );
        assert_eq!(
            e(builder().cookie_name("__Host-id").secure(false)),
            ConfigError::PrefixNeedsSecure
        );
        assert_eq!(
            e(builder().cookie_name("__Secure-id").secure(false)),
            ConfigError::PrefixNeedsSecure
        );
        assert_eq!(
            e(builder().cookie_name("bad name")),
            ConfigError::InvalidCookieName
        );
        assert_eq!(e(builder().cookie_name("")), ConfigError::InvalidCookieName);
        assert_eq!(e(builder().path("relative")), ConfigError::InvalidPath);
        assert_eq!(e(builder().domain("a;b")), ConfigError::InvalidDomain);
        assert_eq!(e(builder().domain(".")), ConfigError::InvalidDomain);
        assert_eq!(
            e(builder().domain("..example.com")),
            ConfigError::InvalidDomain
        );
        // A leading dot is dropped, as browsers and the `cookie` crate do.
        let layer = builder().domain(".example.com").build().unwrap();
        assert_eq!(layer.shared().cookie.domain.as_deref(), Some("example.com"));
        assert_eq!(
            e(builder().refresh_after(1.5)),
            ConfigError::InvalidDuration
        );
        assert_eq!(
            e(builder().store_timeout(Duration::ZERO)),
            ConfigError::InvalidDuration
        );
        assert!(builder().cookie_name("__Host-id").build().is_ok());
        assert!(builder().same_site(SameSite::None).build().is_ok());
        let cookie_sessions = SessionLayer::builder(CookieStore::new(), Key::generate());
        assert_eq!(
            e(cookie_sessions.transport(Transport::bearer())),
            ConfigError::CookieSessionsNeedCookies
        );
    }

    #[test]
    fn s2_a_weak_id_generator_is_refused() {
        #[derive(Debug)]
        struct Short;
        impl IdGenerator for Short {
            fn generate(&self) -> Vec<u8> {
                vec![1; 8]
            }
        }
        assert_eq!(
            builder().id_generator(Short).build().unwrap_err(),
            ConfigError::WeakIdGenerator { len: 8 }
        );
    }
}
