//! Cache keys from named, typed inputs.
//!
//! A step states its inputs as an [`Inputs`]: a kind and an ordered list of
//! named [`Value`]s. The key is BLAKE3 over a labelled, length-prefixed
//! encoding of exactly those fields, so no two different inputs encode the
//! same, and the same fields are kept in the step's cache record to say
//! later what changed (docs/cache.md).

use serde::{Deserialize, Serialize};

/// Bumped whenever the encoding or a step's fields change meaning.
const VERSION: &[u8] = b"kiln-cache-v2\0";

/// A cache key: BLAKE3 over the step's kind and named inputs.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey(pub [u8; 32]);

impl CacheKey {
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn from_hex(s: &str) -> Option<CacheKey> {
        if s.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(CacheKey(out))
    }
}

impl std::fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CacheKey({})", &self.hex()[..16])
    }
}

impl Serialize for CacheKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.hex())
    }
}

impl<'de> Deserialize<'de> for CacheKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        CacheKey::from_hex(&s).ok_or_else(|| serde::de::Error::custom("not a 64-digit hex key"))
    }
}

/// One input of a step, typed so that it encodes (and is explained) by
/// what it is, never by a `Debug` string.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Value {
    Text(String),
    List(Vec<String>),
    Flag(bool),
    /// A number (mode bits, uid, a size).
    Number(u64),
    /// Not given (an optional flag).
    None,
    /// The key of what the step builds on or reads: the parent step, a
    /// stage, an image.
    Key(CacheKey),
    /// BLAKE3 (hex) standing for content too big to keep in a record:
    /// the files a COPY reads, a here-document body.
    Hash(String),
}

impl Value {
    pub fn text(s: impl Into<String>) -> Value {
        Value::Text(s.into())
    }

    pub fn opt(s: Option<&str>) -> Value {
        s.map_or(Value::None, Value::text)
    }

    pub fn list<S: AsRef<str>>(items: &[S]) -> Value {
        Value::List(items.iter().map(|s| s.as_ref().to_string()).collect())
    }

    /// The BLAKE3 hash of `data`.
    pub fn hash_of(data: &[u8]) -> Value {
        Value::Hash(blake3::hash(data).to_hex().to_string())
    }

    pub fn hash(bytes: &[u8; 32]) -> Value {
        Value::Hash(CacheKey(*bytes).hex())
    }

    fn encode(&self, h: &mut blake3::Hasher) {
        let (tag, body): (u8, Vec<u8>) = match self {
            Value::Text(s) => (1, s.as_bytes().to_vec()),
            Value::List(items) => {
                let mut b = Vec::new();
                for i in items {
                    b.extend_from_slice(&(i.len() as u64).to_le_bytes());
                    b.extend_from_slice(i.as_bytes());
                }
                (2, b)
            }
            Value::Flag(f) => (3, vec![u8::from(*f)]),
            Value::Number(n) => (4, n.to_le_bytes().to_vec()),
            Value::None => (5, Vec::new()),
            Value::Key(k) => (6, k.0.to_vec()),
            Value::Hash(hex) => (7, hex.as_bytes().to_vec()),
        };
        h.update(&[tag]);
        h.update(&(body.len() as u64).to_le_bytes());
        h.update(&body);
    }
}

/// A step's named inputs, in a fixed order: what its key is made of.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inputs {
    pub kind: String,
    pub fields: Vec<(String, Value)>,
}

impl Inputs {
    /// Inputs of a step of `kind` built on `parent`.
    pub fn new(kind: &str, parent: CacheKey) -> Inputs {
        Inputs {
            kind: kind.to_string(),
            fields: vec![("parent".to_string(), Value::Key(parent))],
        }
    }

    /// Inputs with no parent (a stage's starting point).
    pub fn root(kind: &str) -> Inputs {
        Inputs {
            kind: kind.to_string(),
            fields: Vec::new(),
        }
    }

    pub fn add(&mut self, name: impl Into<String>, value: Value) -> &mut Self {
        self.fields.push((name.into(), value));
        self
    }

    pub fn with(mut self, name: impl Into<String>, value: Value) -> Self {
        self.add(name, value);
        self
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    pub fn parent(&self) -> Option<CacheKey> {
        match self.get("parent") {
            Some(Value::Key(k)) => Some(*k),
            _ => None,
        }
    }

    /// The key: BLAKE3 over the version, the kind and every field.
    pub fn key(&self) -> CacheKey {
        let mut h = blake3::Hasher::new();
        h.update(VERSION);
        label(&mut h, &self.kind);
        h.update(&(self.fields.len() as u64).to_le_bytes());
        for (name, value) in &self.fields {
            label(&mut h, name);
            value.encode(&mut h);
        }
        CacheKey(*h.finalize().as_bytes())
    }
}

fn label(h: &mut blake3::Hasher, s: &str) {
    h.update(&(s.len() as u64).to_le_bytes());
    h.update(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_is_unambiguous() {
        let a = Inputs::root("run")
            .with("x", Value::text("ab"))
            .with("y", Value::text("c"));
        let b = Inputs::root("run")
            .with("x", Value::text("a"))
            .with("y", Value::text("bc"));
        assert_ne!(a.key(), b.key());
        assert_eq!(a.key(), a.clone().key());
        // A list of two is not the text of both, nor a list split elsewhere.
        let l1 = Inputs::root("k").with("v", Value::list(&["a", "bc"]));
        let l2 = Inputs::root("k").with("v", Value::list(&["ab", "c"]));
        let t = Inputs::root("k").with("v", Value::text("abc"));
        assert_ne!(l1.key(), l2.key());
        assert_ne!(l1.key(), t.key());
        // Not given differs from empty.
        let none = Inputs::root("k").with("v", Value::None);
        let empty = Inputs::root("k").with("v", Value::text(""));
        assert_ne!(none.key(), empty.key());
        // The kind is part of the key.
        assert_ne!(Inputs::root("copy").key(), Inputs::root("add").key());
    }

    #[test]
    fn keys_round_trip_as_hex() {
        let k = Inputs::root("x").key();
        assert_eq!(CacheKey::from_hex(&k.hex()), Some(k));
        assert_eq!(CacheKey::from_hex("zz"), None);
        let json = serde_json::to_string(&Inputs::new("run", k)).unwrap();
        let back: Inputs = serde_json::from_str(&json).unwrap();
        assert_eq!(back.parent(), Some(k));
    }
}
