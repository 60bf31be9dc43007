//! Paths inside a volume: [`VolPath`] is a validated, relative path of byte-string names.
//! This module owns validation (no `..`, no absolute or empty components, no NUL, no reserved
//! names), the escaping of names under `local/root/`, and the text form used in manifests.
//! It must never accept a path that could leave the directory it is joined to.

use crate::error::{Error, Result};
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// Name of the per-path directory that holds version manifests under `local/root/`.
pub const VERSIONS_DIR: &str = "versions";
/// Top-level name reserved for the mount's control tree.
pub const RESERVED_TOP: &str = ".globofs";
/// Longest accepted name, in bytes (after escaping), as on most file systems.
const NAME_MAX: usize = 255;

/// A validated relative path inside a volume; the empty path is the volume's root.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct VolPath(Vec<Vec<u8>>);

impl VolPath {
    /// The root of the volume.
    pub fn root() -> VolPath {
        VolPath(Vec::new())
    }

    /// Parses a path given by a user or a peer. A single trailing `/` is ignored; the empty
    /// string and `.` are the root.
    pub fn parse(raw: &[u8]) -> Result<VolPath> {
        let shown = || String::from_utf8_lossy(raw).into_owned();
        let bad = |reason: &str| Error::InvalidPath { path: shown(), reason: reason.to_string() };
        if raw.contains(&0) {
            return Err(bad("contains a NUL byte"));
        }
        if raw.first() == Some(&b'/') {
            return Err(bad("absolute paths are not allowed; give a path relative to the volume"));
        }
        let raw = raw.strip_suffix(b"/").unwrap_or(raw);
        if raw.is_empty() || raw == b"." {
            return Ok(VolPath::root());
        }
        let mut parts = Vec::new();
        for c in raw.split(|&b| b == b'/') {
            match c {
                b"" => return Err(bad("empty path component")),
                b"." | b".." => return Err(bad("`.` and `..` components are not allowed")),
                _ => {}
            }
            if escape_name(c).len() > NAME_MAX {
                return Err(bad("a name is longer than 255 bytes"));
            }
            parts.push(c.to_vec());
        }
        if parts.first().map(|p| p.as_slice()) == Some(RESERVED_TOP.as_bytes()) {
            return Err(bad("`.globofs` at the top of a volume is reserved for the mount"));
        }
        Ok(VolPath(parts))
    }

    /// Parses a path given as an OS string (command line).
    pub fn from_os(s: &OsStr) -> Result<VolPath> {
        VolPath::parse(s.as_bytes())
    }

    /// True for the volume's root.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The names, outermost first.
    pub fn components(&self) -> impl Iterator<Item = &[u8]> {
        self.0.iter().map(|c| c.as_slice())
    }

    /// The last name, or `None` for the root.
    pub fn file_name(&self) -> Option<&[u8]> {
        self.0.last().map(|c| c.as_slice())
    }

    /// The containing directory, or `None` for the root.
    pub fn parent(&self) -> Option<VolPath> {
        let n = self.0.len().checked_sub(1)?;
        Some(VolPath(self.0[..n].to_vec()))
    }

    /// This path with one more name. `name` must be a single valid component.
    pub fn join(&self, name: &[u8]) -> Result<VolPath> {
        let mut raw = self.to_bytes();
        if !raw.is_empty() {
            raw.push(b'/');
        }
        raw.extend_from_slice(name);
        let p = VolPath::parse(&raw)?;
        if p.0.len() != self.0.len() + 1 {
            return Err(Error::InvalidPath {
                path: String::from_utf8_lossy(&raw).into_owned(),
                reason: "a name may not contain `/`".into(),
            });
        }
        Ok(p)
    }

    /// True if `self` is `other` or lies beneath it.
    pub fn starts_with(&self, other: &VolPath) -> bool {
        self.0.starts_with(&other.0)
    }

    /// Replaces the prefix `from` with `to` (for moves of trees).
    pub fn rebase(&self, from: &VolPath, to: &VolPath) -> Option<VolPath> {
        let rest = self.0.strip_prefix(from.0.as_slice())?;
        let mut v = to.0.clone();
        v.extend(rest.iter().cloned());
        Some(VolPath(v))
    }

    /// The path as raw bytes joined with `/`.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.join(&b'/')
    }

    /// The path relative to some directory, as an OS path (for export).
    pub fn to_os_path(&self) -> PathBuf {
        PathBuf::from(OsString::from_vec(self.to_bytes()))
    }

    /// Where this path's entry lives under a `local/root` directory.
    pub fn disk_dir(&self, root: &Path) -> PathBuf {
        let mut p = root.to_path_buf();
        for c in &self.0 {
            p.push(OsStr::from_bytes(&escape_name(c)));
        }
        p
    }

    /// The text form used in manifests and logs: printable UTF-8 as is, `%` and every
    /// control or non-UTF-8 byte as `%XX`.
    pub fn to_text(&self) -> String {
        encode_text(&self.to_bytes())
    }

    /// Parses the text form written by [`VolPath::to_text`], validating the result.
    pub fn from_text(s: &str) -> Result<VolPath> {
        let raw =
            decode_text(s).ok_or_else(|| Error::InvalidPath { path: s.to_string(), reason: "bad %-escape".into() })?;
        VolPath::parse(&raw)
    }
}

impl fmt::Display for VolPath {
    /// Lossy, for messages; the root shows as `/`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_root() {
            return f.write_str("/");
        }
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}

impl fmt::Debug for VolPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VolPath({})", self.to_text())
    }
}

/// Disk name of a user name under `local/root/`: `versions` and names starting with `%`
/// get one more leading `%`, so no user name can collide with a `versions` directory.
pub fn escape_name(name: &[u8]) -> Vec<u8> {
    if name == VERSIONS_DIR.as_bytes() || name.first() == Some(&b'%') {
        let mut v = Vec::with_capacity(name.len() + 1);
        v.push(b'%');
        v.extend_from_slice(name);
        v
    } else {
        name.to_vec()
    }
}

/// Inverse of [`escape_name`]; `None` for the `versions` directory itself and temp files.
pub fn unescape_name(disk: &[u8]) -> Option<Vec<u8>> {
    if disk == VERSIONS_DIR.as_bytes() {
        return None;
    }
    Some(disk.strip_prefix(b"%").unwrap_or(disk).to_vec())
}

/// `%XX`-escapes `%`, control bytes, and bytes that are not valid UTF-8.
pub fn encode_text(raw: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len());
    for chunk in raw.utf8_chunks() {
        for ch in chunk.valid().chars() {
            if ch == '%' || ch.is_control() {
                let mut buf = [0u8; 4];
                for b in ch.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("%{b:02X}"));
                }
            } else {
                out.push(ch);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Inverse of [`encode_text`]; `None` on a malformed escape.
pub fn decode_text(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3).filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()))?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_escaping_paths() {
        for bad in [&b"../x"[..], b"/etc/passwd", b"a//b", b"a/../b", b"a/./b", b"a\0b", b".globofs/x"] {
            assert!(VolPath::parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(VolPath::parse(&vec![b'x'; 256]).is_err());
    }

    #[test]
    fn accepts_odd_but_valid_names() {
        for ok in [&b"a b/c\nd"[..], "été/日本".as_bytes(), b"\xff\xfe", b"versions/versions", b"%x", b"sub/.globofs"]
        {
            let p = VolPath::parse(ok).unwrap();
            assert_eq!(p.to_bytes(), ok);
            assert_eq!(VolPath::from_text(&p.to_text()).unwrap(), p);
            assert!(!p.to_text().contains('\n'));
        }
    }

    #[test]
    fn escaping_keeps_versions_dir_free() {
        assert_eq!(escape_name(b"versions"), b"%versions");
        assert_eq!(escape_name(b"%a"), b"%%a");
        assert_eq!(unescape_name(b"%versions").unwrap(), b"versions");
        assert_eq!(unescape_name(b"%%a").unwrap(), b"%a");
        assert_eq!(unescape_name(b"versions"), None);
        let p = VolPath::parse(b"versions/x").unwrap();
        assert_eq!(p.disk_dir(Path::new("/r")), Path::new("/r/%versions/x"));
    }

    #[test]
    fn trailing_slash_and_root() {
        assert!(VolPath::parse(b"").unwrap().is_root());
        assert!(VolPath::parse(b".").unwrap().is_root());
        assert_eq!(VolPath::parse(b"a/").unwrap(), VolPath::parse(b"a").unwrap());
    }
}
