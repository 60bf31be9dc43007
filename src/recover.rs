//! `globofs init DIR --recover`: rebuilds the lost `local/config` of a volume from what
//! survives (docs/DESIGN.md, "Identity"). The uuid must come from a record that names this
//! node: our own `local/state/identity`, a reachable peer's entry for this directory, or the
//! log we pushed into a peer (found by the segment id our push state remembers). Our
//! manifests' origins back it up, but never decide alone: a node that made no version holds
//! only other nodes' uuids. The name and the chunking come from the manifests made here (or
//! the command line). Nothing but `local/config` is written.

use crate::config::{ChunkMethod, Chunking, Config};
use crate::error::{Error, IoContext, Result};
use crate::identity::Record;
use crate::layout::Layout;
use crate::manifest::{Version, MAX_MANIFEST};
use crate::paths::VERSIONS_DIR;
use crate::peers;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// What `init --recover` wrote, and where each part came from.
#[derive(Debug, serde::Serialize)]
pub struct Recovered {
    /// The volume directory.
    pub volume: String,
    /// The uuid recovered.
    pub uuid: String,
    /// Each record that names it.
    pub uuid_from: Vec<String>,
    /// The node name written.
    pub name: String,
    /// Where the name came from.
    pub name_from: String,
    /// The chunking written, as `method min/avg/max`.
    pub chunking: String,
    /// Where the chunking came from.
    pub chunking_from: String,
}

impl Recovered {
    /// The report for a person, one line each.
    pub fn lines(&self) -> Vec<String> {
        vec![
            format!("recovered {}/local/config", self.volume),
            format!("uuid {} (from {})", self.uuid, self.uuid_from.join("; ")),
            format!("name {} ({})", self.name, self.name_from),
            format!("chunking {} ({})", self.chunking, self.chunking_from),
            "every other setting (compression, cacheonly, retention, hooks) has its default: edit local/config if yours differed".into(),
        ]
    }
}

/// What the manifests in `local/root/` say about their origins.
#[derive(Default)]
struct Origins {
    /// Versions per origin uuid.
    count: BTreeMap<String, usize>,
    /// The node name of each origin's newest version.
    name: BTreeMap<String, (crate::manifest::Timestamp, String)>,
    /// The sizes of each origin's blocks, all but the last block of each file.
    sizes: BTreeMap<String, BTreeSet<u32>>,
}

/// Rebuilds `dir/local/config`; `name` and `chunking` override what the volume shows.
pub fn recover(dir: &Path, name: Option<String>, chunking: Option<Chunking>) -> Result<Recovered> {
    let dir = fs::canonicalize(dir).ctx("resolve", dir)?;
    let layout = Layout::new(&dir);
    if layout.config().exists() {
        return Err(Error::AlreadyVolume(dir));
    }
    if !crate::volume::holds_data(&layout) {
        return Err(Error::Usage(format!(
            "{}: holds no volume data (local/root and local/hashes are empty or missing): nothing to recover; `globofs init` makes a new volume",
            dir.display()
        )));
    }
    let (ours, _) = peers::scan(&layout)?;
    let here = fs::metadata(&dir).ctx("stat", &dir)?;
    let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut peer_names = BTreeMap::new(); // what the peers call us, by uuid
    if let Some(r) = Record::load(&layout) {
        found.entry(r.uuid).or_default().push("local/state/identity".into());
    }
    for p in ours.iter().filter(|p| p.reachable()) {
        // The peer's entry whose path is this directory names our uuid...
        let theirs = peers::scan(&p.layout()).map(|(good, _)| good).unwrap_or_default();
        for e in theirs {
            if fs::metadata(&e.path).is_ok_and(|m| m.dev() == here.dev() && m.ino() == here.ino()) {
                found
                    .entry(e.uuid.clone())
                    .or_default()
                    .push(format!("peer {} records this volume as {}", p.name, e.name));
                peer_names.entry(e.uuid).or_insert(e.name);
            }
        }
        // ...and so does the log we pushed into it, whose segment our push state remembers.
        let segment = crate::sync::pushed_segment(&layout, &p.uuid);
        if segment.is_empty() {
            continue;
        }
        for e in fs::read_dir(p.layout().upstream()).into_iter().flatten().flatten() {
            let latest = e.path().join("updates").join(crate::layout::LATEST);
            let uuid = uuid::Uuid::parse_str(&e.file_name().to_string_lossy()).map(|u| u.to_string());
            if let (Ok(uuid), Some(id)) = (uuid, crate::log::header_id(&latest)) {
                if id == segment {
                    found.entry(uuid).or_default().push(format!("our log in peer {}", p.name));
                }
            }
        }
    }
    let origins = origins(&layout)?;
    let made_here = |u: &str| origins.count.get(u).copied().unwrap_or(0);
    let uuid = match found.len() {
        1 => found.keys().next().cloned().unwrap_or_default(),
        0 => {
            let seen: Vec<String> = origins.count.iter().map(|(u, n)| format!("{u} ({n} versions)")).collect();
            return Err(Error::Usage(format!(
                "{}: cannot tell this node's uuid: no reachable peer records it and local/state/identity is gone{}; mount a peer and try again, or write local/config by hand (docs/FORMAT.md, \"Config\")",
                dir.display(),
                if seen.is_empty() { String::new() } else { format!(" (the manifests name the origins {})", seen.join(", ")) }
            )));
        }
        _ => {
            let all: Vec<String> = found.iter().map(|(u, from)| format!("{u} ({})", from.join("; "))).collect();
            return Err(Error::Usage(format!(
                "{}: cannot tell this node's uuid: the records disagree: {}; remove the wrong one, or write local/config by hand",
                dir.display(),
                all.join(" vs ")
            )));
        }
    };
    if ours.iter().any(|p| p.uuid == uuid) {
        return Err(Error::Usage(format!(
            "{}: the records name {uuid}, which is the uuid of a peer; write local/config by hand",
            dir.display()
        )));
    }
    let mut uuid_from = found.remove(&uuid).unwrap_or_default();
    if made_here(&uuid) > 0 {
        uuid_from.push(format!("{} versions here were made by it", made_here(&uuid)));
    }
    let (name, name_from) = match (name, origins.name.get(&uuid), peer_names.get(&uuid)) {
        (Some(n), _, _) => (n, "given".to_string()),
        (None, Some((_, n)), _) => (n.clone(), "the name its newest version carries".to_string()),
        (None, None, Some(n)) => (n.clone(), "what a peer calls it".to_string()),
        (None, None, None) => (crate::volume::host_name(), "the host name".to_string()),
    };
    let sizes = origins.sizes.get(&uuid);
    let (chunking, chunking_from) = match (chunking, sizes.map(|s| s.iter().copied().collect::<Vec<_>>())) {
        (Some(c), _) => (c, "given".to_string()),
        (None, Some(one)) if one.len() == 1 && Chunking::new(ChunkMethod::Fixed, one[0]).is_ok() => (
            Chunking::new(ChunkMethod::Fixed, one[0])?,
            "every block made here, but the last of each file, has this size".to_string(),
        ),
        (None, Some(_)) => (
            Chunking::default(),
            "the defaults: blocks made here vary in size; if this volume was made with --block-size, run `init --recover` again with it after removing local/config".to_string(),
        ),
        (None, None) => (Chunking::default(), "the defaults: no multi-block file was made here".to_string()),
    };
    let mut config = Config::new(name.clone(), dir.to_string_lossy().into_owned(), chunking.clone());
    config.uuid = uuid.clone();
    config.save(&layout.config())?;
    let method = match chunking.method {
        ChunkMethod::Cdc => "cdc",
        ChunkMethod::Fixed => "fixed",
    };
    Ok(Recovered {
        volume: dir.display().to_string(),
        uuid,
        uuid_from,
        name,
        name_from,
        chunking: format!("{method} {}/{}/{}", chunking.min, chunking.avg, chunking.max),
        chunking_from,
    })
}

/// Reads every manifest under `local/root/` (damaged ones are skipped: this is evidence).
fn origins(layout: &Layout) -> Result<Origins> {
    let mut o = Origins::default();
    for e in walkdir::WalkDir::new(layout.root()).into_iter() {
        let e = e.map_err(|e| crate::error::walk_error("list", &layout.root(), e))?;
        let in_versions = e.path().parent().and_then(|p| p.file_name()).is_some_and(|n| n == VERSIONS_DIR);
        if !e.file_type().is_file() || !in_versions || e.file_name().as_encoded_bytes().first() == Some(&b'.') {
            continue;
        }
        let mut bytes = Vec::new();
        let Ok(f) = fs::File::open(e.path()) else { continue };
        if f.take(MAX_MANIFEST as u64 + 1).read_to_end(&mut bytes).is_err() {
            continue;
        }
        let Ok(v) = Version::decode(&bytes) else { continue };
        *o.count.entry(v.origin.clone()).or_default() += 1;
        let newest = o.name.entry(v.origin.clone()).or_insert((v.time, v.origin_name.clone()));
        if v.time > newest.0 {
            *newest = (v.time, v.origin_name.clone());
        }
        if let Some((_, body)) = v.blocks.split_last() {
            if !body.is_empty() {
                o.sizes.entry(v.origin.clone()).or_default().extend(body.iter().map(|b| b.len));
            }
        }
    }
    Ok(o)
}
