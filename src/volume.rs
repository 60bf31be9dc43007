//! A volume: creating, finding and opening it, its lock, and the version store under
//! `local/root/` (reading heads and histories, committing new versions). Committing follows
//! docs/DESIGN.md: blocks are durable before a manifest names them, and `latest` is replaced
//! last. This module never interprets paths as a tree; see `tree` for that.

use crate::blocks::BlockStore;
use crate::config::{Chunking, Config};
use crate::error::{Error, IoContext, Result};
use crate::fsio::{self, Durability};
use crate::identity::{self, Identity, Record};
use crate::ids::{BlockId, VersionId};
use crate::journal;
use crate::layout::{self, Layout};
use crate::manifest::{Kind, Timestamp, Version, MAX_MANIFEST};
use crate::paths::{unescape_name, VolPath, VERSIONS_DIR};
use std::collections::HashMap;
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// An open volume.
#[derive(Debug)]
pub struct Volume {
    layout: Layout,
    config: Config,
    blocks: BlockStore,
    /// Peers found reachable when a block was last missing, and when (for pull on read; a
    /// long-running mount looks again after [`PEERS_TTL`]).
    reachable_peers: std::sync::Mutex<Option<(std::time::Instant, Vec<crate::peers::Peer>)>>,
    /// Whether this is the node's own place or a copy of it (checked at open).
    identity: Identity,
}

/// How long the list of reachable peers is trusted before it is checked again.
const PEERS_TTL: std::time::Duration = std::time::Duration::from_secs(5);

/// What one listing of a path's `versions/` found.
#[derive(Default)]
pub(crate) struct Listing {
    /// Every version, newest first.
    pub versions: Vec<Version>,
    /// The id of the version in `latest`.
    pub latest: Option<VersionId>,
    /// Temp files (left by a crash, or staged by a commit in progress).
    pub temps: Vec<PathBuf>,
}

/// A version's id and parents: what remains of it once pruned.
pub type Lineage = (VersionId, Vec<VersionId>);

/// Holds one of the volume's locks (commit lock, block lease) until dropped.
pub struct CommitLock(fs::File);

impl Drop for CommitLock {
    fn drop(&mut self) {
        let _ = fs2::FileExt::unlock(&self.0);
    }
}

impl Volume {
    /// Creates a new volume in `dir` (created if missing). Refuses a directory that already
    /// holds one, or that holds a volume's data without its config (`init --recover`).
    pub fn init(dir: &Path, name: Option<String>, chunking: Chunking) -> Result<Volume> {
        let layout = Layout::new(dir);
        if layout.config().exists() {
            return Err(Error::AlreadyVolume(dir.to_path_buf()));
        }
        if holds_data(&layout) {
            return Err(Error::LostConfig(dir.to_path_buf()));
        }
        fsio::create_dirs(dir)?;
        let dir = fs::canonicalize(dir).ctx("resolve", dir)?;
        let layout = Layout::new(&dir);
        for d in [layout.root(), layout.hashes(), layout.upstream(), layout.state()] {
            fsio::create_dirs(&d)?;
        }
        let name = name.filter(|n| !n.is_empty()).unwrap_or_else(host_name);
        let config = Config::new(name, dir.to_string_lossy().into_owned(), chunking);
        Record::save(&layout, &config.uuid)?;
        fsio::write_atomic(&layout.readme(), layout::README.as_bytes(), Durability::Now)?;
        config.save(&layout.config())?;
        Volume::open(&dir)
    }

    /// Opens the volume at `dir`.
    pub fn open(dir: &Path) -> Result<Volume> {
        let dir = &fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        let layout = Layout::new(dir);
        if !layout.config().is_file() {
            if holds_data(&layout) {
                return Err(Error::LostConfig(dir.to_path_buf()));
            }
            return Err(Error::NotAVolume(dir.to_path_buf()));
        }
        let config = Config::load(&layout.config())?;
        let blocks = BlockStore::new(layout.hashes(), config.compression);
        for d in [layout.root(), layout.hashes(), layout.state()] {
            if !d.is_dir() {
                return Err(Error::corrupt("volume", dir, format!("{} is missing", d.display())));
            }
        }
        let identity = identity::check(&layout, &config.uuid);
        Ok(Volume { layout, config, blocks, reachable_peers: std::sync::Mutex::new(None), identity })
    }

    /// An error if this volume is a copy of a node's volume (see [`identity`]): a copy
    /// must not make versions or push as the original.
    pub fn check_not_copy(&self) -> Result<()> {
        match &self.identity {
            Identity::Copy { at } => Err(identity::copy_error(self.dir(), &self.config.uuid, at)),
            _ => Ok(()),
        }
    }

    /// Whether this volume is its node's own place or a copy.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Finds the volume: `explicit` (from `-V` or `GLOBOFS_VOLUME`), else the nearest
    /// directory at or above the working directory that holds `local/config`.
    pub fn find(explicit: Option<&Path>) -> Result<Volume> {
        if let Some(dir) = explicit {
            return Volume::open(dir);
        }
        let cwd = std::env::current_dir().ctx("find working directory", Path::new("."))?;
        for dir in cwd.ancestors() {
            let layout = Layout::new(dir);
            if layout.config().is_file() || holds_data(&layout) {
                return Volume::open(dir);
            }
            // Inside a mount of a volume: its marker names the volume.
            let marker = dir.join(crate::paths::RESERVED_TOP).join(layout::MOUNT_MARKER);
            if let Ok(text) = fs::read(&marker) {
                use std::os::unix::ffi::OsStrExt;
                let named = std::ffi::OsStr::from_bytes(text.strip_suffix(b"\n").unwrap_or(&text));
                return Volume::open(Path::new(named));
            }
        }
        Err(Error::NoVolume(cwd))
    }

    /// The volume directory.
    pub fn dir(&self) -> &Path {
        &self.layout.volume
    }

    /// File names of this volume.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// This node's config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The block store.
    pub fn blocks(&self) -> &BlockStore {
        &self.blocks
    }

    /// Reads block `id` for `file` (hash-checked), fetching it from a reachable peer if it
    /// is not stored here.
    pub fn read_block(&self, id: &BlockId, file: &VolPath) -> Result<Vec<u8>> {
        match self.blocks.get(id, &file.to_string()) {
            Err(Error::MissingBlock { .. }) => {
                let peers = {
                    let mut cached = self.reachable_peers.lock().unwrap_or_else(|e| e.into_inner());
                    match &*cached {
                        Some((at, peers)) if at.elapsed() < PEERS_TTL => peers.clone(),
                        _ => {
                            let peers: Vec<_> = crate::peers::list(self)
                                .unwrap_or_default()
                                .into_iter()
                                .filter(|p| p.reachable())
                                .collect();
                            *cached = Some((std::time::Instant::now(), peers.clone()));
                            peers
                        }
                    }
                };
                crate::sync::fetch_block(self, id, file, &peers)
            }
            r => r,
        }
    }

    /// Takes the commit lock, waiting for other processes of this node to release it.
    pub fn lock(&self) -> Result<CommitLock> {
        Ok(CommitLock(fsio::lock_file(&self.layout.lock())?))
    }

    /// The block lease, shared: held from before storing blocks until the versions naming
    /// them are committed, so that `gc` (which takes it exclusively) never frees a block
    /// an unfinished write has stored or found already stored.
    pub fn block_lease(&self) -> Result<CommitLock> {
        Ok(CommitLock(fsio::lock_file_shared(&self.layout.gc_lock())?))
    }

    /// The block lease, exclusive (for `gc`): waits until no write holds it.
    pub(crate) fn block_lease_exclusive(&self) -> Result<CommitLock> {
        Ok(CommitLock(fsio::lock_file(&self.layout.gc_lock())?))
    }

    /// Directory holding the manifests of `path`.
    pub fn versions_dir(&self, path: &VolPath) -> PathBuf {
        path.disk_dir(&self.layout.root()).join(VERSIONS_DIR)
    }

    fn read_manifest(&self, file: &Path, path: &VolPath) -> Result<Option<Version>> {
        // Bounded read: decode refuses anything past MAX_MANIFEST, so never read more.
        let read = fs::File::open(file).and_then(|f| {
            let mut b = Vec::new();
            f.take(MAX_MANIFEST as u64 + 1).read_to_end(&mut b).map(|_| b)
        });
        let bytes = match read {
            Ok(b) => b,
            Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => return Ok(None),
            Err(e) => return Err(e).ctx("read manifest", file),
        };
        let v = Version::decode(&bytes).map_err(|r| Error::corrupt("manifest", file, r))?;
        if v.path != *path {
            return Err(Error::corrupt("manifest", file, format!("it belongs to {}", v.path)));
        }
        Ok(Some(v))
    }

    /// The newest version of `path`, tombstones included; `None` if it never existed.
    pub fn head(&self, path: &VolPath) -> Result<Option<Version>> {
        if path.is_root() {
            return Ok(None);
        }
        self.read_manifest(&self.versions_dir(path).join(layout::LATEST), path)
    }

    /// One version of `path` by id.
    pub fn version(&self, path: &VolPath, id: &VersionId) -> Result<Version> {
        let unknown = || Error::UnknownVersion { path: path.to_string(), version: id.to_string() };
        // The archived copy first: an old version stays readable even if `latest` is damaged.
        let archived = self.versions_dir(path).join(id.as_str());
        if let Some(v) = self.read_manifest(&archived, path)? {
            return Ok(v);
        }
        if let Some(h) = self.head(path)?.filter(|h| h.id == *id) {
            return Ok(h);
        }
        // A commit of another process may have replaced `latest` between the two reads; it
        // archives the old head before it renames the new one (DESIGN, the write path), so
        // the archived copy is there now if the version is not gone.
        self.read_manifest(&archived, path)?.ok_or_else(unknown)
    }

    /// Every version of `path`, newest first.
    pub fn history(&self, path: &VolPath) -> Result<Vec<Version>> {
        Ok(self.list_versions(path, false)?.versions)
    }

    /// Every version of `path`, newest first, the id of its `latest`, and the temp files in
    /// its `versions/`, from one listing that must succeed (gc and prune never act on a
    /// listing that failed).
    pub(crate) fn listing(&self, path: &VolPath) -> Result<Listing> {
        self.list_versions(path, true)
    }

    fn list_versions(&self, path: &VolPath, strict: bool) -> Result<Listing> {
        let dir = self.versions_dir(path);
        let mut l = Listing::default();
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if !strict && matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => {
                return Ok(l)
            }
            Err(e) => return Err(e).ctx("list versions in", &dir),
        };
        for e in rd {
            let e = e.ctx("list versions in", &dir)?;
            let name = e.file_name();
            // Temp files and `.heads` start with a dot; manifests never do.
            if name.as_bytes().first() == Some(&b'.') {
                if fsio::is_tmp_name(name.as_bytes()) {
                    l.temps.push(e.path());
                }
                continue;
            }
            if let Some(v) = self.read_manifest(&e.path(), path)? {
                if name == layout::LATEST {
                    l.latest = Some(v.id.clone());
                }
                if !l.versions.iter().any(|o| o.id == v.id) {
                    l.versions.push(v);
                }
            }
        }
        // Newest first by the graph, not by the clocks in the ids; through pruned versions too.
        let pruned = if strict { self.pruned(path)? } else { self.pruned(path).unwrap_or_default() };
        l.versions = newest_first(l.versions, &pruned);
        Ok(l)
    }

    /// The heads of `path` other than `latest`: versions received concurrently with it
    /// (conflicts), oldest first. Ids whose manifest is gone are skipped.
    pub fn other_heads(&self, path: &VolPath) -> Result<Vec<Version>> {
        let file = self.versions_dir(path).join(layout::OTHER_HEADS);
        let text = match fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => return Ok(vec![]),
            Err(e) => return Err(e).ctx("read", &file),
        };
        let latest = self.head(path)?;
        let mut out = Vec::new();
        for id in text.lines().filter_map(VersionId::parse) {
            // A head that `latest` descends from was settled (a crash can leave `.heads`
            // one step behind `latest`): it is history, not a conflict.
            if latest.as_ref().is_some_and(|l| l.id == id || self.descends(l, &id)) {
                continue;
            }
            if let Ok(v) = self.version(path, &id) {
                out.push(v);
            }
        }
        Ok(out)
    }

    /// True if `ancestor` is among the parents of `v`, transitively (same path; pruned
    /// versions still link their children to their parents).
    pub fn descends(&self, v: &Version, ancestor: &VersionId) -> bool {
        descends(v, ancestor, &|id| self.parents_of(&v.path, id))
    }

    /// The parents of version `id` of `path`: from its manifest, or from the lineage kept
    /// when it was pruned. `None` for a version this node never had.
    pub fn parents_of(&self, path: &VolPath, id: &VersionId) -> Option<Vec<VersionId>> {
        match self.version(path, id) {
            Ok(v) => Some(v.parents),
            Err(_) => self.pruned(path).ok()?.remove(id),
        }
    }

    /// True if this node has, or had and pruned, version `id` of `path`.
    pub fn is_known(&self, path: &VolPath, id: &VersionId) -> bool {
        self.version(path, id).is_ok() || self.pruned(path).is_ok_and(|p| p.contains_key(id))
    }

    /// The pruned versions of `path` with their parents (`versions/.pruned`, docs/FORMAT.md).
    pub fn pruned(&self, path: &VolPath) -> Result<HashMap<VersionId, Vec<VersionId>>> {
        let file = self.versions_dir(path).join(layout::PRUNED);
        let text = match fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => {
                return Ok(HashMap::new())
            }
            Err(e) => return Err(e).ctx("read", &file),
        };
        Ok(text.lines().filter_map(parse_pruned_line).collect())
    }

    /// Every path at or under `top` that has versions (live or deleted), in disk order.
    /// Fails on any directory that cannot be listed: callers that delete never act on a
    /// partial listing.
    pub fn paths(&self, top: &VolPath) -> Result<Vec<VolPath>> {
        let mut out = Vec::new();
        let mut todo = vec![(top.disk_dir(&self.layout.root()), top.clone())];
        while let Some((dir, path)) = todo.pop() {
            let rd = match fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound && dir != self.layout.root() => continue,
                Err(e) => return Err(e).ctx("list", &dir),
            };
            for e in rd {
                let e = e.ctx("list", &dir)?;
                if !e.file_type().ctx("stat", &e.path())?.is_dir() {
                    continue;
                }
                let name = e.file_name();
                if name.as_bytes() == VERSIONS_DIR.as_bytes() {
                    out.push(path.clone());
                } else if let Some(child) = unescape_name(name.as_bytes()).and_then(|n| path.join(&n).ok()) {
                    todo.push((e.path(), child));
                }
            }
        }
        Ok(out)
    }

    /// Removes old versions, per path: their lineage (id and parents) is added to each
    /// path's `versions/.pruned` durably first, then their manifests are deleted. The
    /// caller holds the commit lock and has checked that none of them is a head.
    pub(crate) fn drop_versions(&self, victims: &[(VolPath, Vec<Lineage>)]) -> Result<()> {
        // First in the journal, so the prune travels to peers (a crash after this line
        // sends a notice for a version still here, which the next prune removes).
        journal::append_pruned(self, victims.iter().flat_map(|(p, v)| v.iter().map(move |(id, _)| (p, id))))?;
        let mut plan = CommitPlan::default();
        for (path, versions) in victims.iter().filter(|(_, v)| !v.is_empty()) {
            let file = self.versions_dir(path).join(layout::PRUNED);
            let mut text = match fs::read(&file) {
                Ok(t) => t,
                Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(e).ctx("read", &file),
            };
            if text.last().is_some_and(|&c| c != b'\n') {
                text.push(b'\n');
            }
            let known = self.pruned(path)?;
            for (id, parents) in versions.iter().filter(|(id, _)| !known.contains_key(id)) {
                let parents: Vec<&str> = parents.iter().map(|p| p.as_str()).collect();
                let parents = if parents.is_empty() { "-".to_string() } else { parents.join(",") };
                text.extend_from_slice(format!("{id} {parents}\n").as_bytes());
            }
            plan.write(file, text);
        }
        self.write_plan(plan)?;
        for (path, versions) in victims {
            for (id, _) in versions {
                let file = self.versions_dir(path).join(id.as_str());
                match fsio::remove_file(&file) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e).ctx("remove", &file),
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// Fetches from peers the blocks of `v` that are not stored here, before this node
    /// makes a new version from its content (`mv`, `restore`, resolutions): a node then
    /// holds the blocks of the versions it makes, and a peer that prunes and collects the
    /// version they came from, before it hears of ours, loses nothing ours needs. A block no
    /// reachable peer has is left missing (offline work goes on; reads name it).
    pub fn materialize(&self, v: &Version) -> Result<()> {
        for b in &v.blocks {
            if !self.blocks.contains(&b.id) {
                match self.read_block(&b.id, &v.path) {
                    Ok(_) | Err(Error::MissingBlock { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// Settles heads of `path`: commits one version with the content of `keep` whose parents
    /// are `latest` and every head in `settle`, which stop being heads. Returns it.
    pub fn settle(&self, path: &VolPath, keep: &VersionId, settle: &[VersionId]) -> Result<Version> {
        // The kept content is committed again: its blocks must outlive a prune + gc of it.
        let _lease = self.block_lease()?;
        if let Ok(v) = self.version(path, keep) {
            self.materialize(&v)?; // before the lock: it may wait on peers
        }
        let _lock = self.lock()?;
        let latest = self.head(path)?.ok_or_else(|| Error::NotFound(path.to_string()))?;
        let others = self.other_heads(path)?;
        let chosen = if *keep == latest.id {
            latest.clone()
        } else {
            others
                .iter()
                .find(|o| o.id == *keep)
                .cloned()
                .ok_or_else(|| Error::UnknownVersion { path: path.to_string(), version: keep.to_string() })?
        };
        let mut v = self.version_like(path, &chosen, Some(&latest));
        for o in &others {
            if settle.contains(&o.id) {
                v.parents.push(o.id.clone());
            }
        }
        let rest: Vec<VersionId> = others.iter().map(|o| o.id.clone()).filter(|id| !settle.contains(id)).collect();
        let mut plan = CommitPlan::default();
        plan.replace_head(self, Some(&latest), v.clone())?;
        plan.set_other_heads(self, path, &rest);
        self.write_plan(plan)?;
        Ok(v)
    }

    /// A new version of `path` made on this node with the content of `from` (same blocks,
    /// nothing copied): for moves, restores and resolutions.
    pub fn version_like(&self, path: &VolPath, from: &Version, parent: Option<&Version>) -> Version {
        let mut v = self.new_version(path, from.kind, parent);
        v.size = from.size;
        v.mode = from.mode;
        v.mtime = from.mtime;
        v.target = from.target.clone();
        v.blocks = from.blocks.clone();
        v
    }

    /// A new version of `path` made on this node, with no content yet.
    pub fn new_version(&self, path: &VolPath, kind: Kind, parent: Option<&Version>) -> Version {
        Version {
            id: VersionId::generate(&self.config.uuid),
            path: path.clone(),
            kind,
            parents: parent.map(|p| vec![p.id.clone()]).unwrap_or_default(),
            origin: self.config.uuid.clone(),
            origin_name: self.config.name.clone(),
            time: Timestamp::now(),
            size: 0,
            mode: match kind {
                Kind::Dir => 0o755,
                Kind::Symlink => 0o777,
                _ => 0o644,
            },
            mtime: Timestamp::now(),
            target: None,
            blocks: vec![],
        }
    }

    /// Commits a batch of changes atomically per path and durably as a whole. Each change is
    /// a function of the path's current head (read under the commit lock) that returns the
    /// new version, or `None` to leave the path alone. All blocks the new versions name must
    /// already be in the store. Returns the committed versions.
    pub fn commit<F>(&self, changes: Vec<(VolPath, F)>) -> Result<Vec<Version>>
    where
        F: FnOnce(Option<&Version>) -> Result<Option<Version>>,
    {
        let _lock = self.lock()?;
        let mut plan = CommitPlan::default();
        for (path, change) in changes {
            let old = self.head(&path)?;
            if let Some(new) = change(old.as_ref())? {
                debug_assert_eq!(new.path, path);
                plan.replace_head(self, old.as_ref(), new)?;
            }
        }
        self.write_plan(plan)
    }

    /// Writes a plan under the commit lock (which the caller holds): blocks are made durable
    /// first, then the journal records the new versions, then the manifests land.
    pub(crate) fn write_plan(&self, plan: CommitPlan) -> Result<Vec<Version>> {
        if plan.writes.is_empty() {
            return Ok(plan.done);
        }
        self.check_not_copy()?;
        // Blocks (written by the caller without fsync) become durable before any manifest.
        fsio::sync_filesystem(self.dir())?;
        if !plan.done.is_empty() {
            journal::append(self, &plan.done)?;
        }
        write_all_atomic(self.dir(), &plan.writes)?;
        Ok(plan.done)
    }
}

/// The files one commit writes, in order, and the versions it adds.
#[derive(Default)]
pub(crate) struct CommitPlan {
    writes: Vec<(PathBuf, Vec<u8>)>,
    /// Index in `writes` of each file already planned (a later `latest` supersedes).
    planned: std::collections::HashMap<PathBuf, usize>,
    done: Vec<Version>,
}

impl CommitPlan {
    fn write(&mut self, path: PathBuf, bytes: Vec<u8>) {
        match self.planned.get(&path) {
            Some(&i) => self.writes[i].1 = bytes,
            None => {
                self.planned.insert(path.clone(), self.writes.len());
                self.writes.push((path, bytes));
            }
        }
    }

    /// `new` becomes the head of its path, replacing `old` (which is archived under its id).
    pub(crate) fn replace_head(&mut self, vol: &Volume, old: Option<&Version>, new: Version) -> Result<()> {
        let vdir = vol.versions_dir(&new.path);
        match old {
            Some(o) => {
                let archived = vdir.join(o.id.as_str());
                if !self.planned.contains_key(&archived) && !archived.exists() {
                    self.write(archived, o.encode());
                }
            }
            None => fsio::create_dirs(&vdir)?,
        }
        self.write(vdir.join(layout::LATEST), new.encode());
        self.done.push(new);
        Ok(())
    }

    /// Records the heads of `path` other than `latest` (an empty list ends a conflict).
    pub(crate) fn set_other_heads(&mut self, vol: &Volume, path: &VolPath, ids: &[VersionId]) {
        let text: String = ids.iter().map(|id| format!("{id}\n")).collect();
        self.write(vol.versions_dir(path).join(layout::OTHER_HEADS), text.into_bytes());
    }

    /// `v` joins the history of its path without becoming its head.
    pub(crate) fn add_history(&mut self, vol: &Volume, v: Version) -> Result<()> {
        let vdir = vol.versions_dir(&v.path);
        fsio::create_dirs(&vdir)?;
        self.write(vdir.join(v.id.as_str()), v.encode());
        self.done.push(v);
        Ok(())
    }
}

/// Writes several files atomically: every temp file first, a file-system sync, then the
/// renames of archive copies, a sync, then the renames of `latest` files, a final sync. A
/// crash leaves each file old or new, never torn, and an old head is durably archived
/// before the `latest` that replaces it, whatever order the file system keeps renames in.
fn write_all_atomic(volume: &Path, files: &[(PathBuf, Vec<u8>)]) -> Result<()> {
    if files.is_empty() {
        return Ok(());
    }
    let mut staged: Vec<(PathBuf, &Path)> = Vec::with_capacity(files.len());
    let result = (|| {
        for (dest, data) in files {
            staged.push((fsio::stage(dest, data)?, dest));
        }
        fsio::sync_filesystem(volume)?;
        // Heads (`latest`, `.heads`) move only after every manifest they may name is in place.
        let is_latest = |dest: &Path| dest.file_name().is_some_and(|n| n == layout::LATEST || n == layout::OTHER_HEADS);
        for phase_latest in [false, true] {
            let mut renamed = false;
            for (tmp, dest) in staged.iter().filter(|(_, d)| is_latest(d) == phase_latest) {
                fsio::rename(tmp, dest).ctx("rename into place", dest)?;
                renamed = true;
            }
            if renamed {
                fsio::sync_filesystem(volume)?;
            }
        }
        Ok(())
    })();
    if result.is_err() {
        for (tmp, _) in &staged {
            let _ = fs::remove_file(tmp);
        }
    }
    result
}

/// True if `ancestor` is among the parents of `v`, transitively, with `parents` giving the
/// parents of a version by id (`None`: unknown here, the walk stops there).
pub(crate) fn descends(
    v: &Version,
    ancestor: &VersionId,
    parents: &dyn Fn(&VersionId) -> Option<Vec<VersionId>>,
) -> bool {
    let mut todo: Vec<VersionId> = v.parents.clone();
    let mut seen = std::collections::HashSet::new();
    while let Some(id) = todo.pop() {
        if id == *ancestor {
            return true;
        }
        if !seen.insert(id.clone()) || seen.len() > 1_000_000 {
            continue;
        }
        if let Some(p) = parents(&id) {
            todo.extend(p);
        }
    }
    false
}

/// Versions and their parents as a graph, for ordering: the first ones given are the
/// versions a caller lists, the rest pruned versions known only by their lineage.
struct Graph<'a> {
    ids: Vec<&'a VersionId>,
    /// For each node, its distinct parents among the nodes (unknown parents left out).
    parents: Vec<Vec<usize>>,
}

impl<'a> Graph<'a> {
    /// The graph of `nodes` (id, parents), ids unique.
    pub fn new(nodes: &[(&'a VersionId, &'a [VersionId])]) -> Graph<'a> {
        let index: HashMap<&VersionId, usize> = nodes.iter().enumerate().map(|(i, (id, _))| (*id, i)).collect();
        let parents = nodes
            .iter()
            .enumerate()
            .map(|(i, (_, ps))| {
                let mut ps: Vec<usize> = ps.iter().filter_map(|p| index.get(p).copied()).filter(|&p| p != i).collect();
                ps.sort_unstable();
                ps.dedup();
                ps
            })
            .collect();
        Graph { ids: nodes.iter().map(|(id, _)| *id).collect(), parents }
    }

    /// Every node, newest first: each before the nodes it descends from; among those free to
    /// come next, the greatest id first (so every node that has the same versions orders them
    /// the same way; the time in an id only breaks ties between concurrent versions). Nodes
    /// from `hidden` on (pruned ones) come as soon as they are free, so they do not change the
    /// order of the others: it is that of the graph with each pruned version replaced by
    /// links from its children to its parents. Nodes in a cycle of parents (which only a
    /// hostile peer can make) come last, by id.
    pub fn newest_first(&self, hidden: usize) -> Vec<usize> {
        let n = self.ids.len();
        let mut children = vec![0usize; n];
        for ps in &self.parents {
            for &p in ps {
                children[p] += 1;
            }
        }
        // Free nodes: listed ones wait in `ready`, greatest id first; pruned ones go at once.
        let mut ready: std::collections::BinaryHeap<(&'a VersionId, usize)> = Default::default();
        let mut eager: Vec<usize> = (hidden..n).filter(|&i| children[i] == 0).collect();
        ready.extend((0..hidden.min(n)).filter(|&i| children[i] == 0).map(|i| (self.ids[i], i)));
        let mut out = Vec::with_capacity(n);
        while let Some(i) = eager.pop().or_else(|| ready.pop().map(|(_, i)| i)) {
            out.push(i);
            for &p in &self.parents[i] {
                children[p] -= 1;
                if children[p] == 0 && p < hidden {
                    ready.push((self.ids[p], p));
                } else if children[p] == 0 {
                    eager.push(p);
                }
            }
        }
        if out.len() < n {
            let mut rest: Vec<usize> = (0..n).filter(|&i| children[i] > 0).collect();
            rest.sort_by(|&a, &b| self.ids[b].cmp(self.ids[a]));
            out.extend(rest);
        }
        out
    }
}

/// `versions` newest first by the version graph (see [`Graph::newest_first`]), descent
/// running through the `pruned` versions' lineage.
fn newest_first(versions: Vec<Version>, pruned: &HashMap<VersionId, Vec<VersionId>>) -> Vec<Version> {
    let order = {
        let mut nodes: Vec<(&VersionId, &[VersionId])> = versions.iter().map(|v| (&v.id, &v.parents[..])).collect();
        let listed: std::collections::HashSet<&VersionId> = versions.iter().map(|v| &v.id).collect();
        nodes.extend(pruned.iter().filter(|(id, _)| !listed.contains(id)).map(|(id, ps)| (id, &ps[..])));
        Graph::new(&nodes).newest_first(versions.len())
    };
    let mut slots: Vec<Option<Version>> = versions.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots.get_mut(i).and_then(Option::take)).collect()
}

/// One line of `.pruned`: `<id> <parent>,<parent>` (`-` for none).
fn parse_pruned_line(line: &str) -> Option<(VersionId, Vec<VersionId>)> {
    let (id, parents) = line.split_once(' ')?;
    let parents = match parents {
        "-" => vec![],
        p => p.split(',').map(VersionId::parse).collect::<Option<Vec<_>>>()?,
    };
    Some((VersionId::parse(id)?, parents))
}

/// True if `layout`'s `local/root/` or `local/hashes/` has anything in it: the directory
/// holds a volume's data, whether or not its config is there.
pub fn holds_data(layout: &Layout) -> bool {
    [layout.root(), layout.hashes()].iter().any(|d| fs::read_dir(d).is_ok_and(|mut rd| rd.next().is_some()))
}

/// What `reidentify` did.
#[derive(Debug, serde::Serialize)]
pub struct Reidentified {
    /// The uuid before.
    pub old_uuid: String,
    /// The uuid now (the same with `moved`).
    pub uuid: String,
    /// The node's name now.
    pub name: String,
    /// For each peer, the command that makes it accept this node (none with `moved`).
    pub peer_commands: Vec<PeerCommand>,
}

/// The command one peer must run to accept a reidentified node.
#[derive(Debug, serde::Serialize)]
pub struct PeerCommand {
    /// Our name for the peer.
    pub peer: String,
    /// `globofs -V <its volume> peer add <name> <this volume>`.
    pub command: String,
}

/// Makes a copy of a volume a node of its own (or, with `moved`, the original at its new
/// place): a new uuid (and `name` if given) in `local/config`, the positions of our logs in
/// the peers' volumes forgotten (the new uuid has new logs there), and the identity
/// recorded here. Data, history, journal and watermarks are kept, so the peers are sent only
/// what they have not had. Refuses a volume that is not a copy unless `force`.
pub fn reidentify(dir: &Path, name: Option<String>, moved: bool, force: bool) -> Result<Reidentified> {
    let vol = Volume::open(dir)?;
    if !matches!(vol.identity, Identity::Copy { .. }) && !force {
        return Err(Error::Usage(format!(
            "{} is not a copy (its identity is this place's): nothing to do; `--force` gives it a new uuid anyway",
            vol.dir().display()
        )));
    }
    let _lock = vol.lock()?;
    let old_uuid = vol.config.uuid.clone();
    let mut config = vol.config.clone();
    if let Some(n) = name.filter(|n| !n.is_empty()) {
        config.name = n;
    }
    let mut peer_commands = Vec::new();
    if !moved {
        config.uuid = uuid::Uuid::new_v4().to_string();
        crate::sync::forget_log_positions(&vol)?;
        for p in crate::peers::list(&vol)? {
            // A name the peer does not use yet (its entry for the original may have ours).
            let mut label = config.name.clone();
            let mut n = 1;
            while p.path.join(&label).exists() {
                n += 1;
                label = format!("{}-{n}", config.name);
            }
            let cmd = format!("globofs -V {} peer add {label} {}", p.path.display(), vol.dir().display());
            peer_commands.push(PeerCommand { peer: p.name.clone(), command: cmd });
        }
    }
    if config != vol.config {
        config.save(&vol.layout.config())?;
    }
    Record::save(&vol.layout, &config.uuid)?;
    Ok(Reidentified { old_uuid, uuid: config.uuid, name: config.name, peer_commands })
}

/// The host name, for a default node name.
pub(crate) fn host_name() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(sec: u32) -> VersionId {
        VersionId::parse(&format!("{sec:010}.000000000-0000000a-0000000b")).unwrap()
    }

    fn ids(versions: &[Version]) -> Vec<VersionId> {
        versions.iter().map(|v| v.id.clone()).collect()
    }

    /// A version `sec` whose parents are `parents` (ids are time-sortable by `sec`).
    fn v(sec: u32, parents: &[u32]) -> Version {
        let mut v = crate::manifest::tests::sample();
        v.id = id(sec);
        v.parents = parents.iter().map(|&p| id(p)).collect();
        v
    }

    #[test]
    fn newest_first_follows_the_graph_not_the_clock() {
        let none = HashMap::new();
        // 90 → 10 → 50 → 40: made in that order on clocks that disagree.
        let h = vec![v(90, &[]), v(10, &[90]), v(50, &[10]), v(40, &[50])];
        assert_eq!(ids(&newest_first(h.clone(), &none)), [id(40), id(50), id(10), id(90)]);
        // Concurrent versions: the greater id first, whatever order they were listed in.
        let fork = vec![v(1, &[]), v(7, &[1]), v(3, &[1]), v(9, &[7, 3])];
        let mut rev = fork.clone();
        rev.reverse();
        assert_eq!(ids(&newest_first(fork, &none)), [id(9), id(7), id(3), id(1)]);
        assert_eq!(ids(&newest_first(rev, &none)), [id(9), id(7), id(3), id(1)]);
        // A pruned version in the middle still links its child to its parent.
        let pruned: HashMap<VersionId, Vec<VersionId>> = [(id(10), vec![id(90)])].into();
        let without = vec![v(90, &[]), v(50, &[10]), v(40, &[50])];
        assert_eq!(ids(&newest_first(without, &pruned)), [id(40), id(50), id(90)]);
        // A cycle of parents (a hostile peer's doing) loses nothing: it comes last, by id.
        let cycle = vec![v(5, &[6]), v(6, &[5]), v(8, &[6])];
        assert_eq!(ids(&newest_first(cycle, &none)), [id(8), id(6), id(5)]);
    }
}
