//! Sessions for [tower] and [axum]: server-side sessions, tokens and
//! encrypted cookie sessions behind one API.
//!
//! A [`SessionLayer`] reads and verifies a signed session id from the
//! request, puts a [`Session`] handle in the request's extensions that loads
//! the session from a [`SessionStore`] when the handler first asks for it
//! (the axum extractor, or [`Session::load`]), lets the handler read and
//! change it, and writes the changes back before the response leaves.
//!
//! ```
//! use axum::{routing::get, Router};
//! use session_layer::{Key, MemoryStore, Session, SessionLayer};
//!
//! async fn count(session: Session) -> Result<String, session_layer::SessionError> {
//!     let n: u64 = session.get("n")?.unwrap_or(0) + 1;
//!     session.insert("n", n)?;
//!     Ok(format!("visit {n}"))
//! }
//!
//! let layer = SessionLayer::builder(MemoryStore::new(), Key::generate()).build()?;
//! let app: Router = Router::new().route("/", get(count)).layer(layer);
//! # Ok::<(), session_layer::ConfigError>(())
//! ```
//!
//! # Threat model
//!
//! The layer defends against: stolen ids from a leaked store or log (ids
//! are kept hashed, S5), forged or tampered cookies (HMAC over id and cookie
//! name, checked in constant time before any store call, S7-S10), session
//! fixation (unknown ids are never adopted, S6; [`Session::cycle_id`] on
//! sign-in, S24), replay after sign-out (S25), lost or resurrected data
//! under concurrent requests (S27, S34), cached pages that leak a cookie
//! (S37, S38), and a slow or failing store (timeouts, S36). It does not
//! defend against a stolen cookie used before it expires, nor CSRF on a
//! `SameSite=None` cookie: use TLS, short idle timeouts, and a CSRF token.
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `axum` | yes | [`Session`] as an axum extractor |
//! | `memory-store` | yes | [`MemoryStore`] |
//! | `redis-store` | | `RedisStore` |
//! | `postgres-store` | | `PostgresStore` |
//! | `sqlite-store` | | `SqliteStore` |
//! | `mysql-store` | | `MySqlStore` |
//! | `testing` | | the store conformance suite |
//!
//! [tower]: https://docs.rs/tower
//! [axum]: https://docs.rs/axum
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod clock;
mod config;
mod cookie;
mod ended;
mod error;
mod expiry;
#[cfg(feature = "axum")]
mod extract;
mod future;
mod id;
mod layer;
mod packed;
mod service;
mod session;
pub mod store;
// Without the memory store, nothing makes a JSON base.
#[cfg_attr(not(feature = "memory-store"), allow(dead_code))]
mod values;

pub use config::{SessionLayerBuilder, Storage, Transport};
pub use cookie::{Key, SameSite};
pub use error::{ConfigError, SessionError, SessionErrorKind, StoreError, StoreErrorKind};
pub use expiry::{Expiry, MAX_COOKIE_AGE};
#[cfg(feature = "axum")]
pub use extract::{MissingSessionLayer, SessionRejection};
pub use future::ResponseFuture;
pub use id::{IdGenerator, IdHash, SessionId, MAX_ID_BYTES, MIN_ID_BYTES};
pub use layer::SessionLayer;
pub use service::SessionService;
pub use session::{Session, MAX_NESTING};
#[cfg(feature = "memory-store")]
pub use store::memory::MemoryStore;
#[cfg(feature = "mysql-store")]
pub use store::mysql::MySqlStore;
#[cfg(feature = "postgres-store")]
pub use store::postgres::PostgresStore;
#[cfg(feature = "redis-store")]
pub use store::redis::RedisStore;
#[cfg(feature = "sqlite-store")]
pub use store::sqlite::SqliteStore;
pub use store::SessionStore;

/// The README's examples are compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
