//! The axum extractor for [`Session`].

use std::convert::Infallible;

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;
use http::StatusCode;

use crate::error::SessionError;
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

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = MissingSessionLayer;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Session>()
            .cloned()
            .ok_or(MissingSessionLayer)
    }
}

/// `Option<Session>`: `None` on routes without the layer.
impl<S: Send + Sync> OptionalFromRequestParts<S> for Session {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Session>().cloned())
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
