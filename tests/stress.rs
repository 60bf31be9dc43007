//! Concurrency: four processes at a time on one volume, for 15 s (60 s with
//! `GLOBOFS_LONG=1`): an importer (re-importing a tree that changes between runs), a writer
//! (`globofs write` of distinct contents, each acknowledged id recorded with its content),
//! a pusher (`push` to a peer) and a pruner (`prune --keep-last 3` then `gc`, in a loop).
//! At the end: no lost update (every acknowledged version reads back byte-identical, or was
//! legitimately pruned: not among the newest 3 of its path, and already received by the
//! peer; every path's head is its last acknowledged write), `verify` clean, and after a
//! final push and a mirror the peer has the same heads with the same content. Every command
//! of the loops must succeed. Meanwhile a reader `cat`s every file through a mount of the
//! volume: every read must be exactly one acknowledged version's bytes. The peer's `verify`
//! is clean too: the versions pruned before it fetched their blocks are pruned there as well.
//! `GLOBOFS_STRESS_SEED` replays the contents and choices.

use crate::util::*;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::process::Output;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Acknowledged versions: path → [(id, content)] in the order they were acknowledged.
type Acked = BTreeMap<String, Vec<(String, Vec<u8>)>>;

struct Shared {
    acked: Mutex<Acked>,
    failures: Mutex<Vec<String>>,
    stop: AtomicBool,
}

impl Shared {
    fn fail(&self, what: String) {
        eprintln!("stress: FAIL: {what}");
        self.failures.lock().unwrap().push(what);
    }

    fn ok(&self, out: &Output, what: &str) -> bool {
        if out.status.success() {
            return true;
        }
        self.fail(format!("{what} exited {:?}: {}", out.status.code(), text(&out.stderr).trim_end()));
        false
    }
}

fn heads(v: &TestVolume) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for i in json(&v.ok(&["--json", "ls", "-R"])).as_array().unwrap() {
        if let (Some(p), Some(id)) = (i["path"].as_str(), i["version"].as_str()) {
            if i["kind"] == "file" {
                m.insert(p.to_string(), id.to_string());
            }
        }
    }
    m
}

#[test]
fn four_processes_on_one_volume_lose_no_update() {
    let seed = seed_from_env("GLOBOFS_STRESS_SEED");
    let secs = if long_mode() { 60 } else { 15 };
    eprintln!("stress: {secs} s, seed {seed} (GLOBOFS_STRESS_SEED={seed} replays the contents)");
    let a = Arc::new(TestVolume::named("a"));
    let b = TestVolume::named("b");
    a.ok(&["peer", "add", "b", s(&b.dir)]);
    b.ok(&["peer", "add", "a", s(&a.dir)]);
    let shared = Arc::new(Shared {
        acked: Mutex::new(Acked::new()),
        failures: Mutex::new(Vec::new()),
        stop: AtomicBool::new(false),
    });
    let counts: Arc<[AtomicUsize; 4]> = Arc::new(Default::default());
    // A reader through a mount of a, when FUSE is there.
    let mount = match fuse_missing() {
        Some(why) => {
            eprintln!("stress: no reader through the mount: {why}");
            None
        }
        None => Some(Mounted::new(&a, "mnt")),
    };
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let mut threads = Vec::new();
    // reader: every read through the mount, kept (as a digest) to be checked at the end
    // against every acknowledged content of its path.
    let reads: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    let read_errors = Arc::new(AtomicUsize::new(0));
    if let Some(m) = &mount {
        let (dir, reads, read_errors) = (m.dir.clone(), reads.clone(), read_errors.clone());
        threads.push(std::thread::spawn(move || {
            let names: Vec<String> = (0..4).map(|i| format!("w/{i}")).chain((0..12).map(import_name)).collect();
            while Instant::now() < deadline {
                for name in &names {
                    match fs::read(dir.join(name)) {
                        Ok(data) => reads.lock().unwrap().push((name.clone(), digest(&data))),
                        // Not made yet (ENOENT), or pruned and collected while read: no bytes at all.
                        Err(_) => {
                            read_errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        }));
    }

    // importer
    {
        let (a, shared, counts) = (a.clone(), shared.clone(), counts.clone());
        let mut rng = Rng(seed ^ 1);
        threads.push(std::thread::spawn(move || {
            let src = a.scratch("src");
            let mut tree: BTreeMap<String, Vec<u8>> = BTreeMap::new();
            for i in 0..12 {
                tree.insert(import_name(i)[4..].to_string(), noise(rng.range(0, 40_000) as usize, rng.next()));
            }
            let mut changed: BTreeSet<String> = tree.keys().cloned().collect();
            while Instant::now() < deadline {
                for k in &changed {
                    let p = src.join(k);
                    fs::create_dir_all(p.parent().unwrap()).unwrap();
                    fs::write(&p, &tree[k]).unwrap();
                }
                let out = a.run(&["import", s(&src), "imp"]);
                if !shared.ok(&out, "import") {
                    break;
                }
                counts[0].fetch_add(1, Ordering::Relaxed);
                // Only this thread changes imp/: its heads now are what the import made.
                let h = heads(&a);
                let mut acked = shared.acked.lock().unwrap();
                for k in &changed {
                    let path = format!("imp/{k}");
                    let id = h.get(&path).cloned().unwrap_or_default();
                    let list = acked.entry(path).or_default();
                    if list.last().map(|l| &l.0) != Some(&id) {
                        list.push((id, tree[k].clone()));
                    }
                }
                drop(acked);
                // Change 2 files for the next round (distinct contents every time).
                let keys: Vec<String> = tree.keys().cloned().collect();
                changed.clear();
                while changed.len() < 2 {
                    changed.insert(keys[rng.range(0, keys.len() as u64 - 1) as usize].clone());
                }
                for k in &changed {
                    tree.insert(k.clone(), noise(rng.range(1, 40_000) as usize, rng.next()));
                }
            }
        }));
    }
    // writer
    {
        let (a, shared, counts) = (a.clone(), shared.clone(), counts.clone());
        let mut rng = Rng(seed ^ 2);
        threads.push(std::thread::spawn(move || {
            let mut n = 0u64;
            while Instant::now() < deadline {
                let path = format!("w/{}", n % 4);
                let mut data = noise(rng.range(1, 120_000) as usize, rng.next());
                data.extend_from_slice(format!("#{n}").as_bytes()); // distinct
                let out = a.run_with_input(&["write", &path], &data);
                if !shared.ok(&out, &format!("write {path}")) {
                    break;
                }
                counts[1].fetch_add(1, Ordering::Relaxed);
                let id = text(&out.stdout).trim().to_string();
                shared.acked.lock().unwrap().entry(path).or_default().push((id, data));
                n += 1;
            }
        }));
    }
    // pusher
    {
        let (a, shared, counts) = (a.clone(), shared.clone(), counts.clone());
        threads.push(std::thread::spawn(move || {
            while Instant::now() < deadline && !shared.stop.load(Ordering::Relaxed) {
                if !shared.ok(&a.run(&["push"]), "push") {
                    break;
                }
                counts[2].fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(150));
            }
        }));
    }
    // pruner
    {
        let (a, shared, counts) = (a.clone(), shared.clone(), counts.clone());
        threads.push(std::thread::spawn(move || {
            while Instant::now() < deadline {
                if !shared.ok(&a.run(&["prune", "--keep-last", "3"]), "prune") || !shared.ok(&a.run(&["gc"]), "gc") {
                    break;
                }
                counts[3].fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        }));
    }
    for t in threads {
        t.join().expect("a stress thread panicked");
    }
    let ran = started.elapsed();

    // The final push, then b applies it and mirrors the heads.
    let out = a.run(&["push"]);
    shared.ok(&out, "final push");
    shared.ok(&b.run(&["mirror"]), "mirror on b");

    let acked = shared.acked.lock().unwrap().clone();
    let (mut versions, mut pruned, mut lost) = (0, 0, 0);
    for (path, list) in &acked {
        let on_a: BTreeSet<String> = log_ids(&a, path).into_iter().collect();
        // What b received: listed, or pruned there after a's prune reached it.
        let mut on_b: BTreeSet<String> = log_ids(&b, path).into_iter().collect();
        let pruned_on_b = fs::read_to_string(b.dir.join("local/root").join(path).join("versions/.pruned"));
        on_b.extend(pruned_on_b.unwrap_or_default().lines().filter_map(|l| l.split(' ').next()).map(String::from));
        // The newest 3 acknowledged versions (ids are time-ordered) must stay.
        let mut ids: Vec<&String> = list.iter().map(|x| &x.0).collect();
        ids.sort();
        let newest: BTreeSet<&String> = ids.iter().rev().take(3).copied().collect();
        for (id, content) in list {
            versions += 1;
            if on_a.contains(id) {
                let out = a.run(&["read", &format!("{path}@{id}")]);
                if !out.status.success() || out.stdout != *content {
                    lost += 1;
                    shared.fail(format!(
                        "{path}@{id}: listed but reads {} bytes, not the acknowledged {}: {}",
                        out.stdout.len(),
                        content.len(),
                        text(&out.stderr).trim_end()
                    ));
                }
            } else if newest.contains(id) {
                lost += 1;
                shared.fail(format!("{path}@{id}: one of the newest 3, gone"));
            } else if !on_b.contains(id) {
                lost += 1;
                shared.fail(format!("{path}@{id}: pruned before the peer received it"));
            } else {
                pruned += 1;
            }
        }
        // The head is the last acknowledged write.
        let last = &list.last().unwrap().1;
        if a.run(&["read", path]).stdout != *last {
            lost += 1;
            shared.fail(format!("{path}: the head is not the last acknowledged write"));
        }
    }
    // Every read through the mount gave exactly one acknowledged version's bytes.
    let reads = std::mem::take(&mut *reads.lock().unwrap());
    let versions_of: BTreeSet<(&String, u64)> =
        acked.iter().flat_map(|(path, l)| l.iter().map(move |(_, c)| (path, digest(c)))).collect();
    let wrong: Vec<&(String, u64)> = reads.iter().filter(|(path, d)| !versions_of.contains(&(path, *d))).collect();
    if !wrong.is_empty() {
        shared.fail(format!("{} of {} reads through the mount match no version: {wrong:?}", wrong.len(), reads.len()));
    }
    if let Some(m) = mount {
        m.unmount();
    }
    let verify = a.run(&["verify"]);
    shared.ok(&verify, "verify on a");
    // b: the same heads, with the same content.
    let (ha, hb) = (heads(&a), heads(&b));
    if ha != hb {
        shared.fail(format!("b's heads differ from a's: a {ha:?}\nb {hb:?}"));
    }
    for (path, list) in &acked {
        if b.run(&["read", path]).stdout != list.last().unwrap().1 {
            shared.fail(format!("b: {path} is not the last acknowledged write"));
        }
    }
    // Old versions that a pruned and collected before b read them were pruned on b too
    // (their prune travelled with the log): b's verify is clean.
    let vb = b.run(&["verify"]);
    shared.ok(&vb, "verify on b");
    let c: Vec<usize> = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    eprintln!(
        "stress: 4 processes for {:.1} s: {} imports, {} writes, {} pushes, {} prune+gc rounds; {versions} acknowledged versions, {lost} lost updates, {pruned} legitimately pruned; {} reads through the mount, {} matching no version, {} failed; verify on a {}; b converged after the final push + mirror ({} heads), its verify clean; {:.1} s in all",
        ran.as_secs_f64(),
        c[0],
        c[1],
        c[2],
        c[3],
        reads.len(),
        wrong.len(),
        read_errors.load(Ordering::Relaxed),
        if verify.status.success() { "clean" } else { "NOT clean" },
        hb.len(),
        started.elapsed().as_secs_f64()
    );
    let failures = shared.failures.lock().unwrap();
    assert!(failures.is_empty(), "seed {seed}: {} failures:\n{}", failures.len(), failures.join("\n"));
    assert!(c.iter().all(|&n| n > 0), "a loop never completed a round: {c:?}");
}

/// The volume path of the importer's file `i`.
fn import_name(i: usize) -> String {
    format!("imp/{}f{i:02}", if i % 3 == 0 { "d/" } else { "" })
}

fn digest(data: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    data.hash(&mut h);
    h.finish()
}
