//! `globofs gc`: frees the block files no remaining version names (mark and sweep), removes
//! temp files left by crashes, and with `cacheonly` evicts old pulled blocks that a peer
//! still holds. It reads manifests and file names only, never block contents (except a
//! peer's copy before evicting ours). It never acts on a listing that failed: any error
//! while marking stops it before anything is deleted.
//!
//! Safety against concurrent writers: gc holds the block lease exclusively (writers hold it
//! shared from before they store a block until its version is committed) and the commit
//! lock, so no version can appear or move while it marks and sweeps.

use crate::blocks;
use crate::config::parse_duration;
use crate::error::{Error, IoContext, Result};
use crate::fsio::{self, Durability};
use crate::ids::BlockId;
use crate::paths::VolPath;
use crate::peers;
use crate::volume::Volume;
use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// Temp files in the block store younger than this may belong to a block being pulled
/// from a peer right now (pulls take no lock); older ones are left by a crash.
const TMP_GRACE: Duration = Duration::from_secs(600);

/// What gc did.
#[derive(Debug, Default, serde::Serialize)]
pub struct GcReport {
    /// Manifests read.
    pub manifests: usize,
    /// Distinct blocks the remaining versions name.
    pub referenced: usize,
    /// Block files found in the store.
    pub stored: usize,
    /// Unreferenced block files deleted.
    pub deleted: usize,
    /// Bytes those files took.
    pub freed_bytes: u64,
    /// Stale temp files removed.
    pub temp_files: usize,
    /// Pulled blocks evicted from the cache (`cacheonly`).
    pub evicted: usize,
    /// Bytes those took.
    pub evicted_bytes: u64,
}

/// Runs gc on the volume.
pub fn gc(vol: &Volume) -> Result<GcReport> {
    let _lease = vol.block_lease_exclusive()?;
    let _lock = vol.lock()?;
    let mut report = GcReport::default();
    let (marked, own) = mark(vol, &mut report)?;
    report.referenced = marked.len();
    sweep(vol, &marked, &mut report)?;
    if vol.config().cacheonly {
        evict(vol, &own, &mut report)?;
    }
    Ok(report)
}

/// Every block named by a manifest on disk (all heads and history), and those named by
/// versions made on this node. Also removes stale temp manifests (commits stage them under
/// the commit lock, which gc holds, so any found now were left by a crash).
fn mark(vol: &Volume, report: &mut GcReport) -> Result<(HashSet<BlockId>, HashSet<BlockId>)> {
    let mut marked = HashSet::new();
    let mut own = HashSet::new();
    for path in vol.paths(&VolPath::root())? {
        let listing = vol.listing(&path)?;
        for t in listing.temps {
            remove(&t)?;
            report.temp_files += 1;
        }
        for v in listing.versions {
            report.manifests += 1;
            let mine = v.origin == vol.config().uuid;
            for b in &v.blocks {
                marked.insert(b.id);
                if mine {
                    own.insert(b.id);
                }
            }
        }
    }
    mark_quarantined(vol, &mut marked)?;
    Ok((marked, own))
}

/// Marks the blocks that the `block` lines of quarantined manifests still name
/// (`local/quarantine/manifests/`, written by `verify --repair`): such a manifest fails its
/// checks, but a person may still rebuild the file from it, so its blocks stay.
fn mark_quarantined(vol: &Volume, marked: &mut HashSet<BlockId>) -> Result<()> {
    let dir = vol.layout().quarantine_manifests();
    if !dir.is_dir() {
        return Ok(());
    }
    for e in walkdir::WalkDir::new(&dir) {
        let e = e.map_err(|e| crate::error::walk_error("list", &dir, e))?;
        if !e.file_type().is_file() {
            continue;
        }
        let mut bytes = Vec::new();
        fs::File::open(e.path())
            .and_then(|f| f.take(crate::manifest::MAX_MANIFEST as u64 + 1).read_to_end(&mut bytes))
            .ctx("read", e.path())?;
        for line in String::from_utf8_lossy(&bytes).lines() {
            if let Some(id) = line.strip_prefix("block ").and_then(|r| r.split(' ').next()).and_then(BlockId::parse) {
                marked.insert(id);
            }
        }
    }
    Ok(())
}

fn sweep(vol: &Volume, marked: &HashSet<BlockId>, report: &mut GcReport) -> Result<()> {
    let now = SystemTime::now();
    for entry in vol.blocks().list()? {
        match entry {
            Ok(id) => {
                report.stored += 1;
                if !marked.contains(&id) {
                    report.freed_bytes += remove(&vol.blocks().path(&id))?;
                    report.deleted += 1;
                }
            }
            Err(path) if path.file_name().is_some_and(|n| fsio::is_tmp_name(n.as_bytes())) => {
                let age = fs::symlink_metadata(&path).and_then(|m| m.modified()).map(|t| now.duration_since(t));
                if matches!(age, Ok(Ok(a)) if a > TMP_GRACE) {
                    remove(&path)?;
                    report.temp_files += 1;
                }
            }
            Err(_) => {} // a stray file: `verify` reports it, gc leaves it alone
        }
    }
    Ok(())
}

/// Evicts pulled blocks older than `cachetime` that no version made here names, once a
/// reachable peer is seen to hold a good copy (hash-checked).
fn evict(vol: &Volume, own: &HashSet<BlockId>, report: &mut GcReport) -> Result<()> {
    let list = vol.layout().pulled();
    let text = match fs::read_to_string(&list) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).ctx("read", &list),
    };
    let cachetime = parse_duration(&vol.config().cachetime)
        .map_err(|e| Error::Config { path: vol.layout().config(), reason: format!("cachetime: {e}") })?;
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut pulled: HashMap<BlockId, u64> = HashMap::new();
    for line in text.lines() {
        if let Some((id, t)) = line.split_once(' ').and_then(|(i, t)| Some((BlockId::parse(i)?, t.parse().ok()?))) {
            let e = pulled.entry(id).or_insert(t);
            *e = (*e).max(t);
        }
    }
    let peers: Vec<_> = peers::list(vol)?.into_iter().filter(|p| p.reachable()).collect();
    let mut keep = String::new();
    let mut ids: Vec<_> = pulled.into_iter().collect();
    ids.sort();
    for (id, t) in ids {
        let local = vol.blocks().path(&id);
        if !local.exists() {
            continue;
        }
        let old = now.saturating_sub(t) >= cachetime.as_secs();
        let held = || {
            peers.iter().any(|p| {
                let theirs = blocks::block_path(&p.layout().hashes(), &id);
                fs::read(theirs).is_ok_and(|gz| blocks::decode_checked(&id, &gz).is_ok())
            })
        };
        if old && !own.contains(&id) && held() {
            report.evicted_bytes += remove(&local)?;
            report.evicted += 1;
        } else {
            keep.push_str(&format!("{id} {t}\n"));
        }
    }
    fsio::write_atomic(&list, keep.as_bytes(), Durability::Now)
}

/// Deletes a file; returns the bytes it took (0 if it was already gone).
fn remove(path: &Path) -> Result<u64> {
    let len = match fs::symlink_metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).ctx("stat", path),
    };
    match crate::fsio::remove_file(path) {
        Ok(()) => Ok(len),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e).ctx("remove", path),
    }
}
