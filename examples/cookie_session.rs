//! Cookie sessions: the whole (small) session lives in an encrypted,
//! authenticated cookie; the server keeps nothing.
//!
//! ```text
//! cargo run --example cookie_session     # http://127.0.0.1:3003
//! curl -c jar -b jar http://127.0.0.1:3003/         # "visit 1", "visit 2", …
//! curl -c jar -b jar -X POST http://127.0.0.1:3003/forget
//! ```
//!
//! Switching the demo's other apps to cookie sessions is one line: pass
//! `CookieStore::new()` where the store goes. What cookie sessions cannot do
//! (revoke a stolen copy, hold more than ~3 KB) is in `CookieStore`'s docs,
//! with the remedy: `CookieStore::new().revocation_list(store)`.

use axum::routing::{get, post};
use axum::Router;
use session_layer::store::CookieStore;
use session_layer::{Expiry, Key, Session, SessionError, SessionLayer};
use time::Duration;

async fn visit(session: Session) -> Result<String, SessionError> {
    let visits = session.get::<u64>("visits")?.unwrap_or(0) + 1;
    session.insert("visits", visits)?;
    Ok(format!("visit {visits}\n"))
}

async fn forget(session: Session) -> &'static str {
    session.destroy();
    "forgotten\n"
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3003);
    let layer = SessionLayer::builder(CookieStore::new(), Key::generate())
        .expiry(Expiry::idle(Duration::days(7)))
        // Plain HTTP on loopback: clients withhold `Secure` cookies there.
        .secure(false)
        .build()?;
    let app = Router::new()
        .route("/", get(visit))
        .route("/forget", post(forget))
        .layer(layer);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
