//! Concurrent requests on one session (S27, S34) on a multi-thread runtime.
//! Handlers wait on a `Barrier` or `Notify` so that the interleaving under
//! test really happens, and every wait is bounded.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Path;
use axum::routing::{get, post};
use axum::Router;
use common::*;
use http::StatusCode;
use session_layer::Session;
use tokio::sync::{Barrier, Notify};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

async fn bounded<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {WAIT:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s34_fifty_concurrent_requests_setting_different_keys_all_keep_their_change() {
    const N: usize = 50;
    let barrier = Arc::new(Barrier::new(N));
    let b = barrier.clone();
    let routes = routes().route(
        "/together/{key}",
        post(move |s: Session, Path(key): Path<String>| {
            let b = b.clone();
            async move {
                // Loaded before the wait: all 50 hold the same snapshot.
                let before = s.len();
                b.wait().await;
                s.insert(&key, before).unwrap();
                "ok"
            }
        }),
    );
    let h = Harness::with_routes(routes, |b| b);
    let pair = h.new_session().await;
    let saves = h.store.calls(Op::Save);

    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let app = h.app.clone();
            let pair = pair.clone();
            tokio::spawn(async move {
                send(&app, request("POST", &format!("/together/k{i}"), &[&pair])).await
            })
        })
        .collect();
    for task in tasks {
        let reply = bounded("a concurrent request", task).await.unwrap();
        assert_eq!(reply.status, StatusCode::OK);
    }

    let record = stored(&h.store.memory, &hash_of(&pair)).await.unwrap();
    for i in 0..N {
        assert_eq!(
            record.data.get(&format!("k{i}")),
            Some(&serde_json::json!(1)),
            "k{i} lost"
        );
    }
    assert_eq!(record.data["user"], "alice");
    assert_eq!(record.data.len(), N + 1);
    assert_eq!(h.store.calls(Op::Save), saves + N);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s34_same_key_the_later_write_wins_and_readers_never_rewrite() {
    let (first_go, second_go) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let loaded = Arc::new(Barrier::new(3));
    let routes = {
        let (f, s, l1, l2, l3) = (
            first_go.clone(),
            second_go.clone(),
            loaded.clone(),
            loaded.clone(),
            loaded.clone(),
        );
        routes()
            .route(
                "/first",
                post(move |session: Session| {
                    let (l1, f) = (l1.clone(), f.clone());
                    async move {
                        l1.wait().await;
                        f.notified().await;
                        session.insert("color", "red").unwrap();
                        "first"
                    }
                }),
            )
            .route(
                "/second",
                post(move |session: Session| {
                    let (l2, s) = (l2.clone(), s.clone());
                    async move {
                        l2.wait().await;
                        s.notified().await;
                        session.insert("color", "blue").unwrap();
                        "second"
                    }
                }),
            )
            .route(
                "/reader",
                get(move |session: Session| {
                    let l3 = l3.clone();
                    async move {
                        let color: Option<String> = session.get("color").unwrap();
                        l3.wait().await;
                        format!("{color:?}")
                    }
                }),
            )
    };
    let h = Harness::with_routes(routes, |b| b);
    let pair = h.post("/set/color/green", &[]).await.pair();
    let saves = h.store.calls(Op::Save);

    let spawn = |uri: &'static str, method: &'static str| {
        let app = h.app.clone();
        let pair = pair.clone();
        tokio::spawn(async move { send(&app, request(method, uri, &[&pair])).await })
    };
    let first = spawn("/first", "POST");
    let second = spawn("/second", "POST");
    let reader = spawn("/reader", "GET");
    // All three have loaded "green"; the reader finishes first.
    let reply = bounded("the reader", reader).await.unwrap();
    assert_eq!(reply.body, "Some(\"green\")");
    assert!(reply.set_cookies().is_empty());
    first_go.notify_one();
    bounded("the first writer", first).await.unwrap();
    second_go.notify_one();
    bounded("the second writer", second).await.unwrap();

    assert_eq!(h.get("/get/color", &[&pair]).await.body, "blue");
    assert_eq!(
        h.store.calls(Op::Save),
        saves + 2,
        "the reader saved nothing"
    );
}

/// A route that loads the session, says so on `loaded`, waits for `go`,
/// then does `then` to it.
fn slow_route(
    loaded: Arc<Notify>,
    go: Arc<Notify>,
    then: fn(&Session),
) -> axum::routing::MethodRouter {
    post(move |session: Session| {
        let (loaded, go) = (loaded.clone(), go.clone());
        async move {
            let _ = session.get::<String>("user");
            loaded.notify_one();
            go.notified().await;
            then(&session);
            "slow done"
        }
    })
}

struct Race {
    h: Harness,
    loaded: Arc<Notify>,
    go: Arc<Notify>,
}

impl Race {
    fn new(then: fn(&Session)) -> Self {
        let (loaded, go) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let routes: Router = routes().route("/slow", slow_route(loaded.clone(), go.clone(), then));
        Self {
            h: Harness::with_routes(routes, |b| b),
            loaded,
            go,
        }
    }

    /// Runs `/slow` on `pair`; while it waits, `fast` runs to completion;
    /// then `/slow` goes on. Returns both replies.
    async fn run(&self, pair: &str, fast: &str) -> (Reply, Reply) {
        let app = self.h.app.clone();
        let slow_pair = pair.to_owned();
        let slow =
            tokio::spawn(async move { send(&app, request("POST", "/slow", &[&slow_pair])).await });
        bounded("the slow request's load", self.loaded.notified()).await;
        let fast = bounded("the fast request", self.h.post(fast, &[pair])).await;
        self.go.notify_one();
        let slow = bounded("the slow request", slow).await.unwrap();
        (slow, fast)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s27_a_slow_write_does_not_bring_back_a_session_destroyed_meanwhile() {
    let race = Race::new(|s| s.insert("late", "write").unwrap());
    let pair = race.h.new_session().await;
    let (slow, fast) = race.run(&pair, "/logout").await;
    assert_eq!(
        fast.cookie().unwrap().value(),
        "",
        "logout removed the cookie"
    );
    assert_eq!(slow.status, StatusCode::OK);
    assert!(
        slow.cookie().is_none(),
        "the slow response must not undo the logout: {:?}",
        slow.set_cookies()
    );
    assert!(stored(&race.h.store.memory, &hash_of(&pair))
        .await
        .is_none());
    assert!(
        race.h.store.memory.is_empty(),
        "nothing brought back under any id"
    );
    assert_eq!(race.h.get("/get/late", &[&pair]).await.body, "none");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s27_a_slow_write_does_not_bring_back_an_id_rotated_away_meanwhile() {
    let race = Race::new(|s| s.insert("late", "write").unwrap());
    let pair = race.h.new_session().await;
    let (slow, fast) = race.run(&pair, "/login/alice").await;
    let cycled = fast.pair();
    assert_ne!(cycled, pair);
    assert!(slow.cookie().is_none(), "{:?}", slow.set_cookies());
    assert!(
        stored(&race.h.store.memory, &hash_of(&pair))
            .await
            .is_none(),
        "old id stays dead"
    );
    assert_eq!(race.h.get("/get/user", &[&pair]).await.body, "none");
    assert_eq!(race.h.get("/get/user", &[&cycled]).await.body, "alice");
    assert_eq!(race.h.store.memory.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s27_a_slow_cycle_does_not_bring_back_a_session_destroyed_meanwhile() {
    // A slow sign-in (or sudo) that cycles the id after a logout in another
    // tab finished: the destroyed session's data must not come back under a
    // new id.
    let race = Race::new(|s| s.cycle_id());
    let pair = race.h.new_session().await;
    let (slow, fast) = race.run(&pair, "/logout").await;
    assert_eq!(fast.cookie().unwrap().value(), "");
    assert!(
        race.h.store.memory.is_empty(),
        "the destroyed session came back under a new id"
    );
    let resurrected = slow.cookie().filter(|c| !c.value().is_empty());
    assert!(
        resurrected.is_none(),
        "a live cookie after logout: {:?}",
        slow.set_cookies()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s27_a_slow_read_does_not_refresh_a_session_destroyed_meanwhile() {
    let (loaded, go) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let routes = routes().route("/slow", slow_route(loaded.clone(), go.clone(), |_| {}));
    // Refresh on every read, persistent cookie: the slow read wants to touch.
    let h = Harness::with_routes(routes, |b| {
        b.expiry(session_layer::Expiry::idle(time::Duration::hours(1)))
            .refresh_after(0.0)
    });
    let race = Race { h, loaded, go };
    let pair = race.h.new_session().await;
    let (slow, _) = race.run(&pair, "/logout").await;
    assert!(slow.cookie().is_none(), "{:?}", slow.set_cookies());
    assert!(race.h.store.memory.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s24_s27_two_concurrent_sign_ins_leave_one_session_not_two() {
    // A double-clicked sign-in: both requests loaded the same session and
    // both cycle it. The store's delete says which one ended the old id;
    // only that one makes the new session, so no orphan is left behind.
    let race = Race::new(|s| s.cycle_id());
    let pair = race.h.new_session().await;
    let (slow, fast) = race.run(&pair, "/login/alice").await;
    let fast_cookie = fast.cookie().expect("the first sign-in got a new id");
    assert!(!fast_cookie.value().is_empty());
    assert!(
        slow.cookie().is_none(),
        "the second cycle found the old id gone: {:?}",
        slow.set_cookies()
    );
    assert_eq!(race.h.store.memory.len(), 1, "one live session, no orphan");
    let fresh = format!("id={}", fast_cookie.value());
    assert_eq!(race.h.get("/get/user", &[&fresh]).await.body, "alice");
    assert_eq!(
        race.h.get("/get/user", &[&pair]).await.body,
        "none",
        "the old id is dead"
    );
}
