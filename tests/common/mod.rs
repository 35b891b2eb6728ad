//! Shared helpers for the end-to-end tests: a store wrapper that counts and
//! fails calls on demand, a small app, and a harness that sends requests
//! through the real layer with a manual clock.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::Path;
use axum::routing::{get, post};
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::header::{COOKIE, SET_COOKIE};
use http::{Extensions, HeaderMap, HeaderValue, Request, StatusCode};
use http_body_util::BodyExt;
use session_layer::clock::ManualClock;
use session_layer::store::{Changes, Record, SessionStore};
use session_layer::{
    Expiry, IdHash, Key, MemoryStore, Session, SessionError, SessionId, SessionLayer,
    SessionLayerBuilder, StoreError,
};
use time::OffsetDateTime;
use tower::ServiceExt;

/// The default cookie name of the layer.
pub const NAME: &str = "id";

/// One kind of store call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Create,
    Load,
    Save,
    Delete,
    Touch,
    Purge,
}

const OPS: [Op; 6] = [
    Op::Create,
    Op::Load,
    Op::Save,
    Op::Delete,
    Op::Touch,
    Op::Purge,
];

/// What a store call does instead of (or before) its real work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Never returns.
    Hang,
    /// Fails with a backend error.
    Backend,
    /// Fails with a decode error (a corrupt record).
    Decode,
    /// Waits this long, then does the real work.
    Delay(std::time::Duration),
    /// Fails this many times, then works.
    BackendTimes(usize),
}

#[derive(Debug, Default)]
struct TestStoreState {
    calls: [AtomicUsize; 6],
    faults: Mutex<HashMap<Op, Fault>>,
    /// Every key and payload the layer handed to the store, as text (S5).
    seen: Mutex<Vec<String>>,
}

/// A [`MemoryStore`] behind a wrapper that counts every call, records what
/// it was given, and fails or hangs on demand. Clones share everything.
#[derive(Debug, Clone)]
pub struct TestStore {
    pub memory: MemoryStore,
    state: Arc<TestStoreState>,
}

fn index(op: Op) -> usize {
    OPS.iter().position(|o| *o == op).unwrap()
}

impl TestStore {
    pub fn new(clock: ManualClock) -> Self {
        Self {
            memory: MemoryStore::with_clock(clock),
            state: Arc::default(),
        }
    }

    pub fn calls(&self, op: Op) -> usize {
        self.state.calls[index(op)].load(Ordering::SeqCst)
    }

    /// Every call that writes: create, save, delete, touch.
    pub fn writes(&self) -> usize {
        [Op::Create, Op::Save, Op::Delete, Op::Touch]
            .iter()
            .map(|op| self.calls(*op))
            .sum()
    }

    pub fn total_calls(&self) -> usize {
        OPS.iter().map(|op| self.calls(*op)).sum()
    }

    pub fn fail(&self, op: Op, fault: Fault) {
        self.state.faults.lock().unwrap().insert(op, fault);
    }

    pub fn heal(&self) {
        self.state.faults.lock().unwrap().clear();
    }

    pub fn seen(&self) -> Vec<String> {
        self.state.seen.lock().unwrap().clone()
    }

    fn note(&self, text: String) {
        self.state.seen.lock().unwrap().push(text);
    }

    async fn enter(&self, op: Op) -> Result<(), StoreError> {
        self.state.calls[index(op)].fetch_add(1, Ordering::SeqCst);
        let fault = self.state.faults.lock().unwrap().get(&op).copied();
        match fault {
            None => Ok(()),
            Some(Fault::Hang) => std::future::pending().await,
            Some(Fault::Backend) => Err(StoreError::backend(std::io::Error::other(
                "test store is down",
            ))),
            Some(Fault::Decode) => Err(StoreError::decode("corrupt test record")),
            Some(Fault::Delay(d)) => {
                tokio::time::sleep(d).await;
                Ok(())
            }
            Some(Fault::BackendTimes(n)) => {
                let mut faults = self.state.faults.lock().unwrap();
                if n <= 1 {
                    faults.remove(&op);
                } else {
                    faults.insert(op, Fault::BackendTimes(n - 1));
                }
                Err(StoreError::backend(std::io::Error::other(
                    "test store is down for a while",
                )))
            }
        }
    }
}

#[async_trait]
impl SessionStore for TestStore {
    async fn create(&self, id: &IdHash, record: &Record) -> Result<bool, StoreError> {
        self.enter(Op::Create).await?;
        self.note(format!(
            "create {id} {}",
            serde_json::to_string(record).unwrap()
        ));
        self.memory.create(id, record).await
    }

    async fn load(&self, id: &IdHash) -> Result<Option<Record>, StoreError> {
        self.enter(Op::Load).await?;
        self.note(format!("load {id}"));
        self.memory.load(id).await
    }

    async fn save(&self, id: &IdHash, changes: &Changes) -> Result<bool, StoreError> {
        self.enter(Op::Save).await?;
        self.note(format!("save {id} {changes:?}"));
        self.memory.save(id, changes).await
    }

    async fn delete(&self, id: &IdHash) -> Result<bool, StoreError> {
        self.enter(Op::Delete).await?;
        self.note(format!("delete {id}"));
        self.memory.delete(id).await
    }

    async fn touch(
        &self,
        id: &IdHash,
        last_active: OffsetDateTime,
        expires_at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        self.enter(Op::Touch).await?;
        self.note(format!("touch {id} {last_active} {expires_at}"));
        self.memory.touch(id, last_active, expires_at).await
    }

    async fn purge_expired(&self) -> Result<u64, StoreError> {
        self.enter(Op::Purge).await?;
        self.memory.purge_expired().await
    }
}

// --- the app ---------------------------------------------------------------

fn show(value: Option<serde_json::Value>) -> String {
    match value {
        Some(serde_json::Value::String(s)) => s,
        Some(v) => v.to_string(),
        None => "none".into(),
    }
}

async fn get_value(session: Session, Path(key): Path<String>) -> Result<String, SessionError> {
    Ok(show(session.get::<serde_json::Value>(&key)?))
}

async fn set_value(
    session: Session,
    Path((key, value)): Path<(String, String)>,
) -> Result<&'static str, SessionError> {
    session.insert(&key, value)?;
    Ok("ok")
}

async fn remove_value(session: Session, Path(key): Path<String>) -> String {
    show(session.remove(&key))
}

async fn count(session: Session) -> Result<String, SessionError> {
    let n: u64 = session.get("n")?.unwrap_or(0) + 1;
    session.insert("n", n)?;
    Ok(n.to_string())
}

async fn keys(session: Session) -> String {
    session.keys().join(",")
}

async fn login(session: Session, Path(user): Path<String>) -> Result<&'static str, SessionError> {
    session.insert("user", user)?;
    session.cycle_id();
    Ok("ok")
}

async fn logout(session: Session) -> &'static str {
    session.destroy();
    "bye"
}

async fn clear(session: Session) -> &'static str {
    session.clear();
    "cleared"
}

async fn remember(session: Session) -> Result<&'static str, SessionError> {
    session.insert("user", "remembered")?;
    session.set_expiry(Some(REMEMBER_ME));
    Ok("ok")
}

async fn forget(session: Session) -> &'static str {
    session.set_expiry(None);
    "ok"
}

async fn fail(
    session: Session,
    Path(key): Path<String>,
) -> Result<(StatusCode, &'static str), SessionError> {
    session.insert(&key, "written before the failure")?;
    Ok((StatusCode::INTERNAL_SERVER_ERROR, "boom"))
}

/// The "remember me" expiry of `/remember`.
pub const REMEMBER_ME: Expiry = Expiry::idle(time::Duration::days(30));

/// The test app:
///
/// | route | what it does with the session |
/// |---|---|
/// | `GET /` | nothing |
/// | `GET /get/{key}` | reads a value (`none` if absent) |
/// | `POST /set/{key}/{value}` | writes a value |
/// | `POST /remove/{key}` | removes a value |
/// | `GET /count` | increments `n` and returns it |
/// | `GET /keys` | lists the keys |
/// | `POST /login/{user}` | writes `user`, then `cycle_id` |
/// | `POST /logout` | `destroy` |
/// | `POST /clear` | `clear` |
/// | `POST /remember` | writes `user`, `set_expiry(REMEMBER_ME)` |
/// | `POST /forget` | `set_expiry(None)` |
/// | `POST /fail/{key}` | writes `key`, answers 500 |
pub fn routes() -> Router {
    Router::new()
        .route("/", get(|| async { "ok" }))
        .route("/get/{key}", get(get_value))
        .route("/set/{key}/{value}", post(set_value))
        .route("/remove/{key}", post(remove_value))
        .route("/count", get(count))
        .route("/keys", get(keys))
        .route("/login/{user}", post(login))
        .route("/logout", post(logout))
        .route("/clear", post(clear))
        .route("/remember", post(remember))
        .route("/forget", post(forget))
        .route("/fail/{key}", post(fail))
}

// --- the harness -------------------------------------------------------------

/// A fixed test secret, so tests can look for it in logs (S5).
pub const SECRET: [u8; 32] = *b"test secret: not for production!";

pub fn key() -> Key {
    Key::try_from(&SECRET[..]).unwrap()
}

/// One app behind the real layer, on a [`TestStore`], with a [`ManualClock`]
/// shared by the layer and the store.
pub struct Harness {
    pub clock: ManualClock,
    pub store: TestStore,
    pub app: Router,
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

impl Harness {
    pub fn new() -> Self {
        Self::with(|b| b)
    }

    /// The test app with a layer set up by `configure`.
    pub fn with(configure: impl FnOnce(SessionLayerBuilder) -> SessionLayerBuilder) -> Self {
        Self::with_routes(routes(), configure)
    }

    pub fn with_routes(
        routes: Router,
        configure: impl FnOnce(SessionLayerBuilder) -> SessionLayerBuilder,
    ) -> Self {
        let clock = ManualClock::new();
        let store = TestStore::new(clock.clone());
        let layer = configure(SessionLayer::builder(store.clone(), key()).clock(clock.clone()))
            .build()
            .expect("the test layer builds");
        Self {
            clock,
            store,
            app: routes.layer(layer),
        }
    }

    /// Another app on the same store and clock with its own layer settings.
    pub fn sibling(
        &self,
        key: Key,
        configure: impl FnOnce(SessionLayerBuilder) -> SessionLayerBuilder,
    ) -> Router {
        let layer =
            configure(SessionLayer::builder(self.store.clone(), key).clock(self.clock.clone()))
                .build()
                .expect("the sibling layer builds");
        routes().layer(layer)
    }

    pub fn advance(&self, by: time::Duration) {
        self.clock.advance(by);
    }

    /// The layer's idea of now: the clock to the whole second.
    pub fn now(&self) -> OffsetDateTime {
        use session_layer::clock::Clock;
        self.clock.now().replace_nanosecond(0).unwrap()
    }

    pub async fn send(&self, req: Request<Body>) -> Reply {
        send(&self.app, req).await
    }

    /// `GET uri` with `cookies` (each `name=value`) in one `Cookie` header.
    pub async fn get(&self, uri: &str, cookies: &[&str]) -> Reply {
        self.send(request("GET", uri, cookies)).await
    }

    pub async fn post(&self, uri: &str, cookies: &[&str]) -> Reply {
        self.send(request("POST", uri, cookies)).await
    }

    /// Creates a session holding `user=alice` and returns its `id=value` pair.
    pub async fn new_session(&self) -> String {
        let reply = self.post("/set/user/alice", &[]).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        reply.pair()
    }
}

/// A request with `cookies` joined into one `Cookie` header field.
pub fn request(method: &str, uri: &str, cookies: &[&str]) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(uri);
    if !cookies.is_empty() {
        builder = builder.header(COOKIE, cookies.join("; "));
    }
    builder.body(Body::empty()).unwrap()
}

/// A request with one `Cookie` header field per entry of `fields` (raw
/// bytes, so tests can send what browsers never would).
pub fn request_fields(method: &str, uri: &str, fields: &[&[u8]]) -> Request<Body> {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .unwrap();
    for field in fields {
        req.headers_mut()
            .append(COOKIE, HeaderValue::from_bytes(field).unwrap());
    }
    req
}

pub async fn send(app: &Router, req: Request<Body>) -> Reply {
    let res = app.clone().oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        extensions: parts.extensions,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub extensions: Extensions,
    pub body: String,
}

impl Reply {
    /// Every `Set-Cookie` value.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    /// Every `Set-Cookie` for `name`, raw.
    pub fn raw_cookies_named(&self, name: &str) -> Vec<String> {
        self.set_cookies()
            .into_iter()
            .filter(|c| cookie::Cookie::parse(c.clone()).unwrap().name() == name)
            .collect()
    }

    /// The one `Set-Cookie` for `name`, if any; more than one fails (S17).
    pub fn cookie_named(&self, name: &str) -> Option<cookie::Cookie<'static>> {
        let ours = self.raw_cookies_named(name);
        assert!(
            ours.len() <= 1,
            "more than one Set-Cookie for {name}: {ours:?}"
        );
        ours.into_iter()
            .next()
            .map(|c| cookie::Cookie::parse(c).unwrap())
    }

    /// The session cookie of the default name, if any.
    pub fn cookie(&self) -> Option<cookie::Cookie<'static>> {
        self.cookie_named(NAME)
    }

    /// The raw `Set-Cookie` of the session cookie; panics if none.
    pub fn raw_cookie(&self) -> String {
        let ours = self.raw_cookies_named(NAME);
        assert_eq!(ours.len(), 1, "{ours:?}");
        ours.into_iter().next().unwrap()
    }

    /// `id=value` of the session cookie, to send back; panics if none.
    pub fn pair(&self) -> String {
        let c = self
            .cookie()
            .unwrap_or_else(|| panic!("no session cookie in {:?}", self.headers));
        assert!(!c.value().is_empty(), "a removal cookie: {c}");
        format!("{}={}", c.name(), c.value())
    }

    pub fn header(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }
}

/// The value part of a `name=value` pair.
pub fn value_of(pair: &str) -> &str {
    pair.split_once('=').unwrap().1
}

/// The raw id bytes inside a signed cookie value (id || 32-byte MAC).
pub fn raw_id(value: &str) -> Vec<u8> {
    let mut raw = URL_SAFE_NO_PAD.decode(value).unwrap();
    raw.truncate(raw.len() - 32);
    raw
}

/// The store key of the session a `name=value` pair points to.
pub fn hash_of(pair: &str) -> IdHash {
    SessionId::from_bytes(&raw_id(value_of(pair)))
        .unwrap()
        .hash()
}

/// A cookie that the layer's key signed for `name`, for an id that no
/// store knows: made by a layer on a store that is then thrown away.
pub async fn unknown_but_signed(key: Key, name: &str) -> String {
    let layer = SessionLayer::builder(MemoryStore::new(), key)
        .cookie_name(name)
        .build()
        .unwrap();
    let reply = send(&routes().layer(layer), request("POST", "/set/a/b", &[])).await;
    let c = reply.cookie_named(name).unwrap();
    format!("{}={}", c.name(), c.value())
}

/// The record under `hash`, read straight from the store (no layer).
pub async fn stored(store: &MemoryStore, hash: &IdHash) -> Option<Record> {
    store.load(hash).await.unwrap()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
