//! Per-request cost through the real tower stack: an axum `Router`, a
//! cloned service and `oneshot` per request, no network. Every scenario runs
//! the same handlers with no session layer (`bare`), under ours, and under
//! tower-sessions 0.15 with its `MemoryStore`, in one run, so the ratios
//! between them hold even on a busy machine.
//!
//! `cargo bench --bench layer`; see BENCHMARKS.md.

use std::hint::black_box;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header::COOKIE, Request};
use axum::Router;
use criterion::{criterion_group, criterion_main, Criterion};
use tower::ServiceExt;

#[path = "support/apps.rs"]
mod apps;

use apps::Mode;

/// What one scenario sends, and whether it needs a session first.
struct Scenario {
    name: &'static str,
    path: &'static str,
    cookie: bool,
    /// Other cookies sent alongside ours (a site's analytics and the like).
    extra_cookies: usize,
    modes: &'static [Mode],
}

const SCENARIOS: &[Scenario] = &[
    // The handler ignores the session and the client has no cookie: what a
    // static asset or a health check under the layer costs.
    Scenario {
        name: "no_cookie",
        path: "/plain",
        cookie: false,
        extra_cookies: 0,
        modes: &Mode::ALL,
    },
    // A signed-in client on a route whose handler ignores the session.
    Scenario {
        name: "cookie_untouched",
        path: "/plain",
        cookie: true,
        extra_cookies: 0,
        modes: &Mode::ALL,
    },
    // With `handle-only`: what handing any value to the handler costs.
    Scenario {
        name: "read",
        path: "/read",
        cookie: true,
        extra_cookies: 0,
        modes: &[
            Mode::Bare,
            Mode::HandleOnly,
            Mode::Ours,
            Mode::TowerSessions,
        ],
    },
    Scenario {
        name: "read_among_20_cookies",
        path: "/read",
        cookie: true,
        extra_cookies: 20,
        modes: &Mode::ALL,
    },
    Scenario {
        name: "write",
        path: "/write",
        cookie: true,
        extra_cookies: 0,
        modes: &Mode::ALL,
    },
    Scenario {
        name: "create",
        path: "/create",
        cookie: false,
        extra_cookies: 0,
        modes: &Mode::ALL,
    },
];

fn cookie_header(session: Option<&str>, extra: usize) -> Option<String> {
    let mut parts: Vec<String> = (0..extra)
        .map(|i| format!("_pref{i}=a{i}b{i}c{i}d{i}e{i}f{i}g{i}h{i}"))
        .collect();
    // Ours in the middle, as a browser would order it by creation time.
    if let Some(s) = session {
        parts.insert(parts.len() / 2, s.to_owned());
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

fn request(path: &str, cookie: Option<&str>) -> Request<Body> {
    let mut req = Request::builder().uri(path);
    if let Some(cookie) = cookie {
        req = req.header(COOKIE, cookie);
    }
    req.body(Body::empty()).expect("valid request")
}

async fn sign_in(app: &Router) -> String {
    let res = app.clone().oneshot(request("/signin", None)).await.unwrap();
    apps::cookie_of(&res).unwrap_or_default()
}

fn layer(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    for scenario in SCENARIOS {
        let mut group = c.benchmark_group(format!("layer/{}", scenario.name));
        group.warm_up_time(Duration::from_secs(1));
        group.measurement_time(Duration::from_secs(3));
        for &mode in scenario.modes {
            // A fresh app per mode and scenario: `create` grows its store.
            let (app, _) = rt.block_on(async { apps::app(mode) });
            let session = if scenario.cookie && mode.keeps_sessions() {
                Some(rt.block_on(sign_in(&app)))
            } else if scenario.cookie {
                Some("id=not-a-session".to_owned())
            } else {
                None
            };
            let cookie = cookie_header(session.as_deref(), scenario.extra_cookies);
            // The response a scenario is about: a read finds the session.
            let probe = rt.block_on(
                app.clone()
                    .oneshot(request(scenario.path, cookie.as_deref())),
            );
            assert!(probe.unwrap().status().is_success(), "{}", scenario.name);

            group.bench_function(mode.name(), |b| {
                b.to_async(&rt).iter(|| {
                    let req = request(scenario.path, cookie.as_deref());
                    let app = app.clone();
                    async move { black_box(app.oneshot(req).await.unwrap()) }
                })
            });
        }
        group.finish();
    }
}

/// Ours on a real Redis (`SESSION_LAYER_REDIS_URL`, e.g.
/// `redis://127.0.0.1:6379`; skipped without it): a page that never takes
/// the session, and a read, with the session loaded when the handler asks
/// (the default) and with `eager_load(true)`, the layer loading before the
/// handler. The difference on `cookie_untouched` is the store round trip
/// that loading on first use saves. Needs `--features redis-store`.
#[cfg(feature = "redis-store")]
fn redis(c: &mut Criterion) {
    let Ok(url) = std::env::var("SESSION_LAYER_REDIS_URL") else {
        eprintln!("layer/redis: SESSION_LAYER_REDIS_URL is not set; skipped");
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let store = rt
        .block_on(session_layer::RedisStore::connect(&url))
        .expect("Redis at SESSION_LAYER_REDIS_URL")
        .key_prefix("session-layer-bench:");
    for (name, path) in [("cookie_untouched", "/plain"), ("read", "/read")] {
        let mut group = c.benchmark_group(format!("layer/redis/{name}"));
        group.warm_up_time(Duration::from_secs(1));
        group.measurement_time(Duration::from_secs(3));
        for eager in [false, true] {
            let app = apps::ours_on(store.clone().into(), |b| b.eager_load(eager)).with_state(());
            let cookie = rt.block_on(sign_in(&app));
            let label = if eager { "ours-eager-load" } else { "ours" };
            group.bench_function(label, |b| {
                b.to_async(&rt).iter(|| {
                    let req = request(path, Some(&cookie));
                    let app = app.clone();
                    async move { black_box(app.oneshot(req).await.unwrap()) }
                })
            });
        }
        group.finish();
    }
}

#[cfg(not(feature = "redis-store"))]
fn redis(_: &mut Criterion) {}

criterion_group!(benches, layer, redis);
criterion_main!(benches);
