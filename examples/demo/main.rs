//! The demo app: sign in with a name, count visits, "remember me", sign out,
//! and a page that shows what the session holds.
//!
//! ```text
//! cargo run --example demo                 # http://127.0.0.1:3000
//! cargo run --example demo -- --port 8080  # or PORT=8080
//! ```
//!
//! Try it with a browser, or with curl's cookie jar:
//!
//! ```text
//! curl -c jar -b jar -d name=ada -d remember=on http://127.0.0.1:3000/sign-in
//! curl -c jar -b jar http://127.0.0.1:3000/
//! curl -c jar -b jar -X POST http://127.0.0.1:3000/sign-out
//! ```

mod app;

use std::net::SocketAddr;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,session_layer=debug".into()),
        )
        .init();
    let options =
        match app::Options::from_args(std::env::args().skip(1), |name| std::env::var(name).ok()) {
            Ok(Some(options)) => options,
            Ok(None) => {
                println!("{}", app::Options::USAGE);
                return Ok(());
            }
            Err(message) => {
                eprintln!("{message}");
                std::process::exit(2);
            }
        };
    let router = app::router(&options).await?;

    let address = SocketAddr::from(([127, 0, 0, 1], options.port));
    let listener = match tokio::net::TcpListener::bind(address).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("cannot listen on {address}: {error} (try --port N)");
            std::process::exit(1);
        }
    };
    // Tests and scripts read this line to learn the port (also for --port 0).
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
