//! Conflicts between nodes, driven through the real binary with volumes named by
//! `init --name` (so conflict files are `.f.conflict-a`, `.f.conflict-b`...), each the peer of
//! the others. Follows the sharebox scenarios: simple sync both ways; a normal conflict seen
//! from both sides (`ls -a`, `read`, `status --check`/`--json`, `log --json`); resolving by
//! `rm` of the conflict file (keep local) and by `mv` over the file (take remote), and with
//! `resolve --keep local|remote`, each propagating to the other node without a new conflict;
//! delete-vs-modify (nothing lost, resolvable either way); three nodes editing at once; clock
//! skew (parents decide, never times: crafted log records with ids and times a day off);
//! two conflicts from nodes with the same name (`-2`); `restore`; and writing on a path that
//! is in conflict.

use crate::util::*;
use sha2::{Digest, Sha256};
use std::fs;
use std::process::Output;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn node(name: &str) -> TestVolume {
    TestVolume::named(name)
}

/// No panic, no warning (a refused record, a failed apply) on stderr.
fn assert_quiet(out: &Output, what: &str) {
    let err = text(&out.stderr);
    assert!(!err.contains("panicked") && !err.contains("internal error"), "{what}: panic: {err}");
    assert!(!err.contains("warning"), "{what}: unexpected warning: {err}");
}

/// Makes every node a peer of every other, each peer directory named after the node.
fn mesh(nodes: &[(&TestVolume, &str)]) {
    for (x, _) in nodes {
        for (y, yn) in nodes {
            if !std::ptr::eq(*x, *y) {
                x.ok(&["peer", "add", yn, s(&y.dir)]);
            }
        }
    }
}

/// `push` to every peer; must exit 0 with nothing on stderr.
fn push(v: &TestVolume) {
    let out = v.run(&["push"]);
    assert_eq!(out.status.code(), Some(0), "push failed: {}", text(&out.stderr));
    assert_quiet(&out, "push");
}

/// Applies received logs (any command but `peer` does) and checks nothing was refused.
fn receive(v: &TestVolume) {
    let out = v.run(&["status"]);
    assert_eq!(out.status.code(), Some(0), "status failed: {}", text(&out.stderr));
    assert_quiet(&out, "status");
}

/// Exit code of `status --check` (0: no conflict, 1: conflicts).
fn check(v: &TestVolume) -> i32 {
    let out = v.run(&["status", "--check"]);
    assert_quiet(&out, "status --check");
    out.status.code().expect("exit code")
}

fn status_json(v: &TestVolume) -> serde_json::Value {
    json(&v.ok(&["status", "--json"]))
}

/// `ls -a` of the root, one name per line.
fn ls_a(v: &TestVolume) -> Vec<String> {
    text(&v.ok(&["ls", "-a"])).lines().map(str::to_string).collect()
}

fn ls(v: &TestVolume) -> Vec<String> {
    text(&v.ok(&["ls"])).lines().map(str::to_string).collect()
}

fn log_json(v: &TestVolume, path: &str) -> Vec<serde_json::Value> {
    json(&v.ok(&["log", "--json", path])).as_array().expect("log --json gives an array").clone()
}

/// The head of `path` and its conflict heads (sorted), from `log --json`.
fn heads(v: &TestVolume, path: &str) -> (String, Vec<String>) {
    let log = log_json(v, path);
    let ids = |key: &str| -> Vec<String> {
        let mut ids: Vec<String> =
            log.iter().filter(|e| e[key] == true).map(|e| e["version"].as_str().unwrap().to_string()).collect();
        ids.sort();
        ids
    };
    let head = ids("head");
    assert_eq!(head.len(), 1, "exactly one head expected: {log:#?}");
    (head[0].clone(), ids("conflict_head"))
}

/// Parents of version `id` of `path`, sorted, from `log --json`.
fn parents(v: &TestVolume, path: &str, id: &str) -> Vec<String> {
    let log = log_json(v, path);
    let e = log.iter().find(|e| e["version"] == id).unwrap_or_else(|| panic!("{id} not in log: {log:#?}"));
    let mut p: Vec<String> = e["parents"].as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect();
    p.sort();
    p
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The version id printed by a command (`resolve`, `restore`), or by its `--json` form.
fn printed_id(out: Vec<u8>) -> String {
    text(&out).trim().to_string()
}

/// Asserts `v` has no conflict anywhere: `status --check` 0, no conflict head, `ls -a` == names.
fn assert_settled(v: &TestVolume, names: &[&str]) {
    assert_eq!(check(v), 0, "status --check should find no conflict");
    assert_eq!(status_json(v)["conflicts"], serde_json::json!([]));
    assert_eq!(ls_a(v), strs(names));
}

/// A and B (nodes "a" and "b", peers of each other) with a common version of `f`, then an
/// edit on each made without seeing the other's, pushed both ways and received by both.
/// Returns (A, B, A's edit id, B's edit id).
fn conflicted() -> (TestVolume, TestVolume, String, String) {
    let a = node("a");
    let b = node("b");
    mesh(&[(&a, "a"), (&b, "b")]);
    a.write("f", b"common\n");
    push(&a);
    assert_eq!(b.read("f"), b"common\n");
    let a1 = a.write("f", b"edit made on a\n");
    let b1 = b.write("f", b"edit made on b\n");
    push(&a);
    push(&b);
    receive(&a);
    (a, b, a1, b1)
}

/// Re-encodes a manifest after `edit` changed its lines (the `end` line is recomputed).
fn remanifest(manifest: &[u8], edit: impl Fn(&str) -> Vec<String>) -> Vec<u8> {
    let t = text(manifest);
    let mut body = String::new();
    for line in t.lines() {
        if line.starts_with("end ") {
            continue;
        }
        for l in edit(line) {
            body.push_str(&l);
            body.push('\n');
        }
    }
    let sum = hex(&Sha256::digest(body.as_bytes()));
    body.push_str(&format!("end {sum}\n"));
    body.into_bytes()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `id` with its seconds moved by `delta` (ids are `<10-digit sec>.<9-digit nsec>-<node>-<rand>`).
fn shift_id(id: &str, delta: i64) -> String {
    let (sec, rest) = id.split_once('.').expect("id has a dot");
    assert_eq!(sec.len(), 10, "10-digit seconds in {id}");
    format!("{:010}.{rest}", sec.parse::<i64>().unwrap() + delta)
}

/// Seconds encoded in a version id.
fn id_sec(id: &str) -> i64 {
    id.split_once('.').unwrap().0.parse().unwrap()
}

/// A manifest of `from` (a version `from` has of `f`, by id) with its id and time moved to
/// `new_id` and `new_time_sec`, and its parents replaced by `parents` if given.
fn crafted(from: &TestVolume, id: &str, new_id: &str, new_time_sec: i64, parents: Option<&[&str]>) -> Vec<u8> {
    let dir = from.dir.join("local/root/f/versions");
    let bytes = fs::read(dir.join(id)).or_else(|_| fs::read(dir.join("latest"))).expect("manifest");
    assert!(text(&bytes).contains(&format!("id {id}\n")), "manifest of {id} not found");
    remanifest(&bytes, |line| {
        if line.starts_with("id ") {
            vec![format!("id {new_id}")]
        } else if let Some(t) = line.strip_prefix("time ") {
            let nsec = t.split_once('.').unwrap().1;
            vec![format!("time {new_time_sec}.{nsec}")]
        } else if line.starts_with("parent ") && parents.is_some() {
            vec![]
        } else if line.starts_with("origin ") && parents.is_some() {
            let mut out: Vec<String> = parents.unwrap().iter().map(|p| format!("parent {p}")).collect();
            out.push(line.to_string());
            out
        } else {
            vec![line.to_string()]
        }
    })
}

/// Writes a log segment named `seg` holding `records` into `into`'s upstream log from `from`,
/// as `from` would have pushed it (`globofs-log 1 <id>` header, framed checksummed records).
fn deliver(into: &TestVolume, from: &TestVolume, seg: &str, records: &[Vec<u8>]) {
    let dir = into.dir.join("local/upstream").join(uuid(from)).join("updates");
    fs::create_dir_all(&dir).unwrap();
    let mut bytes = format!("globofs-log 1 crafted{}\n", seg.replace('.', "x")).into_bytes();
    for r in records {
        bytes.extend_from_slice(format!("record {} {}\n", r.len(), hex(&Sha256::digest(r))).as_bytes());
        bytes.extend_from_slice(r);
    }
    fs::write(dir.join(seg), bytes).unwrap();
}

fn uuid(v: &TestVolume) -> String {
    let t: toml::Table = fs::read_to_string(v.dir.join("local/config")).unwrap().parse().unwrap();
    t["uuid"].as_str().unwrap().to_string()
}

// ---------------------------------------------------------------------------------------
// 1. Simple sync: fast-forward both ways
// ---------------------------------------------------------------------------------------

#[test]
fn simple_sync_fast_forwards_both_ways() {
    let a = node("a");
    let b = node("b");
    mesh(&[(&a, "a"), (&b, "b")]);
    let a0 = a.write("f", b"test\n");
    push(&a);
    assert_eq!(b.read("f"), b"test\n");
    assert_eq!(heads(&b, "f"), (a0.clone(), vec![]));
    let b1 = b.write("f", b"changed on b\n");
    assert_eq!(parents(&b, "f", &b1), vec![a0.clone()]);
    push(&b);
    assert_eq!(a.read("f"), b"changed on b\n");
    assert_eq!(heads(&a, "f"), (b1.clone(), vec![]));
    // A push back sends nothing that makes a conflict (b1 came from b).
    push(&a);
    assert_eq!(b.read("f"), b"changed on b\n");
    for v in [&a, &b] {
        assert_settled(v, &["f"]);
        assert_eq!(heads(v, "f"), (b1.clone(), vec![]));
    }
}

// ---------------------------------------------------------------------------------------
// 2. Normal conflict, seen from both sides
// ---------------------------------------------------------------------------------------

#[test]
fn normal_conflict_is_kept_on_both_sides() {
    let (a, b, a1, b1) = conflicted();
    for (v, me, other, mine, theirs, my_id, their_id) in [
        (&a, "a", "b", &b"edit made on a\n"[..], &b"edit made on b\n"[..], &a1, &b1),
        (&b, "b", "a", &b"edit made on b\n"[..], &b"edit made on a\n"[..], &b1, &a1),
    ] {
        let cf = format!(".f.conflict-{other}");
        assert_eq!(ls_a(v), vec![cf.clone(), "f".to_string()], "ls -a on {me}");
        assert_eq!(ls(v), strs(&["f"]), "plain ls on {me} hides the conflict file");
        assert_eq!(v.read("f"), mine, "the local edit stays the regular file on {me}");
        assert_eq!(v.read(&cf), theirs, "the remote edit is the conflict file on {me}");
        assert_eq!(check(v), 1, "status --check on {me}");
        let st = status_json(v);
        let conflicts = st["conflicts"].as_array().unwrap();
        assert_eq!(conflicts.len(), 1, "{st:#}");
        assert_eq!(conflicts[0]["path"], "f");
        let others = conflicts[0]["others"].as_array().unwrap();
        assert_eq!(others.len(), 1, "{st:#}");
        assert_eq!(others[0]["version"], their_id.as_str());
        assert_eq!(others[0]["origin_name"], other);
        assert_eq!(heads(v, "f"), (my_id.clone(), vec![their_id.clone()]), "log --json on {me}");
        // The text log marks both.
        let log = text(&v.ok(&["log", "f"]));
        let line =
            |id: &str| log.lines().find(|l| l.starts_with(id)).unwrap_or_else(|| panic!("{id}: {log}")).to_string();
        assert!(line(my_id).contains(" head "), "{log}");
        assert!(line(their_id).contains(" conflict-head "), "{log}");
        // `ls --json` and `ls -l` flag the conflicted path, not the conflict file.
        let items = json(&v.ok(&["ls", "-a", "--json"]));
        let flag =
            |name: &str| items.as_array().unwrap().iter().find(|e| e["path"] == name).unwrap()["conflicts"].clone();
        assert_eq!(flag("f"), 1, "{items:#}");
        assert_eq!(flag(&cf), 0, "{items:#}");
        let long = text(&v.ok(&["ls", "-l"]));
        assert!(long.contains("conflict"), "ls -l flags f: {long}");
        // Text status names the conflict.
        let st = text(&v.ok(&["status"]));
        assert!(st.contains("1 conflicts") && st.contains(&format!("{their_id} from {other}")), "{st}");
    }
}

// ---------------------------------------------------------------------------------------
// 3-5. Resolutions propagate
// ---------------------------------------------------------------------------------------

#[test]
fn rm_of_conflict_file_keeps_local_and_propagates() {
    let (a, b, a1, b1) = conflicted();
    let out = a.ok(&["rm", "--json", ".f.conflict-b"]);
    let done = json(&out);
    let r = done[0]["version"].as_str().expect("rm --json names the resolution").to_string();
    assert_eq!(a.read("f"), b"edit made on a\n");
    assert_settled(&a, &["f"]);
    assert_eq!(heads(&a, "f"), (r.clone(), vec![]));
    assert_eq!(parents(&a, "f", &r), sorted(vec![a1.clone(), b1.clone()]), "the resolution descends from both heads");
    // Both old heads are history now, still readable.
    assert_eq!(a.read(&format!("f@{b1}")), b"edit made on b\n");
    push(&a);
    assert_eq!(b.read("f"), b"edit made on a\n");
    assert_settled(&b, &["f"]);
    assert_eq!(heads(&b, "f"), (r.clone(), vec![]));
    // B pushing back creates nothing new on A.
    push(&b);
    assert_settled(&a, &["f"]);
    assert_eq!(heads(&a, "f"), (r, vec![]));
}

#[test]
fn mv_of_conflict_file_takes_remote_and_propagates() {
    let (a, b, a1, b1) = conflicted();
    let done = json(&a.ok(&["mv", "--json", ".f.conflict-b", "f"]));
    let r = done[0]["version"].as_str().unwrap().to_string();
    assert_eq!(a.read("f"), b"edit made on b\n");
    assert_settled(&a, &["f"]);
    assert_eq!(parents(&a, "f", &r), sorted(vec![a1.clone(), b1.clone()]));
    push(&a);
    assert_eq!(b.read("f"), b"edit made on b\n");
    assert_settled(&b, &["f"]);
    assert_eq!(heads(&a, "f"), (r.clone(), vec![]));
    assert_eq!(heads(&b, "f"), (r.clone(), vec![]), "same single head on both nodes");
    push(&b);
    assert_settled(&a, &["f"]);
    assert_eq!(heads(&a, "f"), (r, vec![]));
}

#[test]
fn mv_of_conflict_file_elsewhere_is_refused() {
    let (a, _b, a1, b1) = conflicted();
    let out = a.run(&["mv", ".f.conflict-b", "g"]);
    assert_error(&out, ".f.conflict-b");
    assert_eq!(heads(&a, "f"), (a1, vec![b1]), "nothing changed");
    assert_eq!(check(&a), 1);
}

#[test]
fn resolve_keep_local_propagates() {
    let (a, b, a1, b1) = conflicted();
    let r = printed_id(a.ok(&["resolve", "f", "--keep", "local"]));
    assert_eq!(a.read("f"), b"edit made on a\n");
    assert_settled(&a, &["f"]);
    assert_eq!(heads(&a, "f"), (r.clone(), vec![]));
    assert_eq!(parents(&a, "f", &r), sorted(vec![a1, b1]));
    push(&a);
    assert_eq!(b.read("f"), b"edit made on a\n");
    assert_settled(&b, &["f"]);
    assert_eq!(heads(&b, "f"), (r, vec![]));
    // Nothing left to resolve.
    assert_error(&a.run(&["resolve", "f", "--keep", "local"]), "no conflict");
}

#[test]
fn resolve_keep_remote_on_the_other_side_propagates() {
    let (a, b, a1, b1) = conflicted();
    // Resolved on B this time: B takes A's edit.
    let r = printed_id(b.ok(&["resolve", "f", "--keep", "remote"]));
    assert_eq!(b.read("f"), b"edit made on a\n");
    assert_settled(&b, &["f"]);
    assert_eq!(parents(&b, "f", &r), sorted(vec![a1, b1]));
    push(&b);
    assert_eq!(a.read("f"), b"edit made on a\n");
    assert_settled(&a, &["f"]);
    assert_eq!(heads(&a, "f"), (r.clone(), vec![]));
    assert_eq!(heads(&b, "f"), (r, vec![]));
    assert_error(&b.run(&["resolve", "f", "--keep", "remote"]), "no conflict");
}

// ---------------------------------------------------------------------------------------
// 6. Delete vs modify
// ---------------------------------------------------------------------------------------

/// A removes f while B edits it; pushed both ways. Returns (A, B, tombstone id, edit id).
fn delete_conflict() -> (TestVolume, TestVolume, String, String) {
    let a = node("a");
    let b = node("b");
    mesh(&[(&a, "a"), (&b, "b")]);
    a.write("f", b"common\n");
    push(&a);
    assert_eq!(b.read("f"), b"common\n");
    let t = json(&a.ok(&["rm", "--json", "f"]))[0]["version"].as_str().unwrap().to_string();
    let b1 = b.write("f", b"edit made on b\n");
    push(&a);
    push(&b);
    receive(&a);
    (a, b, t, b1)
}

#[test]
fn delete_vs_modify_loses_nothing_and_mv_restores_the_edit() {
    let (a, b, t, b1) = delete_conflict();
    // On A: f is gone, the edit is the conflict file.
    assert_eq!(ls(&a), Vec::<String>::new());
    assert_eq!(ls_a(&a), strs(&[".f.conflict-b"]));
    assert_eq!(a.read(".f.conflict-b"), b"edit made on b\n");
    assert_eq!(a.run(&["read", "f"]).status.code(), Some(2), "f was removed on A");
    assert_eq!(heads(&a, "f"), (t.clone(), vec![b1.clone()]));
    // On B: the edit is f; the deletion is a head without a file.
    assert_eq!(b.read("f"), b"edit made on b\n");
    assert_eq!(ls_a(&b), strs(&["f"]));
    assert_eq!(heads(&b, "f"), (b1.clone(), vec![t.clone()]));
    for v in [&a, &b] {
        assert_eq!(check(v), 1);
        let st = status_json(v);
        assert_eq!(st["conflicts"].as_array().unwrap().len(), 1, "{st:#}");
        assert_eq!(st["conflicts"][0]["path"], "f");
    }
    let st = status_json(&b);
    assert_eq!(st["conflicts"][0]["others"][0]["kind"], "tombstone", "{st:#}");
    assert!(text(&b.ok(&["status"])).contains("(deleted)"));
    // A takes the edit back.
    let r = json(&a.ok(&["mv", "--json", ".f.conflict-b", "f"]))[0]["version"].as_str().unwrap().to_string();
    assert_eq!(a.read("f"), b"edit made on b\n");
    assert_settled(&a, &["f"]);
    assert_eq!(parents(&a, "f", &r), sorted(vec![t, b1]));
    push(&a);
    assert_eq!(b.read("f"), b"edit made on b\n");
    assert_settled(&b, &["f"]);
    assert_eq!(heads(&b, "f"), (r.clone(), vec![]));
    assert_eq!(heads(&a, "f"), (r, vec![]));
}

#[test]
fn delete_vs_modify_rm_of_conflict_file_keeps_the_deletion() {
    let (a, b, t, b1) = delete_conflict();
    a.ok(&["rm", ".f.conflict-b"]);
    assert_settled(&a, &[]);
    let (r, others) = heads(&a, "f");
    assert!(others.is_empty());
    assert_eq!(parents(&a, "f", &r), sorted(vec![t, b1.clone()]));
    push(&a);
    assert_settled(&b, &[]);
    assert_eq!(heads(&b, "f"), (r, vec![]));
    // The edit stays in history.
    assert_eq!(b.read(&format!("f@{b1}")), b"edit made on b\n");
}

#[test]
fn delete_vs_modify_resolved_on_the_editing_side() {
    let (a, b, t, b1) = delete_conflict();
    // On B the deletion has no file: `resolve` settles it. Taking the remote = the deletion.
    let r = printed_id(b.ok(&["resolve", "f", "--keep", "remote"]));
    assert_settled(&b, &[]);
    assert_eq!(parents(&b, "f", &r), sorted(vec![t, b1]));
    push(&b);
    assert_settled(&a, &[]);
    assert_eq!(heads(&a, "f"), (r, vec![]));
}

#[test]
fn delete_vs_modify_keep_local_on_the_editing_side() {
    let (a, b, _t, _b1) = delete_conflict();
    let r = printed_id(b.ok(&["resolve", "f", "--keep", "local"]));
    assert_eq!(b.read("f"), b"edit made on b\n");
    assert_settled(&b, &["f"]);
    push(&b);
    assert_eq!(a.read("f"), b"edit made on b\n");
    assert_settled(&a, &["f"]);
    assert_eq!(heads(&a, "f"), (r, vec![]));
}

// ---------------------------------------------------------------------------------------
// 7. Three nodes
// ---------------------------------------------------------------------------------------

#[test]
fn three_way_conflict_settles_to_one_head_everywhere() {
    let a = node("a");
    let b = node("b");
    let c = node("c");
    let all = [(&a, "a"), (&b, "b"), (&c, "c")];
    mesh(&all);
    a.write("f", b"common\n");
    push(&a);
    receive(&b);
    receive(&c);
    let mut ids = std::collections::BTreeMap::new();
    for (v, n) in all {
        ids.insert(n, v.write("f", format!("edit made on {n}\n").as_bytes()));
    }
    for (v, _) in all {
        push(v);
    }
    for (v, n) in all {
        receive(v);
        let others: Vec<&str> = ["a", "b", "c"].into_iter().filter(|o| *o != n).collect();
        let mut expect: Vec<String> = others.iter().map(|o| format!(".f.conflict-{o}")).collect();
        expect.push("f".into());
        assert_eq!(ls_a(v), expect, "ls -a on {n}");
        assert_eq!(v.read("f"), format!("edit made on {n}\n").as_bytes());
        for o in &others {
            assert_eq!(v.read(&format!(".f.conflict-{o}")), format!("edit made on {o}\n").as_bytes(), "on {n}");
        }
        assert_eq!(check(v), 1);
        assert_eq!(heads(v, "f"), (ids[n].clone(), sorted(others.iter().map(|o| ids[o].clone()).collect())));
    }
    // Two remote versions: `--keep remote` cannot choose; `--keep local` settles both.
    assert_error(&b.run(&["resolve", "f", "--keep", "remote"]), "f");
    let r = printed_id(b.ok(&["resolve", "f", "--keep", "local"]));
    assert_eq!(parents(&b, "f", &r), sorted(ids.values().cloned().collect()));
    push(&b);
    for (v, _) in all {
        push(v);
    }
    for (v, n) in all {
        assert_eq!(v.read("f"), b"edit made on b\n", "on {n}");
        assert_settled(v, &["f"]);
        assert_eq!(heads(v, "f"), (r.clone(), vec![]), "one head on {n}");
    }
}

// ---------------------------------------------------------------------------------------
// 8. Clock skew: parents decide, never times
// ---------------------------------------------------------------------------------------

#[test]
fn clock_behind_still_fast_forwards() {
    let a = node("a");
    let b = node("b");
    mesh(&[(&a, "a"), (&b, "b")]);
    let a0 = a.write("f", b"base\n");
    push(&a);
    assert_eq!(b.read("f"), b"base\n");
    let b1 = b.write("f", b"made on b with a slow clock\n");
    assert_eq!(parents(&b, "f", &b1), vec![a0.clone()]);
    // B's clock a day behind: id and time a day before A's head.
    let old = shift_id(&format!("{}.{}", id_sec(&a0), b1.split_once('.').unwrap().1), -86400);
    let m = crafted(&b, &b1, &old, id_sec(&a0) - 86400, None);
    assert!(old < a0, "{old} sorts before {a0}");
    deliver(&a, &b, "1.000000000", &[m]);
    receive(&a);
    assert_eq!(a.read("f"), b"made on b with a slow clock\n", "A fast-forwards to a descendant of its head");
    assert_settled(&a, &["f"]);
    assert_eq!(heads(&a, "f"), (old.clone(), vec![]));
    let log = log_json(&a, "f");
    let e = log.iter().find(|e| e["version"] == old.as_str()).unwrap();
    assert_eq!(e["time"].as_str().unwrap().split_once('.').unwrap().0, (id_sec(&a0) - 86400).to_string());
}

#[test]
fn clock_ahead_does_not_win_a_conflict() {
    let a = node("a");
    let b = node("b");
    mesh(&[(&a, "a"), (&b, "b")]);
    a.write("f", b"base\n");
    push(&a);
    assert_eq!(b.read("f"), b"base\n");
    let b1 = b.write("f", b"made on b with a fast clock\n");
    let a1 = a.write("f", b"made on a\n");
    // B's clock a day ahead; its version is concurrent with A's: a conflict, A's stays f.
    let future = shift_id(&b1, 86400);
    let m = crafted(&b, &b1, &future, id_sec(&b1) + 86400, None);
    deliver(&a, &b, "1.000000000", &[m]);
    receive(&a);
    assert_eq!(a.read("f"), b"made on a\n");
    assert_eq!(heads(&a, "f"), (a1, vec![future]));
    assert_eq!(a.read(".f.conflict-b"), b"made on b with a fast clock\n");
    assert_eq!(check(&a), 1);
}

#[test]
fn future_ancestor_of_head_does_not_become_head() {
    let a = node("a");
    let b = node("b");
    mesh(&[(&a, "a"), (&b, "b")]);
    let a0 = a.write("f", b"base\n");
    push(&a);
    assert_eq!(b.read("f"), b"base\n");
    let b1 = b.write("f", b"middle\n");
    let b2 = b.write("f", b"top\n");
    // x: b1 with a clock a day ahead. y: b2, descending from A's head and from x.
    let x = shift_id(&b1, 86400);
    let mx = crafted(&b, &b1, &x, id_sec(&b1) + 86400, None);
    let my = crafted(&b, &b2, &b2, id_sec(&b2), Some(&[&a0, &x]));
    // y arrives first (A fast-forwards to it), x later: x is an ancestor of A's head.
    deliver(&a, &b, "1.000000000", &[my]);
    receive(&a);
    assert_eq!(heads(&a, "f"), (b2.clone(), vec![]));
    deliver(&a, &b, "2.000000000", &[mx]);
    receive(&a);
    assert_eq!(a.read("f"), b"top\n", "the future-dated ancestor must not replace the head");
    assert_settled(&a, &["f"]);
    assert_eq!(heads(&a, "f"), (b2.clone(), vec![]));
    let log = log_json(&a, "f");
    assert!(log.iter().any(|e| e["version"] == x.as_str()), "x joins the history: {log:#?}");
    assert_eq!(a.read(&format!("f@{x}")), b"middle\n");
}

#[test]
fn future_ancestor_in_the_same_batch_does_not_become_head() {
    let a = node("a");
    let b = node("b");
    mesh(&[(&a, "a"), (&b, "b")]);
    let a0 = a.write("f", b"base\n");
    push(&a);
    assert_eq!(b.read("f"), b"base\n");
    let b1 = b.write("f", b"middle\n");
    let b2 = b.write("f", b"top\n");
    let x = shift_id(&b1, 86400);
    let mx = crafted(&b, &b1, &x, id_sec(&b1) + 86400, None);
    let my = crafted(&b, &b2, &b2, id_sec(&b2), Some(&[&a0, &x]));
    deliver(&a, &b, "1.000000000", &[my, mx]);
    receive(&a);
    assert_eq!(a.read("f"), b"top\n");
    assert_settled(&a, &["f"]);
    assert_eq!(heads(&a, "f"), (b2, vec![]));
}

// ---------------------------------------------------------------------------------------
// 9. Two conflict files from nodes of the same name
// ---------------------------------------------------------------------------------------

#[test]
fn second_conflict_from_same_node_name_gets_suffix() {
    let a = node("a");
    let b1n = node("b");
    let b2n = node("b");
    // Peer directories must differ; both nodes are called "b".
    a.ok(&["peer", "add", "b1", s(&b1n.dir)]);
    a.ok(&["peer", "add", "b2", s(&b2n.dir)]);
    b1n.ok(&["peer", "add", "a", s(&a.dir)]);
    b2n.ok(&["peer", "add", "a", s(&a.dir)]);
    a.write("f", b"common\n");
    push(&a);
    assert_eq!(b1n.read("f"), b"common\n");
    assert_eq!(b2n.read("f"), b"common\n");
    let a1 = a.write("f", b"edit made on a\n");
    let x = b1n.write("f", b"edit made on the first b\n");
    let y = b2n.write("f", b"edit made on the second b\n");
    push(&b1n);
    receive(&a);
    assert_eq!(ls_a(&a), strs(&[".f.conflict-b", "f"]));
    push(&b2n);
    receive(&a);
    assert_eq!(ls_a(&a), strs(&[".f.conflict-b", ".f.conflict-b-2", "f"]));
    assert_eq!(a.read(".f.conflict-b"), b"edit made on the first b\n");
    assert_eq!(a.read(".f.conflict-b-2"), b"edit made on the second b\n");
    assert_eq!(a.read("f"), b"edit made on a\n");
    assert_eq!(heads(&a, "f"), (a1.clone(), sorted(vec![x.clone(), y.clone()])));
    assert_eq!(status_json(&a)["conflicts"][0]["others"].as_array().unwrap().len(), 2);
    // Two remote versions: resolve cannot pick one.
    assert_error(&a.run(&["resolve", "f", "--keep", "remote"]), "f");
    // Taking the second settles only it; the first stays a conflict, now without suffix.
    let r1 = json(&a.ok(&["mv", "--json", ".f.conflict-b-2", "f"]))[0]["version"].as_str().unwrap().to_string();
    assert_eq!(a.read("f"), b"edit made on the second b\n");
    assert_eq!(parents(&a, "f", &r1), sorted(vec![a1, y]));
    assert_eq!(ls_a(&a), strs(&[".f.conflict-b", "f"]));
    assert_eq!(a.read(".f.conflict-b"), b"edit made on the first b\n");
    assert_eq!(check(&a), 1);
    a.ok(&["rm", ".f.conflict-b"]);
    assert_eq!(a.read("f"), b"edit made on the second b\n");
    assert_settled(&a, &["f"]);
    let (r2, _) = heads(&a, "f");
    assert_eq!(parents(&a, "f", &r2), sorted(vec![r1, x]));
    push(&a);
    for v in [&b1n, &b2n] {
        assert_eq!(v.read("f"), b"edit made on the second b\n");
        assert_settled(v, &["f"]);
        assert_eq!(heads(v, "f"), (r2.clone(), vec![]));
    }
}

// ---------------------------------------------------------------------------------------
// 10. restore
// ---------------------------------------------------------------------------------------

#[test]
fn restore_makes_a_new_head_with_old_content() {
    let a = node("a");
    let b = node("b");
    mesh(&[(&a, "a"), (&b, "b")]);
    let v1 = a.write("f", b"one\n");
    a.write("f", b"two\n");
    let v3 = a.write("f", b"three\n");
    push(&a);
    assert_eq!(b.read("f"), b"three\n");
    let r = printed_id(a.ok(&["restore", &format!("f@{v1}")]));
    assert_ne!(r, v1, "restore makes a new version");
    assert_eq!(a.read("f"), b"one\n");
    assert_eq!(heads(&a, "f"), (r.clone(), vec![]));
    assert_eq!(parents(&a, "f", &r), vec![v3.clone()]);
    assert_eq!(log_json(&a, "f").len(), 4);
    assert_eq!(a.read(&format!("f@{v3}")), b"three\n");
    push(&a);
    assert_eq!(b.read("f"), b"one\n");
    assert_settled(&b, &["f"]);
    assert_eq!(heads(&b, "f"), (r, vec![]));
    // A deletion cannot be restored (it is `rm`).
    let t = json(&a.ok(&["rm", "--json", "f"]))[0]["version"].as_str().unwrap().to_string();
    assert_error(&a.run(&["restore", &format!("f@{t}")]), "f");
    // The file is back by restoring a live version after the deletion.
    let r2 = printed_id(a.ok(&["restore", &format!("f@{v3}")]));
    assert_eq!(a.read("f"), b"three\n");
    assert_eq!(parents(&a, "f", &r2), vec![t]);
}

// ---------------------------------------------------------------------------------------
// 11. Writing on a conflicted path
// ---------------------------------------------------------------------------------------

#[test]
fn write_on_conflicted_path_keeps_the_conflict() {
    let (a, b, a1, b1) = conflicted();
    let a2 = a.write("f", b"second edit on a\n");
    assert_eq!(parents(&a, "f", &a2), vec![a1]);
    assert_eq!(a.read("f"), b"second edit on a\n");
    assert_eq!(ls_a(&a), strs(&[".f.conflict-b", "f"]));
    assert_eq!(a.read(".f.conflict-b"), b"edit made on b\n");
    assert_eq!(heads(&a, "f"), (a2.clone(), vec![b1.clone()]));
    assert_eq!(check(&a), 1);
    // B sees A's other head move on: its conflict file now shows a2.
    push(&a);
    assert_eq!(b.read(".f.conflict-a"), b"second edit on a\n");
    assert_eq!(heads(&b, "f"), (b1.clone(), vec![a2.clone()]));
    // A restore on the conflicted path also keeps the conflict.
    let old = log_json(&a, "f").last().unwrap()["version"].as_str().unwrap().to_string();
    let a3 = printed_id(a.ok(&["restore", &format!("f@{old}")]));
    assert_eq!(a.read("f"), b"common\n");
    assert_eq!(heads(&a, "f"), (a3.clone(), vec![b1.clone()]));
    assert_eq!(check(&a), 1);
    // Until resolved: then both sides settle on it.
    let r = json(&a.ok(&["rm", "--json", ".f.conflict-b"]))[0]["version"].as_str().unwrap().to_string();
    assert_eq!(parents(&a, "f", &r), sorted(vec![a3, b1]));
    push(&a);
    for v in [&a, &b] {
        assert_eq!(v.read("f"), b"common\n");
        assert_settled(v, &["f"]);
        assert_eq!(heads(v, "f"), (r.clone(), vec![]));
    }
}

// ---------------------------------------------------------------------------------------
// Edge cases: nested paths, removed directories, names once used by real files
// ---------------------------------------------------------------------------------------

#[test]
fn conflict_in_a_subdirectory() {
    let a = node("a");
    let b = node("b");
    mesh(&[(&a, "a"), (&b, "b")]);
    a.write("d/f", b"common\n");
    push(&a);
    assert_eq!(b.read("d/f"), b"common\n");
    a.write("d/f", b"edit made on a\n");
    b.write("d/f", b"edit made on b\n");
    push(&a);
    push(&b);
    receive(&a);
    assert_eq!(text(&a.ok(&["ls", "-a", "d"])).lines().collect::<Vec<_>>(), vec![".f.conflict-b", "f"]);
    assert_eq!(text(&a.ok(&["ls", "-a", "-R"])).lines().collect::<Vec<_>>(), vec!["d/", "d/.f.conflict-b", "d/f"]);
    assert_eq!(a.read("d/.f.conflict-b"), b"edit made on b\n");
    assert_eq!(status_json(&a)["conflicts"][0]["path"], "d/f");
    a.ok(&["mv", "d/.f.conflict-b", "d/f"]);
    assert_eq!(a.read("d/f"), b"edit made on b\n");
    push(&a);
    for v in [&a, &b] {
        assert_eq!(v.read("d/f"), b"edit made on b\n");
        assert_eq!(check(v), 0);
        assert_eq!(text(&v.ok(&["ls", "-a", "-R"])).lines().collect::<Vec<_>>(), vec!["d/", "d/f"]);
    }
}

#[test]
fn edit_inside_a_directory_removed_elsewhere_is_listed() {
    let a = node("a");
    let b = node("b");
    mesh(&[(&a, "a"), (&b, "b")]);
    a.write("d/f", b"common\n");
    push(&a);
    assert_eq!(b.read("d/f"), b"common\n");
    a.ok(&["rm", "-r", "d"]);
    b.write("d/f", b"edit made on b\n");
    push(&a);
    push(&b);
    receive(&a);
    // Nothing lost: the edit is readable, and `status` names the conflict...
    assert_eq!(a.read("d/.f.conflict-b"), b"edit made on b\n");
    assert_eq!(check(&a), 1);
    assert_eq!(status_json(&a)["conflicts"][0]["path"], "d/f");
    // ...and `ls -a` must show it, or the user cannot find what to `mv`.
    let out = a.run(&["ls", "-a", "-R"]);
    assert_eq!(
        text(&out.stdout).lines().collect::<Vec<_>>(),
        vec!["d/", "d/.f.conflict-b"],
        "ls -a -R: stderr {}",
        text(&out.stderr)
    );
    assert_eq!(text(&a.ok(&["ls", "-a", "d"])).lines().collect::<Vec<_>>(), vec![".f.conflict-b"]);
}

#[test]
fn conflict_file_name_once_used_by_a_removed_file_still_resolves() {
    let (a, b, _, _) = conflicted();
    // Start again from a settled state, with a real file once called `.f.conflict-b` on A.
    a.ok(&["resolve", "f", "--keep", "local"]);
    push(&a);
    assert_settled(&b, &["f"]);
    a.write(".f.conflict-b", b"a real file with that name\n");
    a.ok(&["rm", ".f.conflict-b"]);
    assert_eq!(ls_a(&a), strs(&["f"]));
    // A new conflict on f.
    let a2 = a.write("f", b"second edit on a\n");
    let b2 = b.write("f", b"second edit on b\n");
    push(&a);
    push(&b);
    receive(&a);
    assert_eq!(heads(&a, "f"), (a2.clone(), vec![b2.clone()]));
    assert_eq!(ls_a(&a), strs(&[".f.conflict-b", "f"]));
    assert_eq!(a.read(".f.conflict-b"), b"second edit on b\n");
    // Taking the remote by `mv` must settle the conflict, as for any conflict file.
    a.ok(&["mv", ".f.conflict-b", "f"]);
    assert_eq!(a.read("f"), b"second edit on b\n");
    let (r, others) = heads(&a, "f");
    assert_eq!(others, Vec::<String>::new(), "mv over f must settle the conflict");
    assert_eq!(parents(&a, "f", &r), sorted(vec![a2, b2]));
    assert_settled(&a, &["f"]);
    push(&a);
    assert_settled(&b, &["f"]);
    assert_eq!(heads(&b, "f"), (r, vec![]));
}

#[test]
fn rm_of_conflict_file_name_once_used_by_a_removed_file_still_resolves() {
    let a = node("a");
    let b = node("b");
    mesh(&[(&a, "a"), (&b, "b")]);
    a.write("f", b"common\n");
    a.write(".f.conflict-b", b"a real file with that name\n");
    a.ok(&["rm", ".f.conflict-b"]);
    push(&a);
    assert_eq!(b.read("f"), b"common\n");
    let a1 = a.write("f", b"edit made on a\n");
    let b1 = b.write("f", b"edit made on b\n");
    push(&a);
    push(&b);
    receive(&a);
    assert_eq!(ls_a(&a), strs(&[".f.conflict-b", "f"]));
    a.ok(&["rm", ".f.conflict-b"]);
    assert_eq!(a.read("f"), b"edit made on a\n");
    assert_settled(&a, &["f"]);
    let (r, _) = heads(&a, "f");
    assert_eq!(parents(&a, "f", &r), sorted(vec![a1, b1]));
}

/// A crash between a commit's phases can leave a conflict's version in the history without
/// its `.heads` entry. When the log holding it is read again, the conflict is listed again.
#[test]
fn conflict_lost_from_heads_by_a_crash_is_listed_again() {
    let (a, _b, _a1, b1) = conflicted();
    let heads_file = a.dir.join("local/root/f/versions/.heads");
    assert!(fs::read_to_string(&heads_file).unwrap().contains(b1.as_str()));
    // The state a crash between the history rename and the `.heads` rename leaves.
    fs::remove_file(&heads_file).unwrap();
    assert_eq!(check(&a), 0, "the conflict is hidden without .heads");
    // Reading b's log again (its read position lost too) lists the known version again.
    for e in fs::read_dir(a.dir.join("local/state/recv")).unwrap() {
        fs::remove_file(e.unwrap().path()).unwrap();
    }
    assert_eq!(check(&a), 1, "the conflict was not listed again");
    assert_eq!(ls_a(&a), vec![".f.conflict-b".to_string(), "f".to_string()]);
}
