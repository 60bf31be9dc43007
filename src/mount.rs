//! `globofs mount`: the FUSE adapter over [`crate::view`]. It numbers nodes (inodes) and
//! open files (handles), turns kernel requests into view calls, and maps the library's
//! errors to errno values in one place ([`errno`]). A thread applies the logs peers push
//! into the volume every half second, and the kernel keeps names and attributes for one
//! second, so changes made by other processes show within two seconds.

use crate::error::{Error, Result};
use crate::ids::VersionId;
use crate::manifest::Timestamp;
use crate::paths::VolPath;
use crate::view::{Attr, Handle, Node, NodeKind, SetAttr, View};
use crate::volume::Volume;
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags, KernelConfig,
    LockOwner, MountOption, OpenAccMode, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long the kernel may keep names and attributes.
const TTL: Duration = Duration::from_secs(1);
/// How often logs pushed in by peers are applied.
const RECEIVE_EVERY: Duration = Duration::from_millis(500);

/// The errno for a library error: the one place where errors meet the kernel.
pub fn errno(e: &Error) -> Errno {
    match e {
        Error::NotFound(_) | Error::UnknownVersion { .. } => Errno::ENOENT,
        Error::IsDirectory(_) => Errno::EISDIR,
        Error::NotDirectory(_) => Errno::ENOTDIR,
        Error::Exists(_) => Errno::EEXIST,
        Error::NotEmpty(_) => Errno::ENOTEMPTY,
        Error::ReadOnly { .. } => Errno::EROFS,
        Error::Protected { .. } | Error::Unsupported(_) => Errno::EPERM,
        Error::InvalidPath { .. } | Error::Usage(_) => Errno::EINVAL,
        Error::Io { source, .. } => source.raw_os_error().map_or(Errno::EIO, Errno::from_i32),
        _ => Errno::EIO,
    }
}

/// Node numbers. A node gets a number on first sight; the kernel's references to it
/// (lookups) are counted, and when it forgets them all the number goes. Live paths are
/// kept in order, so the paths beneath a renamed directory are one range.
///
/// A file's number stands for the version it showed when looked up: when another process
/// replaces the file (the CLI, a push from a peer), the next lookup of the name gets a new
/// number, as a rename over a file on a local disk makes a new inode, while the old number
/// goes on showing its version, size and content alike, to whoever has it open. A change
/// made through the mount keeps the number.
struct Inodes {
    paths: std::collections::BTreeMap<VolPath, u64>,
    others: HashMap<Node, u64>,
    nodes: HashMap<u64, Inode>,
    next: u64,
}

/// One node number: its node, the lookups the kernel holds on it, and for a file the
/// version it shows.
struct Inode {
    node: Node,
    lookups: u64,
    shows: Option<VersionId>,
}

impl Inodes {
    fn new() -> Inodes {
        let mut i = Inodes { paths: Default::default(), others: HashMap::new(), nodes: HashMap::new(), next: 1 };
        i.ino(&Node::Path(VolPath::root()), None); // 1, never forgotten
        i
    }

    /// The number of `node` found by name, showing version `shows` (files only; `made_here`
    /// when that version was made through the mount): its number, or a new one if the file
    /// it had was replaced by another process.
    fn ino(&mut self, node: &Node, shows: Option<(&VersionId, bool)>) -> u64 {
        let known = match node {
            Node::Path(p) => self.paths.get(p),
            n => self.others.get(n),
        };
        if let Some(&i) = known {
            let Some(inode) = self.nodes.get_mut(&i) else { return i };
            match (shows, &inode.shows) {
                (Some((v, made_here)), Some(old)) if old != v && !made_here => {} // replaced: a new number
                (Some((v, _)), _) => {
                    inode.shows = Some(v.clone());
                    return i;
                }
                (None, _) => return i,
            }
        }
        let i = self.next;
        self.next += 1;
        self.nodes.insert(i, Inode { node: node.clone(), lookups: 0, shows: shows.map(|(v, _)| v.clone()) });
        match node {
            Node::Path(p) => self.paths.insert(p.clone(), i),
            n => self.others.insert(n.clone(), i),
        };
        i
    }

    /// Counts one more reference of the kernel to `ino` (a lookup).
    fn count(&mut self, ino: u64) {
        if let Some(inode) = self.nodes.get_mut(&ino) {
            inode.lookups += 1;
        }
    }

    /// The node of `ino` and the version it shows.
    fn node(&self, ino: u64) -> Option<(Node, Option<VersionId>)> {
        self.nodes.get(&ino).map(|i| (i.node.clone(), i.shows.clone()))
    }

    /// `ino` now shows version `v` (a change made through the mount, or a first sight).
    fn show(&mut self, ino: u64, v: &VersionId) {
        if let Some(inode) = self.nodes.get_mut(&ino) {
            inode.shows = Some(v.clone());
        }
    }

    /// The kernel dropped `n` references to `ino`; at none, the number goes.
    fn forget(&mut self, ino: u64, n: u64) {
        let Some(inode) = self.nodes.get_mut(&ino) else { return };
        inode.lookups = inode.lookups.saturating_sub(n);
        if inode.lookups > 0 || ino == 1 {
            return;
        }
        let node = inode.node.clone();
        self.nodes.remove(&ino);
        let map_ino = match &node {
            Node::Path(p) => self.paths.get(p),
            n => self.others.get(n),
        };
        if map_ino == Some(&ino) {
            match &node {
                Node::Path(p) => self.paths.remove(p),
                n => self.others.remove(n),
            };
        }
    }

    /// After a rename, the kernel's inodes for `src` and beneath it live at `dst`.
    fn rename(&mut self, src: &VolPath, dst: &VolPath) {
        let moved: Vec<(VolPath, u64)> = self
            .paths
            .range(src.clone()..)
            .take_while(|(p, _)| p.starts_with(src))
            .map(|(p, &i)| (p.clone(), i))
            .collect();
        for (p, i) in moved {
            self.paths.remove(&p);
            if let Some(to) = p.rebase(src, dst) {
                if let Some(inode) = self.nodes.get_mut(&i) {
                    inode.node = Node::Path(to.clone());
                }
                self.paths.insert(to, i);
            }
        }
    }
}

/// A directory's entries: node, attributes and name.
type Listing = Vec<(Node, Attr, Vec<u8>)>;

/// The FUSE file system.
pub struct GlobofsFs {
    view: Arc<View>,
    inodes: Mutex<Inodes>,
    /// Open files, each with the process that opened it.
    handles: Mutex<HashMap<u64, (Arc<Handle>, u32)>>,
    /// Directory listings taken at opendir, served by offset.
    listings: Mutex<HashMap<u64, Listing>>,
    /// The version each inode showed when last opened: unchanged means the kernel's page
    /// cache is still right.
    opened: Mutex<HashMap<u64, VersionId>>,
    next_fh: AtomicU64,
    uid: u32,
    gid: u32,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn system_time(t: Timestamp) -> SystemTime {
    if t.sec >= 0 {
        UNIX_EPOCH + Duration::new(t.sec as u64, t.nsec)
    } else {
        UNIX_EPOCH - Duration::from_secs(t.sec.unsigned_abs()) + Duration::from_nanos(u64::from(t.nsec))
    }
}

fn timestamp(t: TimeOrNow) -> Timestamp {
    match t {
        TimeOrNow::Now => Timestamp::now(),
        TimeOrNow::SpecificTime(st) => match st.duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp { sec: d.as_secs() as i64, nsec: d.subsec_nanos() },
            Err(e) => {
                let d = e.duration();
                let (sec, nsec) = if d.subsec_nanos() == 0 {
                    (-(d.as_secs() as i64), 0)
                } else {
                    (-(d.as_secs() as i64) - 1, 1_000_000_000 - d.subsec_nanos())
                };
                Timestamp { sec, nsec }
            }
        },
    }
}

fn file_type(k: NodeKind) -> FileType {
    match k {
        NodeKind::File => FileType::RegularFile,
        NodeKind::Dir => FileType::Directory,
        NodeKind::Symlink => FileType::Symlink,
    }
}

/// Logs an error that a person may need (the kernel only passes on an errno).
fn report(op: &str, e: &Error) -> Errno {
    let n = errno(e);
    if matches!(n, Errno::EIO | Errno::ENOSPC | Errno::EPERM | Errno::EINVAL) {
        eprintln!("globofs: {op}: {e}");
    }
    n
}

impl GlobofsFs {
    /// The file system over `view`.
    pub fn new(view: Arc<View>) -> GlobofsFs {
        let inodes = Inodes::new();
        GlobofsFs {
            view,
            inodes: Mutex::new(inodes),
            handles: Mutex::new(HashMap::new()),
            listings: Mutex::new(HashMap::new()),
            opened: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            // SAFETY: getuid and getgid cannot fail.
            uid: unsafe { libc::getuid() },
            gid: unsafe { libc::getgid() },
        }
    }

    fn node(&self, ino: INodeNo) -> Result<Node, Errno> {
        self.seen(ino).map(|(n, _)| n)
    }

    /// The node of `ino` and the version it shows (see [`Inodes`]).
    fn seen(&self, ino: INodeNo) -> Result<(Node, Option<VersionId>), Errno> {
        lock(&self.inodes).node(ino.0).ok_or(Errno::ENOENT)
    }

    /// The attributes of inode `ino`: for a file, those of the version it shows.
    fn inode_attr(&self, ino: INodeNo) -> Result<FileAttr, Errno> {
        let (node, seen) = self.seen(ino)?;
        let a = self.view.attr_seen(&node, seen.as_ref()).map_err(|e| report("stat", &e))?;
        self.showing(ino, &node, &a);
        Ok(self.file_attr(ino.0, &a))
    }

    /// After `ino` was found showing `a`: a file's inode shows that version from now on.
    fn showing(&self, ino: INodeNo, node: &Node, a: &Attr) {
        if let (Node::Path(_), NodeKind::File, Some(v)) = (node, a.kind, &a.version) {
            lock(&self.inodes).show(ino.0, v);
        }
    }

    /// The number of `node` found by name showing `a`; `counted` when the reply gives the
    /// kernel a reference (lookup, create, mkdir, symlink), which it gives back with forget.
    fn named(&self, node: &Node, a: &Attr, counted: bool) -> u64 {
        let version = a.version.as_ref().filter(|_| matches!(node, Node::Path(_)) && a.kind == NodeKind::File);
        let shows = version.map(|v| (v, self.view.made_here(v)));
        let mut inodes = lock(&self.inodes);
        let ino = inodes.ino(node, shows);
        if counted {
            inodes.count(ino);
        }
        ino
    }

    /// Attributes for the kernel.
    fn file_attr(&self, ino: u64, a: &Attr) -> FileAttr {
        let t = system_time(a.mtime);
        FileAttr {
            ino: INodeNo(ino),
            size: a.size,
            blocks: a.size.div_ceil(512),
            atime: t,
            mtime: t,
            ctime: t,
            crtime: t,
            kind: file_type(a.kind),
            perm: a.perm as u16,
            nlink: if a.kind == NodeKind::Dir { 2 } else { 1 },
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 128 * 1024,
            flags: 0,
        }
    }

    /// The reply to a lookup of `node` (by name), showing `a`.
    fn named_attr(&self, node: &Node, a: &Attr) -> FileAttr {
        self.file_attr(self.named(node, a, true), a)
    }

    fn entry(&self, node: &Node, reply: ReplyEntry) {
        match self.view.attr(node) {
            Ok(a) => reply.entry(&TTL, &self.named_attr(node, &a), Generation(0)),
            Err(e) => reply.error(report("stat", &e)),
        }
    }

    fn handle(&self, fh: FileHandle) -> Result<Arc<Handle>, Errno> {
        lock(&self.handles).get(&fh.0).map(|(h, _)| h.clone()).ok_or(Errno::EBADF)
    }

    fn add_handle(&self, h: Handle, req: &Request) -> FileHandle {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        // Only a writer's close stores anything: only then is the opener needed.
        let opener = if matches!(h, Handle::Spool { write: true, .. }) { process_of(req.pid()) } else { 0 };
        lock(&self.handles).insert(fh, (Arc::new(h), opener));
        FileHandle(fh)
    }

    /// Open flags for `node`: keep the page cache when the version shown is the one shown
    /// at the last open; never cache computed text.
    fn open_flags(&self, ino: INodeNo, node: &Node, h: &Handle) -> FopenFlags {
        if node.is_volatile() {
            return FopenFlags::FOPEN_DIRECT_IO;
        }
        let mut opened = lock(&self.opened);
        // A read-only handle has nothing to store at close: no flush request is needed.
        match h.version() {
            Some(v) if opened.get(&ino.0) == Some(&v) => FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_NOFLUSH,
            Some(v) => {
                opened.insert(ino.0, v);
                FopenFlags::FOPEN_NOFLUSH
            }
            None => {
                opened.remove(&ino.0);
                FopenFlags::empty()
            }
        }
    }
}

impl Filesystem for GlobofsFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_readahead(1 << 20);
        let _ = config.set_max_write(1 << 20);
        // O_TRUNC comes with open (else the kernel truncates first, which would store an
        // empty version before every rewrite); cached pages go when size or mtime change;
        // lookups in one directory run in parallel.
        // Listings carry attributes, so `ls -l` and `find` need no lookup per entry.
        for cap in [
            InitFlags::FUSE_ATOMIC_O_TRUNC,
            InitFlags::FUSE_AUTO_INVAL_DATA,
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_READDIRPLUS_AUTO,
        ] {
            let _ = config.add_capabilities(cap);
        }
        Ok(())
    }

    fn destroy(&mut self) {
        self.view.flush_all();
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let parent = match self.node(parent) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        match self.view.lookup(&parent, name.as_bytes()) {
            Ok((node, a)) => reply.entry(&TTL, &self.named_attr(&node, &a), Generation(0)),
            Err(e) => reply.error(report("lookup", &e)),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        lock(&self.inodes).forget(ino.0, nlookup);
        lock(&self.opened).remove(&ino.0);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.inode_attr(ino) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let node = match self.node(ino) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        // Owners are not recorded: only a change to what is already shown is accepted.
        if uid.is_some_and(|u| u != self.uid) || gid.is_some_and(|g| g != self.gid) {
            return reply.error(Errno::EPERM);
        }
        let set = SetAttr { size, mode, mtime: mtime.map(timestamp) };
        if set.size.is_some() || set.mode.is_some() || set.mtime.is_some() {
            if let Err(e) = self.view.set_attr(&node, set) {
                return reply.error(report("setattr", &e));
            }
        }
        match self.inode_attr(ino) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.node(ino).and_then(|n| self.view.read_link(&n).map_err(|e| report("readlink", &e))) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        // Regular files come through create; devices, FIFOs and sockets are not stored.
        reply.error(Errno::EPERM);
    }

    fn mkdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        let r = self
            .node(parent)
            .and_then(|p| self.view.mkdir(&p, name.as_bytes(), mode & !umask).map_err(|e| report("mkdir", &e)));
        match r {
            Ok(node) => self.entry(&node, reply),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.node(parent).and_then(|p| self.view.unlink(&p, name.as_bytes()).map_err(|e| report("unlink", &e))) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.node(parent).and_then(|p| self.view.rmdir(&p, name.as_bytes()).map_err(|e| report("rmdir", &e))) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn symlink(&self, _req: &Request, parent: INodeNo, link_name: &OsStr, target: &Path, reply: ReplyEntry) {
        let r = self.node(parent).and_then(|p| {
            self.view
                .symlink(&p, link_name.as_bytes(), target.as_os_str().as_bytes())
                .map_err(|e| report("symlink", &e))
        });
        match r {
            Ok(node) => self.entry(&node, reply),
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if flags.intersects(RenameFlags::RENAME_EXCHANGE | RenameFlags::RENAME_WHITEOUT) {
            return reply.error(Errno::EINVAL);
        }
        let (p, np) = match (self.node(parent), self.node(newparent)) {
            (Ok(p), Ok(np)) => (p, np),
            (Err(e), _) | (_, Err(e)) => return reply.error(e),
        };
        let no_replace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        match self.view.rename(&p, name.as_bytes(), &np, newname.as_bytes(), no_replace) {
            Ok(()) => {
                if let (Node::Path(a), Node::Path(b)) = (&p, &np) {
                    if let (Ok(src), Ok(dst)) = (a.join(name.as_bytes()), b.join(newname.as_bytes())) {
                        lock(&self.inodes).rename(&src, &dst);
                    }
                }
                reply.ok()
            }
            Err(e) => reply.error(report("rename", &e)),
        }
    }

    fn link(&self, _req: &Request, _ino: INodeNo, _newparent: INodeNo, _newname: &OsStr, reply: ReplyEntry) {
        reply.error(Errno::EPERM);
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let (node, seen) = match self.seen(ino) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let write = flags.acc_mode() != OpenAccMode::O_RDONLY;
        let truncate = flags.0 & libc::O_TRUNC != 0;
        match self.view.open(&node, write, truncate, seen.as_ref()) {
            Ok(h) => {
                if let (Node::Path(_), Some(v)) = (&node, h.version()) {
                    lock(&self.inodes).show(ino.0, &v);
                }
                let f = self.open_flags(ino, &node, &h);
                reply.opened(self.add_handle(h, req), f)
            }
            Err(e) => reply.error(report("open", &e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.handle(fh).and_then(|h| self.view.read(&h, offset, size as usize).map_err(|e| report("read", &e))) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.handle(fh).and_then(|h| self.view.write(&h, offset, data).map_err(|e| report("write", &e))) {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(e),
        }
    }

    fn flush(&self, req: &Request, _ino: INodeNo, fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        let Some((h, opener)) = lock(&self.handles).get(&fh.0).cloned() else { return reply.error(Errno::EBADF) };
        // A close by another process (a child closing the descriptor it inherited, at exec
        // or exit) is not the writer's close: the writer's own close, its fsync, or the
        // last release stores the file.
        if process_of(req.pid()) != opener {
            return reply.ok();
        }
        match self.view.flush(&h) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(report("close", &e)),
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let Some((h, _)) = lock(&self.handles).remove(&fh.0) else { return reply.ok() };
        match self.view.release(&h) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(report("close", &e)),
        }
    }

    fn fsync(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        match self.handle(fh).and_then(|h| self.view.flush(&h).map_err(|e| report("fsync", &e))) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let node = match self.node(ino) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let entries = match self.view.list(&node) {
            Ok(x) => x,
            Err(e) => return reply.error(report("list", &e)),
        };
        let parent = match &node {
            Node::Path(p) => p.parent().map(Node::Path),
            Node::History(p) => Some(p.parent().map_or(Node::Meta, Node::History)),
            Node::Meta => Some(Node::Path(VolPath::root())),
            Node::Peers => Some(Node::Meta),
            _ => None,
        };
        let parent = parent.unwrap_or_else(|| node.clone());
        // The kernel takes only the inode and type of `.` and `..` from a listing.
        let dir = Attr { kind: NodeKind::Dir, size: 0, perm: 0o755, mtime: Timestamp::default(), version: None };
        let mut listing = vec![(node.clone(), dir.clone(), b".".to_vec()), (parent, dir, b"..".to_vec())];
        listing.extend(entries.into_iter().map(|(name, n, a)| (n, a, name)));
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        lock(&self.listings).insert(fh, listing);
        reply.opened(FileHandle(fh), FopenFlags::empty());
    }

    fn readdir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let listings = lock(&self.listings);
        let Some(listing) = listings.get(&fh.0) else { return reply.error(Errno::EBADF) };
        for (i, (node, attr, name)) in listing.iter().enumerate().skip(offset as usize) {
            let ino = self.named(node, attr, false);
            if reply.add(INodeNo(ino), i as u64 + 1, file_type(attr.kind), OsStr::from_bytes(name)) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectoryPlus) {
        let listings = lock(&self.listings);
        let Some(listing) = listings.get(&fh.0) else { return reply.error(Errno::EBADF) };
        for (i, (node, attr, name)) in listing.iter().enumerate().skip(offset as usize) {
            // Every entry but `.` and `..` is a lookup the kernel will forget.
            let dots = i < 2;
            let ino = self.named(node, attr, false);
            let attr = self.file_attr(ino, attr);
            if reply.add(attr.ino, i as u64 + 1, OsStr::from_bytes(name), &TTL, &attr, Generation(0)) {
                break;
            }
            if !dots {
                lock(&self.inodes).count(ino);
            }
        }
        reply.ok();
    }

    fn releasedir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        lock(&self.listings).remove(&fh.0);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // The space of the file system holding the volume.
        let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
        let dir = std::ffi::CString::new(self.view.volume().dir().as_os_str().as_bytes()).unwrap_or_default();
        // SAFETY: `dir` is a valid C string and `s` a valid out-parameter.
        if unsafe { libc::statvfs(dir.as_ptr(), &mut s) } != 0 {
            return reply.statfs(0, 0, 0, 0, 0, 4096, 255, 4096);
        }
        reply.statfs(s.f_blocks, s.f_bfree, s.f_bavail, s.f_files, s.f_ffree, s.f_bsize as u32, 255, s.f_frsize as u32);
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let r = self
            .node(parent)
            .and_then(|p| self.view.create(&p, name.as_bytes(), mode & !umask).map_err(|e| report("create", &e)));
        let (node, h) = match r {
            Ok(x) => x,
            Err(e) => return reply.error(e),
        };
        match self.view.attr(&node) {
            Ok(a) => {
                let attr = self.named_attr(&node, &a);
                reply.created(&TTL, &attr, Generation(0), self.add_handle(h, req), FopenFlags::empty())
            }
            Err(e) => reply.error(report("create", &e)),
        }
    }
}

/// The process (thread group) of thread `tid`, as the kernel names the caller of a request.
fn process_of(tid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("Tgid:")).and_then(|t| t.trim().parse().ok()).unwrap_or(tid)
}

/// True if `dir` is a mount point (its device differs from its parent's).
pub fn is_mounted(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(a), Ok(b)) = (std::fs::metadata(dir), std::fs::metadata(dir.join(".."))) else { return false };
    a.dev() != b.dev()
}

/// Runs the mount in a background process of its own (a new session, so closing the
/// terminal does not end it) and returns once the mount point serves, or with the error
/// the mount printed. Its messages go to `local/state/mount.log`. `allow_non_empty` is
/// passed on as `--allow-non-empty` (the command line's check of the mount point).
pub fn spawn_background(vol: &Volume, mnt: &Path, allow_non_empty: bool) -> Result<PathBuf> {
    use std::os::unix::process::CommandExt;
    let log_path = vol.layout().state().join("mount.log");
    fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
        move |e| Error::Io { op, path: path.to_path_buf(), source: e }
    }
    let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).map_err(io("open", &log_path))?;
    let start = log.metadata().map(|m| m.len()).unwrap_or(0);
    let exe = std::env::current_exe().map_err(io("find", Path::new("globofs")))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("-V").arg(vol.dir()).arg("mount").arg(mnt).arg("--foreground");
    if allow_non_empty {
        cmd.arg("--allow-non-empty");
    }
    cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null());
    cmd.stderr(log.try_clone().map_err(io("open", &log_path))?);
    // SAFETY: setsid is async-signal-safe, as pre_exec requires.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(io("start the mount for", mnt))?;
    for _ in 0..200 {
        if is_mounted(mnt) {
            return Ok(log_path);
        }
        if let Ok(Some(status)) = child.try_wait() {
            let text = std::fs::read(&log_path).unwrap_or_default();
            let said = String::from_utf8_lossy(&text[(start as usize).min(text.len())..]).trim().to_string();
            let said = said.strip_prefix("globofs: ").unwrap_or(&said).to_string();
            return Err(Error::Usage(if said.is_empty() { format!("the mount stopped ({status})") } else { said }));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Err(Error::Usage(format!("{} did not appear as a mount within 10 s; see {}", mnt.display(), log_path.display())))
}

/// Mounts `vol` at `mountpoint` and serves it until it is unmounted (`fusermount3 -u`) or
/// the process gets SIGINT, SIGTERM or SIGHUP, which unmount it.
pub fn serve(vol: Volume, mountpoint: &Path) -> Result<()> {
    let io_err = |e: std::io::Error| Error::Io { op: "mount", path: mountpoint.to_path_buf(), source: e };
    if !mountpoint.is_dir() {
        return Err(Error::Usage(format!("{}: no such directory to mount on", mountpoint.display())));
    }
    // Signals go to one thread that unmounts; every thread started below inherits the mask.
    // SAFETY: plain libc calls on a local, initialized signal set.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe {
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    let receiver = Volume::open(vol.dir())?;
    let view = Arc::new(View::new(vol));
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        MountOption::FSName(format!("globofs:{}", view.volume().dir().display())),
        MountOption::Subtype("globofs".into()),
        MountOption::DefaultPermissions,
    ];
    config.n_threads = Some(2);
    let mut session = fuser::Session::new(GlobofsFs::new(view), mountpoint, &config).map_err(io_err)?;
    let mut unmounter = session.unmount_callable();
    std::thread::spawn(move || {
        let mut sig = 0;
        // SAFETY: `set` is initialized; sigwait writes the signal number into `sig`.
        unsafe { libc::sigwait(&set, &mut sig) };
        if let Err(e) = unmounter.unmount() {
            eprintln!("globofs: unmount failed: {e}; close the files open under the mount and run `fusermount3 -u`");
        }
    });
    std::thread::spawn(move || loop {
        for w in crate::events::receive(&receiver) {
            eprintln!("globofs: warning: {w}");
        }
        std::thread::sleep(RECEIVE_EVERY);
    });
    session.run().map_err(io_err)
}
