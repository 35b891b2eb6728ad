//! The memory store's form of a session's data: its members one after the
//! other, each as `<key length>:<key><value length>:<value as JSON>`, the
//! lengths in decimal bytes. For `{"n": 1, "user": "alice"}`:
//! `1:n1:14:user7:"alice"`.
//!
//! A JSON object of the same data is about as long, but finding one member
//! in it means parsing everything before it, strings and escapes included;
//! here it is a few length prefixes (see BENCHMARKS.md, "compact records").
//! Keys are kept as they are, without escapes, and values stay JSON text
//! until a handler asks for one. All of it is ASCII digits, `:` and whole
//! UTF-8 strings, so the text is a `str` and every slice of a member is at
//! a character boundary.

use std::fmt::Write;
use std::sync::Arc;

use serde_json::Value;

use crate::store::Data;

/// Text that is not in this form: a damaged record (S35).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Malformed;

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("session data is not in the packed form")
    }
}

impl std::error::Error for Malformed {}

/// One member, borrowed from the packed text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Member<'a> {
    pub(crate) key: &'a str,
    /// The value, as JSON text.
    pub(crate) value: &'a str,
    /// The member as it is in the text, prefixes included.
    pub(crate) whole: &'a str,
}

/// The members of packed `text`, in order. After a [`Malformed`] item the
/// iterator ends.
pub(crate) fn members(text: &str) -> Members<'_> {
    Members { rest: text }
}

/// The members of `text` that [`check`] passed.
pub(crate) fn checked(text: &str) -> impl Iterator<Item = Member<'_>> {
    members(text).map_while(Result::ok)
}

/// Whether `text` is packed data (the values are not parsed as JSON).
pub(crate) fn check(text: &str) -> Result<(), Malformed> {
    let mut rest = Members { rest: text };
    while !rest.rest.is_empty() {
        rest.field()?;
        rest.field()?;
    }
    Ok(())
}

/// See [`members`].
#[derive(Debug, Clone)]
pub(crate) struct Members<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Members<'a> {
    type Item = Result<Member<'a>, Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let start = self.rest;
        let member = self.field().and_then(|key| Ok((key, self.field()?)));
        Some(match member {
            Ok((key, value)) => Ok(Member {
                key,
                value,
                whole: &start[..start.len() - self.rest.len()],
            }),
            Err(malformed) => {
                self.rest = "";
                Err(malformed)
            }
        })
    }
}

impl<'a> Members<'a> {
    /// One `<length>:<bytes>` field.
    fn field(&mut self) -> Result<&'a str, Malformed> {
        let (len, skip) = match self.rest.as_bytes() {
            // Most keys and small values: one digit.
            [digit @ b'0'..=b'9', b':', ..] => (usize::from(digit - b'0'), 2),
            bytes => long_prefix(bytes)?,
        };
        // Both checks the length and the character boundaries.
        let (field, rest) = self
            .rest
            .get(skip..)
            .and_then(|rest| rest.split_at_checked(len))
            .ok_or(Malformed)?;
        self.rest = rest;
        Ok(field)
    }
}

/// A `<length>:` prefix of any length: the length and the bytes it takes.
fn long_prefix(bytes: &[u8]) -> Result<(usize, usize), Malformed> {
    /// As many digits as any length in memory has.
    const MAX_DIGITS: usize = 19;
    let mut len = 0usize;
    let mut colon = 0;
    loop {
        match bytes.get(colon) {
            Some(b':') if colon > 0 => return Ok((len, colon + 1)),
            Some(&digit) if digit.is_ascii_digit() && colon < MAX_DIGITS => {
                len = len * 10 + usize::from(digit - b'0');
                colon += 1;
            }
            _ => return Err(Malformed),
        }
    }
}

/// Writes packed text.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    out: String,
}

impl Writer {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            out: String::with_capacity(capacity),
        }
    }

    /// A member whose value is already JSON text.
    pub(crate) fn raw(&mut self, whole: &str) {
        self.out.push_str(whole);
    }

    /// A member: `key` and `value`, written as JSON.
    pub(crate) fn member(&mut self, key: &str, value: &Value) {
        let end = self.out.len();
        insert_len(&mut self.out, end, key.len());
        self.out.push_str(key);
        let start = self.out.len();
        // `Value`'s `Display` is its compact JSON, and writing into a
        // `String` cannot fail.
        let _ = write!(self.out, "{value}");
        let len = self.out.len() - start;
        insert_len(&mut self.out, start, len);
    }

    /// The text, in an allocation of exactly its size: the writer's spare
    /// capacity would otherwise stay beside every entry of the store.
    pub(crate) fn finish(self) -> Arc<str> {
        Arc::from(self.out.as_str())
    }
}

/// Puts `<len>:` at `at`: from a table for one digit (most keys and small
/// values), a digit at a time otherwise (no buffer needed).
fn insert_len(out: &mut String, at: usize, len: usize) {
    const ONE_DIGIT: [&str; 10] = ["0:", "1:", "2:", "3:", "4:", "5:", "6:", "7:", "8:", "9:"];
    if let Some(prefix) = ONE_DIGIT.get(len) {
        out.insert_str(at, prefix);
        return;
    }
    out.insert(at, ':');
    let mut rest = len;
    loop {
        out.insert(at, char::from(b'0' + (rest % 10) as u8));
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
}

/// `data`, packed.
pub(crate) fn encode(data: &Data) -> Arc<str> {
    let mut writer = Writer::with_capacity(64);
    for (key, value) in data {
        writer.member(key, value);
    }
    writer.finish()
}

/// Packed `text`, decoded; an error if it is not packed data or a value is
/// not JSON.
pub(crate) fn decode(text: &str) -> Result<Data, Box<dyn std::error::Error + Send + Sync>> {
    let mut data = Data::new();
    for member in members(text) {
        let member = member?;
        data.insert(member.key.to_owned(), serde_json::from_str(member.value)?);
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn the_form_is_length_prefixed_members() {
        let Value::Object(data) = json!({"n": 1, "user": "alice"}) else {
            unreachable!()
        };
        assert_eq!(&*encode(&data), "1:n1:14:user7:\"alice\"");
        assert_eq!(&*encode(&Data::new()), "");
        // Lengths of one to five digits.
        let long = "x".repeat(12_345);
        let mut data = Data::new();
        data.insert("a-key-of-12b".into(), Value::from(long.clone()));
        data.insert(String::new(), Value::from(9));
        let text = encode(&data);
        assert!(
            text.starts_with("0:1:912:a-key-of-12b12347:\"xxx"),
            "{}",
            &text[..40]
        );
        assert_eq!(decode(&text).unwrap(), data);
    }

    #[test]
    fn s35_damaged_text_is_malformed() {
        for bad in [
            "{\"unterminated",
            "1:n",
            "1:n1:",
            "1:n2:1",
            ":n1:1",
            "x:n1:1",
            "1:n1:1x",
            "99999999999999999999:a",
            "1:\u{e9}1:1",
            "-1:a1:1",
        ] {
            assert!(
                members(bad).any(|m| m.is_err()),
                "{bad:?} was read as packed data"
            );
            assert!(decode(bad).is_err(), "{bad:?}");
            assert_eq!(check(bad), Err(Malformed), "{bad:?}");
        }
        assert_eq!(check("1:n1:1"), Ok(()));
        assert_eq!(check(""), Ok(()));
        assert!(decode("1:n3:[1,").is_err(), "a value that is not JSON");
        let mut after_error = members("x1:n1:1");
        assert!(after_error.next().unwrap().is_err());
        assert!(
            after_error.next().is_none(),
            "the iterator ends after an error"
        );
    }

    #[test]
    fn a_member_is_found_whole() {
        let text = "1:a1:13:\u{e9}k3:[2]";
        let found: Vec<_> = members(text).map(Result::unwrap).collect();
        assert_eq!(found[1].key, "\u{e9}k");
        assert_eq!(found[1].value, "[2]");
        assert_eq!(found[0].whole, "1:a1:1");
        assert_eq!(found[1].whole, "3:\u{e9}k3:[2]");
    }

    fn any_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            ".{0,12}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map(".{0,6}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Any keys (colons, digits, quotes, any Unicode) and values come
        /// back as they went in.
        #[test]
        fn data_round_trips(data in prop::collection::btree_map(".{0,10}", any_value(), 0..6)) {
            let data: Data = data.into_iter().collect();
            let text = encode(&data);
            prop_assert_eq!(decode(&text).unwrap(), data);
        }

        /// Cut anywhere inside, packed text is refused or reads as fewer
        /// members: never a panic, never a member that was not there.
        #[test]
        fn cut_text_is_never_misread(data in prop::collection::btree_map("[a-z:0-9]{0,6}", any_value(), 1..4), cut in any::<prop::sample::Index>()) {
            let data: Data = data.into_iter().collect();
            let text = encode(&data);
            let cut = cut.index(text.len());
            let Some(prefix) = text.get(..cut) else { return Ok(()) };
            prop_assert_eq!(check(prefix).is_ok(), members(prefix).all(|m| m.is_ok()));
            for member in members(prefix).flatten() {
                prop_assert_eq!(data.get(member.key).map(|v| v.to_string()), Some(member.value.to_owned()));
            }
        }
    }
}
