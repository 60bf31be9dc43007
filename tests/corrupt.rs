//! Torn and corrupted log segments and manifests, at least 100 cases of each kind:
//! truncation (at spread offsets, every offset of the last record under `GLOBOFS_LONG=1`),
//! byte flips, appended junk, zeroed ranges.
//!
//! What is designed (docs/FORMAT.md, "Logs" and "Manifests"; src/log.rs, src/verify.rs):
//! - a log's torn tail is ignored and read again once complete; the next push cuts it off
//!   and resends what is missing, so the receiver ends with every version, once;
//! - a record that fails its checksum is refused and skipped by its length; a bad frame line
//!   stops the reading of that segment; a bad header makes the segment unread; no altered
//!   payload is ever applied;
//! - a manifest that is torn or altered in any byte is refused (its `end` line is the
//!   SHA-256 of the rest); `verify` reports it as `corrupt-manifest` (exit 1), `read` fails
//!   with exit 2, and `verify --repair` replaces it with a peer's copy of the same version
//!   or moves it to `local/quarantine/` when there is none.
//!
//! Each test prints cases, detected, ignored-torn, skipped/quarantined and panics.

use crate::hostile::{os, run_timed, Ran, Scene, Tally};
use crate::util::*;
use globofs::manifest::Version;
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn long() -> bool {
    std::env::var_os("GLOBOFS_LONG").is_some_and(|v| v != "0" && !v.is_empty())
}

/// Deterministic xorshift.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mutation {
    Truncate,
    Flip,
    Junk,
    Zero,
}

/// Applies mutation `m` (case `i`) to `bytes`, never to the first `keep` bytes.
fn mutate(bytes: &[u8], m: Mutation, rng: &mut Rng, keep: usize) -> Vec<u8> {
    let mut b = bytes.to_vec();
    let span = b.len() - keep;
    match m {
        Mutation::Truncate => b.truncate(keep + rng.below(span)),
        Mutation::Flip => {
            let at = keep + rng.below(span);
            b[at] ^= 1 << rng.below(8);
        }
        Mutation::Junk => {
            let n = 1 + rng.below(300);
            let junk: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            b.extend(junk);
        }
        Mutation::Zero => {
            let at = keep + rng.below(span);
            let n = 1 + rng.below(64.min(b.len() - at));
            for x in &mut b[at..at + n] {
                *x = 0;
            }
        }
    }
    b
}

fn caught<T>(f: impl FnOnce() -> T + std::panic::UnwindSafe) -> Option<T> {
    std::panic::catch_unwind(f).ok()
}

// ---------------------------------------------------------------------------------------
// The scene: a pushed log of three versions, and versions in both volumes
// ---------------------------------------------------------------------------------------

struct Pushed {
    scene: Scene,
    /// The log a pushed into b (header and three records).
    log: Vec<u8>,
    /// The payloads a sent, in order.
    payloads: Vec<Vec<u8>>,
}

/// a made `f` (the base), `g1`, `g2` and pushed them to b; b has applied nothing yet;
/// then a made `solo`, which it did not push.
fn pushed() -> &'static Pushed {
    static P: OnceLock<Pushed> = OnceLock::new();
    P.get_or_init(|| {
        let scene = Scene::new(900);
        for (i, name) in ["g1", "g2"].iter().enumerate() {
            let src = scene.tmp.path().join("src");
            fs::write(&src, format!("content of {name} {i}\n")).unwrap();
            let r = run_timed(&scene.a, &[os("import"), src.as_os_str(), os(name)]);
            assert_eq!(r.code, Some(0), "{}", text(&r.stderr));
        }
        let r = run_timed(&scene.a, &[os("push")]);
        assert_eq!(r.code, Some(0), "{}", text(&r.stderr));
        let src = scene.tmp.path().join("src");
        fs::write(&src, b"solo\n").unwrap();
        let r = run_timed(&scene.a, &[os("import"), src.as_os_str(), os("solo")]);
        assert_eq!(r.code, Some(0), "{}", text(&r.stderr));
        fs::remove_file(&src).unwrap();
        let log = fs::read(scene.log_dir().join("latest")).unwrap();
        let parsed = globofs::log::parse(&log, 0);
        assert_eq!(parsed.records.len(), 3, "{:?}", parsed.refused);
        let payloads = parsed.records.iter().map(|r| r.0.clone()).collect();
        Pushed { scene, log, payloads }
    })
}

fn fresh(n: usize) -> Scene {
    let p = pushed();
    Scene::copy_of(&p.scene.a, &p.scene.b, n)
}

fn journal_ids(vol: &Path) -> Vec<String> {
    fs::read_to_string(vol.join("local/state/journal"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').next().map(str::to_string))
        .collect()
}

fn field(m: &[u8], key: &str) -> String {
    let prefix = format!("{key} ");
    text(m).lines().find_map(|l| l.strip_prefix(&prefix).map(str::to_string)).unwrap_or_default()
}

#[derive(Default)]
struct Figures {
    cases: usize,
    detected: usize,
    torn: usize,
    skipped: usize,
    quarantined: usize,
    repaired: usize,
    panics: usize,
}

impl Figures {
    fn print(&self, title: &str) {
        eprintln!(
            "{title}: {} cases, {} detected, {} ignored-torn, {} skipped/quarantined ({} quarantined), {} repaired, {} panics",
            self.cases,
            self.detected,
            self.torn,
            self.skipped + self.quarantined,
            self.quarantined,
            self.repaired,
            self.panics
        );
    }
}

// ---------------------------------------------------------------------------------------
// 1. Logs, parsed: every kind of damage, no altered record accepted
// ---------------------------------------------------------------------------------------

#[test]
fn corrupt_log_segments_parse() {
    let p = pushed();
    let header = p.log.iter().position(|&b| b == b'\n').unwrap() + 1;
    let per_kind = if long() { 5000 } else { 150 };
    let mut fig = Figures::default();
    let mut failures = Vec::new();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let originals: BTreeSet<&Vec<u8>> = p.payloads.iter().collect();
    let original = globofs::log::parse(&p.log, 0);
    for m in [Mutation::Truncate, Mutation::Flip, Mutation::Junk, Mutation::Zero] {
        for i in 0..per_kind {
            // Damage to the header too, for a quarter of the flips and zeros.
            let keep = if matches!(m, Mutation::Flip | Mutation::Zero) && i % 4 == 0 { 0 } else { header };
            let bytes = mutate(&p.log, m, &mut rng, keep);
            fig.cases += 1;
            let Some(parsed) = caught(|| globofs::log::parse(&bytes, 0)) else {
                fig.panics += 1;
                failures.push(format!("{m:?} {i}: parse panicked"));
                continue;
            };
            let changed = bytes != p.log;
            let altered: Vec<&Vec<u8>> =
                parsed.records.iter().map(|r| &r.0).filter(|r| !originals.contains(r)).collect();
            if !altered.is_empty() {
                failures.push(format!("{m:?} {i}: an altered record was accepted"));
            }
            let torn = parsed.valid_end < bytes.len() as u64 && parsed.refused.is_empty();
            if !parsed.refused.is_empty() {
                fig.skipped += 1;
                fig.detected += 1;
            } else if torn || parsed.segment.is_none() {
                fig.torn += usize::from(torn);
                fig.detected += 1;
            } else if parsed.segment != original.segment {
                // A flip inside the header's segment id that leaves a valid id: nothing checks
                // it (it only names the segment in readers' positions) and nothing is lost.
                fig.detected += 1;
            } else if changed && parsed.records.len() == 3 && m != Mutation::Junk {
                failures.push(format!("{m:?} {i}: damage went unnoticed"));
            } else if changed {
                fig.detected += 1;
            }
            // From any saved position, parsing is as safe.
            let from = rng.below(bytes.len() + 10) as u64;
            if caught(|| globofs::log::parse(&bytes, from)).is_none() {
                fig.panics += 1;
                failures.push(format!("{m:?} {i}: parse from {from} panicked"));
            }
            // Payload by payload, a manifest never decodes altered.
            for r in &parsed.records {
                if caught(|| Version::decode(&r.0)).is_none() {
                    fig.panics += 1;
                }
            }
        }
    }
    fig.print("corrupt log segments (parsed)");
    assert!(failures.is_empty() && fig.panics == 0, "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------
// 2. Logs, through the binary: torn tails ignored, then repaired by the next push
// ---------------------------------------------------------------------------------------

#[test]
fn torn_logs_are_ignored_then_repaired_by_the_next_push() {
    let p = pushed();
    let parsed = globofs::log::parse(&p.log, 0);
    let ends: Vec<u64> = parsed.records.iter().map(|r| r.1).collect();
    let body = parsed.body_start as usize;
    let cuts: Vec<usize> = if long() {
        (body..p.log.len()).collect()
    } else {
        // 100 offsets spread over the records, the ends of records and the header included.
        let mut c: BTreeSet<usize> = (0..96).map(|i| body + i * (p.log.len() - body) / 96).collect();
        c.extend(ends.iter().map(|&e| e as usize - 1));
        c.extend([1, body - 1, body + 1]);
        c.into_iter().filter(|&c| c < p.log.len()).collect()
    };
    let ids: Vec<String> = p.payloads.iter().map(|m| field(m, "id")).collect();
    let mut fig = Figures::default();
    let mut t = Tally::default();
    for (i, &cut) in cuts.iter().enumerate() {
        let name = format!("cut at {cut}");
        let s = fresh(1000 + i);
        let latest = s.log_dir().join("latest");
        fs::write(&latest, &p.log[..cut]).unwrap();
        fig.cases += 1;
        t.cases += 1;
        let r = run_timed(&s.b, &[os("ls")]);
        if !t.cmd(&name, "ls", &r, &[0]) {
            continue;
        }
        let whole = ends.iter().filter(|&&e| e as usize <= cut).count();
        let got = journal_ids(&s.b);
        t.check(&name, got == ids[..whole], || format!("b applied {got:?}, expected the first {whole} of {ids:?}"));
        if whole < 3 {
            fig.torn += 1;
            fig.detected += 1;
        }
        // The next push (of a new version) cuts the tail off and resends what is missing.
        let src = s.tmp.path().join("src");
        fs::write(&src, format!("after cut {cut}\n")).unwrap();
        let w = run_timed(&s.a, &[os("import"), src.as_os_str(), os("after")]);
        t.cmd(&name, "import on a", &w, &[0]);
        let push = run_timed(&s.a, &[os("push")]);
        t.cmd(&name, "push", &push, &[0]);
        let r = run_timed(&s.b, &[os("ls")]);
        if t.cmd(&name, "ls after the push", &r, &[0]) {
            t.check(&name, r.warnings() == 0, || format!("warnings: {}", text(&r.stderr)));
            let got: BTreeSet<String> = journal_ids(&s.b).into_iter().collect();
            let n = journal_ids(&s.b).len();
            // f, g1, g2, solo (now pushed too) and after, each once.
            t.check(&name, got.len() == 5 && n == 5, || format!("b has {n} journal lines: {got:?}"));
            let log = fs::read(&latest).unwrap_or_default();
            let lp = globofs::log::parse(&log, 0);
            t.check(&name, lp.refused.is_empty() && lp.valid_end == log.len() as u64, || {
                format!("log not repaired: {:?}, valid_end {} of {}", lp.refused, lp.valid_end, log.len())
            });
            let sent: Vec<String> = lp.records.iter().map(|r| field(&r.0, "id")).collect();
            let distinct: BTreeSet<&String> = sent.iter().collect();
            t.check(&name, distinct.len() == sent.len(), || format!("a record is in the log twice: {sent:?}"));
        }
        if i % 10 == 0 {
            crate::hostile::verify_b(&mut t, &s, &name, false);
        }
    }
    fig.panics = t.panics;
    fig.print("torn logs (binary)");
    t.assert_ok("torn logs (binary)");
}

// ---------------------------------------------------------------------------------------
// 3. Logs, through the binary: flips and zeroed ranges are skipped, never applied altered
// ---------------------------------------------------------------------------------------

#[test]
fn corrupt_log_records_are_skipped_never_applied_altered() {
    let p = pushed();
    let header = p.log.iter().position(|&b| b == b'\n').unwrap() + 1;
    let n = if long() { 400 } else { 100 };
    let originals: BTreeSet<String> = p.payloads.iter().map(|m| field(m, "id")).collect();
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut fig = Figures::default();
    let mut t = Tally::default();
    for i in 0..n {
        let m = [Mutation::Flip, Mutation::Zero, Mutation::Junk, Mutation::Truncate][i % 4];
        let bytes = mutate(&p.log, m, &mut rng, if i % 8 == 0 { 0 } else { header });
        let name = format!("{m:?} {i}");
        let s = fresh(2000 + i);
        fs::write(s.log_dir().join("latest"), &bytes).unwrap();
        fig.cases += 1;
        t.cases += 1;
        let r = run_timed(&s.b, &[os("ls")]);
        if !t.cmd(&name, "ls", &r, &[0]) {
            continue;
        }
        let parsed = globofs::log::parse(&bytes, 0);
        let got = journal_ids(&s.b);
        t.check(&name, got.iter().all(|id| originals.contains(id)), || format!("b applied {got:?}"));
        // Every version b has is byte-identical to what a sent.
        for id in &got {
            let path = p.payloads.iter().find(|m| field(m, "id") == *id).map(|m| field(m, "path")).unwrap();
            let m = fs::read(s.b.join("local/root").join(&path).join("versions/latest")).unwrap_or_default();
            let sent = p.payloads.iter().find(|m| field(m, "id") == *id).unwrap();
            t.check(&name, &m == sent, || format!("{path}: the manifest b stored differs from the one sent"));
        }
        if !parsed.refused.is_empty() {
            fig.detected += 1;
            fig.skipped += 1;
            t.check(&name, r.warnings() >= 1, || "a refused record without a warning".into());
        } else if parsed.valid_end < bytes.len() as u64 || parsed.segment.is_none() {
            fig.detected += 1;
            fig.torn += usize::from(parsed.segment.is_some());
        }
        if i % 5 == 0 {
            crate::hostile::verify_b(&mut t, &s, &name, false);
        }
    }
    fig.panics = t.panics;
    fig.print("corrupt log records (binary)");
    t.assert_ok("corrupt log records (binary)");
}

// ---------------------------------------------------------------------------------------
// 4. Manifests, decoded: every damage is detected
// ---------------------------------------------------------------------------------------

#[test]
fn corrupt_manifests_never_decode() {
    let p = pushed();
    let good = &p.payloads[0];
    let mut fig = Figures::default();
    let mut failures = Vec::new();
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    let mut cases: Vec<(String, Vec<u8>)> =
        (0..good.len()).map(|c| (format!("cut at {c}"), good[..c].to_vec())).collect();
    let per_kind = if long() { 5000 } else { 120 };
    for m in [Mutation::Flip, Mutation::Junk, Mutation::Zero, Mutation::Truncate] {
        for i in 0..per_kind {
            let mut b = mutate(good, m, &mut rng, 0);
            // Further empty lines after `end` are accepted (FORMAT.md): junk must not be one.
            if m == Mutation::Junk && b[good.len()..].iter().all(|&c| c == b'\n') {
                b.push(b'x');
            }
            cases.push((format!("{m:?} {i}"), b));
        }
    }
    for (name, bytes) in &cases {
        fig.cases += 1;
        match caught(|| Version::decode(bytes)) {
            None => {
                fig.panics += 1;
                failures.push(format!("{name}: decode panicked"));
            }
            Some(Ok(v)) if bytes != good => failures.push(format!("{name}: a damaged manifest decoded as {}", v.id)),
            Some(Ok(_)) => {}
            Some(Err(_)) => fig.detected += 1,
        }
    }
    fig.print("corrupt manifests (decoded)");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------
// 5. Manifests in a volume: verify detects, read refuses, repair fixes or quarantines
// ---------------------------------------------------------------------------------------

#[test]
fn corrupt_manifests_are_detected_repaired_or_quarantined() {
    let n = if long() { 300 } else { 100 };
    let mut rng = Rng(0x0bad_5eed_0bad_5eed);
    let mut fig = Figures::default();
    let mut t = Tally::default();
    for i in 0..n {
        // Even cases: b's copy of a's `f` (a holds it: repaired). Odd: a's own `solo`,
        // which no peer holds (quarantined).
        let repairable = i % 2 == 0;
        let m = [Mutation::Truncate, Mutation::Flip, Mutation::Junk, Mutation::Zero][(i / 2) % 4];
        let name = format!("{} {m:?} {i}", if repairable { "f on b" } else { "solo on a" });
        let s = fresh(3000 + i);
        let (vol, path): (&Path, &str) = if repairable { (&s.b, "f") } else { (&s.a, "solo") };
        if repairable {
            // b applies the log first, so that its `latest` of f exists.
            let r = run_timed(vol, &[os("ls")]);
            t.cmd(&name, "ls", &r, &[0]);
        }
        let file: PathBuf = vol.join("local/root").join(path).join("versions/latest");
        let good = fs::read(&file).unwrap();
        let mut bad = mutate(&good, m, &mut rng, 0);
        if m == Mutation::Junk && bad[good.len()..].iter().all(|&c| c == b'\n') {
            bad.push(b'x');
        }
        if m == Mutation::Truncate && bad.len() == good.len() {
            bad.pop();
        }
        fs::write(&file, &bad).unwrap();
        fig.cases += 1;
        t.cases += 1;
        let v = run_timed(vol, &[os("--json"), os("verify")]);
        if t.cmd(&name, "verify", &v, &[1]) {
            let j = json_of(&v);
            let kinds: Vec<&str> = j["problems"]
                .as_array()
                .map(|a| a.iter().filter_map(|p| p["kind"].as_str()).collect())
                .unwrap_or_default();
            if kinds.contains(&"corrupt-manifest") {
                fig.detected += 1;
            } else {
                t.failures.push(format!("{name}: verify did not report a corrupt manifest: {j}"));
            }
        }
        let r = run_timed(vol, &[os("read"), os(path)]);
        t.cmd(&name, "read", &r, &[2]);
        let rep = run_timed(vol, &[os("--json"), os("verify"), os("--repair")]);
        if repairable {
            if t.cmd(&name, "verify --repair", &rep, &[0]) {
                fig.repaired += 1;
                t.check(&name, fs::read(&file).ok().as_ref() == Some(&good), || "latest was not restored".into());
                let r = run_timed(vol, &[os("read"), os(path)]);
                if t.cmd(&name, "read after the repair", &r, &[0]) {
                    t.check(&name, r.stdout == crate::hostile::HELLO, || "other content after the repair".into());
                }
            }
        } else if t.cmd(&name, "verify --repair", &rep, &[1]) {
            let q = vol.join("local/quarantine/manifests").join(path).join("versions/latest");
            if fs::read(&q).ok().as_ref() == Some(&bad) && !file.exists() {
                fig.quarantined += 1;
            } else {
                t.failures.push(format!("{name}: not quarantined as {}", q.display()));
            }
            let again = run_timed(vol, &[os("verify")]);
            t.cmd(&name, "verify after the quarantine", &again, &[0]);
        }
    }
    fig.panics = t.panics;
    fig.print("corrupt manifests (binary)");
    t.assert_ok("corrupt manifests (binary)");
}

fn json_of(r: &Ran) -> serde_json::Value {
    serde_json::from_slice(&r.stdout).unwrap_or_default()
}
