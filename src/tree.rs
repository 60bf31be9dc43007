//! The namespace over the version store: which paths are live, what a directory holds,
//! and the operations that change several paths at once (rm of a tree, mv). A path is a
//! directory if its head is a directory marker, or if it has no live head but something
//! live beneath it. This module never writes a file except through `Volume::commit`.

use crate::error::{Error, IoContext, Result};
use crate::manifest::{Kind, Version};
use crate::paths::{unescape_name, VolPath};
use crate::volume::Volume;
use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;

/// A live path: its head version, or `None` for a directory that exists only because
/// something lives beneath it (and for the root).
#[derive(Clone, Debug)]
pub struct Entry {
    /// Where it is.
    pub path: VolPath,
    /// Its live head, if it has one.
    pub head: Option<Version>,
}

impl Entry {
    /// True for directories (marked or implicit).
    pub fn is_dir(&self) -> bool {
        self.head.as_ref().is_none_or(|h| h.kind == Kind::Dir)
    }
}

/// Names recorded beneath `dir` (live or not), sorted.
pub fn recorded_children(vol: &Volume, dir: &VolPath) -> Result<Vec<VolPath>> {
    let disk = dir.disk_dir(&vol.layout().root());
    let rd = match fs::read_dir(&disk) {
        Ok(rd) => rd,
        Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => return Ok(vec![]),
        Err(e) => return Err(e).ctx("list", &disk),
    };
    let mut out = Vec::new();
    for e in rd {
        let e = e.ctx("list", &disk)?;
        let name = e.file_name();
        // Temp files live only inside `versions/`; every directory here is a path.
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if let Some(n) = unescape_name(name.as_bytes()) {
            // A name that does not validate was not written by globofs: skip it.
            if let Ok(p) = dir.join(&n) {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn live_head(vol: &Volume, path: &VolPath) -> Result<Option<Version>> {
    Ok(vol.head(path)?.filter(|h| h.is_live()))
}

/// True if anything live is recorded strictly beneath `dir` (a conflict file counts).
pub fn has_live_descendant(vol: &Volume, dir: &VolPath) -> Result<bool> {
    for c in recorded_children(vol, dir)? {
        if live_head(vol, &c)?.is_some() || !conflict_files(vol, &c)?.is_empty() || has_live_descendant(vol, &c)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The live entry at `path`, or [`Error::NotFound`].
pub fn stat(vol: &Volume, path: &VolPath) -> Result<Entry> {
    if path.is_root() {
        return Ok(Entry { path: path.clone(), head: None });
    }
    if let Some(h) = live_head(vol, path)? {
        return Ok(Entry { path: path.clone(), head: Some(h) });
    }
    if has_live_descendant(vol, path)? {
        return Ok(Entry { path: path.clone(), head: None });
    }
    if let Some((_, v)) = as_conflict_file(vol, path)? {
        return Ok(Entry { path: path.clone(), head: Some(v) });
    }
    Err(Error::NotFound(path.to_string()))
}

/// The live entries directly inside directory `dir`, sorted by name.
pub fn children(vol: &Volume, dir: &VolPath) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    for c in recorded_children(vol, dir)? {
        for (p, v) in conflict_files(vol, &c)? {
            out.push(Entry { path: p, head: Some(v) });
        }
        match live_head(vol, &c)? {
            Some(h) => out.push(Entry { path: c, head: Some(h) }),
            None if has_live_descendant(vol, &c)? => out.push(Entry { path: c, head: None }),
            None => {}
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Every live entry at or beneath `top` (which must be live), parents before children.
pub fn walk(vol: &Volume, top: &Entry, f: &mut dyn FnMut(&Entry) -> Result<()>) -> Result<()> {
    f(top)?;
    if top.is_dir() {
        for c in children(vol, &top.path)? {
            walk(vol, &c, f)?;
        }
    }
    Ok(())
}

/// Checks that no ancestor of `path` is a live file or symlink. `known_dirs` remembers
/// ancestors already checked (for tree imports).
pub fn check_parents(vol: &Volume, path: &VolPath, known_dirs: &mut HashSet<VolPath>) -> Result<()> {
    let mut ancestors = Vec::new();
    let mut p = path.parent();
    while let Some(a) = p.filter(|a| !a.is_root()) {
        p = a.parent();
        ancestors.push(a);
    }
    for a in ancestors.into_iter().rev() {
        if known_dirs.contains(&a) {
            continue;
        }
        if let Some(h) = live_head(vol, &a)? {
            if h.kind != Kind::Dir {
                return Err(Error::NotDirectory(a.to_string()));
            }
        }
        known_dirs.insert(a);
    }
    Ok(())
}

/// A tombstone replacing `head`, or `None` if the path is already gone.
fn tombstone(vol: &Volume, head: Option<&Version>) -> Option<Version> {
    let h = head.filter(|h| h.is_live())?;
    let mut t = vol.new_version(&h.path, Kind::Tombstone, Some(h));
    t.mode = 0;
    Some(t)
}

/// Removes `path` (and everything beneath it, for a directory) by committing tombstones.
/// History stays readable with `log` and `read PATH@ID`.
pub fn rm(vol: &Volume, path: &VolPath) -> Result<Vec<Version>> {
    if path.is_root() {
        return Err(Error::Usage("refusing to remove the whole volume; name a path".into()));
    }
    // Removing a conflict file keeps the local version (and settles that conflict).
    if live_head(vol, path)?.is_none() {
        if let Some((real, v)) = as_conflict_file(vol, path)? {
            let latest = vol.head(&real)?.ok_or_else(|| Error::NotFound(real.to_string()))?;
            return Ok(vec![vol.settle(&real, &latest.id, &[v.id])?]);
        }
    }
    let top = stat(vol, path)?;
    let mut paths = Vec::new();
    walk(vol, &top, &mut |e| {
        // Conflict files (a view of another head) are settled, not removed with the tree.
        if e.head.as_ref().is_some_and(|h| h.path == e.path) {
            paths.push(e.path.clone());
        }
        Ok(())
    })?;
    if paths.is_empty() {
        // Only other nodes' versions (conflict files) are left under it: those are settled.
        return Err(Error::Usage(format!(
            "{path}: only conflict files are left in it (see `globofs ls -a {path}`); rm each of them, or resolve"
        )));
    }
    let changes = paths.into_iter().map(|p| (p, |h: Option<&Version>| Ok(tombstone(vol, h)))).collect();
    vol.commit(changes)
}

/// Moves `src` to `dst` (into `dst` if it is a directory): the content is committed as new
/// versions at the new paths (same blocks, nothing copied) and tombstones at the old ones.
pub fn mv(vol: &Volume, src: &VolPath, dst: &VolPath) -> Result<Vec<Version>> {
    if src.is_root() {
        return Err(Error::Usage("cannot move the volume root".into()));
    }
    // Moving a conflict file over its file takes the remote version (settling that conflict).
    if live_head(vol, src)?.is_none() {
        if let Some((real, v)) = as_conflict_file(vol, src)? {
            if *dst != real {
                return Err(Error::Usage(format!(
                    "{src} is a conflict file: `mv` it over {real} to take it, or `rm` it to keep {real}"
                )));
            }
            return Ok(vec![vol.settle(&real, &v.id, std::slice::from_ref(&v.id))?]);
        }
    }
    // The versions moved are read now and committed later: gc must not free their blocks
    // in between (a prune of them may land meanwhile; their blocks must stay).
    let _lease = vol.block_lease()?;
    let top = stat(vol, src)?;
    let mut dst = dst.clone();
    if let Ok(d) = stat(vol, &dst) {
        if d.is_dir() {
            dst = dst.join(src.file_name().unwrap_or_default())?;
        }
    }
    if dst == *src {
        return Ok(vec![]);
    }
    if dst.starts_with(src) {
        return Err(Error::Usage(format!("cannot move {src} into itself ({dst})")));
    }
    if let Ok(existing) = stat(vol, &dst) {
        if top.is_dir() || existing.is_dir() {
            return Err(Error::Exists(dst.to_string()));
        }
    }
    check_parents(vol, &dst, &mut HashSet::new())?;
    let mut moved: Vec<Version> = Vec::new();
    walk(vol, &top, &mut |e| {
        if let Some(h) = e.head.as_ref().filter(|h| h.path == e.path) {
            moved.push(h.clone());
        }
        Ok(())
    })?;
    for old in &moved {
        vol.materialize(old)?;
    }
    type Change<'a> = Box<dyn FnOnce(Option<&Version>) -> Result<Option<Version>> + 'a>;
    let mut changes: Vec<(VolPath, Change)> = Vec::new();
    for old in &moved {
        let to = old.path.rebase(src, &dst).ok_or_else(|| Error::Usage(format!("cannot move {}", old.path)))?;
        let to2 = to.clone();
        changes.push((to, Box::new(move |head: Option<&Version>| Ok(Some(vol.version_like(&to2, old, head))))));
        changes.push((old.path.clone(), Box::new(|h: Option<&Version>| Ok(tombstone(vol, h)))));
    }
    vol.commit(changes)
}

/// Marker between a file's name and the peer's name in a conflict file's name.
const CONFLICT: &str = ".conflict-";

/// The hidden siblings that show the other heads of `path`: `.<name>.conflict-<origin>`
/// (`-2`, `-3`... when one node contributes several), with the live version each shows.
/// Deletions among the other heads have no file; `status` and `resolve` deal with them.
pub fn conflict_files(vol: &Volume, path: &VolPath) -> Result<Vec<(VolPath, Version)>> {
    let Some(name) = path.file_name() else { return Ok(vec![]) };
    let parent = path.parent().unwrap_or_default();
    let mut out: Vec<(VolPath, Version)> = Vec::new();
    for v in vol.other_heads(path)? {
        if !v.is_live() {
            continue;
        }
        let origin: String = v
            .origin_name
            .chars()
            // No `.` kept, so `.conflict-` can never appear inside the origin part.
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
            .take(64)
            .collect();
        let origin = if origin.is_empty() { v.origin.chars().take(8).collect() } else { origin };
        let base = [b".".as_slice(), name, CONFLICT.as_bytes(), origin.as_bytes()].concat();
        let mut candidate = base.clone();
        let mut n = 1;
        while out.iter().any(|(p, _)| p.file_name() == Some(candidate.as_slice())) {
            n += 1;
            candidate = [base.as_slice(), format!("-{n}").as_bytes()].concat();
        }
        if let Ok(p) = parent.join(&candidate) {
            out.push((p, v));
        }
    }
    Ok(out)
}

/// If `path` names a conflict file, the real path and the version it shows.
pub fn as_conflict_file(vol: &Volume, path: &VolPath) -> Result<Option<(VolPath, Version)>> {
    let Some(name) = path.file_name() else { return Ok(None) };
    let Some(rest) = name.strip_prefix(b".") else { return Ok(None) };
    let Some(at) = rest.windows(CONFLICT.len()).rposition(|w| w == CONFLICT.as_bytes()) else { return Ok(None) };
    let Ok(real) = path.parent().unwrap_or_default().join(&rest[..at]) else { return Ok(None) };
    Ok(conflict_files(vol, &real)?.into_iter().find(|(p, _)| p == path).map(|(_, v)| (real, v)))
}

/// Every path with other heads (conflicts), with those heads.
pub fn conflicts(vol: &Volume) -> Result<Vec<(VolPath, Vec<Version>)>> {
    let mut out = Vec::new();
    fn walk_disk(vol: &Volume, dir: &VolPath, out: &mut Vec<(VolPath, Vec<Version>)>) -> Result<()> {
        for c in recorded_children(vol, dir)? {
            let others = vol.other_heads(&c)?;
            if !others.is_empty() {
                out.push((c.clone(), others));
            }
            walk_disk(vol, &c, out)?;
        }
        Ok(())
    }
    walk_disk(vol, &VolPath::root(), &mut out)?;
    Ok(out)
}

/// Live paths hidden beneath a live file (each with that file): versions of a path and of
/// its parent made concurrently as file and directory on different nodes. They stay
/// readable by their path; removing or moving the file shows them again.
pub fn shadowed(vol: &Volume) -> Result<Vec<(VolPath, VolPath)>> {
    fn walk_disk(
        vol: &Volume,
        dir: &VolPath,
        under: Option<&VolPath>,
        out: &mut Vec<(VolPath, VolPath)>,
    ) -> Result<()> {
        for c in recorded_children(vol, dir)? {
            let head = live_head(vol, &c)?;
            if let (Some(file), Some(_)) = (under, &head) {
                out.push((c.clone(), file.clone()));
            }
            let below = match (under, &head) {
                (Some(u), _) => Some(u.clone()),
                (None, Some(h)) if h.kind != Kind::Dir => Some(c.clone()),
                _ => None,
            };
            walk_disk(vol, &c, below.as_ref(), out)?;
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk_disk(vol, &VolPath::root(), None, &mut out)?;
    Ok(out)
}
