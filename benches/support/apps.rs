//! The three apps every benchmark compares: the same routes and handlers
//! with no session layer (`bare`), under `session-layer` (`ours`), and under
//! tower-sessions 0.15 with its `MemoryStore` (`tower-sessions`).
//!
//! Shared by `benches/layer.rs` and the `bench_*` examples through
//! `#[path]`, so every number comes from one definition of the apps.
//!
//! | route | what the handler does |
//! |---|---|
//! | `/signin` | stores `user` and a counter `n`: the client gets a cookie |
//! | `/plain` | nothing with the session |
//! | `/read` | reads `user` |
//! | `/write` | reads `n` and stores `n + 1` |
//! | `/create` | stores `user` (sent without a cookie: a new session each time) |
#![allow(dead_code)] // each bench or example uses part of this

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;

/// Which app to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// No session layer: the ceiling.
    Bare,
    /// `session_layer::SessionLayer` on its `MemoryStore`.
    Ours,
    /// `tower_sessions::SessionManagerLayer` on its `MemoryStore`.
    TowerSessions,
    /// No sessions, only what handing any per-request value to an axum
    /// handler costs: see [`handle_only`]. Not in `ALL`; `benches/http.sh`
    /// and `benches/layer.rs` measure it where the floors need it.
    HandleOnly,
}

impl Mode {
    pub(crate) const ALL: [Mode; 3] = [Mode::Bare, Mode::Ours, Mode::TowerSessions];

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "bare" => Some(Self::Bare),
            "ours" => Some(Self::Ours),
            "tower-sessions" => Some(Self::TowerSessions),
            "handle-only" => Some(Self::HandleOnly),
            _ => None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Bare => "bare",
            Self::Ours => "ours",
            Self::TowerSessions => "tower-sessions",
            Self::HandleOnly => "handle-only",
        }
    }

    /// The app keeps sessions: a client signs in for a cookie. The others
    /// get a cookie header of the same length, so every app parses the
    /// same request.
    pub(crate) fn keeps_sessions(self) -> bool {
        matches!(self, Self::Ours | Self::TowerSessions)
    }
}

/// The app for `mode`; ours also hands back its store, so callers can
/// count sessions.
///
/// `with_state(())` turns the handlers into routes once, as `axum::serve`
/// does; a `Router` called without it rebuilds every route, and re-applies
/// every layer, on each request.
pub(crate) fn app(mode: Mode) -> (Router, Option<session_layer::MemoryStore>) {
    let (router, store) = match mode {
        Mode::Bare => (bare(), None),
        Mode::HandleOnly => (handle_only(), None),
        Mode::Ours => {
            let store = session_layer::MemoryStore::new();
            (ours(store.clone()), Some(store))
        }
        Mode::TowerSessions => (
            tower_sessions_app(tower_sessions::MemoryStore::default()),
            None,
        ),
    };
    (router.with_state(()), store)
}

pub(crate) fn bare() -> Router {
    Router::new()
        .route("/signin", get(|| async { "signed in" }))
        .route("/plain", get(|| async { "plain" }))
        .route("/read", get(|| async { "alice" }))
        .route("/write", get(|| async { "1" }))
        .route("/create", get(|| async { "created" }))
}

/// The least any session middleware costs in axum, with no session in it:
/// a layer that puts a lockable handle into each request's extensions (an
/// `Arc` allocation and an extension insert) and handlers that extract it;
/// `/read` locks it and returns an owned `String`, as the session apps'
/// handlers do. No cookie is read, no id, no store: what is left of a
/// session layer when its own work costs nothing.
pub(crate) fn handle_only() -> Router {
    use axum::Extension;
    use std::sync::{Arc, Mutex};

    #[derive(Clone)]
    struct Handle(Arc<Mutex<&'static str>>);

    #[derive(Clone)]
    struct WithHandle<S>(S);

    impl<S, B> tower::Service<axum::http::Request<B>> for WithHandle<S>
    where
        S: tower::Service<axum::http::Request<B>>,
    {
        type Response = S::Response;
        type Error = S::Error;
        type Future = S::Future;

        fn poll_ready(
            &mut self,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Self::Error>> {
            self.0.poll_ready(cx)
        }

        fn call(&mut self, mut req: axum::http::Request<B>) -> Self::Future {
            req.extensions_mut()
                .insert(Handle(Arc::new(Mutex::new("alice"))));
            self.0.call(req)
        }
    }

    async fn read(Extension(handle): Extension<Handle>) -> String {
        let user = *handle.0.lock().unwrap_or_else(|e| e.into_inner());
        user.to_owned()
    }
    async fn write(Extension(handle): Extension<Handle>) -> &'static str {
        *handle.0.lock().unwrap_or_else(|e| e.into_inner()) = "bob";
        "1"
    }

    Router::new()
        .route("/signin", get(write))
        .route("/plain", get(|| async { "plain" }))
        .route("/read", get(read))
        .route("/write", get(write))
        .route("/create", get(write))
        .layer(tower::layer::layer_fn(WithHandle))
}

/// Bare axum whose every handler busy-waits `ns` nanoseconds first: what a
/// layer that adds `ns` of CPU time per request costs over HTTP, kernel
/// effects included. The calibration in `benches/http.sh` turns that into
/// the time a layer may spend for a given ratio to bare.
pub(crate) fn bare_spinning(ns: u64) -> Router {
    let spin = move || {
        let start = std::time::Instant::now();
        let ns = std::time::Duration::from_nanos(ns);
        // Bounded by the clock; `black_box` keeps the loop.
        while std::hint::black_box(start.elapsed()) < ns {}
    };
    let route = move |body: &'static str| {
        get(move || async move {
            spin();
            body
        })
    };
    Router::new()
        .route("/signin", route("signed in"))
        .route("/plain", route("plain"))
        .route("/read", route("alice"))
        .route("/write", route("1"))
        .route("/create", route("created"))
}

pub(crate) fn ours(store: session_layer::MemoryStore) -> Router {
    ours_on(store.into(), |layer: session_layer::SessionLayerBuilder| {
        layer
    })
}

/// Ours on any store, its layer set up by `configure` (for the store
/// benchmarks: `eager_load`, say).
pub(crate) fn ours_on(
    store: session_layer::Storage,
    configure: impl FnOnce(session_layer::SessionLayerBuilder) -> session_layer::SessionLayerBuilder,
) -> Router {
    use session_layer::{Key, Session, SessionError, SessionLayer};

    async fn signin(session: Session) -> Result<&'static str, SessionError> {
        session.insert("user", "alice")?;
        session.insert("n", 0u64)?;
        Ok("signed in")
    }
    async fn read(session: Session) -> Result<String, SessionError> {
        Ok(session.get::<String>("user")?.unwrap_or_default())
    }
    async fn write(session: Session) -> Result<String, SessionError> {
        let n = session.get::<u64>("n")?.unwrap_or(0) + 1;
        session.insert("n", n)?;
        Ok(n.to_string())
    }
    async fn create(session: Session) -> Result<&'static str, SessionError> {
        session.insert("user", "alice")?;
        Ok("created")
    }

    let layer = configure(SessionLayer::builder(store, Key::generate()).secure(false))
        .build()
        .expect("valid settings");
    Router::new()
        .route("/signin", get(signin))
        .route("/plain", get(|| async { "plain" }))
        .route("/read", get(read))
        .route("/write", get(write))
        .route("/create", get(create))
        .layer(layer)
}

pub(crate) fn tower_sessions_app(store: tower_sessions::MemoryStore) -> Router {
    use tower_sessions::{Session, SessionManagerLayer};

    fn fail(_: tower_sessions::session::Error) -> StatusCode {
        StatusCode::INTERNAL_SERVER_ERROR
    }
    async fn signin(session: Session) -> Result<&'static str, StatusCode> {
        session.insert("user", "alice").await.map_err(fail)?;
        session.insert("n", 0u64).await.map_err(fail)?;
        Ok("signed in")
    }
    async fn read(session: Session) -> Result<String, StatusCode> {
        let user = session.get::<String>("user").await.map_err(fail)?;
        Ok(user.unwrap_or_default())
    }
    async fn write(session: Session) -> Result<String, StatusCode> {
        let n = session.get::<u64>("n").await.map_err(fail)?.unwrap_or(0) + 1;
        session.insert("n", n).await.map_err(fail)?;
        Ok(n.to_string())
    }
    async fn create(session: Session) -> Result<&'static str, StatusCode> {
        session.insert("user", "alice").await.map_err(fail)?;
        Ok("created")
    }

    Router::new()
        .route("/signin", get(signin))
        .route("/plain", get(|| async { "plain" }))
        .route("/read", get(read))
        .route("/write", get(write))
        .route("/create", get(create))
        .layer(SessionManagerLayer::new(store).with_secure(false))
}

/// The `name=value` part of the first `Set-Cookie` of `res`.
pub(crate) fn cookie_of<B>(res: &axum::http::Response<B>) -> Option<String> {
    let set_cookie = res.headers().get(axum::http::header::SET_COOKIE)?;
    let pair = set_cookie.to_str().ok()?.split(';').next()?;
    Some(pair.trim().to_owned())
}
