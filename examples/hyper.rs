//! The layer in a plain hyper + tower service, without axum.
//!
//! ```text
//! cargo run --example hyper            # http://127.0.0.1:3001
//! curl -c jar -b jar http://127.0.0.1:3001/   # count: 1, 2, 3, …
//! ```

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use session_layer::{Key, MemoryStore, Session, SessionLayer};
use tower::{service_fn, ServiceBuilder};

async fn count(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    // The layer put the session in the request's extensions.
    let session = req
        .extensions()
        .get::<Session>()
        .expect("SessionLayer is installed")
        .clone();
    // Outside axum's extractor the session is loaded here: one store call,
    // only on the routes that use it.
    if let Err(error) = session.load().await {
        let mut res = Response::new(Full::new(Bytes::from(format!(
            "the session store failed: {error}\n"
        ))));
        *res.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
        return Ok(res);
    }
    let body = match session.get::<u64>("count") {
        Ok(count) => {
            let count = count.unwrap_or(0) + 1;
            match session.insert("count", count) {
                Ok(()) => format!("count: {count}\n"),
                Err(error) => format!("could not store the count: {error}\n"),
            }
        }
        Err(error) => format!("could not read the count: {error}\n"),
    };
    Ok(Response::new(Full::new(Bytes::from(body))))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3001);
    let layer = SessionLayer::builder(MemoryStore::new(), Key::generate())
        // Plain HTTP on loopback: clients withhold `Secure` cookies there.
        .secure(false)
        .build()?;
    let service = ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(count));

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on http://{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let service = TowerToHyperService::new(service.clone());
        tokio::spawn(async move {
            if let Err(error) = Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                eprintln!("connection error: {error}");
            }
        });
    }
}
