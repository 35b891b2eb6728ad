//! [`Values`]: a request's session data, as loaded plus the request's changes.
//!
//! The memory store keeps each session's data packed (see `packed`).
//! Decoding all of it into a map on every request (a node, a key string and
//! a value per member) cost more than everything else the layer does for a
//! read, so the loaded text is kept as it is: the handler's `get` finds one
//! member and deserializes its value, and what the request sets or removes
//! is kept apart from it, which is exactly what `save` needs (S34).

use std::cell::OnceCell;
use std::collections::{BTreeSet, HashMap};
use std::ops::Range;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::StoreError;
use crate::expiry::{Expiry, Unix};
use crate::packed;
use crate::store::{Data, Record};

/// A record as the layer loaded it: [`Record`] with its data as [`Values`].
#[derive(Debug)]
pub(crate) struct LoadedRecord {
    pub(crate) values: Values,
    pub(crate) created_at: Unix,
    pub(crate) last_active: Unix,
    pub(crate) expires_at: Unix,
    pub(crate) expiry: Option<Expiry>,
}

impl From<Record> for LoadedRecord {
    fn from(record: Record) -> Self {
        Self {
            values: Values::from_map(record.data),
            created_at: record.created_at.unix_timestamp(),
            last_active: record.last_active.unix_timestamp(),
            expires_at: record.expires_at.unix_timestamp(),
            expiry: record.expiry,
        }
    }
}

/// A session's data during one request.
#[derive(Debug, Default)]
pub(crate) struct Values {
    base: Base,
    /// Keys this request set (`Some`) or removed (`None`), each once, in
    /// the order first touched.
    changes: Changed,
    /// `clear` was called: the base no longer counts.
    cleared: bool,
}

/// The data as loaded.
#[derive(Debug, Default)]
enum Base {
    #[default]
    Empty,
    /// Decoded by the store (every store but the memory store).
    Map(Data),
    /// Packed text, checked (the memory store's entry, shared with it).
    Packed(Arc<str>),
    /// The same for a large session, with an index of its members that
    /// the first lookup builds.
    Indexed {
        text: Arc<str>,
        index: OnceCell<HashMap<Box<str>, Range<usize>>>,
    },
}

/// From this size of packed text on, the first lookup indexes the members
/// ([`Base::Indexed`]):
/// a session of many keys read key by key would otherwise walk them once
/// per key. Smaller sessions are walked: a few prefixes cost less than
/// building a map.
const INDEX_FROM: usize = 1024;

/// A request's changes, in the order first touched; indexed by key once
/// there are many, so that a request writing thousands of keys is not
/// quadratic.
#[derive(Debug, Default)]
struct Changed {
    list: Vec<(String, Option<Value>)>,
    index: Option<Box<Positions>>,
}

/// Where each key is in [`Changed::list`].
#[derive(Debug, Default)]
struct Positions(HashMap<String, usize>);

/// From this many changes on, [`Changed`] keeps an index.
const INDEX_CHANGES_FROM: usize = 16;

impl Changed {
    fn position(&self, key: &str) -> Option<usize> {
        match &self.index {
            Some(index) => index.0.get(key).copied(),
            None => self.list.iter().position(|(k, _)| k == key),
        }
    }

    fn get(&self, key: &str) -> Option<&Option<Value>> {
        self.position(key).map(|n| &self.list[n].1)
    }

    /// Sets the change for `key`; the one it replaced, if any.
    fn put(&mut self, key: &str, value: Option<Value>) -> Option<Option<Value>> {
        if let Some(n) = self.position(key) {
            return Some(std::mem::replace(&mut self.list[n].1, value));
        }
        if self.list.len() + 1 >= INDEX_CHANGES_FROM {
            let list = &self.list;
            let index = self.index.get_or_insert_with(|| {
                let positions = list.iter().enumerate().map(|(n, (k, _))| (k.clone(), n));
                Box::new(Positions(positions.collect()))
            });
            index.0.insert(key.to_owned(), list.len());
        }
        self.list.push((key.to_owned(), value));
        None
    }

    /// Forgets the change for `key`.
    fn forget(&mut self, key: &str) {
        self.list.retain(|(k, _)| k != key);
        // Positions moved: rebuilt by the next `put` that needs them.
        self.index = None;
    }

    fn clear(&mut self) {
        self.list.clear();
        self.index = None;
    }

    fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    fn iter(&self) -> impl Iterator<Item = &(String, Option<Value>)> {
        self.list.iter()
    }
}

/// How to take back one [`Values::set`]: the change it replaced, if any.
#[derive(Debug)]
pub(crate) struct Undo(Option<Option<Value>>);

/// A member found: decoded already, or still JSON text.
enum Found<'a> {
    Value(&'a Value),
    Json(&'a str),
}

impl Values {
    pub(crate) fn from_map(data: Data) -> Self {
        Self {
            base: Base::Map(data),
            ..Self::default()
        }
    }

    /// Packed data; an error (kind `Decode`) if the text is not in that
    /// form, so a damaged record is no session (S35). The values are
    /// checked as JSON when a handler reads them.
    pub(crate) fn from_packed(text: Arc<str>) -> Result<Self, StoreError> {
        packed::check(&text).map_err(StoreError::decode)?;
        Ok(Self {
            base: if text.len() < INDEX_FROM {
                Base::Packed(text)
            } else {
                Base::Indexed {
                    text,
                    index: OnceCell::new(),
                }
            },
            ..Self::default()
        })
    }

    fn find(&self, key: &str) -> Option<Found<'_>> {
        if let Some(change) = self.changes.get(key) {
            return change.as_ref().map(Found::Value);
        }
        if self.cleared {
            return None;
        }
        match &self.base {
            Base::Empty => None,
            Base::Map(map) => map.get(key).map(Found::Value),
            Base::Packed(text) => packed::checked(text)
                .find(|m| m.key == key)
                .map(|m| Found::Json(m.value)),
            Base::Indexed { text, index } => {
                let index = index.get_or_init(|| {
                    let start = text.as_ptr() as usize;
                    let mut index = HashMap::new();
                    for member in packed::checked(text) {
                        let from = member.value.as_ptr() as usize - start;
                        // The first of a key counts, as in the walk.
                        index
                            .entry(member.key.into())
                            .or_insert(from..from + member.value.len());
                    }
                    index
                });
                index
                    .get(key)
                    .map(|range| Found::Json(&text[range.clone()]))
            }
        }
    }

    pub(crate) fn get<T: DeserializeOwned>(&self, key: &str) -> Option<serde_json::Result<T>> {
        Some(match self.find(key)? {
            Found::Value(value) => T::deserialize(value),
            Found::Json(json) => serde_json::from_str(json),
        })
    }

    pub(crate) fn get_value(&self, key: &str) -> Option<Value> {
        match self.find(key)? {
            Found::Value(value) => Some(value.clone()),
            // Written by serde_json, so it parses.
            Found::Json(json) => serde_json::from_str(json).ok(),
        }
    }

    pub(crate) fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_some()
    }

    /// Records `key` as set to `value` (`None`: removed); returns what it
    /// replaced, as [`set`](Self::set) needs to undo it.
    fn change(&mut self, key: &str, value: Option<Value>) -> Option<Option<Value>> {
        self.changes.put(key, value)
    }

    /// Sets `key`. `None` (and nothing changed) if it had that value;
    /// otherwise what [`unset`](Self::unset) needs to take it back.
    pub(crate) fn set(&mut self, key: &str, value: Value) -> Option<Undo> {
        if self.get_value(key).as_ref() == Some(&value) {
            return None;
        }
        Some(Undo(self.change(key, Some(value))))
    }

    /// Takes back a [`set`](Self::set) of `key`.
    pub(crate) fn unset(&mut self, key: &str, undo: Undo) {
        match undo.0 {
            Some(before) => {
                self.change(key, before);
            }
            None => self.changes.forget(key),
        }
    }

    pub(crate) fn remove(&mut self, key: &str) -> Option<Value> {
        let old = self.get_value(key)?;
        self.change(key, None);
        Some(old)
    }

    /// Forgets every value; the base no longer counts.
    pub(crate) fn clear(&mut self) {
        self.changes.clear();
        self.cleared = true;
    }

    /// Whether `clear` was called.
    pub(crate) fn cleared(&self) -> bool {
        self.cleared
    }

    /// Whether this request set or removed anything (or cleared).
    pub(crate) fn changed(&self) -> bool {
        self.cleared || !self.changes.is_empty()
    }

    /// The keys, sorted.
    pub(crate) fn keys(&self) -> Vec<String> {
        self.key_set().into_iter().map(str::to_owned).collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.key_set().len()
    }

    /// The keys that hold a value: the base's (unless cleared) with the
    /// request's changes applied; borrowed, so counting copies no key.
    fn key_set(&self) -> BTreeSet<&str> {
        let mut keys = BTreeSet::new();
        if !self.cleared {
            match &self.base {
                Base::Empty => {}
                Base::Map(map) => keys.extend(map.keys().map(String::as_str)),
                Base::Packed(text) | Base::Indexed { text, .. } => {
                    keys.extend(packed::checked(text).map(|m| m.key))
                }
            }
        }
        for (key, change) in self.changes.iter() {
            match change {
                Some(_) => keys.insert(key),
                None => keys.remove(key.as_str()),
            };
        }
        keys
    }

    pub(crate) fn is_empty(&self) -> bool {
        if self.changes.iter().any(|(_, change)| change.is_some()) {
            return false;
        }
        // Only removals are left: empty unless a loaded key survives them.
        let removed = |key: &str| self.changes.get(key).is_some();
        self.cleared
            || match &self.base {
                Base::Empty => true,
                Base::Map(map) => map.keys().all(|k| removed(k)),
                Base::Packed(text) | Base::Indexed { text, .. } => {
                    packed::checked(text).all(|m| removed(m.key))
                }
            }
    }

    /// Everything, decoded: for a new record, and for cookie sessions.
    pub(crate) fn to_data(&self) -> Data {
        let mut data = match (&self.base, self.cleared) {
            (Base::Map(map), false) => map.clone(),
            (Base::Packed(text) | Base::Indexed { text, .. }, false) => decode_each(text),
            _ => Data::new(),
        };
        for (key, change) in self.changes.iter() {
            match change {
                Some(value) => data.insert(key.clone(), value.clone()),
                None => data.remove(key),
            };
        }
        data
    }

    /// This request's changes over `base` instead of the data they were
    /// made on (a record as it is now, which other requests may have
    /// changed since this one loaded it).
    pub(crate) fn over(self, base: Values) -> Values {
        Values {
            base: base.base,
            ..self
        }
    }

    /// Everything, decoded, consuming the values.
    pub(crate) fn into_data(self) -> Data {
        let mut data = match (self.base, self.cleared) {
            (Base::Map(map), false) => map,
            (Base::Packed(text) | Base::Indexed { text, .. }, false) => decode_each(&text),
            _ => Data::new(),
        };
        for (key, change) in self.changes.list {
            match change {
                Some(value) => data.insert(key, value),
                None => data.remove(&key),
            };
        }
        data
    }

    /// The request's changes: keys set, keys removed. After `clear` the
    /// removed keys do not matter: every value left is in the first list.
    pub(crate) fn into_changes(self) -> (Vec<(String, Value)>, Vec<String>) {
        let (mut set, mut removed) = (Vec::new(), Vec::new());
        for (key, change) in self.changes.list {
            match change {
                Some(value) => set.push((key, value)),
                None if !self.cleared => removed.push(key),
                None => {}
            }
        }
        (set, removed)
    }
}

/// Every member of checked packed `text`, decoded one by one: a value that
/// does not parse (only a value stored before values were checked, see
/// [`MAX_NESTING`](crate::MAX_NESTING)) loses that key alone, with a
/// warning, not the whole session.
fn decode_each(text: &str) -> Data {
    let mut data = Data::new();
    for member in packed::checked(text) {
        match serde_json::from_str(member.value) {
            Ok(value) => {
                data.insert(member.key.to_owned(), value);
            }
            Err(error) => {
                tracing::warn!(key = member.key, %error, "session value does not parse; dropped");
            }
        }
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn both(json: Value) -> [Values; 2] {
        let Value::Object(map) = json else { panic!() };
        [
            Values::from_map(map.clone()),
            Values::from_packed(packed::encode(&map)).unwrap(),
        ]
    }

    #[test]
    fn packed_and_map_bases_read_alike() {
        for values in
            both(json!({"n": 1, "user": "al\"ice", "esc\"aped": [1, {"x": null}], "é": 2.5}))
        {
            assert_eq!(values.get::<u32>("n").unwrap().unwrap(), 1);
            assert_eq!(values.get::<String>("user").unwrap().unwrap(), "al\"ice");
            assert_eq!(values.get_value("esc\"aped"), Some(json!([1, {"x": null}])));
            assert_eq!(values.get::<f64>("é").unwrap().unwrap(), 2.5);
            assert!(values.get::<String>("n").unwrap().is_err());
            assert!(values.get::<u32>("missing").is_none());
            assert_eq!(values.keys(), ["esc\"aped", "n", "user", "é"]);
            assert_eq!(values.len(), 4);
            assert!(!values.changed());
        }
    }

    #[test]
    fn large_packed_sessions_are_indexed_and_read_alike() {
        let mut map = Data::new();
        for n in 0..300 {
            map.insert(format!("key:{n}"), json!({"n": n, "s": "é\"x"}));
        }
        let text = packed::encode(&map);
        assert!(text.len() >= INDEX_FROM, "the index is used");
        let [mut from_map, mut from_packed] = both(Value::Object(map.clone()));
        for values in [&mut from_map, &mut from_packed] {
            for (key, value) in &map {
                assert_eq!(values.get_value(key).as_ref(), Some(value), "{key}");
            }
            assert!(!values.contains_key("key:300"));
            assert!(values.set("key:7", json!(0)).is_some());
            assert_eq!(values.remove("key:8"), Some(map["key:8"].clone()));
            assert_eq!(values.get_value("key:7"), Some(json!(0)));
            assert!(!values.contains_key("key:8"));
            assert_eq!(values.len(), 299);
        }
        // Two members of one key (never written, but a walk reads the
        // first): the index reads the first too.
        let doubled: Arc<str> = "1:k1:11:k1:2".into();
        let long_tail = "x".repeat(INDEX_FROM);
        let doubled_long: Arc<str> =
            format!("{doubled}4:tail{}:\"{long_tail}\"", long_tail.len() + 2).into();
        for text in [doubled, doubled_long] {
            let values = Values::from_packed(text).unwrap();
            assert_eq!(values.get::<u32>("k").unwrap().unwrap(), 1);
        }
    }

    #[test]
    fn changes_are_kept_apart_from_the_base() {
        for mut values in both(json!({"a": 1, "b": 2})) {
            assert!(
                values.set("a", json!(1)).is_none(),
                "the same value is no change"
            );
            assert!(!values.changed());
            assert!(values.set("a", json!(10)).is_some());
            assert!(values.set("c", json!(3)).is_some());
            assert_eq!(values.remove("b"), Some(json!(2)));
            assert_eq!(values.remove("never"), None);
            assert_eq!(values.get_value("a"), Some(json!(10)));
            assert!(!values.contains_key("b"));
            assert_eq!(values.keys(), ["a", "c"]);
            assert_eq!(
                values.to_data(),
                json!({"a": 10, "c": 3}).as_object().unwrap().clone()
            );
            let (set, removed) = values.into_changes();
            assert_eq!(
                set,
                [("a".to_owned(), json!(10)), ("c".to_owned(), json!(3))]
            );
            assert_eq!(removed, ["b"]);
        }
    }

    #[test]
    fn clear_drops_the_base_and_keeps_later_sets() {
        for mut values in both(json!({"a": 1})) {
            values.set("x", json!(0));
            values.clear();
            assert!(values.is_empty() && values.changed() && values.cleared());
            values.set("b", json!(2));
            values.remove("b");
            values.set("c", json!(3));
            assert_eq!(values.keys(), ["c"]);
            let (set, removed) = values.into_changes();
            assert_eq!(set, [("c".to_owned(), json!(3))]);
            assert!(removed.is_empty());
        }
    }

    #[test]
    fn an_undone_set_leaves_no_change() {
        for mut values in both(json!({"a": 1})) {
            values.set("b", json!(2));
            let undo = values.set("b", json!(5)).unwrap();
            values.unset("b", undo);
            assert_eq!(values.get_value("b"), Some(json!(2)));
            values.remove("b");
            let undo = values.set("a", json!(5)).unwrap();
            values.unset("a", undo);
            let undo = values.set("new", json!(5)).unwrap();
            values.unset("new", undo);
            assert_eq!(values.get_value("a"), Some(json!(1)));
            assert!(!values.contains_key("new"));
            let (set, removed) = values.into_changes();
            assert!(set.is_empty(), "{set:?}");
            assert_eq!(removed, ["b"], "b was set and removed again: a removal");
        }
    }

    #[test]
    fn s35_text_that_is_not_packed_data_is_refused() {
        for bad in ["{\"unterminated", "[1]", "1:a1:1x", "1:a"] {
            let error = Values::from_packed(bad.into()).unwrap_err();
            assert_eq!(error.kind(), crate::StoreErrorKind::Decode, "{bad}");
        }
        assert!(Values::from_packed("".into()).unwrap().is_empty());
    }

    proptest::proptest! {
        /// Many changes in one request (past the point where they are
        /// indexed): every read, the key list and the changes handed to the
        /// store agree with a plain map, on both kinds of base.
        #[test]
        fn many_changes_agree_with_a_map(
            ops in proptest::collection::vec((0u8..5, 0usize..60, 0u32..4), 0..300),
            base_keys in 0usize..40,
        ) {
            let mut map = Data::new();
            for n in 0..base_keys {
                map.insert(format!("k{n}"), json!(n));
            }
            for mut values in both(Value::Object(map.clone())) {
                let mut model = map.clone();
                let mut cleared = false;
                for &(op, key, value) in &ops {
                    let key = format!("k{key}");
                    match op {
                        0 | 1 => {
                            let changed = values.set(&key, json!(value)).is_some();
                            proptest::prop_assert_eq!(changed, model.get(&key) != Some(&json!(value)));
                            model.insert(key.clone(), json!(value));
                        }
                        2 => {
                            proptest::prop_assert_eq!(values.remove(&key), model.remove(&key));
                        }
                        3 => {
                            // A set taken back, as an insert refused for size is.
                            if let Some(undo) = values.set(&key, json!("undone")) {
                                values.unset(&key, undo);
                            }
                        }
                        _ if value == 0 => {
                            values.clear();
                            model.clear();
                            cleared = true;
                        }
                        _ => {}
                    }
                    proptest::prop_assert_eq!(values.get_value(&key), model.get(&key).cloned());
                }
                proptest::prop_assert_eq!(values.keys(), model.keys().cloned().collect::<Vec<_>>());
                proptest::prop_assert_eq!(values.is_empty(), model.is_empty());
                proptest::prop_assert_eq!(values.cleared(), cleared);
                proptest::prop_assert_eq!(values.to_data(), model.clone());
                // The changes, applied to the base as the store does, give the model.
                let (set, removed) = values.into_changes();
                let mut applied = if cleared { Data::new() } else { map.clone() };
                for key in removed {
                    applied.remove(&key);
                }
                for (key, value) in set {
                    applied.insert(key, value);
                }
                proptest::prop_assert_eq!(applied, model);
            }
        }
    }
}
