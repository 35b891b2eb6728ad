//! Identifiers, accepting an id, and parsing the request (S1-S11, S19-S22,
//! S41), end to end through the real layer.

mod common;

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use axum::body::Body;
use common::*;
use http::{Request, StatusCode};
use session_layer::{ConfigError, IdGenerator, Key, SessionId, SessionLayer, MIN_ID_BYTES};

// --- A. identifiers -----------------------------------------------------------

#[tokio::test]
async fn s1_ids_carry_128_random_bits_and_nothing_derived() {
    let h = Harness::new();
    let mut ids = Vec::new();
    // Same clock instant, same data, same "user" for every session: nothing
    // an id could be derived from differs between them.
    for _ in 0..200 {
        let pair = h.new_session().await;
        let raw = raw_id(value_of(&pair));
        assert!(raw.len() >= MIN_ID_BYTES, "{} bytes", raw.len());
        ids.push(raw);
    }
    let distinct: HashSet<_> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "ids repeat");
    // Every one of the 128 bit positions takes both values across 200 ids:
    // a counter, a timestamp or a constant prefix would leave bits fixed.
    // (Chance of a false failure with real randomness: about 2^-190.)
    for bit in 0..128 {
        let ones = ids
            .iter()
            .filter(|id| (id[bit / 8] >> (bit % 8)) & 1 == 1)
            .count();
        assert!(ones > 0 && ones < ids.len(), "bit {bit} never changes");
    }
}

#[derive(Debug)]
struct Scripted(Mutex<VecDeque<Vec<u8>>>);

impl Scripted {
    fn new(script: Vec<Vec<u8>>) -> Self {
        Self(Mutex::new(script.into()))
    }
}

impl IdGenerator for Scripted {
    fn generate(&self) -> Vec<u8> {
        self.0
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| SessionId::generate().expose_bytes().to_vec())
    }
}

#[test]
fn s2_a_generator_with_fewer_than_16_bytes_is_refused_at_build() {
    let clock = session_layer::clock::ManualClock::new();
    let err = SessionLayer::builder(TestStore::new(clock), key())
        .id_generator(Scripted::new(vec![vec![1; 15]]))
        .build()
        .unwrap_err();
    assert_eq!(err, ConfigError::WeakIdGenerator { len: 15 });
}

#[tokio::test]
async fn s2_a_generator_that_turns_weak_later_fails_the_request_and_stores_nothing() {
    // 16 bytes for the build-time check, then 8.
    let h =
        Harness::with(|b| b.id_generator(Scripted::new(vec![vec![3; 16], vec![4; 8], vec![5; 8]])));
    let reply = h.post("/set/a/b", &[]).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(reply.set_cookies().is_empty(), "{:?}", reply.set_cookies());
    assert_eq!(h.store.calls(Op::Create), 0);
    assert!(h.store.memory.is_empty());
}

#[tokio::test]
async fn s3_a_colliding_id_is_retried_and_never_overwrites() {
    let a = vec![0xA1; 16];
    let b = vec![0xB2; 16];
    // build check, session 1 = a, session 2: a (collision) then b.
    let script = vec![vec![0; 16], a.clone(), a.clone(), b.clone()];
    let h = Harness::with(|builder| builder.id_generator(Scripted::new(script)));

    let first = h.post("/set/owner/first", &[]).await.pair();
    assert_eq!(raw_id(value_of(&first)), a);
    let second = h.post("/set/owner/second", &[]).await.pair();
    assert_eq!(raw_id(value_of(&second)), b, "the retry took the next id");
    assert_eq!(h.store.calls(Op::Create), 3);
    // The first session was not overwritten by the colliding create.
    assert_eq!(h.get("/get/owner", &[&first]).await.body, "first");
    assert_eq!(h.get("/get/owner", &[&second]).await.body, "second");
}

#[tokio::test]
async fn s3_ids_that_keep_colliding_fail_loudly_without_overwriting() {
    let a = vec![0xC3; 16];
    let script = vec![vec![0; 16], a.clone(), a.clone(), a.clone(), a.clone()];
    let h = Harness::with(|builder| builder.id_generator(Scripted::new(script)));
    let first = h.post("/set/owner/first", &[]).await.pair();
    let reply = h.post("/set/owner/second", &[]).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(reply.cookie().is_none());
    assert_eq!(h.get("/get/owner", &[&first]).await.body, "first");
}

#[tokio::test]
async fn s4_the_default_cookie_name_does_not_reveal_the_framework() {
    let h = Harness::new();
    let reply = h.post("/set/a/b", &[]).await;
    let cookies = reply.set_cookies();
    assert_eq!(cookies.len(), 1);
    let name = cookie::Cookie::parse(cookies[0].clone())
        .unwrap()
        .name()
        .to_ascii_lowercase();
    for word in [
        "session", "sess", "layer", "tower", "axum", "rust", "hyper", "sid", "connect", "tsid",
    ] {
        assert!(
            !name.contains(word),
            "cookie name {name:?} contains {word:?}"
        );
    }
}

#[tokio::test]
async fn s5_store_keys_and_values_hold_no_raw_id() {
    let h = Harness::new();
    let pair = h.new_session().await;
    h.get("/count", &[&pair]).await;
    let pair = h.post("/login/alice", &[&pair]).await.pair();
    h.get("/count", &[&pair]).await;
    h.post("/logout", &[&pair]).await;

    let value = value_of(&pair).to_owned();
    let raw = raw_id(&value);
    let raw_hex = hex(&raw);
    let raw_b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &raw);
    let raw_b64url =
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &raw);
    let seen = h.store.seen();
    assert!(!seen.is_empty());
    for text in &seen {
        for secret in [&value, &raw_hex, &raw_b64, &raw_b64url] {
            assert!(
                !text.contains(secret.as_str()),
                "raw id in store call: {text}"
            );
        }
    }
    // The store key is the SHA-256 of the id.
    let hash = SessionId::from_bytes(&raw).unwrap().hash();
    assert!(seen.iter().any(|t| t.contains(&hash.to_hex())));
}

// --- B. accepting an id -----------------------------------------------------------

#[tokio::test]
async fn s6_an_unknown_signed_id_is_never_adopted() {
    let h = Harness::new();
    let unknown = unknown_but_signed(key(), NAME).await;

    let reply = h.get("/get/a", &[&unknown]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "none");
    assert!(reply.set_cookies().is_empty());
    assert_eq!(
        h.store.calls(Op::Load),
        1,
        "one store call for a verified id"
    );

    let reply = h.post("/set/a/mine", &[&unknown]).await;
    let fresh = reply.pair();
    assert_ne!(value_of(&fresh), value_of(&unknown));
    assert_ne!(raw_id(value_of(&fresh)), raw_id(value_of(&unknown)));
    assert!(stored(&h.store.memory, &hash_of(&unknown)).await.is_none());
    assert_eq!(h.get("/get/a", &[&fresh]).await.body, "mine");
    assert_eq!(h.get("/get/a", &[&unknown]).await.body, "none");
}

#[tokio::test]
async fn s7_malformed_ids_are_rejected_before_any_store_call() {
    let h = Harness::new();
    let good = h.new_session().await;
    let value = value_of(&good).to_owned();
    let loads_before = h.store.calls(Op::Load);

    let mut flipped = value.clone().into_bytes();
    flipped[10] = if flipped[10] == b'A' { b'B' } else { b'A' };
    let mut mac_flipped = value.clone().into_bytes();
    let last = mac_flipped.len() - 1;
    mac_flipped[last] = if mac_flipped[last] == b'A' {
        b'Q'
    } else {
        b'A'
    };
    let bad_alphabet = format!("{}*{}", &value[..20], &value[21..]);
    let std_alphabet = format!("{}+{}", &value[..20], &value[21..]);
    let candidates: Vec<Vec<u8>> = vec![
        // wrong length
        value.as_bytes()[..value.len() - 1].to_vec(),
        format!("{value}A").into_bytes(),
        value.as_bytes()[..20].to_vec(),
        Vec::new(),
        // wrong alphabet
        bad_alphabet.into_bytes(),
        std_alphabet.into_bytes(),
        format!("{value}==").into_bytes(),
        // bad MAC (id byte or MAC byte changed)
        flipped,
        mac_flipped,
        // oversize
        vec![b'A'; 10 * 1024],
        // control bytes and non-ASCII
        format!("{}\t{}", &value[..30], &value[31..]).into_bytes(),
        [
            &value.as_bytes()[..40],
            b"\xff\xfe".as_slice(),
            &value.as_bytes()[42..],
        ]
        .concat(),
    ];
    for candidate in candidates {
        let field = [b"id=".as_slice(), candidate.as_slice()].concat();
        let reply = h
            .send(request_fields("GET", "/get/user", &[field.as_slice()]))
            .await;
        let shown = String::from_utf8_lossy(&candidate).into_owned();
        assert_eq!(reply.status, StatusCode::OK, "{shown}");
        assert_eq!(reply.body, "none", "accepted {shown}");
        assert!(reply.set_cookies().is_empty(), "{shown}");
        assert_eq!(
            h.store.calls(Op::Load),
            loads_before,
            "store call for {shown}"
        );
    }
    // The untouched cookie still works: the rejections were the values'.
    assert_eq!(h.get("/get/user", &[&good]).await.body, "alice");
}

#[tokio::test]
async fn s8_an_idle_expired_id_is_treated_as_unknown() {
    let h = Harness::with(|b| b.expiry(session_layer::Expiry::idle(time::Duration::minutes(10))));
    let old = h.new_session().await;
    h.advance(time::Duration::minutes(10));
    let reply = h.get("/get/user", &[&old]).await;
    assert_eq!(reply.body, "none");
    assert!(reply.set_cookies().is_empty());
    let fresh = h.post("/set/user/bob", &[&old]).await.pair();
    assert_ne!(raw_id(value_of(&fresh)), raw_id(value_of(&old)));
    assert_eq!(h.get("/get/user", &[&old]).await.body, "none");
    assert_eq!(h.get("/get/user", &[&fresh]).await.body, "bob");
}

#[tokio::test]
async fn s8_an_absolute_expired_id_is_treated_as_unknown() {
    let h = Harness::with(|b| b.expiry(session_layer::Expiry::absolute(time::Duration::hours(1))));
    let old = h.new_session().await;
    h.advance(time::Duration::minutes(59));
    assert_eq!(h.get("/get/user", &[&old]).await.body, "alice");
    h.advance(time::Duration::minutes(1));
    assert_eq!(h.get("/get/user", &[&old]).await.body, "none");
    let fresh = h.post("/set/user/bob", &[&old]).await.pair();
    assert_ne!(raw_id(value_of(&fresh)), raw_id(value_of(&old)));
}

#[tokio::test]
async fn s8_a_shortened_timeout_applies_at_once_to_existing_sessions() {
    // Sessions made under a one-hour idle timeout; the layer is then
    // redeployed with ten minutes. The store still holds them (their own
    // deadline is an hour away), but the layer must treat them as expired.
    let h = Harness::with(|b| b.expiry(session_layer::Expiry::idle(time::Duration::hours(1))));
    let pair = h.new_session().await;
    let strict = h.sibling(key(), |b| {
        b.expiry(session_layer::Expiry::idle(time::Duration::minutes(10)))
    });
    h.advance(time::Duration::minutes(11));
    assert!(stored(&h.store.memory, &hash_of(&pair)).await.is_some());
    let reply = send(&strict, request("GET", "/get/user", &[&pair])).await;
    assert_eq!(reply.body, "none");
    assert_eq!(h.get("/get/user", &[&pair]).await.body, "alice");
}

#[tokio::test]
async fn s9_fallback_keys_verify_only_the_current_key_signs_and_old_cookies_are_resigned() {
    let old_key = Key::try_from(&[1u8; 32][..]).unwrap();
    let new_key = Key::try_from(&[2u8; 32][..]).unwrap();
    let h = Harness::new();
    let before = h.sibling(old_key.clone(), |b| b);
    let rotated = h.sibling(new_key.clone(), |b| b.fallback_key(old_key.clone()));
    let new_only = h.sibling(new_key.clone(), |b| b);

    let old_pair = send(&before, request("POST", "/set/user/alice", &[]))
        .await
        .pair();

    // Under rotation the old cookie still works, and is re-signed at once
    // even though the request only read.
    let reply = send(&rotated, request("GET", "/get/user", &[&old_pair])).await;
    assert_eq!(reply.body, "alice");
    let resigned = reply.pair();
    assert_ne!(value_of(&resigned), value_of(&old_pair));
    assert_eq!(
        raw_id(value_of(&resigned)),
        raw_id(value_of(&old_pair)),
        "same session"
    );

    // The re-signed cookie is under the current key: it works once the old
    // key is gone, and needs no further re-signing.
    let reply = send(&new_only, request("GET", "/get/user", &[&resigned])).await;
    assert_eq!(reply.body, "alice");
    let reply = send(&rotated, request("GET", "/get/user", &[&resigned])).await;
    assert_eq!(reply.body, "alice");
    assert!(
        reply.cookie().is_none(),
        "a current-key cookie is not re-signed"
    );

    // New sessions are signed with the current key, never the fallback.
    let fresh = send(&rotated, request("POST", "/set/user/carol", &[]))
        .await
        .pair();
    assert_eq!(
        send(&new_only, request("GET", "/get/user", &[&fresh]))
            .await
            .body,
        "carol"
    );
    assert_eq!(
        send(&before, request("GET", "/get/user", &[&fresh]))
            .await
            .body,
        "none"
    );

    // A key that is no longer listed is rejected, before any store call.
    let loads = h.store.calls(Op::Load);
    let reply = send(&new_only, request("GET", "/get/user", &[&old_pair])).await;
    assert_eq!(reply.body, "none");
    assert_eq!(h.store.calls(Op::Load), loads);
}

#[tokio::test]
async fn s9_a_page_that_never_takes_the_session_still_re_signs_a_fallback_cookie() {
    let old_key = Key::try_from(&[1u8; 32][..]).unwrap();
    let new_key = Key::try_from(&[2u8; 32][..]).unwrap();
    let remember = |b: session_layer::SessionLayerBuilder| b.expiry(REMEMBER_ME);
    // The boxed path (a wrapped store) and the in-place one (`MemoryStore`).
    let h = Harness::new();
    let memory = session_layer::MemoryStore::new();
    let in_place = |key: Key, rotated: bool| {
        let b = remember(SessionLayer::builder(memory.clone(), key));
        let b = if rotated {
            b.fallback_key(old_key.clone())
        } else {
            b
        };
        routes().layer(b.build().unwrap())
    };
    let apps = [
        (
            h.sibling(old_key.clone(), remember),
            h.sibling(new_key.clone(), |b| {
                remember(b).fallback_key(old_key.clone())
            }),
            h.sibling(new_key.clone(), remember),
        ),
        (
            in_place(old_key.clone(), false),
            in_place(new_key.clone(), true),
            in_place(new_key.clone(), false),
        ),
    ];
    for (before, rotated, new_only) in apps {
        let old_pair = send(&before, request("POST", "/set/user/alice", &[]))
            .await
            .pair();
        let reply = send(&rotated, request("GET", "/", &[&old_pair])).await;
        assert_eq!(reply.body, "ok");
        let cookie = reply
            .cookie()
            .expect("re-signed on a page that ignores the session");
        assert_eq!(raw_id(cookie.value()), raw_id(value_of(&old_pair)));
        // A persistent session keeps its Max-Age (from the stored deadline).
        assert!(
            cookie.max_age().is_some_and(|age| age.whole_days() >= 29),
            "{cookie}"
        );
        let resigned = format!("id={}", cookie.value());
        assert_eq!(
            send(&new_only, request("GET", "/get/user", &[&resigned]))
                .await
                .body,
            "alice"
        );
        // A current-key cookie on such a page: nothing sent.
        let reply = send(&rotated, request("GET", "/", &[&resigned])).await;
        assert!(reply.set_cookies().is_empty());
    }
    // On the boxed path that cost one load, and a current-key cookie none.
    let loads = h.store.calls(Op::Load);
    let pair = h.new_session().await;
    let _ = h.get("/", &[&pair]).await;
    assert_eq!(h.store.calls(Op::Load), loads);
}

#[tokio::test]
async fn s9_the_re_sign_of_an_untouched_page_does_not_extend_the_idle_time() {
    use session_layer::clock::ManualClock;
    use session_layer::Expiry;
    let old_key = Key::try_from(&[1u8; 32][..]).unwrap();
    let new_key = Key::try_from(&[2u8; 32][..]).unwrap();
    let idle =
        |b: session_layer::SessionLayerBuilder| b.expiry(Expiry::idle(time::Duration::minutes(10)));
    let h = Harness::new();
    let clock = ManualClock::new();
    let memory = session_layer::MemoryStore::with_clock(clock.clone());
    let in_place = |key: Key, fallback: Option<Key>| {
        let mut b = idle(SessionLayer::builder(memory.clone(), key).clock(clock.clone()));
        if let Some(old) = fallback {
            b = b.fallback_key(old);
        }
        routes().layer(b.build().unwrap())
    };
    let cases = [
        (
            h.sibling(old_key.clone(), idle),
            h.sibling(new_key.clone(), |b| idle(b).fallback_key(old_key.clone())),
            h.clock.clone(),
        ),
        (
            in_place(old_key.clone(), None),
            in_place(new_key.clone(), Some(old_key.clone())),
            clock.clone(),
        ),
    ];
    for (before, rotated, clock) in cases {
        let old_pair = send(&before, request("POST", "/set/user/alice", &[]))
            .await
            .pair();
        // Past the point where a read would extend the idle deadline.
        clock.advance(time::Duration::minutes(6));
        let reply = send(&rotated, request("GET", "/", &[&old_pair])).await;
        let resigned = format!("id={}", reply.cookie().expect("re-signed").value());
        // Re-signed only: 6 + 6 minutes later the session has expired.
        clock.advance(time::Duration::minutes(6));
        assert_eq!(
            send(&rotated, request("GET", "/get/user", &[&resigned]))
                .await
                .body,
            "none"
        );
    }
}

#[tokio::test]
async fn s10_a_value_signed_for_another_cookie_name_is_rejected() {
    let h = Harness::new();
    let a = h.sibling(key(), |b| b.cookie_name("a"));
    let b = h.sibling(key(), |b| b.cookie_name("b"));
    let reply = send(&a, request("POST", "/set/user/alice", &[])).await;
    let value = reply.cookie_named("a").unwrap().value().to_owned();
    assert_eq!(
        send(&a, request("GET", "/get/user", &[&format!("a={value}")]))
            .await
            .body,
        "alice"
    );

    let loads = h.store.calls(Op::Load);
    let reply = send(&b, request("GET", "/get/user", &[&format!("b={value}")])).await;
    assert_eq!(reply.body, "none");
    assert_eq!(
        h.store.calls(Op::Load),
        loads,
        "no store call for a foreign MAC"
    );
}

#[tokio::test]
async fn s11_an_id_in_the_query_body_or_another_header_is_ignored() {
    let h = Harness::new();
    let pair = h.new_session().await;
    let value = value_of(&pair).to_owned();
    let loads = h.store.calls(Op::Load);

    let reply = h.get(&format!("/get/user?id={value}"), &[]).await;
    assert_eq!(reply.body, "none");
    let reply = h
        .get(&format!("/get/user?session={value}&id={value}"), &[])
        .await;
    assert_eq!(reply.body, "none");

    let body_req = Request::builder()
        .method("GET")
        .uri("/get/user")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(format!("id={value}")))
        .unwrap();
    assert_eq!(h.send(body_req).await.body, "none");

    for (name, v) in [
        ("authorization", format!("Bearer {value}")),
        ("x-session-id", value.clone()),
        ("x-session-token", value.clone()),
        ("id", value.clone()),
    ] {
        let req = Request::builder()
            .uri("/get/user")
            .header(name, v)
            .body(Body::empty())
            .unwrap();
        assert_eq!(h.send(req).await.body, "none", "read the id from {name}");
    }
    assert_eq!(h.store.calls(Op::Load), loads);
    // The same value in the cookie works, so the above was the transport.
    assert_eq!(h.get("/get/user", &[&pair]).await.body, "alice");
}

// --- D. parsing the request ------------------------------------------------------

#[tokio::test]
async fn s19_every_cookie_header_field_is_read() {
    let h = Harness::new();
    let pair = h.new_session().await;
    let fields: [&[u8]; 3] = [b"theme=dark", b"lang=en; x=1", pair.as_bytes()];
    let reply = h.send(request_fields("GET", "/get/user", &fields)).await;
    assert_eq!(reply.body, "alice");
    // And ours in the first of several fields.
    let fields: [&[u8]; 2] = [pair.as_bytes(), b"theme=dark"];
    assert_eq!(
        h.send(request_fields("GET", "/get/user", &fields))
            .await
            .body,
        "alice"
    );
}

#[tokio::test]
async fn s20_the_first_cookie_that_resolves_to_a_live_session_wins_whatever_the_order() {
    let h = Harness::with(|b| b.expiry(session_layer::Expiry::idle(time::Duration::hours(1))));
    let unknown = unknown_but_signed(key(), NAME).await;
    let expired = h.post("/set/user/expired", &[]).await.pair();
    h.advance(time::Duration::minutes(61));
    let live = h.post("/set/user/live", &[]).await.pair();
    let other = h.post("/set/user/other", &[]).await.pair();
    let destroyed = h.post("/set/user/gone", &[]).await.pair();
    h.post("/logout", &[&destroyed]).await;
    let forged = format!("id={}", "A".repeat(64));

    for dead in [
        &unknown,
        &expired,
        &destroyed,
        &forged,
        &"id=garbage".to_owned(),
    ] {
        // In one field, either order.
        assert_eq!(
            h.get("/get/user", &[dead, &live]).await.body,
            "live",
            "{dead} first"
        );
        assert_eq!(
            h.get("/get/user", &[&live, dead]).await.body,
            "live",
            "{dead} second"
        );
        // In separate fields, either order.
        let fields: [&[u8]; 2] = [dead.as_bytes(), live.as_bytes()];
        assert_eq!(
            h.send(request_fields("GET", "/get/user", &fields))
                .await
                .body,
            "live"
        );
        let fields: [&[u8]; 2] = [live.as_bytes(), dead.as_bytes()];
        assert_eq!(
            h.send(request_fields("GET", "/get/user", &fields))
                .await
                .body,
            "live"
        );
    }
    // Two dead ones before the live one.
    assert_eq!(
        h.get("/get/user", &[&unknown, &expired, &live]).await.body,
        "live"
    );
    // Two live sessions: the first wins, in either order.
    assert_eq!(h.get("/get/user", &[&live, &other]).await.body, "live");
    assert_eq!(h.get("/get/user", &[&other, &live]).await.body, "other");
    // A write goes to the session that won, not to a new one.
    h.post("/set/k/v", &[&unknown, &live]).await;
    assert_eq!(h.get("/get/k", &[&live]).await.body, "v");
}

#[tokio::test]
async fn s20_a_live_cookie_behind_four_dead_signed_ones_still_wins() {
    let h = Harness::new();
    let mut dead = Vec::new();
    for _ in 0..4 {
        let pair = h.new_session().await;
        h.post("/logout", &[&pair]).await;
        dead.push(pair);
    }
    let live = h.new_session().await;
    let mut cookies: Vec<&str> = dead.iter().map(String::as_str).collect();
    cookies.push(&live);
    assert_eq!(h.get("/get/user", &cookies).await.body, "alice");
}

#[tokio::test]
async fn s20_copies_of_one_dead_cookie_do_not_push_a_live_one_past_the_cap() {
    // Eight distinct dead ids use up the eight lookups; twenty copies of
    // one dead id are one lookup, and the live cookie behind them wins.
    let h = Harness::new();
    let mut dead = Vec::new();
    for _ in 0..8 {
        let pair = h.new_session().await;
        h.post("/logout", &[&pair]).await;
        dead.push(pair);
    }
    let live = h.new_session().await;
    let mut copies: Vec<&str> = vec![dead[0].as_str(); 20];
    copies.push(&live);
    let loads = h.store.calls(Op::Load);
    assert_eq!(h.get("/get/user", &copies).await.body, "alice");
    assert_eq!(
        h.store.calls(Op::Load),
        loads + 2,
        "one lookup per distinct id"
    );
    let mut distinct: Vec<&str> = dead.iter().map(String::as_str).collect();
    distinct.push(&live);
    assert_eq!(h.get("/get/user", &distinct).await.body, "none");
}

#[tokio::test]
async fn s7_s20_a_header_stuffed_with_fake_ids_is_only_examined_up_to_a_cap() {
    // The layer verifies at most 256 values of our name per request (more
    // than a browser keeps for one site), so a header stuffed with forged
    // values costs a bounded number of HMACs. Seen from outside: a live
    // cookie behind 300 fakes is not looked at, one behind 200 is.
    let h = Harness::new();
    let live = h.new_session().await;
    let fake = format!("id={}", "A".repeat(64));
    let behind = |n: usize| {
        let mut cookies = vec![fake.as_str(); n];
        cookies.push(live.as_str());
        cookies.join("; ")
    };
    let loads = h.store.calls(Op::Load);
    let reply = h.get("/get/user", &[&behind(200)]).await;
    assert_eq!(reply.body, "alice");
    let reply = h.get("/get/user", &[&behind(300)]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "none", "values past the cap were verified");
    assert_eq!(
        h.store.calls(Op::Load),
        loads + 1,
        "fakes never reach the store"
    );
}

#[tokio::test]
async fn s21_a_malformed_neighbour_cookie_breaks_nothing_and_stands_in_for_nothing() {
    let h = Harness::new();
    let pair = h.new_session().await;
    let value = value_of(&pair).to_owned();
    let neighbours: [&[u8]; 6] = [
        b"a=%zz%",
        b"b=\"unbalanced",
        b"c=\xc3\x28\xff",
        b"=novalue",
        b"noequals",
        b"d=\"x;y\"",
    ];
    for n in neighbours {
        let shown = String::from_utf8_lossy(n).into_owned();
        let before: [&[u8]; 3] = [n, b"; ", pair.as_bytes()];
        let before = before.concat();
        let reply = h
            .send(request_fields("GET", "/get/user", &[before.as_slice()]))
            .await;
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (StatusCode::OK, "alice"),
            "{shown}"
        );
        let after: [&[u8]; 3] = [pair.as_bytes(), b"; ", n];
        let after = after.concat();
        assert_eq!(
            h.send(request_fields("GET", "/get/user", &[after.as_slice()]))
                .await
                .body,
            "alice"
        );
        let fields = [n, pair.as_bytes()];
        assert_eq!(
            h.send(request_fields("GET", "/get/user", &fields))
                .await
                .body,
            "alice"
        );
    }
    // Our value under other names is not ours.
    let loads = h.store.calls(Op::Load);
    for other in [
        format!("xid={value}"),
        format!("id2={value}"),
        format!("i={value}"),
        format!("a=\"id={value}\""),
        format!("a=id={value}"),
        value.clone(),
    ] {
        let reply = h.get("/get/user", &[&other]).await;
        assert_eq!(reply.body, "none", "{other} stood in for ours");
    }
    assert_eq!(h.store.calls(Op::Load), loads);
}

#[tokio::test]
async fn s22_cookie_names_match_exactly_and_case_sensitively() {
    let h = Harness::new();
    let host = h.sibling(key(), |b| b.cookie_name("__Host-id"));
    let reply = send(&host, request("POST", "/set/user/alice", &[])).await;
    let value = reply.cookie_named("__Host-id").unwrap().value().to_owned();
    let loads = h.store.calls(Op::Load);
    for wrong in [
        "__host-id",
        "__HOST-id",
        "__Host-ID",
        "__Host-idx",
        "_Host-id",
    ] {
        let reply = send(
            &host,
            request_fields("GET", "/get/user", &[format!("{wrong}={value}").as_bytes()]),
        )
        .await;
        assert_eq!(reply.body, "none", "{wrong:?} matched __Host-id");
    }
    assert_eq!(h.store.calls(Op::Load), loads);
    let reply = send(
        &host,
        request("GET", "/get/user", &[&format!("__Host-id={value}")]),
    )
    .await;
    assert_eq!(reply.body, "alice");

    // The default name too: `ID` and `Id` are not `id`.
    let pair = h.new_session().await;
    let value = value_of(&pair);
    for wrong in ["ID", "Id", "iD"] {
        assert_eq!(
            h.get("/get/user", &[&format!("{wrong}={value}")])
                .await
                .body,
            "none"
        );
    }
}

// --- J. keys --------------------------------------------------------------------------

#[test]
fn s41_a_short_secret_is_a_build_error() {
    assert_eq!(
        Key::try_from(&[9u8; 31][..]).unwrap_err(),
        ConfigError::KeyTooShort { len: 31 }
    );
    assert_eq!(
        Key::try_from(&b""[..]).unwrap_err(),
        ConfigError::KeyTooShort { len: 0 }
    );
    // 31 bytes as base64: still too short.
    let short = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [9u8; 31]);
    assert!(matches!(
        Key::from_base64(&short).unwrap_err(),
        ConfigError::KeyTooShort { .. }
    ));
    assert!(Key::from_base64("not base64 at all!").is_err());
    // 32 bytes is enough, and the layer builds with it.
    let ok = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [9u8; 32]);
    let key = Key::from_base64(&ok).unwrap();
    assert_eq!(format!("{key:?}"), "Key(<redacted>)");
    let clock = session_layer::clock::ManualClock::new();
    assert!(SessionLayer::builder(TestStore::new(clock), key)
        .build()
        .is_ok());
}
