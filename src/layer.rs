//! [`SessionLayer`]: the middleware, as a tower [`Layer`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use tower_layer::Layer;

use crate::clock::Clock;
use crate::config::{SessionLayerBuilder, Storage, Transport};
use crate::cookie::{CookieConfig, IdCodec, Key};
use crate::expiry::Expiry;
use crate::id::IdSource;
use crate::service::SessionService;
use crate::store::cookie::CookieStore;
use crate::store::SessionStore;

/// Gives every request a [`Session`](crate::Session).
///
/// Built once with [`SessionLayer::builder`]; cloning is cheap (one `Arc`).
///
/// ```
/// use axum::{routing::get, Router};
/// use session_layer::{Key, MemoryStore, Session, SessionLayer};
///
/// async fn count(session: Session) -> Result<String, session_layer::SessionError> {
///     let n: u64 = session.get("n")?.unwrap_or(0) + 1;
///     session.insert("n", n)?;
///     Ok(format!("visit {n}"))
/// }
///
/// let layer = SessionLayer::builder(MemoryStore::new(), Key::generate()).build().unwrap();
/// let app: Router = Router::new().route("/", get(count)).layer(layer);
/// ```
#[derive(Clone)]
pub struct SessionLayer {
    shared: Arc<Shared>,
}

/// What every request of one layer shares.
pub(crate) struct Shared {
    pub(crate) backend: Backend,
    /// The same store as `backend`, when it is the memory store: its calls
    /// are made directly.
    #[cfg(feature = "memory-store")]
    pub(crate) memory: Option<crate::MemoryStore>,
    pub(crate) transport: Transport,
    pub(crate) codec: IdCodec,
    pub(crate) cookie: CookieConfig,
    pub(crate) expiry: Expiry,
    pub(crate) refresh_after: f64,
    pub(crate) save_on_server_error: bool,
    pub(crate) store_timeout: Duration,
    pub(crate) error_status: StatusCode,
    /// Load the session before the inner service runs.
    pub(crate) eager_load: bool,
    pub(crate) ids: IdSource,
    pub(crate) clock: Arc<dyn Clock>,
    /// `clock` is the [`SystemClock`](crate::clock::SystemClock).
    #[cfg_attr(not(feature = "memory-store"), allow(dead_code))]
    pub(crate) system_clock: bool,
}

/// Where a layer's sessions live.
#[derive(Debug, Clone)]
pub(crate) enum Backend {
    /// Server-side sessions: the client holds a signed id.
    Store(Arc<dyn SessionStore>),
    /// Cookie sessions: the client holds the sealed session.
    Cookie(CookieStore),
}

impl Shared {
    /// Every store call completes when first polled (no I/O): the memory
    /// store, or cookie sessions without a revocation list. The layer then
    /// runs the whole session path in place, without boxing a future.
    pub(crate) fn inline(&self) -> bool {
        match &self.backend {
            #[cfg(feature = "memory-store")]
            Backend::Store(_) => self.memory.is_some(),
            #[cfg(not(feature = "memory-store"))]
            Backend::Store(_) => false,
            Backend::Cookie(cookies) => cookies.revocations.is_none(),
        }
    }
}

impl SessionLayer {
    /// Starts a layer on `store` (any [`SessionStore`], or a
    /// [`CookieStore`] for cookie sessions), signing with `key`. See
    /// [`SessionLayerBuilder`] for the settings and their defaults.
    pub fn builder(store: impl Into<Storage>, key: Key) -> SessionLayerBuilder {
        SessionLayerBuilder::new(store.into(), key)
    }

    #[cfg(test)]
    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    pub(crate) fn from_shared(shared: Shared) -> Self {
        Self {
            shared: Arc::new(shared),
        }
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService::new(inner, self.shared.clone())
    }
}

impl fmt::Debug for SessionLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionLayer")
            .field("shared", &self.shared)
            .finish()
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No key material: the codec's keys have redacted Debug anyway.
        f.debug_struct("Shared")
            .field("backend", &self.backend)
            .field("transport", &self.transport)
            .field("cookie", &self.cookie)
            .field("expiry", &self.expiry)
            .field("store_timeout", &self.store_timeout)
            .finish_non_exhaustive()
    }
}
