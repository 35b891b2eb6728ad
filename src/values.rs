//! [`Values`]: a request's session data, as loaded plus the request's changes.
//!
//! The memory store keeps each session's data as one JSON object. Decoding
//! all of it into a map on every request (a node, a key string and a value
//! per member) cost more than everything else the layer does for a read, so
//! the loaded JSON is only indexed: the handler's `get` deserializes one
//! member from its text, and what the request sets or removes is kept apart
//! from it, which is exactly what `save` needs (S34).

use std::collections::BTreeSet;
use std::ops::Range;
use std::sync::Arc;

use std::borrow::Cow;

use serde::de::{Deserialize, DeserializeOwned, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;

use time::OffsetDateTime;

use crate::error::StoreError;
use crate::expiry::Expiry;
use crate::store::{Data, Record};

/// A record as the layer loaded it: [`Record`] with its data as [`Values`].
#[derive(Debug)]
pub(crate) struct LoadedRecord {
    pub(crate) values: Values,
    pub(crate) created_at: OffsetDateTime,
    pub(crate) last_active: OffsetDateTime,
    pub(crate) expires_at: OffsetDateTime,
    pub(crate) expiry: Option<Expiry>,
}

impl From<Record> for LoadedRecord {
    fn from(record: Record) -> Self {
        Self {
            values: Values::from_map(record.data),
            created_at: record.created_at,
            last_active: record.last_active,
            expires_at: record.expires_at,
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
    changes: Vec<(String, Option<Value>)>,
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
    /// A JSON object and where its members are (the memory store's entry).
    Json {
        text: Arc<str>,
        members: Vec<Member>,
    },
}

/// One member of a [`Base::Json`] object.
#[derive(Debug)]
struct Member {
    key: MemberKey,
    value: Range<usize>,
}

#[derive(Debug)]
enum MemberKey {
    /// The key as it is in the text (no escapes).
    At(Range<usize>),
    /// A key that had escapes, unescaped.
    Owned(Box<str>),
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

    /// Indexes a JSON object; an error (kind `Decode`) if it is not one, so
    /// a corrupt record is no session (S35).
    pub(crate) fn from_json(text: Arc<str>) -> Result<Self, StoreError> {
        let start = text.as_ptr() as usize;
        // Offsets into `text`, which the borrowed members point into.
        let at = |s: &str| {
            let from = s.as_ptr() as usize - start;
            from..from + s.len()
        };
        let mut members = Vec::new();
        for_each_member(&text, |key, value| {
            members.push(Member {
                key: match key {
                    Cow::Borrowed(key) => MemberKey::At(at(key)),
                    Cow::Owned(key) => MemberKey::Owned(key.into()),
                },
                value: at(value.get()),
            })
        })
        .map_err(StoreError::decode)?;
        Ok(Self {
            base: Base::Json { text, members },
            ..Self::default()
        })
    }

    fn find(&self, key: &str) -> Option<Found<'_>> {
        if let Some((_, change)) = self.changes.iter().find(|(k, _)| k == key) {
            return change.as_ref().map(Found::Value);
        }
        if self.cleared {
            return None;
        }
        match &self.base {
            Base::Empty => None,
            Base::Map(map) => map.get(key).map(Found::Value),
            Base::Json { text, members } => members
                .iter()
                .find(|m| member_key(text, &m.key) == key)
                .map(|m| Found::Json(&text[m.value.clone()])),
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
            // Indexed at load, so it parses.
            Found::Json(json) => serde_json::from_str(json).ok(),
        }
    }

    pub(crate) fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_some()
    }

    /// Records `key` as set to `value` (`None`: removed); returns what it
    /// replaced, as [`set`](Self::set) needs to undo it.
    fn change(&mut self, key: &str, value: Option<Value>) -> Option<Option<Value>> {
        match self.changes.iter_mut().find(|(k, _)| k == key) {
            Some((_, slot)) => Some(std::mem::replace(slot, value)),
            None => {
                self.changes.push((key.to_owned(), value));
                None
            }
        }
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
            None => self.changes.retain(|(k, _)| k != key),
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
                Base::Json { text, members } => {
                    keys.extend(members.iter().map(|m| member_key(text, &m.key)))
                }
            }
        }
        for (key, change) in &self.changes {
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
        let removed = |key: &str| self.changes.iter().any(|(k, _)| k == key);
        self.cleared
            || match &self.base {
                Base::Empty => true,
                Base::Map(map) => map.keys().all(|k| removed(k)),
                Base::Json { text, members } => {
                    members.iter().all(|m| removed(member_key(text, &m.key)))
                }
            }
    }

    /// Everything, decoded: for a new record, and for cookie sessions.
    pub(crate) fn to_data(&self) -> Data {
        let mut data = match (&self.base, self.cleared) {
            (Base::Map(map), false) => map.clone(),
            (Base::Json { text, .. }, false) => serde_json::from_str(text).unwrap_or_default(),
            _ => Data::new(),
        };
        for (key, change) in &self.changes {
            match change {
                Some(value) => data.insert(key.clone(), value.clone()),
                None => data.remove(key),
            };
        }
        data
    }

    /// Everything, decoded, consuming the values.
    pub(crate) fn into_data(self) -> Data {
        let mut data = match (self.base, self.cleared) {
            (Base::Map(map), false) => map,
            (Base::Json { text, .. }, false) => serde_json::from_str(&text).unwrap_or_default(),
            _ => Data::new(),
        };
        for (key, change) in self.changes {
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
        for (key, change) in self.changes {
            match change {
                Some(value) => set.push((key, value)),
                None if !self.cleared => removed.push(key),
                None => {}
            }
        }
        (set, removed)
    }
}

/// Calls `each` with every member of the JSON object `text`, its value
/// left as JSON text (checked, not decoded); an error if `text` is not one
/// JSON object.
pub(crate) fn for_each_member<'a>(
    text: &'a str,
    each: impl FnMut(Cow<'a, str>, &'a RawValue),
) -> serde_json::Result<()> {
    struct Members<F>(F);
    impl<'de, F: FnMut(Cow<'de, str>, &'de RawValue)> Visitor<'de> for Members<F> {
        type Value = ();

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON object")
        }

        fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
            while let Some((key, value)) = map.next_entry::<CowStr<'de>, &'de RawValue>()? {
                (self.0)(key.0, value);
            }
            Ok(())
        }
    }
    let mut deserializer = serde_json::Deserializer::from_str(text);
    deserializer.deserialize_map(Members(each))?;
    deserializer.end()
}

/// A key, borrowed from the input unless it has escapes.
struct CowStr<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for CowStr<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Key;
        impl<'de> Visitor<'de> for Key {
            type Value = CowStr<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Borrowed(v)))
            }

            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(Key)
    }
}

fn member_key<'a>(text: &'a str, key: &'a MemberKey) -> &'a str {
    match key {
        MemberKey::At(range) => &text[range.clone()],
        MemberKey::Owned(key) => key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn both(json: Value) -> [Values; 2] {
        let Value::Object(map) = json else { panic!() };
        [
            Values::from_map(map.clone()),
            Values::from_json(serde_json::to_string(&map).unwrap().into()).unwrap(),
        ]
    }

    #[test]
    fn json_and_map_bases_read_alike() {
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
    fn s35_text_that_is_not_a_json_object_is_refused() {
        for bad in ["{\"unterminated", "[1]", "", "{\"a\":1}x", "{\"a\":}"] {
            assert!(Values::from_json(bad.into()).is_err(), "{bad}");
        }
    }
}
