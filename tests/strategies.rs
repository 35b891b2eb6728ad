//! Issue 4: token transport (S11, S40), cookie sessions (S15, S31, S39),
//! and key rotation in a rolling deploy (S9), through the real layer.

use std::sync::Arc;

use axum::body::Body;
use axum::routing::{get, post};
use axum::Router;
use http::header::{AUTHORIZATION, COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderName, Request, Response, StatusCode};
use http_body_util::BodyExt;
use session_layer::clock::ManualClock;
use session_layer::store::{CookieStore, SessionStore};
use session_layer::{
    Expiry, Key, MemoryStore, Session, SessionError, SessionErrorKind, SessionLayer, Transport,
};
use time::Duration;
use tower::ServiceExt;

const TOKEN: HeaderName = HeaderName::from_static("x-session-token");

fn key(n: u8) -> Key {
    Key::try_from(&[n; 32][..]).unwrap()
}

/// A tiny app: sign in (cycle + user), read the user and count, bump a
/// counter, set an arbitrary value, sign out.
fn app(layer: SessionLayer) -> Router {
    async fn sign_in(session: Session) -> Result<&'static str, SessionError> {
        session.cycle_id();
        session.insert("user", "ada")?;
        Ok("signed in")
    }
    async fn me(session: Session) -> Result<String, SessionError> {
        let user: Option<String> = session.get("user")?;
        let n: Option<u64> = session.get("n")?;
        Ok(format!("{}:{}", user.unwrap_or_default(), n.unwrap_or(0)))
    }
    async fn bump(session: Session) -> Result<String, SessionError> {
        let n = session.get::<u64>("n")?.unwrap_or(0) + 1;
        session.insert("n", n)?;
        Ok(n.to_string())
    }
    async fn big(session: Session, body: String) -> Result<&'static str, SessionError> {
        session.insert("big", body)?;
        Ok("stored")
    }
    async fn sign_out(session: Session) -> &'static str {
        session.destroy();
        "bye"
    }
    Router::new()
        .route("/sign-in", post(sign_in))
        .route("/me", get(me))
        .route("/bump", post(bump))
        .route("/big", post(big))
        .route("/sign-out", post(sign_out))
        .layer(layer)
}

async fn send(
    app: &Router,
    method: &str,
    uri: &str,
    headers: &[(HeaderName, String)],
    body: &str,
) -> Response<Body> {
    let mut req = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        req = req.header(name, value);
    }
    app.clone()
        .oneshot(req.body(Body::from(body.to_owned())).unwrap())
        .await
        .unwrap()
}

async fn text(res: Response<Body>) -> String {
    String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

/// `name=value` of our session cookie in a response, if it sets one.
fn set_cookie(headers: &HeaderMap) -> Option<String> {
    let all: Vec<_> = headers.get_all(SET_COOKIE).iter().collect();
    assert!(all.len() <= 1, "at most one Set-Cookie (S17): {all:?}");
    all.first()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
}

// --- tokens ------------------------------------------------------------------

fn token_app(store: MemoryStore, transport: Transport) -> Router {
    app(SessionLayer::builder(store, key(1))
        .transport(transport)
        .build()
        .unwrap())
}

fn bearer(token: &str) -> (HeaderName, String) {
    (AUTHORIZATION, format!("Bearer {token}"))
}

#[tokio::test]
async fn s40_bearer_tokens_create_read_rotate_and_destroy() {
    let store = MemoryStore::new();
    let app = token_app(store.clone(), Transport::bearer());

    let res = send(&app, "POST", "/sign-in", &[], "").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers().get(SET_COOKIE).is_none(),
        "no cookie in token mode"
    );
    assert_eq!(res.headers()["cache-control"], "no-store", "S37");
    let token = res.headers()[&TOKEN].to_str().unwrap().to_owned();
    assert_eq!(token.len(), 64);
    assert_eq!(store.len(), 1);

    let res = send(&app, "GET", "/me", &[bearer(&token)], "").await;
    assert!(
        res.headers().get(&TOKEN).is_none(),
        "a read sends no new token (S23)"
    );
    assert_eq!(res.headers()["vary"], "authorization", "S38 for tokens");
    assert_eq!(text(res).await, "ada:0");
    // The scheme is case-insensitive (RFC 7235).
    let res = send(
        &app,
        "GET",
        "/me",
        &[(AUTHORIZATION, format!("bearer {token}"))],
        "",
    )
    .await;
    assert_eq!(text(res).await, "ada:0");

    // Sign-in again rotates the token; the old one is dead (S24).
    let res = send(&app, "POST", "/sign-in", &[bearer(&token)], "").await;
    let rotated = res.headers()[&TOKEN].to_str().unwrap().to_owned();
    assert_ne!(rotated, token);
    assert_eq!(
        text(send(&app, "GET", "/me", &[bearer(&token)], "").await).await,
        ":0"
    );
    assert_eq!(
        text(send(&app, "GET", "/me", &[bearer(&rotated)], "").await).await,
        "ada:0"
    );

    // Sign-out: an empty token header is the removal signal; the record is gone.
    let res = send(&app, "POST", "/sign-out", &[bearer(&rotated)], "").await;
    assert_eq!(res.headers()[&TOKEN], "");
    assert_eq!(store.len(), 0);
    assert_eq!(
        text(send(&app, "GET", "/me", &[bearer(&rotated)], "").await).await,
        ":0"
    );
}

#[tokio::test]
async fn s6_s40_an_unknown_token_gets_a_fresh_one_on_write() {
    let store = MemoryStore::new();
    let app = token_app(store.clone(), Transport::bearer());
    let token = send(&app, "POST", "/sign-in", &[], "").await.headers()[&TOKEN]
        .to_str()
        .unwrap()
        .to_owned();
    // The record disappears (another instance signed out, or it expired).
    let other = send(&app, "POST", "/sign-out", &[bearer(&token)], "").await;
    assert_eq!(other.status(), StatusCode::OK);

    let res = send(&app, "POST", "/bump", &[bearer(&token)], "").await;
    let fresh = res.headers()[&TOKEN].to_str().unwrap().to_owned();
    assert_ne!(
        fresh, token,
        "a well-formed but unknown token is never adopted"
    );
    assert_eq!(text(res).await, "1");
    assert_eq!(
        text(send(&app, "GET", "/me", &[bearer(&fresh)], "").await).await,
        ":1"
    );
}

#[tokio::test]
async fn s11_s40_the_token_is_read_only_from_its_header() {
    let store = MemoryStore::new();
    let app = token_app(store.clone(), Transport::header(TOKEN));
    let res = send(&app, "POST", "/sign-in", &[], "").await;
    let token = res.headers()[&TOKEN].to_str().unwrap().to_owned();
    assert_eq!(
        text(send(&app, "GET", "/me", &[(TOKEN, token.clone())], "").await).await,
        "ada:0"
    );

    // In the query string, the body, a cookie or `Authorization`: ignored.
    for uri in [
        format!("/me?x-session-token={token}"),
        format!("/me?id={token}"),
        format!("/me?token={token}"),
    ] {
        assert_eq!(
            text(send(&app, "GET", &uri, &[], "").await).await,
            ":0",
            "{uri}"
        );
    }
    let res = send(
        &app,
        "GET",
        "/me",
        &[(COOKIE, format!("id={token}")), bearer(&token)],
        &token,
    )
    .await;
    assert_eq!(text(res).await, ":0");

    // A cookie-mode id is signed for the cookie name: not a token (S10).
    let cookie_app = app_with_cookie(store.clone());
    let res = send(&cookie_app, "POST", "/sign-in", &[], "").await;
    let cookie_value = set_cookie(res.headers())
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_owned();
    assert_eq!(
        text(send(&app, "GET", "/me", &[(TOKEN, cookie_value)], "").await).await,
        ":0"
    );
}

fn app_with_cookie(store: MemoryStore) -> Router {
    app(SessionLayer::builder(store, key(1)).build().unwrap())
}

#[tokio::test]
async fn s40_two_layers_two_transports_in_one_app() {
    let store = MemoryStore::new();
    let web = app(SessionLayer::builder(store.clone(), key(1))
        .build()
        .unwrap());
    let api = token_app(store.clone(), Transport::bearer());
    let combined = Router::new().nest("/web", web).nest("/api", api);

    let res = send(&combined, "POST", "/web/sign-in", &[], "").await;
    let cookie = set_cookie(res.headers()).unwrap();
    assert!(res.headers().get(&TOKEN).is_none());
    let res = send(&combined, "POST", "/api/sign-in", &[], "").await;
    let token = res.headers()[&TOKEN].to_str().unwrap().to_owned();
    assert!(res.headers().get(SET_COOKIE).is_none());

    assert_eq!(
        text(send(&combined, "GET", "/web/me", &[(COOKIE, cookie.clone())], "").await).await,
        "ada:0"
    );
    assert_eq!(
        text(send(&combined, "GET", "/api/me", &[bearer(&token)], "").await).await,
        "ada:0"
    );
    // Each layer reads only its own transport.
    assert_eq!(
        text(send(&combined, "GET", "/api/me", &[(COOKIE, cookie)], "").await).await,
        ":0"
    );
    assert_eq!(
        text(send(&combined, "GET", "/web/me", &[bearer(&token)], "").await).await,
        ":0"
    );
}

// --- cookie sessions -----------------------------------------------------------

fn cookie_session_app(clock: &ManualClock, expiry: Expiry, keys: (Key, Vec<Key>)) -> Router {
    let mut builder = SessionLayer::builder(CookieStore::new(), keys.0)
        .clock(clock.clone())
        .expiry(expiry);
    for k in keys.1 {
        builder = builder.fallback_key(k);
    }
    app(builder.build().unwrap())
}

#[tokio::test]
async fn s39_cookie_sessions_round_trip_and_apply_per_request_changes() {
    let clock = ManualClock::new();
    let app = cookie_session_app(&clock, Expiry::idle(Duration::hours(1)), (key(1), vec![]));
    let res = send(&app, "GET", "/me", &[], "").await;
    assert!(
        res.headers().get(SET_COOKIE).is_none(),
        "no write, no cookie (S23)"
    );

    let res = send(&app, "POST", "/sign-in", &[], "").await;
    let mut cookie = set_cookie(res.headers()).unwrap();
    assert!(
        !cookie.contains("ada"),
        "the payload is encrypted: {cookie}"
    );
    for expected in 1..=3 {
        let res = send(&app, "POST", "/bump", &[(COOKIE, cookie.clone())], "").await;
        cookie = set_cookie(res.headers()).expect("every change is a new cookie");
        assert_eq!(text(res).await, expected.to_string());
    }
    assert_eq!(
        text(send(&app, "GET", "/me", &[(COOKIE, cookie.clone())], "").await).await,
        "ada:3"
    );

    // Sign-out removes the cookie.
    let res = send(&app, "POST", "/sign-out", &[(COOKIE, cookie)], "").await;
    let removal = res.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(
        removal.starts_with("id=;") && removal.contains("Max-Age=0"),
        "{removal}"
    );
}

#[tokio::test]
async fn s39_a_change_in_any_byte_of_the_cookie_is_rejected() {
    let clock = ManualClock::new();
    let app = cookie_session_app(&clock, Expiry::idle(Duration::hours(1)), (key(1), vec![]));
    let res = send(&app, "POST", "/sign-in", &[], "").await;
    let cookie = set_cookie(res.headers()).unwrap();
    let value = cookie.strip_prefix("id=").unwrap().as_bytes().to_vec();
    for pos in 0..value.len() {
        let mut tampered = value.clone();
        tampered[pos] = if tampered[pos] == b'A' { b'B' } else { b'A' };
        let tampered = format!("id={}", String::from_utf8(tampered).unwrap());
        let res = send(&app, "GET", "/me", &[(COOKIE, tampered)], "").await;
        assert_eq!(res.status(), StatusCode::OK, "never a 500");
        assert_eq!(
            text(res).await,
            ":0",
            "byte {pos} changed must mean no session"
        );
    }
}

#[tokio::test]
async fn s39_a_value_from_another_cookie_name_is_rejected() {
    let clock = ManualClock::new();
    let other = app(SessionLayer::builder(CookieStore::new(), key(1))
        .cookie_name("other")
        .clock(clock.clone())
        .build()
        .unwrap());
    let ours = cookie_session_app(&clock, Expiry::idle(Duration::hours(1)), (key(1), vec![]));
    let res = send(&other, "POST", "/sign-in", &[], "").await;
    let value = set_cookie(res.headers())
        .unwrap()
        .strip_prefix("other=")
        .unwrap()
        .to_owned();
    let res = send(&ours, "GET", "/me", &[(COOKIE, format!("id={value}"))], "").await;
    assert_eq!(text(res).await, ":0");
}

#[tokio::test]
async fn s31_an_expired_cookie_session_replayed_is_refused() {
    let clock = ManualClock::new();
    let app = cookie_session_app(
        &clock,
        Expiry::idle(Duration::minutes(30)).with_absolute(Duration::hours(2)),
        (key(1), vec![]),
    );
    let old = set_cookie(send(&app, "POST", "/sign-in", &[], "").await.headers()).unwrap();
    // Idle: 31 minutes later the old cookie is dead, whatever its attributes say.
    clock.advance(Duration::minutes(31));
    assert_eq!(
        text(send(&app, "GET", "/me", &[(COOKIE, old.clone())], "").await).await,
        ":0"
    );

    // Absolute: activity every 20 minutes does not pass the 2 hours.
    clock.advance(Duration::minutes(-31));
    let mut cookie = old;
    for _ in 0..5 {
        clock.advance(Duration::minutes(20));
        let res = send(&app, "POST", "/bump", &[(COOKIE, cookie.clone())], "").await;
        cookie = set_cookie(res.headers()).unwrap();
    }
    assert_eq!(
        text(send(&app, "GET", "/me", &[(COOKIE, cookie.clone())], "").await).await,
        "ada:5"
    );
    clock.advance(Duration::minutes(21));
    assert_eq!(
        text(send(&app, "GET", "/me", &[(COOKIE, cookie)], "").await).await,
        ":0"
    );
}

#[tokio::test]
async fn s15_an_oversized_cookie_session_is_a_visible_error() {
    let clock = ManualClock::new();
    let app = cookie_session_app(&clock, Expiry::idle(Duration::hours(1)), (key(1), vec![]));
    let cookie = set_cookie(send(&app, "POST", "/sign-in", &[], "").await.headers()).unwrap();
    let res = send(
        &app,
        "POST",
        "/big",
        &[(COOKIE, cookie.clone())],
        &"x".repeat(5000),
    )
    .await;
    assert_eq!(
        res.status(),
        StatusCode::INTERNAL_SERVER_ERROR,
        "the handler's `?` turned TooLarge into a 500"
    );
    assert!(
        res.headers().get(SET_COOKIE).is_none(),
        "nothing sent on 5xx"
    );
    // The largest value that fits still works, and its cookie stays within 4096.
    let mut fits = 3000;
    let res = loop {
        let res = send(
            &app,
            "POST",
            "/big",
            &[(COOKIE, cookie.clone())],
            &"x".repeat(fits),
        )
        .await;
        if res.status() == StatusCode::OK {
            break res;
        }
        fits -= 100;
        assert!(fits > 1000, "a 1 KB value must fit");
    };
    let sent = set_cookie(res.headers()).unwrap();
    assert!(sent.len() <= 4096, "name + value = {}", sent.len());
}

#[tokio::test]
async fn s15_insert_reports_too_large_to_the_handler() {
    async fn probe(session: Session) -> String {
        match session.insert("k", "x".repeat(5000)) {
            Err(e) if e.kind() == SessionErrorKind::TooLarge => "too large".into(),
            other => format!("{other:?}"),
        }
    }
    let layer = SessionLayer::builder(CookieStore::new(), key(1))
        .build()
        .unwrap();
    let app = Router::new().route("/", get(probe)).layer(layer);
    let res = send(&app, "GET", "/", &[], "").await;
    assert!(
        res.headers().get(SET_COOKIE).is_none(),
        "the refused value left the session empty"
    );
    assert_eq!(text(res).await, "too large");
}

#[tokio::test]
async fn cookie_sessions_with_a_revocation_list_refuse_a_signed_out_copy() {
    let clock = ManualClock::new();
    let revoked = MemoryStore::with_clock(clock.clone());
    let with_list = app(SessionLayer::builder(
        CookieStore::new().revocation_list(revoked.clone()),
        key(1),
    )
    .clock(clock.clone())
    .build()
    .unwrap());
    let without = cookie_session_app(&clock, Expiry::default(), (key(1), vec![]));

    for (app, copy_works_after_sign_out) in [(without, true), (with_list, false)] {
        let cookie = set_cookie(send(&app, "POST", "/sign-in", &[], "").await.headers()).unwrap();
        let stolen = cookie.clone();
        send(&app, "POST", "/sign-out", &[(COOKIE, cookie)], "").await;
        let replay = text(send(&app, "GET", "/me", &[(COOKIE, stolen)], "").await).await;
        assert_eq!(replay == "ada:0", copy_works_after_sign_out, "{replay}");
    }
    assert_eq!(revoked.len(), 1, "one revocation recorded");
    // The revocation outlives nothing: it expires with the cookie.
    clock.advance(Expiry::BROWSER_SESSION_IDLE + Duration::minutes(1));
    assert_eq!(revoked.purge_expired().await.unwrap(), 1);
}

// --- key rotation ---------------------------------------------------------------

/// The fleet during a rotation from key 1 to key 2, done in two deploys:
/// first every instance learns key 2 as a fallback, then key 2 becomes the
/// signing key. During each deploy, old and new instances serve the same
/// users side by side.
#[tokio::test]
async fn s9_rolling_key_rotation_keeps_users_signed_in() {
    for backend in ["store", "cookie"] {
        let clock = ManualClock::new();
        let store = MemoryStore::with_clock(clock.clone());
        let instance = |current: Key, fallbacks: Vec<Key>| {
            let mut b = match backend {
                "store" => SessionLayer::builder(store.clone(), current),
                _ => SessionLayer::builder(CookieStore::new(), current),
            }
            .clock(clock.clone());
            for k in fallbacks {
                b = b.fallback_key(k);
            }
            app(b.build().unwrap())
        };
        let v0 = instance(key(1), vec![]); // before
        let v1 = instance(key(1), vec![key(2)]); // deploy 1: knows key 2, signs with 1
        let v2 = instance(key(2), vec![key(1)]); // deploy 2: signs with 2, knows 1
        let v3 = instance(key(2), vec![]); // after: key 1 removed

        let mut cookie =
            set_cookie(send(&v0, "POST", "/sign-in", &[], "").await.headers()).unwrap();
        let get = |app: Router, cookie: String| async move {
            let res = send(&app, "POST", "/bump", &[(COOKIE, cookie.clone())], "").await;
            let next = set_cookie(res.headers()).unwrap_or(cookie);
            (text(res).await, next)
        };
        // Deploy 1 rolling out: v0 and v1 side by side.
        let mut n = 0;
        for app in [&v0, &v1, &v0, &v1] {
            n += 1;
            let (body, next) = get(app.clone(), cookie).await;
            assert_eq!(
                body,
                n.to_string(),
                "{backend}: signed in throughout deploy 1"
            );
            cookie = next;
        }
        // Deploy 2 rolling out: v1 and v2 side by side; v2 re-signs with key 2.
        for app in [&v2, &v1, &v2, &v1, &v2] {
            n += 1;
            let (body, next) = get(app.clone(), cookie).await;
            assert_eq!(
                body,
                n.to_string(),
                "{backend}: signed in throughout deploy 2"
            );
            cookie = next;
        }
        // The last response came from v2: the cookie is under key 2 now, so
        // it outlives the removal of key 1.
        n += 1;
        let (body, _) = get(v3.clone(), cookie).await;
        assert_eq!(
            body,
            n.to_string(),
            "{backend}: re-signed under the new key"
        );

        // A cookie that stayed under key 1 is refused once key 1 is gone.
        let stale = set_cookie(send(&v0, "POST", "/sign-in", &[], "").await.headers()).unwrap();
        assert_eq!(
            text(send(&v3, "GET", "/me", &[(COOKIE, stale.clone())], "").await).await,
            ":0"
        );
        // … while an instance that still knows key 1 re-signs it on a plain read.
        let res = send(&v2, "GET", "/me", &[(COOKIE, stale)], "").await;
        let resigned = set_cookie(res.headers()).expect("re-signed under the current key (S9)");
        assert_eq!(text(res).await, "ada:0");
        assert_eq!(
            text(send(&v3, "GET", "/me", &[(COOKIE, resigned)], "").await).await,
            "ada:0"
        );
    }
}

#[tokio::test]
async fn stores_are_object_safe_behind_an_arc() {
    let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
    let app = app(SessionLayer::builder(store, key(1)).build().unwrap());
    let cookie = set_cookie(send(&app, "POST", "/sign-in", &[], "").await.headers()).unwrap();
    assert_eq!(
        text(send(&app, "GET", "/me", &[(COOKIE, cookie)], "").await).await,
        "ada:0"
    );
}
