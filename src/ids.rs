//! Identifiers: [`BlockId`] (SHA-256 of a block's bytes) and [`VersionId`] (a version's
//! time-sortable, node-unique name). Parsing never panics on untrusted input.

use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// The SHA-256 of a block's uncompressed bytes; also its file name in the block store.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockId(pub [u8; 32]);

impl BlockId {
    /// Hashes `data`.
    pub fn of(data: &[u8]) -> BlockId {
        BlockId(Sha256::digest(data).into())
    }

    /// Parses 64 lowercase hex digits.
    pub fn parse(s: &str) -> Option<BlockId> {
        let b = s.as_bytes();
        if b.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in b.chunks_exact(2).enumerate() {
            let hi = hex_val(pair[0])?;
            let lo = hex_val(pair[1])?;
            out[i] = hi << 4 | lo;
        }
        Some(BlockId(out))
    }

    /// The 64-digit lowercase hex form.
    pub fn hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(HEX[(b >> 4) as usize] as char);
            s.push(HEX[(b & 15) as usize] as char);
        }
        s
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

impl fmt::Display for BlockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl fmt::Debug for BlockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlockId({})", &self.hex()[..12])
    }
}

/// A version's id: `<sec>.<nsec>-<node>-<random>`, e.g.
/// `1763727308.123456789-68d25a11-9f3e02c1`. Sorting ids as strings sorts them by creation
/// time (10-digit seconds); the node prefix and 32 random bits keep equal clocks apart.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct VersionId(String);

static LAST_TIME: Mutex<(u64, u32)> = Mutex::new((0, 0));

impl VersionId {
    /// A fresh id for a version made on the node whose uuid starts with `node8`.
    pub fn generate(node_uuid: &str) -> VersionId {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let (mut sec, mut nsec) = (now.as_secs(), now.subsec_nanos());
        {
            // Strictly increasing within this process, whatever the clock does.
            let mut last = LAST_TIME.lock().unwrap_or_else(|p| p.into_inner());
            if (sec, nsec) <= *last {
                (sec, nsec) = if last.1 >= 999_999_999 { (last.0 + 1, 0) } else { (last.0, last.1 + 1) };
            }
            *last = (sec, nsec);
        }
        let node: String = node_uuid.chars().filter(|c| c.is_ascii_hexdigit()).take(8).collect();
        let rand = uuid::Uuid::new_v4();
        let r = &rand.as_bytes()[..4];
        VersionId(format!("{sec:010}.{nsec:09}-{node:0>8}-{:02x}{:02x}{:02x}{:02x}", r[0], r[1], r[2], r[3]))
    }

    /// Accepts an id read from disk or from a user; refuses anything that could not be a
    /// file name (ids become names under `versions/`).
    pub fn parse(s: &str) -> Option<VersionId> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'-' || c == b'_')
            && !s.starts_with('.')
            && s != "latest";
        ok.then(|| VersionId(s.to_string()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Seconds and nanoseconds encoded in the id, if it has the standard form.
    pub fn time(&self) -> Option<(u64, u32)> {
        let (sec, rest) = self.0.split_once('.')?;
        let nsec = rest.split('-').next()?;
        Some((sec.parse().ok()?, nsec.parse().ok()?))
    }
}

impl fmt::Display for VersionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_id_hex_round_trip() {
        let id = BlockId::of(b"hello");
        assert_eq!(id.hex(), "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
        assert_eq!(BlockId::parse(&id.hex()), Some(id));
        assert_eq!(BlockId::parse("2CF2"), None);
        assert_eq!(BlockId::parse(&"g".repeat(64)), None);
    }

    #[test]
    fn version_ids_are_unique_and_sorted() {
        let ids: Vec<_> = (0..1000).map(|_| VersionId::generate("68d25a11-a34a")).collect();
        for w in ids.windows(2) {
            assert!(w[0] < w[1], "{} !< {}", w[0], w[1]);
        }
        assert!(ids[0].as_str().contains("-68d25a11-"));
        assert!(VersionId::parse(ids[0].as_str()).is_some());
        assert!(ids[0].time().is_some());
    }

    #[test]
    fn version_id_parse_refuses_unsafe_names() {
        for bad in ["", "latest", "../x", "a/b", ".tmp", "a\0b", &"1".repeat(65)] {
            assert!(VersionId::parse(bad).is_none(), "{bad:?}");
        }
    }
}
