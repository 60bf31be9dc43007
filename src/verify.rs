//! `globofs verify`: re-hashes every block, decodes every manifest, and checks that each
//! block a manifest names is present and sound. It only reads; it lists each problem.

use crate::blocks;
use crate::error::{IoContext, Result};
use crate::fsio;
use crate::ids::BlockId;
use crate::layout;
use crate::manifest::Version;
use crate::paths::{unescape_name, VolPath, VERSIONS_DIR};
use crate::progress::Progress;
use crate::volume::Volume;
use std::collections::HashSet;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
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

/// The outcome of a verify run.
#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    /// Blocks re-hashed.
    pub blocks: usize,
    /// Manifests checked.
    pub manifests: usize,
    /// Blocks not stored here that a reachable peer holds (read pulls them): not a problem.
    pub blocks_on_peers: usize,
    /// Everything found wrong.
    pub problems: Vec<Problem>,
}

/// Checks the whole volume.
pub fn verify(vol: &Volume, show_progress: bool) -> Result<Report> {
    let listed = vol.blocks().list()?;
    let mut report = Report::default();
    let mut ids = Vec::with_capacity(listed.len());
    for r in listed {
        match r {
            Ok(id) => ids.push(id),
            Err(p) if fsio::is_tmp_name(p.file_name().map(|n| n.as_bytes()).unwrap_or_default()) => {}
            Err(p) => report.problems.push(Problem {
                kind: "stray-file",
                file: p.display().to_string(),
                detail: "not a block file name".into(),
            }),
        }
    }
    report.blocks = ids.len();
    let progress = Progress::items("verify", ids.len() as u64, show_progress);
    let good: Mutex<HashSet<BlockId>> = Mutex::new(HashSet::with_capacity(ids.len()));
    let bad: Mutex<Vec<Problem>> = Mutex::new(Vec::new());
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
                                b.push(Problem {
                                    kind: "corrupt-block",
                                    file: path.display().to_string(),
                                    detail: format!("block {id}: {reason}"),
                                });
                            }
                        }
                    }
                    progress.inc(1);
                }
            });
        }
    });
    progress.finish();
    report.problems.extend(bad.into_inner().unwrap_or_default());
    let good = good.into_inner().unwrap_or_default();
    let mut missing = Vec::new();
    check_manifests(&vol.layout().root(), &VolPath::root(), &good, &mut report, &mut missing)?;
    // A block never pulled from a peer is normal; one absent here and everywhere is not.
    let peers: Vec<_> = crate::peers::list(vol)?.into_iter().filter(|p| p.reachable()).collect();
    let mut on_peers = HashSet::new();
    for (id, problem) in missing {
        let absent_here = !vol.blocks().contains(&id);
        if absent_here
            && (on_peers.contains(&id) || peers.iter().any(|p| blocks::block_path(&p.layout().hashes(), &id).is_file()))
        {
            on_peers.insert(id);
        } else {
            report.problems.push(problem);
        }
    }
    report.blocks_on_peers = on_peers.len();
    Ok(report)
}

type Missing = Vec<(BlockId, Problem)>;

fn check_manifests(
    disk: &Path,
    path: &VolPath,
    good: &HashSet<BlockId>,
    report: &mut Report,
    missing: &mut Missing,
) -> Result<()> {
    let mut names: Vec<_> =
        fs::read_dir(disk).ctx("list", disk)?.collect::<std::io::Result<Vec<_>>>().ctx("list", disk)?;
    names.sort_by_key(|e| e.file_name());
    for e in names {
        let name = e.file_name();
        if name.as_bytes() == VERSIONS_DIR.as_bytes() {
            check_versions(&e.path(), path, good, report, missing)?;
            continue;
        }
        let child = unescape_name(name.as_bytes()).and_then(|n| path.join(&n).ok());
        match child {
            Some(c) if e.file_type().is_ok_and(|t| t.is_dir()) => {
                check_manifests(&e.path(), &c, good, report, missing)?
            }
            _ => report.problems.push(Problem {
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
    report: &mut Report,
    missing: &mut Missing,
) -> Result<()> {
    for e in fs::read_dir(dir).ctx("list", dir)? {
        let e = e.ctx("list", dir)?;
        let name = e.file_name();
        // Temp files and `.heads` start with a dot; manifests never do.
        if name.as_bytes().first() == Some(&b'.') {
            continue;
        }
        report.manifests += 1;
        let file = e.path();
        let problem = |kind, detail: String| Problem { kind, file: file.display().to_string(), detail };
        let v = match fs::read(&file).map_err(|e| e.to_string()).and_then(|b| Version::decode(&b)) {
            Ok(v) => v,
            Err(reason) => {
                report.problems.push(problem("corrupt-manifest", reason));
                continue;
            }
        };
        if v.path != *path
            || (name.as_bytes() != layout::LATEST.as_bytes() && name.as_bytes() != v.id.as_str().as_bytes())
        {
            report.problems.push(problem(
                "corrupt-manifest",
                format!("version {} of {} is filed in the wrong place", v.id, v.path),
            ));
        }
        for b in &v.blocks {
            if !good.contains(&b.id) {
                let p = problem(
                    "missing-block",
                    format!("{}@{} needs block {} which is missing or corrupt", v.path, v.id, b.id),
                );
                missing.push((b.id, p));
            }
        }
    }
    Ok(())
}
