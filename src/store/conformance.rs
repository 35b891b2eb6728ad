//! The store conformance suite (feature `testing`): one set of checks that
//! every [`SessionStore`] must pass, ours and yours.
//!
//! [`run`] runs every check and panics with the name of the first rule that
//! fails; each check is also a function of its own. The checks need a
//! little more than the trait — a look at what the store holds, and a way
//! to damage a record — which a store gives through [`RawAccess`]. The
//! stores of this crate implement it when the feature is on.
//!
//! ```
//! # #[tokio::main] async fn main() {
//! use session_layer::store::conformance;
//! use session_layer::MemoryStore;
//!
//! // In your tests: `#[tokio::test(flavor = "multi_thread")]`.
//! conformance::run(MemoryStore::new()).await;
//! # }
//! ```
//!
//! Run it against a fresh namespace (table, key prefix) on the system
//! clock: some checks compare the whole namespace before and after. No
//! check sleeps; expiry is tested with records whose `expires_at` has
//! already passed.
//!
//! | check | rule |
//! |---|---|
//! | [`create_then_load`] | `load` returns what `create` stored, exactly; unknown ids load as `None` |
//! | [`create_never_overwrites`] | a second `create` of a live id is `Ok(false)` and changes nothing (S3) |
//! | [`create_replaces_expired`] | `create` may reuse the id of an expired record |
//! | [`expired_records_do_not_load`] | past or at `expires_at`, by create, touch or save, `load` is `None` (S8) |
//! | [`save_applies_changes`] | cleared, removed and set keys, odd key names, `null` values, new times and expiry |
//! | [`the_deepest_values_round_trip`] | values nested [`MAX_NESTING`](crate::MAX_NESTING) levels deep come back whole from `create` and from `save` |
//! | [`concurrent_saves_keep_every_key`] | 50 concurrent saves of 50 different keys: all 50 kept (S34) |
//! | [`save_and_touch_are_update_only`] | after delete or expiry, `save`/`touch` are `Ok(false)` and bring nothing back (S27) |
//! | [`touch_moves_expiry_only`] | `touch` moves `last_active`/`expires_at` and nothing else |
//! | [`delete_removes_one_record`] | `delete` removes that record only; unknown ids are fine |
//! | [`purge_removes_expired_only`] | `purge_expired` leaves live records; expired ones are gone afterwards (S33) |
//! | [`ids_are_hashed_at_rest`] | through a real layer: no form of the raw id or cookie anywhere in the store (S5) |
//! | [`corrupt_records_are_not_sessions`] | a damaged record loads as `None` or a `Decode` error, never a panic, and through a real layer gives an empty session (S35) |

use std::convert::Infallible;
use std::fmt::{Debug, Display};
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{Context, Poll};

use async_trait::async_trait;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use http::header::{COOKIE, SET_COOKIE};
use http::{Request, Response, StatusCode};
use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};
use tower_layer::Layer;
use tower_service::Service;

use super::{Changes, Data, Record, SessionStore};
use crate::error::{StoreError, StoreErrorKind};
use crate::expiry::Expiry;
use crate::id::{IdHash, SessionId};
use crate::{Key, Session, SessionLayer, SessionService};

/// What the suite needs from a store beyond [`SessionStore`]: its raw
/// contents, and a way to damage one record.
///
/// ```
/// use async_trait::async_trait;
/// use session_layer::store::conformance::RawAccess;
/// use session_layer::{IdHash, StoreError};
///
/// /// A store that keeps JSON blobs in a map, say.
/// #[derive(Debug)]
/// struct BlobStore(std::sync::Mutex<std::collections::HashMap<IdHash, String>>);
///
/// #[async_trait]
/// impl RawAccess for BlobStore {
///     async fn raw_dump(&self) -> Result<Vec<String>, StoreError> {
///         let map = self.0.lock().unwrap();
///         Ok(map.iter().map(|(id, blob)| format!("{id} {blob}")).collect())
///     }
///
///     async fn corrupt(&self, id: &IdHash) -> Result<(), StoreError> {
///         if let Some(blob) = self.0.lock().unwrap().get_mut(id) {
///             blob.truncate(blob.len() / 2); // a torn write
///         }
///         Ok(())
///     }
/// }
/// ```
#[async_trait]
pub trait RawAccess: Send + Sync {
    /// Everything the store holds in its namespace, as text: one string per
    /// record (or per key, field, row...), with every key and value in it;
    /// bytes as hex. Stored values must show as the JSON text they were
    /// given, so that the suite can find its markers.
    async fn raw_dump(&self) -> Result<Vec<String>, StoreError>;

    /// Damages the live record under `id` the way a torn write, a bad
    /// migration or a hand edit could: the record must still look live (not
    /// expired), but no longer decode.
    async fn corrupt(&self, id: &IdHash) -> Result<(), StoreError>;
}

/// Runs every check of the suite against `store`, in the order of the table
/// in the [module docs](self), and panics with the failing rule's name.
///
/// Needs a tokio runtime (`#[tokio::test]`; a multi-thread one makes the
/// concurrency check run in parallel).
pub async fn run<S>(store: S)
where
    S: SessionStore + RawAccess + Clone,
{
    create_then_load(&store).await;
    create_never_overwrites(&store).await;
    create_replaces_expired(&store).await;
    expired_records_do_not_load(&store).await;
    save_applies_changes(&store).await;
    the_deepest_values_round_trip(&store).await;
    concurrent_saves_keep_every_key(&store).await;
    save_and_touch_are_update_only(&store).await;
    touch_moves_expiry_only(&store).await;
    delete_removes_one_record(&store).await;
    purge_removes_expired_only(&store).await;
    ids_are_hashed_at_rest(&store).await;
    corrupt_records_are_not_sessions(&store).await;
}

/// Key names that need quoting or escaping in one engine or another: JSON
/// path syntax, quotes, escapes, case, non-ASCII, the empty string, and
/// the prefixes stores use for their own fields.
pub const ODD_KEYS: &[&str] = &[
    "",
    "a",
    "A",
    "a.b",
    "a[0]",
    "$",
    "$.a",
    "*",
    "**",
    "\"",
    "a\"b",
    "'",
    "a'b",
    "\\",
    "a\\\"b",
    "\\u0022",
    "sp ace",
    "tab\tnew\nline",
    "é",
    "日本語",
    "🦀",
    "d:",
    "v",
    "e",
    "data",
    "%s",
    "--",
    "-",
    "-1",
    "0",
    "[0]",
    ";",
];

/// Panics with the rule's name: the suite's one way to fail.
#[track_caller]
fn fail(rule: &str, detail: impl Display) -> ! {
    panic!("store conformance: `{rule}` failed: {detail}")
}

#[track_caller]
fn check(rule: &str, ok: bool, detail: impl FnOnce() -> String) {
    if !ok {
        fail(rule, detail())
    }
}

#[track_caller]
fn expect<T>(rule: &str, what: &str, result: Result<T, StoreError>) -> T {
    match result {
        Ok(value) => value,
        Err(error) => fail(
            rule,
            format!(
                "{what} returned an error: {error} ({:?})",
                std::error::Error::source(&error)
            ),
        ),
    }
}

#[track_caller]
fn check_eq<T: PartialEq + Debug>(rule: &str, what: &str, got: T, want: T) {
    check(rule, got == want, || {
        format!("{what}: got {got:?}, expected {want:?}")
    });
}

/// Now, in whole seconds, as records keep time.
fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap_or(now)
}

fn fresh_id() -> IdHash {
    SessionId::generate().hash()
}

/// A value that occurs nowhere else, to find a record in a dump.
fn marker() -> String {
    format!("marker-{}", &fresh_id().to_hex()[..24])
}

fn data(value: Value) -> Data {
    match value {
        Value::Object(map) => map,
        other => Data::from_iter([("value".to_owned(), other)]),
    }
}

/// A live record: created two minutes ago, active one minute ago, over in
/// an hour.
fn live(data: Data) -> Record {
    let now = now();
    Record {
        data,
        created_at: now - Duration::minutes(2),
        last_active: now - Duration::minutes(1),
        expires_at: now + Duration::hours(1),
        expiry: None,
    }
}

/// A record that expired a minute ago.
fn expired(data: Data) -> Record {
    let now = now();
    Record {
        data,
        created_at: now - Duration::hours(2),
        last_active: now - Duration::hours(1),
        expires_at: now - Duration::minutes(1),
        expiry: None,
    }
}

fn changes(set: Vec<(&str, Value)>, removed: &[&str]) -> Changes {
    let now = now();
    Changes {
        cleared: false,
        set: set.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        removed: removed.iter().map(|&k| k.to_owned()).collect(),
        last_active: now,
        expires_at: now + Duration::hours(2),
        expiry: None,
    }
}

async fn create_live<S: SessionStore>(rule: &str, store: &S, record: &Record) -> IdHash {
    let id = fresh_id();
    let created = expect(rule, "create", store.create(&id, record).await);
    check(rule, created, || {
        "create of a fresh id returned Ok(false)".into()
    });
    id
}

async fn dump<S: RawAccess>(rule: &str, store: &S) -> String {
    expect(rule, "raw_dump", store.raw_dump().await).join("\n")
}

/// `load` returns what `create` stored, field for field; an id never
/// created loads as `None`.
pub async fn create_then_load<S: SessionStore>(store: &S) {
    const RULE: &str = "create then load returns the record";
    let mut record = live(data(json!({
        "string": "text with \"quotes\" and \\ and ünïcödé",
        "int": -42,
        "big": u64::MAX,
        "float": 1.5,
        "bool": true,
        "null": null,
        "array": [1, "two", [3], {"four": 4}],
        "object": {"nested": {"deep": [true, false]}},
        "empty_object": {},
        "empty_array": [],
    })));
    for (n, key) in ODD_KEYS.iter().enumerate() {
        record.data.insert((*key).to_owned(), json!(n));
    }
    record.expiry = Some(Expiry::idle(Duration::minutes(30)).with_absolute(Duration::hours(12)));
    let id = create_live(RULE, store, &record).await;
    let loaded = expect(RULE, "load", store.load(&id).await);
    check_eq(RULE, "the loaded record", loaded, Some(record));

    let unknown = expect(RULE, "load of an unknown id", store.load(&fresh_id()).await);
    check_eq(RULE, "load of an unknown id", unknown, None);
}

/// A second `create` under a live id is `Ok(false)` and leaves the first
/// record, and every other, as it was (S3).
pub async fn create_never_overwrites<S: SessionStore>(store: &S) {
    const RULE: &str = "create never overwrites a live record";
    let first = live(data(json!({"who": "first"})));
    let id = create_live(RULE, store, &first).await;
    let other = live(data(json!({"who": "other"})));
    let other_id = create_live(RULE, store, &other).await;

    let second = live(data(json!({"who": "second"})));
    let created = expect(RULE, "second create", store.create(&id, &second).await);
    check(RULE, !created, || {
        "a create under a live id returned Ok(true)".into()
    });
    let loaded = expect(RULE, "load", store.load(&id).await);
    check_eq(
        RULE,
        "the first record after the collision",
        loaded,
        Some(first),
    );
    let loaded = expect(RULE, "load", store.load(&other_id).await);
    check_eq(
        RULE,
        "another record after the collision",
        loaded,
        Some(other),
    );
}

/// An expired record does not block its id: a `create` over it succeeds
/// and stores the new record.
pub async fn create_replaces_expired<S: SessionStore>(store: &S) {
    const RULE: &str = "create replaces an expired record";
    let id = fresh_id();
    expect(
        RULE,
        "create of an expired record",
        store
            .create(&id, &expired(data(json!({"old": true}))))
            .await,
    );
    let fresh = live(data(json!({"new": true})));
    let created = expect(
        RULE,
        "create over an expired record",
        store.create(&id, &fresh).await,
    );
    check(RULE, created, || {
        "create over an expired record returned Ok(false)".into()
    });
    let loaded = expect(RULE, "load", store.load(&id).await);
    check_eq(RULE, "the new record", loaded, Some(fresh));
}

/// No record loads at or past its `expires_at`, however it got there:
/// created so, touched so, or saved so (S8).
pub async fn expired_records_do_not_load<S: SessionStore>(store: &S) {
    const RULE: &str = "expired records do not load";
    let now = now();

    let past = fresh_id();
    expect(
        RULE,
        "create",
        store.create(&past, &expired(Data::new())).await,
    );
    let loaded = expect(RULE, "load", store.load(&past).await);
    check_eq(RULE, "load of a record created expired", loaded, None);

    let at_now = fresh_id();
    let record = Record {
        expires_at: now,
        ..live(data(json!({"n": 1})))
    };
    expect(RULE, "create", store.create(&at_now, &record).await);
    let loaded = expect(RULE, "load", store.load(&at_now).await);
    check_eq(RULE, "load of a record with expires_at = now", loaded, None);

    let touched = create_live(RULE, store, &live(data(json!({"n": 2})))).await;
    let ok = expect(
        RULE,
        "touch",
        store.touch(&touched, now, now - Duration::seconds(1)).await,
    );
    check(RULE, ok, || {
        "touch of a live record returned Ok(false)".into()
    });
    let loaded = expect(RULE, "load", store.load(&touched).await);
    check_eq(RULE, "load after a touch into the past", loaded, None);

    let saved = create_live(RULE, store, &live(data(json!({"n": 3})))).await;
    let mut past_changes = changes(vec![("n", json!(4))], &[]);
    past_changes.expires_at = now - Duration::seconds(1);
    expect(RULE, "save", store.save(&saved, &past_changes).await);
    let loaded = expect(RULE, "load", store.load(&saved).await);
    check_eq(RULE, "load after a save into the past", loaded, None);
}

/// `save` applies cleared, removed and set keys to the current record, in
/// that order, and the new times and expiry; `null` is a value, not a
/// removal; odd key names round-trip; `created_at` never changes.
pub async fn save_applies_changes<S: SessionStore>(store: &S) {
    const RULE: &str = "save applies the changes";
    // Values the edits must leave exactly as they were.
    let original = live(data(json!({
        "a": 1,
        "b": 2,
        "c": 3,
        "big": u64::MAX,
        "negative": i64::MIN,
        "pi": std::f64::consts::PI,
        "tiny": 1e-300,
        "text": "ünïcödé \"quoted\" \\ 🦀",
    })));
    let id = create_live(RULE, store, &original).await;
    let mut want = original.clone();

    let mut step = |changes: Changes| {
        changes.apply_to(&mut want);
        (changes, want.clone())
    };
    let mut first = changes(
        vec![
            ("b", json!(20)),
            ("d", json!({"x": [1]})),
            ("n", json!(null)),
        ],
        &["a"],
    );
    first.expiry = Some(Expiry::idle(Duration::hours(1)));
    let steps = [
        (
            "remove a, set b, d and n = null, set an expiry",
            step(first),
        ),
        (
            "odd key names",
            step(changes(
                ODD_KEYS
                    .iter()
                    .enumerate()
                    .map(|(n, k)| (*k, json!(format!("value {n}"))))
                    .collect(),
                &[],
            )),
        ),
        (
            "remove every other odd key, and a key that is not there",
            step(changes(
                vec![],
                &ODD_KEYS
                    .iter()
                    .step_by(2)
                    .copied()
                    .chain(["never-set"])
                    .collect::<Vec<_>>(),
            )),
        ),
        ("only new times", step(changes(vec![], &[]))),
        (
            "150 keys set at once",
            step(changes(
                (0..150).map(|n| (&*MANY[n], json!(n))).collect(),
                &[],
            )),
        ),
        (
            "130 keys removed and 20 set at once",
            step(changes(
                (130..150)
                    .map(|n| (&*MANY[n], json!(-(n as i64))))
                    .collect(),
                &MANY[..130].iter().map(|k| &**k).collect::<Vec<_>>(),
            )),
        ),
        (
            "clear, then set e",
            step(Changes {
                cleared: true,
                ..changes(vec![("e", json!(5))], &[])
            }),
        ),
        (
            "clear with nothing set",
            step(Changes {
                cleared: true,
                ..changes(vec![], &[])
            }),
        ),
    ];
    for (what, (changes, want)) in steps {
        let saved = expect(RULE, what, store.save(&id, &changes).await);
        check(RULE, saved, || {
            format!("{what}: save of a live record returned Ok(false)")
        });
        let loaded = expect(RULE, what, store.load(&id).await);
        check_eq(RULE, what, loaded, Some(want));
    }
}

/// More keys than one SQL function call takes, for stores that chunk.
static MANY: std::sync::LazyLock<Vec<String>> =
    std::sync::LazyLock::new(|| (0..150).map(|n| format!("many-{n}-é")).collect());

/// Fifty concurrent saves, each of its own key, on one session: every key
/// A value nested as deeply as [`Session::insert`](crate::Session::insert)
/// allows ([`MAX_NESTING`](crate::MAX_NESTING) arrays and objects) comes
/// back whole from `create` and from `save`: engines limit JSON depth (the
/// JSON functions of MariaDB 10.11 handle 32 levels, the record's own
/// object included), and a store that loses or nulls such a value loses
/// data the layer accepted.
pub async fn the_deepest_values_round_trip<S: SessionStore>(store: &S) {
    const RULE: &str = "the deepest values round-trip";
    let deepest = (0..crate::MAX_NESTING).fold(json!("bottom"), |inner, n| {
        if n % 2 == 0 {
            json!([inner])
        } else {
            json!({ "k": inner })
        }
    });
    let record = live(data(json!({ "created": deepest.clone() })));
    let id = create_live(RULE, store, &record).await;
    let loaded = expect(RULE, "load", store.load(&id).await);
    check_eq(
        RULE,
        "the record after create",
        loaded,
        Some(record.clone()),
    );
    let update = changes(vec![("saved", deepest)], &[]);
    let mut want = record;
    update.apply_to(&mut want);
    let saved = expect(RULE, "save", store.save(&id, &update).await);
    check(RULE, saved, || {
        "save of a live record returned Ok(false)".into()
    });
    let loaded = expect(RULE, "load", store.load(&id).await);
    check_eq(RULE, "the record after save", loaded, Some(want));
}

/// is there afterwards, and the keys that were there before too (S34).
pub async fn concurrent_saves_keep_every_key<S: SessionStore + Clone>(store: &S) {
    const RULE: &str = "concurrent saves of different keys all keep their change";
    const SAVES: usize = 50;
    let id = create_live(RULE, store, &live(data(json!({"before": true})))).await;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..SAVES {
        let store = store.clone();
        tasks.spawn(async move {
            let key = format!("key-{n}");
            store.save(&id, &changes(vec![(&key, json!(n))], &[])).await
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let saved = match joined {
            Ok(result) => expect(RULE, "save", result),
            Err(e) => fail(RULE, format!("a save panicked: {e}")),
        };
        check(RULE, saved, || {
            "a save of a live record returned Ok(false)".into()
        });
    }
    let Some(loaded) = expect(RULE, "load", store.load(&id).await) else {
        fail(RULE, "the session is gone after the saves")
    };
    let missing: Vec<String> = (0..SAVES)
        .map(|n| format!("key-{n}"))
        .filter(|k| loaded.data.get(k).is_none())
        .collect();
    check(RULE, missing.is_empty(), || {
        format!("{} of {SAVES} keys lost: {missing:?}", missing.len())
    });
    for n in 0..SAVES {
        check_eq(
            RULE,
            "a saved value",
            &loaded.data[&format!("key-{n}")],
            &json!(n),
        );
    }
    check_eq(
        RULE,
        "the key from before",
        loaded.data.get("before"),
        Some(&json!(true)),
    );
}

/// `save` and `touch` of a record that is gone — never created, deleted,
/// expired — return `Ok(false)`, and the record stays gone (S27).
pub async fn save_and_touch_are_update_only<S: SessionStore + RawAccess>(store: &S) {
    const RULE: &str = "save and touch are update-only";
    let now = now();
    let mark = marker();
    let write = changes(vec![("mark", json!(mark))], &[]);

    let never = fresh_id();
    let saved = expect(
        RULE,
        "save of an unknown id",
        store.save(&never, &write).await,
    );
    check(RULE, !saved, || {
        "save of an unknown id returned Ok(true)".into()
    });
    let touched = expect(
        RULE,
        "touch of an unknown id",
        store.touch(&never, now, now + Duration::hours(1)).await,
    );
    check(RULE, !touched, || {
        "touch of an unknown id returned Ok(true)".into()
    });
    check_eq(
        RULE,
        "load of an unknown id after save and touch",
        expect(RULE, "load", store.load(&never).await),
        None,
    );

    let deleted = create_live(RULE, store, &live(data(json!({"n": 1})))).await;
    expect(RULE, "delete", store.delete(&deleted).await);
    let saved = expect(
        RULE,
        "save after delete",
        store.save(&deleted, &write).await,
    );
    check(RULE, !saved, || {
        "save after delete returned Ok(true)".into()
    });
    let touched = expect(
        RULE,
        "touch after delete",
        store.touch(&deleted, now, now + Duration::hours(1)).await,
    );
    check(RULE, !touched, || {
        "touch after delete returned Ok(true)".into()
    });
    check_eq(
        RULE,
        "load after delete, save and touch",
        expect(RULE, "load", store.load(&deleted).await),
        None,
    );

    let over = fresh_id();
    expect(
        RULE,
        "create",
        store.create(&over, &expired(data(json!({"n": 2})))).await,
    );
    let saved = expect(
        RULE,
        "save of an expired record",
        store.save(&over, &write).await,
    );
    check(RULE, !saved, || {
        "save of an expired record returned Ok(true)".into()
    });
    let touched = expect(
        RULE,
        "touch of an expired record",
        store.touch(&over, now, now + Duration::hours(1)).await,
    );
    check(RULE, !touched, || {
        "touch of an expired record returned Ok(true)".into()
    });
    check_eq(
        RULE,
        "load of an expired record after save and touch",
        expect(RULE, "load", store.load(&over).await),
        None,
    );

    let dumped = dump(RULE, store).await;
    check(RULE, !dumped.contains(&mark), || {
        "a save that returned Ok(false) wrote its value into the store".into()
    });
}

/// `touch` sets `last_active` and `expires_at` and leaves data, creation
/// time and expiry alone.
pub async fn touch_moves_expiry_only<S: SessionStore>(store: &S) {
    const RULE: &str = "touch moves expiry and nothing else";
    let mut record = live(data(json!({"keep": ["me"]})));
    record.expiry = Some(Expiry::absolute(Duration::days(7)));
    let id = create_live(RULE, store, &record).await;
    let now = now();
    let touched = expect(
        RULE,
        "touch",
        store.touch(&id, now, now + Duration::hours(5)).await,
    );
    check(RULE, touched, || {
        "touch of a live record returned Ok(false)".into()
    });
    let want = Record {
        last_active: now,
        expires_at: now + Duration::hours(5),
        ..record
    };
    check_eq(
        RULE,
        "the touched record",
        expect(RULE, "load", store.load(&id).await),
        Some(want),
    );
}

/// `delete` removes its record and no other; deleting an unknown id, or
/// twice, is fine.
pub async fn delete_removes_one_record<S: SessionStore>(store: &S) {
    const RULE: &str = "delete removes one record";
    let gone = create_live(RULE, store, &live(data(json!({"n": 1})))).await;
    let kept = live(data(json!({"n": 2})));
    let kept_id = create_live(RULE, store, &kept).await;
    check_eq(
        RULE,
        "delete of a live record",
        expect(RULE, "delete", store.delete(&gone).await),
        true,
    );
    check_eq(
        RULE,
        "second delete",
        expect(RULE, "second delete", store.delete(&gone).await),
        false,
    );
    check_eq(
        RULE,
        "delete of an unknown id",
        expect(RULE, "delete", store.delete(&fresh_id()).await),
        false,
    );
    check_eq(
        RULE,
        "load after delete",
        expect(RULE, "load", store.load(&gone).await),
        None,
    );
    check_eq(
        RULE,
        "the other record",
        expect(RULE, "load", store.load(&kept_id).await),
        Some(kept),
    );
}

/// `purge_expired` removes expired records and keeps live ones; it counts
/// what it removed (stores with native expiry may have nothing left to
/// remove, and return 0) (S33).
pub async fn purge_removes_expired_only<S: SessionStore + RawAccess>(store: &S) {
    const RULE: &str = "purge removes expired records only";
    let (old_mark, live_mark) = (marker(), marker());
    let old = fresh_id();
    expect(
        RULE,
        "create",
        store
            .create(&old, &expired(data(json!({"mark": old_mark}))))
            .await,
    );
    let kept = live(data(json!({"mark": live_mark})));
    let kept_id = create_live(RULE, store, &kept).await;

    let held_expired = dump(RULE, store).await.contains(&old_mark);
    let purged = expect(RULE, "purge_expired", store.purge_expired().await);
    check(RULE, !held_expired || purged >= 1, || {
        format!("the store held an expired record, and purge_expired reported {purged} removed")
    });
    let after = dump(RULE, store).await;
    check(RULE, !after.contains(&old_mark), || {
        "an expired record is still in the store after purge_expired".into()
    });
    check(RULE, after.contains(&live_mark), || {
        "raw_dump does not show a live record's values (RawAccess must show stored values)".into()
    });
    check_eq(
        RULE,
        "a live record after purge",
        expect(RULE, "load", store.load(&kept_id).await),
        Some(kept),
    );
}

/// A session made through a real [`SessionLayer`]: no form of its raw id
/// (hex, base64, base64url) nor the cookie value is anywhere in the store;
/// its hash is what the store knows it by (S5).
pub async fn ids_are_hashed_at_rest<S: SessionStore + RawAccess + Clone>(store: &S) {
    const RULE: &str = "ids are hashed at rest";
    let mut app = App::new(store.clone());
    let mark = marker();
    let cookie = app.write(RULE, None, &mark).await;
    let id = cookie_id(RULE, &cookie);
    let Some(record) = expect(
        RULE,
        "load by the cookie's id hash",
        store.load(&id.hash()).await,
    ) else {
        fail(
            RULE,
            "the session the layer made does not load by the hash of the cookie's id",
        )
    };
    check_eq(
        RULE,
        "the session's value",
        record.data.get("mark"),
        Some(&json!(mark)),
    );

    let dumped = dump(RULE, store).await;
    check(RULE, dumped.contains(&mark), || {
        "raw_dump does not show the session's values (RawAccess must show stored values)".into()
    });
    let raw = id.expose_bytes();
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let lower = dumped.to_lowercase();
    check(RULE, !lower.contains(&hex), || {
        "the raw id, in hex, is in the store".into()
    });
    for (form, text) in [
        ("base64url", URL_SAFE_NO_PAD.encode(raw)),
        ("base64", STANDARD.encode(raw)),
        ("cookie value", cookie.clone()),
        // The cookie's first 21 characters encode id bytes only.
        ("cookie prefix", cookie.chars().take(21).collect()),
    ] {
        check(RULE, !dumped.contains(&text), || {
            format!("the raw id, as its {form}, is in the store")
        });
    }
}

/// A damaged record (see [`RawAccess::corrupt`]) loads as `Ok(None)` or a
/// [`StoreErrorKind::Decode`] error, never a panic nor another error; it
/// can be deleted; and through a real [`SessionLayer`], its cookie gives an
/// empty session (200) and a write makes a new session with a new id (S35).
pub async fn corrupt_records_are_not_sessions<S: SessionStore + RawAccess + Clone>(store: &S) {
    const RULE: &str = "corrupt records are not sessions";
    let id = create_live(RULE, store, &live(data(json!({"n": 1})))).await;
    expect(RULE, "corrupt", store.corrupt(&id).await);
    check_corrupt_load(RULE, store, &id).await;
    expect(RULE, "delete of a corrupt record", store.delete(&id).await);
    check_eq(
        RULE,
        "load after deleting a corrupt record",
        expect(RULE, "load", store.load(&id).await),
        None,
    );

    let mut app = App::new(store.clone());
    let mark = marker();
    let cookie = app.write(RULE, None, &mark).await;
    let id = cookie_id(RULE, &cookie).hash();
    expect(RULE, "corrupt", store.corrupt(&id).await);
    check_corrupt_load(RULE, store, &id).await;
    let res = app.send(Request::get("/read"), Some(&cookie)).await;
    check_eq(
        RULE,
        "status of a request with a corrupt session",
        res.status(),
        StatusCode::OK,
    );
    check_eq(
        RULE,
        "the session's value, read through the layer",
        res.body().as_str(),
        "none",
    );
    let fresh = app.write(RULE, Some(&cookie), "again").await;
    check(RULE, fresh != cookie, || {
        "a write on a corrupt session kept its id instead of making a new session".into()
    });
    let res = app.send(Request::get("/read"), Some(&fresh)).await;
    check_eq(
        RULE,
        "the new session's value",
        res.body().as_str(),
        "again",
    );
}

async fn check_corrupt_load<S: SessionStore + Clone>(rule: &str, store: &S, id: &IdHash) {
    let (store, id) = (store.clone(), *id);
    match tokio::spawn(async move { store.load(&id).await }).await {
        Err(e) => fail(rule, format!("load of a corrupt record panicked: {e}")),
        Ok(Ok(None)) => {}
        Ok(Ok(Some(record))) => fail(
            rule,
            format!("load of a corrupt record returned it: {record:?}"),
        ),
        Ok(Err(e)) => check(rule, e.kind() == StoreErrorKind::Decode, || {
            format!(
                "load of a corrupt record returned a {:?} error, not Decode: {e:?}",
                e.kind()
            )
        }),
    }
}

/// The raw id in a signed cookie value: `base64url(id || 32-byte MAC)`.
fn cookie_id(rule: &str, cookie: &str) -> SessionId {
    let bytes = URL_SAFE_NO_PAD
        .decode(cookie)
        .unwrap_or_else(|e| fail(rule, format!("the session cookie is not base64url: {e}")));
    bytes
        .len()
        .checked_sub(32)
        .and_then(|n| SessionId::from_bytes(&bytes[..n]))
        .unwrap_or_else(|| fail(rule, "the session cookie does not hold an id and a MAC"))
}

/// A real [`SessionLayer`] on the store, around a handler that writes the
/// `x-mark` header's value into the session (`/write`) or reads it back.
struct App {
    service: SessionService<Handler>,
}

const COOKIE_NAME: &str = "id";

impl App {
    fn new<S: SessionStore>(store: S) -> Self {
        let layer = SessionLayer::builder(store, Key::generate())
            .cookie_name(COOKIE_NAME)
            .build()
            .unwrap_or_else(|e| fail("building a layer on the store", e));
        Self {
            service: layer.layer(Handler),
        }
    }

    async fn send(
        &mut self,
        req: http::request::Builder,
        cookie: Option<&str>,
    ) -> Response<String> {
        let req = match cookie {
            Some(value) => req.header(COOKIE, format!("{COOKIE_NAME}={value}")),
            None => req,
        };
        let req = req
            .body(())
            .unwrap_or_else(|e| fail("building a request", e));
        let Ok(()) = poll_fn(|cx| self.service.poll_ready(cx)).await;
        let Ok(res) = self.service.call(req).await;
        res
    }

    /// Writes `mark` through the layer and returns the session cookie's
    /// value.
    async fn write(&mut self, rule: &str, cookie: Option<&str>, mark: &str) -> String {
        let res = self
            .send(Request::get("/write").header("x-mark", mark), cookie)
            .await;
        check_eq(
            rule,
            "status of a session write through the layer",
            res.status(),
            StatusCode::OK,
        );
        let prefix = format!("{COOKIE_NAME}=");
        res.headers()
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| v.strip_prefix(&prefix))
            .map(|v| v.split(';').next().unwrap_or_default().to_owned())
            .unwrap_or_else(|| {
                fail(
                    rule,
                    "a session write through the layer set no session cookie",
                )
            })
    }
}

#[derive(Debug, Clone)]
struct Handler;

impl Service<Request<()>> for Handler {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<String>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<()>) -> Self::Future {
        Box::pin(async move {
            let Some(session) = req.extensions().get::<Session>() else {
                return Ok(Response::new("no session layer".into()));
            };
            // As a handler outside axum does: load, then use.
            if let Err(e) = session.load().await {
                let mut res = Response::new(e.to_string());
                *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                return Ok(res);
            }
            let body = if req.uri().path() == "/write" {
                let mark = req
                    .headers()
                    .get("x-mark")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                match session.insert("mark", mark) {
                    Ok(()) => "written".to_owned(),
                    Err(e) => e.to_string(),
                }
            } else {
                match session.get::<String>("mark") {
                    Ok(mark) => mark.unwrap_or_else(|| "none".into()),
                    Err(e) => e.to_string(),
                }
            };
            Ok(Response::new(body))
        })
    }
}

#[cfg(all(test, feature = "memory-store"))]
mod tests {
    use super::*;
    use crate::MemoryStore;

    #[tokio::test(flavor = "multi_thread")]
    async fn memory_store_conforms() {
        run(MemoryStore::new()).await;
    }

    /// A store that breaks one rule at a time, to show the suite notices.
    #[derive(Debug, Clone)]
    struct Broken {
        inner: MemoryStore,
        flaw: Flaw,
    }

    #[derive(Debug, Clone, Copy)]
    enum Flaw {
        Overwrites,
        LoadsUnknown,
        SaveRecreates,
        SaveReplacesData,
        PurgeDoesNothing,
        DecodeAsBackend,
    }

    #[async_trait]
    impl SessionStore for Broken {
        async fn create(&self, id: &IdHash, record: &Record) -> Result<bool, StoreError> {
            if let Flaw::Overwrites = self.flaw {
                self.inner.delete(id).await?;
            }
            self.inner.create(id, record).await
        }
        async fn load(&self, id: &IdHash) -> Result<Option<Record>, StoreError> {
            match self.flaw {
                Flaw::LoadsUnknown => Ok(Some(
                    self.inner
                        .load(id)
                        .await?
                        .unwrap_or_else(|| live(Data::new())),
                )),
                Flaw::DecodeAsBackend => self.inner.load(id).await.map_err(|e| match e.kind() {
                    StoreErrorKind::Decode => StoreError::backend("bad row"),
                    _ => e,
                }),
                _ => self.inner.load(id).await,
            }
        }
        async fn save(&self, id: &IdHash, changes: &Changes) -> Result<bool, StoreError> {
            match self.flaw {
                Flaw::SaveRecreates if self.inner.load(id).await?.is_none() => {
                    let mut record = live(Data::new());
                    changes.apply_to(&mut record);
                    self.inner.create(id, &record).await
                }
                Flaw::SaveReplacesData => {
                    let Some(mut record) = self.inner.load(id).await? else {
                        return Ok(false);
                    };
                    record.data.clear();
                    changes.apply_to(&mut record);
                    self.inner.delete(id).await?;
                    self.inner.create(id, &record).await
                }
                _ => self.inner.save(id, changes).await,
            }
        }
        async fn delete(&self, id: &IdHash) -> Result<bool, StoreError> {
            self.inner.delete(id).await
        }
        async fn touch(
            &self,
            id: &IdHash,
            last_active: OffsetDateTime,
            expires_at: OffsetDateTime,
        ) -> Result<bool, StoreError> {
            self.inner.touch(id, last_active, expires_at).await
        }
        async fn purge_expired(&self) -> Result<u64, StoreError> {
            match self.flaw {
                Flaw::PurgeDoesNothing => Ok(0),
                _ => self.inner.purge_expired().await,
            }
        }
    }

    #[async_trait]
    impl RawAccess for Broken {
        async fn raw_dump(&self) -> Result<Vec<String>, StoreError> {
            self.inner.raw_dump().await
        }
        async fn corrupt(&self, id: &IdHash) -> Result<(), StoreError> {
            self.inner.corrupt(id).await
        }
    }

    async fn failure(store: Broken) -> String {
        let joined = tokio::spawn(run(store)).await;
        let panic = joined
            .expect_err("the suite passed a broken store")
            .into_panic();
        panic.downcast_ref::<String>().cloned().unwrap_or_default()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_suite_names_the_rule_a_store_breaks() {
        let cases = [
            (Flaw::Overwrites, "create never overwrites"),
            (Flaw::LoadsUnknown, "create then load"),
            (Flaw::SaveRecreates, "save and touch are update-only"),
            (Flaw::SaveReplacesData, "save applies the changes"),
            (Flaw::PurgeDoesNothing, "purge removes expired records only"),
            (Flaw::DecodeAsBackend, "corrupt records are not sessions"),
        ];
        for (flaw, rule) in cases {
            let message = failure(Broken {
                inner: MemoryStore::new(),
                flaw,
            })
            .await;
            assert!(message.contains(rule), "{flaw:?}: {message}");
        }
    }
}
