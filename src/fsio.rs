//! File writes. Every file the engine creates or replaces is written to a temp file in the
//! same directory, optionally fsync'd, and renamed into place, so a reader (or a crash)
//! sees the old file or the new one, never a mix. Temp names start with [`TMP_PREFIX`];
//! nothing else in a volume does, so stale ones can be swept safely.
//!
//! This module is also the engine's one door to writing: every create, write, fsync,
//! rename, removal, truncation and `syncfs` of the engine goes through the small functions
//! below ([`create_new`], [`open_append`], [`write`], [`fsync`], [`rename`], ...), which
//! pass through the fault seam ([`crate::faults`]) so tests can make the Nth operation
//! fail, or lose what was not yet made durable.

use crate::error::{IoContext, Result};
use crate::faults::{self, Undo};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// Creates the new file `path` (it must not exist), for writing.
pub fn create_new(path: &Path, mode: u32) -> io::Result<File> {
    faults::check("create", path)?;
    let f = OpenOptions::new().read(true).write(true).create_new(true).mode(mode).open(path)?;
    faults::record(Undo::Created(path.to_path_buf()));
    Ok(f)
}

/// Opens `path` for appending (creating it if `create`), never following a symlink.
pub fn open_append(path: &Path, create: bool) -> io::Result<File> {
    faults::check("open", path)?;
    let existed = create && fs::symlink_metadata(path).is_ok();
    let f = OpenOptions::new().read(true).append(true).create(create).custom_flags(libc::O_NOFOLLOW).open(path)?;
    if create && !existed {
        faults::record(Undo::Created(path.to_path_buf()));
    }
    Ok(f)
}

/// Opens the existing file `path` for writing in place, never following a symlink.
pub fn open_write(path: &Path) -> io::Result<File> {
    faults::check("open", path)?;
    OpenOptions::new().write(true).custom_flags(libc::O_NOFOLLOW).open(path)
}

/// Writes all of `data` at the file's position (its end, for a file opened to append).
pub fn write(f: &mut File, data: &[u8], path: &Path) -> io::Result<()> {
    faults::check("write", path)?;
    faults::record_size(f, path);
    f.write_all(data)
}

/// Writes all of `data` at `offset`.
pub fn write_at(f: &File, data: &[u8], offset: u64, path: &Path) -> io::Result<()> {
    faults::check("write", path)?;
    faults::record_size(f, path);
    f.write_all_at(data, offset)
}

/// Sets the length of an open file.
pub fn set_len(f: &File, len: u64, path: &Path) -> io::Result<()> {
    faults::check("truncate", path)?;
    faults::record_size(f, path);
    f.set_len(len)
}

/// fsyncs an open file: its content is durable (its name needs its directory synced).
pub fn fsync(f: &File, path: &Path) -> io::Result<()> {
    faults::check("fsync", path)?;
    f.sync_all()?;
    faults::synced_file(path);
    Ok(())
}

/// Renames `from` to `to`, replacing `to`.
pub fn rename(from: &Path, to: &Path) -> io::Result<()> {
    faults::check("rename", to)?;
    let backup = faults::backup(to);
    fs::rename(from, to)?;
    faults::record(Undo::Renamed { from: from.to_path_buf(), to: to.to_path_buf(), backup });
    Ok(())
}

/// Removes the file `path`.
pub fn remove_file(path: &Path) -> io::Result<()> {
    faults::check("remove", path)?;
    let backup = faults::backup(path);
    fs::remove_file(path)?;
    if let Some(b) = backup {
        faults::record(Undo::Removed { path: path.to_path_buf(), backup: b });
    }
    Ok(())
}

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
        let mut f = create_new(&tmp, 0o644).ctx("create", &tmp)?;
        faults::check("write", dest).ctx("write", dest)?;
        fill(&mut f).ctx("write", dest)?;
        if durability == Durability::Now {
            fsync(&f, &tmp).ctx("fsync", dest)?;
        }
        drop(f);
        rename(&tmp, dest).ctx("rename into place", dest)?;
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
    let r = create_new(&tmp, 0o644).and_then(|mut f| write(&mut f, data, &tmp));
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
    faults::check("fsync", dir).ctx("fsync directory", dir)?;
    File::open(dir).and_then(|d| d.sync_all()).ctx("fsync directory", dir)?;
    faults::synced_dir(dir);
    Ok(())
}

/// Flushes every dirty page of the file system holding `path` (one `syncfs` call): the
/// barrier of a group commit.
pub fn sync_filesystem(path: &Path) -> Result<()> {
    faults::check("syncfs", path).ctx("syncfs", path)?;
    let f = File::open(path).ctx("open", path)?;
    // SAFETY: syncfs takes a valid open descriptor, which `f` owns for the call.
    let rc = unsafe { libc::syncfs(f.as_raw_fd()) };
    if rc != 0 {
        return Err(io::Error::last_os_error()).ctx("syncfs", path);
    }
    faults::synced_all();
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
    if path.is_dir() {
        return Ok(());
    }
    faults::check("mkdir", path).ctx("create directory", path)?;
    fs::create_dir_all(path).ctx("create directory", path)
}

/// `mkdir`: one directory, whose parent exists.
pub fn create_dir(path: &Path) -> io::Result<()> {
    faults::check("mkdir", path)?;
    fs::create_dir(path)
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
