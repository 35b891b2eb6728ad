//! A store that fails, hangs or holds bad data (S35, S36), and what the
//! layer writes to the log (S5): captured with a tracing-subscriber writer.

mod common;

use std::io;
use std::sync::{Arc, Mutex, OnceLock};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use common::*;
use http::StatusCode;
use session_layer::{Expiry, StoreError, StoreErrorKind};
use time::Duration;

// --- log capture ---------------------------------------------------------------

/// Everything logged by any test of this binary, at every level. Tests run
/// in parallel, so each looks only for its own values.
fn logs() -> String {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    let buf = LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || Capture(writer.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
        buf
    });
    String::from_utf8_lossy(&buf.lock().unwrap()).into_owned()
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl io::Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The log lines that mention `needle`.
fn lines_with(needle: &str) -> Vec<String> {
    logs()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

/// Every spelling of a secret that could end up in a log line.
fn spellings(bytes: &[u8]) -> Vec<String> {
    vec![
        hex(bytes),
        hex(bytes).to_uppercase(),
        STANDARD.encode(bytes),
        URL_SAFE_NO_PAD.encode(bytes),
        format!("{bytes:?}"),
        String::from_utf8_lossy(bytes).into_owned(),
    ]
}

// --- S5: logs --------------------------------------------------------------------

#[tokio::test]
async fn s5_no_raw_id_cookie_value_or_key_in_any_log_event() {
    logs();
    let h = Harness::new();
    let mut pairs = vec![h.new_session().await];
    pairs.push(h.post("/login/alice", &[&pairs[0]]).await.pair());
    let last = pairs[1].clone();
    h.get("/count", &[&last]).await;
    // A warning: an undecodable record.
    h.store.fail(Op::Load, Fault::Decode);
    h.get("/get/user", &[&last]).await;
    // An error: the store is down.
    h.store.fail(Op::Load, Fault::Backend);
    assert_eq!(
        h.get("/get/user", &[&last]).await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    h.store.heal();
    // A session value error through `?`.
    h.get("/count", &[&last]).await;
    h.post("/set/n/not-a-number", &[&last]).await;
    assert_eq!(
        h.get("/count", &[&last]).await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    h.post("/logout", &[&last]).await;

    // Something was logged about this session (by its hash), so the capture
    // works and the check below means something.
    let hash = hash_of(&last).to_hex();
    assert!(!lines_with(&hash).is_empty(), "nothing logged for {hash}");

    let log = logs();
    for pair in &pairs {
        let value = value_of(pair);
        assert!(!log.contains(value), "cookie value in the log");
        for spelling in spellings(&raw_id(value)) {
            assert!(!log.contains(&spelling), "raw id in the log as {spelling}");
        }
    }
    for spelling in spellings(&SECRET) {
        assert!(!log.contains(&spelling), "key in the log as {spelling}");
    }
}

// --- S35: bad data -----------------------------------------------------------------

#[tokio::test]
async fn s35_an_undecodable_record_gives_an_empty_session_and_a_warning() {
    logs();
    let h = Harness::new();
    let pair = h.new_session().await;
    let hash = hash_of(&pair).to_hex();
    h.store.fail(Op::Load, Fault::Decode);

    let reply = h.get("/get/user", &[&pair]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "none");
    assert!(reply.set_cookies().is_empty());
    let warnings: Vec<_> = lines_with(&hash)
        .into_iter()
        .filter(|l| l.contains("WARN"))
        .collect();
    assert!(!warnings.is_empty(), "no warning for {hash}: {}", logs());

    // Not a lasting failure: the client can go on, and a write starts a
    // new session under a new id.
    for _ in 0..3 {
        assert_eq!(h.get("/get/user", &[&pair]).await.status, StatusCode::OK);
    }
    let reply = h.post("/set/user/bob", &[&pair]).await;
    assert_eq!(reply.status, StatusCode::OK);
    let fresh = reply.pair();
    assert_ne!(raw_id(value_of(&fresh)), raw_id(value_of(&pair)));
    h.store.heal();
    assert_eq!(h.get("/get/user", &[&fresh]).await.body, "bob");
}

// --- S36: the store down or stuck ----------------------------------------------------

#[tokio::test]
async fn s36_a_failing_store_gives_the_configured_status_with_the_error_in_extensions() {
    logs();
    let h = Harness::with(|b| b.error_status(StatusCode::SERVICE_UNAVAILABLE));
    let pair = h.new_session().await;
    h.store.fail(Op::Load, Fault::Backend);

    let reply = h.get("/get/user", &[&pair]).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    let error = reply
        .extensions
        .get::<StoreError>()
        .expect("the error in extensions");
    assert_eq!(error.kind(), StoreErrorKind::Backend);
    assert!(reply.set_cookies().is_empty());
    assert!(
        !reply.body.contains("test store is down"),
        "details stay in the log"
    );
    assert!(
        logs()
            .lines()
            .any(|l| l.contains("ERROR") && l.contains("session store")),
        "no error event"
    );

    // Requests without a session are unaffected.
    for uri in ["/", "/get/user", "/keys"] {
        let reply = h.get(uri, &[]).await;
        assert_eq!(reply.status, StatusCode::OK, "{uri}");
    }
    let reply = h.get("/", &["id=garbage"]).await;
    assert_eq!(reply.status, StatusCode::OK);

    // A failing write: the handler's answer is replaced, nothing is set.
    h.store.heal();
    h.store.fail(Op::Save, Fault::Backend);
    let reply = h.post("/set/user/bob", &[&pair]).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        reply.extensions.get::<StoreError>().map(StoreError::kind),
        Some(StoreErrorKind::Backend)
    );
    assert!(reply.set_cookies().is_empty());
    h.store.fail(Op::Create, Fault::Backend);
    let reply = h.post("/set/user/bob", &[]).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(reply.set_cookies().is_empty());

    // Back up: back to normal, the failed write left nothing behind.
    h.store.heal();
    assert_eq!(h.get("/get/user", &[&pair]).await.body, "alice");
}

#[tokio::test]
async fn s36_a_store_outage_does_not_fail_pages_that_never_touch_the_session() {
    let h = Harness::with(|b| b.error_status(StatusCode::SERVICE_UNAVAILABLE));
    let pair = h.new_session().await;
    h.store.fail(Op::Load, Fault::Backend);
    let loads = h.store.calls(Op::Load);
    // A health check or a static page under the layer: no store call, so
    // the outage does not reach it.
    let reply = h.get("/", &[&pair]).await;
    assert_eq!((reply.status, reply.body.as_str()), (StatusCode::OK, "ok"));
    assert_eq!(h.store.calls(Op::Load), loads);
    // A page that takes the session gets the layer's error response.
    let reply = h.get("/get/user", &[&pair]).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        reply.extensions.get::<StoreError>().map(StoreError::kind),
        Some(StoreErrorKind::Backend)
    );
    assert_eq!(h.store.calls(Op::Load), loads + 1);

    // With `eager_load`, the layer loads before the handler: every page
    // with a session cookie fails while the store is down.
    let eager = Harness::with(|b| {
        b.error_status(StatusCode::SERVICE_UNAVAILABLE)
            .eager_load(true)
    });
    let pair = eager.new_session().await;
    eager.store.fail(Op::Load, Fault::Backend);
    let reply = eager.get("/", &[&pair]).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.body, "", "the handler did not run");
}

#[tokio::test(start_paused = true)]
async fn s36_a_hanging_store_gives_an_error_within_the_store_timeout() {
    let timeout = std::time::Duration::from_millis(200);
    let h = Harness::with(|b| b.store_timeout(timeout));
    let pair = h.new_session().await;
    let cycled = h.post("/login/alice", &[&pair]).await.pair();

    for (op, method, uri, cookie) in [
        (Op::Load, "GET", "/get/user", Some(&cycled)),
        (Op::Save, "POST", "/set/user/bob", Some(&cycled)),
        (Op::Create, "POST", "/set/user/bob", None),
        (Op::Create, "POST", "/login/bob", Some(&cycled)),
        (Op::Delete, "POST", "/logout", Some(&cycled)),
    ] {
        h.store.heal();
        h.store.fail(op, Fault::Hang);
        let cookies: Vec<&str> = cookie.map(String::as_str).into_iter().collect();
        let start = tokio::time::Instant::now();
        let reply = tokio::time::timeout(timeout * 5, h.send(request(method, uri, &cookies)))
            .await
            .unwrap_or_else(|_| panic!("{op:?} hang: no answer within 5 x the store timeout"));
        let took = start.elapsed();
        assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR, "{op:?}");
        assert_eq!(
            reply.extensions.get::<StoreError>().map(StoreError::kind),
            Some(StoreErrorKind::Timeout),
            "{op:?}"
        );
        assert!(reply.set_cookies().is_empty(), "{op:?}");
        // Paused time: the answer came when the timeout fired, not before.
        assert!(took >= timeout, "{op:?}: {took:?}");
    }
    // Without a session, a hanging store is never called.
    for op in [Op::Load, Op::Save, Op::Create, Op::Delete, Op::Touch] {
        h.store.fail(op, Fault::Hang);
    }
    let reply = tokio::time::timeout(timeout, h.get("/get/user", &[]))
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn s36_a_hanging_store_does_not_hang_the_request_in_real_time() {
    let timeout = std::time::Duration::from_millis(100);
    let h = Harness::with(|b| b.store_timeout(timeout));
    let pair = h.new_session().await;
    h.store.fail(Op::Load, Fault::Hang);
    // Generous bound for a loaded CI machine: this checks "no hang", not speed.
    let reply = tokio::time::timeout(timeout * 50, h.get("/get/user", &[&pair]))
        .await
        .expect("the request hung");
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn s5_debug_of_the_layer_and_the_store_shows_no_session_data() {
    let h = Harness::new();
    let pair = h.post("/set/token/oauth-secret-xyz", &[]).await.pair();
    let layer = session_layer::SessionLayer::builder(h.store.memory.clone(), key())
        .build()
        .unwrap();
    for shown in [format!("{layer:?}"), format!("{:?}", h.store.memory)] {
        assert!(!shown.is_empty());
        let secret = "oauth-secret-xyz";
        assert!(!shown.contains(secret), "{shown}");
        // Nor as the bytes of its JSON.
        let bytes = format!("{:?}", secret.as_bytes());
        assert!(
            !shown.contains(&bytes[1..bytes.len() - 1]),
            "session data in Debug"
        );
        assert!(!shown.contains(
            &hash_of(&pair).as_bytes()[..8]
                .iter()
                .map(u8::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
}

#[tokio::test]
async fn s36_a_failed_idle_refresh_does_not_fail_a_read_only_request() {
    let h = Harness::with(|b| {
        b.expiry(Expiry::idle(Duration::minutes(40)))
            .refresh_after(0.25)
    });
    let pair = h.new_session().await;
    h.advance(Duration::minutes(15));
    h.store.fail(Op::Touch, Fault::Backend);
    let reply = h.get("/get/user", &[&pair]).await;
    assert_eq!(h.store.calls(Op::Touch), 1, "the refresh was due and tried");
    assert_eq!(reply.status, StatusCode::OK, "a read loses nothing");
    assert_eq!(reply.body, "alice");
    assert!(
        reply.set_cookies().is_empty(),
        "no cookie for a refresh that did not happen"
    );
    // The next read refreshes once the store is back.
    h.store.heal();
    h.get("/get/user", &[&pair]).await;
    assert_eq!(h.store.calls(Op::Touch), 2);
}

#[tokio::test]
async fn s36_a_store_failure_during_cycle_id_keeps_the_old_session() {
    // A sign-in (cycle_id) whose write of the new id fails answers with the
    // error status and leaves the user's session as it was.
    let h = Harness::new();
    let pair = h.new_session().await;
    h.store.fail(Op::Create, Fault::Backend);
    let reply = h.post("/login/bob", &[&pair]).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(reply.set_cookies().is_empty());
    h.store.heal();
    assert_eq!(
        h.get("/get/user", &[&pair]).await.body,
        "alice",
        "the session survived"
    );
    assert_eq!(h.store.memory.len(), 1, "and nothing else was left behind");
}

#[tokio::test(start_paused = true)]
async fn a_hanging_store_delays_the_re_sign_of_an_untouched_page_only_briefly() {
    // A fallback-key cookie on a page that ignores the session: the
    // response path looks it up to re-sign it (S9). With the store stuck,
    // the page answers after a short wait, not the whole store timeout.
    let old_key = session_layer::Key::try_from(&[1u8; 32][..]).unwrap();
    let h = Harness::new();
    let before = h.sibling(old_key.clone(), |b| b);
    let rotated = h.sibling(key(), |b| b.fallback_key(old_key.clone()));
    let pair = send(&before, request("POST", "/set/user/alice", &[]))
        .await
        .pair();
    h.store.fail(Op::Load, Fault::Hang);
    let started = tokio::time::Instant::now();
    let reply = send(&rotated, request("GET", "/", &[&pair])).await;
    let waited = started.elapsed();
    assert_eq!((reply.status, reply.body.as_str()), (StatusCode::OK, "ok"));
    assert!(reply.set_cookies().is_empty(), "not re-signed this time");
    assert!(
        waited < std::time::Duration::from_secs(1),
        "waited {waited:?} (the store timeout is 5 s)"
    );
}
