//! The axum extractor for [`Session`].

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;
use http::StatusCode;

use crate::error::{SessionError, StoreError};
use crate::service::store_error_response;
use crate::session::Session;

/// The rejection when a handler asks for a [`Session`] on a route that the
/// [`SessionLayer`](crate::SessionLayer) does not wrap: a programming error,
/// answered with 500 and a message that says so.
#[derive(Debug, Clone, Copy)]
pub struct MissingSessionLayer;

impl std::fmt::Display for MissingSessionLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "no session in the request extensions: is `SessionLayer` installed on this route?",
        )
    }
}

impl std::error::Error for MissingSessionLayer {}

impl IntoResponse for MissingSessionLayer {
    fn into_response(self) -> Response {
        (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
    }
}

/// Why a handler could not have its [`Session`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SessionRejection {
    /// The route has no [`SessionLayer`](crate::SessionLayer): a
    /// programming error, answered with 500.
    MissingLayer(MissingSessionLayer),
    /// The store failed or timed out while the session was loaded: the
    /// layer's [`error_status`](crate::SessionLayerBuilder::error_status),
    /// with the error in the response's extensions, as for a failed commit.
    Store {
        /// What the store said.
        error: StoreError,
        /// The layer's error status.
        status: StatusCode,
    },
}

impl std::fmt::Display for SessionRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::MissingLayer(missing) => missing.fmt(f),
            Self::Store { error, .. } => write!(f, "the session could not be loaded: {error}"),
        }
    }
}

impl std::error::Error for SessionRejection {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::MissingLayer(missing) => Some(missing),
            Self::Store { error, .. } => Some(error),
        }
    }
}

impl IntoResponse for SessionRejection {
    fn into_response(self) -> Response {
        match self {
            Self::MissingLayer(missing) => missing.into_response(),
            Self::Store { error, status } => store_error_response(status, error),
        }
    }
}

/// The session of the request, loaded: one store call, the first time a
/// request asks (see [`Session::load`]).
impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let session = parts
            .extensions
            .get::<Session>()
            .cloned()
            .ok_or(SessionRejection::MissingLayer(MissingSessionLayer))?;
        loaded(session).await
    }
}

/// `Option<Session>`: `None` on routes without the layer; a store failure
/// still rejects.
impl<S: Send + Sync> OptionalFromRequestParts<S> for Session {
    type Rejection = SessionRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        match parts.extensions.get::<Session>().cloned() {
            Some(session) => loaded(session).await.map(Some),
            None => Ok(None),
        }
    }
}

async fn loaded(session: Session) -> Result<Session, SessionRejection> {
    match session.load().await {
        Ok(()) => Ok(session),
        Err(error) => Err(SessionRejection::Store {
            error,
            status: session.error_status(),
        }),
    }
}

/// A handler's `?` on a session call becomes a 500; the details go to the
/// log, not to the client.
impl IntoResponse for SessionError {
    fn into_response(self) -> Response {
        tracing::error!(error = %self, source = ?std::error::Error::source(&self), "session value error");
        (StatusCode::INTERNAL_SERVER_ERROR, "session error").into_response()
    }
}
