//! The fault seam, for tests. Every write operation of the engine passes [`check`] first
//! (through `fsio`), which counts it. `GLOBOFS_FAULTS` picks one operation to go wrong:
//!
//! | value | effect |
//! |---|---|
//! | `eio@N` | the Nth write operation fails with EIO, once |
//! | `enospc@N+` | every write operation from the Nth fails with ENOSPC (a full disk) |
//! | `crash@N` | at the Nth operation, everything not yet made durable is undone, as a power loss would leave it, and the process kills itself with SIGKILL |
//!
//! `eio` and `enospc` take `@N` or `@N+`. Each injected fault prints one line on stderr,
//! `globofs: fault injected: ...`, so a test knows it fired. For `crash`, the seam keeps an
//! undo list of what happened since the last barrier: files created, renamed over, removed
//! (kept as hard-linked backups), appended to or truncated (old length, old bytes). A
//! `syncfs` makes everything durable and clears the list; an fsync makes that file's
//! content durable; an fsync of a directory makes the names in it durable. A crash undoes
//! the rest, newest first: the state a file system that kept nothing unsynced would show,
//! which is what the durability steps in docs/DESIGN.md must survive.
//!
//! Without the variable, [`check`] is one atomic load.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// What a crash must undo of one operation.
pub enum Undo {
    /// A file made since the last barrier.
    Created(PathBuf),
    /// `from` renamed to `to`; `backup` holds what `to` was.
    Renamed { from: PathBuf, to: PathBuf, backup: Option<PathBuf> },
    /// A file removed; `backup` holds it.
    Removed { path: PathBuf, backup: PathBuf },
    /// A file whose size or bytes changed in place: its bytes before.
    Resized { path: PathBuf, old: Vec<u8> },
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Eio,
    Enospc,
    Crash,
}

struct Plan {
    kind: Kind,
    at: u64,
    forever: bool,
    count: u64,
    undo: Vec<Undo>,
    backups: u64,
}

fn plan() -> Option<&'static Mutex<Plan>> {
    static PLAN: OnceLock<Option<Mutex<Plan>>> = OnceLock::new();
    PLAN.get_or_init(|| std::env::var("GLOBOFS_FAULTS").ok().and_then(|s| parse(&s)).map(Mutex::new)).as_ref()
}

fn parse(s: &str) -> Option<Plan> {
    let (kind, at) = s.trim().split_once('@')?;
    let kind = match kind {
        "eio" => Kind::Eio,
        "enospc" => Kind::Enospc,
        "crash" => Kind::Crash,
        _ => return None,
    };
    let (at, forever) = match at.strip_suffix('+') {
        Some(n) => (n, true),
        None => (at, false),
    };
    let at: u64 = at.parse().ok().filter(|&n| n > 0)?;
    Some(Plan { kind, at, forever, count: 0, undo: Vec::new(), backups: 0 })
}

fn with<T>(f: impl FnOnce(&mut Plan) -> T) -> Option<T> {
    plan().map(|m| f(&mut m.lock().unwrap_or_else(|e| e.into_inner())))
}

/// Counts one write operation on `path` (`op` names it) and injects the planned fault.
pub fn check(op: &str, path: &Path) -> io::Result<()> {
    let Some(m) = plan() else { return Ok(()) };
    let mut p = m.lock().unwrap_or_else(|e| e.into_inner());
    p.count += 1;
    let hit = p.count == p.at || (p.forever && p.count > p.at);
    if !hit {
        return Ok(());
    }
    let name = format!("{:?}", p.kind).to_lowercase();
    eprintln!("globofs: fault injected: {name} at write operation {} ({op} {})", p.count, path.display());
    match p.kind {
        Kind::Eio => Err(io::Error::from_raw_os_error(libc::EIO)),
        Kind::Enospc => Err(io::Error::from_raw_os_error(libc::ENOSPC)),
        Kind::Crash => {
            while let Some(u) = p.undo.pop() {
                undo(u);
            }
            // SAFETY: signalling our own process.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
            loop {
                std::thread::park();
            }
        }
    }
}

fn undo(u: Undo) {
    match u {
        Undo::Created(p) => {
            let _ = fs::remove_file(p);
        }
        Undo::Renamed { from, to, backup } => {
            let _ = fs::rename(&to, &from);
            if let Some(b) = backup {
                let _ = fs::rename(b, &to);
            }
        }
        Undo::Removed { path, backup } => {
            let _ = fs::rename(backup, path);
        }
        Undo::Resized { path, old } => {
            if let Ok(f) = fs::OpenOptions::new().write(true).open(&path) {
                let _ = f.set_len(old.len() as u64);
                let _ = f.write_all_at(&old, 0);
            }
        }
    }
}

fn crashing() -> Option<&'static Mutex<Plan>> {
    plan().filter(|m| m.lock().unwrap_or_else(|e| e.into_inner()).kind == Kind::Crash)
}

/// Remembers how to undo an operation (only when a crash is planned).
pub fn record(u: Undo) {
    if crashing().is_some() {
        with(|p| p.undo.push(u));
    }
}

/// Before `f` (at `path`) changes in place: keeps its bytes, once per barrier.
pub fn record_size(f: &File, path: &Path) {
    if crashing().is_none() {
        return;
    }
    with(|p| {
        let known = p.undo.iter().any(|u| match u {
            Undo::Created(c) => c == path,
            Undo::Resized { path: r, .. } => r == path,
            _ => false,
        });
        if !known {
            let len = f.metadata().map_or(0, |m| m.len());
            let mut old = vec![0; len as usize];
            if f.read_exact_at(&mut old, 0).is_ok() {
                p.undo.push(Undo::Resized { path: path.to_path_buf(), old });
            }
        }
    });
}

/// A hard link keeping the file at `path` (about to be replaced or removed), when a crash
/// is planned and it exists. Named like a temp file, so gc sweeps any left behind.
pub fn backup(path: &Path) -> Option<PathBuf> {
    crashing()?;
    if !fs::symlink_metadata(path).is_ok_and(|m| m.is_file()) {
        return None;
    }
    let n = with(|p| {
        p.backups += 1;
        p.backups
    })?;
    let b = path.with_file_name(format!("{}fault-{}-{n}", crate::fsio::TMP_PREFIX, std::process::id()));
    fs::hard_link(path, &b).ok().map(|_| b)
}

fn drop_backup(u: &Undo) {
    match u {
        Undo::Renamed { backup: Some(b), .. } | Undo::Removed { backup: b, .. } => {
            let _ = fs::remove_file(b);
        }
        _ => {}
    }
}

/// A `syncfs`: everything is durable.
pub fn synced_all() {
    if crashing().is_some() {
        with(|p| {
            for u in p.undo.drain(..) {
                drop_backup(&u);
            }
        });
    }
}

/// An fsync of the file at `path`: its content is durable.
pub fn synced_file(path: &Path) {
    if crashing().is_some() {
        with(|p| p.undo.retain(|u| !matches!(u, Undo::Resized { path: r, .. } if r == path)));
    }
}

/// An fsync of directory `dir`: the names in it are durable.
pub fn synced_dir(dir: &Path) {
    if crashing().is_none() {
        return;
    }
    let inside = |p: &Path| p.parent() == Some(dir);
    with(|p| {
        p.undo.retain(|u| {
            let durable = match u {
                // A file made and synced, then its name: nothing left to undo.
                Undo::Created(c) => inside(c),
                Undo::Renamed { from, to, .. } => inside(from) && inside(to),
                Undo::Removed { path, .. } => inside(path),
                Undo::Resized { .. } => false,
            };
            if durable {
                drop_backup(u);
            }
            !durable
        })
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_parse() {
        let p = parse("eio@3").unwrap();
        assert_eq!((p.kind, p.at, p.forever), (Kind::Eio, 3, false));
        let p = parse("enospc@10+").unwrap();
        assert_eq!((p.kind, p.at, p.forever), (Kind::Enospc, 10, true));
        assert_eq!(parse("crash@1").map(|p| p.kind), Some(Kind::Crash));
        for bad in ["", "eio", "eio@0", "eio@x", "boom@3", "eio@-1"] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }
}
