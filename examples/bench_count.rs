//! Runs N requests of one scenario through one benchmark app in process,
//! for counting instructions and allocations per request with valgrind,
//! which (unlike wall time on a shared machine) does not depend on the load:
//!
//! ```text
//! cargo build --release --example bench_count
//! valgrind --tool=callgrind target/release/examples/bench_count ours read 2000
//! ```
//!
//! Run it with two counts and divide the difference by the difference in
//! requests to leave out the set-up; `benches/count.sh` does that.

use axum::body::Body;
use axum::http::{header::COOKIE, Request};
use tower::ServiceExt;

#[path = "../benches/support/apps.rs"]
mod apps;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(mode), Some(path), Some(n)) = (
        args.first().and_then(|m| apps::Mode::parse(m)),
        args.get(1).and_then(|s| match s.as_str() {
            "plain" | "read" | "write" | "create" => Some(format!("/{s}")),
            "cookie_untouched" => Some("/plain".to_owned()),
            _ => None,
        }),
        args.get(2).and_then(|n| n.parse::<u32>().ok()),
    ) else {
        eprintln!("usage: bench_count bare|ours|tower-sessions|handle-only plain|cookie_untouched|read|write|create N");
        std::process::exit(2)
    };
    let with_cookie = args[1] != "plain" && args[1] != "create";
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let (app, _) = apps::app(mode);
        let request = |path: &str, cookie: Option<&str>| {
            let mut req = Request::builder().uri(path);
            if let Some(cookie) = cookie {
                req = req.header(COOKIE, cookie);
            }
            req.body(Body::empty()).expect("request")
        };
        let cookie = if !with_cookie {
            None
        } else if !mode.keeps_sessions() {
            Some("id=not-a-session".to_owned())
        } else {
            let res = app.clone().oneshot(request("/signin", None)).await.unwrap();
            apps::cookie_of(&res)
        };
        for _ in 0..n.min(1_000_000) {
            let res = app
                .clone()
                .oneshot(request(&path, cookie.as_deref()))
                .await
                .unwrap();
            assert!(res.status().is_success());
            std::hint::black_box(res);
        }
    });
}
