//! The block store: `local/hashes/ab/cd/<rest>.gz`, one gzip file per distinct block, named
//! by the SHA-256 of the uncompressed bytes (docs/FORMAT.md). Blocks are created once,
//! atomically, and never rewritten. Every block handed out has been hash-checked; this
//! module never serves bytes that do not match their name.

use crate::error::{Error, IoContext, Result};
use crate::fsio::{self, Durability};
use crate::ids::BlockId;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// No block is larger than this; a block file that inflates past it is corrupt (or a bomb).
pub const MAX_BLOCK: usize = 16 << 20;

/// Size of the smallest gzip file (header and trailer around an empty deflate stream).
const MIN_GZIP: u64 = 20;

/// A directory of gzipped, content-addressed blocks.
#[derive(Clone, Debug)]
pub struct BlockStore {
    dir: PathBuf,
    level: u32,
}

impl BlockStore {
    /// The store rooted at `dir` (a volume's `local/hashes`), compressing at gzip `level`.
    pub fn new(dir: PathBuf, level: u32) -> BlockStore {
        BlockStore { dir, level }
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where block `id` lives: `ab/cd/<remaining 60 hex digits>.gz`.
    pub fn path(&self, id: &BlockId) -> PathBuf {
        block_path(&self.dir, id)
    }

    /// True if the block file exists (its content is not checked).
    pub fn contains(&self, id: &BlockId) -> bool {
        fs::symlink_metadata(self.path(id)).is_ok()
    }

    /// Stores `data` under `id` unless it is already there. Returns the number of bytes
    /// written to disk (0 for a duplicate). The caller makes it durable (group commit).
    pub fn put(&self, id: &BlockId, data: &[u8]) -> Result<u64> {
        let path = self.path(id);
        // An existing block is trusted without reading it (dedup must stay cheap), unless it
        // is shorter than any gzip file: what a power loss leaves of a block renamed before
        // its commit's sync. Such a file is replaced; verify finds subtler damage.
        if fs::symlink_metadata(&path).is_ok_and(|m| m.len() >= MIN_GZIP) {
            return Ok(0);
        }
        let gz = encode(data, self.level).ctx("compress block for", &path)?;
        match fsio::write_atomic(&path, &gz, Durability::Deferred) {
            Err(e) if e.is_not_found() => {
                fsio::create_dirs(path.parent().unwrap_or(&self.dir))?;
                fsio::write_atomic(&path, &gz, Durability::Deferred)?;
            }
            r => r?,
        }
        Ok(gz.len() as u64)
    }

    /// Stores a block file already encoded and checked (fetched from a peer) under `id`.
    pub fn put_encoded(&self, id: &BlockId, gz: &[u8]) -> Result<()> {
        let path = self.path(id);
        if fs::symlink_metadata(&path).is_ok_and(|m| m.len() >= MIN_GZIP) {
            return Ok(());
        }
        self.replace_encoded(id, gz)
    }

    /// Replaces the file of block `id`, whatever is there (a damaged copy), with `gz`, a
    /// block file already checked against `id` (`verify --repair`). Atomic: readers see the
    /// old file or the new one. The caller syncs the file system.
    pub fn replace_encoded(&self, id: &BlockId, gz: &[u8]) -> Result<()> {
        let path = self.path(id);
        fsio::create_dirs(path.parent().unwrap_or(&self.dir))?;
        fsio::write_atomic(&path, gz, Durability::Deferred)
    }

    /// Reads, inflates and hash-checks block `id`; `file` names the file that needs it, for
    /// the error message.
    pub fn get(&self, id: &BlockId, file: &str) -> Result<Vec<u8>> {
        let path = self.path(id);
        let gz = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::MissingBlock { path: file.to_string(), block: id.hex(), peers: vec![] })
            }
            Err(e) => return Err(e).ctx("read block", &path),
        };
        decode_checked(id, &gz).map_err(|reason| Error::CorruptBlock {
            path: file.to_string(),
            block: id.hex(),
            reason,
        })
    }

    /// Every block id in the store, with its file path. Files that are not blocks (temp
    /// files, stray names) are returned as `Err(path)` so callers can report them.
    pub fn list(&self) -> Result<Vec<std::result::Result<BlockId, PathBuf>>> {
        let mut out = Vec::new();
        for e in walkdir::WalkDir::new(&self.dir).min_depth(3).max_depth(3) {
            let e = e.map_err(|e| crate::error::walk_error("list blocks in", &self.dir, e))?;
            if !e.file_type().is_file() {
                continue;
            }
            out.push(id_from_path(&self.dir, e.path()).ok_or_else(|| e.path().to_path_buf()));
        }
        Ok(out)
    }
}

/// Path of block `id` under a `hashes` directory.
pub fn block_path(dir: &Path, id: &BlockId) -> PathBuf {
    let h = id.hex();
    dir.join(&h[0..2]).join(&h[2..4]).join(format!("{}.gz", &h[4..]))
}

fn id_from_path(dir: &Path, p: &Path) -> Option<BlockId> {
    let rel = p.strip_prefix(dir).ok()?;
    let parts: Vec<&str> = rel.iter().map(|c| c.to_str()).collect::<Option<_>>()?;
    match parts.as_slice() {
        [a, b, rest] => {
            let rest = rest.strip_suffix(".gz")?;
            let id = BlockId::parse(&format!("{a}{b}{rest}"))?;
            (a.len() == 2 && b.len() == 2).then_some(id)
        }
        _ => None,
    }
}

/// Gzips `data`: at `level` if it looks compressible, stored (level 0) if not, so random
/// or already-compressed data costs no deflate time.
pub fn encode(data: &[u8], level: u32) -> io::Result<Vec<u8>> {
    let level = if looks_incompressible(data) { 0 } else { level };
    let room = if level == 0 { data.len() + data.len() / 1024 + 64 } else { data.len() / 2 + 64 };
    let mut enc = GzEncoder::new(Vec::with_capacity(room), Compression::new(level));
    enc.write_all(data)?;
    enc.finish()
}

/// Inflates a block file and checks it against its id. Never panics on bad input and never
/// inflates past [`MAX_BLOCK`].
pub fn decode_checked(id: &BlockId, gz: &[u8]) -> std::result::Result<Vec<u8>, String> {
    // The gzip trailer's size field (mod 2^32) sizes the buffer; it is only a hint.
    let tail = gz.len().checked_sub(4).and_then(|i| gz.get(i..)).and_then(|t| <[u8; 4]>::try_from(t).ok());
    let hint = tail.map_or(0, |t| u32::from_le_bytes(t) as usize);
    let mut out = Vec::with_capacity(hint.min(MAX_BLOCK));
    GzDecoder::new(gz)
        .take(MAX_BLOCK as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("not a valid gzip file: {e}"))?;
    if out.len() > MAX_BLOCK {
        return Err(format!("inflates past {MAX_BLOCK} bytes"));
    }
    if BlockId::of(&out) != *id {
        return Err("content does not match its SHA-256 name".into());
    }
    Ok(out)
}

/// Order-0 entropy of a sample above 7.5 bits per byte: deflate would gain next to nothing.
fn looks_incompressible(data: &[u8]) -> bool {
    if data.len() < 512 {
        return false;
    }
    let mut hist = [0u32; 256];
    let step = (data.len() / 65536).max(1);
    let mut n = 0u32;
    for &b in data.iter().step_by(step) {
        hist[b as usize] += 1;
        n += 1;
    }
    let n = n as f64;
    let entropy: f64 = hist
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum();
    entropy > 7.5
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_dedup_and_zcat_compatible() {
        let d = tempfile::tempdir().unwrap();
        let s = BlockStore::new(d.path().to_path_buf(), 6);
        let data = b"hello hello hello hello".repeat(100);
        let id = BlockId::of(&data);
        assert!(s.put(&id, &data).unwrap() > 0);
        assert_eq!(s.put(&id, &data).unwrap(), 0);
        assert_eq!(s.get(&id, "f").unwrap(), data);
        let p = s.path(&id);
        assert!(p.to_str().unwrap().ends_with(&format!(
            "{}/{}/{}.gz",
            &id.hex()[..2],
            &id.hex()[2..4],
            &id.hex()[4..]
        )));
        let mut z = Vec::new();
        flate2::read::GzDecoder::new(&fs::read(&p).unwrap()[..]).read_to_end(&mut z).unwrap();
        assert_eq!(z, data);
        assert_eq!(s.list().unwrap().into_iter().map(|r| r.unwrap()).collect::<Vec<_>>(), vec![id]);
    }

    #[test]
    fn random_data_is_stored_not_deflated() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        assert!(looks_incompressible(&data));
        let gz = encode(&data, 6).unwrap();
        assert!(gz.len() >= data.len());
        assert!(!looks_incompressible(&b"text ".repeat(1000)));
    }

    #[test]
    fn bad_blocks_are_refused() {
        let data = b"abc".to_vec();
        let id = BlockId::of(&data);
        assert!(decode_checked(&id, b"garbage").is_err());
        assert!(decode_checked(&BlockId::of(b"other"), &encode(&data, 6).unwrap()).is_err());
        let bomb = encode(&vec![0u8; MAX_BLOCK + 10], 9).unwrap();
        assert!(decode_checked(&id, &bomb).unwrap_err().contains("inflates past"));
        let d = tempfile::tempdir().unwrap();
        let s = BlockStore::new(d.path().to_path_buf(), 6);
        assert!(matches!(s.get(&id, "f"), Err(Error::MissingBlock { .. })));
        s.put(&id, &data).unwrap();
        fs::write(s.path(&id), encode(b"abd", 6).unwrap()).unwrap();
        assert!(matches!(s.get(&id, "f"), Err(Error::CorruptBlock { .. })));
    }
}
