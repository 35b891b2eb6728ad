//! A JSON API with token sessions: sign-in returns a token, requests that
//! carry it see the session, sign-out ends it. No cookies.
//!
//! ```text
//! cargo run --example api_token          # http://127.0.0.1:3002
//!
//! # Sign in: the token comes back in the `x-session-token` header.
//! TOKEN=$(curl -s -D - -o /dev/null -H 'content-type: application/json' \
//!     -d '{"user":"ada"}' http://127.0.0.1:3002/sign-in \
//!     | tr -d '\r' | sed -n 's/^x-session-token: //p')
//!
//! curl -s -H "Authorization: Bearer $TOKEN" http://127.0.0.1:3002/me
//! # {"requests":1,"user":"ada"}
//! curl -s -H "Authorization: Bearer $TOKEN" http://127.0.0.1:3002/me
//! # {"requests":2,"user":"ada"}
//!
//! # Sign out: the response carries an empty `x-session-token`; the token is dead.
//! curl -s -i -X POST -H "Authorization: Bearer $TOKEN" http://127.0.0.1:3002/sign-out
//! curl -s -H "Authorization: Bearer $TOKEN" http://127.0.0.1:3002/me
//! # {"error":"not signed in"}
//! ```

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use session_layer::{Expiry, Key, MemoryStore, Session, SessionError, SessionLayer, Transport};
use time::Duration;

#[derive(Deserialize)]
struct SignIn {
    user: String,
}

async fn sign_in(session: Session, Json(body): Json<SignIn>) -> Result<Response, SessionError> {
    if body.user.trim().is_empty() {
        return Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"error": "user is empty"})),
        )
            .into_response());
    }
    // A new token on every sign-in (no fixation); the old one stops working.
    session.cycle_id();
    session.insert("user", body.user.trim())?;
    session.insert("requests", 0)?;
    Ok(Json(json!({"signed_in": body.user.trim()})).into_response())
}

async fn me(session: Session) -> Result<Response, SessionError> {
    let Some(user) = session.get::<String>("user")? else {
        return Ok((
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "not signed in"})),
        )
            .into_response());
    };
    let requests = session.get::<u64>("requests")?.unwrap_or(0) + 1;
    session.insert("requests", requests)?;
    Ok(Json(json!({"user": user, "requests": requests})).into_response())
}

async fn sign_out(session: Session) -> StatusCode {
    session.destroy();
    StatusCode::NO_CONTENT
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3002);
    // The same store and key as a cookie app would use; only the transport differs.
    let layer = SessionLayer::builder(MemoryStore::new(), Key::generate())
        .transport(Transport::bearer())
        .expiry(Expiry::idle(Duration::hours(8)))
        .build()?;
    let app = Router::new()
        .route("/sign-in", post(sign_in))
        .route("/me", get(me))
        .route("/sign-out", post(sign_out))
        .layer(layer);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
