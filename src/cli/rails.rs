//! Refusals of likely mistakes, each with its way out: `init` in a directory that holds
//! other files, `mount` over files or over another mount, `rm` of a directory without -r.

use globofs::error::{Error, Result};
use globofs::layout::Layout;
use globofs::paths::VolPath;
use globofs::volume::{holds_data, Volume};
use globofs::{mount, tree};
use std::path::Path;

/// `init DIR` without `--force`: DIR must be missing or empty (a fresh file system's
/// `lost+found` aside). A directory that is, or was, a volume is left to `Volume::init`,
/// whose refusals `--force` does not override.
pub fn init_dir(dir: &Path, force: bool) -> Result<()> {
    let layout = Layout::new(dir);
    if force || layout.config().exists() || holds_data(&layout) {
        return Ok(());
    }
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(()) };
    let names: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.file_name()).filter(|n| n != "lost+found").collect();
    match names.first() {
        None => Ok(()),
        Some(first) => Err(Error::Usage(format!(
            "{} is not empty (it holds {}{}): choose an empty or new directory, or pass --force to make it a volume with its files left as they are",
            dir.display(),
            first.to_string_lossy(),
            if names.len() > 1 { format!(" and {} more", names.len() - 1) } else { String::new() }
        ))),
    }
}

/// `mount MOUNTPOINT`: an empty directory that is not already a mount point (non-empty is
/// allowed with `--allow-non-empty`; the files are hidden while mounted, not touched).
pub fn mount_point(mnt: &Path, allow_non_empty: bool) -> Result<()> {
    let d = mnt.display();
    if !mnt.is_dir() {
        return Err(Error::Usage(format!("{d} is not a directory: mount on an empty directory (mkdir it)")));
    }
    if mount::is_mounted(mnt) {
        return Err(Error::Usage(format!("{d} is already a mount point: unmount it first (`fusermount3 -u {d}`)")));
    }
    let busy = std::fs::read_dir(mnt)
        .map_err(|e| Error::Io { op: "read mount point", path: mnt.to_path_buf(), source: e })?
        .next()
        .is_some();
    if busy && !allow_non_empty {
        return Err(Error::Usage(format!(
            "{d} is not empty: the mount would hide its files; use an empty directory or pass --allow-non-empty"
        )));
    }
    Ok(())
}

/// `rm PATH` without `-r`: PATH must not be a directory (the mount keeps POSIX unlink and
/// rmdir; this is the command line's rail).
pub fn rm_target(vol: &Volume, p: &VolPath, recursive: bool) -> Result<()> {
    if recursive || p.is_root() {
        return Ok(());
    }
    if tree::stat(vol, p)?.is_dir() {
        return Err(Error::Usage(format!("{p} is a directory: use `globofs rm -r {p}`")));
    }
    Ok(())
}
