//! Micro-benchmarks of the globofs engine: throughput of each stage of the write path
//! (chunking, SHA-256, compression, the three together), of the read path (inflate and
//! hash-check), and of an end-to-end import and read through a real volume.
//!
//! # Running
//!
//! ```text
//! cargo bench --bench engine                      # everything, 64 MiB inputs
//! cargo bench --bench engine -- compress          # only lines whose stage or input match
//! cargo bench --bench engine -- text import       # several filters: a line runs if any matches
//! GLOBOFS_BENCH_MB=256 cargo bench --bench engine # bigger inputs (default 64)
//! ```
//!
//! A filter is a substring of the stage name (`chunk`, `sha256`, `compress`, `pipeline`,
//! `decode`, `import`, `read`), of the input name (`random`, `text`, `dup`), or of
//! `stage/input` (e.g. `decode/text`).
//!
//! # Inputs
//!
//! All inputs are generated from fixed seeds, so every run sees the same bytes:
//!
//! * `random`: xorshift noise; incompressible, so `encode` stores it (gzip level 0).
//! * `text`: words from a small vocabulary with varying punctuation, numbers and line
//!   lengths; compresses like prose or source code.
//! * `dup`: a 1 MiB pattern (half noise, half text) repeated, each copy with two small
//!   mutations; most blocks are duplicates, as in backups or VM images.
//!
//! # Stages
//!
//! * `chunk`: [`Chunker`] over the bytes with the default [`Chunking`].
//! * `sha256`: [`BlockId::of`] over every block.
//! * `compress`: [`blocks::encode`] of every block at [`DEFAULT_COMPRESSION`].
//! * `pipeline`: chunk, hash and compress in one pass, one thread.
//! * `decode`: [`blocks::decode_checked`] of every encoded block (inflate plus hash check,
//!   the per-block cost of the read path).
//! * `import`: [`ingest::import`] of a temp file into a fresh volume (all threads, block
//!   writes, manifest commit and its `syncfs`). [`Volume::init`] is not timed.
//! * `read`: [`export::resolve`] plus [`export::read_version`] of that file into
//!   [`std::io::sink`] (block files come from the page cache).
//!
//! Each line reports the best of a few repetitions as MiB/s of *uncompressed* input,
//! followed by the bytes processed per repetition. Temp volumes go under `$TMPDIR`; the
//! import numbers depend on that filesystem, and on whatever else is writing to it, since
//! a commit syncs the whole filesystem.
//!
//! # Before/after workflow
//!
//! Throughput varies a lot between machines and with load, so only compare numbers taken
//! on the same machine, in one sitting, with nothing else heavy running:
//!
//! ```text
//! git stash            # or check out main
//! cargo bench --bench engine > /tmp/before.txt
//! git stash pop        # or check out the change
//! cargo bench --bench engine > /tmp/after.txt
//! diff -y /tmp/before.txt /tmp/after.txt
//! ```
//!
//! Run each side twice if a difference is under about 5%: that is within run-to-run noise.
//! Use a filter and a larger `GLOBOFS_BENCH_MB` to look closely at the stage a change
//! targets.

use globofs::blocks;
use globofs::chunker::Chunker;
use globofs::config::{Chunking, DEFAULT_COMPRESSION};
use globofs::export;
use globofs::ids::BlockId;
use globofs::ingest;
use globofs::paths::VolPath;
use globofs::volume::Volume;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Every timed stage runs at least this many times...
const MIN_RUNS: usize = 2;
/// ...and at most this many...
const MAX_RUNS: usize = 10;
/// ...stopping early once the runs together took this long.
const TIME_BUDGET: Duration = Duration::from_millis(1000);

const MIB: f64 = (1 << 20) as f64;

/// A deterministic xorshift64 generator.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `0..n`.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let r = self.next().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
    }
}

/// Makes `len` bytes of one kind of input from a seed.
type Generator = fn(usize, u64) -> Vec<u8>;

fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut out = vec![0u8; len];
    XorShift(seed).fill(&mut out);
    out
}

const WORDS: &[&str] = &[
    "the",
    "block",
    "store",
    "version",
    "of",
    "a",
    "file",
    "is",
    "kept",
    "under",
    "its",
    "hash",
    "and",
    "every",
    "change",
    "makes",
    "new",
    "manifest",
    "volume",
    "directory",
    "peer",
    "log",
    "append",
    "only",
    "read",
    "write",
    "import",
    "export",
    "chunk",
    "boundary",
    "content",
    "defined",
    "compression",
    "level",
    "deduplicated",
    "sync",
    "node",
    "commit",
    "latest",
    "history",
    "path",
    "mode",
    "time",
    "size",
    "bytes",
    "fn",
    "let",
    "mut",
    "return",
    "struct",
    "impl",
    "match",
    "Some",
    "None",
    "Ok",
    "Err",
    "self",
    "vec",
    "String",
    "u64",
];

/// Text-like bytes: words with varying punctuation, numbers, capitals and line lengths.
fn text_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = XorShift(seed);
    let mut out = Vec::with_capacity(len + 64);
    let mut line = 0usize;
    while out.len() < len {
        let r = rng.next();
        let word = WORDS[(r % WORDS.len() as u64) as usize].as_bytes();
        if r >> 60 == 0 {
            // A capitalised word now and then.
            out.push(word[0].to_ascii_uppercase());
            out.extend_from_slice(&word[1..]);
        } else {
            out.extend_from_slice(word);
        }
        match (r >> 32) % 23 {
            0 => out.extend_from_slice(b", "),
            1 => out.extend_from_slice(b". "),
            2 => out.extend_from_slice(format!(" {} ", (r >> 40) % 100_000).as_bytes()),
            3 => out.extend_from_slice(b"(); "),
            _ => out.push(b' '),
        }
        line += word.len() + 1;
        if line > 40 + ((r >> 20) % 60) as usize {
            out.push(b'\n');
            line = 0;
        }
    }
    out.truncate(len);
    out
}

/// A 1 MiB pattern (alternating 64 KiB runs of noise and text) repeated up to `len`,
/// each copy with two 16-byte mutations at random places.
fn dup_bytes(len: usize, seed: u64) -> Vec<u8> {
    const PATTERN: usize = 1 << 20;
    const RUN: usize = 64 << 10;
    let noise = random_bytes(PATTERN / 2, seed);
    let text = text_bytes(PATTERN / 2, seed ^ 0x5555);
    let mut pattern = Vec::with_capacity(PATTERN);
    for (n, t) in noise.chunks(RUN).zip(text.chunks(RUN)) {
        pattern.extend_from_slice(n);
        pattern.extend_from_slice(t);
    }
    let mut rng = XorShift(seed ^ 0xdead_beef);
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let start = out.len();
        out.extend_from_slice(&pattern);
        for _ in 0..2 {
            let at = start + rng.below(PATTERN - 16);
            rng.fill(&mut out[at..at + 16]);
        }
    }
    out.truncate(len);
    out
}

/// Runs `f` a few times; returns the best time and the last result.
fn time<T>(mut f: impl FnMut() -> T) -> (Duration, T) {
    let started = Instant::now();
    let mut best = Duration::MAX;
    let mut last = None;
    for run in 0..MAX_RUNS {
        let t = Instant::now();
        let r = black_box(f());
        best = best.min(t.elapsed());
        last = Some(r);
        if run + 1 >= MIN_RUNS && started.elapsed() >= TIME_BUDGET {
            break;
        }
    }
    (best, last.expect("at least one run"))
}

struct Report {
    filters: Vec<String>,
}

impl Report {
    fn wants(&self, stage: &str, input: &str) -> bool {
        let both = format!("{stage}/{input}");
        self.filters.is_empty() || self.filters.iter().any(|f| both.contains(f.as_str()))
    }

    fn wants_any(&self, stages: &[&str], input: &str) -> bool {
        stages.iter().any(|s| self.wants(s, input))
    }

    fn line(&self, stage: &str, input: &str, bytes: usize, took: Duration, note: &str) {
        let mibs = bytes as f64 / MIB / took.as_secs_f64();
        println!("{stage:<9} {input:<7} {mibs:>9.1} MiB/s  ({bytes} bytes){note}");
    }
}

fn chunk(data: &[u8], params: &Chunking) -> Vec<Vec<u8>> {
    Chunker::new(data, params, Some(data.len() as u64)).map(|b| b.expect("reading a slice cannot fail")).collect()
}

fn percent(part: usize, whole: usize) -> f64 {
    100.0 * part as f64 / whole.max(1) as f64
}

fn bench_input(report: &Report, input: &str, data: &[u8]) {
    let params = Chunking::default();
    let level = DEFAULT_COMPRESSION;
    let len = data.len();
    let memory = ["chunk", "sha256", "compress", "pipeline", "decode"];
    if report.wants_any(&memory, input) {
        // Inputs for the per-block stages, prepared untimed.
        let blocks = chunk(data, &params);
        let ids: Vec<BlockId> = blocks.iter().map(|b| BlockId::of(b)).collect();
        let encoded: Vec<Vec<u8>> = blocks.iter().map(|b| blocks::encode(b, level).expect("encode")).collect();
        let gz_bytes: usize = encoded.iter().map(Vec::len).sum();

        if report.wants("chunk", input) {
            let (t, n) = time(|| {
                Chunker::new(data, &params, Some(len as u64)).map(|b| b.map(|b| b.len()).unwrap_or(0)).sum::<usize>()
            });
            assert_eq!(n, len);
            report.line("chunk", input, len, t, &format!("  {} blocks", blocks.len()));
        }
        if report.wants("sha256", input) {
            let (t, _) = time(|| {
                for b in &blocks {
                    black_box(BlockId::of(b));
                }
            });
            report.line("sha256", input, len, t, "");
        }
        if report.wants("compress", input) {
            let (t, n) = time(|| blocks.iter().map(|b| blocks::encode(b, level).expect("encode").len()).sum::<usize>());
            report.line("compress", input, len, t, &format!("  gz {:.1}%", percent(n, len)));
        }
        if report.wants("pipeline", input) {
            let (t, n) = time(|| {
                let mut gz = 0;
                for b in Chunker::new(data, &params, Some(len as u64)) {
                    let b = b.expect("reading a slice cannot fail");
                    black_box(BlockId::of(&b));
                    gz += blocks::encode(&b, level).expect("encode").len();
                }
                gz
            });
            report.line("pipeline", input, len, t, &format!("  gz {:.1}%", percent(n, len)));
        }
        if report.wants("decode", input) {
            let (t, n) = time(|| {
                ids.iter()
                    .zip(&encoded)
                    .map(|(id, gz)| blocks::decode_checked(id, gz).expect("block decodes").len())
                    .sum::<usize>()
            });
            assert_eq!(n, len);
            report.line("decode", input, len, t, &format!("  from {gz_bytes} gz bytes"));
        }
    }

    if report.wants_any(&["import", "read"], input) {
        let scratch = tempfile::tempdir().expect("temp dir");
        let src = scratch.path().join(format!("{input}.bin"));
        std::fs::write(&src, data).expect("write bench input");
        let dest = VolPath::parse(format!("bench/{input}.bin").as_bytes()).expect("valid path");
        // Each import goes to a fresh volume, so that no block is already stored.
        let mut n = 0;
        let fresh_volume = |n: &mut usize| {
            *n += 1;
            let dir = scratch.path().join(format!("vol{n}"));
            Volume::init(&dir, Some("bench".into()), params.clone()).expect("init volume")
        };
        let mut last_vol = None;
        let mut import_time = Duration::MAX;
        let mut stats = None;
        let started = Instant::now();
        let runs = if report.wants("import", input) { MAX_RUNS } else { 1 };
        for run in 0..runs {
            let vol = fresh_volume(&mut n);
            let t = Instant::now();
            let s = ingest::import(&vol, &src, &dest, false).expect("import");
            import_time = import_time.min(t.elapsed());
            stats = Some(s);
            if let Some(old) = last_vol.replace(vol) {
                // Keep the disk footprint to two volumes.
                let _ = std::fs::remove_dir_all(Volume::dir(&old));
            }
            if run + 1 >= MIN_RUNS && started.elapsed() >= TIME_BUDGET {
                break;
            }
        }
        let vol = last_vol.expect("one import ran");
        if report.wants("import", input) {
            let s = stats.expect("one import ran");
            let note =
                format!("  {} new blocks, {:.1}% stored", s.new_blocks, percent(s.new_block_bytes as usize, len));
            report.line("import", input, len, import_time, &note);
        }
        if report.wants("read", input) {
            let (t, size) = time(|| {
                let head = export::resolve(&vol, &dest, None).expect("resolve head");
                export::read_version(&vol, &head, &mut std::io::sink()).expect("read version");
                head.size
            });
            assert_eq!(size, len as u64);
            report.line("read", input, len, t, "");
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench`; anything else not starting with `-` is a filter.
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let mb: usize = match std::env::var("GLOBOFS_BENCH_MB") {
        Ok(v) => match v.trim().parse() {
            Ok(n) if n > 0 => n,
            _ => {
                eprintln!("GLOBOFS_BENCH_MB={v:?}: expected a whole number of MiB, at least 1");
                std::process::exit(2);
            }
        },
        // Under `cargo test` (no `--bench`), a 1 MiB smoke run only checks that it works.
        Err(_) if !std::env::args().any(|a| a == "--bench") => 1,
        Err(_) => 64,
    };
    let len = mb << 20;
    let report = Report { filters };
    let c = Chunking::default();
    println!(
        "globofs engine bench: {mb} MiB inputs, {:?} blocks {}/{}/{} KiB, gzip level {DEFAULT_COMPRESSION}, {} threads, best of {MIN_RUNS}..{MAX_RUNS} runs",
        c.method,
        c.min >> 10,
        c.avg >> 10,
        c.max >> 10,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );
    println!("{:<9} {:<7} {:>15}  (bytes)", "stage", "input", "throughput");

    let started = Instant::now();
    let inputs: [(&str, Generator); 3] = [("random", random_bytes), ("text", text_bytes), ("dup", dup_bytes)];
    for (name, make) in inputs {
        let all = ["chunk", "sha256", "compress", "pipeline", "decode", "import", "read"];
        if !report.wants_any(&all, name) {
            continue;
        }
        let data = make(len, 0x9e37_79b9_7f4a_7c15);
        bench_input(&report, name, &data);
    }
    eprintln!("total {:.1} s", started.elapsed().as_secs_f64());
}
