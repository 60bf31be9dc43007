//! Peer loss: the peer's directory is renamed away (an unmounted disk), replaced by an empty
//! directory (an empty mount point), or replaced by another volume, before or in the middle
//! of `push`, `mirror`, `prune` and `gc` (with `cacheonly`, the one gc step that reads
//! peers). Nothing is deleted locally, nothing is written into the directory that took the
//! peer's place, push exits 1 with one line naming the peer, mirror exits 1 naming it, and
//! once the peer is back a retry converges: the peer has every version once, mirror fetches
//! everything, prune prunes what the peer now has, gc evicts, and verify is clean on both.
//! The mid-operation swaps happen at seeded random instants (`GLOBOFS_PEERLOSS_SEED`).

use crate::util::*;
use std::collections::BTreeMap;
use std::fs;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
enum Loss {
    /// Renamed away: the path no longer exists.
    Missing,
    /// An empty directory in its place (a mount point with nothing mounted).
    Empty,
    /// Another volume in its place (the wrong disk mounted).
    Other,
}

const LOSSES: [Loss; 3] = [Loss::Missing, Loss::Empty, Loss::Other];

/// The peer's volume, and where it is while it is away.
struct Away {
    dir: PathBuf,
    parked: PathBuf,
    loss: Loss,
}

impl Away {
    fn take(peer: &TestVolume, loss: Loss) -> Away {
        let parked = peer.tmp.path().join("parked");
        fs::rename(&peer.dir, &parked).expect("move the peer's volume away");
        match loss {
            Loss::Missing => {}
            Loss::Empty => fs::create_dir(&peer.dir).expect("empty mount point"),
            Loss::Other => {
                let out = std::process::Command::new(bin())
                    .arg("init")
                    .arg(&peer.dir)
                    .args(["--name", "impostor"])
                    .env_remove("GLOBOFS_VOLUME")
                    .output()
                    .expect("init");
                assert!(out.status.success(), "init impostor: {}", text(&out.stderr));
            }
        }
        Away { dir: peer.dir.clone(), parked, loss }
    }

    /// Checks that what stood in for the peer is as it was, then puts the peer back.
    fn back(self, before: &Snapshot, what: &str) {
        assert_eq!(
            &snapshot(&self.dir),
            before,
            "{what}: the directory in place of the peer ({:?}) changed",
            self.loss
        );
        match self.loss {
            Loss::Missing => {}
            _ => fs::remove_dir_all(&self.dir).expect("remove the stand-in"),
        }
        fs::rename(&self.parked, &self.dir).expect("put the peer back");
    }
}

/// Relative path → (size, content hash) of every file under a directory.
type Snapshot = BTreeMap<PathBuf, (u64, u64)>;

fn snapshot(root: &Path) -> Snapshot {
    let mut m = Snapshot::new();
    for e in walkdir::WalkDir::new(root).into_iter().filter_map(|e| e.ok()) {
        if e.file_type().is_file() {
            let bytes = fs::read(e.path()).unwrap_or_default();
            let mut h = std::collections::hash_map::DefaultHasher::new();
            bytes.hash(&mut h);
            m.insert(e.path().strip_prefix(root).unwrap().to_path_buf(), (bytes.len() as u64, h.finish()));
        }
    }
    m
}

/// What a volume holds that must never be deleted by a peer's absence: manifests and blocks.
fn store(v: &TestVolume) -> Snapshot {
    let mut m = snapshot(&v.dir.join("local/root"));
    for (k, x) in snapshot(&v.dir.join("local/hashes")) {
        m.insert(Path::new("hashes").join(k), x);
    }
    m
}

fn stand_in(v: &TestVolume) -> Snapshot {
    snapshot(&v.dir)
}

fn assert_code(out: &Output, code: i32, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: exit {:?}, stdout {}, stderr {}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
    let err = text(&out.stderr);
    assert!(!err.contains("panicked") && !err.contains("internal error"), "{what}: panic: {err}");
}

/// The peer is named on the first line of stderr, which is the only line (or `max` lines).
fn assert_names_peer(out: &Output, max: usize, what: &str) {
    let err = text(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert!(!lines.is_empty() && lines.len() <= max, "{what}: expected 1..={max} lines on stderr: {err}");
    assert!(lines[0].contains("peer b"), "{what}: the first line does not name peer b: {err}");
}

fn set_config(v: &TestVolume, from: &str, to: &str) {
    let p = v.dir.join("local/config");
    let t = fs::read_to_string(&p).unwrap();
    assert!(t.contains(from), "config has no {from:?}");
    fs::write(&p, t.replacen(from, to, 1)).unwrap();
}

fn journal_counts(v: &TestVolume) -> BTreeMap<String, usize> {
    let mut ids = BTreeMap::new();
    for line in fs::read_to_string(v.dir.join("local/state/journal")).unwrap_or_default().lines() {
        if let Some(id) = line.split(' ').next().filter(|id| !id.is_empty()) {
            *ids.entry(id.to_string()).or_insert(0) += 1;
        }
    }
    ids
}

fn log_len(v: &TestVolume, path: &str) -> usize {
    json(&v.ok(&["--json", "log", path])).as_array().expect("log is a list").len()
}

/// b has every version a made (journal), each once.
fn assert_converged(a: &TestVolume, b: &TestVolume, what: &str) {
    b.ok(&["status"]); // applies the log
    let (ja, jb) = (journal_counts(a), journal_counts(b));
    let dup: Vec<_> = jb.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dup.is_empty(), "{what}: b has versions twice: {dup:?}");
    // Versions of a that exist (a journal line of a commit that died has no version).
    let items = json(&a.ok(&["--json", "ls", "-R", "-a"]));
    for i in items.as_array().unwrap() {
        if let (Some(p), Some(id)) = (i["path"].as_str(), i["version"].as_str()) {
            if ja.contains_key(id) {
                assert!(jb.contains_key(id), "{what}: b never got {p}@{id}");
            }
        }
    }
}

/// a and b linked both ways; b made `from-b/*` (1.2 MiB, 10 blocks and more) and pushed it
/// to a, which read `from-b/f0` (so it holds those blocks, pulled) but not the others; a made
/// 5 versions of `mine` that b has not received.
fn rig(cacheonly: bool) -> (TestVolume, TestVolume, Vec<Vec<u8>>) {
    let (a, b) = (TestVolume::named("a"), TestVolume::named("b"));
    a.ok(&["peer", "add", "b", s(&b.dir)]);
    b.ok(&["peer", "add", "a", s(&a.dir)]);
    if cacheonly {
        set_config(&a, "cacheonly = false", "cacheonly = true");
        set_config(&a, "cachetime = \"30m\"", "cachetime = \"0s\"");
    }
    let mut from_b = Vec::new();
    for i in 0..4 {
        let d = noise(300_000 + i * 1000, 500 + i as u64);
        b.write(&format!("from-b/f{i}"), &d);
        from_b.push(d);
    }
    assert_code(&b.run(&["push"]), 0, "b push");
    assert_eq!(a.read("from-b/f0"), from_b[0]);
    for i in 0..5 {
        a.write("mine", &noise(50_000, 900 + i));
    }
    (a, b, from_b)
}

#[test]
fn an_absent_peer_is_unreachable_for_push_mirror_prune_and_gc_and_a_retry_converges() {
    let started = Instant::now();
    for loss in LOSSES {
        let what = format!("{loss:?}");
        let (a, b, from_b) = rig(true);
        let before = store(&a);
        let away = Away::take(&b, loss);
        let stand = stand_in(&b);

        // push: exit 1 (partial success: every reachable peer got everything), one line.
        let out = a.run(&["push"]);
        assert_code(&out, 1, &format!("{what}: push"));
        assert_names_peer(&out, 1, &format!("{what}: push"));
        assert!(text(&out.stderr).contains("unreachable"), "{what}: push: {}", text(&out.stderr));
        // mirror: the blocks of from-b/f1.. are only on b: exit 1, naming b first.
        let out = a.run(&["mirror"]);
        assert_code(&out, 1, &format!("{what}: mirror"));
        assert_names_peer(&out, 2, &format!("{what}: mirror"));
        // prune: versions b has not received are kept, whatever the policy.
        let out = a.run(&["--json", "prune", "--keep-last", "1"]);
        assert_code(&out, 0, &format!("{what}: prune"));
        assert_eq!(
            json(&out.stdout)["pruned"].as_array().map(Vec::len),
            Some(0),
            "{what}: prune pruned unpushed versions"
        );
        // gc: the pulled blocks of from-b/f0 have no reachable good copy: none evicted.
        let out = a.run(&["--json", "gc"]);
        assert_code(&out, 0, &format!("{what}: gc"));
        let r = json(&out.stdout);
        assert_eq!((r["evicted"].as_u64(), r["deleted"].as_u64()), (Some(0), Some(0)), "{what}: gc with b away: {r}");
        // Reading what a holds still works; reading what only b has fails naming the block.
        assert_eq!(a.read("from-b/f0"), from_b[0]);
        let out = a.run(&["read", "from-b/f1"]);
        assert_code(&out, 2, &format!("{what}: read of a block only b has"));
        assert!(text(&out.stderr).contains("block"), "{what}: {}", text(&out.stderr));
        assert_eq!(store(&a), before, "{what}: a's manifests or blocks changed while b was away");
        away.back(&stand, &what);

        // b back: every command converges.
        assert_code(&a.run(&["push"]), 0, &format!("{what}: push after b came back"));
        assert_converged(&a, &b, &what);
        assert_code(&a.run(&["mirror"]), 0, &format!("{what}: mirror after b came back"));
        for (i, d) in from_b.iter().enumerate() {
            assert_eq!(&a.read(&format!("from-b/f{i}")), d, "{what}: from-b/f{i}");
        }
        // b keeps what it mirrored before a prunes and collects (DESIGN, "Pruning across
        // nodes"); older versions of a's `mine` that b never read lose their blocks then.
        assert_code(&b.run(&["mirror"]), 0, &format!("{what}: b mirror"));
        assert_code(&b.run(&["verify"]), 0, &format!("{what}: verify b"));
        assert_code(&a.run(&["prune", "--keep-last", "1"]), 0, &format!("{what}: prune after b came back"));
        assert_eq!(log_len(&a, "mine"), 1, "{what}: pushed versions of mine were not pruned");
        let r = json(&a.ok(&["--json", "gc"]));
        assert!(r["evicted"].as_u64().unwrap_or(0) > 0, "{what}: gc evicted nothing with b back: {r}");
        for (i, d) in from_b.iter().enumerate() {
            assert_eq!(&a.read(&format!("from-b/f{i}")), d, "{what}: from-b/f{i} after eviction");
        }
        assert_code(&a.run(&["verify"]), 0, &format!("{what}: verify a"));
        assert!(b.read("mine") == a.read("mine"), "{what}: b's head of mine");
    }
    eprintln!(
        "peer loss before push/mirror/prune/gc: 3 kinds of loss (missing, empty dir, other volume), nothing deleted or written, retries converged, {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// Swaps the peer away at a random instant while `cmd` runs on a; returns its output and
/// whether it was still running at the swap.
fn swap_during(
    a: &TestVolume,
    b: &TestVolume,
    cmd: &[&str],
    delay: Duration,
    loss: Loss,
) -> (Output, bool, Away, Snapshot) {
    let child = a.cmd(cmd).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let mut child = child;
    let until = Instant::now() + delay;
    while Instant::now() < until && child.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(1));
    }
    let running = child.try_wait().unwrap().is_none();
    let away = Away::take(b, loss);
    let stand = stand_in(b);
    let out = child.wait_with_output().expect("wait");
    (out, running, away, stand)
}

#[test]
fn a_peer_swapped_away_during_mirror_push_and_gc_loses_nothing() {
    let seed = seed_from_env("GLOBOFS_PEERLOSS_SEED");
    eprintln!("peer loss mid-operation: seed {seed} (GLOBOFS_PEERLOSS_SEED={seed} replays)");
    let mut rng = Rng(seed);
    let started = Instant::now();
    let rounds = if long_mode() { 4 } else { 1 };
    let mut tally: BTreeMap<&str, (usize, usize, usize)> = BTreeMap::new(); // (runs, mid, failed)

    for round in 0..rounds {
        for loss in LOSSES {
            let what = format!("round {round} {loss:?}");
            let (a, b, _) = rig(true);
            // b: 12 MiB of incompressible content in 64 KiB blocks and more, told to a.
            let src = b.scratch("big");
            let mut big = Vec::new();
            for i in 0..6u64 {
                let d = noise(2 << 20, rng.next());
                fs::write(src.join(format!("g{i}")), &d).unwrap();
                big.push(d);
            }
            b.ok(&["import", s(&src), "big"]);
            assert_code(&b.run(&["push"]), 0, "b push");
            a.ok(&["status"]);

            // mirror, swapped away once some blocks have arrived (or at a random instant).
            let before = store(&a);
            let t0 = Instant::now();
            let delay = Duration::from_millis(rng.range(5, 150));
            let (out, mid, away, stand) = swap_during(&a, &b, &["mirror"], delay, loss);
            let e = tally.entry("mirror").or_default();
            e.0 += 1;
            e.1 += usize::from(mid);
            if out.status.code() != Some(0) {
                e.2 += 1;
                assert!(matches!(out.status.code(), Some(1) | Some(2)), "{what}: mirror exit {:?}", out.status);
                assert_names_peer(&out, 2, &format!("{what}: mirror"));
            }
            let err = text(&out.stderr);
            assert!(!err.contains("panicked") && !err.contains("internal error"), "{what}: mirror panicked: {err}");
            // Nothing of a's went, nothing bad came: every block file present is sound.
            let after = store(&a);
            assert!(before.iter().all(|(k, x)| after.get(k) == Some(x)), "{what}: mirror deleted or changed a's files");
            let verify = a.run(&["verify"]);
            assert!(!text(&verify.stdout).contains("corrupt-block"), "{what}: {}", text(&verify.stdout));
            away.back(&stand, &format!("{what}: mirror"));
            assert_code(&a.run(&["mirror"]), 0, &format!("{what}: mirror after b came back"));
            for (i, d) in big.iter().enumerate() {
                assert_eq!(&a.read(&format!("big/g{i}")), d, "{what}: big/g{i}");
            }
            let mirror_ms = t0.elapsed().as_millis();

            // gc evicting the pulled blocks (cachetime 0), b swapped away meanwhile: whatever
            // was evicted is back on b's side, so every read works once b is back.
            let delay = Duration::from_millis(rng.range(0, 120));
            let (out, mid, away, stand) = swap_during(&a, &b, &["--json", "gc"], delay, loss);
            assert_code(&out, 0, &format!("{what}: gc"));
            let e = tally.entry("gc").or_default();
            e.0 += 1;
            e.1 += usize::from(mid);
            away.back(&stand, &format!("{what}: gc"));
            for (i, d) in big.iter().enumerate() {
                assert_eq!(&a.read(&format!("big/g{i}")), d, "{what}: big/g{i} after gc");
            }

            // push of 400 new versions, swapped away at a random instant.
            let src = a.scratch("many");
            for i in 0..400 {
                fs::write(src.join(format!("m{i:03}")), noise(100 + i, rng.next())).unwrap();
            }
            a.ok(&["import", s(&src), "many"]);
            let delay = Duration::from_millis(rng.range(0, 200));
            let (out, mid, away, stand) = swap_during(&a, &b, &["push"], delay, loss);
            let e = tally.entry("push").or_default();
            e.0 += 1;
            e.1 += usize::from(mid);
            if out.status.code() != Some(0) {
                e.2 += 1;
                assert!(matches!(out.status.code(), Some(1) | Some(2)), "{what}: push exit {:?}", out.status);
                assert_names_peer(&out, 1, &format!("{what}: push"));
            }
            away.back(&stand, &format!("{what}: push"));
            assert_code(&a.run(&["push"]), 0, &format!("{what}: push after b came back"));
            assert_converged(&a, &b, &what);
            assert_eq!(json(&b.ok(&["--json", "ls", "many"])).as_array().map(Vec::len), Some(400), "{what}: b's many/");
            assert_code(&a.run(&["verify"]), 0, &format!("{what}: verify a"));
            assert_code(&b.run(&["verify"]), 0, &format!("{what}: verify b"));
            eprintln!("peer loss mid-operation: {what}: mirror round {mirror_ms} ms");
        }
    }
    let parts: Vec<String> = tally
        .iter()
        .map(|(k, (n, mid, failed))| {
            format!("{k} {n} ({mid} swapped while running, {failed} ended in an error naming the peer)")
        })
        .collect();
    eprintln!(
        "peer loss mid-operation: {}; nothing lost, retries converged, {:.1} s (seed {seed})",
        parts.join(", "),
        started.elapsed().as_secs_f64()
    );
}

/// Regression: push checked the peer's uuid only before reading the journal, so a volume
/// mounted in the peer's place meanwhile received our log, and the push reported success
/// with its state counting those records as the peer's. Each round resends the whole journal (push state removed) and puts another
/// volume in the peer's place at a random instant during the push.
#[test]
fn push_never_writes_into_another_volume_mounted_in_the_peers_place() {
    let seed = seed_from_env("GLOBOFS_PEERLOSS_SEED") ^ 0x5eed;
    let mut rng = Rng(seed);
    let (a, b, _) = rig(false);
    let src = a.scratch("many");
    for i in 0..600 {
        fs::write(src.join(format!("m{i:03}")), noise(100 + i, rng.next())).unwrap();
    }
    a.ok(&["import", s(&src), "many"]);
    let state = |a: &TestVolume| {
        let dir = a.dir.join("local/state/push");
        fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).find(|p| p.extension().is_none()).expect("push state")
    };
    let t0 = Instant::now();
    assert_code(&a.run(&["push"]), 0, "calibration push");
    let span = t0.elapsed().as_millis() as u64;
    let rounds = if long_mode() { 30 } else { 8 };
    let (mut mid, mut refused, mut strays) = (0, 0, 0);
    for round in 0..rounds {
        fs::remove_file(state(&a)).unwrap();
        let delay = Duration::from_millis(rng.range(0, span));
        let (out, running, away, _) = swap_during(&a, &b, &["push"], delay, Loss::Other);
        mid += usize::from(running);
        if out.status.code() != Some(0) {
            refused += 1;
            // 1: unreachable; 2: the place changed in the middle of the append's own steps.
            assert!(matches!(out.status.code(), Some(1) | Some(2)), "round {round}: push exit {:?}", out.status);
            assert_names_peer(&out, 1, &format!("round {round}: push"));
        }
        // The uuid is checked again right before the append: a volume put in the peer's
        // place since the start gets nothing, except in the instant between that check and
        // the creation of our log directory there. Then the check after the append sees it,
        // and the push must not report success (its state does not count those records).
        let stand_now = stand_in(&b);
        if stand_now.keys().any(|k| k.starts_with("local/upstream/") && k.components().count() > 3) {
            strays += 1;
            assert_ne!(
                out.status.code(),
                Some(0),
                "round {round} (swap after {} ms): push wrote into the other volume and reported success: {}",
                delay.as_millis(),
                text(&out.stdout)
            );
        }
        away.back(&stand_now, &format!("round {round}"));
        assert_code(&a.run(&["push"]), 0, &format!("round {round}: push after b came back"));
        assert_converged(&a, &b, &format!("round {round}"));
    }
    eprintln!(
        "push vs another volume mounted in the peer's place: {rounds} rounds, {mid} swapped during the push, {refused} refused, {strays} with records in the other volume (all refused, none counted) (seed {seed})"
    );
}
