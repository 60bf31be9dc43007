//! Getting content out: `read` of one version to a writer and `export` of a file or a tree
//! to plain files (mode and mtime restored). Every block is hash-checked before a byte of it
//! is written; a file that cannot be completed is removed, never left half-written.

use crate::error::{Error, IoContext, Result};
use crate::fsio;
use crate::manifest::{Kind, Version};
use crate::paths::VolPath;
use crate::progress::Progress;
use crate::tree::{self, Entry};
use crate::volume::Volume;
use std::fs::{self, File, FileTimes, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, UNIX_EPOCH};

/// Writes the content of file version `v` to `out`.
pub fn read_version(vol: &Volume, v: &Version, out: &mut dyn Write) -> Result<()> {
    match v.kind {
        Kind::File => {}
        Kind::Symlink => return Err(Error::Usage(format!("{}: is a symlink (see `globofs ls -l`)", v.path))),
        Kind::Dir => return Err(Error::IsDirectory(v.path.to_string())),
        Kind::Tombstone => {
            return Err(Error::Usage(format!(
                "{}@{}: is a deletion; pick an older version with `globofs log`",
                v.path, v.id
            )))
        }
    }
    for b in &v.blocks {
        let data = vol.read_block(&b.id, &v.path)?;
        out.write_all(&data).ctx("write output for", &v.path.to_os_path())?;
    }
    Ok(())
}

/// The version `spec` names: the live head, or `id` among the path's history.
pub fn resolve(vol: &Volume, path: &VolPath, id: Option<&str>) -> Result<Version> {
    match id {
        None => match tree::stat(vol, path) {
            Ok(Entry { head: Some(v), .. }) => Ok(v),
            Ok(_) => Err(Error::IsDirectory(path.to_string())),
            Err(Error::NotFound(p)) if vol.head(path)?.is_some() => {
                Err(Error::Usage(format!("{p}: was removed; `globofs log {p}` shows its versions")))
            }
            Err(e) => Err(e),
        },
        Some(id) => {
            let vid = crate::ids::VersionId::parse(id)
                .ok_or_else(|| Error::UnknownVersion { path: path.to_string(), version: id.to_string() })?;
            vol.version(path, &vid)
        }
    }
}

/// What an export did.
#[derive(Debug, Default, serde::Serialize)]
pub struct ExportStats {
    /// Files written.
    pub files: usize,
    /// Symlinks created.
    pub symlinks: usize,
    /// Directories created.
    pub dirs: usize,
    /// Content bytes written.
    pub bytes: u64,
}

/// Exports `path` (its head, or version `id`) to `dest`. A file goes to `dest` (or inside
/// it, if `dest` is a directory); a directory becomes `dest` (or `dest/<name>` if `dest`
/// exists), like `cp -r`.
pub fn export(vol: &Volume, path: &VolPath, id: Option<&str>, dest: &Path, show_progress: bool) -> Result<ExportStats> {
    let top = match id {
        Some(_) => Entry { path: path.clone(), head: Some(resolve(vol, path, id)?) },
        None => tree::stat(vol, path)?,
    };
    let mut dest = dest.to_path_buf();
    if dest.is_dir() && !path.is_root() {
        dest.push(top.path.to_os_path().file_name().unwrap_or_default());
    }
    let mut entries: Vec<(PathBuf, Version)> = Vec::new();
    let mut dirs: Vec<(PathBuf, Option<Version>)> = Vec::new();
    tree::walk(vol, &top, &mut |e| {
        let rel = e.path.to_os_path();
        let at = match rel.strip_prefix(top.path.to_os_path()) {
            Ok(r) if !r.as_os_str().is_empty() => dest.join(r),
            _ => dest.clone(),
        };
        match &e.head {
            Some(v) if v.kind != Kind::Dir => entries.push((at, v.clone())),
            h => dirs.push((at, h.clone())),
        }
        Ok(())
    })?;
    let mut stats = ExportStats { dirs: dirs.len(), ..Default::default() };
    for (d, _) in &dirs {
        fs::create_dir_all(d).ctx("create directory", d)?;
    }
    // Files first, in parallel; symlinks after, so nothing is ever written through a link.
    let (links, files): (Vec<_>, Vec<_>) = entries.into_iter().partition(|(_, v)| v.kind == Kind::Symlink);
    let total = files.iter().map(|(_, v)| v.size).sum();
    let progress = Progress::bytes("export", total, show_progress);
    let next = AtomicUsize::new(0);
    let failure: Mutex<Option<Error>> = Mutex::new(None);
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).min(4);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((at, v)) = files.get(i) else { return };
                if failure.lock().map_or(true, |f| f.is_some()) {
                    return;
                }
                match export_file(vol, v, at) {
                    Ok(()) => progress.inc(v.size),
                    Err(e) => {
                        if let Ok(mut f) = failure.lock() {
                            f.get_or_insert(e);
                        }
                        return;
                    }
                }
            });
        }
    });
    progress.finish();
    if let Some(e) = failure.into_inner().ok().flatten() {
        return Err(e);
    }
    stats.files = files.len();
    stats.bytes = total;
    for (at, v) in &links {
        let target = std::ffi::OsStr::from_bytes(v.target.as_deref().unwrap_or_default());
        match fs::symlink_metadata(at) {
            Ok(m) if m.is_dir() => return Err(Error::Exists(at.display().to_string())),
            Ok(_) => fs::remove_file(at).ctx("replace", at)?,
            Err(_) => {}
        }
        std::os::unix::fs::symlink(target, at).ctx("create symlink", at)?;
        stats.symlinks += 1;
    }
    // Directory times last, deepest first, since creating their content changed them.
    for (d, v) in dirs.iter().rev() {
        if let Some(v) = v {
            fs::set_permissions(d, fs::Permissions::from_mode(v.mode)).ctx("set mode of", d)?;
            let t = File::open(d).and_then(|f| f.set_times(FileTimes::new().set_modified(system_time(v))));
            t.ctx("set mtime of", d)?;
        }
    }
    Ok(stats)
}

fn system_time(v: &Version) -> std::time::SystemTime {
    let secs = Duration::from_secs(v.mtime.sec.unsigned_abs());
    let base = if v.mtime.sec >= 0 { UNIX_EPOCH + secs } else { UNIX_EPOCH - secs };
    base + Duration::from_nanos(v.mtime.nsec.into())
}

/// Writes one file version to `at` through a temp file renamed into place, so a failure
/// (a missing block, a full disk) leaves whatever was at `at` untouched.
fn export_file(vol: &Volume, v: &Version, at: &Path) -> Result<()> {
    if fs::symlink_metadata(at).is_ok_and(|m| !m.is_file()) {
        return Err(Error::Exists(at.display().to_string()));
    }
    let tmp = fsio::tmp_path(at);
    let r = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).ctx("create", at)?;
        let mut w = io::BufWriter::with_capacity(256 << 10, &mut f);
        read_version(vol, v, &mut w)?;
        w.flush().ctx("write", at)?;
        drop(w);
        f.set_permissions(fs::Permissions::from_mode(v.mode)).ctx("set mode of", at)?;
        f.set_times(FileTimes::new().set_modified(system_time(v))).ctx("set mtime of", at)?;
        fs::rename(&tmp, at).ctx("rename into place", at)
    })();
    if r.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    r
}
