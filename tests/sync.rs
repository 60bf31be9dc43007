//! Sync between volumes, driven through the real binary: three nodes A, B, C in temp
//! directories, each the other's peer as needed. Covers push and pull on read (multi-block
//! content, blocks landing locally), transitive flow A→B→C and harmless cycles, unreachable
//! peers (renamed away, an empty mount point, another volume at the path), torn log tails and
//! their repair, idempotent pushes, hostile log records (escaping paths, paths under a
//! symlink, bad frame and manifest checksums), blocks that do not match their name, logs from
//! uuids that are not peers and removed peers, hooks, `peer ls`/`status` reporting,
//! concurrent pushes, and `cacheonly` bookkeeping.

use crate::util::*;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Output;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn node(name: &str) -> TestVolume {
    TestVolume::named(name)
}

fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} exited {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_no_panic(out);
}

fn assert_no_panic(out: &Output) {
    let err = text(&out.stderr);
    assert!(!err.contains("panicked") && !err.contains("internal error"), "panic: {err}");
}

/// `x peer add NAME <y>`.
fn add_peer(x: &TestVolume, name: &str, y: &TestVolume) {
    x.ok(&["peer", "add", name, s(&y.dir)]);
}

/// Makes `x` (called `xn`) and `y` (called `yn`) peers of each other.
fn pair(x: &TestVolume, xn: &str, y: &TestVolume, yn: &str) {
    add_peer(x, yn, y);
    add_peer(y, xn, x);
}

/// The node's uuid, from its config.
fn uuid(v: &TestVolume) -> String {
    let t: toml::Table = fs::read_to_string(v.dir.join("local/config")).unwrap().parse().unwrap();
    t["uuid"].as_str().unwrap().to_string()
}

/// Replaces `from` by `to` in the node's config (which must contain `from`).
fn edit_config(v: &TestVolume, from: &str, to: &str) {
    let p = v.dir.join("local/config");
    let t = fs::read_to_string(&p).unwrap();
    assert!(t.contains(from), "config has no {from:?}:\n{t}");
    fs::write(&p, t.replacen(from, to, 1)).unwrap();
}

/// The log directory that node `from` appends into in volume `into`.
fn updates(into: &TestVolume, from: &TestVolume) -> PathBuf {
    into.dir.join("local/upstream").join(uuid(from)).join("updates")
}

/// The `latest` segment that `from` appends into in `into`.
fn log_latest(into: &TestVolume, from: &TestVolume) -> PathBuf {
    updates(into, from).join("latest")
}

/// Push, which must succeed; returns stdout.
fn push(v: &TestVolume) -> String {
    let out = v.run(&["push"]);
    assert_ok(&out, "push");
    text(&out.stdout)
}

/// Asserts push stdout reports `n` versions for `peer`.
fn assert_pushed(stdout: &str, peer: &str, n: usize) {
    assert_eq!(pushed(stdout, peer), n, "push output {stdout:?}");
}

/// The number of versions push reported for `peer` (panics if it is not reported).
fn pushed(stdout: &str, peer: &str) -> usize {
    let prefix = format!("{peer}: ");
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(&prefix)?.strip_suffix(" versions pushed")?.parse().ok())
        .unwrap_or_else(|| panic!("push output {stdout:?} does not report peer {peer}"))
}

fn log_json(v: &TestVolume, path: &str) -> Vec<serde_json::Value> {
    json(&v.ok(&["--json", "log", path])).as_array().unwrap().clone()
}

fn log_ids(v: &TestVolume, path: &str) -> Vec<String> {
    log_json(v, path).iter().map(|e| e["version"].as_str().unwrap().to_string()).collect()
}

/// Newest manifest of a (plain-named) path.
fn manifest(v: &TestVolume, path: &str) -> Vec<u8> {
    fs::read(v.dir.join("local/root").join(path).join("versions/latest")).expect("read manifest")
}

/// Block ids a manifest lists, in order.
fn blocks_of(m: &[u8]) -> Vec<String> {
    text(m).lines().filter_map(|l| l.strip_prefix("block ")).map(|r| r.split(' ').next().unwrap().to_string()).collect()
}

fn field(m: &[u8], key: &str) -> String {
    let prefix = format!("{key} ");
    text(m).lines().find_map(|l| l.strip_prefix(&prefix).map(str::to_string)).unwrap_or_default()
}

/// Where block `hex` is stored in `v`.
fn block_file(v: &TestVolume, hex: &str) -> PathBuf {
    v.dir.join("local/hashes").join(&hex[0..2]).join(&hex[2..4]).join(format!("{}.gz", &hex[4..]))
}

fn sha_hex(b: &[u8]) -> String {
    Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

/// A manifest body (every line but `end`) sealed with its `end <sha256>` line.
fn seal(body: &str) -> Vec<u8> {
    format!("{body}end {}\n", sha_hex(body.as_bytes())).into_bytes()
}

/// The manifest without its `end` line.
fn unseal(m: &[u8]) -> String {
    let t = text(m);
    let cut = t.trim_end_matches('\n').rfind('\n').unwrap() + 1;
    assert!(t[cut..].starts_with("end "), "manifest does not end with `end`: {t}");
    t[..cut].to_string()
}

/// `template` with its path replaced by `path` (text form) and a fresh id, resealed.
fn craft(template: &[u8], path: &str, n: u32) -> Vec<u8> {
    let body = unseal(template);
    let out: Vec<String> = body
        .lines()
        .map(|l| {
            if l.starts_with("path ") {
                format!("path {path}")
            } else if let Some(id) = l.strip_prefix("id ") {
                format!("id {}{n:08x}", &id[..id.len() - 8])
            } else {
                l.to_string()
            }
        })
        .collect();
    seal(&(out.join("\n") + "\n"))
}

/// Frames a payload as a log record.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut r = format!("record {} {}\n", payload.len(), sha_hex(payload)).into_bytes();
    r.extend_from_slice(payload);
    r
}

/// What a log segment holds, parsed independently of the program.
#[derive(Debug)]
struct ParsedLog {
    records: Vec<Vec<u8>>,
    /// Records whose checksum fails.
    bad: usize,
    /// Bytes after the last complete record.
    torn: usize,
}

fn parse_log(bytes: &[u8]) -> ParsedLog {
    let nl = bytes.iter().position(|&b| b == b'\n').expect("log has a header line");
    let header = text(&bytes[..nl]);
    assert!(header.starts_with("globofs-log 1 ") && header.len() > 14, "bad header {header:?}");
    let mut p = ParsedLog { records: vec![], bad: 0, torn: 0 };
    let mut at = nl + 1;
    while at < bytes.len() {
        let rest = &bytes[at..];
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            p.torn = rest.len();
            break;
        };
        let line = text(&rest[..nl]);
        let w: Vec<&str> = line.split(' ').collect();
        assert!(w.len() == 3 && w[0] == "record", "bad frame {line:?}");
        let len: usize = w[1].parse().unwrap();
        let Some(payload) = rest.get(nl + 1..nl + 1 + len) else {
            p.torn = rest.len();
            break;
        };
        if sha_hex(payload) == w[2] {
            p.records.push(payload.to_vec());
        } else {
            p.bad += 1;
        }
        at += nl + 1 + len;
    }
    p
}

fn append(path: &Path, bytes: &[u8]) {
    fs::OpenOptions::new().append(true).open(path).unwrap().write_all(bytes).unwrap();
}

/// Every path below `root` (relative, sorted), `skip` subtrees excluded.
fn tree(root: &Path, skip: &[&Path]) -> BTreeSet<PathBuf> {
    walkdir::WalkDir::new(root)
        .min_depth(1)
        .into_iter()
        .filter_entry(|e| !skip.iter().any(|s| e.path() == *s))
        .filter_map(|e| e.ok())
        .map(|e| e.path().strip_prefix(root).unwrap().to_path_buf())
        .collect()
}

/// A name nothing else uses (for escape canaries in /tmp).
fn unique(tag: &str) -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("globofs-{tag}-{}-{t}", std::process::id())
}

fn warnings(out: &Output) -> usize {
    text(&out.stderr).lines().filter(|l| l.contains("warning")).count()
}

// ---------------------------------------------------------------------------------------
// 1. Push and pull on read
// ---------------------------------------------------------------------------------------

#[test]
fn push_then_read_on_peer_is_identical_and_pulls_blocks_locally() {
    let (a, b) = (node("a"), node("b"));
    pair(&a, "a", &b, "b");
    let data = noise(1 << 20, 11);
    let id = a.write("big", &data);
    let out = push(&a);
    assert_pushed(&out, "b", 1);
    assert_eq!(b.block_count(), 0, "push must not copy blocks");

    let blocks = blocks_of(&manifest(&a, "big"));
    assert!(blocks.len() >= 4, "1 MiB should make several blocks, got {}", blocks.len());
    for blk in &blocks {
        assert!(!block_file(&b, blk).exists());
    }
    let got = b.read("big");
    assert!(got == data, "read on b differs from a ({} vs {} bytes)", got.len(), data.len());
    for blk in &blocks {
        let f = block_file(&b, blk);
        assert!(f.is_file(), "block {blk} not stored on b after the read");
        // zcat | sha256sum gives its name.
        let mut z = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&fs::read(&f).unwrap()[..]), &mut z).unwrap();
        assert_eq!(&sha_hex(&z), blk);
    }
    let distinct: BTreeSet<&String> = blocks.iter().collect();
    assert_eq!(b.block_count(), distinct.len());

    let log = log_json(&b, "big");
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0]["version"], id.as_str());
    assert_eq!(log[0]["origin"], uuid(&a).as_str());
    assert_eq!(log[0]["origin_name"], "a");
    assert_eq!(log[0]["head"], true);
    let plain = text(&b.ok(&["log", "big"]));
    assert!(plain.contains(&id) && plain.contains(" a "), "{plain}");
    // A second read is served locally: b still reads it with a gone.
    fs::rename(&a.dir, a.tmp.path().join("away")).unwrap();
    assert!(b.read("big") == data);
}

// ---------------------------------------------------------------------------------------
// 2. Transitive flow and cycles
// ---------------------------------------------------------------------------------------

#[test]
fn versions_flow_a_to_b_to_c_and_cycles_are_harmless() {
    let (a, b, c) = (node("a"), node("b"), node("c"));
    pair(&a, "a", &b, "b");
    pair(&b, "b", &c, "c");
    let data = noise(700_000, 21);
    let id = a.write("f", &data);
    let blocks = blocks_of(&manifest(&a, "f"));
    assert!(blocks.len() >= 2);
    assert_pushed(&push(&a), "b", 1);
    // b applies a's log, then passes the version on (but not back to its origin).
    let out = push(&b);
    assert_pushed(&out, "c", 1);
    assert_pushed(&out, "a", 0);
    assert_eq!(b.block_count(), 0, "b never read f");

    // c knows f but only b is its peer, and b does not have the blocks.
    assert_eq!(log_ids(&c, "f"), vec![id.clone()]);
    let out = c.run(&["read", "f"]);
    assert_error(&out, "not found on peers: b");
    let err = text(&out.stderr);
    assert!(blocks.iter().any(|blk| err.contains(blk.as_str())), "error names no block of f: {err}");
    assert!(err.contains('f'));

    let out = b.run(&["mirror"]);
    assert_ok(&out, "mirror on b");
    let n = blocks.iter().collect::<BTreeSet<_>>().len();
    assert!(
        text(&out.stdout).contains(&format!("{n} blocks were missing, {n} fetched, 0 not found")),
        "{}",
        text(&out.stdout)
    );
    for blk in &blocks {
        assert!(block_file(&b, blk).is_file());
    }
    assert!(c.read("f") == data, "c's read differs");

    // Cycle: b pushes back to a, a pushes again: nothing changes on a.
    let snapshot = |v: &TestVolume| {
        (
            v.ok(&["log", "f"]),
            fs::read(v.dir.join("local/state/journal")).unwrap(),
            tree(&v.dir.join("local/root"), &[]),
            manifest(v, "f"),
        )
    };
    let before = snapshot(&a);
    assert_pushed(&push(&b), "a", 0);
    assert_pushed(&push(&a), "b", 0);
    assert!(snapshot(&a) == before, "a changed after a cycle");

    // A version made on c travels c→b→a; echoes die out after one round.
    let g = c.write("g", b"from c\n");
    // c also sends f back to b (c cannot know b has it): an echo b must ignore.
    assert!(pushed(&push(&c), "b") >= 1);
    let out = push(&b);
    assert_pushed(&out, "a", 1);
    assert_pushed(&out, "c", 0);
    assert_eq!(log_ids(&a, "g"), vec![g.clone()]);
    assert_eq!(b.read("g"), b"from c\n"); // b pulls from c, then a can pull from b
    assert_eq!(a.read("g"), b"from c\n");
    for _ in 0..2 {
        push(&a);
        push(&b);
        push(&c);
    }
    let (oa, ob, oc) = (push(&a), push(&b), push(&c));
    assert_pushed(&oa, "b", 0);
    assert_pushed(&ob, "a", 0);
    assert_pushed(&ob, "c", 0);
    assert_pushed(&oc, "b", 0);
    for v in [&a, &b, &c] {
        assert_eq!(log_ids(v, "g"), vec![g.clone()]);
        assert_eq!(log_ids(v, "f"), vec![id.clone()]);
        let journal = fs::read_to_string(v.dir.join("local/state/journal")).unwrap();
        let ids: Vec<&str> = journal.lines().map(|l| l.split(' ').next().unwrap()).collect();
        assert_eq!(ids.len(), 2, "journal of a node lists each version once: {journal}");
        assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 2);
    }
}

// ---------------------------------------------------------------------------------------
// 3, 4. Unreachable is not empty
// ---------------------------------------------------------------------------------------

#[test]
fn unreachable_peer_is_left_alone_and_caught_up_later() {
    let (a, b) = (node("a"), node("b"));
    pair(&a, "a", &b, "b");
    let away = b.tmp.path().join("unmounted");
    fs::rename(&b.dir, &away).unwrap();
    let v1 = noise(200_000, 31);
    let v2 = noise(250_000, 32);
    let id1 = a.write("f", &v1);
    let id2 = a.write("f", &v2);
    let out = a.run(&["push"]);
    assert_no_panic(&out);
    assert_eq!(out.status.code(), Some(1), "partial push exits 1: {}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.lines().any(|l| l.contains("peer b") && l.contains("unreachable")), "{err}");
    assert!(!b.dir.exists(), "push created something at the unmounted peer's path");
    assert!(fs::symlink_metadata(&b.dir).is_err());

    fs::rename(&away, &b.dir).unwrap();
    assert_pushed(&push(&a), "b", 2);
    assert_eq!(log_ids(&b, "f"), vec![id2.clone(), id1.clone()]);
    assert!(b.read(&format!("f@{id1}")) == v1);
    assert!(b.read(&format!("f@{id2}")) == v2);
    assert!(b.read("f") == v2);
}

#[test]
fn empty_mount_point_or_another_volume_is_unreachable_and_untouched() {
    let (a, b) = (node("a"), node("b"));
    pair(&a, "a", &b, "b");
    a.write("f", b"data\n");
    fs::rename(&b.dir, b.tmp.path().join("away")).unwrap();
    fs::create_dir(&b.dir).unwrap();
    let out = a.run(&["push"]);
    assert_no_panic(&out);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("unreachable"));
    assert_eq!(fs::read_dir(&b.dir).unwrap().count(), 0, "push wrote into an empty mount point");

    // Another volume mounted at that path (wrong uuid) is not the peer either.
    fs::remove_dir(&b.dir).unwrap();
    let other = std::process::Command::new(bin()).arg("init").arg(&b.dir).args(["--name", "b"]).output().unwrap();
    assert!(other.status.success());
    let before = tree(&b.dir, &[]);
    let out = a.run(&["push"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("peer b"));
    assert_eq!(tree(&b.dir, &[]), before, "push wrote into a volume with another uuid");
    assert_eq!(fs::read_dir(b.dir.join("local/upstream")).unwrap().count(), 0);
}

// ---------------------------------------------------------------------------------------
// 5. Torn tails and idempotent pushes
// ---------------------------------------------------------------------------------------

#[test]
fn torn_tail_is_not_applied_and_next_push_repairs_it() {
    let (a, b) = (node("a"), node("b"));
    pair(&a, "a", &b, "b");
    let id1 = a.write("f", b"one\n");
    assert_pushed(&push(&a), "b", 1);
    assert_eq!(log_ids(&b, "f"), vec![id1.clone()]);
    let log = log_latest(&b, &a);
    // Half a record, as a dropped connection leaves it: a plausible frame and a short payload.
    let fake = seal("globofs-version 1\nid x\n");
    let mut torn = format!("record 999 {}\n", sha_hex(&fake)).into_bytes();
    torn.extend_from_slice(b"globofs-version 1\npartial");
    append(&log, &torn);

    let out = b.run(&["log", "f"]);
    assert_ok(&out, "log on b with a torn tail");
    assert_eq!(log_ids(&b, "f"), vec![id1.clone()]);
    assert_eq!(text(&b.ok(&["ls"])).trim(), "f");
    assert_eq!(b.read("f"), b"one\n");
    let out = b.run(&["verify"]);
    assert_ok(&out, "verify on b");

    let id2 = a.write("f", b"two\n");
    assert_pushed(&push(&a), "b", 1);
    let p = parse_log(&fs::read(&log).unwrap());
    assert_eq!((p.records.len(), p.bad, p.torn), (2, 0, 0), "log not repaired: {p:?}");
    assert_eq!(field(&p.records[1], "id"), id2);
    assert_eq!(log_ids(&b, "f"), vec![id2.clone(), id1.clone()]);
    assert_eq!(b.read("f"), b"two\n");

    // Pushing again with nothing new changes nothing.
    let bytes = fs::read(&log).unwrap();
    assert_pushed(&push(&a), "b", 0);
    assert_pushed(&push(&a), "b", 0);
    assert_eq!(fs::read(&log).unwrap(), bytes, "an empty push changed the log");
    assert_ok(&b.run(&["verify"]), "verify on b");
}

#[test]
fn log_truncated_inside_its_last_record_loses_no_version() {
    let (a, b) = (node("a"), node("b"));
    pair(&a, "a", &b, "b");
    let id1 = a.write("f", b"one\n");
    assert_pushed(&push(&a), "b", 1);
    let id2 = a.write("f", b"two\n");
    assert_pushed(&push(&a), "b", 1);
    // The connection dropped: the end of the last append never reached b's disk.
    let log = log_latest(&b, &a);
    let bytes = fs::read(&log).unwrap();
    let p = parse_log(&bytes);
    assert_eq!(p.records.len(), 2);
    let cut = bytes.len() - p.records[1].len() / 2;
    fs::OpenOptions::new().write(true).open(&log).unwrap().set_len(cut as u64).unwrap();

    let out = b.run(&["log", "f"]);
    assert_ok(&out, "log on b");
    assert_eq!(log_ids(&b, "f"), vec![id1.clone()], "a torn record was applied");

    let id3 = a.write("f", b"three\n");
    push(&a);
    let p = parse_log(&fs::read(&log).unwrap());
    assert_eq!((p.bad, p.torn), (0, 0), "log not repaired: {p:?}");
    let ids: Vec<String> = p.records.iter().map(|r| field(r, "id")).collect();
    assert!(ids.contains(&id3));
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), ids.len(), "a record is in the log twice: {ids:?}");
    // b must end up with every version, the newest as its head, and no false conflict.
    assert_eq!(log_ids(&b, "f"), vec![id3.clone(), id2.clone(), id1.clone()]);
    assert_eq!(b.read("f"), b"three\n");
    let st = json(&b.ok(&["--json", "status"]));
    assert_eq!(st["conflicts"].as_array().map(|a| a.len()), Some(0), "{st}");
}

// ---------------------------------------------------------------------------------------
// 6. Hostile records
// ---------------------------------------------------------------------------------------

#[test]
fn hostile_records_are_refused_and_the_others_still_applied() {
    let (a, b) = (node("a"), node("b"));
    pair(&a, "a", &b, "b");
    a.write("f", b"hello\n");
    a.write("good", b"good content\n");
    let template = manifest(&a, "f");
    let good = manifest(&a, "good");

    // b has a symlink `link -> /tmp` (imported inside a directory, then moved to the top:
    // see `import_of_a_symlink_imports_the_link_not_its_target`).
    let src = b.scratch("src");
    std::os::unix::fs::symlink("/tmp", src.join("link")).unwrap();
    b.ok(&["import", s(&src), "d"]);
    b.ok(&["mv", "d/link", "link"]);
    assert_eq!(log_json(&b, "link")[0]["kind"], "symlink");
    assert_eq!(log_json(&b, "link")[0]["target"], "/tmp");

    let dir = updates(&b, &a);
    fs::create_dir_all(&dir).unwrap();
    let log = dir.join("latest");
    fs::write(&log, "globofs-log 1 handmade0001\n").unwrap();

    let name = unique("escape");
    let canaries: Vec<PathBuf> = vec![
        PathBuf::from("/tmp").join(&name),
        PathBuf::from("/").join(&name),
        b.tmp.path().join(&name),
        b.dir.join(&name),
        b.dir.join("local").join(&name),
        b.dir.join("local/root/link").join(&name),
    ];
    let outside = |v: &TestVolume| tree(v.tmp.path(), &[&v.dir]);
    let (a_out, b_out) = (outside(&a), outside(&b));
    let ls_before = b.ok(&["ls", "-a", "-R"]);
    let root_before = tree(&b.dir.join("local/root"), &[]);
    let top_before = tree(&b.dir, &[&b.dir.join("local")]);

    let mut bad_sum = frame(&craft(&template, "checksum", 6));
    let n = bad_sum.len();
    bad_sum[n - 3] ^= 1;
    let mut bad_end = craft(&template, "endsum", 7);
    let n = bad_end.len();
    bad_end[n - 3] = if bad_end[n - 3] == b'0' { b'1' } else { b'0' };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("dot-dot", frame(&craft(&template, &format!("../../../{name}"), 1))),
        ("dot-dot inside", frame(&craft(&template, &format!("sub/../../{name}"), 2))),
        ("absolute", frame(&craft(&template, &format!("/tmp/{name}"), 3))),
        ("NUL", frame(&craft(&template, &format!("x%00{name}"), 4))),
        ("reserved", frame(&craft(&template, ".globofs/x", 5))),
        ("under a symlink", frame(&craft(&template, &format!("link/{name}"), 8))),
        ("bad frame checksum", bad_sum.clone()),
        ("bad end checksum", frame(&bad_end)),
    ];
    for (what, rec) in &cases {
        append(&log, rec);
        let out = b.run(&["ls", "-a", "-R"]);
        assert_ok(&out, what);
        assert!(warnings(&out) >= 1, "{what}: no warning on stderr: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), text(&ls_before), "{what}: ls changed");
        assert_eq!(tree(&b.dir.join("local/root"), &[]), root_before, "{what}: manifests written");
        for c in &canaries {
            assert!(fs::symlink_metadata(c).is_err(), "{what}: {} was created", c.display());
        }
        // Refused once, not again at every command.
        let again = b.run(&["ls"]);
        assert_ok(&again, what);
        assert_eq!(warnings(&again), 0, "{what}: refused again: {}", text(&again.stderr));
    }
    assert!(b.run(&["log", &format!("link/{name}")]).status.code() == Some(2));

    // Bad records followed by a good one in the same batch: the good one is applied.
    let mut batch = frame(&craft(&template, "../batch", 9));
    let mut sum2 = frame(&craft(&template, "checksum2", 10));
    let n = sum2.len();
    sum2[n - 3] ^= 1;
    batch.extend(sum2);
    batch.extend(frame(&good));
    append(&log, &batch);
    let out = b.run(&["ls", "-a"]);
    assert_ok(&out, "ls after the batch");
    assert!(warnings(&out) >= 2, "{}", text(&out.stderr));
    let listed: BTreeSet<String> = text(&out.stdout).lines().map(str::to_string).collect();
    assert_eq!(listed, ["d/", "good", "link"].iter().map(|s| s.to_string()).collect(), "{listed:?}");
    assert_eq!(b.read("good"), b"good content\n");

    for c in &canaries {
        assert!(fs::symlink_metadata(c).is_err(), "{} was created", c.display());
    }
    assert!(fs::symlink_metadata(b.tmp.path().join("batch")).is_err());
    assert!(fs::symlink_metadata(b.dir.join("local/batch")).is_err());
    assert_eq!(outside(&a), a_out, "files appeared next to a");
    assert_eq!(outside(&b), b_out, "files appeared next to b");
    assert_eq!(tree(&b.dir, &[&b.dir.join("local")]), top_before, "files appeared at b's top");
    assert_ok(&b.run(&["verify"]), "verify on b");
}

/// Found while setting up the test above: `import LINK DEST` follows a top-level symlink and
/// imports its target's whole tree (`import /path/to/link-to-tmp link` ingests all of /tmp).
#[test]
fn import_of_a_symlink_imports_the_link_not_its_target() {
    let b = node("b");
    let src = b.scratch("src");
    let target = b.scratch("target");
    fs::write(target.join("inside"), b"x").unwrap();
    std::os::unix::fs::symlink(&target, src.join("link")).unwrap();
    let out = b.run(&["import", s(&src.join("link")), "link"]);
    assert_ok(&out, "import of a symlink");
    let log = log_json(&b, "link");
    assert_eq!(log[0]["kind"], "symlink", "{log:?}");
    assert_eq!(log[0]["target"], s(&target));
    assert_eq!(b.run(&["log", "link/inside"]).status.code(), Some(2), "the link's target tree was imported");
}

#[test]
fn symlink_and_a_path_beneath_it_in_one_batch_do_not_make_a_file_under_a_symlink() {
    let (a, b) = (node("a"), node("b"));
    pair(&a, "a", &b, "b");
    let canary = b.scratch("canary");
    let origin = format!("origin {} a", uuid(&a));
    let head = |id: &str, path: &str, kind: &str| {
        format!(
            "globofs-version 1\nid 1700000000.00000000{id}-00000000-0000000{id}\npath {path}\nkind {kind}\n{origin}\ntime 1700000000.000000000\n"
        )
    };
    let link = seal(&format!(
        "{}size 0\nmode 0777\nmtime 1700000000.000000000\ntarget {}\n",
        head("1", "link2", "symlink"),
        canary.display()
    ));
    let evil = seal(&format!("{}size 0\nmode 0644\nmtime 1700000000.000000000\n", head("2", "link2/evil", "file")));
    let dir = updates(&b, &a);
    fs::create_dir_all(&dir).unwrap();
    let mut log = b"globofs-log 1 handmade0002\n".to_vec();
    log.extend(frame(&link));
    log.extend(frame(&evil));
    fs::write(dir.join("latest"), log).unwrap();

    let out = b.run(&["ls", "-l"]);
    assert_ok(&out, "ls on b");
    assert!(text(&out.stdout).contains("link2 -> "), "the symlink record was not applied: {}", text(&out.stdout));
    let dest = b.scratch("export");
    let ex = b.run(&["export", "/", s(&dest.join("out"))]);
    assert_no_panic(&ex);
    assert_eq!(fs::read_dir(&canary).unwrap().count(), 0, "export wrote through a received symlink");
    assert!(warnings(&out) >= 1, "link2/evil (beneath a symlink) was accepted without a warning");
    assert!(b.run(&["log", "link2/evil"]).status.code() == Some(2), "b keeps a file beneath a symlink");
}

// ---------------------------------------------------------------------------------------
// 7. Blocks that do not match their name
// ---------------------------------------------------------------------------------------

#[test]
fn block_whose_bytes_do_not_match_its_name_is_never_stored() {
    let (a, b) = (node("a"), node("b"));
    pair(&a, "a", &b, "b");
    let data = noise(600_000, 71);
    a.write("f", &data);
    let blocks = blocks_of(&manifest(&a, "f"));
    assert!(blocks.len() >= 2);
    let victim = blocks[1].clone();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b"these are not the bytes you are looking for").unwrap();
    let gz = gz.finish().unwrap();
    let f = block_file(&a, &victim);
    let mut perm = fs::metadata(&f).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o644);
    fs::set_permissions(&f, perm).unwrap();
    fs::write(&f, &gz).unwrap();
    assert_pushed(&push(&a), "b", 1);

    let out = b.run(&["read", "f"]);
    assert_error(&out, &victim);
    assert!(!block_file(&b, &victim).exists(), "b stored a block whose bytes do not match its name");
    let out = b.run(&["mirror"]);
    assert_eq!(out.status.code(), Some(1), "mirror with an unfetchable block: {}", text(&out.stderr));
    assert!(text(&out.stderr).contains(&victim));
    assert!(!block_file(&b, &victim).exists());
    // The good blocks were fetched; only the bad one is missing.
    for blk in blocks.iter().filter(|x| **x != victim) {
        assert!(block_file(&b, blk).is_file());
    }
    assert_eq!(json(&b.ok(&["--json", "status"]))["missing_blocks"], 1);
}

// ---------------------------------------------------------------------------------------
// 8. Only peers are listened to
// ---------------------------------------------------------------------------------------

#[test]
fn logs_from_non_peers_and_removed_peers_are_not_applied() {
    let (a, b, c) = (node("a"), node("b"), node("c"));
    add_peer(&a, "b", &b); // a pushes to b, but b does not know a
    add_peer(&b, "c", &c);
    a.write("f", b"from a\n");
    assert_pushed(&push(&a), "b", 1);
    let out = b.run(&["ls"]);
    assert_ok(&out, "ls on b");
    assert_eq!(text(&out.stdout), "", "b applied a log from a non-peer");
    assert!(!b.dir.join("local/root/f").exists());

    // The same log under a uuid that is nobody's.
    let stranger = b.dir.join("local/upstream").join("0f0e0d0c-0b0a-4000-8000-123456789abc").join("updates");
    fs::create_dir_all(&stranger).unwrap();
    for e in fs::read_dir(updates(&b, &a)).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), stranger.join(e.file_name())).unwrap();
    }
    assert_eq!(text(&b.ok(&["ls"])), "");
    assert!(!b.dir.join("local/root/f").exists());

    // Once a is a peer, its log is applied (so the log itself was good).
    add_peer(&b, "a", &a);
    assert_eq!(text(&b.ok(&["ls"])), "f\n");

    // A push that arrives right before `peer rm` does not get its last word in.
    a.write("g", b"late\n");
    assert_pushed(&push(&a), "b", 1);
    b.ok(&["peer", "rm", "a"]);
    a.write("h", b"later\n");
    assert_pushed(&push(&a), "b", 1); // a still pushes; b ignores it
    let out = b.run(&["ls"]);
    assert_ok(&out, "ls on b");
    assert_eq!(text(&out.stdout), "f\n", "b applied a removed peer's log");
    assert!(!b.dir.join("local/root/g").exists() && !b.dir.join("local/root/h").exists());
    assert!(!text(&b.ok(&["peer", "ls"])).contains(&uuid(&a)));
}

// ---------------------------------------------------------------------------------------
// 9. Hooks
// ---------------------------------------------------------------------------------------

#[test]
fn on_commit_and_on_update_hooks_see_the_paths() {
    let (a, b) = (node("a"), node("b"));
    pair(&a, "a", &b, "b");
    let hook = |v: &TestVolume| {
        let out = v.tmp.path().join("hook.out");
        let cmd = format!(r#"printf "%s\n%s\n--\n" "$GLOBOFS_EVENT" "$GLOBOFS_PATHS" >> "{}""#, out.display());
        (out, cmd)
    };
    let (a_out, a_cmd) = hook(&a);
    let (b_out, b_cmd) = hook(&b);
    edit_config(&a, "on_commit = \"\"", &format!("on_commit = '{a_cmd}'"));
    edit_config(&b, "on_update = \"\"", &format!("on_update = '{b_cmd}'"));

    a.write("f", b"1\n");
    assert_eq!(fs::read_to_string(&a_out).unwrap(), "commit\nf\n--\n");
    a.write("sub/g", b"2\n");
    assert_eq!(fs::read_to_string(&a_out).unwrap(), "commit\nf\n--\ncommit\nsub/g\n--\n");
    assert!(!b_out.exists(), "b's hook ran before anything was pushed");

    push(&a);
    assert_eq!(fs::read_to_string(&a_out).unwrap().matches("commit").count(), 2, "push is not a commit");
    b.ok(&["ls"]);
    let got = fs::read_to_string(&b_out).expect("on_update did not run");
    let mut lines: Vec<&str> = got.lines().collect();
    assert_eq!(lines.first(), Some(&"update"), "{got}");
    assert_eq!(lines.pop(), Some("--"));
    let paths: BTreeSet<&str> = lines[1..].iter().copied().collect();
    assert_eq!(paths, ["f", "sub/g"].into_iter().collect(), "{got}");
    // Nothing new: the hook does not run again.
    b.ok(&["ls"]);
    assert_eq!(fs::read_to_string(&b_out).unwrap(), got);
}

// ---------------------------------------------------------------------------------------
// 10. peer ls and status
// ---------------------------------------------------------------------------------------

#[test]
fn peer_ls_and_status_report_reachability_pending_and_missing_blocks() {
    let (a, b, c) = (node("a"), node("b"), node("c"));
    pair(&a, "a", &b, "b");
    add_peer(&a, "c", &c);
    let peers = |v: &TestVolume| -> BTreeMap<String, serde_json::Value> {
        let j = json(&v.ok(&["--json", "peer", "ls"]));
        j.as_array().unwrap().iter().map(|p| (p["name"].as_str().unwrap().to_string(), p.clone())).collect()
    };
    let p = peers(&a);
    assert_eq!(p.len(), 2);
    assert_eq!((p["b"]["reachable"].clone(), p["c"]["reachable"].clone()), (true.into(), true.into()));
    assert_eq!(p["b"]["pending"], 0);
    assert_eq!(p["b"]["uuid"], uuid(&b).as_str());

    fs::rename(&c.dir, c.tmp.path().join("away")).unwrap();
    a.write("f", &noise(300_000, 101));
    let data = noise(400_000, 102);
    a.write("f", &data);
    let p = peers(&a);
    assert_eq!(p["b"]["reachable"], true);
    assert_eq!(p["c"]["reachable"], false);
    assert!(p["b"]["pending"].as_u64().unwrap() >= 2, "{p:?}");
    assert!(p["c"]["pending"].as_u64().unwrap() >= 2, "{p:?}");
    let plain = text(&a.ok(&["peer", "ls"]));
    assert!(plain.lines().any(|l| l.starts_with("c ") && l.contains("unreachable")), "{plain}");

    let out = a.run(&["push"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let p = peers(&a);
    assert_eq!(p["b"]["pending"], 0, "{p:?}");
    assert!(p["b"]["last_push"].as_u64().is_some());
    assert!(p["c"]["pending"].as_u64().unwrap() >= 2, "{p:?}");
    assert!(p["c"]["last_push"].is_null());

    let blocks: BTreeSet<String> = blocks_of(&manifest(&a, "f")).into_iter().collect();
    let st = json(&b.ok(&["--json", "status"]));
    assert_eq!(st["missing_blocks"], blocks.len(), "{st}");
    assert_eq!(st["files_missing_blocks"], 1, "{st}");
    assert_eq!(st["uuid"], uuid(&b).as_str());
    assert_ok(&b.run(&["mirror"]), "mirror");
    let st = json(&b.ok(&["--json", "status"]));
    assert_eq!(st["missing_blocks"], 0, "{st}");
    assert!(b.read("f") == data);
}

// ---------------------------------------------------------------------------------------
// 11. Concurrency
// ---------------------------------------------------------------------------------------

#[test]
fn concurrent_pushes_and_writes_deliver_every_version_exactly_once() {
    let (a, b) = (node("a"), node("b"));
    pair(&a, "a", &b, "b");
    let rounds = 4;
    std::thread::scope(|sc| {
        for round in 0..rounds {
            let (a, b) = (&a, &b);
            let g = format!("g{round}");
            let hs = vec![
                sc.spawn(move || ("push", a.run(&["push"]))),
                sc.spawn(move || ("push", a.run(&["push"]))),
                sc.spawn(move || ("write f", a.run_with_input(&["write", "f"], &noise(20_000, round as u64 + 1)))),
                sc.spawn(move || ("write g", a.run_with_input(&["write", &g], b"g\n"))),
                sc.spawn(move || ("ls on b", b.run(&["ls"]))),
            ];
            for h in hs {
                let (what, out) = h.join().unwrap();
                assert_ok(&out, what);
            }
        }
    });
    push(&a);
    b.ok(&["ls"]);
    let total = 2 * rounds;
    let a_ids: BTreeSet<String> = fs::read_to_string(a.dir.join("local/state/journal"))
        .unwrap()
        .lines()
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect();
    assert_eq!(a_ids.len(), total);
    let journal = fs::read_to_string(b.dir.join("local/state/journal")).unwrap();
    let b_ids: Vec<String> = journal.lines().map(|l| l.split(' ').next().unwrap().to_string()).collect();
    assert_eq!(b_ids.len(), total, "b's journal: {journal}");
    assert_eq!(b_ids.iter().cloned().collect::<BTreeSet<_>>(), a_ids);
    let p = parse_log(&fs::read(log_latest(&b, &a)).unwrap());
    assert_eq!((p.bad, p.torn), (0, 0));
    let sent: Vec<String> = p.records.iter().map(|r| field(r, "id")).collect();
    assert_eq!(sent.len(), total, "a version was sent twice or not at all: {sent:?}");
    assert_eq!(sent.iter().cloned().collect::<BTreeSet<_>>(), a_ids);
    assert_eq!(log_ids(&b, "f"), log_ids(&a, "f"));
    assert_eq!(log_ids(&b, "f").len(), rounds);
    assert!(b.read("f") == a.read("f"));
    assert_eq!(json(&b.ok(&["--json", "status"]))["conflicts"].as_array().map(|a| a.len()), Some(0));
}

// ---------------------------------------------------------------------------------------
// 12. cacheonly
// ---------------------------------------------------------------------------------------

#[test]
fn cacheonly_records_pulled_blocks() {
    let (a, b) = (node("a"), node("b"));
    pair(&a, "a", &b, "b");
    edit_config(&b, "cacheonly = false", "cacheonly = true");
    let data = noise(500_000, 121);
    a.write("f", &data);
    let own = b.write("mine", &noise(100_000, 122));
    assert!(!own.is_empty());
    push(&a);
    assert!(!b.dir.join("local/state/pulled").exists(), "nothing was pulled yet");
    assert!(b.read("f") == data);
    let pulled = fs::read_to_string(b.dir.join("local/state/pulled")).expect("local/state/pulled");
    let listed: BTreeSet<String> = pulled.lines().map(|l| l.split(' ').next().unwrap().to_string()).collect();
    let want: BTreeSet<String> = blocks_of(&manifest(&a, "f")).into_iter().collect();
    assert_eq!(listed, want, "pulled: {pulled}");
    for blk in &want {
        assert!(block_file(&b, blk).is_file());
    }
    for l in pulled.lines() {
        let t: u64 = l.split(' ').nth(1).and_then(|t| t.parse().ok()).unwrap_or(0);
        assert!(t > 1_600_000_000, "no time on {l:?}");
    }
    // b's own blocks are not a cache.
    for blk in blocks_of(&manifest(&b, "mine")) {
        assert!(!listed.contains(&blk));
    }
}

// ---------------------------------------------------------------------------------------
// 13. Identity: clones, lost configs, broken peer configs
// ---------------------------------------------------------------------------------------

/// `cp -a` of a node's volume into a fresh temp directory (a cloned machine, a restored
/// disk copy): same files, same uuid, new inodes.
fn clone_of(v: &TestVolume, name: &str) -> TestVolume {
    let tmp = tempfile::Builder::new().prefix(&format!("globofs-{name}-")).tempdir().unwrap();
    let dir = tmp.path().join("vol");
    let st = std::process::Command::new("cp").arg("-a").arg(&v.dir).arg(&dir).status().expect("run cp");
    assert!(st.success(), "cp -a failed");
    TestVolume { tmp, dir }
}

/// Every file under `root` with its content.
fn contents(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .map(|e| (e.path().to_path_buf(), fs::read(e.path()).unwrap()))
        .collect()
}

/// Runs the `globofs ...` command quoted in backticks on the line of `out` that contains
/// `needle`, with our binary; it must succeed.
fn run_printed(out: &str, needle: &str) {
    let line = out.lines().find(|l| l.contains(needle)).unwrap_or_else(|| panic!("no {needle:?} in {out:?}"));
    let cmd = line.split('`').nth(1).unwrap_or_else(|| panic!("no command in {line:?}"));
    let words: Vec<&str> = cmd.split_whitespace().collect();
    assert_eq!(words[0], "globofs", "{line}");
    let out = std::process::Command::new(bin()).args(&words[1..]).env_remove("GLOBOFS_VOLUME").output().unwrap();
    assert_ok(&out, cmd);
}

#[test]
fn a_cloned_volume_refuses_to_write_or_push_until_reidentified_then_all_converge() {
    let (a, b) = (node("a"), node("b"));
    pair(&a, "a", &b, "b");
    a.write("f", b"one\n");
    assert_pushed(&push(&a), "b", 1);
    let copy = clone_of(&a, "copy");
    let b_before = contents(&b.dir);

    // The copy refuses to make versions or push, with one line saying what happened.
    let out = copy.run_with_input(&["write", "f"], b"from the copy\n");
    assert_error(&out, "is a copy of volume");
    let err = text(&out.stderr);
    assert!(err.contains(&uuid(&a)) && err.contains(s(&a.dir)), "{err}");
    assert!(err.contains("globofs reidentify") && err.contains("--moved"), "{err}");
    assert_error(&copy.run(&["push"]), "is a copy of volume");
    assert_error(&copy.run(&["rm", "f"]), "is a copy of volume");
    assert_eq!(contents(&b.dir), b_before, "the copy changed its peer");
    // Reading still works, with a warning; the original is not taken for a copy.
    let out = copy.run(&["read", "f"]);
    assert_ok(&out, "read on the copy");
    assert_eq!(out.stdout, b"one\n");
    assert!(text(&out.stderr).contains("is a copy of volume"), "{}", text(&out.stderr));
    let out = a.run(&["status"]);
    assert_ok(&out, "status on the original");
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));

    // reidentify: a new uuid, the data kept, and the command each peer must run.
    let out = copy.run(&["reidentify", "--name", "copy"]);
    assert_ok(&out, "reidentify");
    let said = text(&out.stdout);
    let new = uuid(&copy);
    assert_ne!(new, uuid(&a));
    assert!(said.contains(&new), "{said}");
    assert_eq!(copy.read("f"), b"one\n");
    assert!(copy.run(&["status"]).stderr.is_empty(), "still warned after reidentify");
    run_printed(&said, "peer add");

    // Copy, original and b converge, through b, with no conflict.
    copy.write("f", b"from the copy\n");
    assert_pushed(&push(&copy), "b", 1);
    assert!(updates(&b, &copy).is_dir(), "the copy's log is not under its new uuid");
    assert_eq!(b.read("f"), b"from the copy\n");
    assert!(pushed(&push(&b), "a") >= 1);
    assert_eq!(a.read("f"), b"from the copy\n");
    a.write("g", b"from the original\n");
    assert!(pushed(&push(&a), "b") >= 1); // g, and the copy's f that a got from b
    assert_eq!(b.read("g"), b"from the original\n"); // blocks come from a peer's store
    push(&b);
    assert_eq!(copy.read("g"), b"from the original\n");
    for v in [&a, &b, &copy] {
        assert_eq!(log_ids(v, "f"), log_ids(&b, "f"));
        assert_eq!(log_ids(v, "g"), log_ids(&b, "g"));
        assert_eq!(json(&v.ok(&["--json", "status"]))["conflicts"].as_array().unwrap().len(), 0);
    }
}

#[test]
fn a_volume_copied_to_a_new_place_keeps_its_uuid_with_reidentify_moved() {
    let (a, b) = (node("a"), node("b"));
    pair(&a, "a", &b, "b");
    a.write("f", b"one\n");
    assert_pushed(&push(&a), "b", 1);
    // mv within a file system keeps the volume's identity.
    let moved = a.tmp.path().join("moved");
    fs::rename(&a.dir, &moved).unwrap();
    fs::rename(&moved, &a.dir).unwrap();
    a.write("f", b"two\n");
    // A copy to a new disk, the original gone: --moved keeps the uuid, and b accepts it.
    let copy = clone_of(&a, "moved");
    fs::remove_dir_all(&a.dir).unwrap();
    assert_error(&copy.run_with_input(&["write", "f"], b"three\n"), "is a copy of volume");
    let before = uuid(&copy);
    assert_ok(&copy.run(&["reidentify", "--moved"]), "reidentify --moved");
    assert_eq!(uuid(&copy), before);
    // b now reaches it at its new place.
    let entry = b.dir.join("a/config");
    fs::write(&entry, fs::read_to_string(&entry).unwrap().replace(s(&a.dir), s(&copy.dir))).unwrap();
    copy.write("f", b"three\n");
    assert!(pushed(&push(&copy), "b") >= 2);
    assert_eq!(b.read("f"), b"three\n");
    // reidentify on a volume that is not a copy is refused.
    assert_error(&b.run(&["reidentify"]), "not a copy");
}

#[test]
fn lost_config_init_refuses_and_init_recover_rebuilds_it_from_the_peers() {
    let (a, b) = (node("a"), node("b"));
    pair(&a, "a", &b, "b");
    a.write("f", b"one\n");
    assert_pushed(&push(&a), "b", 1);
    let (old_uuid, cfg) = (uuid(&a), a.dir.join("local/config"));
    fs::remove_file(&cfg).unwrap();

    // Commands point to the recovery, not to `init`.
    let out = a.run(&["ls"]);
    assert_error(&out, "init");
    assert!(text(&out.stderr).contains("--recover"), "{}", text(&out.stderr));
    // Plain `init` refuses and changes nothing.
    let before = tree(&a.dir, &[]);
    let out = std::process::Command::new(bin()).arg("init").arg(&a.dir).env_remove("GLOBOFS_VOLUME").output().unwrap();
    assert_error(&out, "--recover");
    assert!(!cfg.exists(), "init wrote a config over a volume's data");
    assert_eq!(tree(&a.dir, &[]), before);

    // The peer's records and our own manifests give back the uuid.
    fs::remove_file(a.dir.join("local/state/identity")).unwrap(); // our own record of it too
    let out = std::process::Command::new(bin())
        .args(["init", "--recover"])
        .arg(&a.dir)
        .env_remove("GLOBOFS_VOLUME")
        .output()
        .unwrap();
    assert_ok(&out, "init --recover");
    assert!(text(&out.stdout).contains(&old_uuid), "{}", text(&out.stdout));
    assert_eq!(uuid(&a), old_uuid);
    let t: toml::Table = fs::read_to_string(&cfg).unwrap().parse().unwrap();
    assert_eq!(t["name"].as_str(), Some("a"));
    // b still accepts our pushes, and we its.
    a.write("f", b"two\n");
    assert_pushed(&push(&a), "b", 1);
    assert_eq!(b.read("f"), b"two\n");
    b.write("g", b"from b\n");
    assert_pushed(&push(&b), "a", 1);
    assert_eq!(a.read("g"), b"from b\n");

    // Without a peer or a record naming our uuid, recovery refuses and writes nothing.
    let c = node("c");
    c.write("h", b"alone\n");
    fs::remove_file(c.dir.join("local/config")).unwrap();
    fs::remove_file(c.dir.join("local/state/identity")).unwrap();
    let out =
        std::process::Command::new(bin()).args(["init", "--recover"]).arg(&c.dir).env_remove("GLOBOFS_VOLUME").output();
    assert_error(&out.unwrap(), "cannot tell");
    assert!(!c.dir.join("local/config").exists());
}

#[test]
fn a_peer_config_that_does_not_parse_is_reported_broken_and_the_other_peers_are_served() {
    for case in ["empty", "truncated", "uuid = 12"] {
        let (a, b, c) = (node("a"), node("b"), node("c"));
        pair(&a, "a", &b, "b");
        add_peer(&a, "c", &c);
        a.write("f", b"zero\n");
        a.write("f", b"one\n");
        let file = a.dir.join("c/config");
        let good = fs::read_to_string(&file).unwrap();
        let (bad, reason) = match case {
            "empty" => (String::new(), "empty"),
            "truncated" => (good[..good.find("uuid").unwrap() + 20].to_string(), "c/config"),
            _ => (format!("uuid = 12\npath = \"{}\"\n", s(&c.dir)), "uuid is not a string"),
        };
        fs::write(&file, bad).unwrap();

        // push serves b, and reports c as unreachable with the reason and the way out.
        let out = a.run(&["push"]);
        assert_eq!(out.status.code(), Some(1), "{case}: {}", text(&out.stderr));
        assert_no_panic(&out);
        assert_pushed(&text(&out.stdout), "b", 2);
        let err = text(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{case}: {err}");
        for needle in ["peer c", s(&file), reason, "globofs peer rm c"] {
            assert!(err.contains(needle), "{case}: {err:?} lacks {needle:?}");
        }
        assert_eq!(b.read("f"), b"one\n");
        // peer ls and status list it as broken.
        let ls = text(&a.ok(&["peer", "ls"]));
        assert!(ls.lines().any(|l| l.starts_with("c ") && l.contains("broken") && l.contains(reason)), "{case}: {ls}");
        let j = json(&a.ok(&["--json", "peer", "ls"]));
        let jc = j.as_array().unwrap().iter().find(|p| p["name"] == "c").unwrap_or_else(|| panic!("{case}: {j}"));
        assert_eq!(jc["reachable"], false);
        assert!(jc["broken"].as_str().is_some_and(|r| r.contains(reason)), "{case}: {jc}");
        let st = text(&a.ok(&["status"]));
        assert!(!st.contains("no peers"), "{case}: {st}");
        assert!(st.lines().any(|l| l.starts_with("peer c") && l.contains("broken")), "{case}: {st}");
        // prune keeps what c may not have received: its watermark is unknown.
        let out = text(&a.ok(&["prune", "--keep-last", "1"]));
        assert!(out.contains("pruned 0 versions"), "{case}: {out}");
        // `peer rm` gets rid of it.
        a.ok(&["peer", "rm", "c"]);
        assert!(!file.exists());
        assert_ok(&a.run(&["push"]), "push after peer rm");
        let out = text(&a.ok(&["prune", "--keep-last", "1"]));
        assert!(out.contains("pruned 1 versions"), "{case}: {out}");
    }
}

/// `peer rm --revoke` locks a node out of the whole group: what it makes from then on is
/// refused by the node that revoked it and, once the revocation reached them with a push,
/// by every other node, even when it comes forwarded by a peer that applied it before it
/// heard of the revocation (refused with a warning naming the node, never silently). The
/// revoked node's pushes look as they always did.
#[test]
fn a_revoked_node_is_refused_by_every_node_however_its_changes_arrive() {
    let (a, x, b) = (node("a"), node("x"), node("b"));
    pair(&a, "a", &x, "x");
    pair(&a, "a", &b, "b");
    pair(&x, "x", &b, "b");
    a.write("doc", b"shared\n");
    a.write("notes", b"kept\n");
    push(&a);
    for v in [&x, &b] {
        assert_ok(&v.run(&["mirror"]), "mirror");
    }
    let out = a.run(&["peer", "rm", "x", "--revoke"]);
    assert_ok(&out, "peer rm --revoke");
    assert!(text(&out.stdout).contains("revoked"), "{}", text(&out.stdout));
    push(&a); // the revocation reaches b

    // x removes a file and pushes to both: a does not read its log, b refuses it.
    x.ok(&["rm", "doc"]);
    let out = x.run(&["push"]);
    assert_ok(&out, "push from the revoked node");
    assert!(pushed(&text(&out.stdout), "b") > 0, "{}", text(&out.stdout));
    let out = b.run(&["ls"]);
    assert!(text(&out.stdout).contains("doc"), "b applied the revoked node's rm: {}", text(&out.stdout));
    assert!(text(&out.stderr).contains("revoked"), "b said nothing of x: {}", text(&out.stderr));
    assert_eq!(a.read("doc"), b"shared\n");
    // b, still listing x, pushes to it no more and says why.
    let out = b.run(&["push"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("revoked") || text(&out.stderr).contains("revoked"));

    // A node that applied x's change before it heard of the revocation forwards it: the
    // others refuse it, naming x.
    let c = node("c");
    pair(&x, "x", &c, "c");
    pair(&c, "c", &a, "a");
    x.ok(&["rm", "notes"]);
    x.run(&["push"]);
    assert_ok(&c.run(&["mirror"]), "mirror on c");
    assert!(!text(&c.ok(&["ls"])).contains("notes"), "c applies x's change (it has not heard of the revocation)");
    c.run(&["push"]);
    let out = a.run(&["ls"]);
    assert!(text(&out.stdout).contains("notes"), "a applied the revoked node's change forwarded by c");
    let err = text(&out.stderr);
    assert!(err.contains("revoked") && err.contains("notes"), "a refused silently: {err}");
    assert_eq!(a.read("notes"), b"kept\n");
}
