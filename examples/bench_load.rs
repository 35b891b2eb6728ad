//! A bounded load generator for `benches/http.sh`: keeps C connections to
//! 127.0.0.1 busy until N requests are done (or a time limit passes), and
//! prints the latency of every block of B requests: what wrk's single
//! summary hides, such as a stall while a store's table grows.
//!
//! ```text
//! cargo run --release --example bench_load -- --port 3100 --path /create \
//!     --requests 1000000 --connections 32 --block 10000 --max-seconds 300
//! ```
//!
//! Prints one line per block (`block`, requests so far, p50/p99/max in
//! µs), then a `summary` line: the worst block p99, the overall max, and how
//! many requests took longer than 5 ms.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;

struct Args {
    port: u16,
    path: String,
    requests: u64,
    connections: usize,
    block: usize,
    max_seconds: u64,
    cookie: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        port: 3100,
        path: "/create".into(),
        requests: 1_000_000,
        connections: 32,
        block: 10_000,
        max_seconds: 300,
        cookie: None,
    };
    let mut it = std::env::args().skip(1);
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        let bad = || -> ! { panic!("bad value {v:?} for {k}") };
        match k.as_str() {
            "--port" => a.port = v.parse().unwrap_or_else(|_| bad()),
            "--path" => a.path = v.clone(),
            "--requests" => a.requests = v.parse().unwrap_or_else(|_| bad()),
            "--connections" => a.connections = v.parse().unwrap_or_else(|_| bad()),
            "--block" => a.block = v.parse().unwrap_or_else(|_| bad()),
            "--max-seconds" => a.max_seconds = v.parse().unwrap_or_else(|_| bad()),
            "--cookie" => a.cookie = Some(v.clone()),
            _ => panic!("unknown argument {k}"),
        }
    }
    // Bounded whatever is asked: at most 10 M requests, 30 min, 256 connections.
    a.requests = a.requests.clamp(1, 10_000_000);
    a.max_seconds = a.max_seconds.clamp(1, 1800);
    a.connections = a.connections.clamp(1, 256);
    a.block = a.block.max(100);
    a
}

/// Latencies of the current block, and the totals.
struct Stats {
    block: Vec<u32>,
    block_size: usize,
    done: u64,
    worst_p99: u32,
    max: u32,
    over_5ms: u64,
    errors: u64,
    start: Instant,
}

impl Stats {
    fn record(&mut self, micros: u32) {
        self.block.push(micros);
        self.done += 1;
        self.max = self.max.max(micros);
        self.over_5ms += u64::from(micros > 5_000);
        if self.block.len() == self.block_size {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.block.is_empty() {
            return;
        }
        self.block.sort_unstable();
        let q = |p: f64| self.block[((self.block.len() - 1) as f64 * p) as usize];
        let (p50, p99, max) = (q(0.50), q(0.99), *self.block.last().unwrap());
        self.worst_p99 = self.worst_p99.max(p99);
        println!(
            "block requests={} t={:.1}s p50_us={p50} p99_us={p99} max_us={max}",
            self.done,
            self.start.elapsed().as_secs_f64()
        );
        self.block.clear();
    }
}

async fn connection(a: Rc<Args>, stats: Rc<RefCell<Stats>>, deadline: Instant) {
    let addr = SocketAddr::from(([127, 0, 0, 1], a.port));
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).ok();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::task::spawn_local(conn);
    loop {
        {
            let s = stats.borrow();
            if s.done + s.errors >= a.requests || Instant::now() >= deadline {
                return;
            }
        }
        let mut req = Request::get(a.path.as_str()).header("host", "127.0.0.1");
        if let Some(cookie) = &a.cookie {
            req = req.header("cookie", cookie);
        }
        let req = req.body(Empty::<Bytes>::new()).unwrap();
        let started = Instant::now();
        let ok = match sender.send_request(req).await {
            Ok(res) => {
                let ok = res.status().is_success();
                ok && res.into_body().collect().await.is_ok()
            }
            Err(_) => false,
        };
        let micros = started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
        let mut s = stats.borrow_mut();
        if ok {
            s.record(micros);
        } else {
            s.errors += 1;
            if s.errors > 1000 {
                return;
            }
        }
    }
}

fn main() {
    let a = Rc::new(args());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    let start = Instant::now();
    let stats = Rc::new(RefCell::new(Stats {
        block: Vec::with_capacity(a.block),
        block_size: a.block,
        done: 0,
        worst_p99: 0,
        max: 0,
        over_5ms: 0,
        errors: 0,
        start,
    }));
    let deadline = start + Duration::from_secs(a.max_seconds);
    local.block_on(&rt, async {
        let tasks: Vec<_> = (0..a.connections)
            .map(|_| tokio::task::spawn_local(connection(a.clone(), stats.clone(), deadline)))
            .collect();
        for t in tasks {
            t.await.expect("connection task");
        }
    });
    let mut s = stats.borrow_mut();
    s.flush();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "summary requests={} errors={} seconds={secs:.1} req_per_s={:.0} worst_block_p99_us={} max_us={} over_5ms={}",
        s.done,
        s.errors,
        s.done as f64 / secs,
        s.worst_p99,
        s.max,
        s.over_5ms
    );
}
