//! The layer end to end through `tower::ServiceExt::oneshot`: the extractor,
//! Set-Cookie (S12-S18), the lifecycle (S23-S28) and caching (S37, S38).

mod common;

use std::collections::HashMap;

use axum::http::header::{CACHE_CONTROL, SET_COOKIE, VARY};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use common::*;
use http::StatusCode;
use session_layer::{
    ConfigError, Expiry, Key, SameSite, Session, SessionError, SessionErrorKind, SessionLayer,
    MAX_COOKIE_AGE,
};
use time::{Duration, OffsetDateTime};

// --- the extractor ------------------------------------------------------------

#[tokio::test]
async fn the_extractor_without_the_layer_says_the_layer_is_missing() {
    let app = Router::new()
        .route("/", get(|_s: Session| async { "unreachable" }))
        .route(
            "/optional",
            get(|s: Option<Session>| async move { format!("{}", s.is_some()) }),
        );
    let reply = send(&app, request("GET", "/", &[])).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(reply.body.contains("SessionLayer"), "{}", reply.body);
    assert!(reply.body.contains("installed"), "{}", reply.body);
    let reply = send(&app, request("GET", "/optional", &[])).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (StatusCode::OK, "false")
    );
}

#[tokio::test]
async fn option_session_is_some_under_the_layer_and_is_the_same_session() {
    let routes = routes().route(
        "/optional",
        get(|s: Option<Session>, t: Session| async move {
            let s = s.expect("Some under the layer");
            s.insert("via", "option").unwrap();
            // Both extractors hand out the same session.
            t.get::<String>("via").unwrap().unwrap()
        }),
    );
    let h = Harness::with_routes(routes, |b| b);
    let reply = h.get("/optional", &[]).await;
    assert_eq!(reply.body, "option");
    assert_eq!(h.get("/get/via", &[&reply.pair()]).await.body, "option");
}

#[tokio::test]
async fn serde_type_errors_come_back_as_err_not_panics() {
    let routes = routes()
        .route(
            "/types",
            post(|s: Session| async move {
                s.insert("n", 3u32).unwrap();
                let wrong = s.get::<String>("n").unwrap_err();
                let right = s.get::<u32>("n").unwrap();
                // Map keys that are not strings cannot be JSON.
                let mut map = HashMap::new();
                map.insert(vec![1u8], 1u8);
                let unserializable = s.insert("map", map).unwrap_err();
                format!(
                    "{:?} {:?} {:?} {}",
                    wrong.kind(),
                    right,
                    unserializable.kind(),
                    s.contains_key("map")
                )
            }),
        )
        .route(
            "/question-mark",
            get(|s: Session| async move {
                let n: Option<String> = s.get("n")?;
                Ok::<_, SessionError>(format!("{n:?}"))
            }),
        );
    let h = Harness::with_routes(routes, |b| b);
    let reply = h.post("/types", &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.body,
        format!(
            "{:?} Some(3) {:?} false",
            SessionErrorKind::Deserialize,
            SessionErrorKind::Serialize
        )
    );
    // A handler's `?` turns the error into a 500 without details.
    let pair = reply.pair();
    let reply = h.get("/question-mark", &[&pair]).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(!reply.body.contains("invalid type"), "{}", reply.body);
    assert_eq!(h.get("/get/n", &[&pair]).await.body, "3");
}

#[tokio::test]
async fn the_handle_reports_its_hash_and_expiry() {
    let routes = routes().route(
        "/whoami",
        get(|s: Session| async move {
            format!(
                "{} {}",
                s.id().map(|h| h.to_hex()).unwrap_or_default(),
                s.expires_at().map(|t| t.unix_timestamp()).unwrap_or(0)
            )
        }),
    );
    let h = Harness::with_routes(routes, |b| b.expiry(Expiry::idle(Duration::minutes(30))));
    assert_eq!(h.get("/whoami", &[]).await.body, " 0");
    let pair = h.new_session().await;
    let created = h.now();
    let reply = h.get("/whoami", &[&pair]).await;
    let expected = format!(
        "{} {}",
        hash_of(&pair).to_hex(),
        (created + Duration::minutes(30)).unix_timestamp()
    );
    assert_eq!(reply.body, expected);
    // The hash shown is not the cookie and not the raw id.
    assert!(!reply.body.contains(value_of(&pair)));
    assert!(!reply.body.contains(&hex(&raw_id(value_of(&pair)))));

    // Before a quarter of the idle window: no refresh, the deadline stays.
    h.advance(Duration::minutes(5));
    let reply = h.get("/whoami", &[&pair]).await;
    assert_eq!(reply.body, expected);
    assert!(reply.set_cookies().is_empty(), "{:?}", reply.set_cookies());
    // Past it, this read refreshes the session: the handle reports the
    // deadline that the response's cookie carries.
    h.advance(Duration::minutes(5));
    let reply = h.get("/whoami", &[&pair]).await;
    let refreshed = (h.now() + Duration::minutes(30)).unix_timestamp();
    assert_eq!(
        reply.body,
        format!("{} {refreshed}", hash_of(&pair).to_hex())
    );
    let max_age = reply.cookie().unwrap().max_age().unwrap();
    assert_eq!(max_age, Duration::minutes(30));
}

// --- C. Set-Cookie ----------------------------------------------------------------

#[tokio::test]
async fn s12_the_cookie_is_httponly_secure_lax_path_root_and_host_only_by_default() {
    let h = Harness::new();
    let reply = h.post("/set/a/b", &[]).await;
    let raw = reply.raw_cookie();
    let c = reply.cookie().unwrap();
    assert_eq!(c.http_only(), Some(true), "{raw}");
    assert_eq!(c.secure(), Some(true), "{raw}");
    assert_eq!(c.same_site(), Some(cookie::SameSite::Lax), "{raw}");
    assert_eq!(c.path(), Some("/"), "{raw}");
    assert_eq!(c.domain(), None, "host-only: {raw}");
    assert!(!raw.to_ascii_lowercase().contains("domain"), "{raw}");
}

#[tokio::test]
async fn s13_insecure_settings_are_build_errors_and_prefixes_force_secure() {
    let clock = session_layer::clock::ManualClock::new();
    let builder = || SessionLayer::builder(TestStore::new(clock.clone()), key());
    assert_eq!(
        builder()
            .same_site(SameSite::None)
            .secure(false)
            .build()
            .unwrap_err(),
        ConfigError::SameSiteNoneWithoutSecure
    );
    assert_eq!(
        builder()
            .cookie_name("__Host-id")
            .domain("example.com")
            .build()
            .unwrap_err(),
        ConfigError::HostPrefixRules
    );
    assert_eq!(
        builder()
            .cookie_name("__Host-id")
            .path("/app")
            .build()
            .unwrap_err(),
        ConfigError::HostPrefixRules
    );
    for name in ["__Host-id", "__Secure-id"] {
        assert_eq!(
            builder()
                .cookie_name(name)
                .secure(false)
                .build()
                .unwrap_err(),
            ConfigError::PrefixNeedsSecure,
            "{name}"
        );
        assert_eq!(
            builder()
                .secure(false)
                .cookie_name(name)
                .build()
                .unwrap_err(),
            ConfigError::PrefixNeedsSecure,
            "{name}, secure set first"
        );
    }

    // What the prefixed cookies look like on the wire.
    let h = Harness::new();
    for name in ["__Host-id", "__Secure-id"] {
        let app = h.sibling(key(), |b| b.cookie_name(name));
        let reply = send(&app, request("POST", "/set/a/b", &[])).await;
        let c = reply.cookie_named(name).unwrap();
        assert_eq!(c.secure(), Some(true), "{c}");
        if name == "__Host-id" {
            assert_eq!((c.path(), c.domain()), (Some("/"), None), "{c}");
        }
    }
    let app = h.sibling(key(), |b| b.same_site(SameSite::None));
    let c = send(&app, request("POST", "/set/a/b", &[]))
        .await
        .cookie()
        .unwrap();
    assert_eq!(
        (c.same_site(), c.secure()),
        (Some(cookie::SameSite::None), Some(true))
    );
}

#[test]
fn s13_prefix_rules_hold_whatever_the_case_of_the_prefix() {
    // Browsers match `__Host-`/`__Secure-` case-insensitively (RFC 6265bis)
    // and silently drop a cookie that breaks the prefix rules, so a layer
    // that would send one must not build.
    let clock = session_layer::clock::ManualClock::new();
    let builder = || SessionLayer::builder(TestStore::new(clock.clone()), key());
    for name in ["__host-id", "__HOST-id", "__hOsT-id"] {
        assert_eq!(
            builder()
                .cookie_name(name)
                .domain("example.com")
                .build()
                .unwrap_err(),
            ConfigError::HostPrefixRules,
            "{name}"
        );
        assert_eq!(
            builder()
                .cookie_name(name)
                .path("/app")
                .build()
                .unwrap_err(),
            ConfigError::HostPrefixRules,
            "{name}"
        );
    }
    for name in ["__host-id", "__secure-id", "__SECURE-id"] {
        assert_eq!(
            builder()
                .cookie_name(name)
                .secure(false)
                .build()
                .unwrap_err(),
            ConfigError::PrefixNeedsSecure,
            "{name}"
        );
    }
}

/// `Max-Age` and `Expires` of a Set-Cookie: Expires must be GMT and equal
/// to now + Max-Age (S14).
fn max_age_checked(raw: &str, now: OffsetDateTime) -> Option<Duration> {
    let c = cookie::Cookie::parse(raw.to_owned()).unwrap();
    let max_age = c.max_age();
    let expires = raw
        .split(';')
        .map(str::trim)
        .find(|a| a.to_ascii_lowercase().starts_with("expires="));
    match max_age {
        None => assert!(expires.is_none(), "Expires without Max-Age: {raw}"),
        Some(age) => {
            let expires = expires.unwrap_or_else(|| panic!("no Expires: {raw}"));
            assert!(expires.ends_with(" GMT"), "{raw}");
            let at = c.expires_datetime().unwrap();
            assert_eq!(at, now + age, "Expires disagrees with Max-Age: {raw}");
        }
    }
    max_age
}

#[tokio::test]
async fn s14_a_browser_session_has_no_max_age_nor_expires() {
    let h = Harness::new();
    let reply = h.post("/set/a/b", &[]).await;
    assert_eq!(max_age_checked(&reply.raw_cookie(), h.now()), None);
    let pair = reply.pair();
    let reply = h.post("/login/alice", &[&pair]).await;
    assert_eq!(max_age_checked(&reply.raw_cookie(), h.now()), None);
    // ... but the server still ends it after the idle day.
    let pair = reply.pair();
    h.advance(Expiry::BROWSER_SESSION_IDLE);
    assert_eq!(h.get("/get/user", &[&pair]).await.body, "none");
}

#[tokio::test]
async fn s14_max_age_mirrors_the_time_left_and_expires_agrees_in_gmt() {
    let h = Harness::with(|b| b.expiry(Expiry::idle(Duration::minutes(30))));
    let reply = h.post("/set/a/b", &[]).await;
    let age = max_age_checked(&reply.raw_cookie(), h.now());
    assert_eq!(age, Some(Duration::minutes(30)));

    // Absolute: the time left, not the full timeout.
    let h = Harness::with(|b| b.expiry(Expiry::absolute(Duration::hours(2))));
    let pair = h.post("/set/a/b", &[]).await.pair();
    h.advance(Duration::minutes(75));
    let reply = h.post("/set/a/c", &[&pair]).await;
    assert_eq!(
        max_age_checked(&reply.raw_cookie(), h.now()),
        Some(Duration::minutes(45))
    );

    // Idle and absolute: the nearer of the two.
    let h = Harness::with(|b| {
        b.expiry(Expiry::idle(Duration::minutes(30)).with_absolute(Duration::minutes(40)))
    });
    let pair = h.post("/set/a/b", &[]).await.pair();
    h.advance(Duration::minutes(20));
    let reply = h.post("/set/a/c", &[&pair]).await;
    assert_eq!(
        max_age_checked(&reply.raw_cookie(), h.now()),
        Some(Duration::minutes(20))
    );

    // Never above 400 days.
    let h = Harness::with(|b| b.expiry(Expiry::idle(Duration::days(1000))));
    let reply = h.post("/set/a/b", &[]).await;
    assert_eq!(
        max_age_checked(&reply.raw_cookie(), h.now()),
        Some(MAX_COOKIE_AGE)
    );
}

#[tokio::test]
async fn s14_remember_me_gives_max_age_and_forgetting_goes_back_to_a_browser_cookie() {
    let h = Harness::new();
    let reply = h.post("/remember", &[]).await;
    assert_eq!(
        max_age_checked(&reply.raw_cookie(), h.now()),
        REMEMBER_ME.idle_timeout()
    );
    let pair = reply.pair();
    // The session keeps its own expiry on later requests: it outlives the
    // layer's one-day browser-session idle timeout.
    h.advance(Duration::days(2));
    let reply = h.post("/set/k/v", &[&pair]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        max_age_checked(&reply.raw_cookie(), h.now()),
        REMEMBER_ME.idle_timeout()
    );
    assert_eq!(h.get("/get/user", &[&pair]).await.body, "remembered");
    // Back to the layer's expiry: a cookie without Max-Age.
    let reply = h.post("/forget", &[&pair]).await;
    assert_eq!(max_age_checked(&reply.raw_cookie(), h.now()), None);
    assert_eq!(reply.pair(), pair, "same id");
    h.advance(Duration::days(2));
    assert_eq!(h.get("/get/user", &[&pair]).await.body, "none");
}

#[tokio::test]
async fn s14_remember_me_at_sign_in_gives_the_cycled_cookie_max_age() {
    let routes = routes().route(
        "/login-remember/{user}",
        post(
            |s: Session, axum::extract::Path(user): axum::extract::Path<String>| async move {
                s.insert("user", user).unwrap();
                s.set_expiry(Some(REMEMBER_ME));
                s.cycle_id();
                "ok"
            },
        ),
    );
    let h = Harness::with_routes(routes, |b| b);
    let anonymous = h.post("/set/cart/1", &[]).await;
    assert_eq!(max_age_checked(&anonymous.raw_cookie(), h.now()), None);
    let reply = h.post("/login-remember/alice", &[&anonymous.pair()]).await;
    assert_eq!(
        max_age_checked(&reply.raw_cookie(), h.now()),
        REMEMBER_ME.idle_timeout()
    );
    let pair = reply.pair();
    assert_ne!(pair, anonymous.pair());
    // It outlives the browser-session idle day: the expiry went with the
    // data to the new id.
    h.advance(Duration::days(3));
    assert_eq!(h.get("/get/user", &[&pair]).await.body, "alice");
    assert_eq!(h.get("/get/cart", &[&anonymous.pair()]).await.body, "none");
}

#[test]
fn timeouts_that_would_end_every_session_at_once_are_build_errors() {
    let clock = session_layer::clock::ManualClock::new();
    let build = |expiry: Expiry| {
        SessionLayer::builder(TestStore::new(clock.clone()), key())
            .expiry(expiry)
            .build()
    };
    for expiry in [
        Expiry::idle(Duration::ZERO),
        Expiry::idle(Duration::seconds(-5)),
        Expiry::absolute(Duration::ZERO),
        Expiry::idle(Duration::minutes(5)).with_absolute(Duration::ZERO),
        Expiry::browser_session().with_idle(Duration::seconds(-1)),
    ] {
        assert_eq!(
            build(expiry).unwrap_err(),
            ConfigError::InvalidDuration,
            "{expiry:?}"
        );
    }
    assert!(build(Expiry::idle(Duration::seconds(1))).is_ok());
    assert!(build(Expiry::browser_session()).is_ok());
}

#[tokio::test]
async fn s16_cookie_values_are_base64url_only() {
    let h = Harness::new();
    for _ in 0..50 {
        let pair = h.new_session().await;
        let value = value_of(&pair);
        assert!(!value.is_empty());
        assert!(
            value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{value}"
        );
    }
}

fn lifecycle_routes() -> Router {
    routes()
        .route(
            "/cycle-then-destroy",
            post(|s: Session| async move {
                s.insert("x", 1).unwrap();
                s.cycle_id();
                s.destroy();
                s.cycle_id();
                "ok"
            }),
        )
        .route(
            "/destroy-then-insert",
            post(|s: Session| async move {
                s.destroy();
                s.insert("flash", "signed out").unwrap();
                "ok"
            }),
        )
        .route(
            "/own-cookies",
            post(|s: Session| async move {
                s.insert("k", "v").unwrap();
                let mut res = "ok".into_response();
                for c in ["theme=dark; Path=/", "id=from-the-handler", "lang=en"] {
                    res.headers_mut().append(SET_COOKIE, c.parse().unwrap());
                }
                res
            }),
        )
        .route(
            "/public",
            get(|s: Session| async move {
                let n: u64 = s.get("n").unwrap().unwrap_or(0) + 1;
                s.insert("n", n).unwrap();
                ([(CACHE_CONTROL, "public, max-age=3600")], "cacheable?")
            }),
        )
        .route(
            "/public-read",
            get(|s: Session| async move {
                let _ = s.get::<u64>("n");
                ([(CACHE_CONTROL, "public, max-age=3600")], "read")
            }),
        )
        .route(
            "/vary",
            get(|s: Session| async move {
                let _ = s.get::<u64>("n");
                ([(VARY, "Accept-Encoding")], "varies")
            }),
        )
        .route(
            "/vary-cookie",
            get(|s: Session| async move {
                let _ = s.get::<u64>("n");
                ([(VARY, "cookie")], "varies")
            }),
        )
}

#[tokio::test]
async fn s17_cycle_then_destroy_in_one_handler_sends_one_removal_cookie() {
    let h = Harness::with_routes(lifecycle_routes(), |b| b);
    let pair = h.new_session().await;
    let reply = h.post("/cycle-then-destroy", &[&pair]).await;
    let ours = reply.raw_cookies_named(NAME);
    assert_eq!(ours.len(), 1, "{ours:?}");
    assert_eq!(reply.cookie().unwrap().value(), "", "a removal: {ours:?}");
    assert!(h.store.memory.is_empty(), "nothing left: no new id either");
    assert_eq!(h.get("/get/user", &[&pair]).await.body, "none");
}

#[tokio::test]
async fn s17_destroy_then_insert_sends_one_cookie_for_a_new_session() {
    let h = Harness::with_routes(lifecycle_routes(), |b| b);
    let pair = h.new_session().await;
    let reply = h.post("/destroy-then-insert", &[&pair]).await;
    let fresh = reply.pair();
    assert_ne!(fresh, pair);
    assert_eq!(h.get("/get/user", &[&pair]).await.body, "none");
    assert_eq!(
        h.get("/get/user", &[&fresh]).await.body,
        "none",
        "old data gone"
    );
    assert_eq!(h.get("/get/flash", &[&fresh]).await.body, "signed out");
}

#[tokio::test]
async fn s17_the_apps_own_cookies_are_kept_and_ours_is_sent_once() {
    let h = Harness::with_routes(lifecycle_routes(), |b| b);
    let reply = h.post("/own-cookies", &[]).await;
    let all = reply.set_cookies();
    assert!(all.iter().any(|c| c.starts_with("theme=dark")), "{all:?}");
    assert!(all.iter().any(|c| c.starts_with("lang=en")), "{all:?}");
    let ours = reply.pair();
    assert_ne!(value_of(&ours), "from-the-handler");
    assert_eq!(all.len(), 3, "{all:?}");
    assert_eq!(h.get("/get/k", &[&ours]).await.body, "v");
}

#[tokio::test]
async fn s17_two_nested_layers_send_one_session_cookie() {
    // The same layer installed twice by mistake, with a persistent expiry
    // and refresh on every request so that both would like to send one.
    let h = Harness::new();
    let layer = || {
        SessionLayer::builder(h.store.clone(), key())
            .clock(h.clock.clone())
            .expiry(Expiry::idle(Duration::hours(1)))
            .refresh_after(0.0)
            .build()
            .unwrap()
    };
    let app = lifecycle_routes().layer(layer()).layer(layer());
    let one = |reply: &Reply| {
        let ours = reply.raw_cookies_named(NAME);
        assert_eq!(ours.len(), 1, "{ours:?}");
        ours[0].clone()
    };
    let reply = send(&app, request("POST", "/set/user/alice", &[])).await;
    one(&reply);
    let pair = reply.pair();
    h.advance(Duration::minutes(1));
    let reply = send(&app, request("POST", "/set/k/v", &[&pair])).await;
    one(&reply);
    let reply = send(&app, request("GET", "/get/user", &[&pair])).await;
    assert_eq!(reply.body, "alice");
    let reply = send(&app, request("POST", "/login/alice", &[&pair])).await;
    one(&reply);
    let cycled = reply.pair();
    assert_ne!(cycled, pair);
    assert_eq!(
        send(&app, request("GET", "/get/user", &[&pair])).await.body,
        "none"
    );
    let reply = send(&app, request("POST", "/own-cookies", &[&cycled])).await;
    one(&reply);
    assert_eq!(reply.set_cookies().len(), 3);
    let reply = send(&app, request("POST", "/logout", &[&cycled])).await;
    assert!(one(&reply).starts_with("id=;"), "{:?}", reply.set_cookies());
    assert_eq!(
        send(&app, request("GET", "/get/user", &[&cycled]))
            .await
            .body,
        "none"
    );
}

#[tokio::test]
async fn s18_the_removal_cookie_repeats_every_attribute() {
    let h = Harness::new();
    let app = h.sibling(key(), |b| {
        b.cookie_name("__Secure-sid")
            .path("/app")
            .domain("example.com")
            .same_site(SameSite::Strict)
    });
    let c = send(&app, request("POST", "/set/user/alice", &[])).await;
    let set = c.cookie_named("__Secure-sid").unwrap();
    let pair = format!("__Secure-sid={}", set.value());
    let reply = send(&app, request("POST", "/logout", &[&pair])).await;
    let raw = reply.raw_cookies_named("__Secure-sid");
    assert_eq!(raw.len(), 1, "{raw:?}");
    let removal = reply.cookie_named("__Secure-sid").unwrap();
    assert_eq!(removal.value(), "", "{removal}");
    assert_eq!(removal.max_age(), Some(Duration::ZERO), "{removal}");
    let expires = removal.expires_datetime().expect("an Expires");
    assert!(expires < h.now(), "{removal}");
    assert!(expires < OffsetDateTime::now_utc(), "{removal}");
    assert!(raw[0].contains(" GMT"), "{raw:?}");
    for (what, got, want) in [
        ("path", removal.path(), set.path()),
        ("domain", removal.domain(), set.domain()),
    ] {
        assert_eq!(got, want, "{what}: {removal}");
    }
    assert_eq!(removal.secure(), Some(true));
    assert_eq!(removal.http_only(), set.http_only());
    assert_eq!(removal.same_site(), Some(cookie::SameSite::Strict));

    // A `__Host-` cookie's removal keeps the prefix rules.
    let app = h.sibling(key(), |b| b.cookie_name("__Host-id"));
    let c = send(&app, request("POST", "/set/user/alice", &[])).await;
    let pair = format!("__Host-id={}", c.cookie_named("__Host-id").unwrap().value());
    let reply = send(&app, request("POST", "/logout", &[&pair])).await;
    let removal = reply.cookie_named("__Host-id").unwrap();
    assert_eq!(removal.value(), "");
    assert_eq!(removal.secure(), Some(true));
    assert_eq!((removal.path(), removal.domain()), (Some("/"), None));
}

// --- E. lifecycle -----------------------------------------------------------------

#[tokio::test]
async fn s23_cookieless_requests_touch_no_store_and_get_no_cookie() {
    let h = Harness::with_routes(lifecycle_routes(), |b| b);
    for (method, uri) in [
        ("GET", "/"),
        ("GET", "/get/user"),
        ("GET", "/keys"),
        ("POST", "/logout"),
        ("POST", "/clear"),
        ("POST", "/remove/user"),
        ("POST", "/forget"),
        ("GET", "/public-read"),
    ] {
        let reply = h.send(request(method, uri, &[])).await;
        assert!(reply.status.is_success(), "{uri}: {}", reply.status);
        assert!(
            reply.set_cookies().is_empty(),
            "{uri}: {:?}",
            reply.set_cookies()
        );
        assert!(
            reply
                .header("cache-control")
                .iter()
                .all(|v| v != "no-store"),
            "{uri}"
        );
    }
    assert_eq!(h.store.total_calls(), 0);
}

#[tokio::test]
async fn s23_unknown_ids_bots_and_logouts_of_no_session_write_nothing() {
    let h = Harness::new();
    let unknown = unknown_but_signed(key(), NAME).await;
    for (method, uri, cookie) in [
        ("GET", "/get/user", unknown.as_str()),
        ("POST", "/logout", unknown.as_str()),
        ("POST", "/clear", unknown.as_str()),
        ("POST", "/forget", unknown.as_str()),
        ("GET", "/get/user", "id=botgarbage"),
        ("POST", "/logout", "id=botgarbage"),
        ("GET", "/", "id=botgarbage; other=1"),
    ] {
        let reply = h.send(request(method, uri, &[cookie])).await;
        assert!(reply.status.is_success(), "{uri}");
        assert!(
            reply.set_cookies().is_empty(),
            "{uri} {cookie}: {:?}",
            reply.set_cookies()
        );
    }
    assert_eq!(h.store.writes(), 0);
    assert_eq!(
        h.store.calls(Op::Load),
        4,
        "one load per verified unknown id"
    );
}

#[tokio::test]
async fn s23_requests_that_change_nothing_on_a_live_session_write_nothing() {
    let h = Harness::new();
    let pair = h.new_session().await;
    let writes = h.store.writes();
    for (method, uri) in [
        ("GET", "/get/user"),
        ("GET", "/keys"),
        ("POST", "/set/user/alice"), // the value it already has
        ("POST", "/remove/missing"),
        ("POST", "/forget"), // already the layer's expiry
        ("GET", "/"),
    ] {
        let reply = h.send(request(method, uri, &[&pair])).await;
        assert_eq!(reply.status, StatusCode::OK, "{uri}");
        assert!(
            reply.set_cookies().is_empty(),
            "{uri}: {:?}",
            reply.set_cookies()
        );
    }
    assert_eq!(h.store.writes(), writes);
}

#[tokio::test]
async fn s24_login_cycles_the_id_keeps_the_data_and_kills_the_old_id() {
    let h = Harness::new();
    let anonymous = h.post("/set/cart/3-items", &[]).await.pair();
    let first = h.post("/login/alice", &[&anonymous]).await.pair();
    assert_ne!(raw_id(value_of(&first)), raw_id(value_of(&anonymous)));
    assert_eq!(h.get("/get/cart", &[&first]).await.body, "3-items");
    assert_eq!(h.get("/get/user", &[&first]).await.body, "alice");
    assert_eq!(h.get("/get/cart", &[&anonymous]).await.body, "none");
    assert!(stored(&h.store.memory, &hash_of(&anonymous))
        .await
        .is_none());

    // A second login of the same user (nothing changes in the data) cycles too.
    let second = h.post("/login/alice", &[&first]).await.pair();
    assert_ne!(raw_id(value_of(&second)), raw_id(value_of(&first)));
    assert_eq!(h.get("/get/user", &[&second]).await.body, "alice");
    assert_eq!(h.get("/get/user", &[&first]).await.body, "none");
    // Only the live session is left in the store.
    assert_eq!(h.store.memory.len(), 1);
}

#[tokio::test]
async fn s25_logout_deletes_and_replay_finds_nothing() {
    let h = Harness::new();
    let pair = h.post("/login/alice", &[]).await.pair();
    let hash = hash_of(&pair);
    assert!(stored(&h.store.memory, &hash).await.is_some());
    let reply = h.post("/logout", &[&pair]).await;
    assert_eq!(reply.cookie().unwrap().value(), "", "removal cookie");
    assert!(
        stored(&h.store.memory, &hash).await.is_none(),
        "record deleted"
    );
    assert!(h.store.memory.is_empty());

    // Replay of the old cookie: no session, and a write does not revive it.
    let reply = h.get("/get/user", &[&pair]).await;
    assert_eq!(reply.body, "none");
    let reply = h.post("/set/user/mallory", &[&pair]).await;
    assert_ne!(raw_id(value_of(&reply.pair())), raw_id(value_of(&pair)));
    assert!(stored(&h.store.memory, &hash).await.is_none());
}

#[tokio::test]
async fn s26_the_store_write_is_done_before_the_response_returns() {
    let slow = std::time::Duration::from_millis(50);
    let h = Harness::new();
    for op in [Op::Create, Op::Save, Op::Delete, Op::Touch] {
        h.store.fail(op, Fault::Delay(slow));
    }
    let pair = h.post("/set/user/alice", &[]).await.pair();
    // Checked straight in the store, the instant the response is back.
    let record = stored(&h.store.memory, &hash_of(&pair))
        .await
        .expect("created");
    assert_eq!(record.data["user"], "alice");

    h.post("/set/user/bob", &[&pair]).await;
    let record = stored(&h.store.memory, &hash_of(&pair)).await.unwrap();
    assert_eq!(record.data["user"], "bob");

    let cycled = h.post("/login/bob", &[&pair]).await.pair();
    assert!(stored(&h.store.memory, &hash_of(&pair)).await.is_none());
    assert!(stored(&h.store.memory, &hash_of(&cycled)).await.is_some());

    h.post("/logout", &[&cycled]).await;
    assert!(h.store.memory.is_empty());
}

#[tokio::test]
async fn s28_changes_are_not_saved_on_5xx_by_default() {
    let h = Harness::new();
    let reply = h.post("/fail/k", &[]).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(reply.set_cookies().is_empty());
    assert_eq!(h.store.writes(), 0);

    let pair = h.new_session().await;
    let writes = h.store.writes();
    let reply = h.post("/fail/k", &[&pair]).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(reply.set_cookies().is_empty());
    assert_eq!(h.store.writes(), writes);
    assert_eq!(h.get("/get/k", &[&pair]).await.body, "none");
}

#[tokio::test]
async fn s28_saving_on_5xx_can_be_turned_on() {
    let h = Harness::with(|b| b.save_on_server_error(true));
    let reply = h.post("/fail/k", &[]).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    let pair = reply.pair();
    assert_eq!(
        h.get("/get/k", &[&pair]).await.body,
        "written before the failure"
    );
}

#[tokio::test]
async fn s28_a_4xx_still_saves() {
    let routes = routes().route(
        "/bad-request",
        post(|s: Session| async move {
            s.insert("attempts", 1).unwrap();
            (StatusCode::BAD_REQUEST, "no")
        }),
    );
    let h = Harness::with_routes(routes, |b| b);
    let reply = h.post("/bad-request", &[]).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(h.get("/get/attempts", &[&reply.pair()]).await.body, "1");
}

// --- H. caching --------------------------------------------------------------------

#[tokio::test]
async fn s37_a_response_with_the_session_cookie_is_no_store_whatever_the_handler_said() {
    let h = Harness::with_routes(lifecycle_routes(), |b| b);
    let reply = h.get("/public", &[]).await;
    assert!(reply.cookie().is_some());
    assert_eq!(reply.header("cache-control"), ["no-store"]);
    let pair = reply.pair();
    // Cycling and removal cookies too.
    let reply = h.post("/login/alice", &[&pair]).await;
    assert_eq!(reply.header("cache-control"), ["no-store"]);
    let reply = h.post("/logout", &[&reply.pair()]).await;
    assert_eq!(reply.header("cache-control"), ["no-store"]);
    // Without our cookie the handler's caching stands.
    let reply = h.get("/public-read", &[]).await;
    assert!(reply.set_cookies().is_empty());
    assert_eq!(reply.header("cache-control"), ["public, max-age=3600"]);
}

#[tokio::test]
async fn s38_a_response_that_read_the_session_varies_by_cookie() {
    let h = Harness::with_routes(lifecycle_routes(), |b| b);
    let pair = h.new_session().await;
    let has_cookie = |reply: &Reply| {
        reply
            .header("vary")
            .iter()
            .flat_map(|v| {
                v.split(',')
                    .map(|t| t.trim().to_ascii_lowercase())
                    .collect::<Vec<_>>()
            })
            .filter(|t| t == "cookie")
            .count()
    };
    // Read, with and without a session.
    assert_eq!(has_cookie(&h.get("/get/user", &[&pair]).await), 1);
    assert_eq!(has_cookie(&h.get("/get/user", &[]).await), 1);
    // The handler's own Vary is kept, and `cookie` is not repeated.
    let reply = h.get("/vary", &[&pair]).await;
    assert_eq!(has_cookie(&reply), 1);
    assert!(reply
        .header("vary")
        .iter()
        .any(|v| v.contains("Accept-Encoding")));
    assert_eq!(has_cookie(&h.get("/vary-cookie", &[&pair]).await), 1);
    // A page that never looks at the session does not vary.
    assert_eq!(has_cookie(&h.get("/", &[&pair]).await), 0);
    assert!(h.get("/", &[&pair]).await.header("vary").is_empty());
}

#[tokio::test]
async fn s41_a_layer_cannot_be_built_from_a_short_secret() {
    // The only way to a layer is through a Key, and a Key refuses short
    // secrets.
    for len in [0, 1, 16, 31] {
        let secret = vec![5u8; len];
        assert_eq!(
            Key::try_from(secret.as_slice()).unwrap_err(),
            ConfigError::KeyTooShort { len }
        );
    }
}

// --- the memory store, called in place ------------------------------------------

/// The memory store runs the session path in place (no boxed future, its
/// methods called directly); these are the races and deadlines that the
/// boxed path's tests (on a wrapping `TestStore`) check, on that path.
fn memory_app(store: session_layer::MemoryStore, idle: Duration) -> Router {
    use std::sync::Arc;
    use tokio::sync::Notify;
    let gate = Arc::new(Notify::new());
    let layer = SessionLayer::builder(store, key())
        .secure(false)
        .expiry(Expiry::idle(idle))
        .build()
        .unwrap();
    routes()
        .route(
            // Reads, waits until told, then writes: a request in flight.
            "/slow/{key}",
            post({
                let gate = gate.clone();
                move |s: Session, axum::extract::Path(key): axum::extract::Path<String>| async move {
                    let before: Option<String> = s.get("user").unwrap();
                    gate.notified().await;
                    s.insert(&key, "late").unwrap();
                    format!("{before:?}")
                }
            }),
        )
        .route(
            "/release",
            post(move || async move {
                gate.notify_one();
                "released"
            }),
        )
        .layer(layer)
}

/// Starts `POST path` with `cookie` on its own task and lets it run up to
/// its first wait: a request in flight.
async fn in_flight(app: &Router, path: &str, cookie: &str) -> tokio::task::JoinHandle<Reply> {
    let request = request("POST", path, &[cookie]);
    let handle = tokio::spawn({
        let app = app.clone();
        async move { send(&app, request).await }
    });
    tokio::task::yield_now().await;
    handle
}

/// The reply of a request started with [`in_flight`], once it is released.
async fn finished(handle: tokio::task::JoinHandle<Reply>) -> Reply {
    tokio::time::timeout(std::time::Duration::from_secs(5), handle)
        .await
        .expect("the request in flight finishes")
        .unwrap()
}

#[tokio::test]
async fn s27_memory_store_a_request_in_flight_during_sign_in_does_not_sign_the_user_out() {
    let app = memory_app(session_layer::MemoryStore::new(), Duration::minutes(30));
    let anonymous = send(&app, request("POST", "/set/theme/dark", &[]))
        .await
        .raw_cookie();
    // A: loads the anonymous session, then waits.
    let slow = in_flight(&app, "/slow/last_seen", &anonymous).await;
    // B: signs in (new id) while A is in flight.
    let signed_in = send(&app, request("POST", "/login/ada", &[&anonymous])).await;
    let signed_in = signed_in.raw_cookie();
    assert_ne!(signed_in, anonymous);
    let _ = send(&app, request("POST", "/release", &[])).await;
    let late = finished(slow).await;
    // A's changes went to the old id, which is gone: no cookie, so the
    // browser keeps B's.
    assert!(late.set_cookies().is_empty(), "{:?}", late.set_cookies());
    assert_eq!(
        send(&app, request("GET", "/get/user", &[&signed_in]))
            .await
            .body,
        "ada"
    );
    assert_eq!(
        send(&app, request("GET", "/get/theme", &[&signed_in]))
            .await
            .body,
        "dark"
    );
    assert_eq!(
        send(&app, request("GET", "/get/last_seen", &[&signed_in]))
            .await
            .body,
        "none"
    );
}

#[tokio::test]
async fn s8_memory_store_a_session_that_expires_during_a_request_is_not_saved() {
    // Real time: the layer and the store are both on the system clock,
    // where the layer lends the store its reading at the start of the
    // request; the save at the end must use the time of the save.
    let store = session_layer::MemoryStore::new();
    let app = memory_app(store.clone(), Duration::seconds(2));
    let cookie = send(&app, request("POST", "/set/user/ada", &[]))
        .await
        .raw_cookie();
    let slow = in_flight(&app, "/slow/late", &cookie).await;
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    let _ = send(&app, request("POST", "/release", &[])).await;
    let late = finished(slow).await;
    assert_eq!(late.body, "Some(\"ada\")", "live when the request started");
    assert!(late.set_cookies().is_empty(), "{:?}", late.set_cookies());
    use session_layer::store::SessionStore;
    assert_eq!(
        store.purge_expired().await.unwrap(),
        1,
        "left expired, not extended"
    );
}

/// The in-place path (the memory store as it is) and the boxed path (the
/// same store behind an `Arc`, called through its trait) give the same
/// responses and leave the same data, over 300 generated multi-request
/// scripts of inserts, removes, clears, destroys, cycles and reads, keys
/// with quotes and non-ASCII included.
#[tokio::test]
async fn the_in_place_and_the_boxed_path_behave_alike() {
    use std::sync::Arc;

    async fn script(s: Session, body: String) -> String {
        let mut out = Vec::new();
        for op in body.split(';').filter(|op| !op.is_empty()) {
            let parts: Vec<&str> = op.split(' ').collect();
            match parts[..] {
                ["insert", k, v] => s.insert(k, v.parse::<i64>().unwrap()).unwrap(),
                ["remove", k] => out.push(format!("{:?}", s.remove(k))),
                ["get", k] => out.push(format!("{:?}", s.get::<i64>(k).unwrap())),
                ["clear"] => s.clear(),
                ["destroy"] => s.destroy(),
                ["cycle"] => s.cycle_id(),
                ["keys"] => out.push(format!("{:?} {} {}", s.keys(), s.len(), s.is_empty())),
                _ => panic!("bad op {op}"),
            }
        }
        out.join("|")
    }
    let layer = |store: session_layer::Storage| {
        SessionLayer::builder(store, key())
            .secure(false)
            .build()
            .unwrap()
    };
    let direct = session_layer::MemoryStore::new();
    let boxed = session_layer::MemoryStore::new();
    let apps = [
        Router::new()
            .route("/s", post(script))
            .layer(layer(direct.clone().into())),
        Router::new()
            .route("/s", post(script))
            .layer(layer(Arc::new(boxed.clone()).into())),
    ];
    let keys = ["a", "b", "q\"uote", "é"];
    // A small deterministic generator: the same scripts every run.
    let mut seed: u64 = 0x5e55_10a7;
    let mut next = |n: usize| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as usize % n
    };
    for round in 0..300 {
        let mut cookies = [None::<String>, None::<String>];
        for _request in 0..1 + next(4) {
            let ops: Vec<String> = (0..1 + next(5))
                .map(|_| {
                    let k = keys[next(keys.len())];
                    match next(10) {
                        0..=3 => format!("insert {k} {}", next(3)),
                        4 => format!("remove {k}"),
                        5 | 6 => format!("get {k}"),
                        7 => ["clear", "destroy", "cycle"][next(3)].to_owned(),
                        _ => "keys".to_owned(),
                    }
                })
                .collect();
            let body = ops.join(";");
            let mut seen = Vec::new();
            for (app, cookie) in apps.iter().zip(cookies.iter_mut()) {
                let mut req = request("POST", "/s", &[]);
                if let Some(c) = cookie.as_deref() {
                    req.headers_mut()
                        .insert(http::header::COOKIE, c.parse().unwrap());
                }
                *req.body_mut() = axum::body::Body::from(body.clone());
                let reply = send(app, req).await;
                let set = reply.set_cookies();
                let removed = set.iter().any(|c| c.contains("Max-Age=0"));
                if let Some(c) = reply.cookie() {
                    *cookie = (!removed).then(|| format!("{}={}", c.name(), c.value()));
                }
                seen.push((
                    reply.status,
                    reply.body,
                    set.len(),
                    removed,
                    reply.headers.get(VARY).cloned(),
                ));
            }
            assert_eq!(seen[0], seen[1], "round {round}, script {body:?}");
        }
    }
    use session_layer::store::SessionStore;
    assert_eq!(
        direct.len(),
        boxed.len(),
        "the same number of sessions left"
    );
    assert_eq!(direct.purge_expired().await.unwrap(), 0);
}

/// A value nested deeper than the stores can read back is refused at
/// `insert`, and the session keeps everything else (S35 would otherwise
/// make the whole record unreadable on its next load); the deepest value
/// allowed comes back whole from the memory store (in place and through
/// its trait) and from a cookie session, also after `cycle_id`.
#[tokio::test]
async fn values_nested_too_deep_for_the_stores_are_refused_at_insert() {
    use serde_json::{json, Value};
    use session_layer::store::CookieStore;
    use session_layer::{MemoryStore, MAX_NESTING};
    use std::sync::Arc;

    fn nested(depth: usize) -> Value {
        (0..depth).fold(json!(1), |inner, _| json!([inner]))
    }
    async fn deep(s: Session, axum::extract::Path(depth): axum::extract::Path<usize>) -> String {
        s.insert("user", "alice").unwrap();
        match s.insert("deep", nested(depth)) {
            Ok(()) => "stored".into(),
            Err(e) => format!("{:?}", e.kind()),
        }
    }
    async fn read(s: Session) -> String {
        let deep = s.get::<Value>("deep").unwrap();
        let user = s.get::<String>("user").unwrap();
        format!(
            "{:?} {:?} {}",
            user,
            deep.map(|d| d == nested(MAX_NESTING)),
            s.len()
        )
    }
    async fn cycle(s: Session) -> &'static str {
        s.cycle_id();
        "cycled"
    }
    let routes = || {
        Router::new()
            .route("/deep/{depth}", post(deep))
            .route("/read", get(read))
            .route("/cycle", post(cycle))
    };
    let layer = |store: session_layer::Storage| {
        SessionLayer::builder(store, key())
            .secure(false)
            .build()
            .unwrap()
    };
    let apps = [
        (
            "memory, in place",
            routes().layer(layer(MemoryStore::new().into())),
        ),
        (
            "memory, trait",
            routes().layer(layer(Arc::new(MemoryStore::new()).into())),
        ),
        (
            "cookie session",
            routes().layer(layer(CookieStore::new().into())),
        ),
    ];
    for (name, app) in apps {
        let refused = send(
            &app,
            request("POST", &format!("/deep/{}", MAX_NESTING + 1), &[]),
        )
        .await;
        assert_eq!(
            refused.body,
            format!("{:?}", SessionErrorKind::Serialize),
            "{name}"
        );
        let pair = refused.pair();
        let kept = send(&app, request("GET", "/read", &[&pair])).await;
        assert_eq!(
            kept.body, "Some(\"alice\") None 1",
            "{name}: the rest of the session stays"
        );

        let stored = send(&app, request("POST", &format!("/deep/{MAX_NESTING}"), &[])).await;
        assert_eq!(stored.body, "stored", "{name}");
        let pair = stored.pair();
        let back = send(&app, request("GET", "/read", &[&pair])).await;
        assert_eq!(back.body, "Some(\"alice\") Some(true) 2", "{name}");
        let cycled = send(&app, request("POST", "/cycle", &[&pair])).await.pair();
        let back = send(&app, request("GET", "/read", &[&cycled])).await;
        assert_eq!(
            back.body, "Some(\"alice\") Some(true) 2",
            "{name}: after cycle_id"
        );
    }
}

/// A sign-in (`cycle_id`) that loaded the session before another request
/// saved a different key keeps that key: the new id gets the record as it
/// is when the cycle runs, with the sign-in's own changes applied (S34),
/// not the copy the sign-in loaded. In place and through the store trait.
#[tokio::test]
async fn s34_a_slow_sign_in_keeps_what_a_concurrent_request_saved() {
    use std::sync::Arc;
    use tokio::sync::Notify;

    for (name, storage) in [
        (
            "memory, in place",
            session_layer::Storage::from(session_layer::MemoryStore::new()),
        ),
        (
            "memory, trait",
            Arc::new(session_layer::MemoryStore::new()).into(),
        ),
    ] {
        let gate = Arc::new(Notify::new());
        let layer = SessionLayer::builder(storage, key())
            .secure(false)
            .build()
            .unwrap();
        let app = routes()
            .route(
                // Loads, waits until told, then signs in.
                "/slow-login/{user}",
                post({
                    let gate = gate.clone();
                    move |s: Session, axum::extract::Path(user): axum::extract::Path<String>| async move {
                        let _: Option<String> = s.get("theme").unwrap();
                        gate.notified().await;
                        s.insert("user", user).unwrap();
                        s.cycle_id();
                        "signed in"
                    }
                }),
            )
            .layer(layer);
        let anonymous = send(&app, request("POST", "/set/theme/dark", &[]))
            .await
            .raw_cookie();
        let slow = in_flight(&app, "/slow-login/ada", &anonymous).await;
        // While the sign-in waits, another request adds to the cart.
        let cart = send(&app, request("POST", "/set/cart/3", &[&anonymous])).await;
        assert_eq!(cart.status, StatusCode::OK, "{name}");
        gate.notify_one();
        let signed_in = finished(slow).await;
        let signed_in = signed_in.raw_cookie();
        assert_ne!(signed_in, anonymous, "{name}");
        for (key, want) in [("user", "ada"), ("theme", "dark"), ("cart", "3")] {
            let got = send(&app, request("GET", &format!("/get/{key}"), &[&signed_in])).await;
            assert_eq!(got.body, want, "{name}: {key} after the sign-in");
        }
        let old = send(&app, request("GET", "/get/cart", &[&anonymous])).await;
        assert_eq!(old.body, "none", "{name}: the old id is dead (S24)");
    }
}

/// `expires_at` reports what the response leaves the session with: `None`
/// when the response ends it (every value removed), and for a cookie
/// session that a fallback key opened, the deadline of the re-sealed
/// cookie it sends (S9), matching that cookie's `Max-Age`.
#[tokio::test]
async fn expires_at_agrees_with_an_ending_or_resealed_session() {
    use session_layer::clock::{Clock, ManualClock};
    use session_layer::store::CookieStore;

    async fn exp(s: Session) -> String {
        s.expires_at()
            .map_or("none".into(), |t| t.unix_timestamp().to_string())
    }
    async fn empty_exp(s: Session) -> String {
        s.remove("a");
        exp(s).await
    }
    let routes = || {
        Router::new()
            .route(
                "/set",
                post(|s: Session| async move { s.insert("a", 1).unwrap() }),
            )
            .route("/exp", get(exp))
            .route("/empty", post(empty_exp))
    };
    let clock = ManualClock::new();
    let layer = |storage: session_layer::Storage, current: u8, fallback: Option<u8>| {
        let key = |n: u8| Key::try_from(&[n; 32][..]).unwrap();
        let mut b = SessionLayer::builder(storage, key(current))
            .secure(false)
            .clock(clock.clone())
            .expiry(Expiry::idle(Duration::minutes(40)));
        if let Some(n) = fallback {
            b = b.fallback_key(key(n));
        }
        b.build().unwrap()
    };
    let now = || clock.now().unix_timestamp();

    // Emptied by this response: it ends, so there is no deadline.
    let memory = routes().layer(layer(session_layer::MemoryStore::new().into(), 1, None));
    let pair = send(&memory, request("POST", "/set", &[])).await.pair();
    let ended = send(&memory, request("POST", "/empty", &[&pair])).await;
    assert_eq!(ended.body, "none");
    assert_eq!(ended.cookie().unwrap().max_age(), Some(Duration::ZERO));

    // A cookie session sealed under key 1, read five minutes later by a
    // layer whose current key is 2: re-sealed under key 2 with its
    // deadline kept (a re-sign is not activity; no refresh is due yet).
    let old = routes().layer(layer(CookieStore::new().into(), 1, None));
    let rotated = routes().layer(layer(CookieStore::new().into(), 2, Some(1)));
    let pair = send(&old, request("POST", "/set", &[])).await.pair();
    clock.advance(Duration::minutes(5));
    let read = send(&rotated, request("GET", "/exp", &[&pair])).await;
    let max_age = read.cookie().unwrap().max_age().unwrap();
    assert_eq!(max_age, Duration::minutes(35));
    assert_eq!(read.body, (now() + 35 * 60).to_string());
    // The new cookie opens under key 2 alone, with the same deadline.
    let resealed = read.pair();
    let current_only = routes().layer(layer(CookieStore::new().into(), 2, None));
    let again = send(&current_only, request("GET", "/exp", &[&resealed])).await;
    assert_eq!(again.body, (now() + 35 * 60).to_string());
}

// --- loading when the handler asks ----------------------------------------------

/// Routes that use the session the way a service outside axum does: taken
/// from the request's extensions, so loading is up to the handler.
fn extension_routes() -> Router {
    use axum::extract::Request;
    use tokio::time::{timeout, Duration as StdDuration};
    let session = |req: &Request| req.extensions().get::<Session>().unwrap().clone();
    routes()
        // Two handles load at once: one lookup.
        .route(
            "/twice",
            get(move |req: Request| async move {
                let (a, b) = (session(&req), session(&req));
                let (x, y) = tokio::join!(a.load(), b.load());
                x.unwrap();
                y.unwrap();
                a.get::<String>("user").unwrap().unwrap_or_default()
            }),
        )
        // A load given up half-way (the store is slow), then one to the end.
        .route(
            "/give-up",
            get(move |req: Request| async move {
                let s = session(&req);
                let first = timeout(StdDuration::from_millis(10), s.load()).await;
                assert!(first.is_err(), "the slow store answered in 10 ms");
                s.load().await.unwrap();
                s.get::<String>("user").unwrap().unwrap_or_default()
            }),
        )
        // Uses the session without loading it.
        .route(
            "/unloaded-get",
            get(move |req: Request| async move {
                let s = session(&req);
                match s.get::<String>("user") {
                    Err(e) if e.kind() == SessionErrorKind::NotLoaded => "not loaded".to_owned(),
                    other => format!("{other:?}"),
                }
            }),
        )
        .route(
            "/unloaded-logout",
            post(move |req: Request| async move {
                session(&req).destroy();
                "bye"
            }),
        )
        .route(
            "/unloaded-insert",
            post(move |req: Request| async move {
                let s = session(&req);
                let refused = s.insert("user", "mallory").unwrap_err().kind();
                // Loading afterwards does not make the session usable: the
                // handler already saw it empty.
                s.load().await.unwrap();
                let again = s.insert("user", "mallory").unwrap_err().kind();
                format!("{refused:?} {again:?}")
            }),
        )
}

#[tokio::test]
async fn a_page_that_never_takes_the_session_costs_no_store_call_and_sends_nothing() {
    let h = Harness::with(|b| b.expiry(Expiry::idle(Duration::minutes(10))));
    let pair = h.new_session().await;
    let calls = h.store.total_calls();
    for _ in 0..5 {
        let reply = h.get("/", &[&pair]).await;
        assert_eq!((reply.status, reply.body.as_str()), (StatusCode::OK, "ok"));
        assert!(reply.set_cookies().is_empty());
        assert!(reply.header("vary").is_empty());
    }
    assert_eq!(h.store.total_calls(), calls, "no store call at all");
    // A page that reads: one load.
    assert_eq!(h.get("/get/user", &[&pair]).await.body, "alice");
    assert_eq!(h.store.calls(Op::Load), 1);
    assert_eq!(h.store.total_calls(), calls + 1);
    // An untouched page does not extend the idle time; a read does.
    h.advance(Duration::minutes(6));
    let _ = h.get("/", &[&pair]).await;
    h.advance(Duration::minutes(6));
    assert_eq!(h.get("/get/user", &[&pair]).await.body, "none", "expired");
    let pair = h.new_session().await;
    h.advance(Duration::minutes(6));
    assert_eq!(h.get("/get/user", &[&pair]).await.body, "alice");
    h.advance(Duration::minutes(6));
    assert_eq!(
        h.get("/get/user", &[&pair]).await.body,
        "alice",
        "refreshed"
    );
}

#[tokio::test]
async fn memory_store_in_place_an_untouched_page_neither_loads_nor_extends() {
    // The in-place path: the same rule, seen through the idle deadline.
    let clock = session_layer::clock::ManualClock::new();
    let store = session_layer::MemoryStore::with_clock(clock.clone());
    let layer = SessionLayer::builder(store.clone(), key())
        .clock(clock.clone())
        .expiry(Expiry::idle(Duration::minutes(10)))
        .build()
        .unwrap();
    let app = routes().layer(layer);
    let pair = send(&app, request("POST", "/set/user/ada", &[]))
        .await
        .pair();
    let before = stored(&store, &hash_of(&pair)).await.unwrap();
    // Past the point where a read refreshes the idle deadline.
    clock.advance(Duration::minutes(6));
    for _ in 0..3 {
        let reply = send(&app, request("GET", "/", &[&pair])).await;
        assert!(reply.set_cookies().is_empty() && reply.header("vary").is_empty());
    }
    assert_eq!(stored(&store, &hash_of(&pair)).await.unwrap(), before);
    let reply = send(&app, request("GET", "/get/user", &[&pair])).await;
    assert_eq!(reply.body, "ada");
    assert_eq!(reply.header("vary"), ["Cookie"]);
    let after = stored(&store, &hash_of(&pair)).await.unwrap();
    assert!(
        after.expires_at > before.expires_at,
        "the read refreshed it"
    );
}

#[tokio::test]
async fn concurrent_loads_of_one_session_make_one_lookup_and_a_dropped_load_is_retried() {
    let h = Harness::with_routes(extension_routes(), |b| b);
    let pair = h.new_session().await;
    h.store
        .fail(Op::Load, Fault::Delay(std::time::Duration::from_millis(50)));
    assert_eq!(h.get("/twice", &[&pair]).await.body, "alice");
    assert_eq!(h.store.calls(Op::Load), 1);
    let reply = h.get("/give-up", &[&pair]).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (StatusCode::OK, "alice")
    );
    assert_eq!(
        h.store.calls(Op::Load),
        3,
        "the dropped lookup, then one more"
    );
}

#[tokio::test]
async fn a_session_used_before_it_is_loaded_commits_nothing_and_fails_loudly() {
    for in_place in [false, true] {
        let (h, store) = if in_place {
            let store = session_layer::MemoryStore::new();
            let layer = SessionLayer::builder(store.clone(), key()).build().unwrap();
            let h = Harness::with_routes(extension_routes(), |b| b);
            (
                Harness {
                    app: extension_routes().layer(layer),
                    ..h
                },
                store,
            )
        } else {
            let h = Harness::with_routes(extension_routes(), |b| b);
            let store = h.store.memory.clone();
            (h, store)
        };
        let pair = h.new_session().await;
        let hash = hash_of(&pair);
        let before = stored(&store, &hash).await.unwrap();
        // A read before `load` is an error, and the response is a 500.
        let reply = h.get("/unloaded-get", &[&pair]).await;
        assert_eq!(
            reply.status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{in_place}"
        );
        assert_eq!(
            reply
                .extensions
                .get::<SessionError>()
                .map(SessionError::kind),
            Some(SessionErrorKind::NotLoaded)
        );
        assert!(reply.set_cookies().is_empty());
        // A logout before `load` is not carried out half-way: nothing is
        // deleted, and the client is told it failed, not that it worked.
        let reply = h.post("/unloaded-logout", &[&pair]).await;
        assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(reply.set_cookies().is_empty());
        // A write before `load` is refused, and one after it in the same
        // request is not saved either.
        let reply = h.post("/unloaded-insert", &[&pair]).await;
        assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(stored(&store, &hash).await.unwrap(), before, "{in_place}");
        assert_eq!(h.get("/get/user", &[&pair]).await.body, "alice");
    }
}

#[tokio::test]
async fn eager_load_serves_services_that_never_call_load() {
    use axum::extract::Request;
    // A handler that uses the session straight from the extensions.
    let count = |req: Request| async move {
        let s = req.extensions().get::<Session>().unwrap().clone();
        let n = s.get::<u64>("n").unwrap().unwrap_or(0) + 1;
        s.insert("n", n).unwrap();
        n.to_string()
    };
    let boxed = Harness::with_routes(Router::new().route("/", get(count)), |b| b.eager_load(true));
    let store = session_layer::MemoryStore::new();
    let in_place = Router::new().route("/", get(count)).layer(
        SessionLayer::builder(store, key())
            .eager_load(true)
            .build()
            .unwrap(),
    );
    for app in [boxed.app.clone(), in_place] {
        let first = send(&app, request("GET", "/", &[])).await;
        let pair = first.pair();
        assert_eq!(first.body, "1");
        assert_eq!(send(&app, request("GET", "/", &[&pair])).await.body, "2");
        assert_eq!(send(&app, request("GET", "/", &[&pair])).await.body, "3");
    }
    assert_eq!(boxed.store.calls(Op::Load), 2);
}

#[tokio::test]
async fn option_session_rejects_when_the_store_fails() {
    let routes = routes().route(
        "/optional",
        get(
            |s: Option<Session>| async move { format!("{:?}", s.map(|s| s.get::<String>("user"))) },
        ),
    );
    let h = Harness::with_routes(routes, |b| b.error_status(StatusCode::BAD_GATEWAY));
    let pair = h.new_session().await;
    assert_eq!(
        h.get("/optional", &[&pair]).await.body,
        "Some(Ok(Some(\"alice\")))"
    );
    h.store.fail(Op::Load, Fault::Backend);
    let reply = h.get("/optional", &[&pair]).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert!(reply
        .extensions
        .get::<session_layer::StoreError>()
        .is_some());
}

/// The test routes plus `/parked/{key}`: a middleware inside the layer
/// waits until `/unpark` before the handler runs, so the session is looked
/// up only then; the handler writes `key`.
fn parked_routes() -> Router {
    use std::sync::Arc;
    use tokio::sync::Notify;
    let gate = Arc::new(Notify::new());
    let wait = {
        let gate = gate.clone();
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            let gate = gate.clone();
            async move {
                gate.notified().await;
                next.run(req).await
            }
        }
    };
    routes()
        .route(
            "/parked/{key}",
            post(
                |s: Session, axum::extract::Path(key): axum::extract::Path<String>| async move {
                    let before: Option<String> = s.get("user").unwrap();
                    s.insert(&key, "late").unwrap();
                    // This response commits nothing: no deadline to show.
                    format!("{before:?} {}", s.expires_at().is_some())
                },
            )
            .layer(axum::middleware::from_fn(wait.clone())),
        )
        .route(
            "/parked-remove/{key}",
            post(
                |s: Session, axum::extract::Path(key): axum::extract::Path<String>| async move {
                    format!("{:?}", s.remove(&key))
                },
            )
            .layer(axum::middleware::from_fn(wait.clone())),
        )
        .route(
            "/parked-logout",
            post(|s: Session| async move {
                s.destroy();
                "bye"
            })
            .layer(axum::middleware::from_fn(wait)),
        )
        .route(
            "/unpark",
            post(move || async move {
                gate.notify_one();
                "unparked"
            }),
        )
}

#[tokio::test]
async fn s27_a_request_that_looks_only_after_a_concurrent_sign_in_or_out_does_not_undo_it() {
    use session_layer::store::CookieStore;
    let memory = session_layer::MemoryStore::new();
    let boxed = Harness::with_routes(parked_routes(), |b| b);
    let layer = |storage: session_layer::Storage| {
        parked_routes().layer(SessionLayer::builder(storage, key()).build().unwrap())
    };
    // (app that parks A, app that serves B, the store to count sessions in)
    let apps = [
        (
            layer(memory.clone().into()),
            layer(memory.clone().into()),
            Some(memory.clone()),
        ),
        (
            boxed.app.clone(),
            boxed.app.clone(),
            Some(boxed.store.memory.clone()),
        ),
        // Cookie sessions: found in A's own cookie, and with a revocation list.
        (
            layer(CookieStore::new().into()),
            layer(CookieStore::new().into()),
            None,
        ),
        {
            let revoked = CookieStore::new().revocation_list(session_layer::MemoryStore::new());
            let app = layer(revoked.into());
            (app.clone(), app, None)
        },
    ];
    for (n, (app, other, store)) in apps.into_iter().enumerate() {
        for sign_out in [false, true] {
            let case = format!("app {n}, sign-out {sign_out}");
            let pair = send(&app, request("POST", "/set/theme/dark", &[]))
                .await
                .pair();
            // A was sent with the old id; it asks for its session only later.
            let parked = in_flight(&app, "/parked/last_seen", &pair).await;
            // B signs in (a new id) or out while A waits, through the same
            // app, or another layer on the same store.
            let b = if sign_out { "/logout" } else { "/login/ada" };
            let b = send(&other, request("POST", b, &[&pair])).await;
            let sessions = store.as_ref().map(|s| s.len());
            let _ = send(&app, request("POST", "/unpark", &[])).await;
            let a = finished(parked).await;
            assert_eq!(
                (a.status, a.body.as_str()),
                (StatusCode::OK, "None false"),
                "{case}"
            );
            // A's write lands nowhere, and it sends no cookie that would
            // replace B's.
            assert!(a.set_cookies().is_empty(), "{case}: {:?}", a.set_cookies());
            assert_eq!(
                store.as_ref().map(|s| s.len()),
                sessions,
                "{case}: no new session"
            );
            if !sign_out {
                let signed_in = b.pair();
                let user = send(&other, request("GET", "/get/user", &[&signed_in])).await;
                assert_eq!(user.body, "ada", "{case}");
                let late = send(&other, request("GET", "/get/last_seen", &[&signed_in])).await;
                assert_eq!(late.body, "none", "{case}");
            }
        }
    }
}

/// On `parked_routes`: starts `parked` with a new session's cookie, signs
/// in with the same cookie while it waits, then releases it. The old
/// cookie, the signed-in one, and the parked request's reply.
async fn sign_in_during(app: &Router, parked: &str) -> (String, String, Reply) {
    let pair = send(app, request("POST", "/set/theme/dark", &[]))
        .await
        .pair();
    let waiting = in_flight(app, parked, &pair).await;
    let signed_in = send(app, request("POST", "/login/ada", &[&pair]))
        .await
        .pair();
    let _ = send(app, request("POST", "/unpark", &[])).await;
    (pair, signed_in, finished(waiting).await)
}

#[tokio::test]
async fn a_sign_out_racing_a_sign_in_still_removes_the_cookie() {
    // A sign-out sent before a concurrent sign-in answered, that looks at
    // its session only after it: the user asked to leave, so the removal
    // cookie goes (and replaces the sign-in's in the browser; the session
    // the sign-in made stays in the store until it expires).
    use session_layer::store::CookieStore;
    let boxed = Harness::with_routes(parked_routes(), |b| b);
    let revocable = CookieStore::new().revocation_list(session_layer::MemoryStore::new());
    let cookies = parked_routes().layer(SessionLayer::builder(revocable, key()).build().unwrap());
    for app in [boxed.app.clone(), cookies] {
        let (pair, signed_in, a) = sign_in_during(&app, "/parked-logout").await;
        let removal = a.cookie().expect("a removal cookie");
        assert_eq!(
            (removal.value(), removal.max_age()),
            ("", Some(Duration::ZERO))
        );
        // A plain replay of the old cookie later is a logout of no session (S23).
        let replay = send(&app, request("POST", "/logout", &[&pair])).await;
        assert!(replay.set_cookies().is_empty());
        let user = send(&app, request("GET", "/get/user", &[&signed_in])).await;
        assert_eq!(user.body, "ada");
    }
}

/// `routes` under the layer on the four kinds of backend: the memory
/// store (in place), a wrapped store (the boxed path), cookie sessions, and
/// cookie sessions with a revocation list.
fn four_backends(routes: impl Fn() -> Router) -> [Router; 4] {
    use session_layer::store::CookieStore;
    let layer = |storage: session_layer::Storage| {
        routes().layer(SessionLayer::builder(storage, key()).build().unwrap())
    };
    let revocable = CookieStore::new().revocation_list(session_layer::MemoryStore::new());
    [
        layer(session_layer::MemoryStore::new().into()),
        layer(std::sync::Arc::new(session_layer::MemoryStore::new()).into()),
        layer(CookieStore::new().into()),
        layer(revocable.into()),
    ]
}

#[tokio::test]
async fn a_write_that_arrives_just_after_a_sign_in_with_the_old_cookie_is_dropped() {
    // Sent before the sign-in's answer reached the browser, it reaches the
    // layer only after the sign-in was saved (the network, an outer queue):
    // it must not start a session whose cookie signs the user out.
    for app in four_backends(routes) {
        let pair = send(&app, request("POST", "/set/theme/dark", &[]))
            .await
            .pair();
        let signed_in = send(&app, request("POST", "/login/ada", &[&pair]))
            .await
            .pair();
        let late = send(&app, request("POST", "/set/cart/apples", &[&pair])).await;
        assert_eq!(late.status, StatusCode::OK);
        assert!(late.set_cookies().is_empty(), "{:?}", late.set_cookies());
        let user = send(&app, request("GET", "/get/user", &[&signed_in])).await;
        assert_eq!(user.body, "ada");
    }
    // After a sign-out, no such wait: a write from the old cookie is a new
    // session (S6), as `a_replayed_cookie_after_sign_out_...` shows.
}

#[tokio::test]
async fn a_handler_that_answers_a_failed_load_itself_keeps_its_answer() {
    use axum::extract::Request;
    let routes = routes().route(
        "/own-answer",
        get(|req: Request| async move {
            let s = req.extensions().get::<Session>().unwrap().clone();
            match s.load().await {
                Ok(()) => (StatusCode::OK, "loaded".to_owned()),
                Err(_) => {
                    let refused = s.get::<String>("user").unwrap_err().kind();
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("sorry {refused:?} {}", s.is_empty()),
                    )
                }
            }
        }),
    );
    let h = Harness::with_routes(routes, |b| b);
    let pair = h.new_session().await;
    h.store.fail(Op::Load, Fault::Backend);
    let reply = h.get("/own-answer", &[&pair]).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "sorry NotLoaded true")
    );
    assert!(reply.set_cookies().is_empty());
    assert_eq!(h.store.writes(), 1, "only the sign-in wrote");
}

#[tokio::test]
async fn a_handle_kept_past_a_dropped_response_cannot_change_the_session_unseen() {
    use axum::extract::Request;
    use std::sync::{Arc, Mutex};
    let kept: Arc<Mutex<Option<Session>>> = Arc::default();
    let routes = || {
        let kept = kept.clone();
        routes().route(
            "/hang",
            get(move |req: Request| async move {
                let s = req.extensions().get::<Session>().unwrap().clone();
                s.load().await.unwrap();
                *kept.lock().unwrap() = Some(s);
                std::future::pending::<()>().await;
                "never"
            }),
        )
    };
    let memory = session_layer::MemoryStore::new();
    let boxed = Harness::with_routes(routes(), |b| b);
    let in_place = routes().layer(SessionLayer::builder(memory, key()).build().unwrap());
    for app in [boxed.app.clone(), in_place] {
        let pair = send(&app, request("POST", "/set/user/alice", &[]))
            .await
            .pair();
        // An outer timeout (or a client that went away) drops the response.
        let dropped = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            send(&app, request("GET", "/hang", &[&pair])),
        )
        .await;
        assert!(dropped.is_err());
        let s = kept
            .lock()
            .unwrap()
            .take()
            .expect("the handler kept its handle");
        let kind = s.insert("user", "mallory").unwrap_err().kind();
        assert_eq!(kind, SessionErrorKind::Committed);
        assert_eq!(
            send(&app, request("GET", "/get/user", &[&pair])).await.body,
            "alice"
        );
    }
}

#[tokio::test]
async fn a_session_used_before_load_fails_also_without_a_cookie_and_after_the_response_it_is_gone()
{
    use axum::extract::Request;
    use std::sync::{Arc, Mutex};
    // Without a cookie, the same mistake shows on the very first request.
    let h = Harness::with_routes(extension_routes(), |b| b);
    let reply = h.post("/unloaded-insert", &[]).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(reply.set_cookies().is_empty());
    assert_eq!(h.store.writes(), 0);
    // A handle kept past the response: empty for good, and says so.
    let kept: Arc<Mutex<Option<Session>>> = Arc::default();
    let routes = routes().route(
        "/keep",
        get({
            let kept = kept.clone();
            move |req: Request| async move {
                let s = req.extensions().get::<Session>().unwrap().clone();
                s.load().await.unwrap();
                *kept.lock().unwrap() = Some(s.clone());
                s.get::<String>("user").unwrap().unwrap_or_default()
            }
        }),
    );
    let h = Harness::with_routes(routes, |b| b);
    let pair = h.new_session().await;
    assert_eq!(h.get("/keep", &[&pair]).await.body, "alice");
    let s = kept.lock().unwrap().take().unwrap();
    s.load().await.unwrap();
    let kind = |e: SessionError| e.kind();
    assert_eq!(
        s.get::<String>("user").map_err(kind),
        Err(SessionErrorKind::Committed)
    );
    assert_eq!(
        s.insert("user", "late").map_err(kind),
        Err(SessionErrorKind::Committed)
    );
    assert_eq!(h.get("/get/user", &[&pair]).await.body, "alice");
}

#[tokio::test]
async fn a_replayed_cookie_after_sign_out_still_gets_a_fresh_session_on_write() {
    // The guard against in-flight requests (above) is for requests that
    // started before the end; one sent after it is an unknown id (S6).
    let h = Harness::new();
    let pair = h.new_session().await;
    let _ = h.post("/logout", &[&pair]).await;
    let reply = h.post("/set/user/mallory", &[&pair]).await;
    let fresh = reply.pair();
    assert_ne!(raw_id(value_of(&fresh)), raw_id(value_of(&pair)));
    assert_eq!(h.get("/get/user", &[&fresh]).await.body, "mallory");
}

#[tokio::test]
async fn a_request_in_flight_that_empties_the_session_does_not_sign_the_user_out() {
    // Removing the last value ends a session (S25), but it is not a
    // sign-out: in a request that started before a sign-in rotated the
    // id, it is dropped like any other change.
    for app in four_backends(parked_routes) {
        let (pair, signed_in, a) = sign_in_during(&app, "/parked-remove/theme").await;
        assert!(a.set_cookies().is_empty(), "{:?}", a.set_cookies());
        let user = send(&app, request("GET", "/get/user", &[&signed_in])).await;
        assert_eq!(user.body, "ada");
        // A sign-out from the old cookie now is a sign-out (removal cookie
        // where the old cookie still opens), and does not reopen the old
        // id to writes within the rotation's window.
        let _ = send(&app, request("POST", "/logout", &[&pair])).await;
        let late = send(&app, request("POST", "/set/cart/pears", &[&pair])).await;
        assert!(late.set_cookies().is_empty(), "{:?}", late.set_cookies());
    }
}

#[tokio::test]
async fn a_sign_in_that_failed_does_not_hold_back_the_next_one() {
    // Cookie sessions with a revocation list: the sign-in's revocation
    // write fails (500); the old cookie is still valid, and a retry or a
    // write with it works at once.
    use session_layer::store::CookieStore;
    let h = Harness::new();
    let revocable = CookieStore::new().revocation_list(h.store.clone());
    let app = routes().layer(SessionLayer::builder(revocable, key()).build().unwrap());
    let pair = send(&app, request("POST", "/set/theme/dark", &[]))
        .await
        .pair();
    h.store.fail(Op::Create, Fault::Backend);
    let failed = send(&app, request("POST", "/login/ada", &[&pair])).await;
    assert_eq!(failed.status, StatusCode::INTERNAL_SERVER_ERROR);
    h.store.heal();
    let write = send(&app, request("POST", "/set/cart/apples", &[&pair])).await;
    assert!(write.cookie().is_some(), "the write went through");
    let retry = send(&app, request("POST", "/login/ada", &[&write.pair()])).await;
    let user = send(&app, request("GET", "/get/user", &[&retry.pair()])).await;
    assert_eq!(user.body, "ada");
}

#[tokio::test]
async fn cookie_sessions_a_sign_in_that_loaded_before_a_sign_out_does_not_undo_it() {
    // Cookie sessions with a revocation list: a sign-in loads the session,
    // waits, and cycles after a sign-out (here, or on another instance
    // sharing the list) revoked it. The store path's cycle finds its record
    // gone; here the revocation list says so: no new cookie.
    use session_layer::store::CookieStore;
    use std::sync::Arc;
    use tokio::sync::Notify;
    let gate = Arc::new(Notify::new());
    let list = session_layer::MemoryStore::new();
    let app = {
        let gate = gate.clone();
        let revocable = CookieStore::new().revocation_list(list.clone());
        routes()
            .route(
                "/slow-login",
                post(move |s: Session| async move {
                    gate.notified().await;
                    s.insert("user", "ada").unwrap();
                    s.cycle_id();
                    "ok"
                }),
            )
            .route(
                "/id",
                get(|s: Session| async move { s.id().map(|h| h.to_hex()).unwrap_or_default() }),
            )
            .layer(SessionLayer::builder(revocable, key()).build().unwrap())
    };
    for other_instance in [false, true] {
        let pair = send(&app, request("POST", "/set/theme/dark", &[]))
            .await
            .pair();
        let slow = in_flight(&app, "/slow-login", &pair).await;
        if other_instance {
            // Its sign-out: the marker lands in the shared list; this
            // process's own record of ended ids knows nothing of it.
            use session_layer::store::{Data, Record, SessionStore};
            let now = OffsetDateTime::now_utc();
            let marker = Record {
                data: Data::new(),
                created_at: now,
                last_active: now,
                expires_at: now + Duration::hours(1),
                expiry: None,
            };
            let id = send(&app, request("GET", "/id", &[&pair])).await.body;
            let hash = session_layer::IdHash::from_hex(&id).expect("the session's id hash");
            assert!(list.create(&hash, &marker).await.unwrap());
        } else {
            let out = send(&app, request("POST", "/logout", &[&pair])).await;
            assert_eq!(out.cookie().expect("removal").value(), "");
        }
        gate.notify_one();
        let login = finished(slow).await;
        let cookies = login.set_cookies();
        assert!(cookies.is_empty(), "{other_instance}: {cookies:?}");
    }
}

#[tokio::test]
async fn a_sign_in_written_as_destroy_then_insert_is_a_rotation_too() {
    // `destroy()` then `insert(..)`: a new session in the old one's place.
    // A write with the old cookie just after it is dropped, as after
    // `cycle_id`, instead of starting a session whose cookie replaces it.
    let relogin =
        || {
            routes().route(
            "/relogin/{user}",
            post(|s: Session, axum::extract::Path(user): axum::extract::Path<String>| async move {
                s.destroy();
                s.insert("user", user).unwrap();
                "ok"
            }),
        )
        };
    for app in four_backends(relogin) {
        let pair = send(&app, request("POST", "/set/theme/dark", &[]))
            .await
            .pair();
        let signed_in = send(&app, request("POST", "/relogin/ada", &[&pair]))
            .await
            .pair();
        let late = send(&app, request("POST", "/set/cart/apples", &[&pair])).await;
        assert!(late.set_cookies().is_empty(), "{:?}", late.set_cookies());
        let user = send(&app, request("GET", "/get/user", &[&signed_in])).await;
        assert_eq!(user.body, "ada");
    }
}
