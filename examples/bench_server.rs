//! One of the benchmark apps (see `benches/support/apps.rs`) on
//! 127.0.0.1, on one tokio thread, for `benches/http.sh`.
//!
//! ```text
//! cargo run --release --example bench_server -- --mode ours --port 3100
//! curl -i http://127.0.0.1:3100/signin     # a session cookie
//! ```
//!
//! `--mode bare|ours|tower-sessions|handle-only`; `--scenario
//! read|write|create` only checks the name: every route is served, the
//! load generator picks one.
//! `--spin-ns N` (bare only) makes every handler busy-wait N ns: the
//! calibration in `benches/http.sh` runs.

use std::net::SocketAddr;

#[path = "../benches/support/apps.rs"]
mod apps;

fn main() {
    let mut mode = None;
    let mut port = 3100u16;
    let mut spin_ns = 0u64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().unwrap_or_else(|| usage(&arg));
        match arg.as_str() {
            "--mode" => mode = Some(apps::Mode::parse(&value).unwrap_or_else(|| usage(&value))),
            "--port" => port = value.parse().unwrap_or_else(|_| usage(&value)),
            "--spin-ns" => spin_ns = value.parse().unwrap_or_else(|_| usage(&value)),
            "--scenario" if ["read", "write", "create", "plain"].contains(&value.as_str()) => {}
            _ => usage(&arg),
        }
    }
    let mode = mode.unwrap_or_else(|| usage("--mode"));
    if spin_ns > 0 && mode != apps::Mode::Bare {
        usage("--spin-ns");
    }

    // One worker: the server is pinned to one core, and the numbers are
    // per core.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let app = if spin_ns > 0 {
            apps::bare_spinning(spin_ns).with_state(())
        } else {
            apps::app(mode).0
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        eprintln!("bench_server: {} on http://{addr}", mode.name());
        axum::serve(listener, app).await.expect("serve");
    });
}

fn usage(what: &str) -> ! {
    eprintln!(
        "bench_server: bad argument {what:?}\n\
         usage: bench_server --mode bare|ours|tower-sessions|handle-only [--port N] [--scenario read|write|create] [--spin-ns N]"
    );
    std::process::exit(2)
}
