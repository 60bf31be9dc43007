//! Retention: `prune` (policy flags, the config's `[retention]` table, `auto_prune`, PATH
//! restriction, single versions `PATH@ID`, `--dry-run`, `--json`) and `gc` (space freed,
//! stale temp files, a corrupt manifest stops it, strays left alone, `cacheonly` eviction),
//! driven through the real binary. Also what prune must never do: drop a head, an unresolved
//! conflict version or a version a peer has not received; break the lineage peers rely on to
//! fast-forward; resurrect pruned versions when peers send them again; lose blocks that an
//! import running at the same time reuses (a race run in separate processes), that a
//! `restore` queued behind the prune and gc reuses, or that `mv`/`restore`/`resolve` on a
//! peer reuse. A peer's prune and gc leave what we mirrored readable, and what we never
//! pulled fails as a missing block, never as other bytes.

use crate::util::*;
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

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
    let err = text(&out.stderr);
    assert!(!err.contains("panicked") && !err.contains("internal error"), "{what}: panic: {err}");
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

/// `push` to every peer; must exit 0. Returns stdout.
fn push(v: &TestVolume) -> String {
    let out = v.run(&["push"]);
    assert_ok(&out, "push");
    text(&out.stdout)
}

/// Applies the logs peers pushed into `v` (any command but `peer` does); nothing refused.
fn receive(v: &TestVolume) {
    let out = v.run(&["status"]);
    assert_ok(&out, "status");
    assert!(!text(&out.stderr).contains("warning"), "receive warned: {}", text(&out.stderr));
}

/// Exit code of `status --check` (0: no conflict, 1: conflicts).
fn check(v: &TestVolume) -> i32 {
    let out = v.run(&["status", "--check"]);
    let err = text(&out.stderr);
    assert!(!err.contains("panicked") && !err.contains("warning"), "status --check: {err}");
    out.status.code().expect("exit code")
}

fn log_json(v: &TestVolume, path: &str) -> Vec<serde_json::Value> {
    json(&v.ok(&["--json", "log", path])).as_array().expect("log --json gives an array").clone()
}

/// Version ids of `path`, newest first.
fn log_ids(v: &TestVolume, path: &str) -> Vec<String> {
    log_json(v, path).iter().map(|e| e["version"].as_str().unwrap().to_string()).collect()
}

/// `ids` newest first (as `log` lists them).
fn newest_first(ids: &[String]) -> Vec<String> {
    ids.iter().rev().cloned().collect()
}

/// `prune ARGS --json`; must succeed.
fn prune_json(v: &TestVolume, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json", "prune"];
    all.extend_from_slice(args);
    let out = v.run(&all);
    assert_ok(&out, &format!("prune {args:?}"));
    json(&out.stdout)
}

/// Ids listed under `pruned` in a prune report.
fn pruned_ids(report: &serde_json::Value) -> BTreeSet<String> {
    report["pruned"].as_array().expect("pruned array").iter().map(|e| e["version"].as_str().unwrap().into()).collect()
}

/// `gc --json`; must succeed.
fn gc_json(v: &TestVolume) -> serde_json::Value {
    let out = v.run(&["--json", "gc"]);
    assert_ok(&out, "gc");
    json(&out.stdout)
}

fn num(v: &serde_json::Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("no number {key:?} in {v}"))
}

/// Replaces `from` by `to` in the node's config (which must contain `from`).
fn edit_config(v: &TestVolume, from: &str, to: &str) {
    let p = v.dir.join("local/config");
    let t = fs::read_to_string(&p).unwrap();
    assert!(t.contains(from), "config has no {from:?}:\n{t}");
    fs::write(&p, t.replacen(from, to, 1)).unwrap();
}

/// Sets the `[retention]` table of the node's config.
fn set_retention(v: &TestVolume, keep_last: u32, keep_within: &str, max_size: u64, auto: bool) {
    let p = v.dir.join("local/config");
    let t = fs::read_to_string(&p).unwrap();
    let start = t.find("[retention]").expect("config has [retention]");
    let end = t[start + 1..].find("\n[").map_or(t.len(), |i| start + 2 + i);
    let table = format!(
        "[retention]\nkeep_last = {keep_last}\nkeep_within = {keep_within:?}\nmax_history_size = {max_size}\nauto_prune = {auto}\n\n"
    );
    fs::write(&p, format!("{}{table}{}", &t[..start], &t[end..])).unwrap();
}

/// Every file under `local/hashes`: (count of block files `*.gz`, bytes of all files).
fn store_stats(v: &TestVolume) -> (usize, u64) {
    let mut n = 0;
    let mut bytes = 0;
    for e in walkdir::WalkDir::new(v.dir.join("local/hashes")).into_iter().filter_map(|e| e.ok()) {
        if e.file_type().is_file() {
            bytes += e.metadata().unwrap().len();
            if e.file_name().to_string_lossy().ends_with(".gz") {
                n += 1;
            }
        }
    }
    (n, bytes)
}

/// Manifest file of version `id` (or `latest`) of a plain-named path.
fn manifest_file(v: &TestVolume, path: &str, id: &str) -> PathBuf {
    v.dir.join("local/root").join(path).join("versions").join(id)
}

/// Block ids a manifest lists, in order.
fn blocks_of(v: &TestVolume, path: &str, id: &str) -> Vec<String> {
    let m = fs::read(manifest_file(v, path, id)).expect("read manifest");
    text(&m)
        .lines()
        .filter_map(|l| l.strip_prefix("block "))
        .map(|r| r.split(' ').next().unwrap().to_string())
        .collect()
}

/// Where block `hex` is stored in `v`.
fn block_file(v: &TestVolume, hex: &str) -> PathBuf {
    v.dir.join("local/hashes").join(&hex[0..2]).join(&hex[2..4]).join(format!("{}.gz", &hex[4..]))
}

/// Sets a file's modification time `ago` in the past.
fn age(path: &Path, ago: Duration) {
    let f = fs::File::options().write(true).open(path).expect("open to set mtime");
    f.set_modified(SystemTime::now() - ago).expect("set mtime");
}

/// Waits until the wall clock is in a later second than now (version times are compared
/// by the second).
fn next_second() {
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap();
    std::thread::sleep(Duration::from_nanos(1_000_000_000 - u64::from(now.subsec_nanos())) + Duration::from_millis(20));
}

/// Moves a node's directory away (an unmounted peer); returns where to.
fn unmount(v: &TestVolume) -> PathBuf {
    let away = v.tmp.path().join("away");
    fs::rename(&v.dir, &away).expect("move volume away");
    away
}

fn remount(v: &TestVolume, away: &Path) {
    fs::rename(away, &v.dir).expect("move volume back");
}

/// splitmix64, for sizes and delays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

// ---------------------------------------------------------------------------------------
// 1. keep-last over a long history, then gc frees the space
// ---------------------------------------------------------------------------------------

#[test]
fn keep_last_5_of_50_then_gc_frees_the_old_blocks() {
    let v = TestVolume::new(&[]);
    let data: Vec<Vec<u8>> = (0..50).map(|i| noise(200 * 1024 + i * 37, 1000 + i as u64)).collect();
    let ids: Vec<String> = data.iter().map(|d| v.write("f", d)).collect();
    let before = log_ids(&v, "f");
    assert_eq!(before, newest_first(&ids));
    let (blocks0, bytes0) = store_stats(&v);

    // --dry-run changes nothing and says what would go.
    let out = v.run(&["prune", "--keep-last", "5", "--dry-run"]);
    assert_ok(&out, "prune --dry-run");
    let t = text(&out.stdout);
    assert!(t.contains("would prune 45 versions"), "dry-run output: {t}");
    let dry = prune_json(&v, &["--keep-last", "5", "--dry-run"]);
    assert_eq!(dry["dry_run"], serde_json::Value::Bool(true));
    assert_eq!(pruned_ids(&dry), ids[..45].iter().cloned().collect::<BTreeSet<_>>(), "dry-run lists the 45 oldest");
    assert_eq!(log_ids(&v, "f"), before, "dry-run pruned something");
    assert_eq!(store_stats(&v), (blocks0, bytes0), "dry-run changed the block store");

    let report = prune_json(&v, &["--keep-last", "5"]);
    assert_eq!(pruned_ids(&report).len(), 45, "{report}");
    assert_eq!(num(&report, "kept"), 5);
    assert_eq!(log_ids(&v, "f"), before[..5].to_vec(), "the 5 newest stay");
    assert_eq!(store_stats(&v), (blocks0, bytes0), "prune alone must not delete blocks");

    let gc = gc_json(&v);
    assert!(num(&gc, "deleted") > 0 && num(&gc, "freed_bytes") > 0, "{gc}");
    let (blocks1, bytes1) = store_stats(&v);
    assert_eq!(num(&gc, "deleted") as usize, blocks0 - blocks1, "gc report vs store: {gc}");
    assert!(bytes1 * 5 < bytes0, "store went from {bytes0} to {bytes1} bytes: expected about 5/50");
    for (i, id) in ids[45..].iter().enumerate() {
        assert!(v.read(&format!("f@{id}")) == data[45 + i], "version {id} changed");
    }
    assert!(v.read("f") == data[49]);
    assert_ok(&v.run(&["verify"]), "verify");
    // A second gc finds nothing more to do.
    assert_eq!(num(&gc_json(&v), "deleted"), 0);
}

// ---------------------------------------------------------------------------------------
// 2. Policy details
// ---------------------------------------------------------------------------------------

#[test]
fn keep_within_keeps_recent_versions_and_zero_keeps_only_the_head() {
    let v = TestVolume::new(&[]);
    let ids: Vec<String> = (0..4).map(|i| v.write("f", &noise(10_000, 2000 + i))).collect();
    let r = prune_json(&v, &["--keep-within", "1h"]);
    assert!(pruned_ids(&r).is_empty(), "versions written now are within 1h: {r}");
    assert_eq!(log_ids(&v, "f").len(), 4);
    for d in ["1d", "2w", "90m", "3600"] {
        assert!(pruned_ids(&prune_json(&v, &["--keep-within", d])).is_empty(), "--keep-within {d}");
    }
    assert_error(&v.run(&["prune", "--keep-within", "soon"]), "duration");
    assert_error(&v.run(&["prune", "--keep-within", "5x"]), "unknown unit `x`");
    next_second();
    let r = prune_json(&v, &["--keep-within", "0s"]);
    assert_eq!(pruned_ids(&r).len(), 3, "{r}");
    assert_eq!(log_ids(&v, "f"), [ids[3].clone()], "the head always stays");
}

#[test]
fn max_size_caps_the_old_versions_newest_first() {
    let v = TestVolume::new(&[]);
    let ids: Vec<String> = (0..6).map(|i| v.write("f", &noise(100_000, 2100 + i))).collect();
    // The head is not history: two old versions (200000 bytes) fit under 250000, a third not.
    let r = prune_json(&v, &["--max-size", "250000"]);
    assert_eq!(pruned_ids(&r), ids[..3].iter().cloned().collect::<BTreeSet<_>>(), "{r}");
    assert_eq!(log_ids(&v, "f"), newest_first(&ids[3..]));
    assert_error(&v.run(&["prune", "--max-size", "lots"]), "size");
    let r = prune_json(&v, &["--max-size", "1KiB"]);
    assert_eq!(pruned_ids(&r).len(), 2);
    assert_eq!(log_ids(&v, "f"), [ids[5].clone()]);
}

#[test]
fn config_policy_applies_to_plain_prune_and_none_is_an_error() {
    let v = TestVolume::new(&[]);
    let ids: Vec<String> = (0..5).map(|i| v.write("f", &noise(5000, 2200 + i))).collect();
    let out = v.run(&["prune"]);
    assert_error(&out, "no retention policy");
    assert!(text(&out.stderr).contains("--keep-last"), "the message says how: {}", text(&out.stderr));
    assert_eq!(log_ids(&v, "f").len(), 5);
    set_retention(&v, 2, "", 0, false);
    let out = v.run(&["prune"]);
    assert_ok(&out, "prune by the config");
    assert!(text(&out.stdout).contains("pruned 3 versions"), "{}", text(&out.stdout));
    assert_eq!(log_ids(&v, "f"), newest_first(&ids[3..]));
    // Flags override the config.
    prune_json(&v, &["--keep-last", "1"]);
    assert_eq!(log_ids(&v, "f"), [ids[4].clone()]);
    // A bad keep_within in the config is refused with the config named.
    set_retention(&v, 0, "whenever", 0, false);
    assert_error(&v.run(&["prune"]), "config");
}

#[test]
fn auto_prune_keeps_the_last_3_after_each_write() {
    let v = TestVolume::new(&[]);
    set_retention(&v, 3, "", 0, true);
    let mut ids = Vec::new();
    for i in 0..7 {
        let out = v.run_with_input(&["write", "f"], &noise(8000, 2300 + i));
        assert_ok(&out, "write");
        assert!(!text(&out.stderr).contains("warning"), "auto prune warned: {}", text(&out.stderr));
        ids.push(text(&out.stdout).trim().to_string());
        let want = ids.len().min(3);
        assert_eq!(log_ids(&v, "f"), newest_first(&ids[ids.len() - want..]), "after write {i}");
    }
    // Other paths are left alone by an auto prune of f.
    set_retention(&v, 0, "", 0, false);
    for i in 0..4 {
        v.write("g", &noise(100, 2400 + i));
    }
    set_retention(&v, 3, "", 0, true);
    v.write("f", b"again");
    assert_eq!(log_ids(&v, "g").len(), 4, "auto prune after writing f touched g");
}

#[test]
fn paths_restrict_the_walk_and_tombstones_stay() {
    let v = TestVolume::new(&[]);
    for i in 0..4 {
        v.write("f", &noise(3000, 2500 + i));
        v.write("g", &noise(3000, 2510 + i));
        v.write("dir/h", &noise(3000, 2520 + i));
        v.write("dir/sub/k", &noise(3000, 2530 + i));
    }
    let r = prune_json(&v, &["--keep-last", "1", "f"]);
    assert_eq!(num(&r, "paths"), 1, "{r}");
    assert_eq!(log_ids(&v, "f").len(), 1);
    assert_eq!(log_ids(&v, "g").len(), 4, "a sibling lost versions");
    assert_eq!(log_ids(&v, "dir/h").len(), 4);
    prune_json(&v, &["--keep-last", "2", "dir"]);
    assert_eq!(log_ids(&v, "dir/h").len(), 2);
    assert_eq!(log_ids(&v, "dir/sub/k").len(), 2, "a directory argument covers its whole subtree");
    assert_eq!(log_ids(&v, "g").len(), 4);
    assert_error(&v.run(&["prune", "--keep-last", "1", "nosuch"]), "nosuch");
    assert_eq!(log_ids(&v, "g").len(), 4, "a failed prune pruned something");

    // A deleted file: its tombstone is the head and stays.
    let last = v.write("t", &noise(50_000, 2600));
    let older = v.write("t", &noise(50_000, 2601));
    let older2 = v.write("t", &noise(50_000, 2602));
    v.ok(&["rm", "t"]);
    let tomb = log_json(&v, "t")[0].clone();
    assert_eq!(tomb["kind"], "tombstone", "{tomb}");
    prune_json(&v, &["--keep-last", "2", "t"]);
    let log = log_json(&v, "t");
    assert_eq!(log.len(), 2);
    assert_eq!(log[0]["version"], tomb["version"]);
    assert_eq!(log[1]["version"].as_str(), Some(older2.as_str()));
    assert!(v.read(&format!("t@{older2}")) == noise(50_000, 2602));
    prune_json(&v, &["--keep-last", "1"]);
    let log = log_json(&v, "t");
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0]["kind"], "tombstone");
    assert!(!text(&v.ok(&["ls"])).lines().any(|l| l == "t"), "t came back");
    gc_json(&v);
    assert_ok(&v.run(&["verify"]), "verify");
    for id in [last, older] {
        assert_eq!(v.run(&["read", &format!("t@{id}")]).status.code(), Some(2));
    }
}

// ---------------------------------------------------------------------------------------
// 3. Protection: heads, conflicts, unpushed versions
// ---------------------------------------------------------------------------------------

#[test]
fn head_and_conflict_versions_are_never_pruned() {
    let (a, b) = (node("a"), node("b"));
    pair(&a, "a", &b, "b");
    let a1 = a.write("f", b"one");
    push(&a);
    receive(&b);
    let a2 = a.write("f", b"two from a");
    let b2 = b.write("f", b"two from b");
    push(&a);
    push(&b);
    receive(&a);
    assert_eq!(check(&a), 1, "expected a conflict on a");
    push(&a); // a now has nothing b has not received: only the conflict protects b2

    let out = a.run(&["prune", &format!("f@{a2}")]);
    assert_error(&out, "not pruned");
    assert!(text(&out.stderr).contains("current"), "{}", text(&out.stderr));
    assert_error(&a.run(&["prune", &format!("f@{a2}"), "--dry-run"]), "not pruned");
    let out = a.run(&["prune", &format!("f@{b2}")]);
    assert_error(&out, "not pruned");
    assert!(text(&out.stderr).contains("conflict"), "{}", text(&out.stderr));
    assert_error(&a.run(&["prune", "--keep-last", "1", &format!("f@{a1}")]), "no policy flags");

    let r = prune_json(&a, &["--keep-last", "1"]);
    assert_eq!(pruned_ids(&r), [a1.clone()].into_iter().collect(), "{r}");
    let ids = log_ids(&a, "f");
    assert!(ids.contains(&a2) && ids.contains(&b2), "{ids:?}");
    assert_eq!(check(&a), 1, "the conflict must still be there");
    gc_json(&a);
    let listing = text(&a.ok(&["ls", "-a"]));
    let conflict_file = listing.lines().find(|l| l.contains("conflict")).expect("conflict file listed").to_string();
    assert_eq!(a.read(&conflict_file), b"two from b");
    assert_eq!(a.read("f"), b"two from a");
    a.ok(&["resolve", "f", "--keep", "remote"]);
    assert_eq!(check(&a), 0);
    assert_eq!(a.read("f"), b"two from b");
    // Pruning a1 did not make the resolution look like a new conflict to b.
    push(&a);
    assert_eq!(check(&b), 0);
    assert_eq!(b.read("f"), b"two from b");
}

#[test]
fn versions_a_peer_has_not_received_are_kept_until_pushed() {
    let (a, b) = (node("a"), node("b"));
    pair(&a, "a", &b, "b");
    let ids: Vec<String> = (0..3).map(|i| a.write("f", &noise(20_000, 3000 + i))).collect();
    let r = prune_json(&a, &["--keep-last", "1"]);
    assert!(pruned_ids(&r).is_empty(), "{r}");
    assert_eq!(num(&r, "kept_unpushed"), 2, "{r}");
    let out = a.run(&["prune", "--keep-last", "1"]);
    assert_ok(&out, "prune");
    assert!(text(&out.stdout).contains("has not received"), "{}", text(&out.stdout));
    let out = a.run(&["prune", &format!("f@{}", ids[0])]);
    assert_error(&out, "not pruned");
    assert!(text(&out.stderr).contains("push"), "{}", text(&out.stderr));
    assert_eq!(log_ids(&a, "f").len(), 3);

    // The peer unmounted: still kept (the push will want them).
    let away = unmount(&b);
    assert_eq!(a.run(&["push"]).status.code(), Some(1), "push to an unreachable peer");
    let r = prune_json(&a, &["--keep-last", "1"]);
    assert!(pruned_ids(&r).is_empty(), "{r}");
    assert_eq!(num(&r, "kept_unpushed"), 2);
    assert_eq!(log_ids(&a, "f").len(), 3);
    remount(&b, &away);

    push(&a);
    let r = prune_json(&a, &["--keep-last", "1"]);
    assert_eq!(pruned_ids(&r), ids[..2].iter().cloned().collect::<BTreeSet<_>>(), "{r}");
    assert_eq!(num(&r, "kept_unpushed"), 0);
    assert_eq!(log_ids(&a, "f"), [ids[2].clone()]);
    // b got all three.
    assert_eq!(log_ids(&b, "f"), newest_first(&ids));

    // A new version, then a second peer added: unpushed to it, so kept again.
    let c = node("c");
    let v4 = a.write("f", b"four");
    push(&a);
    pair(&a, "a", &c, "c");
    let v5 = a.write("f", b"five");
    let r = prune_json(&a, &["--keep-last", "1"]);
    assert!(pruned_ids(&r).is_empty(), "c has received nothing: {r}");
    assert_eq!(num(&r, "kept_unpushed"), 2, "{r}");
    push(&a);
    let r = prune_json(&a, &["--keep-last", "1"]);
    assert_eq!(pruned_ids(&r), [ids[2].clone(), v4.clone()].into_iter().collect(), "{r}");
    assert_eq!(log_ids(&c, "f"), [v5, v4, ids[2].clone()], "c gets what a still had");
}

// ---------------------------------------------------------------------------------------
// 4. Lineage: pruned versions still link children to parents
// ---------------------------------------------------------------------------------------

#[test]
fn pruned_lineage_keeps_fast_forwards_and_pruned_versions_stay_gone() {
    let (a, b, c) = (node("a"), node("b"), node("c"));
    pair(&a, "a", &b, "b");
    pair(&a, "a", &c, "c");
    pair(&b, "b", &c, "c");
    let ids: Vec<String> = (1..=5).map(|i| a.write("f", format!("v{i}").as_bytes())).collect();
    push(&a);
    receive(&b);
    receive(&c);
    assert_eq!(log_ids(&b, "f"), newest_first(&ids));
    // c reads every version: it holds their blocks, so a's prunes leave its copies alone.
    for id in &ids {
        c.read(&format!("f@{id}"));
    }

    // a prunes v2..v4 one by one (v1 and the head v5 stay).
    for id in &ids[1..4] {
        let out = a.run(&["prune", &format!("f@{id}")]);
        assert_ok(&out, "prune PATH@ID");
        assert!(text(&out.stdout).contains(id.as_str()), "{}", text(&out.stdout));
    }
    assert_eq!(log_ids(&a, "f"), [ids[4].clone(), ids[0].clone()]);
    // b does the same (after a push, so that a counts as having everything b holds).
    push(&b);
    for id in &ids[1..4] {
        b.ok(&["prune", &format!("f@{id}")]);
    }
    assert_eq!(log_ids(&b, "f"), [ids[4].clone(), ids[0].clone()]);

    let v6 = a.write("f", b"v6");
    push(&a);
    assert_eq!(check(&b), 0, "b must fast-forward to v6");
    assert_eq!(log_ids(&b, "f"), [v6.clone(), ids[4].clone(), ids[0].clone()]);
    assert_eq!(b.read("f"), b"v6");
    push(&b);
    assert_eq!(check(&a), 0);
    assert_eq!(log_ids(&a, "f"), [v6.clone(), ids[4].clone(), ids[0].clone()]);

    // c never pruned (it can read them all): it sends b all of v1..v6. v1 is an ancestor of b's head only through
    // the pruned v2..v4; the pruned ones must not come back.
    let out = push(&c);
    assert!(out.contains("b: 6 versions pushed"), "{out}");
    assert_eq!(check(&b), 0, "v1 from c was taken for a conflict");
    assert_eq!(log_ids(&b, "f"), [v6.clone(), ids[4].clone(), ids[0].clone()], "pruned versions came back");
    assert_eq!(b.read("f"), b"v6");

    // b prunes down to its head; then b loses a's log (restored from a backup, say), so a
    // sends its whole journal again: what b pruned stays pruned, the new version lands.
    push(&b);
    prune_json(&b, &["--keep-last", "1"]);
    assert_eq!(log_ids(&b, "f"), std::slice::from_ref(&v6));
    let a_uuid = {
        let t: toml::Table = fs::read_to_string(a.dir.join("local/config")).unwrap().parse().unwrap();
        t["uuid"].as_str().unwrap().to_string()
    };
    let updates = b.dir.join("local/upstream").join(&a_uuid).join("updates");
    assert!(updates.is_dir(), "no log of a in b");
    for e in fs::read_dir(&updates).unwrap() {
        fs::remove_file(e.unwrap().path()).unwrap();
    }
    let v7 = a.write("f", b"v7");
    let out = push(&a);
    // Its journal minus what a pruned: v1, v5, v6, v7.
    assert!(out.contains("b: 4 versions pushed"), "a did not resend its journal: {out}");
    assert_eq!(check(&b), 0);
    assert_eq!(log_ids(&b, "f"), [v7, v6], "a's resent versions resurrected pruned ones on b");
    assert_eq!(b.read("f"), b"v7");
}

/// Three nodes whose clocks disagree, F a year ahead and P a day behind N, edit one file in
/// the causal order F, P, N, N. Order comes from the graph on every node: `log` lists the
/// head first, `--keep-last 2` keeps the two last edits (also across a pruned ancestor), and
/// `--keep-within 30d` on the node a year ahead prunes nobody's recent edits, before and
/// after an edit of its own.
#[test]
fn order_comes_from_the_graph_when_clocks_disagree() {
    if let Some(why) = faketime_missing() {
        eprintln!("order_comes_from_the_graph_when_clocks_disagree skipped: {why}");
        return;
    }
    const AHEAD: &str = "+365d";
    const BEHIND: &str = "-1d";
    let (f, p, n) = (node("fast"), node("slow"), node("right"));
    pair(&f, "fast", &p, "slow");
    pair(&p, "slow", &n, "right");
    pair(&n, "right", &f, "fast");
    let e1 = f.write_at(AHEAD, "doc", b"edit 1");
    f.ok_at(AHEAD, &["push"]);
    let e2 = p.write_at(BEHIND, "doc", b"edit 2");
    p.ok_at(BEHIND, &["push"]);
    let e3 = n.write("doc", b"edit 3");
    let e4 = n.write("doc", b"edit 4");
    // Everyone receives and forwards everything, so no version is held back as unpushed.
    for _ in 0..2 {
        push(&n);
        f.ok_at(AHEAD, &["push"]);
        p.ok_at(BEHIND, &["push"]);
    }
    let causal = [e4.clone(), e3.clone(), e2.clone(), e1.clone()];
    assert!(e1 > e4 && e4 > e2, "the clocks were not moved: {causal:?}");
    assert_eq!(log_ids(&n, "doc"), causal, "log on N is not newest first");
    let on = |v: &TestVolume, at: &str| -> Vec<String> {
        json(&v.ok_at(at, &["--json", "log", "doc"]))
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["version"].as_str().unwrap().into())
            .collect()
    };
    assert_eq!(on(&f, AHEAD), causal, "log on F is not newest first");
    assert_eq!(on(&p, BEHIND), causal, "log on P is not newest first");
    assert_eq!(n.read("doc"), b"edit 4");

    let dry = prune_json(&n, &["--dry-run", "--keep-last", "2", "doc"]);
    assert_eq!(pruned_ids(&dry), [e1.clone(), e2.clone()].into(), "keep-last 2 on N: {dry}");
    let within = |v: &TestVolume, at: &str| {
        let out = v.cmd_at(at, &["--json", "prune", "--dry-run", "--keep-within", "30d", "doc"]).output().unwrap();
        assert_ok(&out, "prune --keep-within");
        pruned_ids(&json(&out.stdout))
    };
    assert_eq!(within(&n, "+0d"), BTreeSet::new(), "keep-within 30d on N");
    assert_eq!(within(&p, BEHIND), BTreeSet::new(), "keep-within 30d on P");
    assert_eq!(within(&f, AHEAD), BTreeSet::new(), "keep-within 30d on F, a year ahead");

    // Across a pruned ancestor: e3 descends from e1 only through the pruned e2.
    n.ok(&["prune", &format!("doc@{e2}")]);
    assert_eq!(log_ids(&n, "doc"), [e4.clone(), e3.clone(), e1.clone()], "log across a pruned version");
    let report = prune_json(&n, &["--keep-last", "2", "doc"]);
    assert_eq!(pruned_ids(&report), [e1.clone()].into(), "keep-last 2 after a pruned version: {report}");
    assert_eq!(log_ids(&n, "doc"), [e4.clone(), e3.clone()]);

    // F edits (its clock says a year has gone by since e2..e4) and prunes what it touched.
    let e5 = f.write_at(AHEAD, "doc", b"edit 5");
    assert_eq!(within(&f, AHEAD), BTreeSet::new(), "keep-within 30d on F after its own edit");
    let report = {
        let out = f.cmd_at(AHEAD, &["--json", "prune", "--keep-last", "3", "doc"]).output().unwrap();
        assert_ok(&out, "prune on F");
        json(&out.stdout)
    };
    assert_eq!(pruned_ids(&report), [e1.clone(), e2.clone()].into(), "keep-last 3 on F: {report}");
    assert_eq!(on(&f, AHEAD), [e5, e4, e3]);
}

// ---------------------------------------------------------------------------------------
// 5. A peer's prune and gc vs our reads
// ---------------------------------------------------------------------------------------

#[test]
fn peer_prune_keeps_mirrored_reads_and_fails_cleanly_on_never_pulled_blocks() {
    let (a, b) = (node("a"), node("b"));
    pair(&a, "a", &b, "b");
    let d1 = noise(600_000, 5001);
    let d2 = noise(600_000, 5002);
    let mut d3 = d2.clone();
    d3.truncate(540_000);
    d3.extend_from_slice(&noise(60_000, 5003)); // shares its first blocks with v2
    let d4 = noise(600_000, 5004);
    let ids: Vec<String> = [&d1, &d2, &d3, &d4].iter().map(|d| a.write("f", d)).collect();
    push(&a);
    let out = b.run(&["mirror"]);
    assert_ok(&out, "mirror");
    assert!(b.read(&format!("f@{}", ids[1])) == d2, "b pulls v2 by reading it");
    let v2_blocks = blocks_of(&b, "f", &ids[1]);
    let v3_blocks = blocks_of(&b, "f", &ids[2]);
    assert!(v3_blocks.len() >= 2 && v3_blocks[0] == v2_blocks[0], "v3 should share its first block with v2");
    let unpulled: Vec<&String> = v3_blocks.iter().filter(|x| !v2_blocks.contains(x)).collect();
    assert!(!unpulled.is_empty());

    let r = prune_json(&a, &["--keep-last", "1"]);
    assert_eq!(pruned_ids(&r).len(), 3, "{r}");
    assert!(num(&gc_json(&a), "deleted") > 0);

    // b still has its manifests of v1..v4 (prune is local).
    assert_eq!(log_ids(&b, "f").len(), 4);
    assert!(b.read("f") == d4);
    assert!(b.read(&format!("f@{}", ids[1])) == d2);

    // v1: nothing local, and a freed its blocks.
    let out = b.run(&["read", &format!("f@{}", ids[0])]);
    assert_error(&out, "missing");
    let err = text(&out.stderr);
    assert!(err.contains("block"), "{err}");
    assert!(err.contains(&blocks_of(&b, "f", &ids[0])[0]), "the error names the block: {err}");
    assert!(out.stdout.is_empty(), "{} bytes on stdout", out.stdout.len());
    // v3: its first blocks are local (shared with v2), its last one is gone everywhere.
    let out = b.run(&["read", &format!("f@{}", ids[2])]);
    assert_error(&out, "missing");
    assert!(text(&out.stderr).contains(unpulled[0].as_str()), "{}", text(&out.stderr));
    assert!(
        out.stdout.len() < d3.len() && d3.starts_with(&out.stdout),
        "stdout of a failed read is not a prefix of the version ({} bytes)",
        out.stdout.len()
    );

    println!("failed read of v3 wrote {} of {} bytes to stdout", out.stdout.len(), d3.len());
    // With a gone, b's versions come from b's own blocks.
    let away = unmount(&a);
    assert!(b.read("f") == d4);
    assert!(b.read(&format!("f@{}", ids[1])) == d2);
    remount(&a, &away);
}

/// `mv`, `restore` and `resolve` on b reuse content b never read: they fetch its blocks from
/// a first, so a's prune and gc of the source versions (before a hears of the new ones)
/// leave b's new versions readable.
#[test]
fn versions_made_from_a_peers_content_survive_its_prune_and_gc() {
    let (a, b) = (node("a"), node("b"));
    pair(&a, "a", &b, "b");
    let df = noise(400_000, 5101);
    let dh = noise(300_000, 5102);
    a.write("f", &df);
    let h_old = a.write("h", &dh);
    a.write("h", b"h now");
    a.write("k", b"k base");
    push(&a);
    receive(&b);
    let dka = noise(250_000, 5103);
    a.write("k", &dka);
    b.write("k", b"k from b");
    push(&a);
    receive(&b);
    assert_eq!(check(&b), 1, "expected a conflict on k");

    b.ok(&["mv", "f", "f2"]);
    b.ok(&["restore", &format!("h@{h_old}")]);
    b.ok(&["resolve", "k", "--keep", "remote"]);

    // a moves on before hearing of any of it, prunes everything old and collects.
    a.write("f", b"f now");
    a.write("k", b"k now");
    push(&a);
    receive(&b);
    let r = prune_json(&a, &["--keep-last", "1"]);
    assert!(pruned_ids(&r).len() >= 4, "{r}");
    assert!(num(&gc_json(&a), "deleted") > 0);

    assert!(b.read("f2") == df, "mv on b lost its blocks to a's gc");
    assert!(b.read("h") == dh, "restore on b lost its blocks");
    let k_versions = log_json(&b, "k");
    let resolved =
        k_versions.iter().find(|v| v["parents"].as_array().is_some_and(|p| p.len() == 2)).expect("resolution");
    assert!(b.read(&format!("k@{}", resolved["version"].as_str().unwrap())) == dka, "resolve on b lost its blocks");
    // (b's copy of "k base", never read, is gone with a's gc: that is expected.)
}

// ---------------------------------------------------------------------------------------
// 6. gc racing an import (and a prune) in other processes
// ---------------------------------------------------------------------------------------

#[test]
fn gc_racing_import_loses_nothing() {
    let v = TestVolume::new(&[]);
    let seed = std::env::var("GLOBOFS_GC_RACE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos() as u64);
    println!("gc race seed {seed} (GLOBOFS_GC_RACE_SEED replays)");
    let mut rng = Rng(seed);
    let start = Instant::now();
    let (mut rounds, mut lost, mut gc_first) = (0, 0, 0);
    while rounds < 20 && (rounds < 3 || start.elapsed() < Duration::from_secs(25)) {
        // X's blocks are stored and named by no version once `old` is overwritten and pruned.
        let x = noise(rng.range(200_000, 400_000) as usize, rng.next());
        v.write("old", &x);
        let x_blocks: BTreeSet<String> = blocks_of(&v, "old", "latest").into_iter().collect();
        v.write("old", &noise(100, rng.next()));
        prune_json(&v, &["--keep-last", "1", "old"]);

        let src = v.scratch(&format!("src{rounds}"));
        let mut want = Vec::new();
        for i in 0..50 {
            let name = if i % 5 == 0 { format!("d/f{i:02}") } else { format!("f{i:02}") };
            let content = match i % 10 {
                0 | 1 => x.clone(),
                2 => {
                    let mut c = x.clone();
                    c.extend_from_slice(&noise(1000, rng.next()));
                    c
                }
                _ => noise(rng.range(0, 20_000) as usize, rng.next()),
            };
            let p = src.join(&name);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, &content).unwrap();
            want.push((name, content));
        }
        let dest = format!("r{rounds}");
        // Either may start first: the import then reuses X's stored blocks (gc must wait for
        // its commit), or gc frees them under the import's feet (the import must store them).
        let spawn_import = || v.cmd(&["import", s(&src), &dest]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn();
        let spawn_gc = || v.cmd(&["--json", "gc"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn();
        let (import, gc) = if rng.next() % 2 == 0 {
            let import = spawn_import().unwrap();
            std::thread::sleep(Duration::from_millis(rng.range(0, 30)));
            (import, spawn_gc().unwrap())
        } else {
            let gc = spawn_gc().unwrap();
            std::thread::sleep(Duration::from_millis(rng.range(0, 15)));
            (spawn_import().unwrap(), gc)
        };
        std::thread::sleep(Duration::from_millis(rng.range(0, 20)));
        let prune = v.cmd(&["prune", "--keep-last", "1"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let import = import.wait_with_output().unwrap();
        let gc = gc.wait_with_output().unwrap();
        let prune = prune.wait_with_output().unwrap();
        assert_ok(&import, "import");
        assert_ok(&gc, "gc");
        assert_ok(&prune, "prune");
        // X's blocks (and the previous round's small `old`) were garbage when gc started.
        let garbage = x_blocks.len() + usize::from(rounds > 0);
        if num(&json(&gc.stdout), "deleted") as usize >= garbage {
            gc_first += 1;
        }

        let out = v.scratch(&format!("out{rounds}"));
        fs::remove_dir(&out).unwrap();
        assert_ok(&v.run(&["export", &dest, s(&out)]), "export");
        for (name, content) in &want {
            if fs::read(out.join(name)).ok().as_ref() != Some(content) {
                lost += 1;
                eprintln!("round {rounds}: {dest}/{name} does not read back");
            }
        }
        let verify = v.run(&["verify"]);
        assert_ok(&verify, &format!("verify after round {rounds}"));
        rounds += 1;
        // Start the next round from a store with no garbage from this one.
        let _ = fs::remove_dir_all(&src);
        let _ = fs::remove_dir_all(&out);
    }
    println!("figure: gc-race rounds={rounds} lost={lost} gc-freed-x-first={gc_first}");
    assert_eq!(lost, 0, "files lost in {rounds} rounds (seed {seed})");
}

/// Waits (bounded) until process `pid` sleeps on a file lock (Linux `/proc/PID/wchan`);
/// elsewhere, gives it a moment.
fn wait_for_lock_wait(child: &mut std::process::Child) {
    let wchan = PathBuf::from(format!("/proc/{}/wchan", child.id()));
    if !wchan.exists() {
        std::thread::sleep(Duration::from_millis(500));
        return;
    }
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if fs::read_to_string(&wchan).is_ok_and(|w| w.contains("lock")) {
            return;
        }
        if child.try_wait().unwrap().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `restore f@X` decides what to restore before it takes the commit lock. Here it queues on
/// that lock behind `prune f@X` and a `gc` (the lock is held by the test while they line
/// up): whichever order they then run in, the restore must either bring X back readable or
/// fail, never commit a head naming blocks the gc freed.
#[test]
fn restore_racing_prune_and_gc_never_names_freed_blocks() {
    use fs2::FileExt;
    let v = TestVolume::new(&[]);
    let x = noise(300_000, 6501);
    let xid = v.write("f", &x);
    let y = noise(1000, 6502);
    v.write("f", &y);
    let lock = fs::File::options().append(true).open(v.dir.join("local/state/lock")).expect("commit lock file");
    lock.lock_exclusive().unwrap();
    let spawn = |args: &[&str]| v.cmd(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let spec = format!("f@{xid}");
    let mut prune = spawn(&["prune", &spec]);
    wait_for_lock_wait(&mut prune);
    let mut gc = spawn(&["gc"]);
    wait_for_lock_wait(&mut gc);
    let mut restore = spawn(&["restore", &spec]);
    wait_for_lock_wait(&mut restore);
    fs2::FileExt::unlock(&lock).unwrap();
    let (prune, gc, restore) =
        (prune.wait_with_output().unwrap(), gc.wait_with_output().unwrap(), restore.wait_with_output().unwrap());
    assert_ok(&prune, "prune");
    assert_ok(&gc, "gc");
    let read = v.run(&["read", "f"]);
    if restore.status.success() {
        assert!(
            read.status.success() && read.stdout == x,
            "restore exited 0 but f does not read back as X (read exit {:?}: {})",
            read.status.code(),
            text(&read.stderr)
        );
    } else {
        assert_eq!(restore.status.code(), Some(2), "{}", text(&restore.stderr));
        assert!(read.stdout == y, "a failed restore changed f");
    }
    let verify = v.run(&["verify"]);
    assert_ok(&verify, "verify");
}

// ---------------------------------------------------------------------------------------
// 7. gc safety: temp files, corrupt manifests, strays
// ---------------------------------------------------------------------------------------

#[test]
fn gc_sweeps_stale_temps_keeps_fresh_ones_and_strays_and_stops_on_a_corrupt_manifest() {
    let v = TestVolume::new(&[]);
    let f1 = v.write("f", &noise(300_000, 7001));
    let f2 = v.write("f", &noise(300_000, 7002));
    let g1 = v.write("g", &noise(300_000, 7003));
    let g2 = v.write("g", &noise(300_000, 7004));
    let hashes = v.dir.join("local/hashes");
    let cell = hashes.join("ab/cd");
    fs::create_dir_all(&cell).unwrap();
    let stale = cell.join(".tmp-123-0123456789ab");
    let fresh = cell.join(".tmp-456-ba9876543210");
    let stray = cell.join("notes.txt");
    let stray_top = hashes.join("README.stray");
    let vtmp = manifest_file(&v, "f", ".tmp-789-abcdefabcdef");
    for p in [&stale, &fresh, &stray, &stray_top, &vtmp] {
        fs::write(p, b"leftover").unwrap();
    }
    age(&stale, Duration::from_secs(3600));
    age(&vtmp, Duration::from_secs(3600));
    let (blocks0, _) = store_stats(&v);

    let r = gc_json(&v);
    assert_eq!(num(&r, "temp_files"), 2, "{r}");
    assert_eq!(num(&r, "deleted"), 0, "{r}");
    assert!(!stale.exists(), "stale temp block kept");
    assert!(!vtmp.exists(), "stale temp manifest kept");
    assert!(fresh.exists(), "a fresh temp block (maybe a pull in progress) was removed");
    assert!(stray.exists() && stray_top.exists(), "gc removed a file it does not know");
    assert_eq!(store_stats(&v).0, blocks0);
    assert_eq!(v.read("f"), noise(300_000, 7002));

    // Garbage to collect, and a corrupt manifest elsewhere: gc refuses and deletes nothing.
    let f1_blocks: BTreeSet<String> = blocks_of(&v, "f", &f1).into_iter().collect();
    prune_json(&v, &["--keep-last", "1", "f"]);
    let bad = manifest_file(&v, "g", &g1);
    let good = fs::read(&bad).unwrap();
    let mut broken = good.clone();
    let mid = broken.len() / 2;
    broken[mid] ^= 0x20;
    fs::write(&bad, &broken).unwrap();
    let out = v.run(&["gc"]);
    assert_error(&out, "corrupt");
    assert_eq!(store_stats(&v).0, blocks0, "gc deleted blocks after failing to read a manifest");
    assert!(fresh.exists() && stray.exists());
    assert!(v.read(&format!("f@{f2}")) == noise(300_000, 7002));

    // Repaired: gc frees f1's blocks only.
    fs::write(&bad, &good).unwrap();
    let r = gc_json(&v);
    assert_eq!(num(&r, "deleted") as usize, f1_blocks.len(), "{r}");
    assert!(f1_blocks.iter().all(|x| !block_file(&v, x).exists()), "f1's blocks are still there");
    assert_eq!(store_stats(&v).0, blocks0 - f1_blocks.len());
    assert!(v.read(&format!("g@{g1}")) == noise(300_000, 7003));
    assert!(v.read(&format!("g@{g2}")) == noise(300_000, 7004));
    assert!(v.read("f") == noise(300_000, 7002));
    assert_eq!(v.run(&["read", &format!("f@{f1}")]).status.code(), Some(2));
}

// ---------------------------------------------------------------------------------------
// 8. cacheonly eviction
// ---------------------------------------------------------------------------------------

#[test]
fn cacheonly_gc_evicts_pulled_blocks_only_while_a_peer_holds_them() {
    let (a, b) = (node("a"), node("b"));
    pair(&a, "a", &b, "b");
    edit_config(&b, "cacheonly = false", "cacheonly = true");
    edit_config(&b, "cachetime = \"30m\"", "cachetime = \"0s\"");
    let data = noise(700_000, 8001);
    a.write("f", &data);
    let mine = noise(300_000, 8002);
    b.write("mine", &mine);
    push(&a);
    receive(&b);
    let f_blocks: BTreeSet<String> = blocks_of(&b, "f", "latest").into_iter().collect();
    let mine_blocks = blocks_of(&b, "mine", "latest");
    assert!(f_blocks.len() >= 2);
    assert!(f_blocks.iter().all(|x| !block_file(&b, x).exists()), "nothing pulled yet");
    assert!(b.read("f") == data);
    assert!(f_blocks.iter().all(|x| block_file(&b, x).exists()), "reading pulls the blocks");

    let r = gc_json(&b);
    assert_eq!(num(&r, "evicted") as usize, f_blocks.len(), "{r}");
    assert_eq!(num(&r, "deleted"), 0, "{r}");
    assert!(f_blocks.iter().all(|x| !block_file(&b, x).exists()), "pulled blocks not evicted");
    assert!(mine_blocks.iter().all(|x| block_file(&b, x).exists()), "b's own blocks were evicted");
    assert!(b.read("f") == data, "pulled again from a");
    assert!(b.read("mine") == mine);

    // a's copy of one block is damaged: that one is not evicted on its account.
    let damaged = f_blocks.iter().next().unwrap().clone();
    let theirs = block_file(&a, &damaged);
    let good = fs::read(&theirs).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    fs::write(&theirs, &bad).unwrap();
    let r = gc_json(&b);
    assert_eq!(num(&r, "evicted") as usize, f_blocks.len() - 1, "{r}");
    assert!(block_file(&b, &damaged).exists(), "evicted on account of a damaged copy");
    fs::write(&theirs, &good).unwrap();
    assert!(b.read("f") == data);

    // a unreachable: nothing can be evicted, and b reads from its cache.
    let away = unmount(&a);
    let r = gc_json(&b);
    assert_eq!(num(&r, "evicted"), 0, "{r}");
    assert!(f_blocks.iter().all(|x| block_file(&b, x).exists()));
    assert!(b.read("f") == data);
    remount(&a, &away);

    // a pruned and collected f's blocks (f deleted): b must keep its only copies.
    a.ok(&["rm", "f"]);
    push(&a);
    prune_json(&a, &["--keep-last", "1"]);
    gc_json(&a);
    assert!(f_blocks.iter().all(|x| !block_file(&a, x).exists()), "a still has f's blocks");
    let r = gc_json(&b);
    assert_eq!(num(&r, "evicted"), 0, "b evicted blocks no peer holds: {r}");
    let old = log_ids(&b, "f")[1].clone();
    assert!(b.read(&format!("f@{old}")) == data);
    assert_ok(&b.run(&["verify"]), "verify on b");
}

/// A prune travels with the logs: a node that received versions but never fetched their
/// blocks drops them once their maker prunes them (so its `verify` stays clean and `log`
/// lists what it can read), keeps those it can still read, and passes the prune on to its
/// own peers.
#[test]
fn a_prune_travels_to_peers_that_cannot_read_the_pruned_versions() {
    let (a, b, c) = (node("a"), node("b"), node("c"));
    pair(&a, "a", &b, "b");
    pair(&b, "b", &c, "c");
    let data: Vec<Vec<u8>> = (0..3).map(|i| noise(300_000, 7101 + 2 * i)).collect();
    let ids: Vec<String> = data.iter().map(|d| a.write("f", d)).collect();
    push(&a);
    assert_ok(&b.run(&["mirror"]), "mirror on b");
    assert!(b.read(&format!("f@{}", ids[1])) == data[1], "b reads v2, so it holds v2's blocks");
    push(&b);
    assert_ok(&c.run(&["mirror"]), "mirror on c");
    assert_eq!(log_ids(&c, "f").len(), 3);

    assert_eq!(pruned_ids(&prune_json(&a, &["--keep-last", "1"])).len(), 2);
    assert!(num(&gc_json(&a), "deleted") > 0);
    let out = push(&a);
    assert!(out.contains("b: 2 prunes and revocations passed on"), "push does not say it sent the prunes: {out}");
    receive(&b);
    // v1 is unreadable anywhere: pruned on b too; v2's blocks are on b: kept.
    assert_eq!(log_ids(&b, "f"), [ids[2].clone(), ids[1].clone()]);
    assert!(b.read(&format!("f@{}", ids[1])) == data[1]);
    assert_ok(&b.run(&["verify"]), "verify on b");
    assert_error(&b.run(&["read", &format!("f@{}", ids[0])]), &ids[0]);
    // c hears of v1's prune from b, and reads v2 through b.
    push(&b);
    receive(&c);
    assert_eq!(log_ids(&c, "f"), [ids[2].clone(), ids[1].clone()]);
    assert_ok(&c.run(&["verify"]), "verify on c");
    assert!(c.read(&format!("f@{}", ids[1])) == data[1]);
    // The prune does not come back, and nothing is left to push in any direction.
    for v in [&a, &b, &c] {
        push(v);
    }
    for v in [&a, &b, &c] {
        receive(v);
        assert!(v.run(&["verify"]).status.success());
    }
    assert_eq!(log_ids(&a, "f"), [ids[2].clone()]);
    assert_eq!(log_ids(&c, "f"), [ids[2].clone(), ids[1].clone()]);
}

/// keep-within still prunes a file two nodes edited: an edit made after another node's
/// version ages on its own clock (one version of another node, which cannot be aged, does
/// not keep the file's later history forever).
#[test]
fn keep_within_prunes_old_edits_of_a_file_another_node_edited() {
    if let Some(why) = faketime_missing() {
        eprintln!("keep_within_prunes_old_edits_of_a_file_another_node_edited skipped: {why}");
        return;
    }
    let (k1, k2) = (node("k1"), node("k2"));
    pair(&k1, "k1", &k2, "k2");
    let theirs = k2.write("doc", b"from k2");
    push(&k2);
    receive(&k1);
    let mine: Vec<String> = (0..4).map(|i| k1.write("doc", format!("edit {i}").as_bytes())).collect();
    push(&k1);
    let out = k1.cmd_at("+40d", &["--json", "prune", "--dry-run", "--keep-within", "30d", "doc"]).output().unwrap();
    assert_ok(&out, "prune --keep-within 30d, 40 days on");
    let want: BTreeSet<String> = mine[..3].iter().cloned().collect();
    assert_eq!(pruned_ids(&json(&out.stdout)), want, "k2's version ({theirs}) is kept, k1's old edits go");
}

/// A version received from a peer is not "waiting to be pushed" back to it: `status` counts
/// nothing for it, and prune may drop it at once (the peer made it, it has it).
#[test]
fn versions_a_peer_made_are_not_waiting_to_go_back_to_it() {
    let (a, b) = (node("a"), node("b"));
    pair(&a, "a", &b, "b");
    for i in 0..3 {
        b.write("f", format!("v{i}").as_bytes());
    }
    push(&b);
    receive(&a);
    let status = text(&a.ok(&["status"]));
    assert!(status.contains("0 versions to push"), "{status}");
    let r = prune_json(&a, &["--keep-last", "1"]);
    assert_eq!(pruned_ids(&r).len(), 2, "prune kept b's own versions as unpushed: {r}");
}
