//! `globofs verify [--repair]`: re-hashes every block, decodes every manifest, and checks
//! that each block a manifest names is present and sound. Without `--repair` it only reads
//! and lists each problem. With `--repair` (docs/DESIGN.md, "Verify and repair") it replaces
//! damaged or missing blocks and damaged manifests with good copies from reachable peers
//! (or, for a manifest, another local copy of the same version), moves what has no good
//! copy anywhere to `local/quarantine/`, and reports every path and version that lost
//! something.

use crate::blocks;
use crate::error::{IoContext, Result};
use crate::fsio::{self, Durability};
use crate::ids::{BlockId, VersionId};
use crate::journal;
use crate::layout;
use crate::log;
use crate::manifest::{Version, MAX_MANIFEST};
use crate::paths::{unescape_name, VolPath, VERSIONS_DIR};
use crate::peers::{self, Peer};
use crate::progress::Progress;
use crate::sync;
use crate::volume::Volume;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// One thing verify found wrong.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Problem {
    /// `corrupt-block`, `stray-file`, `corrupt-manifest` or `missing-block`.
    pub kind: &'static str,
    /// The file on disk concerned.
    pub file: String,
    /// What is wrong, in words.
    pub detail: String,
}

/// A version that needs something (a block, its manifest).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Need {
    /// The path, in text form.
    pub path: String,
    /// The version id; `None` for a `latest` whose id could not be read.
    pub version: Option<String>,
}

/// Something `--repair` replaced with a good copy.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Fix {
    /// `block` or `manifest`.
    pub what: &'static str,
    /// The file replaced (or created, for a missing block).
    pub file: String,
    /// The block id, or the manifest's version id.
    pub id: String,
    /// Where the good copy came from: `peer NAME`, or the local file it was copied from.
    pub from: String,
    /// What was wrong with the old file.
    pub was: String,
}

/// Something `--repair` moved to `local/quarantine/` because no good copy exists.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Quarantined {
    /// `block` or `manifest`.
    pub what: &'static str,
    /// Where the file was.
    pub file: String,
    /// Where it is now.
    pub moved_to: String,
    /// The block id, or the manifest's version id (empty if unknown).
    pub id: String,
    /// The versions that need it (for a manifest: the version it was).
    pub needed_by: Vec<Need>,
    /// What was wrong with it.
    pub was: String,
}

/// A version that cannot be read in full after a repair.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Affected {
    /// The path, in text form.
    pub path: String,
    /// The version id (`None`: a `latest` whose id could not be read).
    pub version: Option<String>,
    /// Blocks it names that have no good copy here or on a reachable peer.
    pub lost_blocks: Vec<String>,
    /// Its manifest has no good copy and was quarantined (this file).
    pub lost_manifest: Option<String>,
    /// What to do about it, when there is something.
    pub hint: Option<String>,
}

/// The outcome of a verify run.
#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    /// Blocks re-hashed.
    pub blocks: usize,
    /// Manifests checked.
    pub manifests: usize,
    /// Blocks not stored here that a reachable peer holds (read pulls them): not a problem.
    pub blocks_on_peers: usize,
    /// Everything found wrong (before any repair).
    pub problems: Vec<Problem>,
    /// True when run with `--repair`.
    pub repair: bool,
    /// What was replaced with a good copy.
    pub repaired: Vec<Fix>,
    /// What was moved to `local/quarantine/`.
    pub quarantined: Vec<Quarantined>,
    /// The problems that remain after the repair.
    pub unrepaired: Vec<Problem>,
    /// Versions that lost a block or their manifest.
    pub affected: Vec<Affected>,
}

impl Report {
    /// 0 when everything is fine (or was repaired), 1 when problems remain.
    pub fn exit_code(&self) -> u8 {
        let left = if self.repair { &self.unrepaired } else { &self.problems };
        u8::from(!left.is_empty())
    }

    /// The report as lines of text, for a terminal.
    pub fn lines(&self) -> Vec<String> {
        let mut out: Vec<String> =
            self.problems.iter().map(|p| format!("{}: {}: {}", p.kind, p.file, p.detail)).collect();
        if !self.repair {
            out.push(format!(
                "{}: {} blocks, {} manifests checked, {} blocks held by peers only, {} problems",
                if self.problems.is_empty() { "ok" } else { "FAILED" },
                self.blocks,
                self.manifests,
                self.blocks_on_peers,
                self.problems.len()
            ));
            return out;
        }
        for f in &self.repaired {
            out.push(format!("repaired {} {} ({}) from {}: it was {}", f.what, f.id, f.file, f.from, f.was));
        }
        for q in &self.quarantined {
            out.push(format!("quarantined {} {}: {} -> {} ({})", q.what, q.id, q.file, q.moved_to, q.was));
        }
        for a in &self.affected {
            let who = format!("{}@{}", a.path, a.version.as_deref().unwrap_or("<latest, id unreadable>"));
            for b in &a.lost_blocks {
                out.push(format!("lost: {who} needs block {b}, which has no good copy here or on a reachable peer"));
            }
            if let Some(m) = &a.lost_manifest {
                out.push(format!("lost: {who}: its manifest has no good copy (quarantined as {m})"));
            }
            if let Some(h) = &a.hint {
                out.push(format!("hint: {h}"));
            }
        }
        for p in &self.unrepaired {
            out.push(format!("not repaired: {}: {}: {}", p.kind, p.file, p.detail));
        }
        out.push(format!(
            "{}: {} blocks, {} manifests checked, {} blocks held by peers only, {} problems found, {} repaired, {} quarantined, {} not repaired",
            if self.unrepaired.is_empty() { "ok" } else { "FAILED" },
            self.blocks,
            self.manifests,
            self.blocks_on_peers,
            self.problems.len(),
            self.repaired.len(),
            self.quarantined.len(),
            self.unrepaired.len()
        ));
        out
    }
}

/// Checks the whole volume; only reads.
pub fn verify(vol: &Volume, show_progress: bool) -> Result<Report> {
    run(vol, false, show_progress)
}

/// Checks the whole volume and, with `repair`, repairs what it can.
pub fn run(vol: &Volume, repair: bool, show_progress: bool) -> Result<Report> {
    let mut report = Report { repair, ..Default::default() };
    let blocks = scan_blocks(vol, show_progress, &mut report)?;
    // A repair works under gc's locks (block lease exclusive, then the commit lock): no
    // version appears or moves, and no writer trusts a block we are about to move.
    let _locks = if repair { Some((vol.block_lease_exclusive()?, vol.lock()?)) } else { None };
    let mut scan = scan_manifests(vol, &blocks.good)?;
    report.manifests = scan.manifests;
    let mut peers: Option<Vec<Peer>> = None;
    let mut reachable = || -> Result<Vec<Peer>> {
        if peers.is_none() {
            peers = Some(peers::list(vol)?.into_iter().filter(|p| p.reachable()).collect());
        }
        Ok(peers.clone().unwrap_or_default())
    };

    // Manifests first: one repaired from a peer may name blocks that need fetching too.
    let mut manifest_left = Vec::new();
    if repair && !scan.corrupt.is_empty() {
        let peers = reachable()?;
        let mut fixed_any = false;
        for bad in std::mem::take(&mut scan.corrupt) {
            match repair_manifest(vol, &peers, &bad)? {
                ManifestOutcome::Fixed(fix) => {
                    report.repaired.push(fix);
                    fixed_any = true;
                }
                ManifestOutcome::Quarantined(q, a) => {
                    manifest_left.push(Problem {
                        kind: "corrupt-manifest",
                        file: bad.problem.file.clone(),
                        detail: format!(
                            "{}; no good copy here or on a reachable peer, moved to {}",
                            bad.problem.detail, q.moved_to
                        ),
                    });
                    report.quarantined.push(q);
                    report.affected.push(a);
                }
            }
            report.problems.push(bad.problem);
        }
        if fixed_any {
            let again = scan_manifests(vol, &blocks.good)?;
            scan.needs = again.needs;
        }
    } else {
        report.problems.extend(scan.corrupt.iter().map(|b| b.problem.clone()));
    }
    // Manifests that decode but are filed in the wrong place, and stray files, are left
    // for a person to look at.
    report.problems.extend(blocks.stray.iter().cloned());
    report.problems.extend(scan.problems.iter().cloned());
    let mut left: Vec<Problem> = blocks.stray.clone();
    left.extend(scan.problems.iter().cloned());
    if repair {
        left.extend(manifest_left);
    } else {
        left.extend(report.problems.iter().filter(|p| p.kind == "corrupt-manifest").cloned());
    }

    // Blocks named by a manifest that are not good here.
    let mut needs: BTreeMap<BlockId, Vec<NeedRec>> = BTreeMap::new();
    for n in scan.needs {
        needs.entry(n.block).or_default().push(n);
    }
    let corrupt: BTreeMap<BlockId, Problem> = blocks.corrupt.into_iter().collect();
    // A block absent here is normal when only versions made elsewhere name it and a peer
    // holds it (it was never pulled, or `cacheonly` evicted it); a block that a version
    // made here names was stored here (gc never evicts those), so its absence is damage.
    let mut missing: BTreeSet<BlockId> = BTreeSet::new();
    let mut on_peers = 0;
    for (id, recs) in &needs {
        if corrupt.contains_key(id) || vol.blocks().contains(id) {
            continue; // a damaged file (reported as corrupt-block), or one stored since
        }
        let peers = reachable()?;
        let mine = recs.iter().any(|r| r.mine);
        if !mine && peers.iter().any(|p| blocks::block_path(&p.layout().hashes(), id).is_file()) {
            on_peers += 1;
        } else {
            missing.insert(*id);
        }
    }
    report.blocks_on_peers = on_peers;
    report.problems.extend(corrupt.values().cloned());
    for id in corrupt.keys().chain(&missing) {
        report.problems.extend(needs.get(id).into_iter().flatten().map(|r| r.problem.clone()));
    }

    if !repair {
        return Ok(report);
    }
    let bad: BTreeSet<BlockId> = corrupt.keys().copied().chain(missing.iter().copied()).collect();
    let mut stored = false;
    let mut lost: BTreeMap<(String, Option<String>), Vec<String>> = BTreeMap::new();
    for id in &bad {
        let path = vol.blocks().path(id);
        let was = match fs::read(&path) {
            Ok(gz) => match blocks::decode_checked(id, &gz) {
                Ok(_) => continue, // sound now (rewritten since the scan)
                Err(reason) => Some(reason),
            },
            Err(_) => None,
        };
        let peers = reachable()?;
        match sync::good_copy(id, &peers) {
            Ok(copy) => {
                vol.blocks().replace_encoded(id, &copy.gz)?;
                stored = true;
                report.repaired.push(Fix {
                    what: "block",
                    file: path.display().to_string(),
                    id: id.hex(),
                    from: format!("peer {}", copy.peer),
                    was: was.clone().map_or("missing".into(), |r| format!("corrupt ({r})")),
                });
            }
            Err(tried) => {
                let recs = needs.get(id).map(Vec::as_slice).unwrap_or_default();
                let tried = if tried.is_empty() {
                    "no reachable peer".to_string()
                } else {
                    format!("tried {}", tried.join(", "))
                };
                let mut moved = None;
                if let Some(reason) = &was {
                    let dest = unique(&vol.layout().quarantine_blocks(), &id.hex(), ".gz")?;
                    fsio::create_dirs(&vol.layout().quarantine_blocks())?;
                    fsio::rename(&path, &dest).ctx("move to quarantine", &path)?;
                    stored = true;
                    moved = Some(dest.display().to_string());
                    report.quarantined.push(Quarantined {
                        what: "block",
                        file: path.display().to_string(),
                        moved_to: dest.display().to_string(),
                        id: id.hex(),
                        needed_by: recs.iter().map(|r| r.need.clone()).collect(),
                        was: format!("corrupt ({reason}); no good copy on a peer ({tried})"),
                    });
                }
                for r in recs {
                    lost.entry((r.need.path.clone(), r.need.version.clone())).or_default().push(id.hex());
                    left.push(Problem {
                        kind: "missing-block",
                        file: r.problem.file.clone(),
                        detail: format!(
                            "{}@{} needs block {id}: no good copy here or on a peer ({tried}){}",
                            r.need.path,
                            r.need.version.as_deref().unwrap_or(""),
                            moved.as_ref().map_or(String::new(), |m| format!("; the damaged copy is in {m}"))
                        ),
                    });
                }
            }
        }
    }
    if stored || !report.quarantined.is_empty() {
        fsio::sync_filesystem(vol.dir())?;
    }
    for ((path, version), blocks) in lost {
        report.affected.push(Affected { path, version, lost_blocks: blocks, lost_manifest: None, hint: None });
    }
    report.unrepaired = left;
    Ok(report)
}

/// What hashing the block store found.
struct BlockScan {
    good: HashSet<BlockId>,
    corrupt: Vec<(BlockId, Problem)>,
    stray: Vec<Problem>,
}

fn scan_blocks(vol: &Volume, show_progress: bool, report: &mut Report) -> Result<BlockScan> {
    let listed = vol.blocks().list()?;
    let mut stray = Vec::new();
    let mut ids = Vec::with_capacity(listed.len());
    for r in listed {
        match r {
            Ok(id) => ids.push(id),
            Err(p) if fsio::is_tmp_name(p.file_name().map(|n| n.as_bytes()).unwrap_or_default()) => {}
            Err(p) => stray.push(Problem {
                kind: "stray-file",
                file: p.display().to_string(),
                detail: "not a block file name".into(),
            }),
        }
    }
    report.blocks = ids.len();
    let progress = Progress::items("verify", ids.len() as u64, show_progress);
    let good: Mutex<HashSet<BlockId>> = Mutex::new(HashSet::with_capacity(ids.len()));
    let bad: Mutex<Vec<(BlockId, Problem)>> = Mutex::new(Vec::new());
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..std::thread::available_parallelism().map_or(2, |n| n.get()) {
            s.spawn(|| {
                while let Some(id) = ids.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let path = vol.blocks().path(id);
                    let verdict =
                        fs::read(&path).map_err(|e| e.to_string()).and_then(|gz| blocks::decode_checked(id, &gz));
                    match verdict {
                        Ok(_) => {
                            if let Ok(mut g) = good.lock() {
                                g.insert(*id);
                            }
                        }
                        Err(reason) => {
                            if let Ok(mut b) = bad.lock() {
                                b.push((
                                    *id,
                                    Problem {
                                        kind: "corrupt-block",
                                        file: path.display().to_string(),
                                        detail: format!("block {id}: {reason}"),
                                    },
                                ));
                            }
                        }
                    }
                    progress.inc(1);
                }
            });
        }
    });
    progress.finish();
    let mut corrupt = bad.into_inner().unwrap_or_default();
    corrupt.sort_by_key(|(id, _)| *id);
    Ok(BlockScan { good: good.into_inner().unwrap_or_default(), corrupt, stray })
}

/// A version naming a block that is not good here.
struct NeedRec {
    block: BlockId,
    need: Need,
    /// The version was made on this node.
    mine: bool,
    problem: Problem,
}

/// A manifest that does not decode.
struct BadManifest {
    file: PathBuf,
    path: VolPath,
    /// Its file name in `versions/`: `latest` or a version id.
    name: String,
    bytes: Vec<u8>,
    problem: Problem,
}

#[derive(Default)]
struct ManifestScan {
    manifests: usize,
    /// Stray files and manifests filed in the wrong place.
    problems: Vec<Problem>,
    corrupt: Vec<BadManifest>,
    needs: Vec<NeedRec>,
}

fn scan_manifests(vol: &Volume, good: &HashSet<BlockId>) -> Result<ManifestScan> {
    let mut scan = ManifestScan::default();
    let uuid = vol.config().uuid.clone();
    check_manifests(&vol.layout().root(), &VolPath::root(), good, &uuid, &mut scan)?;
    Ok(scan)
}

fn check_manifests(
    disk: &Path,
    path: &VolPath,
    good: &HashSet<BlockId>,
    uuid: &str,
    scan: &mut ManifestScan,
) -> Result<()> {
    let mut names: Vec<_> =
        fs::read_dir(disk).ctx("list", disk)?.collect::<std::io::Result<Vec<_>>>().ctx("list", disk)?;
    names.sort_by_key(|e| e.file_name());
    for e in names {
        let name = e.file_name();
        if name.as_bytes() == VERSIONS_DIR.as_bytes() {
            check_versions(&e.path(), path, good, uuid, scan)?;
            continue;
        }
        let child = unescape_name(name.as_bytes()).and_then(|n| path.join(&n).ok());
        match child {
            Some(c) if e.file_type().is_ok_and(|t| t.is_dir()) => check_manifests(&e.path(), &c, good, uuid, scan)?,
            _ => scan.problems.push(Problem {
                kind: "stray-file",
                file: e.path().display().to_string(),
                detail: "not a path directory of the volume".into(),
            }),
        }
    }
    Ok(())
}

fn check_versions(
    dir: &Path,
    path: &VolPath,
    good: &HashSet<BlockId>,
    uuid: &str,
    scan: &mut ManifestScan,
) -> Result<()> {
    let mut entries: Vec<_> =
        fs::read_dir(dir).ctx("list", dir)?.collect::<std::io::Result<Vec<_>>>().ctx("list", dir)?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name();
        // Temp files, `.heads` and `.pruned` start with a dot; manifests never do.
        if name.as_bytes().first() == Some(&b'.') {
            continue;
        }
        scan.manifests += 1;
        let file = e.path();
        let problem = |kind, detail: String| Problem { kind, file: file.display().to_string(), detail };
        let read = fs::read(&file).map_err(|e| e.to_string());
        let v = match read.as_ref().map_err(String::clone).and_then(|b| Version::decode(b)) {
            Ok(v) => v,
            Err(reason) => {
                scan.corrupt.push(BadManifest {
                    file: file.clone(),
                    path: path.clone(),
                    name: String::from_utf8_lossy(name.as_bytes()).into_owned(),
                    bytes: read.unwrap_or_default(),
                    problem: problem("corrupt-manifest", reason),
                });
                continue;
            }
        };
        if v.path != *path
            || (name.as_bytes() != layout::LATEST.as_bytes() && name.as_bytes() != v.id.as_str().as_bytes())
        {
            scan.problems.push(problem(
                "corrupt-manifest",
                format!("version {} of {} is filed in the wrong place", v.id, v.path),
            ));
        }
        for b in &v.blocks {
            if !good.contains(&b.id) {
                scan.needs.push(NeedRec {
                    block: b.id,
                    need: Need { path: v.path.to_text(), version: Some(v.id.to_string()) },
                    mine: v.origin == uuid,
                    problem: problem(
                        "missing-block",
                        format!("{}@{} needs block {} which is missing or corrupt", v.path, v.id, b.id),
                    ),
                });
            }
        }
    }
    Ok(())
}

enum ManifestOutcome {
    Fixed(Fix),
    Quarantined(Quarantined, Affected),
}

/// Replaces a manifest that does not decode with a good copy of the same version, or moves
/// it to the quarantine. The caller holds the commit lock.
///
/// The version is the file's name, or for `latest` the id its `id` line still carries.
/// A good copy is another local file of that version (`versions/<id>` for `latest`,
/// `latest` for `versions/<id>`), else a reachable peer's (`versions/<id>` or its `latest`),
/// decoded with every check and of the same path and id. A `latest` whose id line is gone
/// takes the one version the journal lists for the path that has no file here (nor was
/// pruned or quarantined) and that exactly one candidate on the peers matches; with none
/// or several, nothing is guessed. `latest` is never replaced by an older version.
fn repair_manifest(vol: &Volume, peers: &[Peer], bad: &BadManifest) -> Result<ManifestOutcome> {
    let dir = vol.versions_dir(&bad.path);
    let is_latest = bad.name == layout::LATEST;
    let named = if is_latest { salvage_id(&bad.bytes) } else { VersionId::parse(&bad.name) };
    let mut found: Option<(Version, String)> = None;
    if let Some(id) = &named {
        let other = if is_latest { dir.join(id.as_str()) } else { dir.join(layout::LATEST) };
        if let Some(v) = read_copy(&other, &bad.path, id) {
            found = Some((v, other.display().to_string()));
        } else {
            found = peers.iter().find_map(|p| peer_copy(p, &bad.path, id).map(|v| (v, format!("peer {}", p.name))));
        }
    }
    if found.is_none() && is_latest {
        let mut hits = Vec::new();
        for id in journal_candidates(vol, &bad.path, &dir)? {
            if let Some(hit) =
                peers.iter().find_map(|p| peer_copy(p, &bad.path, &id).map(|v| (v, format!("peer {}", p.name))))
            {
                hits.push(hit);
            }
        }
        if hits.len() == 1 {
            found = hits.pop();
        }
    }
    if let Some((v, from)) = found {
        fsio::write_atomic(&bad.file, &v.encode(), Durability::Now)?;
        return Ok(ManifestOutcome::Fixed(Fix {
            what: "manifest",
            file: bad.file.display().to_string(),
            id: v.id.to_string(),
            from,
            was: format!("corrupt ({})", bad.problem.detail),
        }));
    }
    let qdir = bad.path.disk_dir(&vol.layout().quarantine_manifests()).join(VERSIONS_DIR);
    fsio::create_dirs(&qdir)?;
    let dest = unique(&qdir, &bad.name, "")?;
    fsio::rename(&bad.file, &dest).ctx("move to quarantine", &bad.file)?;
    let need = Need { path: bad.path.to_text(), version: named.as_ref().map(|i| i.to_string()) };
    let hint = if is_latest {
        Some(match vol.history(&bad.path).map(|h| h.into_iter().next()) {
            Err(_) => format!("{} has no current version here now, and its other versions cannot all be read (see the other problems)", bad.path),
            Ok(Some(v)) => format!(
                "{} has no current version here now; its newest remaining version is {}: `globofs restore {}@{}` makes it current, or recover the lost one from a peer",
                bad.path, v.id, bad.path, v.id
            ),
            Ok(None) => format!("{} has no version left here; recover it from a peer or a backup", bad.path),
        })
    } else {
        None
    };
    Ok(ManifestOutcome::Quarantined(
        Quarantined {
            what: "manifest",
            file: bad.file.display().to_string(),
            moved_to: dest.display().to_string(),
            id: named.as_ref().map_or(String::new(), |i| i.to_string()),
            needed_by: vec![need.clone()],
            was: format!("corrupt ({}); no good copy here or on a reachable peer", bad.problem.detail),
        },
        Affected {
            path: need.path,
            version: need.version,
            lost_blocks: vec![],
            lost_manifest: Some(dest.display().to_string()),
            hint,
        },
    ))
}

/// The id on the `id` line of a damaged manifest, if that line survived.
fn salvage_id(bytes: &[u8]) -> Option<VersionId> {
    let text = String::from_utf8_lossy(bytes);
    text.lines().take(4).find_map(|l| l.strip_prefix("id ")).and_then(|i| VersionId::parse(i.trim_end_matches('\r')))
}

/// Versions of `path` in the journal, newest first, that have no file in `dir` and were
/// neither pruned nor quarantined: what a lost `latest` can have been.
fn journal_candidates(vol: &Volume, path: &VolPath, dir: &Path) -> Result<Vec<VersionId>> {
    let pruned = vol.pruned(path).unwrap_or_default();
    let qdir = path.disk_dir(&vol.layout().quarantine_manifests()).join(VERSIONS_DIR);
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for e in journal::read(vol, 0, journal::end(vol)?)?.into_iter().rev() {
        if e.path != *path || !seen.insert(e.id.clone()) {
            continue;
        }
        let id = e.id;
        if pruned.contains_key(&id) || dir.join(id.as_str()).exists() || qdir.join(id.as_str()).exists() {
            continue;
        }
        out.push(id);
    }
    Ok(out)
}

/// A local manifest file, if it decodes and is version `id` of `path`.
fn read_copy(file: &Path, path: &VolPath, id: &VersionId) -> Option<Version> {
    let bytes = fs::read(file).ok()?;
    Version::decode(&bytes).ok().filter(|v| v.path == *path && v.id == *id)
}

/// A peer's manifest of version `id` of `path` (its `versions/<id>`, else its `latest`),
/// opened without following a symlink, bounded, and decoded with every check.
fn peer_copy(peer: &Peer, path: &VolPath, id: &VersionId) -> Option<Version> {
    let dir = path.disk_dir(&peer.layout().root()).join(VERSIONS_DIR);
    [dir.join(id.as_str()), dir.join(layout::LATEST)].iter().find_map(|file| {
        let f = log::open_nofollow(file).ok()?;
        if !f.metadata().is_ok_and(|m| m.is_file() && m.len() <= MAX_MANIFEST as u64) {
            return None;
        }
        let mut bytes = Vec::new();
        f.take(MAX_MANIFEST as u64 + 1).read_to_end(&mut bytes).ok()?;
        Version::decode(&bytes).ok().filter(|v| v.path == *path && v.id == *id)
    })
}

/// `dir/<stem><ext>`, or `dir/<stem>.2<ext>`, `.3`... if that exists: the quarantine never
/// overwrites what it already holds.
fn unique(dir: &Path, stem: &str, ext: &str) -> Result<PathBuf> {
    let mut n = 1;
    loop {
        let name = if n == 1 { format!("{stem}{ext}") } else { format!("{stem}.{n}{ext}") };
        let p = dir.join(name);
        match fs::symlink_metadata(&p) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(p),
            Err(e) => return Err(e).ctx("stat", &p),
            Ok(_) => n += 1,
        }
    }
}
