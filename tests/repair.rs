//! `verify --repair`, driven through the real binary on two volumes A and B, where B
//! mirrored A (every version of every file pulled). Bit rot on A (a flipped byte, a
//! truncated file, a zeroed file, a deleted file; many blocks of each kind over several
//! files and versions) is detected by `verify`, repaired from B by `verify --repair`, and
//! every version then reads back byte-identical. A block bad on both sides is quarantined,
//! reported with every path and version that needs it, and reads fail with the
//! missing-block error. Damaged manifests are repaired from the other local copy or from B
//! when one exists (`latest` included, also when its id line is gone), and quarantined and
//! reported when none does; gc keeps the blocks a quarantined manifest names.

use crate::util::*;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

fn assert_code(out: &Output, code: i32, what: &str) {
    assert_eq!(out.status.code(), Some(code), "{what}\nstdout: {}\nstderr: {}", text(&out.stdout), text(&out.stderr));
    let err = text(&out.stderr);
    assert!(!err.contains("panicked") && !err.contains("internal error"), "panic: {err}");
}

/// A and B, peers of each other, with fixed 4 KiB blocks (many blocks from little data).
fn pair() -> (TestVolume, TestVolume) {
    let a = TestVolume::named("a");
    let b = TestVolume::named("b");
    for (x, y, name) in [(&a, &b, "b"), (&b, &a, "a")] {
        x.ok(&["peer", "add", name, s(&y.dir)]);
    }
    // Fixed chunking for both, so block counts are predictable.
    for v in [&a, &b] {
        let cfg = v.dir.join("local/config");
        let t = fs::read_to_string(&cfg).unwrap();
        let t = t.replace("method = \"cdc\"", "method = \"fixed\"");
        let t = t.replace("min = 32768", "min = 4096").replace("avg = 131072", "avg = 4096");
        let t = t.replace("max = 524288", "max = 4096");
        fs::write(&cfg, t).unwrap();
    }
    (a, b)
}

/// The version ids of `path`, newest first.
fn versions(v: &TestVolume, path: &str) -> Vec<String> {
    let out = v.ok(&["--json", "log", path]);
    json(&out).as_array().unwrap().iter().map(|e| e["version"].as_str().unwrap().to_string()).collect()
}

/// B receives everything A pushed and pulls every block of every version.
fn mirror_all(a: &TestVolume, b: &TestVolume, files: &[&str]) {
    assert_code(&a.run(&["push"]), 0, "push a");
    assert_code(&b.run(&["mirror"]), 0, "mirror b");
    for f in files {
        for id in versions(b, f) {
            b.read(&format!("{f}@{id}"));
        }
    }
}

fn block_path(v: &TestVolume, hex: &str) -> PathBuf {
    v.dir.join("local/hashes").join(&hex[0..2]).join(&hex[2..4]).join(format!("{}.gz", &hex[4..]))
}

/// Block ids named by a manifest file, in order.
fn manifest_blocks(file: &Path) -> Vec<String> {
    fs::read_to_string(file)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("block "))
        .map(|r| r.split(' ').next().unwrap().to_string())
        .collect()
}

fn versions_dir(v: &TestVolume, path: &str) -> PathBuf {
    v.dir.join("local/root").join(path).join("versions")
}

/// Every block hex mentioned in a verify report's problems.
fn mentioned(report: &serde_json::Value, kind: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for p in report["problems"].as_array().unwrap() {
        if p["kind"] == kind {
            let d = p["detail"].as_str().unwrap();
            for w in d.split(|c: char| !c.is_ascii_hexdigit()) {
                if w.len() == 64 {
                    out.insert(w.to_string());
                }
            }
        }
    }
    out
}

#[derive(Clone, Copy, Debug)]
enum Damage {
    Flip,
    Truncate,
    Zero,
    Delete,
}

fn damage(file: &Path, how: Damage) {
    match how {
        Damage::Flip => {
            let mut b = fs::read(file).unwrap();
            let mid = b.len() / 2;
            b[mid] ^= 0x10;
            fs::write(file, b).unwrap();
        }
        Damage::Truncate => {
            let len = fs::metadata(file).unwrap().len();
            fs::OpenOptions::new().write(true).open(file).unwrap().set_len(len / 2).unwrap();
        }
        Damage::Zero => {
            let len = fs::metadata(file).unwrap().len() as usize;
            fs::write(file, vec![0u8; len]).unwrap();
        }
        Damage::Delete => fs::remove_file(file).unwrap(),
    }
}

#[test]
fn bit_rot_is_detected_and_repaired_from_a_peer() {
    let (a, b) = pair();
    const FILES: usize = 5;
    const PER_KIND: usize = 25;
    let names: Vec<String> = (0..FILES).map(|i| format!("docs/f{i}.bin")).collect();
    let files: Vec<&str> = names.iter().map(String::as_str).collect();
    // Two versions of each file, 24 blocks each, half of them text (gzip-deflated blocks),
    // half noise (stored blocks): every block distinct.
    let mut expect: BTreeMap<(String, String), Vec<u8>> = BTreeMap::new();
    for round in 0..2u64 {
        for (i, f) in files.iter().enumerate() {
            let mut data = Vec::new();
            for k in 0..12u64 {
                data.extend(noise(4096, 1000 * round + 10 * i as u64 + k + 1));
                let line = format!("file {f} round {round} block {k} ");
                data.extend(line.repeat(4096 / line.len() + 1).as_bytes()[..4096].iter());
            }
            let id = a.write(f, &data);
            expect.insert((f.to_string(), id), data);
        }
    }
    mirror_all(&a, &b, &files);

    // Damage 25 blocks of each kind on A, taken round-robin over the files and versions.
    let mut victims: Vec<String> = Vec::new();
    let manifests: Vec<PathBuf> =
        files.iter().flat_map(|f| fs::read_dir(versions_dir(&a, f)).unwrap().map(|e| e.unwrap().path())).collect();
    let lists: Vec<Vec<String>> = manifests.iter().map(|m| manifest_blocks(m)).collect();
    let mut k = 0;
    while victims.len() < 4 * PER_KIND {
        let list = &lists[k % lists.len()];
        let hex = &list[(k / lists.len()) % list.len()];
        if !victims.contains(hex) {
            victims.push(hex.clone());
        }
        k += 1;
    }
    let kinds = [Damage::Flip, Damage::Truncate, Damage::Zero, Damage::Delete];
    let mut by_kind: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (i, hex) in victims.iter().enumerate() {
        let how = kinds[i % 4];
        damage(&block_path(&a, hex), how);
        by_kind.entry(format!("{how:?}")).or_default().insert(hex.clone());
    }
    let damaged: BTreeSet<String> = victims.iter().cloned().collect();
    assert_eq!(damaged.len(), 4 * PER_KIND);

    // verify finds every one (exit 1) and changes nothing.
    let before = a.block_count();
    let out = a.run(&["--json", "verify"]);
    assert_code(&out, 1, "verify a");
    let r = json(&out.stdout);
    let corrupt = mentioned(&r, "corrupt-block");
    let missing = mentioned(&r, "missing-block");
    let detected: BTreeSet<String> = corrupt.union(&missing).cloned().collect();
    assert_eq!(a.block_count(), before, "verify changed the store");
    for (kind, set) in &by_kind {
        let found = set.iter().filter(|h| detected.contains(*h)).count();
        println!("bit rot ({kind}): {} damaged, {found} detected", set.len());
        assert_eq!(found, set.len(), "{kind}: not all detected: {r}");
    }
    assert!(by_kind["Delete"].iter().all(|h| !corrupt.contains(h) && missing.contains(h)));
    assert_eq!(detected, damaged, "verify reported other blocks");
    let text_out = text(&a.run(&["verify"]).stdout);
    assert!(text_out.lines().last().unwrap().starts_with("FAILED"), "{text_out}");

    // verify --repair fetches every one from B (exit 0).
    let out = a.run(&["--json", "verify", "--repair"]);
    assert_code(&out, 0, "verify --repair a");
    let r = json(&out.stdout);
    let repaired: BTreeSet<String> = r["repaired"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["what"] == "block")
        .map(|f| {
            assert_eq!(f["from"], "peer b", "{f}");
            f["id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(r["quarantined"], serde_json::json!([]), "{r}");
    assert_eq!(r["unrepaired"], serde_json::json!([]), "{r}");
    assert_eq!(r["affected"], serde_json::json!([]), "{r}");
    println!(
        "bit rot: {} damaged, {} detected, {} repaired",
        damaged.len(),
        detected.len(),
        repaired.iter().filter(|h| damaged.contains(*h)).count()
    );
    assert_eq!(repaired, damaged);

    // A second verify is clean, before any read could pull a block back.
    let out = a.run(&["verify"]);
    assert_code(&out, 0, "second verify");
    assert!(text(&out.stdout).lines().last().unwrap().ends_with(" 0 problems"), "{}", text(&out.stdout));
    // Every version reads back byte-identical, with B gone (nothing is pulled).
    fs::rename(&b.dir, b.tmp.path().join("away")).unwrap();
    for ((f, id), data) in &expect {
        assert!(a.read(&format!("{f}@{id}")) == *data, "{f}@{id} differs after the repair");
    }
    assert!(!a.dir.join("local/quarantine").exists(), "nothing should be quarantined");
}

#[test]
fn a_block_bad_everywhere_is_quarantined_and_reported() {
    let (a, b) = pair();
    let content = noise(3 * 4096, 77);
    let v1 = a.write("lost/one", &content);
    let v2 = a.write("lost/two", &content); // same blocks, another path
    let mut edited = content.clone();
    edited[5] ^= 1; // first block differs, the other two shared
    let v3 = a.write("lost/one", &edited);
    a.write("fine", b"still fine");
    mirror_all(&a, &b, &["lost/one", "lost/two", "fine"]);

    // The last block of `content`, named by all three versions, rots on both sides.
    let hex = manifest_blocks(&versions_dir(&a, "lost/two").join("latest"))[2].clone();
    damage(&block_path(&a, &hex), Damage::Flip);
    damage(&block_path(&b, &hex), Damage::Zero);

    let out = a.run(&["--json", "verify", "--repair"]);
    assert_code(&out, 1, "verify --repair");
    let r = json(&out.stdout);
    let q = r["quarantined"].as_array().unwrap();
    assert_eq!(q.len(), 1, "{r}");
    assert_eq!(q[0]["what"], "block");
    assert_eq!(q[0]["id"], hex.as_str());
    let moved = PathBuf::from(q[0]["moved_to"].as_str().unwrap());
    assert_eq!(moved, a.dir.join("local/quarantine/blocks").join(format!("{hex}.gz")));
    assert!(moved.is_file() && !block_path(&a, &hex).exists(), "not moved");
    let needed: BTreeSet<(String, String)> = q[0]["needed_by"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["path"].as_str().unwrap().to_string(), n["version"].as_str().unwrap().to_string()))
        .collect();
    let want: BTreeSet<(String, String)> = [("lost/one", &v1), ("lost/two", &v2), ("lost/one", &v3)]
        .iter()
        .map(|(p, v)| (p.to_string(), v.to_string()))
        .collect();
    assert_eq!(needed, want, "{r}");
    let affected: BTreeSet<(String, String)> = r["affected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            assert_eq!(n["lost_blocks"], serde_json::json!([hex]));
            (n["path"].as_str().unwrap().to_string(), n["version"].as_str().unwrap().to_string())
        })
        .collect();
    assert_eq!(affected, want);
    assert_eq!(r["unrepaired"].as_array().unwrap().len(), 3, "{r}");
    println!("bad everywhere: 1 block damaged on both sides, quarantined, {} versions reported", needed.len());

    // Reads fail with the missing-block error (B's copy is bad too), never serve bytes.
    for spec in ["lost/one".to_string(), format!("lost/one@{v1}"), "lost/two".to_string()] {
        let out = a.run(&["read", &spec]);
        assert_error(&out, &hex);
        assert!(text(&out.stderr).contains("is missing"), "{}", text(&out.stderr));
        assert!(out.stdout.len() < content.len(), "served the whole file");
    }
    assert_eq!(a.read("fine"), b"still fine");
    // B's bad copy was not touched by A, and A's is not where B could read it.
    assert!(block_path(&b, &hex).is_file());
    // A later verify names the missing block for each version (exit 1), not a corrupt one.
    let out = a.run(&["--json", "verify"]);
    assert_code(&out, 1, "verify after quarantine");
    let r = json(&out.stdout);
    assert!(mentioned(&r, "corrupt-block").is_empty(), "{r}");
    assert_eq!(mentioned(&r, "missing-block"), BTreeSet::from([hex.clone()]));
    // The text report says what was quarantined and what it affects.
    let out = a.run(&["verify", "--repair"]);
    assert_code(&out, 1, "second repair");
    let t = text(&out.stdout);
    assert!(t.contains(&format!("lost: lost/one@{v1} needs block {hex}")), "{t}");
    assert!(t.lines().last().unwrap().starts_with("FAILED"), "{t}");
    // Storing the same content again brings the block back; then all is well.
    a.write("again", &content);
    assert_code(&a.run(&["verify"]), 0, "verify after rewriting the content");
    assert!(a.read(&format!("lost/one@{v1}")) == content);
}

#[test]
fn corrupt_manifests_are_repaired_or_quarantined_and_reported() {
    let (a, b) = pair();
    // On both: p (two versions), q (one), r (one). Only on A: s (two versions, after the push).
    let p1 = a.write("p", b"p one");
    let p2 = a.write("p", b"p two");
    let q1 = a.write("q", b"q one");
    let r1 = a.write("r", b"r one");
    mirror_all(&a, &b, &["p", "q", "r"]);
    let s1 = a.write("s", &noise(4096 * 2, 9));
    let s2 = a.write("s", b"s two");
    a.write("t", b"t one"); // only on A, and its latest will be lost

    // p@p1 (archived): bit flip, B has it. p's latest: truncated after its id line, B has it.
    // q's latest: zeroed (no id left), B has it (found through the journal).
    // s@s1 (archived): garbage, no peer has it. t's latest: zeroed, no copy anywhere.
    let flip = |f: &Path| damage(f, Damage::Flip);
    flip(&versions_dir(&a, "p").join(&p1));
    let latest = versions_dir(&a, "p").join("latest");
    let keep = fs::read(&latest).unwrap()[..80].to_vec();
    fs::write(&latest, keep).unwrap();
    damage(&versions_dir(&a, "q").join("latest"), Damage::Zero);
    fs::write(versions_dir(&a, "s").join(&s1), b"not a manifest\n").unwrap();
    damage(&versions_dir(&a, "t").join("latest"), Damage::Zero);
    // r's latest: a bit flip, with an archive copy of the same version beside it (what a
    // crash between archiving and publishing leaves): repaired from that copy.
    let r_latest = versions_dir(&a, "r").join("latest");
    fs::copy(&r_latest, versions_dir(&a, "r").join(&r1)).unwrap();
    flip(&r_latest);

    let out = a.run(&["--json", "verify"]);
    assert_code(&out, 1, "verify");
    let r = json(&out.stdout);
    let bad = r["problems"].as_array().unwrap().iter().filter(|p| p["kind"] == "corrupt-manifest").count();
    assert_eq!(bad, 6, "{r}");

    let out = a.run(&["--json", "verify", "--repair"]);
    assert_code(&out, 1, "verify --repair");
    let r = json(&out.stdout);
    let fixed: BTreeMap<String, String> = r["repaired"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["what"] == "manifest")
        .map(|f| (f["id"].as_str().unwrap().to_string(), f["from"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(fixed.get(&p1).map(String::as_str), Some("peer b"), "{r}");
    assert_eq!(fixed.get(&p2).map(String::as_str), Some("peer b"), "{r}");
    assert_eq!(fixed.get(&q1).map(String::as_str), Some("peer b"), "{r}");
    let r_from = versions_dir(&a, "r").join(&r1);
    assert_eq!(fixed.get(&r1).map(String::as_str), Some(s(&r_from)), "{r}");
    assert_eq!(fixed.len(), 4, "{r}");
    let q = r["quarantined"].as_array().unwrap();
    assert_eq!(q.len(), 2, "{r}");
    let s_q = q.iter().find(|x| x["id"] == s1.as_str()).expect("s@s1 quarantined");
    let s_dest = a.dir.join("local/quarantine/manifests/s/versions").join(&s1);
    assert_eq!(s_q["moved_to"], s(&s_dest));
    assert!(s_dest.is_file() && !versions_dir(&a, "s").join(&s1).exists());
    let t_q = q.iter().find(|x| x["file"].as_str().unwrap().ends_with("/t/versions/latest")).expect("t latest");
    assert_eq!(t_q["id"], "", "t's latest had no readable id");
    assert!(a.dir.join("local/quarantine/manifests/t/versions/latest").is_file());
    let affected = r["affected"].as_array().unwrap();
    assert!(affected.iter().any(|x| x["path"] == "s" && x["version"] == s1.as_str()), "{r}");
    let t_a = affected.iter().find(|x| x["path"] == "t").expect("t affected");
    assert!(t_a["hint"].as_str().unwrap().contains("no version left"), "{t_a}");
    println!(
        "manifests: 6 damaged, {bad} detected, {} repaired ({} from a peer), {} quarantined",
        fixed.len(),
        fixed.values().filter(|f| f.starts_with("peer")).count(),
        q.len()
    );

    // Repaired ones read back; the quarantined version is gone here and says so.
    assert_eq!(a.read(&format!("p@{p1}")), b"p one");
    assert_eq!(a.read("p"), b"p two");
    assert_eq!(a.read("q"), b"q one");
    assert_eq!(a.read("r"), b"r one");
    assert_eq!(a.read("s"), b"s two");
    assert_error(&a.run(&["read", &format!("s@{s1}")]), &s1);
    assert_eq!(versions(&a, "s"), vec![s2.clone()]);
    assert_error(&a.run(&["read", "t"]), "t");
    // Only the losses remain: verify is clean now, and gc runs again.
    assert_code(&a.run(&["verify"]), 0, "verify after the repair");
    assert_code(&a.run(&["gc"]), 0, "gc");
    assert_eq!(a.read("r"), b"r one");
}

#[test]
fn gc_keeps_the_blocks_a_quarantined_manifest_names() {
    let a = TestVolume::named("solo");
    let data = noise(3 * 4096, 5);
    let v1 = a.write("f", &data);
    a.write("f", b"second");
    let file = a.dir.join("local/root/f/versions").join(&v1);
    let blocks = manifest_blocks(&file);
    assert!(!blocks.is_empty());
    // Alter the size line: the checksum fails, the block lines are still there.
    let t = fs::read_to_string(&file).unwrap().replace("\nsize ", "\nsize 1");
    fs::write(&file, t).unwrap();
    let out = a.run(&["--json", "verify", "--repair"]);
    assert_code(&out, 1, "repair");
    let r = json(&out.stdout);
    assert_eq!(r["quarantined"][0]["id"], v1.as_str(), "{r}");
    assert_eq!(r["affected"][0]["version"], v1.as_str(), "{r}");
    let moved = a.dir.join("local/quarantine/manifests/f/versions").join(&v1);
    assert!(moved.is_file());
    assert_code(&a.run(&["gc"]), 0, "gc");
    for h in &blocks {
        let p = a.dir.join("local/hashes").join(&h[0..2]).join(&h[2..4]).join(format!("{}.gz", &h[4..]));
        assert!(p.is_file(), "gc deleted block {h} of the quarantined manifest");
    }
    // The recovery recipe of FORMAT.md still works on the quarantined file.
    let mut rebuilt = Vec::new();
    for h in &blocks {
        let p = a.dir.join("local/hashes").join(&h[0..2]).join(&h[2..4]).join(format!("{}.gz", &h[4..]));
        let gz = fs::read(p).unwrap();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut rebuilt).unwrap();
    }
    assert!(rebuilt == data);
}
