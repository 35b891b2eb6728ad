//! The parts of a request one at a time: id generation and hashing, signing
//! and verifying an id, finding our cookie among 20 others, and the
//! `MemoryStore` with 1 000 000 sessions in it.
//!
//! `cargo bench --bench micro`; see BENCHMARKS.md.

use std::hint::black_box;
use std::time::Duration;

use axum::http::{header::COOKIE, HeaderMap, HeaderValue};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use serde_json::Value;
use session_layer::store::{Changes, Data, Record};
use session_layer::{IdHash, Key, MemoryStore, SessionId, SessionStore};
use time::OffsetDateTime;

const SESSIONS: usize = 1_000_000;

fn ids(c: &mut Criterion) {
    let mut group = c.benchmark_group("id");
    group.bench_function("generate", |b| b.iter(|| black_box(SessionId::generate())));
    let id = SessionId::generate();
    group.bench_function("hash", |b| b.iter(|| black_box(black_box(&id).hash())));
    group.finish();
}

fn codec(c: &mut Criterion) {
    let key = Key::try_from(&[7u8; 32][..]).unwrap();
    let (sign, verify, find) = key.__bench_codec("id");
    let id = SessionId::generate();
    let value = sign(&id);
    let mut forged = value.clone().into_bytes();
    // Another valid base64url character: the MAC is wrong, the encoding is
    // not (a flipped bit could make it an invalid character, rejected early).
    forged[60] = if forged[60] == b'A' { b'B' } else { b'A' };

    let mut group = c.benchmark_group("codec");
    group.bench_function("sign", |b| b.iter(|| black_box(sign(black_box(&id)))));
    group.bench_function("verify", |b| {
        b.iter(|| black_box(verify(black_box(value.as_bytes()))))
    });
    group.bench_function("verify_forged", |b| {
        b.iter(|| black_box(verify(black_box(&forged))))
    });

    let others: Vec<String> = (0..20)
        .map(|i| format!("_pref{i}=a{i}b{i}c{i}d{i}e{i}f{i}g{i}h{i}"))
        .collect();
    let mut headers = HeaderMap::new();
    let mut one = others[..10].to_vec();
    one.push(format!("id={value}"));
    one.extend_from_slice(&others[10..]);
    headers.insert(COOKIE, HeaderValue::from_str(&one.join("; ")).unwrap());
    assert_eq!(find(&headers), value.len());
    group.bench_function("find_among_20_cookies", |b| {
        b.iter(|| black_box(find(black_box(&headers))))
    });
    group.finish();
}

fn record(now: OffsetDateTime) -> Record {
    Record {
        data: Data::from_iter([
            ("user".to_owned(), Value::from("alice")),
            ("n".to_owned(), Value::from(0)),
        ]),
        created_at: now,
        last_active: now,
        expires_at: now + time::Duration::days(1),
        expiry: None,
    }
}

fn memory_store(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let store = MemoryStore::new();
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let rec = record(now);
    let ids: Vec<IdHash> = (0..SESSIONS)
        .map(|_| SessionId::generate().hash())
        .collect();
    rt.block_on(async {
        for id in &ids {
            assert!(store.create(id, &rec).await.unwrap());
        }
    });
    assert_eq!(store.len(), SESSIONS);

    let store = &store;
    let mut group = c.benchmark_group("memory_store_1M");
    group.measurement_time(Duration::from_secs(3));
    let mut next = 0usize;
    let mut pick = move || {
        // A stride through the table: every call lands somewhere else.
        next = (next + 7919) % SESSIONS;
        next
    };
    group.bench_function("load", |b| {
        b.to_async(&rt).iter(|| store.load(black_box(&ids[pick()])))
    });
    let changes = Changes {
        cleared: false,
        set: vec![("n".to_owned(), Value::from(1))],
        removed: vec![],
        last_active: now,
        expires_at: now + time::Duration::days(1),
        expiry: None,
    };
    group.bench_function("save_one_key", |b| {
        b.to_async(&rt)
            .iter(|| store.save(black_box(&ids[pick()]), &changes))
    });
    group.bench_function("load_miss", |b| {
        b.to_async(&rt).iter_batched(
            || SessionId::generate().hash(),
            |id| async move { black_box(store.load(&id).await) },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("create", |b| {
        b.to_async(&rt).iter_batched(
            || SessionId::generate().hash(),
            |id| {
                let rec = &rec;
                async move { black_box(store.create(&id, rec).await) }
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, ids, codec, memory_store);
criterion_main!(benches);
