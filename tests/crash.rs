//! Crash safety: an import killed with SIGKILL at a random instant loses no acknowledged
//! version, leaves no corrupt manifest or dangling block reference, and leaves every path's
//! head either as it was or as the import would have made it, never anything else. A rerun
//! of the import then completes.
//!
//! 12 kills by default, fewer if they take more than 30 s (debug builds hash and gzip
//! slowly); set `GLOBOFS_CRASH_RUNS` for an exact count and `GLOBOFS_CRASH_SEED` to replay
//! a run (the seed is printed).

use crate::util::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Relative path in the source tree → content.
type Tree = BTreeMap<String, Vec<u8>>;

/// Tree A: 40 small files (a quarter in `sub/`, some empty) and two files of 1-1.5 MiB
/// (larger ones make the test slow: reads are hash-checked, and debug builds hash slowly).
fn tree_a(rng: &mut Rng) -> Tree {
    let mut t = Tree::new();
    for i in 0..40 {
        let name = if i % 4 == 0 { format!("sub/f{i:02}") } else { format!("f{i:02}") };
        let len = if i % 13 == 0 { 0 } else { rng.range(1, 6000) as usize };
        t.insert(name, noise(len, rng.next()));
    }
    t.insert("big1".into(), noise(rng.range(1 << 20, 3 << 19) as usize, rng.next()));
    t.insert("sub/big2".into(), noise(rng.range(1 << 20, 3 << 19) as usize, rng.next()));
    t
}

/// Tree B: tree A with eight small files and both big ones changed (some keeping their
/// size), and five files added, three of them in a new directory.
fn tree_b(rng: &mut Rng, a: &Tree) -> Tree {
    let mut b = a.clone();
    let small: Vec<String> = a.keys().filter(|k| !k.contains("big")).cloned().collect();
    let mut changed = BTreeSet::new();
    while changed.len() < 8 {
        changed.insert(small[rng.range(0, small.len() as u64 - 1) as usize].clone());
    }
    for (n, k) in changed.iter().enumerate() {
        let old = &a[k];
        let new = if n % 2 == 0 && !old.is_empty() {
            // Same size, different bytes.
            let mut v = noise(old.len(), rng.next());
            if v == *old {
                v[0] ^= 1;
            }
            v
        } else {
            noise(rng.range(1, 9000) as usize, rng.next())
        };
        b.insert(k.clone(), new);
    }
    // big1: 4 KiB overwritten in the middle (same size); big2: bytes inserted near the start.
    let big1 = b.get_mut("big1").expect("big1");
    let mid = big1.len() / 2;
    big1[mid..mid + 4096].copy_from_slice(&noise(4096, rng.next()));
    b.get_mut("sub/big2").expect("big2").splice(100..100, noise(333, rng.next()));
    for i in 0..5 {
        let name = if i < 3 { format!("new/n{i}") } else { format!("n{i}") };
        b.insert(name, noise(rng.range(0, 20_000) as usize, rng.next()));
    }
    b
}

/// Writes the files of `t` that differ from `old` under `root`.
fn write_tree(root: &Path, t: &Tree, old: &Tree) {
    for (k, v) in t {
        if old.get(k) == Some(v) {
            continue;
        }
        let p = root.join(k);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, v).expect("write source file");
    }
}

/// The single version of `path` (after the first import), from `log --json`.
fn only_version(v: &TestVolume, path: &str) -> String {
    let out = v.ok(&["--json", "log", path]);
    let log: serde_json::Value = serde_json::from_slice(&out).expect("log --json");
    let items = log.as_array().expect("log is a list");
    assert_eq!(items.len(), 1, "{path}: expected one version after the first import: {log}");
    assert_eq!(items[0]["kind"], "file");
    items[0]["version"].as_str().expect("version id").to_string()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).trim_end().to_string()
}

#[derive(Default)]
struct Tally {
    /// Kills that landed while the import was still running.
    kills: usize,
    /// Imports that had already exited when their kill was due.
    finished_first: usize,
    /// Kills after which no head / some heads / every head had moved.
    none_moved: usize,
    some_moved: usize,
    all_moved: usize,
    /// Acknowledged versions that could not be read back byte-identical.
    lost: usize,
    /// Heads that were neither the old nor the new content.
    bad_heads: usize,
    /// verify (or ls) runs that did not come out clean.
    unclean: usize,
    /// Reruns whose heads were not the new content.
    bad_reruns: usize,
    failures: Vec<String>,
}

impl Tally {
    fn fail(&mut self, what: String) {
        eprintln!("crash: FAIL: {what}");
        self.failures.push(what);
    }
}

/// Head version id of every live file under `data`, from `ls -R --json` (which must work).
fn head_ids(v: &TestVolume, t: &mut Tally, when: &str) -> BTreeMap<String, String> {
    let out = v.run(&["--json", "ls", "-R", "data"]);
    if !out.status.success() {
        t.unclean += 1;
        t.fail(format!("{when}: ls -R data failed: {}", text(&out.stderr)));
        return BTreeMap::new();
    }
    let items: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ls --json");
    let mut heads = BTreeMap::new();
    for i in items.as_array().expect("ls is a list") {
        if let (Some(p), Some(id)) = (i["path"].as_str(), i["version"].as_str()) {
            if i["kind"] == "file" {
                heads.insert(p.to_string(), id.to_string());
            }
        }
    }
    heads
}

/// Checks what must hold after a kill (`full`) or after the rerun: verify is clean (only
/// if `full`), every acknowledged version reads back byte-identical, and each head is the
/// old or the new content (the new one if `!full`). Returns how many paths changed by tree
/// B have the new content as head.
fn check(
    v: &TestVolume,
    acked: &[(String, String, Vec<u8>)],
    a: &Tree,
    b: &Tree,
    t: &mut Tally,
    when: &str,
    full: bool,
) -> usize {
    if full {
        let verify = v.run(&["verify"]);
        if !verify.status.success() {
            t.unclean += 1;
            t.fail(format!(
                "{when}: verify exited {:?}: {}{}",
                verify.status.code(),
                text(&verify.stdout),
                text(&verify.stderr)
            ));
        }
    }
    let heads = head_ids(v, t, when);
    let mut verified_heads = BTreeSet::new();
    for (path, id, content) in acked {
        let out = v.run(&["read", &format!("{path}@{id}")]);
        if !out.status.success() || out.stdout != *content {
            t.lost += 1;
            t.fail(format!(
                "{when}: acknowledged version {path}@{id} lost: exit {:?}, {} bytes read of {}{}; {}",
                out.status.code(),
                out.stdout.len(),
                content.len(),
                if out.stdout.len() == content.len() { " (content differs)" } else { "" },
                text(&out.stderr)
            ));
        } else if heads.get(path) == Some(id) {
            verified_heads.insert(path.clone());
        }
    }
    let mut moved = 0;
    for (k, new) in b {
        let path = format!("data/{k}");
        let old = a.get(k);
        // A head that is still the acknowledged version (per `ls --json`) was just read back.
        if verified_heads.contains(&path) {
            if old != Some(new) && !full {
                t.bad_heads += 1;
                t.fail(format!("{when}: head of {path} is still the old version"));
            }
            continue;
        }
        let out = v.run(&["read", &path]);
        let ok = match (out.status.success(), old) {
            (true, Some(old)) if full => out.stdout == *old || out.stdout == *new,
            (true, _) => out.stdout == *new,
            // A file the interrupted import added may not exist yet.
            (false, None) => full && out.status.code() == Some(2) && text(&out.stderr).contains("no such file"),
            (false, Some(_)) => false,
        };
        if !ok {
            t.bad_heads += 1;
            t.fail(format!(
                "{when}: head of {path} is {}: exit {:?}, {} bytes (old {:?}, new {}); {}",
                if full { "neither old nor new" } else { "not the new content" },
                out.status.code(),
                out.stdout.len(),
                old.map(|o| o.len()),
                new.len(),
                text(&out.stderr)
            ));
        }
        if old != Some(new) && out.status.success() && out.stdout == *new {
            moved += 1;
        }
    }
    moved
}

/// Wall-clock budget of a default run: the kills stop once it is spent (after at least
/// [`MIN_RUNS`]), so a slow debug build on a loaded machine stays near half a minute.
const BUDGET: Duration = Duration::from_secs(30);
const MIN_RUNS: usize = 3;

/// How many kills, and whether the time budget applies (not when the count is explicit).
fn runs() -> (usize, bool) {
    match std::env::var("GLOBOFS_CRASH_RUNS").ok().and_then(|s| s.parse().ok()) {
        Some(n) => (n, false),
        None => (12, true),
    }
}

fn seed() -> u64 {
    std::env::var("GLOBOFS_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
    })
}

#[test]
fn import_killed_at_random_points_loses_nothing() {
    let ((runs, budgeted), seed) = (runs(), seed());
    println!(
        "crash: up to {runs} runs{}, seed {seed} (replay with GLOBOFS_CRASH_SEED={seed})",
        if budgeted { format!(" within {} s", BUDGET.as_secs()) } else { String::new() }
    );
    let mut rng = Rng(seed);
    let mut t = Tally::default();
    let started = Instant::now();
    let mut span = 300u64;
    let mut done = 0;
    for run in 0..runs {
        let v = TestVolume::new(&["--block-size", "64K"]);
        let src = v.scratch("src");
        let a = tree_a(&mut rng);
        write_tree(&src, &a, &Tree::new());
        let t0 = Instant::now();
        v.ok(&["import", src.to_str().expect("utf-8 temp path"), "data"]);
        let first = t0.elapsed();
        // Acknowledged: the import exited 0.
        let acked: Vec<(String, String, Vec<u8>)> = a
            .iter()
            .map(|(k, c)| {
                let path = format!("data/{k}");
                let id = only_version(&v, &path);
                (path, id, c.clone())
            })
            .collect();

        let b = tree_b(&mut rng, &a);
        write_tree(&src, &b, &a);
        let changed = b.iter().filter(|(k, c)| a.get(*k) != Some(c)).count();
        // A random instant in 0..=span ms. The span starts at 300 ms and shrinks towards the
        // import's duration whenever a kill comes too late, so kills cover the whole import
        // (the commit is at its very end).
        let delay = Duration::from_millis(rng.range(0, span));
        let mut child = v
            .cmd(&["import", src.to_str().unwrap(), "data"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn import");
        std::thread::sleep(delay);
        let early = child.try_wait().expect("try_wait");
        child.kill().expect("SIGKILL the import");
        let status = child.wait().expect("wait");
        match early {
            Some(s) => {
                t.finished_first += 1;
                span = ((span + delay.as_millis() as u64) / 2).max(20);
                if !s.success() {
                    t.fail(format!("run {run}: the import exited {s:?} on its own"));
                }
            }
            None => t.kills += 1,
        }
        let when = format!("run {run} (kill after {} ms)", delay.as_millis());
        let moved = check(&v, &acked, &a, &b, &mut t, &when, true);
        match moved {
            0 => t.none_moved += 1,
            m if m == changed => t.all_moved += 1,
            _ => t.some_moved += 1,
        }
        println!(
            "crash: run {run}: first import {} ms, kill after {} ms ({}), {moved} of {changed} changed heads moved",
            first.as_millis(),
            delay.as_millis(),
            if early.is_some() { "already finished".to_string() } else { format!("killed: {status:?}") },
        );

        // The rerun completes and leaves the new content everywhere.
        v.ok(&["import", src.to_str().unwrap(), "data"]);
        let when = format!("run {run} after the rerun");
        done += 1;
        let last = run + 1 == runs || (budgeted && run + 1 >= MIN_RUNS && started.elapsed() >= BUDGET);
        // verify after the rerun only once, at the end (it is slow in debug builds).
        let moved = check(&v, &acked, &a, &b, &mut t, &when, last);
        if moved != changed {
            t.bad_reruns += 1;
            t.fail(format!("{when}: only {moved} of {changed} changed heads have the new content"));
        }
        if last {
            break;
        }
    }
    println!(
        "crash: {} kills in {done} runs ({} landed after the import finished; heads moved: none {}, some {}, all {}), {} lost versions, {} bad heads, {}, {:.1} s",
        t.kills,
        t.finished_first,
        t.none_moved,
        t.some_moved,
        t.all_moved,
        t.lost,
        t.bad_heads,
        if t.unclean == 0 { "verify clean".to_string() } else { format!("{} unclean verify/ls runs", t.unclean) },
        started.elapsed().as_secs_f64()
    );
    assert!(t.failures.is_empty(), "seed {seed}: {} failures:\n{}", t.failures.len(), t.failures.join("\n"));
    assert_eq!(t.bad_reruns, 0);
    assert!(t.kills > 0 || done < 4, "no kill landed while the import was running; the test tests nothing");
}
