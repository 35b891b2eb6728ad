//! The demo's routes and pages.

use std::fmt::Write as _;
use std::path::PathBuf;

use axum::extract::Form;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use session_layer::{Expiry, Key, MemoryStore, Session, SessionError, SessionLayer, Storage};
use time::Duration;

/// How long "remember me" keeps a user signed in without a visit.
const REMEMBER_FOR: Duration = Duration::days(30);
/// Without "remember me": a browser session, ended after 30 idle minutes.
const IDLE: Duration = Duration::minutes(30);

/// Command-line and environment settings.
#[derive(Debug)]
pub(crate) struct Options {
    pub(crate) port: u16,
    pub(crate) store: String,
    pub(crate) key_file: PathBuf,
}

impl Options {
    pub(crate) const USAGE: &'static str = "usage: demo [--port N] [--store memory|sqlite://FILE|redis://…|postgres://…|mysql://…] [--key-file PATH]
  --port N         listen on 127.0.0.1:N (default 3000, or PORT)
  --store URL      where sessions live (default memory, or SESSION_STORE); other
                   stores need their feature, e.g. --features sqlite-store
  --key-file PATH  the signing key, created if missing (default target/demo-session.key,
                   or SESSION_KEY_FILE)";

    /// `--port N` (or `PORT`), `--store URL` (or `SESSION_STORE`),
    /// `--key-file PATH` (or `SESSION_KEY_FILE`); `None` for `--help`.
    pub(crate) fn from_args(
        mut args: impl Iterator<Item = String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, String> {
        let mut options = Options {
            port: env("PORT")
                .map(|p| p.parse().map_err(|_| format!("PORT={p} is not a port")))
                .transpose()?
                .unwrap_or(3000),
            store: env("SESSION_STORE").unwrap_or_else(|| "memory".into()),
            key_file: env("SESSION_KEY_FILE")
                .map(PathBuf::from)
                // In this checkout's target directory, which is the user's
                // own: a shared temporary directory would let another local
                // user plant the demo's key.
                .unwrap_or_else(|| {
                    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/demo-session.key")
                }),
        };
        while let Some(arg) = args.next() {
            let mut value = |name: &str| match args.next() {
                Some(v) if !v.starts_with("--") => Ok(v),
                _ => Err(format!("{name} needs a value; try --help")),
            };
            match arg.as_str() {
                "--port" => {
                    let v = value("--port")?;
                    options.port = v.parse().map_err(|_| format!("--port {v} is not a port"))?;
                }
                "--store" => options.store = value("--store")?,
                "--key-file" => options.key_file = value("--key-file")?.into(),
                "--help" | "-h" => return Ok(None),
                other => return Err(format!("unknown argument {other}; try --help")),
            }
        }
        Ok(Some(options))
    }
}

/// The signing key. The demo keeps it in a file so that sessions in a
/// persistent store survive a restart; a real app reads it from its secret
/// store, e.g. `Key::from_base64(&std::env::var("SESSION_KEY")?)`.
fn load_key(path: &PathBuf) -> Result<Key, Box<dyn std::error::Error>> {
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::STANDARD;
    if let Ok(text) = std::fs::read_to_string(path) {
        return Key::from_base64(&text).map_err(|e| format!("{}: {e}", path.display()).into());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut secret = [0u8; 64];
    getrandom::getrandom(&mut secret)?;
    write_private(path, engine.encode(secret).as_bytes())?;
    Ok(Key::try_from(&secret[..])?)
}

#[cfg(unix)]
fn write_private(path: &PathBuf, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?
        .write_all(bytes)
}

#[cfg(not(unix))]
fn write_private(path: &PathBuf, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

/// The store that `--store` (or `SESSION_STORE`) names: `memory`,
/// `sqlite://FILE`, `redis://…`, `postgres://…` or `mysql://…`. SQL stores
/// get their table and a purge task; Redis expires sessions itself. A
/// backend whose feature is off says which feature to enable.
async fn open_store(spec: &str) -> Result<Storage, Box<dyn std::error::Error>> {
    let scheme = spec.split_once(':').map_or(spec, |(scheme, _)| scheme);
    #[allow(unused)]
    let needs = |feature: &str| format!("--store {scheme}:… needs `--features {feature}`");
    #[allow(unused)]
    let purge_every = std::time::Duration::from_secs(300);
    // Into `Storage` as they are, not as `Arc<dyn SessionStore>`: the memory
    // store is then called in place (see `MemoryStore`).
    let store: Storage = match scheme {
        "memory" => MemoryStore::new().into(),
        #[cfg(feature = "sqlite-store")]
        "sqlite" => {
            // `sqlite://FILE`: created if missing, so sessions survive a restart.
            let store = session_layer::SqliteStore::connect(spec).await?;
            store.migrate().await?;
            drop(session_layer::store::PurgeTask::spawn(store.clone(), purge_every)); // runs until exit
            store.into()
        }
        #[cfg(feature = "redis-store")]
        "redis" | "rediss" => session_layer::RedisStore::connect(spec).await?.into(),
        #[cfg(feature = "postgres-store")]
        "postgres" | "postgresql" => {
            let store = session_layer::PostgresStore::connect(spec).await?;
            store.migrate().await?;
            drop(session_layer::store::PurgeTask::spawn(store.clone(), purge_every));
            store.into()
        }
        #[cfg(feature = "mysql-store")]
        "mysql" | "mariadb" => {
            let store = session_layer::MySqlStore::connect(spec).await?;
            store.migrate().await?;
            drop(session_layer::store::PurgeTask::spawn(store.clone(), purge_every));
            store.into()
        }
        #[cfg(not(feature = "sqlite-store"))]
        "sqlite" => return Err(needs("sqlite-store").into()),
        #[cfg(not(feature = "redis-store"))]
        "redis" | "rediss" => return Err(needs("redis-store").into()),
        #[cfg(not(feature = "postgres-store"))]
        "postgres" | "postgresql" => return Err(needs("postgres-store").into()),
        #[cfg(not(feature = "mysql-store"))]
        "mysql" | "mariadb" => return Err(needs("mysql-store").into()),
        _ => {
            return Err(format!(
                "unknown store `{spec}`: use memory, sqlite://FILE, redis://…, postgres://… or mysql://…"
            )
            .into())
        }
    };
    Ok(store)
}

/// The whole app, with its session layer.
pub(crate) async fn router(options: &Options) -> Result<Router, Box<dyn std::error::Error>> {
    let key = load_key(&options.key_file)?;
    let store = open_store(&options.store).await?;
    let layer = SessionLayer::builder(store, key)
        .expiry(Expiry::browser_session().with_idle(IDLE))
        // Plain HTTP on loopback: a `Secure` cookie would not be sent back
        // (curl, Python's http.cookiejar and browsers other than on
        // localhost withhold it), so the demo turns `Secure` off. The
        // library's default is on; keep it on behind TLS.
        .secure(false)
        .build()?;
    Ok(Router::new()
        .route("/", get(home))
        .route("/sign-in", post(sign_in))
        .route("/sign-out", post(sign_out))
        .route("/session", get(show_session))
        .layer(layer))
}

#[derive(Deserialize)]
struct SignIn {
    name: String,
    remember: Option<String>,
}

async fn home(session: Session) -> Result<Html<String>, SessionError> {
    let Some(user) = session.get::<String>("user")? else {
        return Ok(page(
            "Sign in",
            r#"<form method="post" action="/sign-in">
  <label>Name <input name="name" required maxlength="40" autofocus></label>
  <label><input type="checkbox" name="remember"> Remember me for 30 days</label>
  <button>Sign in</button>
</form>"#,
        ));
    };
    let visits = session.get::<u64>("visits")?.unwrap_or(0) + 1;
    session.insert("visits", visits)?;
    Ok(page(
        "Welcome",
        &format!(
            r#"<p>Hello, <b>{}</b>. This is visit <b id="visits">{visits}</b>.</p>
<p><a href="/">Visit again</a> · <a href="/session">What the session holds</a></p>
<form method="post" action="/sign-out"><button>Sign out</button></form>"#,
            escape(&user)
        ),
    ))
}

async fn sign_in(session: Session, Form(form): Form<SignIn>) -> Result<Response, SessionError> {
    let name = form.name.trim();
    if name.is_empty() || name.chars().count() > 40 {
        return Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            page(
                "Sign in",
                "<p>A name of 1 to 40 characters, please. <a href=\"/\">Back</a></p>",
            ),
        )
            .into_response());
    }
    // A new id on every sign-in, also a repeated one: no session fixation.
    session.cycle_id();
    session.insert("user", name)?;
    session.insert("visits", 0)?;
    session.set_expiry(
        form.remember
            .is_some()
            .then_some(Expiry::idle(REMEMBER_FOR)),
    );
    Ok(Redirect::to("/").into_response())
}

async fn sign_out(session: Session) -> Redirect {
    session.destroy();
    Redirect::to("/")
}

async fn show_session(session: Session) -> Html<String> {
    let mut rows = String::new();
    let id = session
        .id()
        .map_or("(none: nothing stored yet)".to_owned(), |h| h.to_hex());
    let expiry = session.expiry();
    let expires = session.expires_at().map_or("(no session)".to_owned(), |t| {
        format!(
            "{} {:02}:{:02}:{:02} UTC",
            t.date(),
            t.hour(),
            t.minute(),
            t.second()
        )
    });
    let cookie = if expiry.is_persistent() {
        "persistent (Max-Age)"
    } else {
        "browser session"
    };
    for (name, value) in [
        ("id hash (SHA-256 of the id)", id),
        ("expires at", expires),
        ("cookie", cookie.to_owned()),
    ] {
        let _ = write!(
            rows,
            "<tr><th>{name}</th><td><code>{}</code></td></tr>",
            escape(&value)
        );
    }
    for key in session.keys() {
        let value = session
            .get_value(&key)
            .map(|v| v.to_string())
            .unwrap_or_default();
        let _ = write!(
            rows,
            "<tr><th>data: {}</th><td><code>{}</code></td></tr>",
            escape(&key),
            escape(&value)
        );
    }
    page(
        "Your session",
        &format!("<table>{rows}</table><p><a href=\"/\">Home</a></p>"),
    )
}

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} · session-layer demo</title>
<style>body{{font:16px system-ui,sans-serif;max-width:40em;margin:2em auto;padding:0 1em}}
label{{display:block;margin:.5em 0}}th{{text-align:left;padding-right:1em}}code{{word-break:break-all}}</style>
</head><body><h1>{title}</h1>
{body}
</body></html>"#
    ))
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
