//! The crate's errors: opaque types with a `kind()`, sources kept.

use std::error::Error as StdError;
use std::fmt;

use std::sync::Arc;

type BoxError = Box<dyn StdError + Send + Sync>;

/// What went wrong in a store call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The backend could not be reached or failed (connection, query, I/O).
    Backend,
    /// The call did not finish within the layer's store timeout.
    Timeout,
    /// A record in the store could not be decoded. The layer treats the
    /// session as absent and logs a warning (S35).
    Decode,
}

/// An error from a [`SessionStore`](crate::SessionStore) call.
///
/// ```
/// use session_layer::{StoreError, StoreErrorKind};
///
/// let err = StoreError::backend(std::io::Error::other("connection refused"));
/// assert_eq!(err.kind(), StoreErrorKind::Backend);
/// assert_eq!(err.to_string(), "session store failed");
/// ```
///
/// Cheap to clone; when it fails a request, the layer also puts it in the
/// error response's extensions.
#[derive(Clone)]
pub struct StoreError {
    kind: StoreErrorKind,
    source: Option<Arc<dyn StdError + Send + Sync>>,
}

impl StoreError {
    /// The backend failed; `source` says how.
    pub fn backend(source: impl Into<BoxError>) -> Self {
        Self {
            kind: StoreErrorKind::Backend,
            source: Some(Arc::from(source.into())),
        }
    }

    /// A stored record could not be decoded; `source` says why.
    pub fn decode(source: impl Into<BoxError>) -> Self {
        Self {
            kind: StoreErrorKind::Decode,
            source: Some(Arc::from(source.into())),
        }
    }

    /// The store call timed out.
    pub fn timeout() -> Self {
        Self {
            kind: StoreErrorKind::Timeout,
            source: None,
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }
}

impl fmt::Debug for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("StoreError");
        d.field("kind", &self.kind);
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            StoreErrorKind::Backend => "session store failed",
            StoreErrorKind::Timeout => "session store timed out",
            StoreErrorKind::Decode => "session record could not be decoded",
        })
    }
}

impl StdError for StoreError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

/// What went wrong when reading or writing a session value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionErrorKind {
    /// The value could not be turned into JSON.
    Serialize,
    /// The stored value does not have the type asked for.
    Deserialize,
    /// A cookie session grew past what one cookie can carry (S15).
    TooLarge,
    /// The session was used before [`Session::load`](crate::Session::load)
    /// (there was nothing to read, and the response commits nothing and is
    /// a 500), or after its `load` failed (then the handler's own answer
    /// stands).
    NotLoaded,
    /// The response has been committed (a task that outlived its request):
    /// the session can no longer be read or changed.
    Committed,
}

/// An error from a [`Session`](crate::Session) method. With the `axum`
/// feature it is also a response (500), so handlers can use `?`.
#[derive(Debug, Clone)]
pub struct SessionError {
    kind: SessionErrorKind,
    source: Option<Arc<serde_json::Error>>,
}

impl SessionError {
    pub(crate) fn serialize(source: serde_json::Error) -> Self {
        Self {
            kind: SessionErrorKind::Serialize,
            source: Some(Arc::new(source)),
        }
    }

    pub(crate) fn deserialize(source: serde_json::Error) -> Self {
        Self {
            kind: SessionErrorKind::Deserialize,
            source: Some(Arc::new(source)),
        }
    }

    pub(crate) fn too_large() -> Self {
        Self {
            kind: SessionErrorKind::TooLarge,
            source: None,
        }
    }

    pub(crate) fn committed() -> Self {
        Self {
            kind: SessionErrorKind::Committed,
            source: None,
        }
    }

    pub(crate) fn not_loaded() -> Self {
        Self {
            kind: SessionErrorKind::NotLoaded,
            source: None,
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> SessionErrorKind {
        self.kind
    }
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            SessionErrorKind::Serialize => "session value could not be serialized",
            SessionErrorKind::Deserialize => "session value has another type",
            SessionErrorKind::TooLarge => "session is too large for a cookie",
            SessionErrorKind::Committed => "session used after its response was committed",
            SessionErrorKind::NotLoaded => {
                "session used before it was loaded: call `Session::load().await` first"
            }
        })
    }
}

impl StdError for SessionError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

/// A layer configuration that would be insecure or cannot work, found when
/// the layer is built (S13, S41, S2).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A key shorter than [`Key::MIN_LEN`](crate::Key::MIN_LEN) bytes.
    KeyTooShort {
        /// The length given.
        len: usize,
    },
    /// A key given as text is not base64.
    InvalidKeyEncoding,
    /// The cookie name is empty or not an RFC 6265 token.
    InvalidCookieName,
    /// The path is not absolute or has characters a cookie cannot carry.
    InvalidPath,
    /// The domain has characters a cookie cannot carry.
    InvalidDomain,
    /// `SameSite=None` needs `Secure`.
    SameSiteNoneWithoutSecure,
    /// A `__Host-` cookie cannot have a `Domain` and must have `Path=/`.
    HostPrefixRules,
    /// A `__Secure-` or `__Host-` cookie cannot turn `Secure` off.
    PrefixNeedsSecure,
    /// The custom id generator yields fewer than 128 bits.
    WeakIdGenerator {
        /// The number of bytes it yielded.
        len: usize,
    },
    /// The token header name is not a valid header name.
    InvalidHeaderName,
    /// A timeout or fraction is out of range.
    InvalidDuration,
    /// A [`CookieStore`](crate::store::CookieStore) layer must use the
    /// cookie transport.
    CookieSessionsNeedCookies,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::KeyTooShort { len } => write!(
                f,
                "key is {len} bytes, at least {} are needed",
                crate::Key::MIN_LEN
            ),
            Self::InvalidKeyEncoding => f.write_str("key is not valid base64"),
            Self::InvalidCookieName => f.write_str("cookie name is not a valid token"),
            Self::InvalidPath => {
                f.write_str("cookie path must start with `/` and hold only cookie-safe characters")
            }
            Self::InvalidDomain => {
                f.write_str("cookie domain holds characters a cookie cannot carry")
            }
            Self::SameSiteNoneWithoutSecure => f.write_str("`SameSite=None` requires `Secure`"),
            Self::HostPrefixRules => {
                f.write_str("a `__Host-` cookie must have `Path=/` and no `Domain`")
            }
            Self::PrefixNeedsSecure => {
                f.write_str("a `__Secure-` or `__Host-` cookie must be `Secure`")
            }
            Self::WeakIdGenerator { len } => {
                write!(f, "id generator yields {len} bytes, at least 16 are needed")
            }
            Self::InvalidHeaderName => f.write_str("token header name is not a valid header name"),
            Self::InvalidDuration => f.write_str("timeout or fraction is out of range"),
            Self::CookieSessionsNeedCookies => {
                f.write_str("cookie sessions travel only in a cookie, not in a token header")
            }
        }
    }
}

impl StdError for ConfigError {}
