//! Latency while the store grows: creates N sessions through the real
//! layer (`/create`, `oneshot`, one thread, no network) and times every
//! request, in blocks of B. Run R times; for each block the reported p99
//! and max are the smallest over the runs. A table that stalls while it
//! grows stalls at the same block every run, so its stall survives the
//! minimum; a preemption by another process on a shared machine lands on
//! a random block and does not.
//!
//! ```text
//! cargo run --release --example bench_growth -- --mode ours --sessions 1000000 --runs 3
//! ```
//!
//! Prints one `block` line per block, then a `summary`: the worst block
//! p99 and max, and how many blocks have a max over 5 ms.

use std::time::Instant;

use axum::body::Body;
use axum::http::Request;
use tower::ServiceExt;

#[path = "../benches/support/apps.rs"]
mod apps;

fn main() {
    let mut mode = None;
    let (mut sessions, mut block, mut runs) = (1_000_000usize, 10_000usize, 3usize);
    let mut args = std::env::args().skip(1);
    while let (Some(k), Some(v)) = (args.next(), args.next()) {
        match k.as_str() {
            "--mode" => mode = apps::Mode::parse(&v),
            "--sessions" => sessions = v.parse().expect("--sessions N"),
            "--block" => block = v.parse().expect("--block N"),
            "--runs" => runs = v.parse().expect("--runs N"),
            _ => panic!("usage: bench_growth --mode bare|ours|tower-sessions [--sessions N] [--block N] [--runs N]"),
        }
    }
    let mode = mode.expect("--mode bare|ours|tower-sessions");
    // Bounded whatever is asked.
    let sessions = sessions.clamp(1, 5_000_000);
    let block = block.clamp(100, sessions);
    let runs = runs.clamp(1, 10);
    let blocks = sessions.div_ceil(block);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // Per block: the smallest p99 and max over the runs, in µs.
    let mut best = vec![(f64::MAX, f64::MAX); blocks];
    let mut seconds = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        rt.block_on(async {
            // A fresh, empty store every run.
            let (app, _) = apps::app(mode);
            let mut times = Vec::with_capacity(block);
            for (b, best) in best.iter_mut().enumerate() {
                times.clear();
                for _ in 0..block.min(sessions - b * block) {
                    let req = Request::get("/create").body(Body::empty()).unwrap();
                    let t = Instant::now();
                    let res = app.clone().oneshot(req).await.unwrap();
                    times.push(t.elapsed().as_secs_f64() * 1e6);
                    assert!(res.status().is_success());
                }
                times.sort_by(f64::total_cmp);
                let p99 = times[(times.len() - 1) * 99 / 100];
                let max = times[times.len() - 1];
                best.0 = best.0.min(p99);
                best.1 = best.1.min(max);
            }
        });
        seconds.push(start.elapsed().as_secs_f64());
    }
    for (b, (p99, max)) in best.iter().enumerate() {
        println!(
            "block sessions={} p99_us={p99:.1} max_us={max:.1}",
            ((b + 1) * block).min(sessions)
        );
    }
    let worst_p99 = best.iter().map(|b| b.0).fold(0.0, f64::max);
    let worst_max = best.iter().map(|b| b.1).fold(0.0, f64::max);
    let over_5ms = best.iter().filter(|b| b.1 > 5_000.0).count();
    let fastest = seconds.iter().copied().fold(f64::MAX, f64::min);
    println!(
        "summary mode={} sessions={sessions} runs={runs} req_per_s={:.0} worst_block_p99_us={worst_p99:.0} worst_block_max_us={worst_max:.0} blocks_over_5ms={over_5ms}",
        mode.name(),
        sessions as f64 / fastest
    );
}
