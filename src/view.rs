//! The file-system view of a volume, for the mount: nodes (the live tree, the history
//! under `.globofs/history/`, the peers under `.globofs/peers/`), their attributes and
//! listings, reading content lazily block by block, and every change a user can make with
//! ordinary tools, each turned into versions through the same code as the command line.
//! It knows nothing of FUSE: `mount` adapts it, and maps its errors to errno values.
//!
//! Files opened for writing are kept in a private *spool* file (unlinked as soon as it is
//! made, so a crash leaves nothing behind) that holds the whole content; closing or
//! fsyncing a changed file stores the spool as a new version. Until then the path shows the
//! spool's size, and every opener of it reads and writes the same spool, as with a plain
//! file. A crash of the mount loses only the writes of files still open.

use crate::error::{Error, IoContext, Result};
use crate::events;
use crate::export;
use crate::fsio;
use crate::ids::{BlockId, VersionId};
use crate::ingest;
use crate::layout::MOUNT_MARKER;
use crate::manifest::{Kind, Timestamp, Version};
use crate::paths::{VolPath, RESERVED_TOP};
use crate::peers;
use crate::prefetch::Prefetcher;
use crate::retention;
use crate::sync;
use crate::tree;
use crate::volume::Volume;
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long an entry read from disk is reused. Changes by other processes show after at most
/// this plus the kernel's own cache time.
const FRESH: Duration = Duration::from_millis(250);
/// Entries kept before old ones are dropped.
const RECENT_MAX: usize = 100_000;
/// Files of listings kept for reading ahead (`find` lists a whole tree before `cat` reads).
const LISTED_MAX: usize = 200_000;
/// Files read ahead after the one opened.
const FILES_AHEAD: usize = 16;

/// Something the mount shows.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Node {
    /// A live path (the root included): file, symlink or directory.
    Path(VolPath),
    /// `/.globofs`.
    Meta,
    /// `/.globofs/history/<path>`: the versions of `<path>` and the names beneath it.
    History(VolPath),
    /// `/.globofs/history/<path>/<id>`: one version, read-only.
    Version(VolPath, VersionId),
    /// `/.globofs/peers`.
    Peers,
    /// `/.globofs/peers/<name>`: a peer's state, as text.
    Peer(String),
    /// `/.globofs/volume`: the volume's directory, so that the command line run inside the
    /// mount finds the volume.
    Marker,
}

impl Node {
    /// True for nodes whose content is computed when read (their size is a guess).
    pub fn is_volatile(&self) -> bool {
        matches!(self, Node::Peer(_))
    }
}

/// What a node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
}

/// A node's attributes.
#[derive(Clone, Debug)]
pub struct Attr {
    /// File, directory or symlink.
    pub kind: NodeKind,
    /// Content size in bytes (target length for a symlink).
    pub size: u64,
    /// Permission bits.
    pub perm: u32,
    /// Modification time.
    pub mtime: Timestamp,
    /// The version shown, if the node shows one: its content never changes.
    pub version: Option<VersionId>,
}

/// Changes asked by `chmod`, `truncate` and `touch`.
#[derive(Clone, Copy, Debug, Default)]
pub struct SetAttr {
    /// New size.
    pub size: Option<u64>,
    /// New permission bits.
    pub mode: Option<u32>,
    /// New modification time.
    pub mtime: Option<Timestamp>,
}

/// An open file.
pub enum Handle {
    /// Read-only content: a version's blocks, or computed text.
    Read(Content),
    /// A file open for writing, or read while someone writes it: its spool. Only the
    /// closing of a handle opened for writing stores it.
    Spool { spool: Arc<Spool>, write: bool },
}

/// Read-only content of an open file.
pub enum Content {
    /// A version, read block by block (missing blocks are pulled from peers).
    Blocks(Box<BlockReader>),
    /// Text computed at open.
    Bytes(Vec<u8>),
}

/// Reads ranges of one version, keeping the last few blocks it decoded. Reads of different
/// blocks run in parallel (the kernel reads ahead with several requests at once).
pub struct BlockReader {
    version: Version,
    /// End offset of each block.
    ends: Vec<u64>,
    recent: Mutex<std::collections::VecDeque<(usize, Arc<Vec<u8>>)>>,
}

/// Blocks of a file read ahead of the one being read.
const BLOCKS_AHEAD: usize = 4;

/// Blocks a reader keeps decoded.
const RECENT_BLOCKS: usize = 8;

/// The private copy of a file open for writing.
pub struct Spool(Mutex<SpoolState>);

struct SpoolState {
    path: VolPath,
    file: File,
    size: u64,
    mode: u32,
    /// Set by `touch`; otherwise a commit takes the time of the commit.
    mtime: Option<Timestamp>,
    /// Changed since the last commit.
    dirty: bool,
    /// Removed (or replaced by a rename) while open: its content is never committed.
    unlinked: bool,
    /// Handles open on it.
    opens: usize,
}

/// Identity of a path's `latest` file (inode, size, mtime): unchanged means the head is the
/// same, since `latest` is only ever replaced, by a rename.
type Stamp = (u64, u64, i128);

/// An entry read before: when, the stamp of its `latest` then, and the entry.
type Recent = (Instant, Option<Stamp>, tree::Entry);

/// The single-block files of the directories listed, in listing order across directories
/// (the order in which `find`, `cat **/*`, `tar` or `cp -r` go on to read them).
#[derive(Default)]
struct ReadOrder {
    files: std::collections::VecDeque<(VolPath, BlockId)>,
    /// Position of each file in `files`, counted from the first ever listed.
    at: HashMap<VolPath, u64>,
    /// How many were dropped from the front.
    dropped: u64,
}

/// The view of one volume.
pub struct View {
    vol: Volume,
    spools: Mutex<HashMap<VolPath, Arc<Spool>>>,
    /// Entries read before, so that a listing, the lookup, open and stat that follow read a
    /// head once: kept while their `latest` is unchanged (or for [`FRESH`], for entries
    /// without a head of their own). Emptied by every change made through the view.
    recent: Mutex<HashMap<VolPath, Recent>>,
    /// Reads ahead the next files of a directory read in order.
    ahead: Prefetcher,
    /// What to read ahead of a file being opened.
    order: Mutex<ReadOrder>,
    /// When the view was made: the time shown for directories without a version.
    started: Timestamp,
    /// Versions made through the view (the latest ones): a file changed here keeps its
    /// identity (inode), while one replaced by another process gets a new one.
    made: Mutex<std::collections::HashSet<VersionId>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn read_only(path: impl std::fmt::Display, hint: &str) -> Error {
    Error::ReadOnly { path: path.to_string(), hint: hint.into() }
}

const HISTORY_HINT: &str = "versions are kept as they were; `rm` one to prune it";
const META_HINT: &str = "the .globofs directory is made by the mount";

fn attr_of(v: &Version) -> Result<Attr> {
    let (kind, size) = match v.kind {
        Kind::File => (NodeKind::File, v.size),
        Kind::Symlink => (NodeKind::Symlink, v.target.as_ref().map_or(0, |t| t.len() as u64)),
        Kind::Dir => (NodeKind::Dir, 0),
        Kind::Tombstone => return Err(Error::NotFound(v.path.to_string())),
    };
    Ok(Attr { kind, size, perm: v.mode & 0o7777, mtime: v.mtime, version: Some(v.id.clone()) })
}

impl View {
    /// A view of `vol`.
    pub fn new(vol: Volume) -> View {
        let ahead = Prefetcher::new(vol.blocks().clone());
        View {
            vol,
            spools: Mutex::new(HashMap::new()),
            recent: Mutex::new(HashMap::new()),
            ahead,
            order: Mutex::new(ReadOrder::default()),
            started: Timestamp::now(),
            made: Mutex::new(Default::default()),
        }
    }

    /// The volume shown.
    pub fn volume(&self) -> &Volume {
        &self.vol
    }

    fn dir_attr(&self, perm: u32) -> Attr {
        Attr { kind: NodeKind::Dir, size: 0, perm, mtime: self.started, version: None }
    }

    /// The live entry at `path` (`tree::stat`), reusing one read before: while its
    /// `latest` is the same file (an entry with a head of its own), or for [`FRESH`].
    fn stat(&self, path: &VolPath) -> Result<tree::Entry> {
        let cached = lock(&self.recent).get(path).cloned();
        if let Some((at, None, e)) = &cached {
            if at.elapsed() < FRESH {
                return Ok(e.clone());
            }
        }
        let stamp = self.stamp(path);
        if let Some((_, Some(seen), e)) = cached {
            if stamp == Some(seen) {
                return Ok(e);
            }
        }
        let e = tree::stat(&self.vol, path)?;
        self.remember(e.clone(), stamp);
        Ok(e)
    }

    /// The identity of `path`'s `latest`, taken before reading it.
    fn stamp(&self, path: &VolPath) -> Option<Stamp> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(self.vol.versions_dir(path).join(crate::layout::LATEST)).ok()?;
        Some((m.ino(), m.size(), i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec())))
    }

    fn remember(&self, e: tree::Entry, stamp: Option<Stamp>) {
        // Only a path's own head is vouched for by its `latest`; implicit directories and
        // conflict files are kept for FRESH only.
        let stamp = stamp.filter(|_| e.head.as_ref().is_some_and(|h| h.path == e.path));
        let mut recent = lock(&self.recent);
        if recent.len() >= RECENT_MAX {
            recent.retain(|_, (at, s, _)| s.is_some() || at.elapsed() < FRESH);
            if recent.len() >= RECENT_MAX {
                recent.clear();
            }
        }
        recent.insert(e.path.clone(), (Instant::now(), stamp, e));
    }

    fn spool(&self, path: &VolPath) -> Option<Arc<Spool>> {
        lock(&self.spools).get(path).cloned()
    }

    /// The attributes of `node`, or [`Error::NotFound`].
    pub fn attr(&self, node: &Node) -> Result<Attr> {
        self.attr_seen(node, None)
    }

    /// True if version `id` was made through this view.
    pub fn made_here(&self, id: &VersionId) -> bool {
        lock(&self.made).contains(id)
    }

    /// The version a file shows to one who saw version `seen` there: `seen` itself once
    /// another process (the CLI, a push from a peer) replaced it, as a file replaced by a
    /// rename on a local disk stays readable, whole and with its size, through what was
    /// opened or looked up before; otherwise the head. A change made through this view
    /// changes the file in place: it shows the head.
    fn as_seen(&self, path: &VolPath, head: Version, seen: Option<&VersionId>) -> Result<Version> {
        match seen {
            Some(seen) if head.kind == Kind::File && head.id != *seen && !self.made_here(&head.id) => {
                match self.vol.version(&head.path, seen) {
                    Ok(v) if v.kind == Kind::File => Ok(v),
                    // Pruned since: the kernel looks the name up again.
                    _ => Err(Error::Io {
                        op: "show",
                        path: path.to_os_path(),
                        source: std::io::Error::from_raw_os_error(libc::ESTALE),
                    }),
                }
            }
            _ => Ok(head),
        }
    }

    /// The attributes of `node` as shown to one who saw version `seen` of it (see
    /// [`View::as_seen`]).
    pub fn attr_seen(&self, node: &Node, seen: Option<&VersionId>) -> Result<Attr> {
        match node {
            Node::Path(p) => {
                if let Some(s) = self.spool(p) {
                    let s = lock(&s.0);
                    let mtime = s.mtime.unwrap_or_else(Timestamp::now);
                    return Ok(Attr { kind: NodeKind::File, size: s.size, perm: s.mode, mtime, version: None });
                }
                match self.stat(p)?.head {
                    Some(v) => attr_of(&self.as_seen(p, v, seen)?),
                    None => Ok(self.dir_attr(0o755)),
                }
            }
            Node::Meta | Node::Peers => Ok(self.dir_attr(0o555)),
            Node::History(p) => {
                if p.is_root() || !tree::recorded_children(&self.vol, p)?.is_empty() {
                    return Ok(self.dir_attr(0o555));
                }
                let newest = self.vol.history(p)?.into_iter().next().ok_or_else(|| Error::NotFound(p.to_string()))?;
                Ok(Attr { mtime: newest.time, ..self.dir_attr(0o555) })
            }
            Node::Version(p, id) => {
                let a = attr_of(&self.shown_version(p, id)?)?;
                Ok(Attr { perm: a.perm & !0o222, ..a })
            }
            Node::Marker => {
                let size = self.marker_text().len() as u64;
                Ok(Attr { kind: NodeKind::File, size, perm: 0o444, mtime: self.started, version: None })
            }
            Node::Peer(name) => {
                let size = self.peer_text(name)?.len() as u64;
                Ok(Attr { kind: NodeKind::File, size, perm: 0o444, mtime: Timestamp::now(), version: None })
            }
        }
    }

    /// A version shown in history: files and symlinks (directory markers and tombstones
    /// have no content to show).
    fn shown_version(&self, path: &VolPath, id: &VersionId) -> Result<Version> {
        let v = self.vol.version(path, id)?;
        match v.kind {
            Kind::File | Kind::Symlink => Ok(v),
            _ => Err(Error::NotFound(format!("{path}@{id}"))),
        }
    }

    /// The node called `name` inside directory `parent`, with its attributes.
    pub fn lookup(&self, parent: &Node, name: &[u8]) -> Result<(Node, Attr)> {
        let not_found = || Error::NotFound(String::from_utf8_lossy(name).into_owned());
        let node = match parent {
            Node::Path(p) if p.is_root() && name == RESERVED_TOP.as_bytes() => Node::Meta,
            Node::Path(p) => Node::Path(p.join(name).map_err(|_| not_found())?),
            Node::Meta => match name {
                b"history" => Node::History(VolPath::root()),
                b"peers" => Node::Peers,
                n if n == MOUNT_MARKER.as_bytes() => Node::Marker,
                _ => return Err(not_found()),
            },
            Node::History(p) => {
                let id = std::str::from_utf8(name).ok().and_then(VersionId::parse).filter(|id| id.time().is_some());
                match id.filter(|id| !p.is_root() && self.shown_version(p, id).is_ok()) {
                    Some(id) => Node::Version(p.clone(), id),
                    None => Node::History(p.join(name).map_err(|_| not_found())?),
                }
            }
            Node::Peers => Node::Peer(String::from_utf8(name.to_vec()).map_err(|_| not_found())?),
            Node::Version(..) | Node::Peer(_) | Node::Marker => return Err(Error::NotDirectory(format!("{parent:?}"))),
        };
        let attr = self.attr(&node)?;
        Ok((node, attr))
    }

    /// The entries of directory `node`: name, node and attributes.
    pub fn list(&self, node: &Node) -> Result<Vec<(Vec<u8>, Node, Attr)>> {
        let mut out = Vec::new();
        let name = |p: &VolPath| p.file_name().unwrap_or_default().to_vec();
        match node {
            Node::Path(p) => {
                if self.attr(node)?.kind != NodeKind::Dir {
                    return Err(Error::NotDirectory(p.to_string()));
                }
                if p.is_root() {
                    out.push((RESERVED_TOP.as_bytes().to_vec(), Node::Meta, self.dir_attr(0o555)));
                }
                let spools: Vec<VolPath> = lock(&self.spools).keys().cloned().collect();
                // Stamps first: a head that changes while we read it is read again later.
                let stamps: HashMap<VolPath, Stamp> = tree::recorded_children(&self.vol, p)?
                    .into_iter()
                    .filter_map(|c| self.stamp(&c).map(|s| (c, s)))
                    .collect();
                let mut small = Vec::new();
                for e in tree::children(&self.vol, p)? {
                    if let Some(v) = e.head.as_ref().filter(|v| v.kind == Kind::File && v.blocks.len() == 1) {
                        small.push((e.path.clone(), v.blocks[0].id));
                    }
                    let attr = match &e.head {
                        Some(v) => attr_of(v)?,
                        None => self.dir_attr(0o755),
                    };
                    self.remember(e.clone(), stamps.get(&e.path).copied());
                    out.push((name(&e.path), Node::Path(e.path), attr));
                }
                let mut order = lock(&self.order);
                for (path, id) in small {
                    let n = order.dropped + order.files.len() as u64;
                    order.at.insert(path.clone(), n);
                    order.files.push_back((path, id));
                }
                while order.files.len() > LISTED_MAX {
                    if let Some((old, _)) = order.files.pop_front() {
                        let n = order.dropped;
                        order.dropped += 1;
                        if order.at.get(&old) == Some(&n) {
                            order.at.remove(&old);
                        }
                    }
                }
                drop(order);
                // Files open for writing show their spool; new ones are listed.
                for path in spools.into_iter().filter(|s| s.parent().as_ref() == Some(p)) {
                    let node = Node::Path(path.clone());
                    if let Ok(attr) = self.attr(&node) {
                        out.retain(|(_, n, _)| *n != node);
                        out.push((name(&path), node, attr));
                    }
                }
            }
            Node::Meta => {
                out.push((b"history".to_vec(), Node::History(VolPath::root()), self.dir_attr(0o555)));
                out.push((b"peers".to_vec(), Node::Peers, self.dir_attr(0o555)));
                out.push((MOUNT_MARKER.as_bytes().to_vec(), Node::Marker, self.attr(&Node::Marker)?));
            }
            Node::History(p) => {
                self.attr(node)?;
                for c in tree::recorded_children(&self.vol, p)? {
                    out.push((name(&c), Node::History(c), self.dir_attr(0o555)));
                }
                if !p.is_root() {
                    for v in self.vol.history(p)? {
                        if matches!(v.kind, Kind::File | Kind::Symlink) {
                            let a = attr_of(&v)?;
                            let attr = Attr { perm: a.perm & !0o222, ..a };
                            out.push((v.id.as_str().as_bytes().to_vec(), Node::Version(p.clone(), v.id), attr));
                        }
                    }
                }
            }
            Node::Peers => {
                for p in peers::list(&self.vol)? {
                    let node = Node::Peer(p.name.clone());
                    let attr = self.attr(&node)?;
                    out.push((p.name.into_bytes(), node, attr));
                }
            }
            Node::Version(..) | Node::Peer(_) | Node::Marker => return Err(Error::NotDirectory(format!("{node:?}"))),
        }
        Ok(out)
    }

    /// The target of symlink `node`.
    pub fn read_link(&self, node: &Node) -> Result<Vec<u8>> {
        let v = match node {
            Node::Path(p) => self.stat(p)?.head,
            Node::Version(p, id) => Some(self.shown_version(p, id)?),
            _ => None,
        };
        v.and_then(|v| v.target).ok_or_else(|| Error::Usage(format!("{node:?} is not a symlink")))
    }

    /// The text of `/.globofs/volume`: the volume's directory and a newline.
    fn marker_text(&self) -> Vec<u8> {
        use std::os::unix::ffi::OsStrExt;
        let mut t = self.vol.dir().as_os_str().as_bytes().to_vec();
        t.push(b'\n');
        t
    }

    fn peer_text(&self, name: &str) -> Result<Vec<u8>> {
        let p = peers::list(&self.vol)?
            .into_iter()
            .find(|p| p.name == name)
            .ok_or_else(|| Error::NotFound(format!("peer {name}")))?;
        let last = sync::last_push(&self.vol, &p).map_or("never".to_string(), |t| t.to_string());
        Ok(format!(
            "name: {}\nuuid: {}\npath: {}\nstate: {}\npending: {}\nlast push: {}\n",
            p.name,
            p.uuid,
            p.path.display(),
            if p.reachable() { "reachable" } else { "unreachable" },
            sync::pending(&self.vol, &p)?,
            last
        )
        .into_bytes())
    }

    /// Opens `node`; `write` for writing (`truncate`: from empty). Read-only, a file shows
    /// the version `seen` by the opener's inode (see [`View::as_seen`]).
    pub fn open(&self, node: &Node, write: bool, truncate: bool, seen: Option<&VersionId>) -> Result<Handle> {
        let p = match node {
            Node::Path(p) => p,
            Node::Version(p, id) if !write => {
                return Ok(Handle::Read(Content::Blocks(Box::new(BlockReader::new(self.shown_version(p, id)?)))))
            }
            Node::Peer(name) if !write => return Ok(Handle::Read(Content::Bytes(self.peer_text(name)?))),
            Node::Marker if !write => return Ok(Handle::Read(Content::Bytes(self.marker_text()))),
            Node::Marker => return Err(read_only(MOUNT_MARKER, META_HINT)),
            Node::Version(p, _) => return Err(read_only(p, HISTORY_HINT)),
            Node::Peer(name) => return Err(read_only(name, "peers are shown, not changed here")),
            _ => return Err(Error::IsDirectory(format!("{node:?}"))),
        };
        let mut spools = lock(&self.spools);
        if let Some(s) = spools.get(p) {
            let mut st = lock(&s.0);
            if write && truncate && st.size > 0 {
                fsio::set_len(&st.file, 0, &self.spool_dir()).ctx("truncate spool of", &st.path.to_os_path())?;
                (st.size, st.dirty, st.mtime) = (0, true, None);
            }
            st.opens += 1;
            return Ok(Handle::Spool { spool: s.clone(), write });
        }
        let head = self.stat(p)?.head.ok_or_else(|| Error::IsDirectory(p.to_string()))?;
        if head.kind == Kind::Dir {
            return Err(Error::IsDirectory(p.to_string()));
        }
        if !write {
            let shown = self.as_seen(p, head, seen)?;
            self.read_ahead(p);
            return Ok(Handle::Read(Content::Blocks(Box::new(BlockReader::new(shown)))));
        }
        if head.path != *p {
            let hint = format!("a conflict file: `rm` it to keep {0}, or `mv` it over {0} to take it", head.path);
            return Err(read_only(p, &hint));
        }
        let file = self.spool_file()?;
        if !truncate {
            let mut w = std::io::BufWriter::new(&file);
            export::read_version(&self.vol, &head, &mut w)?;
            std::io::Write::flush(&mut w).ctx("write spool of", &self.vol.layout().state())?;
        }
        let st = SpoolState {
            path: p.clone(),
            file,
            size: if truncate { 0 } else { head.size },
            mode: head.mode,
            mtime: None,
            dirty: truncate && head.size > 0,
            unlinked: false,
            opens: 1,
        };
        let s = Arc::new(Spool(Mutex::new(st)));
        spools.insert(p.clone(), s.clone());
        Ok(Handle::Spool { spool: s, write: true })
    }

    /// After `path` is opened for reading: the small files listed after it (in its
    /// directory, then in the directories listed next) are read ahead.
    fn read_ahead(&self, path: &VolPath) {
        let order = lock(&self.order);
        let Some(&n) = order.at.get(path) else { return };
        let from = (n - order.dropped) as usize + 1;
        let next: Vec<BlockId> = order.files.iter().skip(from).take(FILES_AHEAD).map(|(_, id)| *id).collect();
        drop(order);
        self.ahead.want(next);
    }

    /// A new, anonymous spool file in `local/state/spool/`.
    fn spool_file(&self) -> Result<File> {
        let dir = self.spool_dir();
        fsio::create_dirs(&dir)?;
        let path = dir.join(uuid::Uuid::new_v4().to_string());
        let file = fsio::create_new(&path, 0o600).ctx("create", &path)?;
        fsio::remove_file(&path).ctx("remove", &path)?;
        Ok(file)
    }

    fn spool_dir(&self) -> std::path::PathBuf {
        self.vol.layout().state().join("spool")
    }

    /// The live path named `name` in directory `parent`.
    fn child(&self, parent: &Node, name: &[u8]) -> Result<VolPath> {
        match parent {
            Node::Path(p) => {
                if p.is_root() && name == RESERVED_TOP.as_bytes() {
                    return Err(read_only(RESERVED_TOP, META_HINT));
                }
                p.join(name)
            }
            Node::History(p) => Err(read_only(p, HISTORY_HINT)),
            _ => Err(read_only(RESERVED_TOP, META_HINT)),
        }
    }

    /// A path about to be made: its directory is live and it is not.
    fn check_new(&self, path: &VolPath) -> Result<()> {
        let parent = path.parent().unwrap_or_default();
        if self.attr(&Node::Path(parent.clone()))?.kind != NodeKind::Dir {
            return Err(Error::NotDirectory(parent.to_string()));
        }
        if self.spool(path).is_some() || tree::stat(&self.vol, path).is_ok() {
            return Err(Error::Exists(path.to_string()));
        }
        Ok(())
    }

    /// Creates file `name` in `parent` and opens it for writing. It is stored when closed.
    pub fn create(&self, parent: &Node, name: &[u8], mode: u32) -> Result<(Node, Handle)> {
        let path = self.child(parent, name)?;
        self.check_new(&path)?;
        let st = SpoolState {
            path: path.clone(),
            file: self.spool_file()?,
            size: 0,
            mode: mode & 0o7777,
            mtime: None,
            dirty: true,
            unlinked: false,
            opens: 1,
        };
        let s = Arc::new(Spool(Mutex::new(st)));
        lock(&self.spools).insert(path.clone(), s.clone());
        Ok((Node::Path(path), Handle::Spool { spool: s, write: true }))
    }

    /// Up to `size` bytes at `offset`.
    pub fn read(&self, h: &Handle, offset: u64, size: usize) -> Result<Vec<u8>> {
        match h {
            Handle::Spool { spool, .. } => {
                let st = lock(&spool.0);
                let n = st.size.saturating_sub(offset).min(size as u64) as usize;
                let mut buf = vec![0; n];
                st.file.read_exact_at(&mut buf, offset).ctx("read spool of", &self.vol.layout().state())?;
                Ok(buf)
            }
            Handle::Read(c) => match c {
                Content::Blocks(r) => r.read(&self.vol, &self.ahead, offset, size),
                Content::Bytes(b) => {
                    let start = (offset as usize).min(b.len());
                    Ok(b[start..(start + size).min(b.len())].to_vec())
                }
            },
        }
    }

    /// Writes `data` at `offset` of a file open for writing.
    pub fn write(&self, h: &Handle, offset: u64, data: &[u8]) -> Result<()> {
        let Handle::Spool { spool, write: true } = h else {
            return Err(read_only("this file", "it was opened read-only"));
        };
        let mut st = lock(&spool.0);
        fsio::write_at(&st.file, data, offset, &self.spool_dir()).ctx("write spool of", &st.path.to_os_path())?;
        st.size = st.size.max(offset + data.len() as u64);
        (st.dirty, st.mtime) = (true, None);
        Ok(())
    }

    /// Stores a changed file as a new version (close, fsync).
    pub fn flush(&self, h: &Handle) -> Result<()> {
        match h {
            Handle::Spool { spool, write: true } => self.commit(spool),
            _ => Ok(()),
        }
    }

    /// Drops every remembered entry (after a change made here).
    fn forget(&self) {
        lock(&self.recent).clear();
    }

    fn commit(&self, s: &Spool) -> Result<()> {
        let mut st = lock(&s.0);
        if !st.dirty || st.unlinked {
            return Ok(());
        }
        let mtime = st.mtime.unwrap_or_else(Timestamp::now);
        let v = ingest::write_file(&self.vol, &st.file, &st.path, st.mode, mtime)?;
        st.dirty = false;
        drop(st);
        self.committed(&[v]);
        Ok(())
    }

    /// After versions were made through the view: remembered entries go, the versions are
    /// noted as made here, and the commit's events run.
    fn committed(&self, done: &[Version]) {
        self.forget();
        let mut made = lock(&self.made);
        if made.len() >= RECENT_MAX {
            made.clear();
        }
        made.extend(done.iter().map(|v| v.id.clone()));
        drop(made);
        let paths: Vec<VolPath> = done.iter().map(|v| v.path.clone()).collect();
        for w in events::committed(&self.vol, &paths) {
            eprintln!("globofs: warning: {w}");
        }
    }

    /// Closes a handle: the last close of a changed file stores it.
    pub fn release(&self, h: &Handle) -> Result<()> {
        let Handle::Spool { spool: s, .. } = h else { return Ok(()) };
        // Releases come after the close, in the background: while another handle is open
        // (a rewrite that has just truncated the file, say), its own close stores it.
        let last = {
            let mut st = lock(&s.0);
            st.opens = st.opens.saturating_sub(1);
            st.opens == 0
        };
        let result = if last { self.commit(s) } else { Ok(()) };
        let mut spools = lock(&self.spools);
        let st = lock(&s.0);
        // A spool whose commit failed stays, and shows, until a later close stores it.
        if st.opens == 0 && (!st.dirty || st.unlinked) && spools.get(&st.path).is_some_and(|o| Arc::ptr_eq(o, s)) {
            spools.remove(&st.path);
        }
        result
    }

    /// Stores every changed file still open (at unmount).
    pub fn flush_all(&self) {
        let open: Vec<Arc<Spool>> = lock(&self.spools).values().cloned().collect();
        for s in open {
            if let Err(e) = self.commit(&s) {
                eprintln!("globofs: {e}");
            }
        }
    }

    fn commit_new(&self, path: &VolPath, make: impl FnOnce(Option<&Version>) -> Version) -> Result<()> {
        let done = self.vol.commit(vec![(path.clone(), |head: Option<&Version>| {
            if head.is_some_and(|h| h.is_live()) {
                return Err(Error::Exists(path.to_string()));
            }
            Ok(Some(make(head)))
        })])?;
        self.committed(&done);
        Ok(())
    }

    /// Makes directory `name` in `parent`.
    pub fn mkdir(&self, parent: &Node, name: &[u8], mode: u32) -> Result<Node> {
        let path = self.child(parent, name)?;
        self.check_new(&path)?;
        self.commit_new(&path, |head| {
            let mut v = self.vol.new_version(&path, Kind::Dir, head);
            v.mode = mode & 0o7777;
            v
        })?;
        Ok(Node::Path(path))
    }

    /// Makes symlink `name` in `parent` pointing to `target`.
    pub fn symlink(&self, parent: &Node, name: &[u8], target: &[u8]) -> Result<Node> {
        let path = self.child(parent, name)?;
        self.check_new(&path)?;
        self.commit_new(&path, |head| {
            let mut v = self.vol.new_version(&path, Kind::Symlink, head);
            v.target = Some(target.to_vec());
            v
        })?;
        Ok(Node::Path(path))
    }

    /// Forgets the spool of `path` (removed or replaced): open handles keep their data,
    /// which is never stored.
    fn drop_spool(&self, path: &VolPath) -> bool {
        match lock(&self.spools).remove(path) {
            Some(s) => {
                lock(&s.0).unlinked = true;
                true
            }
            None => false,
        }
    }

    /// Removes file `name` from `parent`: a tombstone; in history, prunes that version; on
    /// a conflict file, keeps the local version.
    pub fn unlink(&self, parent: &Node, name: &[u8]) -> Result<()> {
        if let Node::History(p) = parent {
            let id = std::str::from_utf8(name).ok().and_then(VersionId::parse);
            let id = id.filter(|id| !p.is_root() && self.shown_version(p, id).is_ok());
            let id = id.ok_or_else(|| read_only(p, "only versions can be removed here (that prunes them)"))?;
            retention::prune_version(&self.vol, p, &id)?;
            return Ok(());
        }
        let path = self.child(parent, name)?;
        let had_spool = self.drop_spool(&path);
        let entry = match tree::stat(&self.vol, &path) {
            Err(Error::NotFound(_)) if had_spool => return Ok(()), // created here, never stored
            r => r?,
        };
        if entry.is_dir() {
            return Err(Error::IsDirectory(path.to_string()));
        }
        let done = tree::rm(&self.vol, &path)?;
        self.committed(&done);
        Ok(())
    }

    fn has_spools_under(&self, dir: &VolPath) -> bool {
        lock(&self.spools).keys().any(|p| p.starts_with(dir) && p != dir)
    }

    /// Removes empty directory `name` from `parent`.
    pub fn rmdir(&self, parent: &Node, name: &[u8]) -> Result<()> {
        let path = self.child(parent, name)?;
        let entry = tree::stat(&self.vol, &path)?;
        if !entry.is_dir() {
            return Err(Error::NotDirectory(path.to_string()));
        }
        if entry.head.is_none() || tree::has_live_descendant(&self.vol, &path)? || self.has_spools_under(&path) {
            return Err(Error::NotEmpty(path.to_string()));
        }
        let done = tree::rm(&self.vol, &path)?;
        self.committed(&done);
        Ok(())
    }

    /// Renames `name` in `parent` to `new_name` in `new_parent`, replacing a file or an
    /// empty directory there unless `no_replace`. A conflict file moved over its file
    /// takes the remote version.
    pub fn rename(
        &self,
        parent: &Node,
        name: &[u8],
        new_parent: &Node,
        new_name: &[u8],
        no_replace: bool,
    ) -> Result<()> {
        let src = self.child(parent, name)?;
        let dst = self.child(new_parent, new_name)?;
        // What is open at the source is stored first: the move takes its content along.
        let open: Vec<Arc<Spool>> =
            lock(&self.spools).iter().filter(|(p, _)| p.starts_with(&src)).map(|(_, s)| s.clone()).collect();
        for s in &open {
            self.commit(s)?;
        }
        let top = tree::stat(&self.vol, &src)?;
        if let Ok(existing) = tree::stat(&self.vol, &dst) {
            if no_replace {
                return Err(Error::Exists(dst.to_string()));
            }
            match (top.is_dir(), existing.is_dir()) {
                (false, true) => return Err(Error::IsDirectory(dst.to_string())),
                (true, false) => return Err(Error::NotDirectory(dst.to_string())),
                (true, true) => {
                    if existing.head.is_none()
                        || tree::has_live_descendant(&self.vol, &dst)?
                        || self.has_spools_under(&dst)
                    {
                        return Err(Error::NotEmpty(dst.to_string()));
                    }
                    // `mv` would move into it: the empty directory goes first.
                    tree::rm(&self.vol, &dst)?;
                }
                (false, false) => {
                    self.drop_spool(&dst);
                }
            }
        }
        let done = tree::mv(&self.vol, &src, &dst)?;
        // Handles still open follow the file to its new name.
        let mut spools = lock(&self.spools);
        for s in open {
            let mut st = lock(&s.0);
            if let Some(to) = st.path.rebase(&src, &dst) {
                spools.remove(&st.path);
                st.path = to.clone();
                spools.insert(to, s.clone());
            }
        }
        drop(spools);
        self.committed(&done);
        Ok(())
    }

    /// Applies `chmod`, `truncate` and `touch` to `node`. On a file open for writing they
    /// are stored with its content when it is closed; otherwise at once, as one version.
    pub fn set_attr(&self, node: &Node, set: SetAttr) -> Result<()> {
        let path = match node {
            Node::Path(p) if !p.is_root() => p,
            Node::Path(_) => return Err(read_only("the volume root", "it has no versions")),
            Node::Version(p, _) | Node::History(p) => return Err(read_only(p, HISTORY_HINT)),
            _ => return Err(read_only(RESERVED_TOP, META_HINT)),
        };
        if let Some(size) = set.size {
            if self.spool(path).is_none() {
                let h = self.open(node, true, size == 0, None)?;
                let set_done = match &h {
                    Handle::Spool { spool, .. } => self.set_spool(spool, set),
                    Handle::Read(_) => Ok(()),
                };
                // Released whatever happened, so the spool does not outlive this call.
                let released = self.release(&h);
                return set_done.and(released);
            }
        }
        if let Some(s) = self.spool(path) {
            return self.set_spool(&s, set);
        }
        let entry = tree::stat(&self.vol, path)?;
        if entry.head.as_ref().is_some_and(|h| h.path != *path) {
            return Err(read_only(path, "a conflict file: resolve it first"));
        }
        let done = self.vol.commit(vec![(path.clone(), |head: Option<&Version>| {
            let mut v = match head.filter(|h| h.is_live()) {
                Some(h) => self.vol.version_like(path, h, Some(h)),
                // A directory that exists only through its content gets a marker.
                None => self.vol.new_version(path, Kind::Dir, head),
            };
            let old = (v.mode, v.mtime);
            v.mode = set.mode.map_or(v.mode, |m| m & 0o7777);
            v.mtime = set.mtime.unwrap_or(v.mtime);
            Ok((head.is_none_or(|h| !h.is_live()) || (v.mode, v.mtime) != old).then_some(v))
        })])?;
        self.committed(&done);
        Ok(())
    }

    fn set_spool(&self, s: &Spool, set: SetAttr) -> Result<()> {
        let mut st = lock(&s.0);
        if let Some(size) = set.size {
            fsio::set_len(&st.file, size, &self.spool_dir()).ctx("truncate spool of", &st.path.to_os_path())?;
            (st.size, st.dirty, st.mtime) = (size, true, None);
        }
        if let Some(m) = set.mode {
            (st.mode, st.dirty) = (m & 0o7777, true);
        }
        if let Some(t) = set.mtime {
            (st.mtime, st.dirty) = (Some(t), true);
        }
        Ok(())
    }
}

impl Handle {
    /// The version a read-only handle shows (its content never changes).
    pub fn version(&self) -> Option<VersionId> {
        match self {
            Handle::Read(c) => match c {
                Content::Blocks(r) => Some(r.version.id.clone()),
                Content::Bytes(_) => None,
            },
            Handle::Spool { .. } => None,
        }
    }
}

impl BlockReader {
    fn new(version: Version) -> BlockReader {
        let mut end = 0;
        let ends = version
            .blocks
            .iter()
            .map(|b| {
                end += b.len as u64;
                end
            })
            .collect();
        BlockReader { version, ends, recent: Mutex::new(Default::default()) }
    }

    /// Block `i`, decoded (read ahead, or read now and pulled from a peer if need be).
    fn block(&self, vol: &Volume, ahead: &Prefetcher, i: usize) -> Result<Arc<Vec<u8>>> {
        if let Some((_, d)) = lock(&self.recent).iter().find(|(n, _)| *n == i) {
            return Ok(d.clone());
        }
        let b = &self.version.blocks[i];
        let data = match ahead.take(&b.id) {
            Some(d) => Arc::new(d),
            None => Arc::new(vol.read_block(&b.id, &self.version.path)?),
        };
        let mut recent = lock(&self.recent);
        if recent.len() >= RECENT_BLOCKS {
            recent.pop_front();
        }
        recent.push_back((i, data.clone()));
        Ok(data)
    }

    /// Up to `size` bytes at `offset`, reading (and pulling) only the blocks they touch.
    fn read(&self, vol: &Volume, ahead: &Prefetcher, offset: u64, size: usize) -> Result<Vec<u8>> {
        let end = offset.saturating_add(size as u64).min(self.ends.last().copied().unwrap_or(0));
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        let mut i = self.ends.partition_point(|&e| e <= offset);
        let mut pos = offset;
        while pos < end && i < self.ends.len() {
            let data = self.block(vol, ahead, i)?;
            let start = self.ends[i] - data.len() as u64;
            let from = (pos - start) as usize;
            let to = ((end - start) as usize).min(data.len());
            out.extend_from_slice(&data[from..to]);
            pos = start + to as u64;
            i += 1;
        }
        // Sequential reads: the next blocks inflate on the read-ahead threads meanwhile.
        if self.ends.len() > 1 {
            ahead.want(self.version.blocks.iter().skip(i).take(BLOCKS_AHEAD).map(|b| b.id));
        }
        Ok(out)
    }
}
