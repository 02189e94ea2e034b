//! Canonical, unambiguous row encoding and the chain hash.
//!
//! A row's hash is `sha256(encode(prev_hash, table, fields))` where the
//! encoding is:
//!
//! ```text
//! "limbic-audit/v1"                      domain separator (fixed length)
//! u64-be len ‖ prev_hash bytes           length-prefixed
//! u64-be len ‖ table name bytes          length-prefixed
//! u64-be field count
//! per field, in schema column order:
//!   0x00                                 NULL
//!   0x01 ‖ i64-be                        INTEGER
//!   0x02 ‖ f64 bit pattern, u64-be       REAL
//!   0x03 ‖ u64-be len ‖ UTF-8 bytes      TEXT
//!   0x04 ‖ u64-be len ‖ bytes            BLOB
//! ```
//!
//! Every variable-length item is length-prefixed and every value carries a
//! type tag, so two different rows can never encode to the same bytes (see
//! the decoding round-trip property test below). The encoding works on the
//! SQLite storage values exactly as they read back from the database, which
//! is what lets `verify` recompute the hash without knowing Rust types.

use rusqlite::types::Value;
use sha2::{Digest, Sha256};

/// `prev_hash` of the first row of the chain.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

const DOMAIN: &[u8] = b"limbic-audit/v1";

const TAG_NULL: u8 = 0;
const TAG_INTEGER: u8 = 1;
const TAG_REAL: u8 = 2;
const TAG_TEXT: u8 = 3;
const TAG_BLOB: u8 = 4;

/// Canonical byte encoding of one chained row (see the module docs).
pub fn encode_row(prev_hash: &str, table: &str, fields: &[Value]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + fields.len() * 16);
    out.extend_from_slice(DOMAIN);
    put_len_prefixed(&mut out, prev_hash.as_bytes());
    put_len_prefixed(&mut out, table.as_bytes());
    out.extend_from_slice(&(fields.len() as u64).to_be_bytes());
    for field in fields {
        match field {
            Value::Null => out.push(TAG_NULL),
            Value::Integer(i) => {
                out.push(TAG_INTEGER);
                out.extend_from_slice(&i.to_be_bytes());
            }
            Value::Real(r) => {
                out.push(TAG_REAL);
                out.extend_from_slice(&r.to_bits().to_be_bytes());
            }
            Value::Text(s) => {
                out.push(TAG_TEXT);
                put_len_prefixed(&mut out, s.as_bytes());
            }
            Value::Blob(b) => {
                out.push(TAG_BLOB);
                put_len_prefixed(&mut out, b);
            }
        }
    }
    out
}

/// Lower-case hex sha256 of the canonical encoding of a row.
pub fn row_hash(prev_hash: &str, table: &str, fields: &[Value]) -> String {
    sha256_hex(&encode_row(prev_hash, table, fields))
}

/// Lower-case hex sha256 of arbitrary bytes (used for step text too).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The value a float takes once stored in SQLite, so that the hash computed
/// at insert time equals the one recomputed from the database later.
///
/// SQLite stores NaN as NULL, and may store an integral REAL as an integer
/// on disk (reading back `-0.0` as `0.0`), so both are normalised here.
pub fn stored_real(x: f64) -> Value {
    if x.is_nan() {
        Value::Null
    } else if x == 0.0 {
        Value::Real(0.0)
    } else {
        Value::Real(x)
    }
}

fn put_len_prefixed(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Inverse of `encode_row`; if every encoding decodes back to its input,
    /// the encoding is injective, i.e. unambiguous.
    fn decode_row(bytes: &[u8]) -> Option<(String, String, Vec<Value>)> {
        struct Reader<'a>(&'a [u8]);
        impl Reader<'_> {
            fn take(&mut self, n: usize) -> Option<&[u8]> {
                if self.0.len() < n {
                    return None;
                }
                let (head, tail) = self.0.split_at(n);
                self.0 = tail;
                Some(head)
            }
            fn u64(&mut self) -> Option<u64> {
                Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
            }
            fn bytes(&mut self) -> Option<Vec<u8>> {
                let n = usize::try_from(self.u64()?).ok()?;
                Some(self.take(n)?.to_vec())
            }
        }
        let mut r = Reader(bytes);
        if r.take(DOMAIN.len())? != DOMAIN {
            return None;
        }
        let prev = String::from_utf8(r.bytes()?).ok()?;
        let table = String::from_utf8(r.bytes()?).ok()?;
        let count = r.u64()?;
        let mut fields = Vec::new();
        for _ in 0..count {
            let tag = r.take(1)?[0];
            fields.push(match tag {
                TAG_NULL => Value::Null,
                TAG_INTEGER => Value::Integer(r.u64()? as i64),
                TAG_REAL => Value::Real(f64::from_bits(r.u64()?)),
                TAG_TEXT => Value::Text(String::from_utf8(r.bytes()?).ok()?),
                TAG_BLOB => Value::Blob(r.bytes()?),
                _ => return None,
            });
        }
        if !r.0.is_empty() {
            return None;
        }
        Some((prev, table, fields))
    }

    fn same_value(a: &Value, b: &Value) -> bool {
        match (a, b) {
            // Compare floats by bit pattern: that is what the encoding promises.
            (Value::Real(x), Value::Real(y)) => x.to_bits() == y.to_bits(),
            _ => a == b,
        }
    }

    fn any_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<i64>().prop_map(Value::Integer),
            any::<u64>().prop_map(|bits| Value::Real(f64::from_bits(bits))),
            ".{0,12}".prop_map(Value::Text),
            proptest::collection::vec(any::<u8>(), 0..12).prop_map(Value::Blob),
        ]
    }

    #[test]
    fn genesis_is_64_zero_hex_digits() {
        assert_eq!(GENESIS_HASH.len(), 64);
        assert!(GENESIS_HASH.bytes().all(|b| b == b'0'));
    }

    #[test]
    fn field_boundaries_change_the_hash() {
        // Classic ambiguity of plain concatenation: "ab"+"c" vs "a"+"bc".
        let a = row_hash(
            GENESIS_HASH,
            "steps",
            &[Value::Text("ab".into()), Value::Text("c".into())],
        );
        let b = row_hash(
            GENESIS_HASH,
            "steps",
            &[Value::Text("a".into()), Value::Text("bc".into())],
        );
        assert_ne!(a, b);
    }

    #[test]
    fn type_tags_change_the_hash() {
        let text = row_hash(GENESIS_HASH, "t", &[Value::Text("1".into())]);
        let int = row_hash(GENESIS_HASH, "t", &[Value::Integer(1)]);
        let real = row_hash(GENESIS_HASH, "t", &[Value::Real(1.0)]);
        let null = row_hash(GENESIS_HASH, "t", &[Value::Null]);
        let blob = row_hash(GENESIS_HASH, "t", &[Value::Blob(b"1".to_vec())]);
        let all = [text, int, real, null, blob];
        for (i, x) in all.iter().enumerate() {
            for y in &all[i + 1..] {
                assert_ne!(x, y);
            }
        }
    }

    #[test]
    fn table_name_and_prev_hash_are_bound() {
        let fields = [Value::Integer(7)];
        let base = row_hash(GENESIS_HASH, "steps", &fields);
        assert_ne!(base, row_hash(GENESIS_HASH, "decisions", &fields));
        let other_prev = "1".repeat(64);
        assert_ne!(base, row_hash(&other_prev, "steps", &fields));
    }

    #[test]
    fn sha256_hex_matches_known_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn stored_real_normalises_what_sqlite_would_change() {
        assert_eq!(stored_real(f64::NAN), Value::Null);
        match stored_real(-0.0) {
            Value::Real(x) => assert_eq!(x.to_bits(), 0.0f64.to_bits()),
            other => panic!("expected REAL, got {other:?}"),
        }
        assert_eq!(stored_real(1.5), Value::Real(1.5));
        assert_eq!(stored_real(f64::INFINITY), Value::Real(f64::INFINITY));
    }

    proptest! {
        #[test]
        fn encoding_round_trips(
            prev in "[0-9a-f]{0,64}",
            table in "[a-z_]{0,10}",
            fields in proptest::collection::vec(any_value(), 0..8),
        ) {
            let bytes = encode_row(&prev, &table, &fields);
            let (p, t, f) = decode_row(&bytes).expect("every encoding decodes");
            prop_assert_eq!(p, prev);
            prop_assert_eq!(t, table);
            prop_assert_eq!(f.len(), fields.len());
            for (x, y) in f.iter().zip(&fields) {
                prop_assert!(same_value(x, y), "{:?} != {:?}", x, y);
            }
        }

        #[test]
        fn changing_any_field_changes_the_hash(
            fields in proptest::collection::vec(any_value(), 1..8),
            index in any::<prop::sample::Index>(),
            replacement in any_value(),
        ) {
            let i = index.index(fields.len());
            prop_assume!(!same_value(&fields[i], &replacement));
            let mut edited = fields.clone();
            edited[i] = replacement;
            prop_assert_ne!(
                row_hash(GENESIS_HASH, "steps", &fields),
                row_hash(GENESIS_HASH, "steps", &edited)
            );
        }
    }
}
