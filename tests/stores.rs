//! Every store against the conformance suite, on the real engines; the
//! layer's behaviour when Redis or PostgreSQL is down or silent (S36); and
//! the round trips each store call costs, counted on the wire.
//!
//! Servers come from `SESSION_LAYER_REDIS_URL`, `SESSION_LAYER_POSTGRES_URL`
//! and `SESSION_LAYER_MYSQL_URL` (and, optionally,
//! `SESSION_LAYER_REDIS_CLUSTER_URLS`, comma-separated node URLs). A test
//! whose variable is unset prints `skipping ...` and passes, unless
//! `SESSION_LAYER_REQUIRE_BACKENDS=1`; a server that is set but cannot be
//! reached always fails. SQLite needs no server and always runs. Each test
//! works in its own key prefix, table or schema, and removes it afterwards.
#![cfg(feature = "testing")]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use http::header::{COOKIE, SET_COOKIE};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::json;
use session_layer::store::conformance;
use session_layer::store::{Changes, Record};
use session_layer::{Key, MemoryStore, Session, SessionId, SessionLayer, SessionStore};
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tower::ServiceExt;

// --- environment ---------------------------------------------------------------

/// The URL in `var`, or `None` (after printing why) when it is unset and
/// backends are not required.
fn backend_url(backend: &str, var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.trim().is_empty() => Some(url.trim().to_owned()),
        _ if std::env::var("SESSION_LAYER_REQUIRE_BACKENDS").as_deref() == Ok("1") => {
            panic!("{backend}: {var} is unset, and SESSION_LAYER_REQUIRE_BACKENDS=1")
        }
        _ => {
            println!("skipping {backend}: {var} unset");
            None
        }
    }
}

/// A name no other run uses: `prefix` and 12 random hex digits.
fn unique(prefix: &str) -> String {
    format!("{prefix}{}", &SessionId::generate().hash().to_hex()[..12])
}

/// Waits at most `secs` for `fut`, failing the test with `what` if it takes
/// longer: no step of these tests may hang.
async fn bounded<T>(secs: u64, what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), fut)
        .await
        .unwrap_or_else(|_| panic!("{what} took more than {secs} s"))
}

/// Runs `body`, then `cleanup` whatever happened, then passes on a panic.
async fn with_cleanup<C>(body: impl Future<Output = ()> + Send + 'static, cleanup: C)
where
    C: Future<Output = ()>,
{
    let result = tokio::spawn(body).await;
    bounded(30, "cleanup", cleanup).await;
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(OffsetDateTime::now_utc().unix_timestamp()).unwrap()
}

fn live_record(data: serde_json::Value) -> Record {
    let now = now();
    let serde_json::Value::Object(data) = data else {
        panic!("data must be an object")
    };
    Record {
        data,
        created_at: now,
        last_active: now,
        expires_at: now + time::Duration::hours(1),
        expiry: None,
    }
}

fn set_one(key: &str, value: serde_json::Value) -> Changes {
    let now = now();
    Changes {
        cleared: false,
        set: vec![(key.to_owned(), value)],
        removed: vec![],
        last_active: now,
        expires_at: now + time::Duration::hours(2),
        expiry: None,
    }
}

// --- the layer, for S36 ---------------------------------------------------------

const STORE_TIMEOUT: Duration = Duration::from_millis(500);
const ERROR_STATUS: StatusCode = StatusCode::SERVICE_UNAVAILABLE;

fn app(store: impl SessionStore, key: Key) -> Router {
    let layer = SessionLayer::builder(store, key)
        .store_timeout(STORE_TIMEOUT)
        .error_status(ERROR_STATUS)
        .build()
        .unwrap();
    Router::new()
        .route(
            "/write",
            get(|session: Session| async move {
                session.insert("n", 1).unwrap();
                "written"
            }),
        )
        .route(
            "/read",
            get(|session: Session| async move { format!("{:?}", session.get::<u32>("n")) }),
        )
        .route("/plain", get(|| async { "plain" }))
        .layer(layer)
}

/// Sends one request; returns status, the session cookie set (if any) and
/// the body. Fails if the answer takes longer than five store timeouts.
async fn send(
    app: &Router,
    path: &str,
    cookie: Option<&str>,
) -> (StatusCode, Option<String>, String) {
    let mut req = Request::get(path);
    if let Some(cookie) = cookie {
        req = req.header(COOKIE, format!("id={cookie}"));
    }
    let started = tokio::time::Instant::now();
    let res = tokio::time::timeout(
        STORE_TIMEOUT * 5,
        app.clone().oneshot(req.body(Body::empty()).unwrap()),
    )
    .await
    .unwrap_or_else(|_| panic!("{path}: no answer within 5 x the store timeout (a hang)"))
    .unwrap();
    let elapsed = started.elapsed();
    let status = res.status();
    let cookie = res
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok()?.strip_prefix("id="))
        .map(|v| v.split(';').next().unwrap_or_default().to_owned())
        .next();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let body = String::from_utf8_lossy(&body).into_owned();
    println!("{path}: {status} after {elapsed:?}");
    (status, cookie, body)
}

/// A valid signed cookie for `key`: made by a layer on a memory store, so
/// the store under test never saw it — as after a failover or restart.
async fn signed_cookie(key: &Key) -> String {
    let (status, cookie, _) = send(&app(MemoryStore::new(), key.clone()), "/write", None).await;
    assert_eq!(status, StatusCode::OK);
    cookie.expect("a session write sets a cookie")
}

/// S36 on one unusable store: a request with a session gets the configured
/// error status within the timeout (and a margin), never a hang or a panic;
/// requests without a session are served as usual.
async fn check_unusable_store(store: impl SessionStore, what: &str) {
    let key = Key::generate();
    let cookie = signed_cookie(&key).await;
    let app = app(store, key);
    let (status, set_cookie, _) = send(&app, "/read", Some(&cookie)).await;
    assert_eq!(status, ERROR_STATUS, "{what}: a request with a session");
    assert_eq!(set_cookie, None, "{what}: no cookie on an error");
    let (status, _, body) = send(&app, "/plain", None).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "plain"),
        "{what}: a request without a session"
    );
    let (status, _, body) = send(&app, "/read", None).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "Ok(None)"),
        "{what}: a read without a session"
    );
    // And again, now that the store's connection has failed once.
    let (status, _, _) = send(&app, "/read", Some(&cookie)).await;
    assert_eq!(
        status, ERROR_STATUS,
        "{what}: a second request with a session"
    );
}

/// A port on 127.0.0.1 that nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A server that accepts connections and never says a word.
async fn silent_server() -> (u16, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        for _ in 0..64 {
            match listener.accept().await {
                Ok((socket, _)) => held.push(socket),
                Err(_) => break,
            }
        }
        std::future::pending::<()>().await;
    });
    (port, task)
}

// --- round trips ----------------------------------------------------------------

/// A TCP proxy that counts round trips: each time a client sends after the
/// server last spoke (or first), one more. Works for any request/response
/// protocol, pipelined or not.
struct RoundTrips {
    port: u16,
    count: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl RoundTrips {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let count = Arc::new(AtomicUsize::new(0));
        let counter = count.clone();
        let task = tokio::spawn(async move {
            for _ in 0..16 {
                let Ok((client, _)) = listener.accept().await else {
                    break;
                };
                let Ok(server) = TcpStream::connect(upstream).await else {
                    break;
                };
                let server_spoke = Arc::new(AtomicBool::new(true));
                let (mut client_rx, mut client_tx) = client.into_split();
                let (mut server_rx, mut server_tx) = server.into_split();
                let (spoke, trips) = (server_spoke.clone(), counter.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0; 64 * 1024];
                    while let Ok(n @ 1..) = client_rx.read(&mut buf).await {
                        if spoke.swap(false, Ordering::SeqCst) {
                            trips.fetch_add(1, Ordering::SeqCst);
                        }
                        if server_tx.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
                tokio::spawn(async move {
                    let mut buf = vec![0; 64 * 1024];
                    while let Ok(n @ 1..) = server_rx.read(&mut buf).await {
                        // Before the client can see the answer.
                        server_spoke.store(true, Ordering::SeqCst);
                        if client_tx.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Self { port, count, task }
    }

    /// `url` with its host and port replaced by the proxy's.
    fn url(&self, url: &str) -> String {
        let (before, _, after) = split_authority(url);
        format!("{before}127.0.0.1:{}{after}", self.port)
    }

    /// The round trips `op` makes.
    async fn of<T>(&self, op: impl Future<Output = T>) -> (usize, T) {
        let before = self.count.load(Ordering::SeqCst);
        let out = bounded(10, "a store call through the proxy", op).await;
        (self.count.load(Ordering::SeqCst) - before, out)
    }
}

impl Drop for RoundTrips {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `scheme://user@` | `host:port` | `/path?query` of a URL.
fn split_authority(url: &str) -> (&str, &str, &str) {
    let start = url.find("://").map_or(0, |i| i + 3);
    let start = url[start..].find('@').map_or(start, |i| start + i + 1);
    let end = url[start..]
        .find(['/', '?'])
        .map_or(url.len(), |i| start + i);
    (&url[..start], &url[start..end], &url[end..])
}

fn socket_addr(url: &str) -> SocketAddr {
    let (_, authority, _) = split_authority(url);
    let authority = if authority.contains(':') {
        authority.to_owned()
    } else {
        let default = if url.starts_with("redis") {
            6379
        } else if url.starts_with("mysql") {
            3306
        } else {
            5432
        };
        format!("{authority}:{default}")
    };
    let authority = authority.replace("localhost", "127.0.0.1");
    authority
        .parse()
        .unwrap_or_else(|e| panic!("{authority}: {e}"))
}

/// Round trips of each call, after one warm-up of each (connection set-up,
/// statements prepared, scripts loaded): `[create, load, save, touch,
/// delete]` on the call's own path, and what the client sends after the
/// call has returned, before `settle` is done (sqlx's pool pings each
/// connection as it comes back). Run on a current-thread runtime, so that
/// nothing spawned by a call runs before its count is read.
async fn count_round_trips<S: SessionStore>(
    proxy: &RoundTrips,
    store: &S,
    backend: &str,
    settle: impl AsyncFn(),
) -> ([usize; 5], [usize; 5]) {
    let (mut on_path, mut after) = ([0; 5], [0; 5]);
    for round in 0..2 {
        let id = SessionId::generate().hash();
        let mut call = 0;
        let mut note = |trips: usize, settled: usize| {
            if round == 1 {
                on_path[call] = trips;
                after[call] = settled;
            }
            call += 1;
        };
        let (trips, created) = proxy
            .of(store.create(&id, &live_record(json!({"a": 1}))))
            .await;
        assert!(created.unwrap());
        note(trips, proxy.of(settle()).await.0);
        let (trips, loaded) = proxy.of(store.load(&id)).await;
        assert!(loaded.unwrap().is_some());
        note(trips, proxy.of(settle()).await.0);
        let (trips, saved) = proxy.of(store.save(&id, &set_one("b", json!(2)))).await;
        assert!(saved.unwrap());
        note(trips, proxy.of(settle()).await.0);
        let (trips, touched) = proxy
            .of(store.touch(&id, now(), now() + time::Duration::hours(3)))
            .await;
        assert!(touched.unwrap());
        note(trips, proxy.of(settle()).await.0);
        let (trips, deleted) = proxy.of(store.delete(&id)).await;
        deleted.unwrap();
        note(trips, proxy.of(settle()).await.0);
    }
    println!("round trips, {backend}, [create, load, save, touch, delete]: on the call's path {on_path:?}, after it returned {after:?}");
    (on_path, after)
}

/// Waits until every connection of a sqlx pool is idle again.
#[cfg(feature = "sqlx")]
async fn pool_idle<DB: sqlx::Database>(pool: &sqlx::Pool<DB>) {
    for _ in 0..1000 {
        if pool.num_idle() == pool.size() as usize {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("the pool's connections did not come back within ~1 s");
}

// --- memory ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn memory_store_conforms() {
    conformance::run(MemoryStore::new()).await;
}

// --- sqlite ------------------------------------------------------------------------

#[cfg(feature = "sqlite-store")]
mod sqlite {
    use super::*;
    use session_layer::store::PurgeTask;
    use session_layer::SqliteStore;
    use session_layer::StoreError;
    use std::path::PathBuf;

    /// A directory of its own, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            let dir = std::env::temp_dir().join(unique("session-layer-test-"));
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        fn url(&self, file: &str) -> String {
            format!("sqlite://{}", self.0.join(file).display())
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn sqlite_file_conforms() {
        let dir = TempDir::new();
        let store = SqliteStore::connect(&dir.url("sessions.db")).await.unwrap();
        store.migrate().await.unwrap();
        conformance::run(store).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn sqlite_in_memory_conforms() {
        let store = SqliteStore::connect("sqlite::memory:")
            .await
            .unwrap()
            .table_name("web_sessions")
            .unwrap();
        store.migrate().await.unwrap();
        // Twice is fine: `migrate` runs on every start.
        store.migrate().await.unwrap();
        conformance::run(store).await;
    }

    #[tokio::test]
    async fn sqlite_sessions_survive_a_restart() {
        let dir = TempDir::new();
        let url = dir.url("persist.db");
        let id = SessionId::generate().hash();
        let record = live_record(json!({"user": "ada"}));
        {
            let store = SqliteStore::connect(&url).await.unwrap();
            store.migrate().await.unwrap();
            assert!(store.create(&id, &record).await.unwrap());
            store.pool().close().await;
        }
        let store = SqliteStore::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        assert_eq!(store.load(&id).await.unwrap(), Some(record));
    }

    #[tokio::test]
    async fn sqlite_table_names_are_identifiers_only() {
        let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
        for bad in ["x\"; DROP TABLE sessions; --", "a b", "", "1a", "a.b"] {
            let err = store.clone().table_name(bad).unwrap_err();
            assert_eq!(err.name(), bad);
        }
        assert_eq!(
            store.table_name("Sessions_2").unwrap().table(),
            "Sessions_2"
        );
    }

    /// Counts failed purges, to know the task met an error.
    #[derive(Debug, Clone)]
    struct CountingPurges {
        inner: SqliteStore,
        failed: Arc<AtomicUsize>,
    }

    #[async_trait::async_trait]
    impl SessionStore for CountingPurges {
        async fn create(&self, id: &session_layer::IdHash, r: &Record) -> Result<bool, StoreError> {
            self.inner.create(id, r).await
        }
        async fn load(&self, id: &session_layer::IdHash) -> Result<Option<Record>, StoreError> {
            self.inner.load(id).await
        }
        async fn save(&self, id: &session_layer::IdHash, c: &Changes) -> Result<bool, StoreError> {
            self.inner.save(id, c).await
        }
        async fn delete(&self, id: &session_layer::IdHash) -> Result<bool, StoreError> {
            self.inner.delete(id).await
        }
        async fn touch(
            &self,
            id: &session_layer::IdHash,
            last_active: OffsetDateTime,
            expires_at: OffsetDateTime,
        ) -> Result<bool, StoreError> {
            self.inner.touch(id, last_active, expires_at).await
        }
        async fn purge_expired(&self) -> Result<u64, StoreError> {
            let result = self.inner.purge_expired().await;
            if result.is_err() {
                self.failed.fetch_add(1, Ordering::SeqCst);
            }
            result
        }
    }

    /// Polls `cond` every 10 ms for at most 5 s.
    async fn eventually(what: &str, mut cond: impl AsyncFnMut() -> bool) {
        for _ in 0..500 {
            if cond().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{what}: not within 5 s");
    }

    /// S33: the purge task logs a database error and keeps going.
    #[tokio::test(flavor = "multi_thread")]
    async fn sqlite_purge_task_keeps_going_through_database_errors() {
        let dir = TempDir::new();
        let store = SqliteStore::connect(&dir.url("purge.db")).await.unwrap();
        let failed = Arc::new(AtomicUsize::new(0));
        let counting = CountingPurges {
            inner: store.clone(),
            failed: failed.clone(),
        };
        // No table yet: every purge fails.
        let task = PurgeTask::spawn(counting, Duration::from_millis(10));
        eventually("three failed purges", async || {
            failed.load(Ordering::SeqCst) >= 3
        })
        .await;

        store.migrate().await.unwrap();
        let id = SessionId::generate().hash();
        let mut record = live_record(json!({"n": 1}));
        record.expires_at = now() - time::Duration::seconds(1);
        store.create(&id, &record).await.unwrap();
        let rows = || async {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM sessions")
                .fetch_one(store.pool())
                .await
                .unwrap()
        };
        eventually("the expired row purged after the errors", async || {
            rows().await == 0
        })
        .await;
        task.stop().await;
    }
}

// --- redis ---------------------------------------------------------------------------

#[cfg(feature = "redis-store")]
mod redis_store {
    use super::*;
    use redis::aio::{ConnectionManager, ConnectionManagerConfig};
    use session_layer::store::conformance::RawAccess;
    use session_layer::{RedisStore, StoreErrorKind};

    const VAR: &str = "SESSION_LAYER_REDIS_URL";

    async fn connect(url: &str) -> redis::aio::MultiplexedConnection {
        let client = redis::Client::open(url).unwrap();
        bounded(
            10,
            "connecting to redis",
            client.get_multiplexed_async_connection(),
        )
        .await
        .unwrap_or_else(|e| panic!("redis at {url} is unreachable: {e}"))
    }

    async fn store(url: &str) -> RedisStore {
        bounded(10, "connecting to redis", RedisStore::connect(url))
            .await
            .unwrap_or_else(|e| panic!("redis at {url} is unreachable: {e:?}"))
            .key_prefix(unique("session-layer-test:") + ":")
    }

    /// Removes every key under the store's prefix.
    async fn cleanup(url: String, prefix: String) {
        let mut conn = connect(&url).await;
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query_async(&mut conn)
            .await
            .unwrap();
        if !keys.is_empty() {
            redis::cmd("DEL")
                .arg(&keys)
                .query_async::<()>(&mut conn)
                .await
                .unwrap();
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn redis_conforms() {
        let Some(url) = backend_url("redis", VAR) else {
            return;
        };
        let store = store(&url).await;
        let prefix = store.prefix().to_owned();
        with_cleanup(conformance::run(store), cleanup(url, prefix)).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn redis_cluster_conforms() {
        let Ok(nodes) = std::env::var("SESSION_LAYER_REDIS_CLUSTER_URLS") else {
            println!("skipping redis cluster: SESSION_LAYER_REDIS_CLUSTER_URLS unset");
            return;
        };
        let nodes: Vec<&str> = nodes.split(',').map(str::trim).collect();
        let store = bounded(
            10,
            "connecting to the cluster",
            RedisStore::connect_cluster(&nodes),
        )
        .await
        .unwrap()
        .key_prefix(unique("session-layer-test:") + ":");
        let cleanup_store = store.clone();
        with_cleanup(conformance::run(store), async move {
            for line in cleanup_store.raw_dump().await.unwrap() {
                let key = line.split(' ').next().unwrap_or_default();
                let hex = key.strip_prefix(cleanup_store.prefix()).unwrap_or_default();
                if let Some(id) = session_layer::IdHash::from_hex(hex) {
                    cleanup_store.delete(&id).await.unwrap();
                }
            }
        })
        .await;
    }

    /// Expiry is Redis's own: `EXPIRETIME` follows `expires_at` through
    /// create, save and touch, and there is nothing to purge.
    #[tokio::test]
    async fn redis_expiry_is_native() {
        let Some(url) = backend_url("redis", VAR) else {
            return;
        };
        let store = store(&url).await;
        let prefix = store.prefix().to_owned();
        let body_url = url.clone();
        with_cleanup(
            async move {
                let mut conn = connect(&body_url).await;
                let id = SessionId::generate().hash();
                let key = format!("{}{}", store.prefix(), id.to_hex());
                let expire_time = async |conn: &mut redis::aio::MultiplexedConnection| -> i64 {
                    redis::cmd("EXPIRETIME")
                        .arg(&key)
                        .query_async(conn)
                        .await
                        .unwrap()
                };
                let record = live_record(json!({"n": 1}));
                assert!(store.create(&id, &record).await.unwrap());
                assert_eq!(
                    expire_time(&mut conn).await,
                    record.expires_at.unix_timestamp()
                );
                let changes = set_one("n", json!(2));
                assert!(store.save(&id, &changes).await.unwrap());
                assert_eq!(
                    expire_time(&mut conn).await,
                    changes.expires_at.unix_timestamp()
                );
                let later = now() + time::Duration::hours(5);
                assert!(store.touch(&id, now(), later).await.unwrap());
                assert_eq!(expire_time(&mut conn).await, later.unix_timestamp());
                assert_eq!(store.purge_expired().await.unwrap(), 0);
                // A touch into the past: Redis drops the key at once.
                assert!(store
                    .touch(&id, now(), now() - time::Duration::seconds(1))
                    .await
                    .unwrap());
                let exists: bool = redis::cmd("EXISTS")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                assert!(!exists);
            },
            cleanup(url, prefix),
        )
        .await;
    }

    /// S35 beyond the suite's one kind of damage: a key of another type,
    /// missing or unparsable meta fields, another version. `load` says
    /// `Decode`, and `create`/`save`/`touch` neither fail nor overwrite.
    #[tokio::test]
    async fn redis_bad_records_are_decode_errors() {
        let Some(url) = backend_url("redis", VAR) else {
            return;
        };
        let store = store(&url).await;
        let prefix = store.prefix().to_owned();
        let body_url = url.clone();
        with_cleanup(
            async move {
                let mut conn = connect(&body_url).await;
                let future = (now() + time::Duration::hours(1))
                    .unix_timestamp()
                    .to_string();
                let base = ["v", "1", "c", "1", "l", "1", "e", &future];
                let hash = |fields: &[&str]| -> Vec<String> {
                    let mut args = vec!["HSET".to_owned(), "KEY".to_owned()];
                    let mut pairs: Vec<(&str, &str)> =
                        base.chunks(2).map(|p| (p[0], p[1])).collect();
                    for change in fields.chunks(2) {
                        pairs.retain(|(f, _)| *f != change[0]);
                        if change[1] != "-" {
                            pairs.push((change[0], change[1]));
                        }
                    }
                    args.extend(
                        pairs
                            .iter()
                            .flat_map(|(f, v)| [f.to_string(), v.to_string()]),
                    );
                    args
                };
                let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
                let kinds = [
                    ("a string", words(&["SET", "KEY", "not a hash"])),
                    ("a list", words(&["RPUSH", "KEY", "x"])),
                    ("no version", hash(&["v", "-"])),
                    ("version 2", hash(&["v", "2"])),
                    ("no expiry time", hash(&["e", "-"])),
                    ("a bad time", hash(&["c", "noon"])),
                    ("a bad expiry", hash(&["x", "{"])),
                    ("bad JSON", hash(&["d:k", "{"])),
                ];
                for (what, args) in kinds {
                    let id = SessionId::generate().hash();
                    let key = format!("{}{}", store.prefix(), id.to_hex());
                    let mut cmd = redis::cmd(&args[0]);
                    for arg in &args[1..] {
                        cmd.arg(if arg == "KEY" { &key } else { arg });
                    }
                    cmd.query_async::<()>(&mut conn).await.unwrap();

                    let err = store.load(&id).await.expect_err(what);
                    assert_eq!(err.kind(), StoreErrorKind::Decode, "{what}: {err:?}");
                    assert!(
                        !store
                            .create(&id, &live_record(json!({"n": 1})))
                            .await
                            .unwrap(),
                        "{what}: create over it"
                    );
                    let saved = store.save(&id, &set_one("n", json!(1))).await.unwrap();
                    // A hash with a live `e` is saved into; anything else is not a session.
                    let live_hash = !matches!(what, "a string" | "a list" | "no expiry time");
                    assert_eq!(saved, live_hash, "{what}: save");
                    store.delete(&id).await.unwrap();
                    assert_eq!(store.load(&id).await.unwrap(), None, "{what}: after delete");
                }
            },
            cleanup(url, prefix),
        )
        .await;
    }

    /// One round trip for each call, counted on the wire.
    #[tokio::test]
    async fn redis_one_round_trip_per_call() {
        let Some(url) = backend_url("redis", VAR) else {
            return;
        };
        let proxy = RoundTrips::start(socket_addr(&url)).await;
        let store = store(&proxy.url(&url)).await;
        let prefix = store.prefix().to_owned();
        let (on_path, after) = count_round_trips(&proxy, &store, "redis", async || {}).await;
        cleanup(url, prefix).await;
        assert_eq!(
            on_path,
            [1, 1, 1, 1, 1],
            "[create, load, save, touch, delete]"
        );
        assert_eq!(after, [0; 5], "nothing after a call");
    }

    fn lazy_store(port: u16) -> RedisStore {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
        let manager =
            ConnectionManager::new_lazy_with_config(client, ConnectionManagerConfig::new())
                .unwrap();
        RedisStore::new(manager)
    }

    /// S36: Redis down.
    #[tokio::test]
    async fn redis_down_gives_the_error_status() {
        check_unusable_store(lazy_store(closed_port()), "redis on a closed port").await;
    }

    /// S36: a server that accepts and never answers.
    #[tokio::test]
    async fn redis_silent_gives_the_error_status() {
        let (port, server) = silent_server().await;
        check_unusable_store(lazy_store(port), "redis that never answers").await;
        server.abort();
    }
}

// --- postgres --------------------------------------------------------------------------

#[cfg(feature = "postgres-store")]
mod postgres {
    use super::*;
    use session_layer::PostgresStore;
    use sqlx::postgres::PgPoolOptions;

    const VAR: &str = "SESSION_LAYER_POSTGRES_URL";

    async fn store(url: &str) -> PostgresStore {
        bounded(10, "connecting to postgres", PostgresStore::connect(url))
            .await
            .unwrap_or_else(|e| panic!("postgres at {url} is unreachable: {e:?}"))
    }

    async fn drop_schema(store: PostgresStore) {
        let schema = store.schema().unwrap().to_owned();
        sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
            .execute(store.pool())
            .await
            .unwrap();
        store.pool().close().await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn postgres_conforms() {
        let Some(url) = backend_url("postgres", VAR) else {
            return;
        };
        let store = store(&url)
            .await
            .schema_name(&unique("session_layer_test_"))
            .unwrap()
            .table_name("web_sessions")
            .unwrap();
        store.migrate().await.unwrap();
        let cleanup = drop_schema(store.clone());
        with_cleanup(conformance::run(store), cleanup).await;
    }

    /// Several instances starting at once all migrate, and one table results.
    #[tokio::test(flavor = "multi_thread")]
    async fn postgres_migrate_concurrently_and_again() {
        let Some(url) = backend_url("postgres", VAR) else {
            return;
        };
        let store = store(&url)
            .await
            .schema_name(&unique("session_layer_test_"))
            .unwrap();
        let cleanup = drop_schema(store.clone());
        let body = async move {
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..4 {
                let store = store.clone();
                tasks.spawn(async move { store.migrate().await });
            }
            while let Some(done) = tasks.join_next().await {
                done.unwrap().unwrap();
            }
            store.migrate().await.unwrap();
            let id = SessionId::generate().hash();
            assert!(store
                .create(&id, &live_record(json!({"n": 1})))
                .await
                .unwrap());
            let index: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND indexname = 'sessions_expires_at'",
            )
            .bind(store.schema().unwrap())
            .fetch_one(store.pool())
            .await
            .unwrap();
            assert_eq!(index, 1, "the expiry index");
        };
        with_cleanup(body, cleanup).await;
    }

    #[tokio::test]
    async fn postgres_one_round_trip_per_call() {
        let Some(url) = backend_url("postgres", VAR) else {
            return;
        };
        let proxy = RoundTrips::start(socket_addr(&url)).await;
        let pool = bounded(
            10,
            "connecting to postgres",
            PgPoolOptions::new()
                .max_connections(1)
                .test_before_acquire(false)
                .connect(&proxy.url(&url)),
        )
        .await
        .unwrap();
        let store = PostgresStore::new(pool)
            .schema_name(&unique("session_layer_test_"))
            .unwrap();
        store.migrate().await.unwrap();
        let (on_path, after) = count_round_trips(&proxy, &store, "postgres", async || {
            pool_idle(store.pool()).await
        })
        .await;
        drop_schema(store).await;
        assert_eq!(
            on_path,
            [1, 1, 1, 1, 1],
            "[create, load, save, touch, delete]"
        );
        assert_eq!(
            after, [1; 5],
            "sqlx's ping as the connection goes back to the pool"
        );
    }

    fn lazy_store(port: u16) -> PostgresStore {
        let pool = PgPoolOptions::new()
            .connect_lazy(&format!("postgres://postgres@127.0.0.1:{port}/test"))
            .unwrap();
        PostgresStore::new(pool)
    }

    /// S36: PostgreSQL down.
    #[tokio::test]
    async fn postgres_down_gives_the_error_status() {
        check_unusable_store(lazy_store(closed_port()), "postgres on a closed port").await;
    }

    /// S36: a server that accepts and never answers.
    #[tokio::test]
    async fn postgres_silent_gives_the_error_status() {
        let (port, server) = silent_server().await;
        check_unusable_store(lazy_store(port), "postgres that never answers").await;
        server.abort();
    }
}

// --- mysql / mariadb -------------------------------------------------------------------

#[cfg(feature = "mysql-store")]
mod mysql {
    use super::*;
    use session_layer::MySqlStore;
    use sqlx::mysql::MySqlPoolOptions;

    const VAR: &str = "SESSION_LAYER_MYSQL_URL";

    async fn store(url: &str) -> MySqlStore {
        bounded(10, "connecting to mysql", MySqlStore::connect(url))
            .await
            .unwrap_or_else(|e| panic!("mysql at {url} is unreachable: {e:?}"))
            .table_name(&unique("session_layer_test_"))
            .unwrap()
    }

    async fn drop_table(store: MySqlStore) {
        sqlx::query(&format!("DROP TABLE IF EXISTS `{}`", store.table()))
            .execute(store.pool())
            .await
            .unwrap();
        store.pool().close().await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn mysql_conforms() {
        let Some(url) = backend_url("mysql", VAR) else {
            return;
        };
        let store = store(&url).await;
        store.migrate().await.unwrap();
        store.migrate().await.unwrap();
        let cleanup = drop_table(store.clone());
        with_cleanup(conformance::run(store), cleanup).await;
    }

    #[tokio::test]
    async fn mysql_one_round_trip_per_call() {
        let Some(url) = backend_url("mysql", VAR) else {
            return;
        };
        let proxy = RoundTrips::start(socket_addr(&url)).await;
        let pool = bounded(
            10,
            "connecting to mysql",
            MySqlPoolOptions::new()
                .max_connections(1)
                .test_before_acquire(false)
                .connect(&proxy.url(&url)),
        )
        .await
        .unwrap();
        let store = MySqlStore::new(pool)
            .table_name(&unique("session_layer_test_"))
            .unwrap();
        store.migrate().await.unwrap();
        let (on_path, after) = count_round_trips(&proxy, &store, "mysql", async || {
            pool_idle(store.pool()).await
        })
        .await;
        drop_table(store).await;
        assert_eq!(
            on_path,
            [1, 1, 1, 1, 1],
            "[create, load, save, touch, delete]"
        );
        assert_eq!(
            after, [1; 5],
            "sqlx's ping as the connection goes back to the pool"
        );
    }
}

#[test]
fn urls_split_into_authority() {
    assert_eq!(
        split_authority("postgres://postgres@127.0.0.1:5432/test"),
        ("postgres://postgres@", "127.0.0.1:5432", "/test")
    );
    assert_eq!(
        split_authority("redis://127.0.0.1:6379"),
        ("redis://", "127.0.0.1:6379", "")
    );
    assert_eq!(
        socket_addr("mysql://root@localhost/test"),
        "127.0.0.1:3306".parse().unwrap()
    );
}
