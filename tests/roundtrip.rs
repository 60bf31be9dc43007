//! Round trips and deduplication: every version ever committed reads back byte-identical
//! (proptest over random contents and edit sequences, CDC and fixed-size chunking), identical
//! content costs no new block files, an insertion near the start of a large file costs only a
//! few blocks with CDC (and nearly all of them with fixed-size blocks), and block files are
//! plain gzip named by the SHA-256 of their content.

use crate::util::*;
use globofs::config::{ChunkMethod, Chunking};
use globofs::paths::VolPath;
use globofs::volume::Volume;
use globofs::{export, ingest, verify};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;
/// Largest content the proptest starts from.
const MAX_INITIAL: usize = 300 * KIB;

// ---------------------------------------------------------------------------------------
// Content and edit generators
// ---------------------------------------------------------------------------------------

/// A run of bytes: random (incompressible, unique), repetitive (a short pattern repeated,
/// compressible and full of equal blocks), or a single byte repeated.
#[derive(Clone, Debug)]
enum Segment {
    Random { len: usize, seed: u64 },
    Pattern { len: usize, pattern: Vec<u8> },
    Fill { len: usize, byte: u8 },
}

impl Segment {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Segment::Random { len, seed } => noise(*len, *seed),
            Segment::Pattern { len, pattern } => pattern.iter().copied().cycle().take(*len).collect(),
            Segment::Fill { len, byte } => vec![*byte; *len],
        }
    }
}

fn segment(max_len: usize) -> impl Strategy<Value = Segment> {
    prop_oneof![
        3 => (0..=max_len, any::<u64>()).prop_map(|(len, seed)| Segment::Random { len, seed }),
        2 => (0..=max_len, prop::collection::vec(any::<u8>(), 1..40))
            .prop_map(|(len, pattern)| Segment::Pattern { len, pattern }),
        1 => (0..=max_len, any::<u8>()).prop_map(|(len, byte)| Segment::Fill { len, byte }),
    ]
}

/// File content up to [`MAX_INITIAL`] bytes, mixing random and repetitive runs.
fn content() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(segment(128 * KIB), 0..5).prop_map(|segs| {
        let mut v: Vec<u8> = segs.iter().flat_map(|s| s.bytes()).collect();
        v.truncate(MAX_INITIAL);
        v
    })
}

/// An edit of a file. Positions are fractions (per mille) of the current length, so every
/// edit applies to any content.
#[derive(Clone, Debug)]
enum Edit {
    Insert {
        at: u32,
        data: Segment,
    },
    Delete {
        at: u32,
        len: usize,
    },
    Overwrite {
        at: u32,
        data: Segment,
    },
    Truncate {
        to: u32,
    },
    Append {
        data: Segment,
    },
    /// Replace everything (includes the empty file).
    Replace {
        data: Segment,
    },
}

fn edit() -> impl Strategy<Value = Edit> {
    let at = 0..=1000u32;
    prop_oneof![
        3 => (at.clone(), segment(24 * KIB)).prop_map(|(at, data)| Edit::Insert { at, data }),
        2 => (at.clone(), 0..=64 * KIB).prop_map(|(at, len)| Edit::Delete { at, len }),
        2 => (at.clone(), segment(64 * KIB)).prop_map(|(at, data)| Edit::Overwrite { at, data }),
        1 => at.prop_map(|to| Edit::Truncate { to }),
        2 => segment(96 * KIB).prop_map(|data| Edit::Append { data }),
        1 => segment(64 * KIB).prop_map(|data| Edit::Replace { data }),
    ]
}

fn pos(at: u32, len: usize) -> usize {
    (len as u64 * at as u64 / 1000) as usize
}

impl Edit {
    fn apply(&self, old: &[u8]) -> Vec<u8> {
        let mut v = old.to_vec();
        match self {
            Edit::Insert { at, data } => {
                let p = pos(*at, v.len());
                v.splice(p..p, data.bytes());
            }
            Edit::Delete { at, len } => {
                let p = pos(*at, v.len());
                let end = (p + len).min(v.len());
                v.drain(p..end);
            }
            Edit::Overwrite { at, data } => {
                let p = pos(*at, v.len());
                let d = data.bytes();
                let end = (p + d.len()).min(v.len());
                v.splice(p..end, d);
            }
            Edit::Truncate { to } => v.truncate(pos(*to, v.len())),
            Edit::Append { data } => v.extend(data.bytes()),
            Edit::Replace { data } => v = data.bytes(),
        }
        v
    }
}

// ---------------------------------------------------------------------------------------
// Round trip through the library
// ---------------------------------------------------------------------------------------

const PATHS: [&str; 3] = ["a.bin", "dir/b.bin", "dir/sub/versions"];

fn vpath(s: &str) -> VolPath {
    VolPath::parse(s.as_bytes()).expect("valid path")
}

fn read_all(vol: &Volume, v: &globofs::manifest::Version) -> Vec<u8> {
    let mut out = Vec::new();
    export::read_version(vol, v, &mut out).unwrap_or_else(|e| panic!("read {}@{}: {e}", v.path, v.id));
    out
}

/// Imports `initial` contents and then each edit, one version per step, and checks that
/// the head and every version in every history read back as the content it was made from.
fn check_roundtrip(chunking: Chunking, initial: &[Vec<u8>], steps: &[(usize, Edit)]) -> Result<(), TestCaseError> {
    let tmp = tempfile::tempdir().expect("tempdir");
    let vol = Volume::init(&tmp.path().join("vol"), Some("rt".into()), chunking).expect("init");
    let src_dir = tmp.path().join("src");
    std::fs::create_dir(&src_dir).expect("mkdir src");
    // Model: every version id of each path → the content it was made from.
    let mut model: Vec<BTreeMap<String, Vec<u8>>> = vec![BTreeMap::new(); PATHS.len()];
    let mut current: Vec<Option<Vec<u8>>> = vec![None; PATHS.len()];
    let mut n = 0usize;
    let mut commit =
        |idx: usize, data: Vec<u8>, model: &mut Vec<BTreeMap<String, Vec<u8>>>| -> Result<(), TestCaseError> {
            // A fresh source file per step: no import-cache shortcut can apply.
            let src = src_dir.join(format!("v{n}"));
            n += 1;
            std::fs::write(&src, &data).expect("write source");
            let dest = vpath(PATHS[idx]);
            let stats =
                ingest::import(&vol, &src, &dest, false).map_err(|e| TestCaseError::fail(format!("import: {e}")))?;
            prop_assert_eq!(stats.committed + stats.unchanged, 1, "{:?}", stats);
            prop_assert_eq!(stats.bytes_read, data.len() as u64);
            let head = vol.head(&dest).expect("head").expect("a head after import");
            prop_assert_eq!(head.size, data.len() as u64);
            match model[idx].get(head.id.as_str()) {
                // No new version: only allowed when nothing changed.
                Some(old) => {
                    prop_assert!(*old == data && stats.committed == 0, "head did not move although content changed")
                }
                None => {
                    prop_assert_eq!(stats.committed, 1);
                    model[idx].insert(head.id.as_str().to_string(), data.clone());
                }
            }
            let _ = std::fs::remove_file(&src);
            Ok(())
        };
    for (idx, data) in initial.iter().enumerate() {
        commit(idx, data.clone(), &mut model)?;
        current[idx] = Some(data.clone());
    }
    for (idx, e) in steps {
        let idx = idx % PATHS.len();
        let next = e.apply(current[idx].as_deref().unwrap_or_default());
        commit(idx, next.clone(), &mut model)?;
        current[idx] = Some(next);
    }
    // Re-open, as another process would.
    let vol = Volume::open(&tmp.path().join("vol")).expect("reopen");
    for (idx, p) in PATHS.iter().enumerate() {
        let path = vpath(p);
        let Some(last) = &current[idx] else {
            prop_assert!(vol.head(&path).expect("head").is_none());
            continue;
        };
        let head = export::resolve(&vol, &path, None).map_err(|e| TestCaseError::fail(format!("resolve {p}: {e}")))?;
        prop_assert!(read_all(&vol, &head) == *last, "head of {} differs from the last content", p);
        let hist = vol.history(&path).expect("history");
        let ids: BTreeSet<String> = hist.iter().map(|v| v.id.as_str().to_string()).collect();
        let want: BTreeSet<String> = model[idx].keys().cloned().collect();
        prop_assert_eq!(&ids, &want, "history of {} is not the versions committed", p);
        prop_assert_eq!(ids.len(), hist.len(), "duplicate ids in the history of {}", p);
        prop_assert_eq!(hist[0].id.as_str(), head.id.as_str(), "history of {} is not newest first", p);
        for v in &hist {
            let got = read_all(&vol, v);
            let want = &model[idx][v.id.as_str()];
            prop_assert!(
                got == *want,
                "{}@{}: {} bytes read, {} expected (content differs)",
                p,
                v.id,
                got.len(),
                want.len()
            );
            // By id, as `read PATH@ID` resolves it.
            let by_id = export::resolve(&vol, &path, Some(v.id.as_str())).expect("resolve by id");
            prop_assert_eq!(&by_id.blocks, &v.blocks);
        }
        // Export of the head writes the same bytes.
        let out = tmp.path().join(format!("out{idx}"));
        export::export(&vol, &path, None, &out, false).map_err(|e| TestCaseError::fail(format!("export {p}: {e}")))?;
        prop_assert!(std::fs::read(&out).expect("read export") == *last, "export of {} differs", p);
    }
    let report = verify::verify(&vol, false).expect("verify");
    prop_assert!(report.problems.is_empty(), "verify: {:?}", report.problems);
    Ok(())
}

fn case() -> impl Strategy<Value = (Vec<Vec<u8>>, Vec<(usize, Edit)>)> {
    (prop::collection::vec(content(), 1..=PATHS.len()), prop::collection::vec((0..PATHS.len(), edit()), 1..10))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, max_shrink_iters: 64, ..ProptestConfig::default() })]

    /// CDC with 64 KiB average blocks: every version of every path reads back exactly.
    #[test]
    fn every_version_reads_back_cdc((initial, steps) in case()) {
        check_roundtrip(Chunking::new(ChunkMethod::Cdc, 64 << 10).unwrap(), &initial, &steps)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, max_shrink_iters: 64, ..ProptestConfig::default() })]

    /// The same with fixed-size 64 KiB blocks.
    #[test]
    fn every_version_reads_back_fixed((initial, steps) in case()) {
        check_roundtrip(Chunking::new(ChunkMethod::Fixed, 64 << 10).unwrap(), &initial, &steps)?;
    }
}

/// The same round trip through the binary: `write` from stdin, ids from `log --json`,
/// `read PATH@ID` for each.
#[test]
fn every_version_reads_back_through_the_cli() {
    let v = TestVolume::new(&["--block-size", "64K"]);
    let mut want: HashMap<String, Vec<u8>> = HashMap::new();
    let mut data = noise(200 * KIB, 11);
    data.extend(b"abc".repeat(30_000));
    let mut last = Vec::new();
    for i in 0..6u64 {
        match i {
            0 => {}
            1 => data.splice(1000..1000, noise(777, 12)).for_each(drop),
            2 => data.truncate(150 * KIB),
            3 => data.extend(noise(100 * KIB, 13)),
            4 => data.clear(),
            _ => data = noise(70 * KIB, 14),
        }
        let id = v.write("f/x.dat", &data);
        assert!(want.insert(id.clone(), data.clone()).is_none(), "id {id} reused");
        last = data.clone();
    }
    assert_eq!(v.read("f/x.dat"), last);
    let log: serde_json::Value = serde_json::from_slice(&v.ok(&["--json", "log", "f/x.dat"])).expect("log --json");
    let items = log.as_array().expect("log is a list");
    let ids: BTreeSet<String> = items.iter().map(|i| i["version"].as_str().expect("version").to_string()).collect();
    assert_eq!(ids, want.keys().cloned().collect::<BTreeSet<_>>(), "log lists exactly the versions written");
    assert_eq!(items.iter().filter(|i| i["head"] == true).count(), 1);
    for (id, content) in &want {
        assert_eq!(&v.read(&format!("f/x.dat@{id}")), content, "f/x.dat@{id}");
    }
    assert!(v.run(&["verify"]).status.success());
}

// ---------------------------------------------------------------------------------------
// Deduplication
// ---------------------------------------------------------------------------------------

/// Total bytes of block files in the volume.
fn stored_bytes(vol: &Path) -> u64 {
    walkdir::WalkDir::new(vol.join("local/hashes"))
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum()
}

fn import_json(v: &TestVolume, src: &Path, dest: &str) -> serde_json::Value {
    let out = v.ok(&["--json", "import", src.to_str().expect("utf-8 temp path"), dest]);
    serde_json::from_slice(&out).expect("import --json")
}

fn write_file(p: &Path, data: &[u8]) -> PathBuf {
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    std::fs::write(p, data).expect("write source");
    p.to_path_buf()
}

#[test]
fn same_file_under_a_second_name_adds_no_blocks() {
    let v = TestVolume::new(&[]);
    let src = write_file(&v.scratch("src").join("big"), &noise(3 * MIB, 21));
    import_json(&v, &src, "one");
    let (blocks, bytes) = (v.block_count(), stored_bytes(&v.dir));
    assert!(blocks >= 6, "3 MiB at 128 KiB blocks should make several blocks, got {blocks}");
    let stats = import_json(&v, &src, "two/copy");
    assert_eq!(v.block_count(), blocks, "second copy added block files");
    assert_eq!(stored_bytes(&v.dir), bytes);
    assert_eq!(stats["new_blocks"], 0);
    assert_eq!(stats["committed"], 1);
    // The same content written through stdin under a third name: no new blocks either.
    v.write("three", &noise(3 * MIB, 21));
    assert_eq!(v.block_count(), blocks);
    for p in ["one", "two/copy", "three"] {
        assert!(v.read(p) == noise(3 * MIB, 21), "{p} reads back differently");
    }
}

fn small_tree(root: &Path) {
    for i in 0..12u64 {
        let sub = if i % 3 == 0 {
            "d1/"
        } else if i % 3 == 1 {
            "d2/e/"
        } else {
            ""
        };
        let len = 1000 + (i as usize * 37_000) % 300_000;
        write_file(&root.join(format!("{sub}f{i}")), &noise(len, 100 + i));
    }
    write_file(&root.join("d1/text"), &b"the same line again\n".repeat(20_000));
}

#[test]
fn reimporting_a_tree_adds_no_blocks() {
    let v = TestVolume::new(&["--block-size", "64K"]);
    let src = v.scratch("tree");
    small_tree(&src);
    let first = import_json(&v, &src, "t1");
    assert!(first["new_blocks"].as_u64().unwrap() > 0);
    let blocks = v.block_count();
    // Again to the same place: nothing new at all.
    let again = import_json(&v, &src, "t1");
    assert_eq!(again["committed"], 0, "{again}");
    assert_eq!(v.block_count(), blocks);
    // To another place: new versions, but every block is already there.
    let other = import_json(&v, &src, "t2");
    assert!(other["committed"].as_u64().unwrap() >= 13, "{other}");
    assert_eq!(other["new_blocks"], 0, "{other}");
    assert_eq!(v.block_count(), blocks, "re-importing the tree elsewhere added block files");
    let out = v.scratch("out");
    v.ok(&["export", "t2", out.join("t2").to_str().unwrap()]);
    assert_same_tree(&src, &out.join("t2"));
}

/// Imports an 8 MiB pseudo-random file, then the same with 11 bytes inserted at offset 1000.
/// Returns (blocks before, new block files, stored bytes before, stored bytes added).
fn insertion_cost(init_args: &[&str]) -> (usize, usize, u64, u64) {
    let v = TestVolume::new(init_args);
    let data = noise(8 * MIB, 31);
    let src = write_file(&v.scratch("src").join("big"), &data);
    import_json(&v, &src, "big");
    let (blocks, bytes) = (v.block_count(), stored_bytes(&v.dir));
    let mut edited = data.clone();
    edited.splice(1000..1000, b"a few bytes".iter().copied());
    // A different source file, so the import cache cannot be involved.
    let src2 = write_file(&v.scratch("src2").join("big"), &edited);
    let stats = import_json(&v, &src2, "big");
    assert_eq!(stats["committed"], 1);
    let added = v.block_count() - blocks;
    assert_eq!(stats["new_blocks"].as_u64().unwrap() as usize, added, "{stats}");
    assert!(v.read("big") == edited, "edited file reads back differently");
    // (Older versions reading back is the proptest's business; 8 MiB reads are slow in debug.)
    let log: serde_json::Value = serde_json::from_slice(&v.ok(&["--json", "log", "big"])).expect("log --json");
    assert_eq!(log.as_array().map(|a| a.len()), Some(2), "two versions of big: {log}");
    (blocks, added, bytes, stored_bytes(&v.dir) - bytes)
}

#[test]
fn cdc_insertion_near_start_adds_few_blocks_fixed_adds_many() {
    let (blocks, added, bytes, grown) = insertion_cost(&["--block-size", "64K"]);
    println!("cdc: {blocks} blocks, insertion added {added} blocks, {grown} of {bytes} bytes");
    assert!(blocks >= 64, "8 MiB at 64 KiB average should be ~128 blocks, got {blocks}");
    assert!(added <= 4, "CDC: an insertion of 11 bytes added {added} blocks");
    assert!(grown * 10 < bytes, "CDC: stored bytes grew by {grown} of {bytes} (>= 10%)");

    // Fixed-size blocks: every block after the insertion shifts, so nearly all are new.
    // This is why CDC is the default.
    let (fblocks, fadded, fbytes, fgrown) = insertion_cost(&["--chunking", "fixed", "--block-size", "64K"]);
    println!("fixed: {fblocks} blocks, insertion added {fadded} blocks, {fgrown} of {fbytes} bytes");
    assert_eq!(fblocks, 128);
    assert!(fadded >= 126, "fixed: expected nearly every block to change, {fadded} did");
    assert!(fadded >= 10 * added.max(1), "fixed ({fadded}) should cost far more than CDC ({added})");
    assert!(fgrown * 10 > fbytes * 9, "fixed: stored bytes grew by only {fgrown} of {fbytes}");
}

// ---------------------------------------------------------------------------------------
// Block files
// ---------------------------------------------------------------------------------------

/// Every block file: (path, id from its name, decompressed content).
fn block_files(vol: &Path) -> Vec<(PathBuf, String, Vec<u8>)> {
    let hashes = vol.join("local/hashes");
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(&hashes).sort_by_file_name() {
        let e = e.expect("walk hashes");
        if !e.file_type().is_file() {
            continue;
        }
        let rel: Vec<String> =
            e.path().strip_prefix(&hashes).unwrap().iter().map(|c| c.to_str().unwrap().to_string()).collect();
        assert_eq!(rel.len(), 3, "block file not at ab/cd/<rest>.gz: {rel:?}");
        assert!(rel[0].len() == 2 && rel[1].len() == 2, "bad fan-out dirs: {rel:?}");
        let rest = rel[2].strip_suffix(".gz").unwrap_or_else(|| panic!("block file without .gz: {rel:?}"));
        let name = format!("{}{}{}", rel[0], rel[1], rest);
        let gz = std::fs::read(e.path()).expect("read block");
        let mut data = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut data)
            .unwrap_or_else(|err| panic!("{}: not gzip: {err}", e.path().display()));
        out.push((e.path().to_path_buf(), name, data));
    }
    out
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn block_files_are_gzip_named_by_sha256() {
    let v = TestVolume::new(&["--chunking", "fixed", "--block-size", "64K"]);
    let src = v.scratch("src");
    write_file(&src.join("random"), &noise(5 * 64 * KIB + 123, 41));
    let mut line = b"compressible text ".to_vec();
    line.resize(31, b'.');
    line.push(b'\n');
    write_file(&src.join("text"), &line.repeat(8000));
    import_json(&v, &src, "s");
    let blocks = block_files(&v.dir);
    // random: 5 full blocks + a tail; text: 256000 bytes = 3 full blocks + a tail, and the
    // full text blocks are identical (the 32-byte line divides 64 KiB), so stored once.
    assert_eq!(blocks.len(), 6 + 2, "{:?}", blocks.iter().map(|b| b.2.len()).collect::<Vec<_>>());
    let random = noise(5 * 64 * KIB + 123, 41);
    let mut random_blocks = 0;
    for (path, name, data) in &blocks {
        assert_eq!(name.len(), 64);
        assert_eq!(&sha256_hex(data), name, "{} does not hash to its name", path.display());
        let gz_len = std::fs::metadata(path).unwrap().len() as usize;
        if random.chunks(64 * KIB).any(|c| c == &data[..]) {
            random_blocks += 1;
            // Random data is stored, not deflated: the gzip is no smaller than the block (and
            // only gzip's framing larger).
            assert!(
                gz_len >= data.len() && gz_len <= data.len() + 64,
                "{}: random block of {} bytes stored in {gz_len}",
                path.display(),
                data.len()
            );
        } else {
            assert!(
                gz_len * 4 < data.len(),
                "{}: text block of {} bytes not compressed ({gz_len})",
                path.display(),
                data.len()
            );
        }
    }
    assert_eq!(random_blocks, 6);
    // The whole file is the concatenation of its blocks, in the manifest's order.
    assert!(v.read("s/random") == random);
}
