//! Injected faults through the engine's fault seam (`GLOBOFS_FAULTS`, see src/faults.rs):
//! for write, import, mv, rm, push and prune+gc, the Nth write operation fails with EIO
//! (once), with ENOSPC (from then on), or the process dies having lost everything not yet
//! made durable (a power loss), for every N the command reaches. After each: a clear
//! one-line error (or a killed process), no panic, every acknowledged version still listed,
//! `verify` clean, and the same command run again succeeds.

use crate::util::*;
use std::collections::BTreeMap;
use std::fs;
use std::process::Output;

const MARK: &str = "fault injected";

/// The command runs once per fault point; `Ack` says what a successful run acknowledged.
struct Case<'a> {
    name: &'a str,
    /// Runs the command (with `faults` in the environment); returns its output.
    run: &'a dyn Fn(Option<&str>, u32) -> Output,
    /// After a successful run: the (path → version id) it acknowledged.
    acked: &'a dyn Fn(&Output) -> Vec<(String, String)>,
    /// Old acknowledgements lapse by design (prune): keep only the newest.
    replace: bool,
}

#[derive(Default)]
struct Tally {
    runs: u32,
    faults: u32,
    crashes: u32,
    clean_errors: u32,
    completed_anyway: u32,
}

fn ids_of(v: &TestVolume, path: &str) -> Vec<String> {
    let out = v.run(&["--json", "log", path]);
    if !out.status.success() {
        return vec![];
    }
    json(&out.stdout).as_array().unwrap().iter().map(|e| e["version"].as_str().unwrap().to_string()).collect()
}

fn check_volume(v: &TestVolume, acked: &BTreeMap<String, Vec<String>>, what: &str) {
    let out = v.run(&["verify"]);
    assert!(out.status.success(), "{what}: verify: {}{}", text(&out.stdout), text(&out.stderr));
    for (path, ids) in acked {
        let have = ids_of(v, path);
        for id in ids {
            assert!(have.contains(id), "{what}: acknowledged {path}@{id} is gone");
        }
    }
}

fn ack(acked: &mut BTreeMap<String, Vec<String>>, case: &Case, out: &Output) {
    if case.replace {
        acked.clear();
    }
    for (p, id) in (case.acked)(out) {
        acked.entry(p).or_default().push(id);
    }
}

/// Runs `case` with each fault kind at every operation it reaches.
fn exercise(v: &TestVolume, case: &Case, acked: &mut BTreeMap<String, Vec<String>>) -> Tally {
    let mut t = Tally::default();
    let mut round = 0;
    for kind in ["eio@N", "enospc@N+", "crash@N"] {
        for n in 1..400 {
            round += 1;
            let plan = kind.replace('N', &n.to_string());
            let out = (case.run)(Some(&plan), round);
            t.runs += 1;
            let err = text(&out.stderr);
            let what = format!("{} with {plan}", case.name);
            assert!(!err.contains("panicked") && !err.contains("internal error"), "{what}: {err}");
            if !err.contains(MARK) {
                // The command needs fewer than N operations: this kind is done.
                assert!(out.status.success(), "{what}: {err}");
                ack(acked, case, &out);
                break;
            }
            t.faults += 1;
            if case.replace {
                // What the run did before the fault (its own writes) stands.
                ack(acked, case, &out);
            }
            match out.status.code() {
                None => t.crashes += 1,
                Some(0) => {
                    // The fault hit something the command may do without (a cache): it
                    // still acknowledged its work, which must then be there.
                    t.completed_anyway += 1;
                    ack(acked, case, &out);
                }
                Some(code) => {
                    assert!(code == 1 || code == 2, "{what}: exit {code}: {err}");
                    let lines: Vec<&str> = err.lines().filter(|l| !l.contains(MARK)).collect();
                    let errors: Vec<&&str> = lines.iter().filter(|l| !l.contains("warning")).collect();
                    assert!(errors.len() <= 1 + usize::from(code == 1), "{what}: more than one error line: {err}");
                    assert!(
                        err.contains("Input/output error") || err.contains("No space left"),
                        "{what}: the error names the cause: {err}"
                    );
                    t.clean_errors += 1;
                }
            }
            check_volume(v, acked, &what);
            let retry = (case.run)(None, round);
            assert!(retry.status.success(), "{what}: the retry failed: {}", text(&retry.stderr));
            ack(acked, case, &retry);
            check_volume(v, acked, &format!("{what}, after the retry"));
        }
    }
    eprintln!(
        "faults in {}: {} runs, {} faults injected ({} killed, {} clean errors, {} completed anyway), 0 acknowledged versions lost, verify clean after each",
        case.name, t.runs, t.faults, t.crashes, t.clean_errors, t.completed_anyway
    );
    t
}

fn with_faults(mut c: std::process::Command, faults: Option<&str>) -> std::process::Command {
    match faults {
        Some(f) => c.env("GLOBOFS_FAULTS", f),
        None => c.env_remove("GLOBOFS_FAULTS"),
    };
    c
}

fn run_input(v: &TestVolume, args: &[&str], faults: Option<&str>, input: &[u8]) -> Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut c = with_faults(v.cmd(args), faults);
    let mut child = c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = input.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    let _ = feeder.join();
    out
}

fn run(v: &TestVolume, args: &[&str], faults: Option<&str>) -> Output {
    with_faults(v.cmd(args), faults).stdin(std::process::Stdio::null()).output().unwrap()
}

fn head_of(v: &TestVolume, path: &str) -> Vec<(String, String)> {
    ids_of(v, path).into_iter().take(1).map(|id| (path.to_string(), id)).collect()
}

#[test]
fn write_and_import_survive_every_fault_point() {
    let v = TestVolume::new(&[]);
    let mut acked = BTreeMap::new();
    acked.insert("w".to_string(), vec![v.write("w", b"first")]);
    let write = |f: Option<&str>, round: u32| {
        let data = noise(150_000 + round as usize, u64::from(round));
        run_input(&v, &["write", "w"], f, &data)
    };
    let written = |o: &Output| vec![("w".to_string(), text(&o.stdout).trim().to_string())];
    exercise(&v, &Case { name: "write", run: &write, acked: &written, replace: false }, &mut acked);

    let src = v.scratch("src");
    let import = |f: Option<&str>, round: u32| {
        fs::create_dir_all(src.join("sub")).unwrap();
        for i in 0..4 {
            fs::write(src.join(format!("f{i}")), format!("file {i} round {round}")).unwrap();
        }
        fs::write(src.join("sub/big"), noise(300_000, u64::from(round) + 99)).unwrap();
        run(&v, &["import", s(&src), "t"], f)
    };
    let imported = |_: &Output| ["t/f0", "t/f3", "t/sub/big"].iter().flat_map(|p| head_of(&v, p)).collect();
    exercise(&v, &Case { name: "import", run: &import, acked: &imported, replace: false }, &mut acked);
    // Every file of the last import reads back as written.
    assert_eq!(v.read("t/sub/big"), fs::read(src.join("sub/big")).unwrap());
}

#[test]
fn mv_rm_and_prune_gc_survive_every_fault_point() {
    let v = TestVolume::new(&[]);
    let mut acked = BTreeMap::new();
    for i in 0..3 {
        acked.entry("a".to_string()).or_insert_with(Vec::new).push(v.write("a", format!("a{i}").as_bytes()));
    }
    // mv back and forth: each run moves the file to the other name.
    let mv = |f: Option<&str>, _round: u32| {
        let at_a = v.run(&["read", "a"]).status.success();
        run(&v, if at_a { &["mv", "a", "b"] } else { &["mv", "b", "a"] }, f)
    };
    let moved = |_: &Output| [head_of(&v, "a"), head_of(&v, "b")].concat();
    exercise(&v, &Case { name: "mv", run: &mv, acked: &moved, replace: false }, &mut acked);

    // rm of a file written fresh each round.
    let rm = |f: Option<&str>, round: u32| {
        if v.run(&["read", "r"]).status.code() != Some(0) {
            v.write("r", format!("r{round}").as_bytes());
        }
        run(&v, &["rm", "r"], f)
    };
    let removed = |_: &Output| head_of(&v, "r");
    exercise(&v, &Case { name: "rm", run: &rm, acked: &removed, replace: false }, &mut acked);

    // prune, then gc: old versions go by design; the heads must stay, with their blocks.
    let p = TestVolume::new(&[]);
    let written = std::cell::RefCell::new(Vec::new());
    let edit = |round: u32, salt: u64| {
        let mut w = written.borrow_mut();
        w.clear();
        for i in 0..3 {
            let path = format!("p{i}");
            w.push((path.clone(), p.write(&path, &noise(40_000, u64::from(round) * salt + i))));
        }
    };
    let prune = |f: Option<&str>, round: u32| {
        edit(round, 7);
        run(&p, &["prune", "--keep-last", "1"], f)
    };
    let heads = |_: &Output| written.borrow().clone();
    let mut p_acked = BTreeMap::new();
    exercise(&p, &Case { name: "prune", run: &prune, acked: &heads, replace: true }, &mut p_acked);
    let gc = |f: Option<&str>, round: u32| {
        edit(round, 11);
        assert!(run(&p, &["prune", "--keep-last", "1"], None).status.success());
        run(&p, &["gc"], f)
    };
    exercise(&p, &Case { name: "gc", run: &gc, acked: &heads, replace: true }, &mut p_acked);
    for i in 0..3 {
        let id = ids_of(&p, &format!("p{i}"))[0].clone();
        p.read(&format!("p{i}@{id}"));
    }
}

#[test]
fn push_survives_every_fault_point_and_the_peer_converges() {
    let (a, b) = (TestVolume::named("a"), TestVolume::named("b"));
    a.ok(&["peer", "add", "b", s(&b.dir)]);
    b.ok(&["peer", "add", "a", s(&a.dir)]);
    let mut acked = BTreeMap::new();
    let push = |f: Option<&str>, round: u32| {
        a.write(&format!("f{}", round % 5), format!("round {round}").as_bytes());
        run(&a, &["push"], f)
    };
    let none = |_: &Output| vec![];
    exercise(&a, &Case { name: "push", run: &push, acked: &none, replace: false }, &mut acked);
    // The peer converges: every version of a is on b, each exactly once, and reads back.
    b.ok(&["mirror"]);
    for i in 0..5 {
        let path = format!("f{i}");
        let (ia, ib) = (ids_of(&a, &path), ids_of(&b, &path));
        assert_eq!(ia, ib, "{path}: same history on both");
        assert_eq!(a.read(&path), b.read(&path));
    }
    let out = b.run(&["verify"]);
    assert!(out.status.success(), "{}", text(&out.stdout));
}
