//! kill -9 at random instants of every kind of process that changes a volume: `import`,
//! `write` (stdin), `push` (into a peer's volume), `prune --keep-last 3` followed by `gc`,
//! and `globofs mount --foreground` while a writer process copies files in. After each
//! kill: `verify` exits 0 (temp files a crash leaves are ignored by design), every version
//! acknowledged before the kill (a command that exited 0, a file whose `cp` through the
//! mount exited 0) reads back byte-identical, and a retry of the interrupted command
//! succeeds and converges (push: the peer ends up with every version of ours, each once;
//! prune+gc: exactly the newest 3 versions of each path and no garbage block left).
//!
//! The kill instants are drawn from a seeded generator: the seed is printed, and
//! `GLOBOFS_KILL_SEED=<seed>` replays a run; `GLOBOFS_KILL_ONLY=import|write|push|prune|mount`
//! runs one kind. 54 kills by default (import 12, write 12, push 10, prune+gc 10, mount 10),
//! four times as many with `GLOBOFS_LONG=1`. Each kind calibrates the duration of an
//! uninterrupted run and draws instants over it (shrinking the span when the process keeps
//! finishing first), so kills land in every phase, the final commit included.

use crate::util::*;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufRead, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// (path, version id, content) of an acknowledged version.
type Acked = Vec<(String, String, Vec<u8>)>;

#[derive(Default)]
struct Tally {
    /// Runs (each with one SIGKILL sent).
    runs: usize,
    /// Kills that landed while the process was still running.
    landed: usize,
    /// Acknowledged versions that did not read back byte-identical.
    lost: usize,
    /// verify runs that exited 0, of those made after a kill.
    verify_clean: usize,
    verify_runs: usize,
    failures: Vec<String>,
}

impl Tally {
    fn fail(&mut self, what: String) {
        eprintln!("killall: FAIL: {what}");
        self.failures.push(what);
    }

    fn add(&mut self, o: &Tally) {
        self.runs += o.runs;
        self.landed += o.landed;
        self.lost += o.lost;
        self.verify_clean += o.verify_clean;
        self.verify_runs += o.verify_runs;
        self.failures.extend(o.failures.iter().cloned());
    }
}

/// Waits `delay`, then SIGKILLs the child; true if it was still running at that instant.
fn kill_after(child: &mut Child, delay: Duration) -> bool {
    let until = Instant::now() + delay;
    while Instant::now() < until {
        if child.try_wait().expect("try_wait").is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1).min(until.saturating_duration_since(Instant::now())));
    }
    let running = child.try_wait().expect("try_wait").is_none();
    let _ = child.kill();
    let _ = child.wait();
    running
}

/// Random kill instants over a span calibrated on an uninterrupted run; the span shrinks
/// towards the instants that came too late.
struct Instants {
    span: u64,
}

impl Instants {
    fn new(calibrated: Duration) -> Instants {
        Instants { span: (calibrated.as_millis() as u64 * 11 / 10).max(5) }
    }

    fn draw(&self, rng: &mut Rng) -> Duration {
        Duration::from_millis(rng.range(0, self.span))
    }

    /// The process took less than `delay`: draw from a shorter span from now on.
    fn finished_first(&mut self, delay: Duration) {
        self.span = (delay.as_millis() as u64 * 9 / 10).clamp(5, self.span);
    }
}

/// `verify` must exit 0, and every acknowledged version must read back byte-identical.
fn check(v: &TestVolume, acked: &Acked, t: &mut Tally, when: &str) {
    let out = v.run(&["verify"]);
    t.verify_runs += 1;
    if out.status.success() {
        t.verify_clean += 1;
    } else {
        t.fail(format!(
            "{when}: verify of {} exited {:?}: {}{}",
            v.dir.display(),
            out.status.code(),
            text(&out.stdout),
            text(&out.stderr)
        ));
    }
    check_acked(v, acked, t, when);
}

fn check_acked(v: &TestVolume, acked: &Acked, t: &mut Tally, when: &str) {
    for (path, id, content) in acked {
        let out = v.run(&["read", &format!("{path}@{id}")]);
        if !out.status.success() || out.stdout != *content {
            t.lost += 1;
            t.fail(format!(
                "{when}: acknowledged {path}@{id} lost: exit {:?}, {} of {} bytes{}; {}",
                out.status.code(),
                out.stdout.len(),
                content.len(),
                if out.stdout.len() == content.len() { " (content differs)" } else { "" },
                text(&out.stderr).trim_end()
            ));
        }
    }
}

/// Head version id of every live file at or under `top`.
fn head_ids(v: &TestVolume, top: &str) -> BTreeMap<String, String> {
    let items = json(&v.ok(&["--json", "ls", "-R", top]));
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

fn log_ids(v: &TestVolume, path: &str) -> Vec<String> {
    match v.run(&["--json", "log", path]) {
        out if out.status.success() => json(&out.stdout)
            .as_array()
            .expect("log is a list")
            .iter()
            .filter_map(|e| e["version"].as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

fn write_file(p: &Path, data: &[u8]) {
    fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    fs::write(p, data).expect("write source file");
}

fn kind_runs(normal: usize) -> usize {
    if long_mode() {
        normal * 4
    } else {
        normal
    }
}

// ---------------------------------------------------------------------------------------
// import
// ---------------------------------------------------------------------------------------

fn import_kills(rng: &mut Rng, runs: usize) -> Tally {
    let mut t = Tally::default();
    let v = TestVolume::new(&["--block-size", "64K"]);
    let src = v.scratch("src");
    let mut tree: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for i in 0..16 {
        let name = if i % 4 == 0 { format!("sub/f{i:02}") } else { format!("f{i:02}") };
        tree.insert(name, noise(rng.range(0, 8000) as usize, rng.next()));
    }
    tree.insert("big".into(), noise(rng.range(1 << 20, 3 << 19) as usize, rng.next()));
    for (k, c) in &tree {
        write_file(&src.join(k), c);
    }
    v.ok(&["import", s(&src), "data"]);
    let heads = head_ids(&v, "data");
    let mut acked: Acked =
        tree.iter().map(|(k, c)| (format!("data/{k}"), heads[&format!("data/{k}")].clone(), c.clone())).collect();
    let keys: Vec<String> = tree.keys().cloned().collect();
    let mut instants = Instants::new(Duration::ZERO);
    // Run 0 is not killed: it times a re-import of changes, over which the kills are drawn.
    for run in 0..=runs {
        // Change four files (the big one in place, 4 KiB in its middle) and add one.
        let mut changed = BTreeSet::new();
        while changed.len() < 4 {
            changed.insert(keys[rng.range(0, keys.len() as u64 - 1) as usize].clone());
        }
        changed.insert(format!("new/n{run:02}"));
        for k in &changed {
            let c = if k == "big" {
                let mut b = tree[k].clone();
                let mid = b.len() / 2;
                b[mid..mid + 4096].copy_from_slice(&noise(4096, rng.next()));
                b
            } else {
                noise(rng.range(1, 9000) as usize, rng.next())
            };
            write_file(&src.join(k), &c);
            tree.insert(k.clone(), c);
        }
        let delay = instants.draw(rng);
        let when = format!("import run {run} (kill after {} ms)", delay.as_millis());
        if run == 0 {
            let t0 = Instant::now();
            v.ok(&["import", s(&src), "data"]);
            instants = Instants::new(t0.elapsed());
        } else {
            let mut child = v
                .cmd(&["import", s(&src), "data"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn import");
            t.runs += 1;
            if kill_after(&mut child, delay) {
                t.landed += 1;
            } else {
                instants.finished_first(delay);
            }
            check(&v, &acked, &mut t, &when);
        }
        // The retry completes, and every head is the source's content.
        let out = v.run(&["import", s(&src), "data"]);
        if !out.status.success() {
            t.fail(format!("{when}: the retried import failed: {}", text(&out.stderr)));
            continue;
        }
        let heads = head_ids(&v, "data");
        for (k, c) in &tree {
            let path = format!("data/{k}");
            match heads.get(&path) {
                Some(id) if changed.contains(k) => acked.push((path, id.clone(), c.clone())),
                Some(_) => {}
                None => t.fail(format!("{when}: after the retry, {path} has no head")),
            }
        }
        check_acked(&v, &acked, &mut t, &format!("{when}, after the retry"));
        for (k, c) in &tree {
            if let Some(id) = heads.get(&format!("data/{k}")) {
                let got = v.read(&format!("data/{k}@{id}"));
                if got != *c {
                    t.fail(format!("{when}: after the retry, the head of data/{k} is not the source's content"));
                }
            }
        }
    }
    t
}

// ---------------------------------------------------------------------------------------
// write (stdin)
// ---------------------------------------------------------------------------------------

fn spawn_write(v: &TestVolume, path: &str, data: &[u8]) -> (Child, std::thread::JoinHandle<()>) {
    let mut child = v
        .cmd(&["write", path])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn write");
    let mut input = child.stdin.take().expect("stdin");
    let data = data.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    (child, feeder)
}

fn write_kills(rng: &mut Rng, runs: usize) -> Tally {
    let mut t = Tally::default();
    let v = TestVolume::new(&["--block-size", "64K"]);
    let mut acked: Acked = Vec::new();
    let t0 = Instant::now();
    let first = noise(1 << 20, rng.next());
    acked.push(("w/0".into(), v.write("w/0", &first), first));
    let mut instants = Instants::new(t0.elapsed());
    for run in 0..runs {
        let path = format!("w/{}", rng.range(0, 2));
        let data = noise(rng.range(0, 3 << 19) as usize, rng.next());
        let delay = instants.draw(rng);
        let (mut child, feeder) = spawn_write(&v, &path, &data);
        let mut stdout = child.stdout.take().expect("stdout");
        t.runs += 1;
        let killed = kill_after(&mut child, delay);
        let _ = feeder.join();
        let mut printed = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut printed);
        let when = format!("write run {run} ({path}, {} bytes, kill after {} ms)", data.len(), delay.as_millis());
        if killed {
            t.landed += 1;
        } else {
            instants.finished_first(delay);
            // It exited before the kill: if it exited 0 it printed the id, acknowledged.
            if let Some(id) = printed.lines().next().filter(|l| !l.is_empty()) {
                acked.push((path.clone(), id.to_string(), data.clone()));
            }
        }
        check(&v, &acked, &mut t, &when);
        // The head is the last acknowledged content or the new one, never anything else.
        let prev = acked.iter().rev().find(|a| a.0 == path).map(|a| a.2.clone());
        let head = v.run(&["read", &path]);
        let head_ok = match (&prev, head.status.success()) {
            (_, true) => head.stdout == data || prev.as_ref() == Some(&head.stdout),
            (None, false) => true,
            (Some(_), false) => false,
        };
        if !head_ok {
            t.fail(format!(
                "{when}: the head of {path} is neither the acknowledged content nor the new one ({} bytes)",
                head.stdout.len()
            ));
        }
        // The retry succeeds and becomes the head.
        let out = v.run_with_input(&["write", &path], &data);
        if !out.status.success() {
            t.fail(format!("{when}: the retried write failed: {}", text(&out.stderr)));
            continue;
        }
        let id = text(&out.stdout).trim().to_string();
        acked.push((path.clone(), id, data.clone()));
        if v.read(&path) != data {
            t.fail(format!("{when}: after the retry, the head of {path} is not the written content"));
        }
    }
    check_acked(&v, &acked, &mut t, "write, at the end");
    t
}

// ---------------------------------------------------------------------------------------
// push
// ---------------------------------------------------------------------------------------

/// Every version id in a volume's journal, with the number of lines naming it.
fn journal_ids(v: &TestVolume) -> BTreeMap<String, usize> {
    let mut ids = BTreeMap::new();
    for line in fs::read_to_string(v.dir.join("local/state/journal")).unwrap_or_default().lines() {
        if let Some(id) = line.split(' ').next().filter(|id| !id.is_empty()) {
            *ids.entry(id.to_string()).or_insert(0) += 1;
        }
    }
    ids
}

fn push_kills(rng: &mut Rng, runs: usize) -> Tally {
    let mut t = Tally::default();
    let a = TestVolume::named("a");
    let b = TestVolume::named("b");
    a.ok(&["peer", "add", "b", s(&b.dir)]);
    b.ok(&["peer", "add", "a", s(&a.dir)]);
    let mut acked: Acked = Vec::new();
    let mut paths: Vec<String> = Vec::new();
    let batch = |rng: &mut Rng, n: usize, acked: &mut Acked, paths: &mut Vec<String>| {
        // 30 small files in a new directory, and a new version of an old one.
        let src = a.scratch(&format!("src{n}"));
        let mut tree = BTreeMap::new();
        for i in 0..30 {
            tree.insert(format!("f{i:02}"), noise(rng.range(0, 3000) as usize, rng.next()));
        }
        for (k, c) in &tree {
            write_file(&src.join(k), c);
        }
        a.ok(&["import", s(&src), &format!("p{n}")]);
        let heads = head_ids(&a, &format!("p{n}"));
        for (k, c) in &tree {
            let path = format!("p{n}/{k}");
            acked.push((path.clone(), heads[&path].clone(), c.clone()));
            paths.push(path);
        }
        let again = noise(rng.range(1000, 200_000) as usize, rng.next());
        acked.push(("again".into(), a.write("again", &again), again));
    };
    paths.push("again".into());
    batch(rng, 0, &mut acked, &mut paths);
    let t0 = Instant::now();
    let out = a.run(&["push"]);
    assert!(out.status.success(), "calibration push: {}", text(&out.stderr));
    let mut instants = Instants::new(t0.elapsed());
    for run in 0..runs {
        batch(rng, run + 1, &mut acked, &mut paths);
        let delay = instants.draw(rng);
        let mut child = a
            .cmd(&["push"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn push");
        t.runs += 1;
        if kill_after(&mut child, delay) {
            t.landed += 1;
        } else {
            instants.finished_first(delay);
        }
        let when = format!("push run {run} (kill after {} ms)", delay.as_millis());
        check(&a, &acked, &mut t, &format!("{when}, on a"));
        // b applies whatever complete records reached it (verify receives first).
        let out = b.run(&["verify"]);
        t.verify_runs += 1;
        if out.status.success() {
            t.verify_clean += 1;
        } else {
            t.fail(format!(
                "{when}: verify on b exited {:?}: {}{}",
                out.status.code(),
                text(&out.stdout),
                text(&out.stderr)
            ));
        }
        // The retry succeeds; b then has every version of a, once.
        let out = a.run(&["push"]);
        if out.status.code() != Some(0) {
            t.fail(format!("{when}: the retried push exited {:?}: {}", out.status.code(), text(&out.stderr)));
            continue;
        }
        b.ok(&["status"]); // applies the log
        let dup: Vec<_> = journal_ids(&b).into_iter().filter(|(_, n)| *n > 1).collect();
        if !dup.is_empty() {
            t.fail(format!("{when}: b's journal names versions more than once: {dup:?}"));
        }
        let touched: BTreeSet<&String> =
            paths.iter().filter(|p| p.starts_with(&format!("p{}/", run + 1)) || *p == "again").collect();
        for p in touched {
            let (ia, ib) = (log_ids(&a, p), log_ids(&b, p));
            let sb: BTreeSet<&String> = ib.iter().collect();
            if sb.len() != ib.len() {
                t.fail(format!("{when}: b lists a version of {p} twice: {ib:?}"));
            }
            if ia != ib {
                t.fail(format!("{when}: b's versions of {p} differ from a's: a {ia:?}, b {ib:?}"));
            }
        }
        // b reads this run's content back (pulling the blocks from a).
        for (p, id, c) in acked.iter().filter(|x| x.0.starts_with(&format!("p{}/", run + 1))) {
            let out = b.run(&["read", &format!("{p}@{id}")]);
            if out.stdout != *c {
                t.fail(format!("{when}: b cannot read {p}@{id}: {}", text(&out.stderr)));
            }
        }
    }
    // In the end b has every version that a has, each once.
    let (ja, jb) = (journal_ids(&a), journal_ids(&b));
    for (p, id, _) in &acked {
        if !jb.contains_key(id) {
            t.fail(format!("push, at the end: b never received {p}@{id}"));
        }
    }
    if jb.keys().any(|id| !ja.contains_key(id)) {
        t.fail("push, at the end: b's journal has versions a never made".into());
    }
    t
}

// ---------------------------------------------------------------------------------------
// prune + gc
// ---------------------------------------------------------------------------------------

fn prune_kills(rng: &mut Rng, runs: usize) -> Tally {
    let mut t = Tally::default();
    let v = TestVolume::new(&["--block-size", "64K"]);
    let paths = ["g/0", "g/1", "g/2"];
    // Every acknowledged version, oldest first per path.
    let mut versions: BTreeMap<&str, Vec<(String, Vec<u8>)>> = BTreeMap::new();
    let add = |rng: &mut Rng, versions: &mut BTreeMap<&str, Vec<(String, Vec<u8>)>>| {
        for p in paths {
            for _ in 0..2 {
                let d = noise(rng.range(50_000, 400_000) as usize, rng.next());
                let id = v.write(p, &d);
                versions.entry(p).or_default().push((id, d));
            }
        }
    };
    add(rng, &mut versions);
    let prune_gc = |stop_at: Option<Instant>| -> (bool, Option<i32>) {
        // Returns (killed while running, exit code of the step that ran last).
        for args in [&["prune", "--keep-last", "3"][..], &["gc"][..]] {
            let mut child =
                v.cmd(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn");
            match stop_at {
                Some(at) => {
                    if kill_after(&mut child, at.saturating_duration_since(Instant::now())) {
                        return (true, None);
                    }
                    let code = child.wait().expect("wait").code();
                    if code != Some(0) {
                        return (false, code);
                    }
                }
                None => {
                    let code = child.wait().expect("wait").code();
                    if code != Some(0) {
                        return (false, code);
                    }
                }
            }
        }
        (false, Some(0))
    };
    let t0 = Instant::now();
    add(rng, &mut versions);
    assert_eq!(prune_gc(None).1, Some(0), "calibration prune+gc");
    let mut instants = Instants::new(t0.elapsed());
    for run in 0..runs {
        add(rng, &mut versions);
        let delay = instants.draw(rng);
        t.runs += 1;
        let (killed, code) = prune_gc(Some(Instant::now() + delay));
        if killed {
            t.landed += 1;
        } else {
            instants.finished_first(delay);
            if code != Some(0) {
                t.fail(format!("prune run {run}: prune or gc exited {code:?} on its own"));
            }
        }
        let when = format!("prune+gc run {run} (kill after {} ms)", delay.as_millis());
        // The newest 3 of each path must read back; older ones may be gone (pruned), but
        // if they read, they read right.
        let must: Acked = versions
            .iter()
            .flat_map(|(p, vs)| vs.iter().rev().take(3).map(move |(id, d)| (p.to_string(), id.clone(), d.clone())))
            .collect();
        check(&v, &must, &mut t, &when);
        for (p, vs) in &versions {
            for (id, d) in vs.iter().rev().skip(3) {
                let out = v.run(&["read", &format!("{p}@{id}")]);
                if out.status.success() && out.stdout != *d {
                    t.lost += 1;
                    t.fail(format!("{when}: {p}@{id} (prunable) reads other bytes"));
                } else if !out.status.success() && !text(&out.stderr).contains("no version") {
                    t.fail(format!("{when}: {p}@{id} (prunable) fails oddly: {}", text(&out.stderr).trim_end()));
                }
            }
        }
        // The retry converges: exactly 3 versions per path, and no garbage block left.
        let (_, code) = prune_gc(None);
        if code != Some(0) {
            t.fail(format!("{when}: the retried prune+gc exited {code:?}"));
            continue;
        }
        for p in paths {
            let ids = log_ids(&v, p);
            let want: Vec<String> = versions[p].iter().rev().take(3).map(|x| x.0.clone()).collect();
            if ids != want {
                t.fail(format!("{when}: after the retry {p} has versions {ids:?}, want the newest 3 {want:?}"));
            }
        }
        let r = json(&v.ok(&["--json", "gc"]));
        if r["deleted"] != 0 || r["stored"] != r["referenced"] {
            t.fail(format!("{when}: after the retry gc still finds garbage: {r}"));
        }
    }
    t
}

// ---------------------------------------------------------------------------------------
// writes through the mount
// ---------------------------------------------------------------------------------------

/// A writer process copying `names` from `src` into `mnt` one by one with `cp`, printing
/// each name once its `cp` exited 0 (cp checks close(2), where the mount stores the file).
/// Stops at the first failure.
fn spawn_copier(src: &Path, mnt: &Path, names: &[String]) -> Child {
    Command::new("sh")
        .arg("-c")
        .arg(r#"src=$1; dst=$2; shift 2; for f in "$@"; do cp "$src/$f" "$dst/$f" || exit 1; echo "$f"; done"#)
        .arg("sh")
        .arg(src)
        .arg(mnt)
        .args(names)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the copying shell")
}

fn copied(child: Child) -> (Option<i32>, Vec<String>) {
    let out = child.wait_with_output().expect("wait for the copier");
    (out.status.code(), out.stdout.lines().map_while(Result::ok).collect())
}

fn mount_kills(rng: &mut Rng, runs: usize) -> Tally {
    let mut t = Tally::default();
    let v = TestVolume::new(&["--block-size", "64K"]);
    let src = v.scratch("src");
    let mut contents: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut acked: Acked = Vec::new();
    let mut unacked: Vec<String> = Vec::new();
    let mut instants: Option<Instants> = None;
    // Round 0 calibrates (uninterrupted), rounds 1..=runs are killed, the last round only
    // retries what the last kill interrupted.
    for run in 0..=runs + 1 {
        let mut names = std::mem::take(&mut unacked);
        if run <= runs {
            // Ten new files per round (2 KiB to 700 KiB), after those the last kill interrupted.
            for i in 0..10 {
                let name = format!("r{run:02}-f{i}");
                let d = noise(rng.range(2000, 700_000) as usize, rng.next());
                fs::write(src.join(&name), &d).expect("write source");
                contents.insert(name.clone(), d);
                names.push(name);
            }
        }
        let mut m = Mounted::new(&v, &format!("mnt{run:02}"));
        let _ = fs::create_dir(m.p("in"));
        let t0 = Instant::now();
        let mut child = spawn_copier(&src, &m.dir.join("in"), &names);
        if run == 0 || run == runs + 1 {
            let (code, done) = copied(child);
            if run == 0 {
                instants = Some(Instants::new(t0.elapsed()));
            }
            let log = m.unmount();
            if code != Some(0) || done.len() != names.len() {
                t.fail(format!(
                    "mount round {run}: copied {} of {} files (exit {code:?}): {log}",
                    done.len(),
                    names.len()
                ));
            }
            for n in &done {
                ack_mounted(&v, n, &contents, &mut acked);
            }
            unacked.extend(names.iter().filter(|n| !done.contains(n)).cloned());
            continue;
        }
        // Kill the mount at a random instant while the copier runs.
        let ins = instants.as_mut().expect("calibrated");
        let delay = ins.draw(rng);
        std::thread::sleep(delay);
        let writer_done = child.try_wait().expect("try_wait").is_some();
        let mut mount = m.child.take().expect("mount process");
        let _ = mount.kill();
        let _ = mount.wait();
        t.runs += 1;
        if writer_done {
            ins.finished_first(delay);
        } else {
            t.landed += 1;
        }
        let (_, done) = copied(child);
        let _ = Command::new("fusermount3").arg("-uz").arg(&m.dir).output();
        let when = format!(
            "mount run {run} (kill after {} ms, {} of {} files copied)",
            delay.as_millis(),
            done.len(),
            names.len()
        );
        for n in &done {
            ack_mounted(&v, n, &contents, &mut acked);
        }
        check(&v, &acked, &mut t, &when);
        // A file whose copy was cut short has no version, or a whole one (stored at close
        // just before the kill); never a torn one.
        for n in names.iter().filter(|n| !done.contains(n)) {
            let out = v.run(&["read", &format!("in/{n}")]);
            if out.status.success() && out.stdout != contents[n] && !out.stdout.is_empty() {
                t.fail(format!("{when}: in/{n}, cut short, has a torn head of {} bytes", out.stdout.len()));
            }
            unacked.push(n.clone());
        }
    }
    check(&v, &acked, &mut t, "mount, at the end");
    for (n, d) in &contents {
        if v.run(&["read", &format!("in/{n}")]).stdout != *d {
            t.fail(format!("mount, at the end: in/{n} does not read back after the retries"));
        }
    }
    t
}

fn ack_mounted(v: &TestVolume, name: &str, contents: &BTreeMap<String, Vec<u8>>, acked: &mut Acked) {
    let path = format!("in/{name}");
    let id = log_ids(v, &path)
        .into_iter()
        .next()
        .unwrap_or_else(|| format!("<none: {path} was acknowledged but has no version>"));
    acked.push((path, id, contents[name].clone()));
}

// ---------------------------------------------------------------------------------------

#[test]
fn kill_9_at_random_instants_loses_nothing() {
    let seed = seed_from_env("GLOBOFS_KILL_SEED");
    let only = std::env::var("GLOBOFS_KILL_ONLY").ok();
    eprintln!(
        "kill -9: seed {seed} (replay with GLOBOFS_KILL_SEED={seed}){}",
        if long_mode() { ", long mode" } else { "" }
    );
    let started = Instant::now();
    let mut total = Tally::default();
    let mut parts = Vec::new();
    type Kind = fn(&mut Rng, usize) -> Tally;
    let kinds: [(&str, &str, Kind, usize); 5] = [
        ("import", "import", import_kills, 12),
        ("write", "write", write_kills, 12),
        ("push", "push", push_kills, 10),
        ("prune", "prune+gc", prune_kills, 10),
        ("mount", "mount", mount_kills, 10),
    ];
    for (i, (key, label, f, n)) in kinds.into_iter().enumerate() {
        if only.as_deref().is_some_and(|o| o != key) {
            continue;
        }
        if key == "mount" {
            if let Some(why) = fuse_missing() {
                eprintln!("kill -9: mount: skipped: {why}");
                parts.push(format!("mount skipped: {why}"));
                continue;
            }
        }
        let t0 = Instant::now();
        let mut rng = Rng(seed ^ (0x1000_0000_0000 * (i as u64 + 1)));
        let t = f(&mut rng, kind_runs(n));
        eprintln!(
            "kill -9: {label}: {} runs, {} landed while running, {} acknowledged versions lost, verify clean {}/{}, {:.1} s",
            t.runs,
            t.landed,
            t.lost,
            t.verify_clean,
            t.verify_runs,
            t0.elapsed().as_secs_f64()
        );
        parts.push(format!("{label} {}", t.runs));
        total.add(&t);
    }
    eprintln!(
        "kill -9: {} runs ({}), {} landed while running, {} acknowledged versions lost, verify clean {}/{}, {:.1} s (seed {seed})",
        total.runs,
        parts.join(", "),
        total.landed,
        total.lost,
        total.verify_clean,
        total.verify_runs,
        started.elapsed().as_secs_f64()
    );
    assert!(
        total.failures.is_empty(),
        "seed {seed} (GLOBOFS_KILL_SEED={seed} replays): {} failures:\n{}",
        total.failures.len(),
        total.failures.join("\n")
    );
    assert!(total.landed * 2 >= total.runs, "fewer than half the kills landed while the process ran");
}
