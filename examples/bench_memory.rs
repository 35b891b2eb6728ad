//! Memory per session: creates N small sessions (`user` and a counter, the
//! `/signin` handler) through the real layer and its `MemoryStore`, in
//! process, and prints the growth of peak and current RSS divided by N.
//!
//! ```text
//! cargo run --release --example bench_memory -- --mode ours --sessions 100000
//! ```
//!
//! Run one mode per process, so one store's freed memory cannot serve the
//! other's.

use axum::body::Body;
use axum::http::Request;
use tower::ServiceExt;

#[path = "../benches/support/apps.rs"]
mod apps;

/// `VmHWM` (peak) and `VmRSS` (current) of this process, in bytes.
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

fn main() {
    let mut mode = None;
    let mut sessions = 100_000usize;
    let mut args = std::env::args().skip(1);
    while let (Some(arg), Some(value)) = (args.next(), args.next()) {
        match arg.as_str() {
            "--mode" => mode = apps::Mode::parse(&value),
            "--sessions" => sessions = value.parse().expect("--sessions N"),
            _ => panic!("usage: bench_memory --mode ours|tower-sessions [--sessions N]"),
        }
    }
    let mode = mode.expect("--mode ours|tower-sessions");
    assert!(mode.keeps_sessions(), "{} keeps no sessions", mode.name());
    let sessions = sessions.clamp(1, 10_000_000);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let (app, store) = apps::app(mode);
        // Warm up allocator and router, so their first allocations are not
        // counted as sessions.
        for _ in 0..100 {
            let req = Request::get("/plain").body(Body::empty()).unwrap();
            drop(app.clone().oneshot(req).await.unwrap());
        }
        let (hwm0, rss0) = rss();
        for _ in 0..sessions {
            let req = Request::get("/signin").body(Body::empty()).unwrap();
            let res = app.clone().oneshot(req).await.unwrap();
            assert!(res.status().is_success());
        }
        let (hwm1, rss1) = rss();
        if let Some(store) = store {
            assert_eq!(store.len(), sessions);
        }
        let per = |a: u64, b: u64| (b.saturating_sub(a)) as f64 / sessions as f64;
        println!(
            "mode={} sessions={} peak_rss_delta_bytes={} per_session_peak={:.0} rss_delta_bytes={} per_session_rss={:.0}",
            mode.name(),
            sessions,
            hwm1.saturating_sub(hwm0),
            per(hwm0, hwm1),
            rss1.saturating_sub(rss0),
            per(rss0, rss1),
        );
    });
}
