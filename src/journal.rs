//! The node's journal (`local/state/journal`): one line `<version id> <path text>` per
//! version this node has, made here or received, in the order it got them, and one line
//! `pruned <version id> <path text>` per version it pruned. Pushing sends a peer the
//! journal past its watermark, so versions and prunes flow on from node to node. Appended
//! only under the commit lock; a torn last line is skipped and sealed by the next append.

use crate::error::{IoContext, Result};
use crate::fsio;
use crate::ids::VersionId;
use crate::manifest::Version;
use crate::paths::VolPath;
use crate::volume::Volume;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;

/// One journal line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The version.
    pub id: VersionId,
    /// Its path.
    pub path: VolPath,
    /// True if the line says the version was pruned here.
    pub pruned: bool,
}

const PRUNED: &str = "pruned ";

/// Appends `versions` and fsyncs. The caller holds the commit lock.
pub fn append(vol: &Volume, versions: &[Version]) -> Result<()> {
    append_lines(vol, versions.iter().map(|v| format!("{} {}\n", v.id, v.path.to_text())))
}

/// Appends that these versions were pruned, and fsyncs. The caller holds the commit lock.
pub fn append_pruned<'a>(vol: &Volume, pruned: impl IntoIterator<Item = (&'a VolPath, &'a VersionId)>) -> Result<()> {
    append_lines(vol, pruned.into_iter().map(|(path, id)| format!("{PRUNED}{id} {}\n", path.to_text())))
}

fn append_lines(vol: &Volume, lines: impl Iterator<Item = String>) -> Result<()> {
    let path = vol.layout().journal();
    let mut f = fsio::open_append(&path, true).ctx("open journal", &path)?;
    let len = f.metadata().ctx("stat journal", &path)?.len();
    let mut text = String::new();
    if len > 0 {
        let mut last = [0u8; 1];
        f.read_exact_at(&mut last, len - 1).ctx("read journal", &path)?;
        if last[0] != b'\n' {
            text.push('\n'); // seal a line torn by a crash; readers skip it
        }
    }
    let start = text.len();
    text.extend(lines);
    if text.len() == start {
        return Ok(());
    }
    fsio::write(&mut f, text.as_bytes(), &path).ctx("append to journal", &path)?;
    fsio::fsync(&f, &path).ctx("fsync journal", &path)
}

/// Current length of the journal (its end offset).
pub fn end(vol: &Volume) -> Result<u64> {
    let path = vol.layout().journal();
    match fs::metadata(&path) {
        Ok(m) => Ok(m.len()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e).ctx("stat journal", &path),
    }
}

/// The complete entries between byte offsets `from` and `to`.
pub fn read(vol: &Volume, from: u64, to: u64) -> Result<Vec<Entry>> {
    let path = vol.layout().journal();
    if to <= from {
        return Ok(vec![]);
    }
    let mut f = match fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(e).ctx("open journal", &path),
    };
    f.seek(SeekFrom::Start(from)).ctx("read journal", &path)?;
    let mut buf = Vec::new();
    f.take(to - from).read_to_end(&mut buf).ctx("read journal", &path)?;
    let text = String::from_utf8_lossy(&buf);
    Ok(text
        .split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .filter_map(|l| parse_line(l.trim_end_matches('\n')))
        .collect())
}

fn parse_line(line: &str) -> Option<Entry> {
    let (pruned, line) = match line.strip_prefix(PRUNED) {
        Some(rest) => (true, rest),
        None => (false, line),
    };
    let (id, path) = line.split_once(' ')?;
    Some(Entry { id: VersionId::parse(id)?, path: VolPath::from_text(path).ok()?, pruned })
}
