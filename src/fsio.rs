//! Atomic file writes. Every file the engine creates or replaces is written to a temp file
//! in the same directory, optionally fsync'd, and renamed into place, so a reader (or a
//! crash) sees the old file or the new one, never a mix. Temp names start with
//! [`TMP_PREFIX`]; nothing else in a volume does, so stale ones can be swept safely.

use crate::error::{IoContext, Result};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// Prefix of every temp file the engine writes.
pub const TMP_PREFIX: &str = ".tmp-";

/// When a write must reach stable storage.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Durability {
    /// fsync the file and its directory before returning.
    Now,
    /// Leave it to a later [`sync_filesystem`] by the caller, which must happen before the
    /// write is acknowledged or anything durable points at it (group commit).
    Deferred,
}

/// True for names the engine uses for temp files.
pub fn is_tmp_name(name: &[u8]) -> bool {
    name.starts_with(TMP_PREFIX.as_bytes())
}

/// A fresh temp name beside `dest`.
pub fn tmp_path(dest: &Path) -> PathBuf {
    let r = uuid::Uuid::new_v4();
    let name = format!("{TMP_PREFIX}{}-{}", std::process::id(), &r.simple().to_string()[..12]);
    dest.with_file_name(name)
}

/// Writes `dest` atomically with the bytes that `fill` writes, replacing any old file.
pub fn write_atomic_with(
    dest: &Path,
    durability: Durability,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<()> {
    let tmp = tmp_path(dest);
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).mode(0o644).open(&tmp).ctx("create", &tmp)?;
        fill(&mut f).ctx("write", dest)?;
        if durability == Durability::Now {
            f.sync_all().ctx("fsync", dest)?;
        }
        drop(f);
        fs::rename(&tmp, dest).ctx("rename into place", dest)?;
        if durability == Durability::Now {
            sync_dir(dest)?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Writes `data` to a new temp file beside `dest` (not synced) and returns its path; the
/// caller renames it into place after a sync (see `volume::write_all_atomic`).
pub fn stage(dest: &Path, data: &[u8]) -> Result<PathBuf> {
    let tmp = tmp_path(dest);
    let r = OpenOptions::new().write(true).create_new(true).mode(0o644).open(&tmp).and_then(|mut f| f.write_all(data));
    if let Err(e) = r {
        let _ = fs::remove_file(&tmp);
        return Err(e).ctx("write", dest);
    }
    Ok(tmp)
}

/// Writes `dest` atomically with `data`.
pub fn write_atomic(dest: &Path, data: &[u8], durability: Durability) -> Result<()> {
    write_atomic_with(dest, durability, |f| f.write_all(data))
}

/// fsyncs the directory holding `path`, so a rename in it is durable.
pub fn sync_dir(path: &Path) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    File::open(dir).and_then(|d| d.sync_all()).ctx("fsync directory", dir)
}

/// Flushes every dirty page of the file system holding `path` (one `syncfs` call): the
/// barrier of a group commit.
pub fn sync_filesystem(path: &Path) -> Result<()> {
    let f = File::open(path).ctx("open", path)?;
    // SAFETY: syncfs takes a valid open descriptor, which `f` owns for the call.
    let rc = unsafe { libc::syncfs(f.as_raw_fd()) };
    if rc != 0 {
        return Err(io::Error::last_os_error()).ctx("syncfs", path);
    }
    Ok(())
}

/// Opens (creating) the lock file `path` and takes an exclusive `flock` on it, waiting for
/// other processes of this node; the lock lasts as long as the returned file is open.
pub fn lock_file(path: &Path) -> Result<File> {
    let f = OpenOptions::new().create(true).truncate(false).write(true).open(path).ctx("open lock", path)?;
    fs2::FileExt::lock_exclusive(&f).ctx("lock", path)?;
    Ok(f)
}

/// Like [`lock_file`], but a shared lock: many holders at once, none while an exclusive
/// holder has it.
pub fn lock_file_shared(path: &Path) -> Result<File> {
    let f = OpenOptions::new().create(true).truncate(false).write(true).open(path).ctx("open lock", path)?;
    fs2::FileExt::lock_shared(&f).ctx("lock", path)?;
    Ok(f)
}

/// `mkdir -p`.
pub fn create_dirs(path: &Path) -> Result<()> {
    fs::create_dir_all(path).ctx("create directory", path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        write_atomic(&p, b"one", Durability::Now).unwrap();
        write_atomic(&p, b"two", Durability::Deferred).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
        sync_filesystem(d.path()).unwrap();
    }

    #[test]
    fn failed_fill_leaves_old_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        write_atomic(&p, b"old", Durability::Now).unwrap();
        let r = write_atomic_with(&p, Durability::Now, |_| Err(io::Error::other("boom")));
        assert!(r.is_err());
        assert_eq!(fs::read(&p).unwrap(), b"old");
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }
}
