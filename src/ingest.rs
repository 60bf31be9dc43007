//! Bringing content in: `import` of a file or a tree and `write` from a stream. A reader
//! thread cuts files into blocks, worker threads (one per core) hash, compress and store
//! them, and the calling thread commits finished files in batches (one sync per batch).
//! Memory is bounded by the queue depth times the largest block. Unchanged files are found
//! by the import cache without being read (docs/FORMAT.md, "Import cache").

use crate::chunker::Chunker;
use crate::error::{walk_error, Error, IoContext, Result};
use crate::fsio::{self, Durability};
use crate::ids::BlockId;
use crate::layout;
use crate::manifest::{BlockRef, Kind, Timestamp, Version};
use crate::paths::VolPath;
use crate::progress::Progress;
use crate::tree;
use crate::volume::Volume;
use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Commit a batch after this many files...
const BATCH_FILES: usize = 4096;
/// ...or this many bytes...
const BATCH_BYTES: u64 = 512 << 20;
/// ...or this much time, whichever comes first.
const BATCH_TIME: Duration = Duration::from_secs(10);

/// What an import or write did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct IngestStats {
    /// New versions committed.
    pub committed: u64,
    /// Files read whose content and metadata equal their head (no new version).
    pub unchanged: u64,
    /// Files skipped without being read (import cache hit).
    pub cached: u64,
    /// Bytes read from sources.
    pub bytes_read: u64,
    /// Blocks stored for the first time.
    pub new_blocks: u64,
    /// Bytes those new blocks take on disk (compressed).
    pub new_block_bytes: u64,
    /// Entries skipped with a warning (special files).
    pub warnings: Vec<String>,
}

enum Source {
    File {
        src: PathBuf,
        size: u64,
    },
    Stdin,
    /// An open file, read from its start (a file written through the mount).
    Open {
        file: File,
        size: u64,
    },
    Symlink(Vec<u8>),
    Dir,
}

struct Item {
    dest: VolPath,
    source: Source,
    mode: u32,
    mtime: Timestamp,
    /// Identity of the source entry, for the import cache (`None` for stdin, and for a
    /// source too recently modified to trust, see [`RACY_NS`]).
    ident: Option<SourceIdent>,
}

/// Identity of a source entry for the import cache: unchanged means not re-read.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct SourceIdent {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    mode: u32,
}

impl SourceIdent {
    fn of(m: &fs::Metadata) -> SourceIdent {
        let mtime_ns = m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128;
        let ctime_ns = m.ctime() as i128 * 1_000_000_000 + m.ctime_nsec() as i128;
        SourceIdent { dev: m.dev(), ino: m.ino(), size: m.size(), mtime_ns, ctime_ns, mode: m.mode() }
    }
}

fn mtime_of(m: &fs::Metadata) -> Timestamp {
    Timestamp { sec: m.mtime(), nsec: m.mtime_nsec().clamp(0, 999_999_999) as u32 }
}

/// Imports the file, symlink or tree at `src` as `dest`.
pub fn import(vol: &Volume, src: &Path, dest: &VolPath, show_progress: bool) -> Result<IngestStats> {
    if dest.is_root() {
        return Err(Error::Usage("import needs a destination path inside the volume".into()));
    }
    let mut stats = IngestStats::default();
    let items = plan(src, dest, vol.dir(), &mut stats.warnings)?;
    let mut cache = ImportCache::load(&vol.layout().import_cache());
    // One stat per entry: spread over the cores, it is most of a re-import's time.
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let per = items.len().div_ceil(threads).max(1);
    let cached: Vec<bool> = std::thread::scope(|s| {
        let parts: Vec<_> = items
            .chunks(per)
            .map(|part| {
                s.spawn(|| {
                    part.iter()
                        .map(|i| i.ident.is_some_and(|id| cache.unchanged(vol, &i.dest, &id)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        parts.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
    });
    let mut todo = Vec::with_capacity(items.len());
    for (item, hit) in items.into_iter().zip(cached.into_iter().chain(std::iter::repeat(false))) {
        if hit {
            stats.cached += 1;
        } else {
            todo.push(item);
        }
    }
    let total: u64 = todo.iter().map(|i| if let Source::File { size, .. } = i.source { size } else { 0 }).sum();
    let progress = Progress::bytes("import", total, show_progress);
    let result = run(vol, todo, false, &progress, &mut stats, &mut cache);
    progress.finish();
    // Entries of committed batches stay useful even if a later batch failed.
    let saved = cache.save(vol);
    result?;
    saved?;
    Ok(stats)
}

/// Writes everything read from stdin as a new version of `dest`.
pub fn write_stdin(vol: &Volume, dest: &VolPath) -> Result<(IngestStats, Version)> {
    if dest.is_root() {
        return Err(Error::Usage("write needs a path inside the volume".into()));
    }
    let mode = match vol.head(dest)? {
        Some(h) if h.kind == Kind::File => h.mode,
        _ => 0o644,
    };
    let item = Item { dest: dest.clone(), source: Source::Stdin, mode, mtime: Timestamp::now(), ident: None };
    let mut stats = IngestStats::default();
    let mut cache = ImportCache::default();
    let versions = run(vol, vec![item], true, &Progress::hidden(), &mut stats, &mut cache)?;
    let v = versions.into_iter().next().ok_or_else(|| Error::Usage(format!("{dest}: nothing was written")))?;
    Ok((stats, v))
}

/// Stores the whole content of the open file `file` as a new version of `dest` with `mode`
/// and `mtime` (the mount's files, written in a private spool file until they are closed).
pub fn write_file(vol: &Volume, file: &File, dest: &VolPath, mode: u32, mtime: Timestamp) -> Result<Version> {
    let spool = file.try_clone().ctx("read", &vol.layout().state())?;
    let size = spool.metadata().ctx("read", &vol.layout().state())?.len();
    let item = Item { dest: dest.clone(), source: Source::Open { file: spool, size }, mode, mtime, ident: None };
    let mut stats = IngestStats::default();
    let versions = run(vol, vec![item], true, &Progress::hidden(), &mut stats, &mut ImportCache::default())?;
    versions.into_iter().next().ok_or_else(|| Error::Usage(format!("{dest}: nothing was written")))
}

/// Lists what to ingest for `src`, in a stable order (directories before their content).
fn plan(src: &Path, dest: &VolPath, volume: &Path, warnings: &mut Vec<String>) -> Result<Vec<Item>> {
    // Importing the volume into itself would feed on its own new blocks: refuse a source
    // inside the volume, and leave the volume out of a source that contains it.
    let real = fs::canonicalize(src).ctx("read source", src)?;
    let vol_real = fs::canonicalize(volume).ctx("resolve", volume)?;
    if real.starts_with(&vol_real) {
        return Err(Error::Usage(format!(
            "{} is inside the volume {}: import from outside it",
            src.display(),
            volume.display()
        )));
    }
    let vol_id = fs::metadata(&vol_real).map(|m| (m.dev(), m.ino())).ctx("resolve", volume)?;
    let is_volume =
        |e: &walkdir::DirEntry| e.file_type().is_dir() && e.metadata().is_ok_and(|m| (m.dev(), m.ino()) == vol_id);
    let mut items = Vec::new();
    // A symlink given as the source is imported as a symlink, not as what it points to.
    let walk = walkdir::WalkDir::new(src).follow_links(false).follow_root_links(false).sort_by_file_name();
    for e in walk.into_iter().filter_entry(|e| !is_volume(e)) {
        let e = e.map_err(|e| walk_error("read source", src, e))?;
        let rel = e.path().strip_prefix(src).unwrap_or(Path::new(""));
        let mut raw = dest.to_bytes();
        if !rel.as_os_str().is_empty() {
            raw.push(b'/');
            raw.extend_from_slice(rel.as_os_str().as_bytes());
        }
        let to = match VolPath::parse(&raw) {
            Ok(p) => p,
            Err(err) => {
                warnings.push(format!("skipping {}: {err}", e.path().display()));
                continue;
            }
        };
        let m = e.metadata().map_err(|err| walk_error("read source", e.path(), err))?;
        let ft = m.file_type();
        let source = if ft.is_file() {
            Source::File { src: e.path().to_path_buf(), size: m.len() }
        } else if ft.is_symlink() {
            let t = fs::read_link(e.path()).ctx("read symlink", e.path())?;
            Source::Symlink(t.into_os_string().into_vec())
        } else if ft.is_dir() {
            Source::Dir
        } else {
            warnings.push(format!("skipping special file {}", e.path().display()));
            continue;
        };
        items.push(Item {
            dest: to,
            source,
            mode: m.mode() & 0o7777,
            mtime: mtime_of(&m),
            ident: Some(SourceIdent::of(&m)),
        });
    }
    forget_racy(&mut items);
    Ok(items)
}

/// A source entry modified less than this before the moment it was listed, by the source's
/// own clock, is *racy*: it may change again within the same tick of a coarse mtime (1 s
/// over sshfs, 2 s on FAT) without its mtime moving, so the import cache neither trusts
/// nor records it, and every import reads it again.
const RACY_NS: i128 = 2_000_000_000;

/// Drops the cache identity of racy entries (see [`RACY_NS`]). The moment of listing is
/// taken on the source's clock, never ours (which may be off): per file system, the newest
/// ctime seen in the listing, which the source's kernel stamped at or before that moment,
/// and which, unlike an mtime, no program can set.
fn forget_racy(items: &mut [Item]) {
    let mut listed: HashMap<u64, i128> = HashMap::new();
    for id in items.iter().filter_map(|i| i.ident.as_ref()) {
        let t = listed.entry(id.dev).or_insert(i128::MIN);
        *t = (*t).max(id.ctime_ns);
    }
    for item in items.iter_mut() {
        if item.ident.is_some_and(|id| id.mtime_ns > listed[&id.dev].saturating_sub(RACY_NS)) {
            item.ident = None;
        }
    }
}

/// Reads an open file from its start with positional reads (its offset is left alone).
struct FromStart<'a> {
    file: &'a File,
    pos: u64,
}

impl Read for FromStart<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = std::os::unix::fs::FileExt::read_at(self.file, buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

struct Job {
    item: usize,
    seq: usize,
    data: Vec<u8>,
}

enum Msg {
    Block { item: usize, seq: usize, block: BlockRef, stored: u64 },
    Done { item: usize, blocks: usize },
    Failed(Error),
}

/// Runs the pipeline over `items` and commits them. `always` commits even when content and
/// metadata equal the head (`write`); otherwise such files are counted as unchanged.
fn run(
    vol: &Volume,
    items: Vec<Item>,
    always: bool,
    progress: &Progress,
    stats: &mut IngestStats,
    cache: &mut ImportCache,
) -> Result<Vec<Version>> {
    // Blocks stored from here on are named only by the commits below: hold gc off till then.
    let _lease = vol.block_lease()?;
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let (job_tx, job_rx) = sync_channel::<Job>(workers * 2);
    let (msg_tx, msg_rx) = sync_channel::<Msg>(256);
    // Owned by the workers alone: when they stop (an error, or the collector hung up), the
    // queue closes and the reader's next send fails instead of blocking forever.
    let job_rx = Arc::new(Mutex::new(job_rx));
    let chunking = vol.config().chunking.clone();
    let mut committed = Vec::new();
    std::thread::scope(|s| -> Result<()> {
        for _ in 0..workers {
            let (rx, tx) = (Arc::clone(&job_rx), msg_tx.clone());
            s.spawn(move || store_blocks(vol, &rx, tx));
        }
        drop(job_rx);
        let reader_tx = msg_tx.clone();
        let items_ref = &items;
        s.spawn(move || read_items(items_ref, &chunking, job_tx, reader_tx));
        drop(msg_tx);
        let r = collect(vol, &items, always, &msg_rx, progress, stats, cache, &mut committed);
        // On error, draining lets the reader and workers see closed channels and stop.
        drop(msg_rx);
        r
    })?;
    Ok(committed)
}

fn read_items(items: &[Item], chunking: &crate::config::Chunking, jobs: SyncSender<Job>, msgs: SyncSender<Msg>) {
    for (i, item) in items.iter().enumerate() {
        let reader: Box<dyn Read> = match &item.source {
            Source::File { src, .. } => match File::open(src) {
                Ok(f) => Box::new(f),
                Err(e) => {
                    let _ = msgs.send(Msg::Failed(Error::Io { op: "read source", path: src.clone(), source: e }));
                    return;
                }
            },
            Source::Stdin => Box::new(std::io::stdin().lock()),
            Source::Open { file, .. } => Box::new(FromStart { file, pos: 0 }),
            Source::Symlink(_) | Source::Dir => {
                if msgs.send(Msg::Done { item: i, blocks: 0 }).is_err() {
                    return;
                }
                continue;
            }
        };
        let hint = match &item.source {
            Source::File { size, .. } | Source::Open { size, .. } => Some(*size),
            _ => None,
        };
        let mut n = 0;
        for block in Chunker::new(reader, chunking, hint) {
            match block {
                Ok(data) => {
                    if jobs.send(Job { item: i, seq: n, data }).is_err() {
                        return;
                    }
                    n += 1;
                }
                Err(e) => {
                    let path = match &item.source {
                        Source::File { src, .. } => src.clone(),
                        _ => PathBuf::from("<stdin>"),
                    };
                    let _ = msgs.send(Msg::Failed(Error::Io { op: "read source", path, source: e }));
                    return;
                }
            }
        }
        if msgs.send(Msg::Done { item: i, blocks: n }).is_err() {
            return;
        }
    }
}

fn store_blocks(vol: &Volume, jobs: &Mutex<Receiver<Job>>, msgs: SyncSender<Msg>) {
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        let id = BlockId::of(&job.data);
        let (msg, stop) = match vol.blocks().put(&id, &job.data) {
            Ok(stored) => (
                Msg::Block { item: job.item, seq: job.seq, block: BlockRef { id, len: job.data.len() as u32 }, stored },
                false,
            ),
            Err(e) => (Msg::Failed(e), true),
        };
        if msgs.send(msg).is_err() || stop {
            return;
        }
    }
}

#[derive(Default)]
struct Assembly {
    blocks: Vec<Option<BlockRef>>,
    received: usize,
    expected: Option<usize>,
}

#[allow(clippy::too_many_arguments)]
fn collect(
    vol: &Volume,
    items: &[Item],
    always: bool,
    msgs: &Receiver<Msg>,
    progress: &Progress,
    stats: &mut IngestStats,
    cache: &mut ImportCache,
    committed: &mut Vec<Version>,
) -> Result<()> {
    let mut open: HashMap<usize, Assembly> = HashMap::new();
    let mut ready: Vec<(usize, Vec<BlockRef>)> = Vec::new();
    let (mut ready_bytes, mut since) = (0u64, Instant::now());
    let mut known_dirs = HashSet::new();
    for msg in msgs.iter() {
        let item = match msg {
            Msg::Failed(e) => return Err(e),
            Msg::Block { item, seq, block, stored } => {
                let a = open.entry(item).or_default();
                if a.blocks.len() <= seq {
                    a.blocks.resize(seq + 1, None);
                }
                a.blocks[seq] = Some(block);
                a.received += 1;
                stats.bytes_read += block.len as u64;
                progress.inc(block.len as u64);
                if stored > 0 {
                    stats.new_blocks += 1;
                    stats.new_block_bytes += stored;
                }
                item
            }
            Msg::Done { item, blocks } => {
                open.entry(item).or_default().expected = Some(blocks);
                item
            }
        };
        let complete = open.get(&item).is_some_and(|a| a.expected == Some(a.received));
        if complete {
            let a = open.remove(&item).unwrap_or_default();
            let blocks: Vec<BlockRef> = a.blocks.into_iter().flatten().collect();
            ready_bytes += blocks.iter().map(|b| b.len as u64).sum::<u64>();
            ready.push((item, blocks));
        }
        if ready.len() >= BATCH_FILES
            || ready_bytes >= BATCH_BYTES
            || (!ready.is_empty() && since.elapsed() >= BATCH_TIME)
        {
            commit_batch(vol, items, std::mem::take(&mut ready), always, stats, cache, &mut known_dirs, committed)?;
            (ready_bytes, since) = (0, Instant::now());
        }
    }
    if !open.is_empty() {
        return Err(Error::Internal("import stopped before every file was stored".into()));
    }
    commit_batch(vol, items, ready, always, stats, cache, &mut known_dirs, committed)
}

#[allow(clippy::too_many_arguments)]
fn commit_batch(
    vol: &Volume,
    items: &[Item],
    ready: Vec<(usize, Vec<BlockRef>)>,
    always: bool,
    stats: &mut IngestStats,
    cache: &mut ImportCache,
    known_dirs: &mut HashSet<VolPath>,
    committed: &mut Vec<Version>,
) -> Result<()> {
    if ready.is_empty() {
        return Ok(());
    }
    let mut changes = Vec::with_capacity(ready.len());
    for (i, blocks) in &ready {
        let item = &items[*i];
        tree::check_parents(vol, &item.dest, known_dirs)?;
        if matches!(item.source, Source::Dir) {
            known_dirs.insert(item.dest.clone());
        }
        changes.push((item.dest.clone(), move |head: Option<&Version>| make_version(vol, item, blocks, head, always)));
    }
    let n = ready.len() as u64;
    let done = vol.commit(changes)?;
    stats.committed += done.len() as u64;
    stats.unchanged += n - done.len() as u64;
    for (i, _) in &ready {
        if let Some(id) = &items[*i].ident {
            cache.record(vol, &items[*i].dest, *id);
        }
    }
    if always {
        // `write` reports its version; an import only counts them.
        committed.extend(done);
    }
    Ok(())
}

/// The new version of `item.dest` given its current head, or `None` if nothing changed.
fn make_version(
    vol: &Volume,
    item: &Item,
    blocks: &[BlockRef],
    head: Option<&Version>,
    always: bool,
) -> Result<Option<Version>> {
    let live = head.filter(|h| h.is_live());
    let kind = match item.source {
        Source::File { .. } | Source::Stdin | Source::Open { .. } => Kind::File,
        Source::Symlink(_) => Kind::Symlink,
        Source::Dir => Kind::Dir,
    };
    match live.map(|h| h.kind) {
        Some(Kind::Dir) if kind != Kind::Dir => return Err(Error::IsDirectory(item.dest.to_string())),
        Some(k) if k != Kind::Dir && kind == Kind::Dir => return Err(Error::NotDirectory(item.dest.to_string())),
        None if kind != Kind::Dir && tree::has_live_descendant(vol, &item.dest)? => {
            return Err(Error::IsDirectory(item.dest.to_string()))
        }
        _ => {}
    }
    let mut v = vol.new_version(&item.dest, kind, head);
    v.mode = item.mode;
    v.mtime = item.mtime;
    v.blocks = blocks.to_vec();
    v.size = blocks.iter().map(|b| b.len as u64).sum();
    if let Source::Symlink(t) = &item.source {
        v.target = Some(t.clone());
    }
    let same = live.is_some_and(|h| {
        h.kind == v.kind && h.blocks == v.blocks && h.mode == v.mode && h.mtime == v.mtime && h.target == v.target
    });
    Ok((always || !same).then_some(v))
}

/// First line of the import cache; a cache with another header is ignored (rebuilt).
const CACHE_HEADER: &str = "globofs-import-cache 3";

/// The import cache (`local/state/import-cache`): for each imported path, the identity of
/// its source entry and of the `latest` manifest that import produced. A source whose
/// identity is unchanged, imported to a path whose `latest` is unchanged, is skipped unread.
#[derive(Default)]
struct ImportCache {
    entries: HashMap<String, (SourceIdent, (u64, i128))>,
    dirty: bool,
}

fn latest_ident(vol: &Volume, dest: &VolPath) -> Option<(u64, i128)> {
    let m = fs::metadata(vol.versions_dir(dest).join(layout::LATEST)).ok()?;
    Some((m.ino(), m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128))
}

impl ImportCache {
    /// Loads the cache; a missing or damaged cache is empty (it only saves work).
    fn load(path: &Path) -> ImportCache {
        let mut c = ImportCache::default();
        let Ok(text) = fs::read_to_string(path) else { return c };
        let mut lines = text.lines();
        if lines.next() != Some(CACHE_HEADER) {
            return c;
        }
        for line in lines {
            let f: Vec<&str> = line.splitn(9, ' ').collect();
            let num = |i: usize| f.get(i).and_then(|s| s.parse::<i128>().ok());
            if let (Some(dev), Some(ino), Some(size), Some(mt), Some(ct), Some(mode), Some(lino), Some(lmt), Some(p)) =
                (num(0), num(1), num(2), num(3), num(4), num(5), num(6), num(7), f.get(8))
            {
                let id = SourceIdent {
                    dev: dev as u64,
                    ino: ino as u64,
                    size: size as u64,
                    mtime_ns: mt,
                    ctime_ns: ct,
                    mode: mode as u32,
                };
                c.entries.insert(p.to_string(), (id, (lino as u64, lmt)));
            }
        }
        c
    }

    fn unchanged(&self, vol: &Volume, dest: &VolPath, src: &SourceIdent) -> bool {
        match self.entries.get(&dest.to_text()) {
            Some((id, latest)) if id == src => latest_ident(vol, dest) == Some(*latest),
            _ => false,
        }
    }

    /// Records `src` as imported to `dest` (racy sources have no identity to record).
    fn record(&mut self, vol: &Volume, dest: &VolPath, src: SourceIdent) {
        if let Some(l) = latest_ident(vol, dest) {
            self.entries.insert(dest.to_text(), (src, l));
            self.dirty = true;
        }
    }

    /// Merges with what other processes saved meanwhile and writes atomically.
    fn save(&self, vol: &Volume) -> Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let path = vol.layout().import_cache();
        let _lock = vol.lock()?;
        let mut merged = ImportCache::load(&path);
        merged.entries.extend(self.entries.iter().map(|(k, v)| (k.clone(), *v)));
        let mut out = format!("{CACHE_HEADER}\n");
        for (p, (s, (lino, lmt))) in &merged.entries {
            let (d, i, sz, mt, ct, m) = (s.dev, s.ino, s.size, s.mtime_ns, s.ctime_ns, s.mode);
            out.push_str(&format!("{d} {i} {sz} {mt} {ct} {m} {lino} {lmt} {p}\n"));
        }
        fsio::write_atomic(&path, out.as_bytes(), Durability::Deferred)
    }
}
