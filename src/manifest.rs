//! Version manifests: the [`Version`] record and its line-based text encoding
//! (docs/FORMAT.md, "Manifests"). Decoding is strict and bounded, checks the trailing
//! SHA-256, and never panics on bytes from disk or from a peer.

use crate::blocks::MAX_BLOCK;
use crate::config::FORMAT_VERSION;
use crate::ids::{BlockId, VersionId};
use crate::paths::{decode_text, encode_text, VolPath};
use sha2::{Digest, Sha256};
use std::fmt::Write as _;

/// First line of every manifest.
const MAGIC: &str = "globofs-version";
/// Largest manifest accepted (a file of several TiB at the smallest block size).
pub const MAX_MANIFEST: usize = 256 << 20;

/// What a version is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A regular file; its content is the block list.
    File,
    /// A symbolic link; `target` holds where it points.
    Symlink,
    /// A directory marker (keeps empty directories, their mode and mtime).
    Dir,
    /// The path was removed.
    Tombstone,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Symlink => "symlink",
            Kind::Dir => "dir",
            Kind::Tombstone => "tombstone",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "file" => Kind::File,
            "symlink" => Kind::Symlink,
            "dir" => Kind::Dir,
            "tombstone" => Kind::Tombstone,
            _ => return None,
        })
    }
}

/// `s` if it is a non-empty run of ASCII digits (no sign, no spaces): the canonical form.
fn digits(s: &str) -> Option<&str> {
    (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit())).then_some(s)
}

/// One block of a file: its id and uncompressed length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockRef {
    /// SHA-256 of the block.
    pub id: BlockId,
    /// Uncompressed length in bytes.
    pub len: u32,
}

/// Seconds and nanoseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Timestamp {
    /// Whole seconds (negative before 1970).
    pub sec: i64,
    /// Nanoseconds, 0..1e9.
    pub nsec: u32,
}

impl Timestamp {
    /// The current time.
    pub fn now() -> Timestamp {
        let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Timestamp { sec: d.as_secs() as i64, nsec: d.subsec_nanos() }
    }

    fn parse(s: &str) -> Option<Timestamp> {
        let (a, b) = s.split_once('.')?;
        let nsec: u32 = digits(b)?.parse().ok()?;
        (b.len() == 9).then_some(())?;
        let sec = match a.strip_prefix('-') {
            Some(neg) => -digits(neg)?.parse::<i64>().ok()?,
            None => digits(a)?.parse().ok()?,
        };
        Some(Timestamp { sec, nsec })
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:09}", self.sec, self.nsec)
    }
}

/// One immutable version of one path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    /// Unique id.
    pub id: VersionId,
    /// The path this version belongs to.
    pub path: VolPath,
    /// File, symlink, directory marker or tombstone.
    pub kind: Kind,
    /// The version(s) this one replaces; empty for the first version of a path.
    pub parents: Vec<VersionId>,
    /// Uuid of the node that made it.
    pub origin: String,
    /// Name of that node when it made it (for people; the uuid is authoritative).
    pub origin_name: String,
    /// When it was made (origin's clock: informative, never used for ordering).
    pub time: Timestamp,
    /// Content size in bytes (files); 0 otherwise.
    pub size: u64,
    /// Permission bits (`0o7777` at most).
    pub mode: u32,
    /// Modification time of the content.
    pub mtime: Timestamp,
    /// Symlink target.
    pub target: Option<Vec<u8>>,
    /// Content blocks in order (files).
    pub blocks: Vec<BlockRef>,
}

impl Version {
    /// True unless this version is a tombstone.
    pub fn is_live(&self) -> bool {
        self.kind != Kind::Tombstone
    }

    /// The manifest text, ending with its checksum line.
    pub fn encode(&self) -> Vec<u8> {
        let mut s = String::with_capacity(256 + self.blocks.len() * 76);
        let _ = writeln!(s, "{MAGIC} {FORMAT_VERSION}");
        let _ = writeln!(s, "id {}", self.id);
        let _ = writeln!(s, "path {}", self.path.to_text());
        let _ = writeln!(s, "kind {}", self.kind.as_str());
        for p in &self.parents {
            let _ = writeln!(s, "parent {p}");
        }
        let _ = writeln!(s, "origin {} {}", self.origin, encode_text(self.origin_name.as_bytes()));
        let _ = writeln!(s, "time {}", self.time);
        let _ = writeln!(s, "size {}", self.size);
        let _ = writeln!(s, "mode {:04o}", self.mode);
        let _ = writeln!(s, "mtime {}", self.mtime);
        if let Some(t) = &self.target {
            let _ = writeln!(s, "target {}", encode_text(t));
        }
        for b in &self.blocks {
            let _ = writeln!(s, "block {} {}", b.id, b.len);
        }
        let sum = Sha256::digest(s.as_bytes());
        let _ = writeln!(s, "end {}", BlockId(sum.into()));
        s.into_bytes()
    }

    /// Parses and checks a manifest. The error says what is wrong, for a one-line message.
    pub fn decode(bytes: &[u8]) -> Result<Version, String> {
        if bytes.len() > MAX_MANIFEST {
            return Err(format!("larger than {MAX_MANIFEST} bytes"));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
        let body_end = text.trim_end_matches('\n').rfind('\n').map(|i| i + 1).ok_or("truncated")?;
        let (body, last) = text.split_at(body_end);
        let sum = last.strip_prefix("end ").map(|s| s.trim_end_matches('\n')).ok_or("truncated: no end line")?;
        if !last.ends_with('\n') || BlockId::parse(sum) != Some(BlockId(Sha256::digest(body.as_bytes()).into())) {
            return Err("checksum mismatch (torn or altered)".into());
        }
        let mut lines = body.lines();
        let magic = lines.next().ok_or("empty")?;
        match magic.strip_prefix(MAGIC).and_then(|v| v.strip_prefix(' ')) {
            Some(v) if v == FORMAT_VERSION.to_string() => {}
            Some(v) => {
                return Err(format!("format version {v} is not supported (this globofs reads {FORMAT_VERSION})"))
            }
            None => return Err("not a globofs manifest".into()),
        }
        let mut v = Version {
            id: VersionId::parse("x").ok_or("internal")?,
            path: VolPath::root(),
            kind: Kind::Tombstone,
            parents: vec![],
            origin: String::new(),
            origin_name: String::new(),
            time: Timestamp::default(),
            size: 0,
            mode: 0,
            mtime: Timestamp::default(),
            target: None,
            blocks: vec![],
        };
        // id, path, kind, origin, size, time, mode, mtime, target: each at most once.
        let mut seen = [false; 9];
        for line in lines {
            let (key, val) = line.split_once(' ').ok_or_else(|| format!("bad line {line:?}"))?;
            let bad = || format!("bad {key} {val:?}");
            let once = |seen: &mut [bool; 9], i: usize| {
                if std::mem::replace(&mut seen[i], true) {
                    Err(format!("{key} given twice"))
                } else {
                    Ok(())
                }
            };
            match key {
                "id" => {
                    once(&mut seen, 0)?;
                    v.id = VersionId::parse(val).ok_or_else(bad)?;
                }
                "path" => {
                    once(&mut seen, 1)?;
                    v.path = VolPath::from_text(val).map_err(|e| e.to_string())?;
                    if v.path.is_root() {
                        return Err("path is the volume root".into());
                    }
                }
                "kind" => {
                    once(&mut seen, 2)?;
                    v.kind = Kind::parse(val).ok_or_else(bad)?;
                }
                "parent" => v.parents.push(VersionId::parse(val).ok_or_else(bad)?),
                "origin" => {
                    once(&mut seen, 3)?;
                    let (u, n) = val.split_once(' ').unwrap_or((val, ""));
                    uuid::Uuid::parse_str(u).map_err(|_| bad())?;
                    v.origin = u.to_string();
                    v.origin_name = String::from_utf8_lossy(&decode_text(n).ok_or_else(bad)?).into_owned();
                }
                "time" => {
                    once(&mut seen, 5)?;
                    v.time = Timestamp::parse(val).ok_or_else(bad)?;
                }
                "size" => {
                    once(&mut seen, 4)?;
                    v.size = digits(val).and_then(|d| d.parse().ok()).ok_or_else(bad)?;
                }
                "mode" => {
                    once(&mut seen, 6)?;
                    v.mode = digits(val).and_then(|d| u32::from_str_radix(d, 8).ok()).ok_or_else(bad)?;
                    if v.mode > 0o7777 {
                        return Err(bad());
                    }
                }
                "mtime" => {
                    once(&mut seen, 7)?;
                    v.mtime = Timestamp::parse(val).ok_or_else(bad)?;
                }
                "target" => {
                    once(&mut seen, 8)?;
                    v.target = Some(decode_text(val).ok_or_else(bad)?);
                }
                "block" => {
                    let (h, n) = val.split_once(' ').ok_or_else(bad)?;
                    let id = BlockId::parse(h).ok_or_else(bad)?;
                    let len: u32 = digits(n).and_then(|d| d.parse().ok()).ok_or_else(bad)?;
                    if len == 0 || len as usize > MAX_BLOCK {
                        return Err(bad());
                    }
                    v.blocks.push(BlockRef { id, len });
                }
                _ => return Err(format!("unknown key {key:?}")),
            }
        }
        if !seen[..8].iter().all(|&s| s) {
            return Err("missing one of id, path, kind, origin, size, time, mode, mtime".into());
        }
        let total: u64 = v.blocks.iter().map(|b| b.len as u64).sum();
        match v.kind {
            Kind::File if total != v.size => return Err(format!("size {} but blocks add up to {total}", v.size)),
            Kind::Symlink if v.target.as_ref().is_none_or(|t| t.is_empty() || t.contains(&0)) => {
                return Err("symlink without a valid target".into())
            }
            Kind::Dir | Kind::Tombstone | Kind::Symlink if !v.blocks.is_empty() => {
                return Err(format!("a {} has no blocks", v.kind.as_str()))
            }
            _ => {}
        }
        if v.parents.contains(&v.id) {
            return Err("a version cannot be its own parent".into());
        }
        Ok(v)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn sample() -> Version {
        Version {
            id: VersionId::generate("68d25a11"),
            path: VolPath::parse("dir/a file\nwith newline".as_bytes()).unwrap(),
            kind: Kind::File,
            parents: vec![VersionId::generate("68d25a11")],
            origin: "68d25a11-a34a-4bbb-a29e-c9bd06ff8c53".into(),
            origin_name: "laptop one".into(),
            time: Timestamp::now(),
            size: 5,
            mode: 0o644,
            mtime: Timestamp { sec: -5, nsec: 7 },
            target: None,
            blocks: vec![BlockRef { id: BlockId::of(b"hello"), len: 5 }],
        }
    }

    #[test]
    fn round_trip() {
        let v = sample();
        let bytes = v.encode();
        assert_eq!(Version::decode(&bytes).unwrap(), v);
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("globofs-version 1\nid "));
        assert!(text.contains("\nblock 2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824 5\n"));
    }

    #[test]
    fn torn_or_altered_manifests_are_refused() {
        let bytes = sample().encode();
        for cut in 0..bytes.len() {
            assert!(Version::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        flipped[30] ^= 1;
        assert!(Version::decode(&flipped).is_err());
    }

    #[test]
    fn inconsistent_manifests_are_refused() {
        let mut v = sample();
        v.size = 6;
        assert!(Version::decode(&v.encode()).unwrap_err().contains("add up"));
        let mut v = sample();
        v.kind = Kind::Symlink;
        assert!(Version::decode(&v.encode()).is_err());
    }
}
