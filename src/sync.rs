//! Exchanging versions with peers: `push` appends to each reachable peer's log in our name
//! every version it has not received (our journal past its watermark), `receive` applies the
//! logs peers pushed into us, and `mirror` fetches missing blocks. Nothing here trusts a
//! peer: records are checksummed and decoded strictly, paths validated, unknown senders
//! ignored, and an unreachable peer is skipped with nothing changed on either side.

use crate::error::{Error, IoContext, Result};
use crate::fsio::{self, Durability};
use crate::ids::{BlockId, VersionId};
use crate::journal;
use crate::log::{self, WriterState};
use crate::manifest::Version;
use crate::paths::VolPath;
use crate::peers::{self, Peer};
use crate::progress::Progress;
use crate::record::{PruneNotice, Record};
use crate::revoke::{self, Revoked};
use crate::tree;
use crate::volume::{descends, CommitPlan, Lineage, Volume};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// How a push to one peer went.
#[derive(Debug, serde::Serialize)]
pub struct PushOutcome {
    /// Peer name.
    pub peer: String,
    /// Versions appended to its log.
    pub sent: usize,
    /// Prune notices and revocations appended with them.
    pub notices: usize,
    /// `None` on success, else why it failed (unreachable included).
    pub error: Option<String>,
    /// True when the peer was unreachable (retried next time).
    pub unreachable: bool,
    /// True when it was unreachable only because its directory is not there (not mounted,
    /// offline), not because its config is broken or its node revoked (`push --offline-ok`).
    #[serde(skip)]
    pub offline: bool,
}

impl PushOutcome {
    /// A push to `peer` that did not happen, counted as unreachable (exit 1); `offline`
    /// when only because its directory is not there.
    fn failed(peer: String, why: String, offline: bool) -> PushOutcome {
        PushOutcome { peer, sent: 0, notices: 0, error: Some(why), unreachable: true, offline }
    }
}

/// Our push bookkeeping for one peer (`local/state/push/<uuid>`).
#[derive(Default)]
struct PushState {
    journal_offset: u64,
    writer: WriterState,
    last_push: u64,
    /// Lines of `local/state/revoked` sent.
    revoked: usize,
}

impl PushState {
    fn load(path: &Path) -> PushState {
        let mut s = PushState::default();
        for line in fs::read_to_string(path).unwrap_or_default().lines() {
            let (k, v) = line.split_once(' ').unwrap_or((line, ""));
            match k {
                "journal" => s.journal_offset = v.parse().unwrap_or(0),
                "segment" => s.writer.segment = v.to_string(),
                "length" => s.writer.len = v.parse().unwrap_or(0),
                "pushed" => s.last_push = v.parse().unwrap_or(0),
                "revoked" => s.revoked = v.parse().unwrap_or(0),
                _ => {}
            }
        }
        s
    }

    fn save(&self, path: &Path) -> Result<()> {
        let text = format!(
            "journal {}\nsegment {}\nlength {}\npushed {}\nrevoked {}\n",
            self.journal_offset, self.writer.segment, self.writer.len, self.last_push, self.revoked
        );
        fsio::create_dirs(path.parent().unwrap_or(Path::new(".")))?;
        fsio::write_atomic(path, text.as_bytes(), Durability::Now)
    }
}

/// Forgets, for every peer, where our log in its volume stood (segment and length), keeping
/// the watermarks: after `reidentify` our log there is a new one, under the new uuid, and
/// what the old one held was pushed already.
pub(crate) fn forget_log_positions(vol: &Volume) -> Result<()> {
    for p in peers::list(vol)? {
        let path = vol.layout().push_state(&p.uuid);
        if path.exists() {
            let mut s = PushState::load(&path);
            s.writer = WriterState::default();
            s.save(&path)?;
        }
    }
    Ok(())
}

/// The segment id of our log's `latest` in the volume of the peer `peer_uuid`, as our push
/// state records it (empty after a rotation or before any push).
pub(crate) fn pushed_segment(layout: &crate::layout::Layout, peer_uuid: &str) -> String {
    PushState::load(&layout.push_state(peer_uuid)).writer.segment
}

/// Seconds since the epoch of the last successful push to `peer`, if any.
pub fn last_push(vol: &Volume, peer: &Peer) -> Option<u64> {
    Some(PushState::load(&vol.layout().push_state(&peer.uuid)).last_push).filter(|&t| t > 0)
}

/// Versions in our journal not yet pushed to `peer`.
pub fn pending(vol: &Volume, peer: &Peer) -> Result<usize> {
    Ok(owed(vol, peer)?.len())
}

/// The versions in our journal past `peer`'s watermark that it needs: all but the prunes
/// and the versions it made itself (which a push never sends back).
fn owed(vol: &Volume, peer: &Peer) -> Result<Vec<VersionId>> {
    let from = PushState::load(&vol.layout().push_state(&peer.uuid)).journal_offset;
    let node: String = peer.uuid.chars().filter(|c| c.is_ascii_hexdigit()).take(8).collect();
    // An id names the first 8 hex digits of its maker's uuid: only those that match it
    // need their manifest read to tell.
    let made_by_peer = |e: &journal::Entry| {
        e.id.as_str().split('-').nth(1) == Some(node.as_str())
            && vol.version(&e.path, &e.id).is_ok_and(|v| v.origin == peer.uuid)
    };
    Ok(journal::read(vol, from, journal::end(vol)?)?
        .into_iter()
        .filter(|e| !e.pruned && !made_by_peer(e))
        .map(|e| e.id)
        .collect())
}

/// Versions some peer has not received yet (reachable or not): for each, the versions past
/// its watermark that it did not make itself. Prune keeps them so the push can still send
/// them. A broken peer (its config does not parse) has no known watermark: while there is
/// one, the whole journal is kept.
pub fn unpushed(vol: &Volume) -> Result<HashSet<VersionId>> {
    let (peers, broken) = peers::scan(vol.layout())?;
    if !broken.is_empty() {
        return Ok(journal::read(vol, 0, journal::end(vol)?)?
            .into_iter()
            .filter(|e| !e.pruned)
            .map(|e| e.id)
            .collect());
    }
    let mut ids = HashSet::new();
    for p in &peers {
        ids.extend(owed(vol, p)?);
    }
    Ok(ids)
}

/// Pushes to the named peers (all if `names` is empty), in parallel; the progress bar (on
/// a terminal) counts peers done.
pub fn push(vol: &Volume, names: &[String], show_progress: bool) -> Result<Vec<PushOutcome>> {
    vol.check_not_copy()?;
    let (all, broken) = peers::scan(vol.layout())?;
    for n in names {
        if !all.iter().any(|p| p.name == *n) && !broken.iter().any(|b| b.name == *n) {
            return Err(Error::NotFound(format!("peer {n} (see `globofs peer ls`)")));
        }
    }
    let chosen: Vec<Peer> = all.into_iter().filter(|p| names.is_empty() || names.contains(&p.name)).collect();
    // A revoked node gets nothing more from us; cron hears of it (exit 1) until it is removed.
    let revoked = revoke::list(vol.layout())?;
    let (chosen, revoked): (Vec<Peer>, Vec<Peer>) =
        chosen.into_iter().partition(|p| !revoked.iter().any(|r| r.uuid == p.uuid));
    let revoked = revoked.into_iter().map(|p| {
        let why = format!("peer {0}: not pushed: its node ({1}) is revoked; run `globofs peer rm {0}`", p.name, p.uuid);
        PushOutcome::failed(p.name, why, false)
    });
    // A peer whose config does not parse is unreachable, with the reason: the others are
    // served all the same, and the exit code (1) tells cron something needs fixing.
    let broken: Vec<PushOutcome> = broken
        .into_iter()
        .filter(|b| names.is_empty() || names.contains(&b.name))
        .map(|b| PushOutcome::failed(b.name.clone(), b.to_string(), false))
        .collect();
    // Everything in the journal up to here belongs to finished commits (appended under the lock).
    let end = {
        let _lock = vol.lock()?;
        journal::end(vol)?
    };
    let progress = Progress::items("push", chosen.len() as u64, show_progress);
    let outcomes = std::thread::scope(|s| {
        let handles: Vec<_> = chosen
            .iter()
            .map(|p| {
                let progress = progress.clone();
                s.spawn(move || {
                    let r = push_one(vol, p, end);
                    progress.inc(1);
                    r
                })
            })
            .collect();
        handles
            .into_iter()
            .zip(&chosen)
            .map(|(h, p)| {
                let r = h.join().unwrap_or_else(|_| Err(Error::Internal("a push thread panicked".into())));
                match r {
                    Ok((sent, notices)) => PushOutcome {
                        peer: p.name.clone(),
                        sent,
                        notices,
                        error: None,
                        unreachable: false,
                        offline: false,
                    },
                    Err(e @ Error::Unreachable { .. }) => PushOutcome::failed(p.name.clone(), e.to_string(), true),
                    Err(e) => PushOutcome {
                        unreachable: false,
                        ..PushOutcome::failed(
                            p.name.clone(),
                            format!("push to peer {} failed: {e}; the next push repairs and resends", p.name),
                            false,
                        )
                    },
                }
            })
            .collect::<Vec<_>>()
    });
    progress.finish();
    let mut outcomes: Vec<PushOutcome> = outcomes.into_iter().chain(broken).chain(revoked).collect();
    outcomes.sort_by(|a, b| a.peer.cmp(&b.peer));
    Ok(outcomes)
}

/// Pushes to one peer: (versions, notices) appended.
fn push_one(vol: &Volume, peer: &Peer, journal_end: u64) -> Result<(usize, usize)> {
    let revoked = revoke::list(vol.layout())?;
    if !peer.reachable() {
        return Err(peer.unreachable());
    }
    let state_path = vol.layout().push_state(&peer.uuid);
    fsio::create_dirs(state_path.parent().unwrap_or(vol.dir()))?;
    // One writer per log: a second push from this node waits for the first.
    let lock_path = state_path.with_extension("lock");
    let _lock = fsio::lock_file(&lock_path)?;
    let mut state = PushState::load(&state_path);
    let log_dir = peer.layout().updates(&vol.config().uuid);
    let mut already_there = HashSet::new();
    if state.journal_offset > journal_end || log::lost_records(&log_dir, &state.writer) {
        // Our journal was replaced, or the peer's log lost records: go through the whole
        // journal again, sending what the log no longer holds.
        state.journal_offset = 0;
        state.writer = WriterState::default();
        state.revoked = 0;
        already_there = ids_in_log(&log_dir);
    }
    let entries = journal::read(vol, state.journal_offset, journal_end)?;
    let mut records = Vec::with_capacity(entries.len());
    let mut notices = 0;
    for e in &entries {
        if e.pruned {
            records.push(Record::Pruned(PruneNotice { path: e.path.clone(), id: e.id.clone() }).encode());
            notices += 1;
            continue;
        }
        match vol.version(&e.path, &e.id) {
            Ok(v) if v.origin == peer.uuid => {} // it made it: it has it
            Ok(v) if already_there.contains(v.id.as_str()) => {}
            Ok(v) => records.push(v.encode()),
            // A commit that never finished, or a pruned version; a damaged manifest is left
            // for `verify` rather than blocking every later version.
            Err(Error::UnknownVersion { .. } | Error::Corrupt { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    // Revocations go after the versions received before them.
    for r in revoked.iter().skip(state.revoked) {
        records.push(Record::Revoked(r.clone()).encode());
        notices += 1;
    }
    if !records.is_empty() {
        // Never create the peer's volume structure: `local/upstream` must already be there,
        // or the peer went away (an empty mount point) since the reachability check.
        let upstream = peer.layout().upstream();
        // Another volume may have taken the peer's place since the check at the start (a
        // remount, another disk): look again right before writing.
        if !upstream.is_dir() || !peer.reachable() {
            return Err(peer.unreachable());
        }
        // The peer controls its volume: a `local/upstream` or `<uuid>/` that is a symlink
        // would make us create and append files wherever it points, outside its volume.
        let real_dir = |p: &Path| fs::symlink_metadata(p).is_ok_and(|m| m.is_dir());
        if !real_dir(&upstream) {
            return Err(Error::corrupt("log directory", &upstream, "not a directory (a symlink?)"));
        }
        let mine = upstream.join(&vol.config().uuid);
        for d in [mine.clone(), mine.join("updates")] {
            match fsio::create_dir(&d) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e).ctx("create", &d),
                _ => {}
            }
            if !real_dir(&d) {
                return Err(Error::corrupt("log directory", &d, "not a directory (a symlink?)"));
            }
        }
        log::append(&mine.join("updates"), &mut state.writer, &records)?;
        // ... and after: if the peer's place changed during the append, the records may
        // have gone elsewhere, so the state must not count them (the next push resends).
        if !peer.reachable() {
            return Err(peer.unreachable());
        }
    }
    state.journal_offset = journal_end;
    state.revoked = revoked.len();
    state.last_push = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    state.save(&state_path)?;
    Ok((records.len() - notices, notices))
}

/// Ids of the versions every complete record of a log holds.
fn ids_in_log(dir: &Path) -> HashSet<String> {
    let mut ids = HashSet::new();
    for seg in log::segments(dir).unwrap_or_default() {
        let Ok(bytes) = log::read_segment(&seg) else { continue };
        for (payload, _) in log::parse(&bytes, 0).records {
            if let Ok(Record::Version(v)) = Record::decode(&payload) {
                ids.insert(v.id.as_str().to_string());
            }
        }
    }
    ids
}

/// What applying peers' logs did.
#[derive(Debug, Default, serde::Serialize)]
pub struct ReceiveReport {
    /// Versions that became heads.
    pub applied: usize,
    /// Versions that joined history only (older than our head).
    pub history: usize,
    /// Versions concurrent with our head: kept as other heads (conflicts).
    pub concurrent: usize,
    /// Paths whose head changed.
    #[serde(skip)]
    pub changed: Vec<VolPath>,
    /// Versions pruned here because a peer pruned them and their blocks are not here.
    pub pruned: usize,
    /// Nodes that peers said are revoked, not known here as such before.
    #[serde(skip)]
    pub revoked: Vec<Revoked>,
    /// Records refused, with why.
    pub refused: Vec<String>,
}

/// Our reading position in one peer's log (`local/state/recv/<uuid>`).
#[derive(Default)]
struct RecvState {
    current: Option<(String, u64)>,
    done: HashSet<String>,
}

impl RecvState {
    fn load(path: &Path) -> RecvState {
        let mut s = RecvState::default();
        for line in fs::read_to_string(path).unwrap_or_default().lines() {
            let mut w = line.split(' ');
            match (w.next(), w.next(), w.next()) {
                (Some("current"), Some(id), Some(off)) => s.current = off.parse().ok().map(|o| (id.to_string(), o)),
                (Some("done"), Some(id), None) => {
                    s.done.insert(id.to_string());
                }
                _ => {}
            }
        }
        s
    }

    fn save(&self, path: &Path) -> Result<()> {
        let mut text = String::new();
        if let Some((id, off)) = &self.current {
            text.push_str(&format!("current {id} {off}\n"));
        }
        for id in &self.done {
            text.push_str(&format!("done {id}\n"));
        }
        fsio::create_dirs(path.parent().unwrap_or(Path::new(".")))?;
        fsio::write_atomic(path, text.as_bytes(), Durability::Now)
    }
}

/// Applies every new record that our peers pushed into `local/upstream/`. Cheap when
/// nothing is new: one stat and one short read per peer.
pub fn receive(vol: &Volume) -> Result<ReceiveReport> {
    let mut report = ReceiveReport::default();
    let peers = peers::list(vol)?;
    if peers.is_empty() {
        return Ok(report);
    }
    let lock_path = vol.layout().state().join("recv.lock");
    let _lock = fsio::lock_file(&lock_path)?;
    // Each version with the peer it came from and its place among that peer's records.
    let mut incoming: Vec<(Version, usize, usize)> = Vec::new();
    let mut notices: Vec<PruneNotice> = Vec::new();
    let mut revocations: Vec<(Revoked, usize, usize)> = Vec::new();
    let revoked: HashSet<String> = revoke::list(vol.layout())?.into_iter().map(|r| r.uuid).collect();
    let mut states = Vec::new();
    for (from, peer) in peers.iter().enumerate() {
        let mut seq = 0;
        if revoked.contains(&peer.uuid) {
            report.refused.push(format!(
                "peer {}: its node is revoked, its log is not read; run `globofs peer rm {}`",
                peer.name, peer.name
            ));
            continue;
        }
        let dir = vol.layout().updates(&peer.uuid);
        // A peer's directories must be real directories, never links leading elsewhere.
        let real_dir = |p: &Path| fs::symlink_metadata(p).is_ok_and(|m| m.is_dir());
        if !real_dir(&vol.layout().upstream().join(&peer.uuid)) || !real_dir(&dir) {
            continue;
        }
        let state_path = vol.layout().recv_state(&peer.uuid);
        let mut state = RecvState::load(&state_path);
        let before = (state.current.clone(), state.done.len());
        let mut seen = HashSet::new();
        for seg in log::segments(&dir)? {
            let is_latest = seg.file_name().is_some_and(|n| n == "latest");
            let Some(id) = log::header_id(&seg) else { continue };
            seen.insert(id.clone());
            if state.done.contains(&id) {
                continue;
            }
            let start = match &state.current {
                Some((cur, off)) if *cur == id => *off,
                _ => 0,
            };
            if is_latest && start > 0 && fs::symlink_metadata(&seg).is_ok_and(|m| m.len() == start) {
                continue; // nothing new
            }
            let bytes = match log::read_segment(&seg) {
                Ok(b) => b,
                Err(e) => {
                    report.refused.push(format!("peer {}: {e}", peer.name));
                    continue;
                }
            };
            let parsed = log::parse(&bytes, start);
            for msg in &parsed.refused {
                report.refused.push(format!("peer {} log {}: {msg}", peer.name, seg.display()));
            }
            for (payload, _) in parsed.records {
                seq += 1;
                match Record::decode(&payload) {
                    // A path too long to store here would fail the whole batch's commit,
                    // and every later one: refuse it alone.
                    Ok(Record::Version(v)) if !storable(vol, &v.path) => report.refused.push(format!(
                        "peer {}: refused {}@{}: the path is too long to store in this volume",
                        peer.name, v.path, v.id
                    )),
                    Ok(Record::Version(v)) => incoming.push((v, from, seq)),
                    Ok(Record::Pruned(n)) => notices.push(n),
                    Ok(Record::Revoked(r)) => revocations.push((r, from, seq)),
                    Err(why) => report.refused.push(format!("peer {}: refused a record: {why}", peer.name)),
                }
            }
            if is_latest {
                state.current = Some((id, parsed.valid_end));
            } else {
                state.done.insert(id);
            }
        }
        state.done.retain(|id| seen.contains(id));
        if (state.current.clone(), state.done.len()) != before {
            states.push((state_path, state));
        }
    }
    // A version a revoked node made is refused unless we have it. A revocation read now
    // applies to every other log of this batch, and to the records of its own log that
    // follow it (those before it were sent before it).
    let (refused, incoming): (Vec<_>, Vec<_>) = incoming.into_iter().partition(|(v, from, seq)| {
        (revoked.contains(&v.origin)
            || revocations.iter().any(|(r, rf, rs)| r.uuid == v.origin && (rf != from || rs < seq)))
            && !vol.is_known(&v.path, &v.id)
    });
    for (v, from, _) in refused {
        report.refused.push(format!(
            "peer {}: refused {}@{}: it was made by node {} ({}), which is revoked",
            peers[from].name, v.path, v.id, v.origin_name, v.origin
        ));
    }
    let incoming: Vec<Version> = incoming.into_iter().map(|(v, _, _)| v).collect();
    if !incoming.is_empty() {
        apply(vol, incoming, &mut report)?;
    }
    if !notices.is_empty() {
        report.pruned = prune_noticed(vol, &notices)?;
    }
    let revocations: Vec<Revoked> = revocations.into_iter().map(|(r, _, _)| r).collect();
    report.revoked = revoke::add(vol.layout(), &revocations)?;
    for (path, state) in states {
        state.save(&path)?;
    }
    Ok(report)
}

/// True if the manifests of `path` can be written here: every file in its `versions/`
/// directory (a version id, at most 64 bytes, or a temp name) must fit in `PATH_MAX`.
fn storable(vol: &Volume, path: &VolPath) -> bool {
    vol.versions_dir(path).as_os_str().len() + 1 + 64 < libc::PATH_MAX as usize
}

/// The heads of one path while a batch is applied: `latest` and the others (conflicts).
#[derive(Clone)]
struct Heads {
    latest: Option<Version>,
    others: Vec<Version>,
}

/// Decides, under the commit lock, what each received version is to us, in order. Parents
/// decide, never clocks: a version that an existing head descends from only joins the
/// history; heads it descends from stop being heads; if it replaces `latest` it is the new
/// `latest` (fast-forward), otherwise it is kept as another head (a conflict).
fn apply(vol: &Volume, incoming: Vec<Version>, report: &mut ReceiveReport) -> Result<()> {
    let _lock = vol.lock()?;
    let mut plan = CommitPlan::default();
    let mut new: HashMap<VersionId, Version> = HashMap::new();
    let mut heads: HashMap<VolPath, Heads> = HashMap::new();
    let mut links_on_disk: HashMap<VolPath, bool> = HashMap::new();
    for v in incoming {
        if new.contains_key(&v.id) {
            continue;
        }
        if vol.is_known(&v.path, &v.id) {
            if vol.version(&v.path, &v.id).is_err() {
                continue; // pruned here: it was history, it stays gone
            }
            // Known. It should be a head or an ancestor of one; if not, a crash between a
            // commit's phases lost it from `.heads`: list it again.
            let current = match heads.get(&v.path) {
                Some(h) => h.clone(),
                None => Heads { latest: vol.head(&v.path)?, others: vol.other_heads(&v.path)? },
            };
            let all: Vec<&Version> = current.latest.iter().chain(current.others.iter()).collect();
            // Versions planned earlier in this batch count too (they are not on disk yet).
            let lookup =
                |id: &VersionId| new.get(id).map(|n| n.parents.clone()).or_else(|| vol.parents_of(&v.path, id));
            let placed =
                all.iter().any(|h| h.id == v.id || descends(h, &v.id, &lookup) || descends(&v, &h.id, &lookup));
            if !placed && !all.is_empty() {
                let mut next = current.clone();
                next.others.push(v.clone());
                let ids: Vec<VersionId> = next.others.iter().map(|o| o.id.clone()).collect();
                plan.set_other_heads(vol, &v.path, &ids);
                heads.insert(v.path.clone(), next);
            }
            continue;
        }
        // No ancestor may be a symlink (on disk or earlier in this batch): a path through a
        // link is refused. A path under a regular file is accepted (it was made concurrently
        // with that file on another node; refusing it would leave the nodes apart for good):
        // it is kept, hidden under the file, and listed by `status` until the user settles it.
        let mut ancestor = v.path.parent();
        let mut through_link = None;
        while let Some(a) = ancestor.filter(|a| !a.is_root()) {
            let is_link =
                |h: Option<&Version>| h.is_some_and(|h| h.is_live() && h.kind == crate::manifest::Kind::Symlink);
            let link = match heads.get(&a) {
                Some(h) => is_link(h.latest.as_ref()),
                None => match links_on_disk.get(&a) {
                    Some(&l) => l,
                    None => {
                        let l = is_link(vol.head(&a)?.as_ref());
                        links_on_disk.insert(a.clone(), l);
                        l
                    }
                },
            };
            if link {
                through_link = Some(a.clone());
            }
            ancestor = a.parent();
        }
        if let Some(a) = through_link {
            report.refused.push(format!("refused {}@{}: {a} is a symlink", v.path, v.id));
            continue;
        }
        let current = match heads.get(&v.path) {
            Some(h) => h.clone(),
            None => Heads { latest: vol.head(&v.path)?, others: vol.other_heads(&v.path)? },
        };
        let lookup = |id: &VersionId| new.get(id).map(|n| n.parents.clone()).or_else(|| vol.parents_of(&v.path, id));
        let all: Vec<&Version> = current.latest.iter().chain(current.others.iter()).collect();
        // A head that `v` replaces cannot descend from it: the walk back through a head's
        // whole history (the costly one on a long history) is only for the others.
        if all.iter().any(|h| !descends(&v, &h.id, &lookup) && descends(h, &v.id, &lookup)) {
            plan.add_history(vol, v.clone())?;
            report.history += 1;
            new.insert(v.id.clone(), v);
            continue;
        }
        let replaced = |h: &Version| descends(&v, &h.id, &lookup);
        let others: Vec<Version> = current.others.iter().filter(|h| !replaced(h)).cloned().collect();
        let next = match &current.latest {
            Some(l) if !replaced(l) => {
                // Concurrent with our head: both are kept, ours stays the regular file.
                plan.add_history(vol, v.clone())?;
                report.concurrent += 1;
                report.changed.push(v.path.clone());
                let mut others = others;
                others.push(v.clone());
                Heads { latest: current.latest.clone(), others }
            }
            latest => {
                plan.replace_head(vol, latest.as_ref(), v.clone())?;
                report.applied += 1;
                report.changed.push(v.path.clone());
                Heads { latest: Some(v.clone()), others }
            }
        };
        if next.others.len() != current.others.len()
            || next.others.iter().zip(&current.others).any(|(a, b)| a.id != b.id)
        {
            let ids: Vec<VersionId> = next.others.iter().map(|o| o.id.clone()).collect();
            plan.set_other_heads(vol, &v.path, &ids);
        }
        heads.insert(v.path.clone(), next);
        new.insert(v.id.clone(), v);
    }
    vol.write_plan(plan)?;
    Ok(())
}

/// Applies prune notices from peers: a version pruned where it came from is pruned here
/// too, unless this node can still read it (every block stored here) or keeps it as a head
/// or a conflict version. Pruning it here journals the prune, so it travels on; a version
/// kept, or already gone, is left as it is and the notice goes no further. Returns how many
/// versions were pruned.
fn prune_noticed(vol: &Volume, notices: &[PruneNotice]) -> Result<usize> {
    let _lock = vol.lock()?;
    let mut by_path: BTreeMap<&VolPath, Vec<Lineage>> = BTreeMap::new();
    for n in notices {
        let Ok(v) = vol.version(&n.path, &n.id) else { continue }; // unknown, or pruned already
        let readable = v.blocks.iter().all(|b| vol.blocks().contains(&b.id));
        if readable || by_path.get(&n.path).is_some_and(|d| d.iter().any(|(id, _)| *id == n.id)) {
            continue;
        }
        let head = vol.head(&n.path)?.is_some_and(|h| h.id == n.id);
        if head || vol.other_heads(&n.path)?.iter().any(|h| h.id == n.id) {
            continue;
        }
        by_path.entry(&n.path).or_default().push((v.id, v.parents));
    }
    let victims: Vec<(VolPath, Vec<Lineage>)> = by_path.into_iter().map(|(p, d)| (p.clone(), d)).collect();
    vol.drop_versions(&victims)?;
    Ok(victims.iter().map(|(_, d)| d.len()).sum())
}

/// Fetches block `id` (needed by `file`) from the first reachable peer that has a good copy,
/// stores it locally, and returns its bytes. Bad copies are never stored or served.
pub fn fetch_block(vol: &Volume, id: &BlockId, file: &VolPath, peers: &[Peer]) -> Result<Vec<u8>> {
    match good_copy(id, peers) {
        Ok(copy) => {
            vol.blocks().put_encoded(id, &copy.gz)?;
            if vol.config().cacheonly {
                record_pulled(vol, id);
            }
            Ok(copy.data)
        }
        Err(tried) => Err(Error::MissingBlock { path: file.to_string(), block: id.hex(), peers: tried }),
    }
}

/// A peer's copy of a block that passed every check.
pub struct PeerCopy {
    /// The block file, as the peer stores it.
    pub gz: Vec<u8>,
    /// Its content (hash-checked against the id).
    pub data: Vec<u8>,
    /// The peer it came from.
    pub peer: String,
}

/// The first good copy of block `id` among `peers` (in their order): a regular file, not
/// a symlink, of plausible size, that inflates to bytes with the right SHA-256. Missing,
/// oversized and bad copies are passed over. `Err` lists the peers tried.
pub fn good_copy(id: &BlockId, peers: &[Peer]) -> std::result::Result<PeerCopy, Vec<String>> {
    let mut tried = Vec::new();
    for p in peers {
        tried.push(p.name.clone());
        let path = crate::blocks::block_path(&p.layout().hashes(), id);
        let Ok(f) = log::open_nofollow(&path) else { continue };
        if !f.metadata().is_ok_and(|m| m.is_file() && m.len() <= 2 * crate::blocks::MAX_BLOCK as u64) {
            continue;
        }
        let mut gz = Vec::new();
        if f.take(2 * crate::blocks::MAX_BLOCK as u64).read_to_end(&mut gz).is_err() {
            continue;
        }
        let Ok(data) = crate::blocks::decode_checked(id, &gz) else { continue };
        return Ok(PeerCopy { gz, data, peer: p.name.clone() });
    }
    Err(tried)
}

fn record_pulled(vol: &Volume, id: &BlockId) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let p = vol.layout().pulled();
    if let Ok(mut f) = fsio::open_append(&p, true) {
        let _ = fsio::write(&mut f, format!("{id} {now}\n").as_bytes(), &p);
    }
}

/// What `mirror` did.
#[derive(Debug, Default, serde::Serialize)]
pub struct MirrorReport {
    /// Distinct blocks the heads need that were not local.
    pub missing: usize,
    /// Of those, fetched now.
    pub fetched: usize,
    /// Blocks no reachable peer could supply, with a file that needs each.
    pub failed: Vec<String>,
    /// When blocks were left missing: the peers unreachable at the end (gone since the start,
    /// or unreachable from it), one message each naming the peer.
    pub lost_peers: Vec<String>,
}

/// Every block a head (at or under `top`) needs and this volume lacks, with a file needing it.
pub fn missing_blocks(vol: &Volume, top: &VolPath) -> Result<BTreeMap<BlockId, VolPath>> {
    let mut missing = BTreeMap::new();
    let entry = tree::stat(vol, top)?;
    tree::walk(vol, &entry, &mut |e| {
        if let Some(v) = &e.head {
            for b in &v.blocks {
                if !missing.contains_key(&b.id) && !vol.blocks().contains(&b.id) {
                    missing.insert(b.id, v.path.clone());
                }
            }
        }
        Ok(())
    })?;
    Ok(missing)
}

/// Fetches every block the heads at or under `top` need, in parallel.
pub fn mirror(vol: &Volume, top: &VolPath, show_progress: bool) -> Result<MirrorReport> {
    let missing: Vec<(BlockId, VolPath)> = missing_blocks(vol, top)?.into_iter().collect();
    let mut report = MirrorReport { missing: missing.len(), ..Default::default() };
    if missing.is_empty() {
        return Ok(report);
    }
    let all = peers::list(vol)?;
    let peers: Vec<Peer> = all.iter().filter(|p| p.reachable()).cloned().collect();
    let progress = Progress::items("mirror", missing.len() as u64, show_progress);
    let next = AtomicUsize::new(0);
    let fetched = AtomicUsize::new(0);
    let failed = Mutex::new(Vec::new());
    let fatal: Mutex<Option<Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                while let Some((id, file)) = missing.get(next.fetch_add(1, Ordering::Relaxed)) {
                    match fetch_block(vol, id, file, &peers) {
                        Ok(_) => {
                            fetched.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e @ Error::MissingBlock { .. }) => {
                            failed.lock().map(|mut f| f.push(e.to_string())).unwrap_or(())
                        }
                        Err(e) => {
                            if let Ok(mut f) = fatal.lock() {
                                f.get_or_insert(e);
                            }
                            return;
                        }
                    }
                    progress.inc(1);
                }
            });
        }
    });
    progress.finish();
    if let Some(e) = fatal.into_inner().ok().flatten() {
        return Err(e);
    }
    fsio::sync_filesystem(vol.dir())?;
    report.fetched = fetched.into_inner();
    report.failed = failed.into_inner().unwrap_or_default();
    if !report.failed.is_empty() {
        report.lost_peers = all.iter().filter(|p| !p.reachable()).map(|p| p.unreachable().to_string()).collect();
    }
    Ok(report)
}

/// Runs hook `command` (from the config) for `event` with the changed paths in
/// `GLOBOFS_PATHS` (one per line). A failing hook is reported, not fatal.
pub fn run_hook(vol: &Volume, event: &str, command: &str, paths: &[VolPath]) -> Option<String> {
    if command.trim().is_empty() || paths.is_empty() {
        return None;
    }
    let list: Vec<String> = paths.iter().map(|p| p.to_text()).collect();
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("GLOBOFS_VOLUME", vol.dir())
        .env("GLOBOFS_EVENT", event)
        .env("GLOBOFS_PATHS", list.join("\n"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status();
    match status {
        Ok(s) if s.success() => None,
        Ok(s) => Some(format!("{event} hook `{command}` failed ({s})")),
        Err(e) => Some(format!("{event} hook `{command}` could not run: {e}")),
    }
}
