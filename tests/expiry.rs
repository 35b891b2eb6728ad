//! Timeouts end to end (S29-S33), with a manual clock shared by the layer
//! and the store: time moves, nothing sleeps.

mod common;

use common::*;
use session_layer::store::PurgeTask;
use session_layer::{Expiry, SessionStore};
use time::Duration;

#[tokio::test]
async fn s29_the_idle_timeout_counts_from_the_last_server_side_activity() {
    let h = Harness::with(|b| b.expiry(Expiry::idle(Duration::minutes(30))));
    let pair = h.new_session().await;
    // Activity every 20 minutes keeps it alive well past 30 minutes.
    for i in 1..=5 {
        h.advance(Duration::minutes(20));
        assert_eq!(h.get("/count", &[&pair]).await.body, i.to_string());
        assert_eq!(h.get("/get/user", &[&pair]).await.body, "alice");
    }
    // A read 29 minutes later is activity too (it is past the throttle)...
    h.advance(Duration::minutes(29));
    assert_eq!(h.get("/get/user", &[&pair]).await.body, "alice");
    // ...and then 30 minutes of silence end it.
    h.advance(Duration::minutes(29));
    assert_eq!(h.get("/get/n", &[&pair]).await.body, "5");
    h.advance(Duration::minutes(30));
    assert_eq!(h.get("/get/user", &[&pair]).await.body, "none");
    assert_eq!(h.get("/count", &[&pair]).await.body, "1", "a new session");
}

#[tokio::test]
async fn s30_the_absolute_timeout_counts_from_creation_whatever_the_activity() {
    let h = Harness::with(|b| {
        b.expiry(Expiry::idle(Duration::minutes(30)).with_absolute(Duration::hours(2)))
    });
    let mut pair = h.new_session().await;
    for i in 0..7 {
        h.advance(Duration::minutes(15));
        h.get("/count", &[&pair]).await;
        // A login in the middle cycles the id but not the creation time.
        if i == 3 {
            pair = h.post("/login/alice", &[&pair]).await.pair();
        }
        assert_eq!(
            h.get("/get/user", &[&pair]).await.body,
            "alice",
            "at {}m",
            (i + 1) * 15
        );
    }
    // 105 minutes in, active all along; at 120 it ends.
    h.advance(Duration::minutes(14));
    assert_eq!(h.get("/get/user", &[&pair]).await.body, "alice");
    h.advance(Duration::minutes(1));
    assert_eq!(h.get("/get/user", &[&pair]).await.body, "none");
    // A write now starts a new session rather than extending the old one.
    let fresh = h.post("/set/user/alice", &[&pair]).await.pair();
    assert_ne!(raw_id(value_of(&fresh)), raw_id(value_of(&pair)));
}

#[tokio::test]
async fn s31_keeping_or_editing_an_old_cookie_does_not_extend_a_session() {
    let h = Harness::with(|b| b.expiry(Expiry::idle(Duration::minutes(10))));
    let pair = h.new_session().await;
    // The cookie the client keeps says Max-Age=600; the server decides.
    h.advance(Duration::minutes(10));
    assert_eq!(h.get("/get/user", &[&pair]).await.body, "none");
    // Editing the value (e.g. to forge another id) fails verification.
    let value = value_of(&pair);
    let edited = format!(
        "id={}{}",
        &value[..63],
        if value.ends_with('A') { 'B' } else { 'A' }
    );
    assert_eq!(h.get("/get/user", &[&edited]).await.body, "none");

    // An absolute session: re-sending the very first cookie all along, with
    // activity, does not reach past the absolute deadline.
    let h = Harness::with(|b| b.expiry(Expiry::absolute(Duration::minutes(10))));
    let pair = h.new_session().await;
    for _ in 0..9 {
        h.advance(Duration::minutes(1));
        h.post("/set/k/v", &[&pair]).await;
    }
    h.advance(Duration::minutes(1));
    assert_eq!(h.get("/get/user", &[&pair]).await.body, "none");
}

#[tokio::test]
async fn s32_read_only_activity_refreshes_a_rolling_session_throttled() {
    // 40-minute idle window, refresh after a quarter of it (the default).
    let h = Harness::with(|b| b.expiry(Expiry::idle(Duration::minutes(40))));
    let pair = h.new_session().await;
    for minute in [1, 5, 9] {
        h.advance(Duration::minutes(if minute == 1 { 1 } else { 4 }));
        let reply = h.get("/get/user", &[&pair]).await;
        assert_eq!(reply.body, "alice");
        assert!(
            reply.cookie().is_none(),
            "no cookie before the refresh is due"
        );
    }
    assert_eq!(h.store.calls(Op::Touch), 0, "no refresh before 10 minutes");
    assert_eq!(h.store.calls(Op::Save), 0, "reads never rewrite");

    // 10 minutes: one touch, and a fresh persistent cookie.
    h.advance(Duration::minutes(1));
    let reply = h.get("/get/user", &[&pair]).await;
    assert_eq!(h.store.calls(Op::Touch), 1);
    assert_eq!(
        reply.cookie().unwrap().max_age(),
        Some(Duration::minutes(40))
    );
    assert_eq!(reply.pair(), pair, "same id");
    // More reads soon after: no more touches.
    for _ in 0..5 {
        h.advance(Duration::minutes(1));
        h.get("/get/user", &[&pair]).await;
    }
    assert_eq!(h.store.calls(Op::Touch), 1);
    assert_eq!(h.store.calls(Op::Save), 0);

    // The refresh moved the deadline: 45 minutes after creation (more than
    // the 40-minute window) the session is alive, from read-only activity.
    h.advance(Duration::minutes(30));
    assert_eq!(h.get("/get/user", &[&pair]).await.body, "alice");
    assert_eq!(h.store.calls(Op::Touch), 2);
}

#[tokio::test]
async fn s32_refresh_after_zero_touches_on_every_read_and_absolute_never_does() {
    let h = Harness::with(|b| {
        b.expiry(Expiry::idle(Duration::minutes(40)))
            .refresh_after(0.0)
    });
    let pair = h.new_session().await;
    for _ in 0..3 {
        h.get("/get/user", &[&pair]).await;
    }
    assert_eq!(h.store.calls(Op::Touch), 3);

    let h = Harness::with(|b| b.expiry(Expiry::absolute(Duration::hours(1))));
    let pair = h.new_session().await;
    for _ in 0..5 {
        h.advance(Duration::minutes(10));
        assert_eq!(h.get("/get/user", &[&pair]).await.body, "alice");
    }
    assert_eq!(h.store.calls(Op::Touch), 0, "nothing to roll");
}

#[tokio::test]
async fn s32_a_browser_session_is_refreshed_without_a_cookie() {
    let h = Harness::new();
    let pair = h.new_session().await;
    // Every 12 hours, for three days: past the one-day idle window.
    for _ in 0..6 {
        h.advance(Duration::hours(12));
        let reply = h.get("/get/user", &[&pair]).await;
        assert_eq!(reply.body, "alice");
        assert!(
            reply.cookie().is_none(),
            "a browser session gets no Max-Age refresh"
        );
    }
    assert_eq!(h.store.calls(Op::Touch), 6);
}

#[tokio::test(start_paused = true)]
async fn s33_the_purge_task_removes_expired_sessions_and_survives_store_errors() {
    let h = Harness::with(|b| b.expiry(Expiry::idle(Duration::minutes(5))));
    for _ in 0..20 {
        h.new_session().await;
    }
    let keep = h.new_session().await;
    assert_eq!(h.store.memory.len(), 21);
    h.advance(Duration::minutes(4));
    h.post("/set/k/v", &[&keep]).await;
    h.advance(Duration::minutes(2));
    // Expired but not yet swept: nothing has written since.
    assert_eq!(h.store.memory.len(), 21);

    h.store.fail(Op::Purge, Fault::BackendTimes(3));
    let task = PurgeTask::spawn(h.store.clone(), std::time::Duration::from_secs(60));
    // Paused tokio time: each sleep lets the interval fire; bounded.
    for _ in 0..20 {
        if h.store.memory.len() == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
    }
    task.stop().await;
    assert_eq!(h.store.memory.len(), 1, "only the live session is left");
    assert!(h.store.calls(Op::Purge) >= 4, "went on after 3 failures");
    assert_eq!(h.get("/get/user", &[&keep]).await.body, "alice");

    // Stopped means stopped.
    let calls = h.store.calls(Op::Purge);
    tokio::time::sleep(std::time::Duration::from_secs(600)).await;
    assert_eq!(h.store.calls(Op::Purge), calls);
}

#[tokio::test]
async fn s33_the_memory_store_sweeps_expired_sessions_on_its_own() {
    let h = Harness::with(|b| b.expiry(Expiry::idle(Duration::minutes(1))));
    for _ in 0..300 {
        h.new_session().await;
    }
    assert_eq!(h.store.memory.len(), 300);
    h.advance(Duration::minutes(10));
    // New sessions write to every shard; each write sweeps its shard.
    // (2000 writes reach all 64 shards but with odds of about 1e-12.)
    for _ in 0..2000 {
        h.new_session().await;
    }
    assert_eq!(h.store.memory.len(), 2000, "the 300 expired ones are gone");
    h.advance(Duration::minutes(10));
    assert_eq!(h.store.memory.purge_expired().await.unwrap(), 2000);
    assert!(h.store.memory.is_empty());
    // And the layer still works on the same store.
    let pair = h.new_session().await;
    assert_eq!(h.get("/get/user", &[&pair]).await.body, "alice");
}

#[tokio::test(start_paused = true)]
async fn s33_a_hanging_purge_does_not_stop_the_purge_task() {
    let h = Harness::with(|b| b.expiry(Expiry::idle(Duration::minutes(5))));
    h.new_session().await;
    h.advance(Duration::minutes(10));
    h.store.fail(Op::Purge, Fault::Hang);
    let task = PurgeTask::spawn(h.store.clone(), std::time::Duration::from_secs(60));
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(h.store.calls(Op::Purge), 1, "the first purge hangs");
    h.store.heal();
    for _ in 0..20 {
        if h.store.memory.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
    }
    task.stop().await;
    assert!(
        h.store.memory.is_empty(),
        "purging never resumed after a hung call"
    );
}

#[test]
fn a_manual_clock_starts_on_a_whole_second_as_documented() {
    use session_layer::clock::{Clock, ManualClock};
    // The layer and the stores keep whole seconds; a clock that starts
    // between seconds makes "now + Max-Age" and the stored times disagree.
    for _ in 0..5 {
        assert_eq!(ManualClock::new().now().nanosecond(), 0);
    }
}
