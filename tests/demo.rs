//! Starts the demo app (the real binary that `cargo run --example demo`
//! runs), signs in, counts three visits, signs out, and checks that the old
//! cookie no longer works.
// The restart and backend helpers are used only with a store feature on.
#![cfg_attr(
    not(any(
        feature = "sqlite-store",
        feature = "redis-store",
        feature = "postgres-store",
        feature = "mysql-store"
    )),
    allow(dead_code)
)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::cookie::{CookieStore, Jar};
use reqwest::header::COOKIE;

/// The demo process, killed when the test ends, however it ends.
struct Demo {
    child: Child,
    base: String,
    key_dir: KeyDir,
}

impl Demo {
    /// Stops the demo and hands back its key directory, for a restart.
    fn stop(mut self) -> KeyDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        KeyDir(std::mem::take(&mut self.key_dir.0))
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A private temporary directory for the demo's key file, removed on drop.
struct KeyDir(PathBuf);

impl KeyDir {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "session-layer-demo-test-{}-{n}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for KeyDir {
    fn drop(&mut self) {
        if !self.0.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// `cargo test` builds the examples next to the test binaries:
/// target/debug/deps/demo-HASH → target/debug/examples/demo.
fn demo_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let path = dir
        .join("examples")
        .join(format!("demo{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is missing: run `cargo test` (which builds the examples)",
        path.display()
    );
    path
}

fn start_demo() -> Demo {
    start_demo_on("memory", KeyDir::new())
}

fn start_demo_on(store: &str, key_dir: KeyDir) -> Demo {
    let mut child = Command::new(demo_binary())
        .args(["--port", "0", "--store", store, "--key-file"])
        .arg(key_dir.0.join("key"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the demo starts");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the demo printed its address");
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| {
            panic!(
                "the demo did not start on {store}: {line:?}. Note: `cargo test --test demo` alone \
                 does not rebuild the examples; run the whole `cargo test` with the same features"
            )
        })
        .to_owned();
    Demo {
        child,
        base,
        key_dir,
    }
}

/// Sends `req` and returns the page's text.
async fn page(req: reqwest::RequestBuilder) -> String {
    req.send().await.unwrap().text().await.unwrap()
}

fn visits(page: &str) -> Option<u64> {
    let rest = page.split(r#"<b id="visits">"#).nth(1)?;
    rest.split('<').next()?.parse().ok()
}

#[tokio::test]
async fn demo_sign_in_count_sign_out_and_replay() {
    let demo = start_demo();
    let jar = Arc::new(Jar::default());
    let client = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let url = |path: &str| format!("{}{path}", demo.base);

    let home = page(client.get(url("/"))).await;
    assert!(
        home.contains(r#"action="/sign-in""#),
        "a sign-in form: {home}"
    );
    assert!(
        jar.cookies(&url("/").parse().unwrap()).is_none(),
        "no cookie before signing in (S23)"
    );

    let signed_in = client
        .post(url("/sign-in"))
        .form(&[("name", "ada")])
        .send()
        .await
        .unwrap();
    assert!(
        signed_in.status().is_success(),
        "followed the redirect: {}",
        signed_in.status()
    );
    let first = signed_in.text().await.unwrap();
    assert!(first.contains("Hello, <b>ada</b>"), "{first}");
    let mut counts = vec![visits(&first).unwrap()];
    for _ in 0..2 {
        let body = page(client.get(url("/"))).await;
        counts.push(visits(&body).unwrap());
    }
    assert_eq!(counts, [1, 2, 3]);

    let session_page = page(client.get(url("/session"))).await;
    assert!(
        session_page.contains("browser session"),
        "no remember-me: {session_page}"
    );
    assert!(session_page.contains("data: visits"), "{session_page}");

    let old_cookie = jar
        .cookies(&url("/").parse().unwrap())
        .expect("a session cookie");
    let after = page(client.post(url("/sign-out"))).await;
    assert!(
        after.contains(r#"action="/sign-in""#),
        "signed out: {after}"
    );

    // Replaying the cookie from before the sign-out finds no session (S25).
    let replay = reqwest::Client::new()
        .get(url("/"))
        .header(COOKIE, old_cookie)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    assert!(replay.headers().get("set-cookie").is_none());
    let replay = replay.text().await.unwrap();
    assert!(
        replay.contains(r#"action="/sign-in""#) && visits(&replay).is_none(),
        "{replay}"
    );
}

#[tokio::test]
async fn demo_remember_me_sets_a_persistent_cookie_and_sign_in_cycles_the_id() {
    let demo = start_demo();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let sign_in = |cookie: Option<String>| {
        let mut req = client
            .post(format!("{}/sign-in", demo.base))
            .form(&[("name", "grace"), ("remember", "on")]);
        if let Some(cookie) = cookie {
            req = req.header(COOKIE, cookie);
        }
        req.send()
    };
    let first = sign_in(None).await.unwrap();
    let set_cookie = first.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(set_cookie.contains("Max-Age=2592000"), "{set_cookie}");
    let pair = set_cookie.split(';').next().unwrap().to_owned();

    // Signing in again on the same session gives it a new id (S24).
    let second = sign_in(Some(pair.clone())).await.unwrap();
    let second_pair = second.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert_ne!(pair, second_pair);
    let old = client
        .get(format!("{}/", demo.base))
        .header(COOKIE, pair)
        .send()
        .await
        .unwrap();
    assert!(
        old.text().await.unwrap().contains(r#"action="/sign-in""#),
        "the old id is dead"
    );
    let new = client
        .get(format!("{}/", demo.base))
        .header(COOKIE, second_pair)
        .send()
        .await
        .unwrap();
    assert!(new.text().await.unwrap().contains("Hello, <b>grace</b>"));
}

/// Signs in with "remember me" on the demo at `store`, restarts the demo on
/// the same store and key, and checks the user is still signed in.
async fn signed_in_across_a_restart(store: &str) {
    let demo = start_demo_on(store, KeyDir::new());
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let res = client
        .post(format!("{}/sign-in", demo.base))
        .form(&[("name", "lin"), ("remember", "on")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "{store}");
    let cookie = res.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let seen = page(
        client
            .get(format!("{}/", demo.base))
            .header(COOKIE, &cookie),
    )
    .await;
    assert!(seen.contains("Hello, <b>lin</b>"), "{store}");

    let key_dir = demo.stop();
    let demo = start_demo_on(store, key_dir);
    let seen = page(
        client
            .get(format!("{}/", demo.base))
            .header(COOKIE, &cookie),
    )
    .await;
    assert!(
        seen.contains("Hello, <b>lin</b>") && visits(&seen) == Some(2),
        "{store}: {seen}"
    );

    // Sign out, so the shared server keeps nothing of this run.
    client
        .post(format!("{}/sign-out", demo.base))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    let seen = page(
        client
            .get(format!("{}/", demo.base))
            .header(COOKIE, &cookie),
    )
    .await;
    assert!(seen.contains(r#"action="/sign-in""#), "{store}");
}

#[cfg(feature = "sqlite-store")]
#[tokio::test]
async fn demo_on_sqlite_keeps_a_sign_in_across_a_restart() {
    let dir = KeyDir::new();
    let db = dir.0.join("sessions.db");
    signed_in_across_a_restart(&format!("sqlite://{}", db.display())).await;
    assert!(db.exists());
}

/// The demo on a server store named by an environment variable; skipped
/// with a line when it is unset, unless CI requires the backends.
async fn on_server(var: &str) {
    match std::env::var(var) {
        Ok(url) => signed_in_across_a_restart(&url).await,
        Err(_) if std::env::var("SESSION_LAYER_REQUIRE_BACKENDS").as_deref() == Ok("1") => {
            panic!("{var} is unset but SESSION_LAYER_REQUIRE_BACKENDS=1")
        }
        Err(_) => println!("skipping the demo on {var}: unset"),
    }
}

#[cfg(feature = "redis-store")]
#[tokio::test]
async fn demo_on_redis_keeps_a_sign_in_across_a_restart() {
    on_server("SESSION_LAYER_REDIS_URL").await;
}

#[cfg(feature = "postgres-store")]
#[tokio::test]
async fn demo_on_postgres_keeps_a_sign_in_across_a_restart() {
    on_server("SESSION_LAYER_POSTGRES_URL").await;
}

#[cfg(feature = "mysql-store")]
#[tokio::test]
async fn demo_on_mysql_keeps_a_sign_in_across_a_restart() {
    on_server("SESSION_LAYER_MYSQL_URL").await;
}
