//! Content digests (`sha256:<hex>`) and the streaming hashers that make them.

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

/// Why a string is not a digest kiln can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("invalid digest {input:?}: missing the \"sha256:\" algorithm prefix")]
    MissingAlgorithm { input: String },
    #[error(
        "invalid digest {input:?}: unsupported algorithm {algorithm:?} (only sha256 is supported)"
    )]
    UnsupportedAlgorithm { input: String, algorithm: String },
    #[error("invalid digest {input:?}: expected 64 lower-case hex characters after \"sha256:\"")]
    BadHex { input: String },
}

/// A SHA-256 content digest, written `sha256:<64 lower-case hex>`.
///
/// Only sha256 is accepted: it is what every registry and runtime kiln talks
/// to uses, and a single algorithm keeps blob paths unambiguous.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    /// Digest of a byte slice.
    pub fn sha256(data: &[u8]) -> Digest {
        Digest(Sha256::digest(data).into())
    }

    /// Builds a digest from raw hash bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Digest {
        Digest(bytes)
    }

    /// The raw 32 hash bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The algorithm name, always `sha256`.
    pub fn algorithm(&self) -> &'static str {
        "sha256"
    }

    /// The 64-character lower-case hex part (what follows `sha256:`).
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 12 hex characters, as Docker shows image ids.
    pub fn short(&self) -> String {
        self.hex()[..12].to_string()
    }

    /// Parses only the hex part (`<64 hex>`, no algorithm prefix).
    pub fn from_hex(hex_part: &str) -> Result<Digest, DigestError> {
        parse_hex(hex_part).ok_or_else(|| DigestError::BadHex {
            input: hex_part.to_string(),
        })
    }
}

fn parse_hex(s: &str) -> Option<Digest> {
    // Upper-case hex is not a valid OCI digest encoding.
    if s.len() != 64 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(Digest(out))
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Digest, DigestError> {
        let Some((algorithm, hex_part)) = s.split_once(':') else {
            return Err(DigestError::MissingAlgorithm {
                input: s.to_string(),
            });
        };
        if algorithm != "sha256" {
            return Err(DigestError::UnsupportedAlgorithm {
                input: s.to_string(),
                algorithm: algorithm.to_string(),
            });
        }
        parse_hex(hex_part).ok_or_else(|| DigestError::BadHex {
            input: s.to_string(),
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl From<Digest> for oci_spec::image::Digest {
    fn from(d: Digest) -> Self {
        // A sha256 digest we print is always valid for oci-spec.
        oci_spec::image::Digest::from_str(&d.to_string()).expect("sha256 digest is valid")
    }
}

impl From<&Digest> for oci_spec::image::Digest {
    fn from(d: &Digest) -> Self {
        (*d).into()
    }
}

impl TryFrom<&oci_spec::image::Digest> for Digest {
    type Error = DigestError;
    fn try_from(d: &oci_spec::image::Digest) -> Result<Digest, DigestError> {
        d.to_string().parse()
    }
}

impl TryFrom<oci_spec::image::Digest> for Digest {
    type Error = DigestError;
    fn try_from(d: oci_spec::image::Digest) -> Result<Digest, DigestError> {
        Digest::try_from(&d)
    }
}

/// Digest of an *uncompressed* layer tar (an entry of `rootfs.diff_ids`).
///
/// Kept a distinct type from [`Digest`] so a compressed blob digest is never
/// used where a diff id belongs, or the other way round.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DiffId(pub Digest);

impl DiffId {
    pub fn digest(&self) -> &Digest {
        &self.0
    }

    pub fn into_digest(self) -> Digest {
        self.0
    }
}

impl FromStr for DiffId {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<DiffId, DigestError> {
        s.parse().map(DiffId)
    }
}

impl fmt::Display for DiffId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for DiffId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DiffId({})", self.0)
    }
}

/// Incremental SHA-256 that also counts bytes.
///
/// Past the first [`CHUNK`] it hashes on a thread of its own, so the
/// thread producing the bytes (a layer tar being walked, a blob being
/// written or downloaded) does not also pay for the hash: sha256 of a 645 MB
/// toolchain layer is ~0.35 s of one core that the other core can take.
#[derive(Default)]
pub struct Sha256Hasher {
    pending: Vec<u8>,
    len: u64,
    state: HashState,
}

/// Bytes handed to the hashing thread at a time.
const CHUNK: usize = 1 << 20;

enum HashState {
    Here(Sha256),
    Thread {
        chunks: std::sync::mpsc::SyncSender<Vec<u8>>,
        spent: std::sync::mpsc::Receiver<Vec<u8>>,
        done: std::thread::JoinHandle<Sha256>,
    },
}

impl Default for HashState {
    fn default() -> Self {
        HashState::Here(Sha256::new())
    }
}

impl Sha256Hasher {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        while !data.is_empty() {
            let n = data.len().min(CHUNK - self.pending.len());
            self.pending.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.pending.len() == CHUNK {
                self.hand_off();
            }
        }
    }

    /// Sends the full pending chunk to the hashing thread (started on the
    /// first one), taking back a spent buffer when there is one.
    fn hand_off(&mut self) {
        if let HashState::Here(_) = self.state {
            let HashState::Here(mut inner) = std::mem::take(&mut self.state) else {
                unreachable!()
            };
            let (chunks, todo) = std::sync::mpsc::sync_channel::<Vec<u8>>(2);
            let (give_back, spent) = std::sync::mpsc::channel();
            let done = std::thread::spawn(move || {
                for chunk in todo {
                    inner.update(&chunk);
                    let _ = give_back.send(chunk);
                }
                inner
            });
            self.state = HashState::Thread {
                chunks,
                spent,
                done,
            };
        }
        let HashState::Thread { chunks, spent, .. } = &self.state else {
            unreachable!()
        };
        let mut next = spent.try_recv().unwrap_or_default();
        next.clear();
        next.reserve(CHUNK);
        let full = std::mem::replace(&mut self.pending, next);
        // Fails only if the thread died, which `finish` reports.
        let _ = chunks.send(full);
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn finish(self) -> Digest {
        let mut inner = match self.state {
            HashState::Here(inner) => inner,
            HashState::Thread { chunks, done, .. } => {
                drop(chunks);
                done.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            }
        };
        inner.update(&self.pending);
        Digest(inner.finalize().into())
    }
}

impl Write for Sha256Hasher {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A writer that hashes and counts everything written through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256Hasher,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256Hasher::new(),
        }
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.hasher.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hasher.is_empty()
    }

    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// Returns the inner writer, the digest and the byte count.
    pub fn finish(self) -> (W, Digest, u64) {
        let len = self.hasher.len();
        (self.inner, self.hasher.finish(), len)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes and counts everything read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256Hasher,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256Hasher::new(),
        }
    }

    /// Bytes read so far.
    pub fn len(&self) -> u64 {
        self.hasher.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hasher.is_empty()
    }

    /// Returns the inner reader, the digest and the byte count.
    pub fn finish(self) -> (R, Digest, u64) {
        let len = self.hasher.len();
        (self.inner, self.hasher.finish(), len)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn sha256_of_empty_matches_known_value() {
        assert_eq!(Digest::sha256(b"").to_string(), EMPTY);
        assert_eq!(EMPTY.parse::<Digest>().unwrap(), Digest::sha256(b""));
    }

    #[test]
    fn rejects_bad_digests() {
        assert!(matches!(
            "e3b0".parse::<Digest>(),
            Err(DigestError::MissingAlgorithm { .. })
        ));
        assert!(matches!(
            "sha512:abcd".parse::<Digest>(),
            Err(DigestError::UnsupportedAlgorithm { .. })
        ));
        assert!(matches!(
            "sha256:abcd".parse::<Digest>(),
            Err(DigestError::BadHex { .. })
        ));
        let upper = EMPTY.to_uppercase().replace("SHA256", "sha256");
        assert!(upper.parse::<Digest>().is_err());
        let err = "sha256:zz".parse::<Digest>().unwrap_err().to_string();
        assert!(err.contains("sha256:zz"), "{err}");
    }

    #[test]
    fn serde_is_a_string() {
        let d = Digest::sha256(b"x");
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{d}\""));
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
        let id = DiffId(d);
        assert_eq!(serde_json::to_string(&id).unwrap(), json);
        assert!(serde_json::from_str::<Digest>("\"sha256:00\"").is_err());
    }

    #[test]
    fn the_hashing_thread_gives_the_same_digest() {
        for size in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 5 * CHUNK + 12_345] {
            let data: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
            let mut h = Sha256Hasher::new();
            for piece in data.chunks(300_001) {
                h.update(piece);
            }
            assert_eq!(h.len(), size as u64);
            assert_eq!(h.finish(), Digest::sha256(&data), "{size} bytes");
        }
    }

    #[test]
    fn streaming_hashers_agree_with_one_shot() {
        let data = vec![7u8; 100_000];
        let mut w = HashingWriter::new(Vec::new());
        for chunk in data.chunks(777) {
            w.write_all(chunk).unwrap();
        }
        let (out, d, n) = w.finish();
        assert_eq!(out, data);
        assert_eq!(n, 100_000);
        assert_eq!(d, Digest::sha256(&data));

        let mut r = HashingReader::new(&data[..]);
        io::copy(&mut r, &mut io::sink()).unwrap();
        assert_eq!(r.finish().1, Digest::sha256(&data));
    }

    #[test]
    fn converts_to_and_from_oci_spec() {
        let d = Digest::sha256(b"abc");
        let o: oci_spec::image::Digest = d.into();
        assert_eq!(o.to_string(), d.to_string());
        assert_eq!(Digest::try_from(&o).unwrap(), d);
    }
}
