//! A real server on 127.0.0.1 (port 0) and real HTTP clients: reqwest with
//! a cookie jar, and hand-written HTTP/1.1 on a TCP socket for what a
//! client library would not send (S19). Every wait is bounded, and every
//! test shuts its server down.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

struct Server {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(app: Router) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        Self { addr, stop, task }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn shut_down(self) {
        let _ = self.stop.send(());
        timeout(WAIT, self.task)
            .await
            .expect("the server did not shut down")
            .unwrap()
            .unwrap();
    }
}

/// Our Set-Cookie in a reqwest response, if any.
fn session_set_cookie(res: &reqwest::Response) -> Option<cookie::Cookie<'static>> {
    let ours: Vec<_> = res
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .map(|v| cookie::Cookie::parse(v.to_str().unwrap().to_owned()).unwrap())
        .filter(|c| c.name() == NAME)
        .collect();
    assert!(ours.len() <= 1, "{ours:?}");
    ours.into_iter().next()
}

async fn text(res: reqwest::Response) -> String {
    assert!(res.status().is_success(), "{}", res.status());
    timeout(WAIT, res.text()).await.unwrap().unwrap()
}

#[tokio::test]
async fn s24_s25_sign_in_count_cycle_sign_out_and_replay_over_real_http() {
    // reqwest's cookie jar, like a browser, withholds `Secure` cookies over
    // plain http, so this loopback-only test turns `Secure` off. The
    // library's default stays on (see layer.rs, s12).
    let h = Harness::with(|b| b.secure(false));
    let server = Server::start(h.app.clone()).await;
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .timeout(WAIT)
        .build()
        .unwrap();

    // Anonymous visits: the first creates the session, the second reuses it.
    let res = client.get(server.url("/count")).send().await.unwrap();
    let anonymous = session_set_cookie(&res).expect("a session cookie");
    assert_eq!(text(res).await, "1");
    let res = client.get(server.url("/count")).send().await.unwrap();
    assert!(session_set_cookie(&res).is_none());
    assert_eq!(text(res).await, "2");

    // Sign in: a new id, the data carried over.
    let res = client
        .post(server.url("/login/alice"))
        .send()
        .await
        .unwrap();
    let signed_in = session_set_cookie(&res).expect("a new cookie on sign-in (S24)");
    assert_ne!(signed_in.value(), anonymous.value());
    text(res).await;
    for n in 3..=5 {
        let res = client.get(server.url("/count")).send().await.unwrap();
        assert_eq!(text(res).await, n.to_string());
    }
    let res = client.get(server.url("/get/user")).send().await.unwrap();
    assert_eq!(text(res).await, "alice");

    // Sign out: the cookie is removed from the jar and the session is gone.
    let res = client.post(server.url("/logout")).send().await.unwrap();
    assert_eq!(session_set_cookie(&res).expect("a removal").value(), "");
    text(res).await;
    let res = client.get(server.url("/get/user")).send().await.unwrap();
    assert_eq!(text(res).await, "none");

    // Replay of the old cookies, sent by hand: nothing (S25, S24).
    let bare = reqwest::Client::builder().timeout(WAIT).build().unwrap();
    for old in [&signed_in, &anonymous] {
        let res = bare
            .get(server.url("/get/user"))
            .header(reqwest::header::COOKIE, format!("{NAME}={}", old.value()))
            .send()
            .await
            .unwrap();
        assert!(session_set_cookie(&res).is_none());
        assert_eq!(text(res).await, "none");
    }
    // ...while a fresh sign-in on the same server works.
    let res = bare.post(server.url("/login/bob")).send().await.unwrap();
    let bob = session_set_cookie(&res).unwrap();
    text(res).await;
    let res = bare
        .get(server.url("/get/user"))
        .header(reqwest::header::COOKIE, format!("{NAME}={}", bob.value()))
        .send()
        .await
        .unwrap();
    assert_eq!(text(res).await, "bob");

    drop((client, bare));
    server.shut_down().await;
}

/// Sends `head` (a full HTTP/1.1 request head) and returns the whole reply.
async fn raw_request(addr: SocketAddr, head: String) -> String {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).await.unwrap();
        String::from_utf8_lossy(&reply).into_owned()
    };
    timeout(WAIT, exchange).await.expect("no reply in time")
}

fn body_of(reply: &str) -> &str {
    reply
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default()
}

#[tokio::test]
async fn s19_several_cookie_header_fields_over_http_1_1() {
    let h = Harness::new();
    let pair = h.new_session().await;
    let server = Server::start(h.app.clone()).await;
    let unknown = unknown_but_signed(key(), NAME).await;

    for fields in [
        vec!["theme=dark".to_owned(), pair.clone()],
        vec![pair.clone(), "theme=dark".to_owned()],
        vec![
            "a=1; b=2".to_owned(),
            "c=%zz".to_owned(),
            format!("lang=en; {pair}"),
        ],
        // S20 on the wire: an unknown id in an earlier field does not win.
        vec![unknown.clone(), pair.clone()],
    ] {
        let mut head = "GET /get/user HTTP/1.1\r\nHost: 127.0.0.1\r\n".to_owned();
        for field in &fields {
            head.push_str(&format!("Cookie: {field}\r\n"));
        }
        head.push_str("Connection: close\r\n\r\n");
        let reply = raw_request(server.addr, head).await;
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        assert_eq!(body_of(&reply), "alice", "{fields:?}");
    }
    // And without our cookie in any field: no session.
    let head = "GET /get/user HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: a=1\r\nCookie: b=2\r\nConnection: close\r\n\r\n";
    let reply = raw_request(server.addr, head.to_owned()).await;
    assert_eq!(body_of(&reply), "none");

    server.shut_down().await;
}

#[tokio::test]
async fn s19_one_cookie_header_field_per_cookie_over_http_2() {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::{TokioExecutor, TokioIo};

    // A route that reports how many Cookie fields arrived, so the test
    // knows the fields really came separately.
    let routes = routes().route(
        "/fields",
        axum::routing::get(|headers: http::HeaderMap| async move {
            headers
                .get_all(http::header::COOKIE)
                .iter()
                .count()
                .to_string()
        }),
    );
    let h = Harness::with_routes(routes, |b| b);
    let pair = h.new_session().await;
    let app = h.app.clone();

    // One HTTP/2 connection (prior knowledge, no TLS) served by hyper.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let service = hyper_util::service::TowerToHyperService::new(app);
        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
            .http2_only()
            .serve_connection(TokioIo::new(stream), service)
            .await
            .unwrap();
    });

    let stream = timeout(WAIT, TcpStream::connect(addr))
        .await
        .unwrap()
        .unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    let client = tokio::spawn(connection);

    let unknown = unknown_but_signed(key(), NAME).await;
    for (uri, fields, want) in [
        ("/fields", vec!["theme=dark", "lang=en", pair.as_str()], "3"),
        (
            "/get/user",
            vec!["theme=dark", "lang=en", pair.as_str()],
            "alice",
        ),
        ("/get/user", vec![pair.as_str(), "theme=dark"], "alice"),
        ("/get/user", vec![unknown.as_str(), pair.as_str()], "alice"),
        ("/get/user", vec!["theme=dark", "lang=en"], "none"),
    ] {
        let mut req = http::Request::builder()
            .uri(format!("http://{addr}{uri}"))
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        for field in &fields {
            req.headers_mut()
                .append(http::header::COOKIE, field.parse().unwrap());
        }
        let res = timeout(WAIT, sender.send_request(req))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(res.version(), http::Version::HTTP_2);
        let body = timeout(WAIT, res.into_body().collect())
            .await
            .unwrap()
            .unwrap()
            .to_bytes();
        assert_eq!(body, want.as_bytes(), "{uri} {fields:?}");
    }

    // Closing the client side ends the connection, and so the server task.
    drop(sender);
    timeout(WAIT, client).await.unwrap().unwrap().unwrap();
    timeout(WAIT, server).await.unwrap().unwrap();
}
