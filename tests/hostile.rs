//! A hostile peer, through the real binary. Node `a` is the attacker: it controls the log it
//! pushes into `b` (`b/local/upstream/<a>/updates/`) and its own volume, from which `b`
//! pulls blocks and into which `b` pushes. Four families of cases, each a table:
//!
//! - records: crafted manifests in a's log (escaping paths, NUL, `.globofs`, huge names,
//!   malformed fields with a right checksum, duplicates, future ids, odd but legal names);
//! - log directories: symlinks, FIFOs, directories and huge files in place of segments,
//!   bad headers, logs of uuids that are not peers, a peer config with a wrong uuid;
//! - pulls: a's block files replaced by symlinks, hard links, FIFOs, wrong content, gzip
//!   bombs, oversized files, and its `hashes/ab` directory symlinked outside;
//! - pushes: a's `local/upstream`, `<uuid>/`, `updates/` or `latest` symlinked outside,
//!   FIFOs, hard links, and a config that is a FIFO or a link.
//!
//! For every case: each command ends within [`TIMEOUT`] without a panic and with the designed
//! exit code; a canary tree outside the volumes (and unique names in `/tmp` and `/`) is
//! byte-identical afterwards; the bad input is refused or ignored while the good record in
//! the same log is applied; `verify` on `b` stays clean. Each test prints its figure on
//! stderr. `GLOBOFS_LONG=1` makes the bombs and huge files bigger.

use crate::util::*;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// No command may run longer than this.
const TIMEOUT: Duration = Duration::from_secs(20);

fn long() -> bool {
    std::env::var_os("GLOBOFS_LONG").is_some_and(|v| v != "0" && !v.is_empty())
}

// ---------------------------------------------------------------------------------------
// Running commands with a timeout
// ---------------------------------------------------------------------------------------

/// What one command did.
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub timed_out: bool,
}

impl Ran {
    pub fn panicked(&self) -> bool {
        let e = text(&self.stderr);
        e.contains("panicked") || e.contains("internal error") || e.contains("RUST_BACKTRACE")
    }
    pub fn warnings(&self) -> usize {
        text(&self.stderr).lines().filter(|l| l.contains("warning")).count()
    }
}

/// Runs `globofs -V vol ARGS`, killing it after [`TIMEOUT`].
pub fn run_timed(vol: &Path, args: &[&OsStr]) -> Ran {
    let mut child = Command::new(bin())
        .arg("-V")
        .arg(vol)
        .args(args)
        .env_remove("GLOBOFS_VOLUME")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn globofs");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out.read_to_end(&mut b);
        b
    });
    let t_err = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = err.read_to_end(&mut b);
        b
    });
    let start = Instant::now();
    let mut timed_out = false;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > TIMEOUT {
            timed_out = true;
            let _ = child.kill();
            break child.wait().expect("wait after kill");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Ran { code: status.code(), stdout: t_out.join().unwrap(), stderr: t_err.join().unwrap(), timed_out }
}

pub fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

// ---------------------------------------------------------------------------------------
// Crafting manifests and logs
// ---------------------------------------------------------------------------------------

pub fn sha_hex(b: &[u8]) -> String {
    Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

/// `record <len> <sha>\n<payload>`.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut r = format!("record {} {}\n", payload.len(), sha_hex(payload)).into_bytes();
    r.extend_from_slice(payload);
    r
}

/// A manifest body (all lines but `end`), sealed with a right `end` line.
pub fn seal(body: &[u8]) -> Vec<u8> {
    let mut m = body.to_vec();
    m.extend_from_slice(format!("end {}\n", sha_hex(body)).as_bytes());
    m
}

/// The content of the one block every crafted file version names.
pub const HELLO: &[u8] = b"hello\n";

/// Editable manifest lines (`key`, `value`), sealed by [`Lines::build`].
#[derive(Clone)]
pub struct Lines(pub Vec<(String, String)>);

impl Lines {
    /// A file version of `path` (text form) with id `id`, one block: [`HELLO`].
    pub fn file(id: &str, path: &str, origin: &str) -> Lines {
        let kv = [
            ("globofs-version", "1".to_string()),
            ("id", id.to_string()),
            ("path", path.to_string()),
            ("kind", "file".into()),
            ("origin", format!("{origin} a")),
            ("time", "1700000000.000000000".into()),
            ("size", HELLO.len().to_string()),
            ("mode", "0644".into()),
            ("mtime", "1700000000.000000000".into()),
            ("block", format!("{} {}", sha_hex(HELLO), HELLO.len())),
        ];
        Lines(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    }
    /// Replaces the first `key` line's value (or adds the line before the blocks).
    pub fn set(mut self, key: &str, val: &str) -> Lines {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some(l) => l.1 = val.to_string(),
            None => {
                let at = self.0.iter().position(|(k, _)| k == "block").unwrap_or(self.0.len());
                self.0.insert(at, (key.to_string(), val.to_string()));
            }
        }
        self
    }
    pub fn add(mut self, key: &str, val: &str) -> Lines {
        self.0.push((key.to_string(), val.to_string()));
        self
    }
    pub fn remove(mut self, key: &str) -> Lines {
        self.0.retain(|(k, _)| k != key);
        self
    }
    pub fn body(&self) -> Vec<u8> {
        let mut b = Vec::new();
        for (k, v) in &self.0 {
            b.extend_from_slice(k.as_bytes());
            b.push(b' ');
            b.extend_from_slice(v.as_bytes());
            b.push(b'\n');
        }
        b
    }
    pub fn build(&self) -> Vec<u8> {
        seal(&self.body())
    }
}

/// A version id unique to case `n` (and `k` within it), made by node `node8`.
fn vid(n: usize, k: usize, node8: &str) -> String {
    format!("1700000{n:03}.{k:09}-{node8}-0000abcd")
}

pub fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Where block `hex` lives under a volume.
pub fn block_file(vol: &Path, hex: &str) -> PathBuf {
    vol.join("local/hashes").join(&hex[0..2]).join(&hex[2..4]).join(format!("{}.gz", &hex[4..]))
}

pub fn mkfifo(p: &Path) {
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo {}", p.display());
}

/// A sparse file of `len` bytes starting with `head`.
pub fn sparse(p: &Path, head: &[u8], len: u64) {
    let mut f = fs::File::create(p).unwrap();
    f.write_all(head).unwrap();
    f.set_len(len).unwrap();
}

/// Replaces `p` (a file or a directory) by whatever `make` creates there.
fn replace(p: &Path, make: impl FnOnce(&Path)) {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p).unwrap(),
        Ok(_) => fs::remove_file(p).unwrap(),
        Err(_) => {}
    }
    make(p)
}

fn symlink(target: &Path, at: &Path) {
    std::os::unix::fs::symlink(target, at).unwrap()
}

// ---------------------------------------------------------------------------------------
// Canary: a hash of a tree outside the volumes
// ---------------------------------------------------------------------------------------

/// Names, types, modes, sizes, contents and link targets of every entry under `root`
/// (`skip`ped subtrees aside), hashed. Link counts and times are left out: a hard link made
/// to a canary file from inside a volume changes its link count, not the file.
pub fn tree_hash(root: &Path, skip: &[&Path]) -> String {
    let mut h = Sha256::new();
    for e in walkdir::WalkDir::new(root)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| !skip.iter().any(|s| e.path() == *s))
        .filter_map(|e| e.ok())
    {
        let p = e.path();
        let m = fs::symlink_metadata(p).unwrap();
        h.update(p.strip_prefix(root).unwrap().as_os_str().as_bytes());
        h.update(format!("|{:?}|{:o}|{}|", m.file_type(), m.permissions().mode(), m.len()).as_bytes());
        if m.file_type().is_symlink() {
            h.update(fs::read_link(p).unwrap().as_os_str().as_bytes());
        } else if m.is_file() {
            h.update(fs::read(p).unwrap());
        }
        h.update(b"\n");
    }
    h.finalize().iter().map(|x| format!("{x:02x}")).collect()
}

// ---------------------------------------------------------------------------------------
// The scene: a pair of nodes, copied fresh for each case
// ---------------------------------------------------------------------------------------

struct Base {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    ua: String,
    ub: String,
}

/// Two paired nodes `a` and `b`; `a` has `f` (the [`HELLO`] block), pushed to nothing yet.
fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| {
        let tmp = tempfile::Builder::new().prefix("globofs-hostile-base-").tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        for n in ["a", "b"] {
            let out = Command::new(bin()).arg("init").arg(dir.join(n)).args(["--name", n]).output().unwrap();
            assert!(out.status.success(), "{}", text(&out.stderr));
        }
        let ok = |vol: &str, args: &[&OsStr]| {
            let r = run_timed(&dir.join(vol), args);
            assert_eq!(r.code, Some(0), "{args:?}: {}", text(&r.stderr));
        };
        ok("a", &[os("peer"), os("add"), os("b"), dir.join("b").as_os_str()]);
        ok("b", &[os("peer"), os("add"), os("a"), dir.join("a").as_os_str()]);
        let uuid = |n: &str| {
            let t: toml::Table = fs::read_to_string(dir.join(n).join("local/config")).unwrap().parse().unwrap();
            t["uuid"].as_str().unwrap().to_string()
        };
        let (ua, ub) = (uuid("a"), uuid("b"));
        let src = dir.join("hello");
        fs::write(&src, HELLO).unwrap();
        ok("a", &[os("import"), src.as_os_str(), os("f")]);
        fs::remove_file(&src).unwrap();
        Base { _tmp: tmp, dir, ua, ub }
    })
}

/// Copies a tree: files, directories and symlinks. A volume's `local/state/identity` is
/// left out, so that the copy is a volume of its own place (recorded on first use) rather
/// than a copy that refuses to write (the scenes are copies of one base pair on purpose).
pub fn copy_tree(from: &Path, to: &Path) {
    for e in walkdir::WalkDir::new(from).into_iter().filter_map(|e| e.ok()) {
        let rel = e.path().strip_prefix(from).unwrap();
        if rel.ends_with("local/state/identity") {
            continue;
        }
        let dest = to.join(rel);
        let t = e.file_type();
        if t.is_dir() {
            fs::create_dir_all(&dest).unwrap();
        } else if t.is_symlink() {
            symlink(&fs::read_link(e.path()).unwrap(), &dest);
        } else if t.is_file() {
            fs::copy(e.path(), &dest).unwrap();
        }
    }
}

/// One case's world: fresh copies of `a` and `b`, and a canary tree beside them.
pub struct Scene {
    pub tmp: tempfile::TempDir,
    pub a: PathBuf,
    pub b: PathBuf,
    pub ua: String,
    pub ub: String,
    pub canary: PathBuf,
    /// Unique names that must never appear (in `/tmp`, `/`, and beside the volumes).
    pub escapes: Vec<PathBuf>,
    /// A valid log segment, outside the volumes, whose one record is `evil` (a symlink
    /// target for logs).
    pub canary_log: PathBuf,
    /// A right gzip file of [`HELLO`], outside the volumes.
    pub canary_gz: PathBuf,
    pub n: usize,
}

impl Scene {
    pub fn new(n: usize) -> Scene {
        let base = base();
        Scene::copy_of(&base.dir.join("a"), &base.dir.join("b"), n)
    }

    /// A scene whose `a` and `b` are copies of the pair at `src_a` and `src_b` (made from
    /// the base pair), peers of each other at their new places.
    pub fn copy_of(src_a: &Path, src_b: &Path, n: usize) -> Scene {
        let base = base();
        let tmp = tempfile::Builder::new().prefix("globofs-hostile-").tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        copy_tree(src_a, &a);
        copy_tree(src_b, &b);
        fs::write(a.join("b/config"), format!("uuid = \"{}\"\npath = \"{}\"\n", base.ub, b.display())).unwrap();
        fs::write(b.join("a/config"), format!("uuid = \"{}\"\npath = \"{}\"\n", base.ua, a.display())).unwrap();
        let canary = tmp.path().join("canary");
        fs::create_dir_all(canary.join("etc")).unwrap();
        fs::create_dir_all(canary.join("empty")).unwrap();
        fs::write(canary.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        fs::write(canary.join("secret"), "top secret\n").unwrap();
        fs::write(canary.join("oneline"), "no newline here").unwrap();
        let canary_gz = canary.join("hello.gz");
        fs::write(&canary_gz, gz(HELLO)).unwrap();
        fs::write(canary.join("wrong.gz"), gz(b"not hello\n")).unwrap();
        let h = sha_hex(HELLO);
        let fake_ab = canary.join("hashes_ab").join(&h[2..4]);
        fs::create_dir_all(&fake_ab).unwrap();
        fs::write(fake_ab.join(format!("{}.gz", &h[4..])), gz(b"not hello\n")).unwrap();
        let canary_log = canary.join("log");
        let mut log = b"globofs-log 1 canarylog\n".to_vec();
        log.extend(frame(&Lines::file(&vid(n, 999, &base.ua[..8]), "evil", &base.ua).build()));
        fs::write(&canary_log, log).unwrap();
        fs::create_dir_all(canary.join("updates")).unwrap();
        fs::write(canary.join("updates/latest"), fs::read(&canary_log).unwrap()).unwrap();
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let uniq = format!("globofs-escape-{}-{n}-{t}", std::process::id());
        let escapes = vec![
            PathBuf::from("/tmp").join(&uniq),
            PathBuf::from("/").join(&uniq),
            tmp.path().join(&uniq),
            b.join(&uniq),
            b.join("local").join(&uniq),
        ];
        Scene { ua: base.ua.clone(), ub: base.ub.clone(), tmp, a, b, canary, escapes, canary_log, canary_gz, n }
    }

    /// The unique name escape attempts use.
    pub fn esc(&self) -> String {
        self.escapes[0].file_name().unwrap().to_string_lossy().into_owned()
    }

    /// a's log directory inside b.
    pub fn log_dir(&self) -> PathBuf {
        self.b.join("local/upstream").join(&self.ua).join("updates")
    }

    /// Writes a's `latest` in b: a header, then `records`.
    pub fn write_log(&self, records: &[u8]) {
        fs::create_dir_all(self.log_dir()).unwrap();
        let mut log = format!("globofs-log 1 case{:04}\n", self.n).into_bytes();
        log.extend_from_slice(records);
        fs::write(self.log_dir().join("latest"), log).unwrap();
    }

    /// A good record: a file version of `ok` made by a.
    pub fn good(&self) -> Vec<u8> {
        frame(&Lines::file(&vid(self.n, 0, &self.ua[..8]), "ok", &self.ua).build())
    }

    pub fn file(&self, k: usize, path: &str) -> Lines {
        Lines::file(&vid(self.n, k, &self.ua[..8]), path, &self.ua)
    }

    /// The state of everything outside the volumes.
    pub fn outside(&self) -> (String, Vec<bool>) {
        (
            tree_hash(self.tmp.path(), &[&self.a, &self.b]),
            self.escapes.iter().map(|p| fs::symlink_metadata(p).is_ok()).collect(),
        )
    }

    pub fn has_path(&self, raw: &[u8]) -> bool {
        let r = run_timed(&self.b, &[os("--json"), os("log"), OsStr::from_bytes(raw)]);
        r.code == Some(0)
    }

    /// True if some directory under b's `local/root` has versions for `name` at any depth.
    pub fn root_mentions(&self, name: &str) -> bool {
        walkdir::WalkDir::new(self.b.join("local/root"))
            .into_iter()
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().contains(name))
    }
}

// ---------------------------------------------------------------------------------------
// Tallying
// ---------------------------------------------------------------------------------------

/// What the designed behaviour is for one case.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Want {
    /// The bad input is refused or ignored.
    Refused,
    /// The input is legal (if odd) and must be applied.
    Accepted,
}

#[derive(Default)]
pub struct Tally {
    pub cases: usize,
    pub refused: usize,
    pub accepted: usize,
    pub outside: usize,
    pub panics: usize,
    pub timeouts: usize,
    pub commands: usize,
    pub failures: Vec<String>,
}

impl Tally {
    /// Checks one command: no panic, no timeout, exit code in `codes`.
    pub fn cmd(&mut self, case: &str, what: &str, r: &Ran, codes: &[i32]) -> bool {
        self.commands += 1;
        let mut ok = true;
        if r.panicked() {
            self.panics += 1;
            self.failures.push(format!("{case}: {what} panicked: {}", text(&r.stderr)));
            ok = false;
        }
        if r.timed_out {
            self.timeouts += 1;
            self.failures.push(format!("{case}: {what} ran over {TIMEOUT:?}"));
            ok = false;
        } else if !r.code.is_some_and(|c| codes.contains(&c)) {
            self.failures.push(format!(
                "{case}: {what} exited {:?}, expected {codes:?}; stderr: {}",
                r.code,
                text(&r.stderr).chars().take(600).collect::<String>()
            ));
            ok = false;
        }
        ok
    }

    pub fn check(&mut self, case: &str, cond: bool, msg: impl FnOnce() -> String) {
        if !cond {
            self.failures.push(format!("{case}: {}", msg().chars().take(800).collect::<String>()));
        }
    }

    /// Fails the test if any check failed, without printing a figure.
    pub fn assert_ok(&self, title: &str) {
        assert!(self.failures.is_empty(), "{title}: {} failures:\n{}", self.failures.len(), self.failures.join("\n"));
    }

    pub fn finish(&self, title: &str) {
        eprintln!(
            "{title}: {} cases, {} refused, {} accepted, {} changes outside, {} panics, {} timeouts ({} commands)",
            self.cases, self.refused, self.accepted, self.outside, self.panics, self.timeouts, self.commands
        );
        assert!(self.failures.is_empty(), "{title}: {} failures:\n{}", self.failures.len(), self.failures.join("\n"));
    }
}

/// `verify` on b: exit 0, or (`missing_ok`) 1 with only missing-block problems.
pub fn verify_b(t: &mut Tally, s: &Scene, case: &str, missing_ok: bool) {
    let r = run_timed(&s.b, &[os("--json"), os("verify")]);
    if !t.cmd(case, "verify", &r, if missing_ok { &[0, 1] } else { &[0] }) {
        return;
    }
    let j: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap_or_default();
    let kinds: Vec<String> = j["problems"]
        .as_array()
        .map(|a| a.iter().map(|p| p["kind"].as_str().unwrap_or("?").to_string()).collect())
        .unwrap_or_default();
    t.check(case, kinds.iter().all(|k| k == "missing-block"), || format!("verify on b found {kinds:?}: {j}"));
}

// ---------------------------------------------------------------------------------------
// 1. Records
// ---------------------------------------------------------------------------------------

struct RecordCase {
    name: &'static str,
    /// The hostile records (framed), appended after a good one or before it.
    records: Vec<u8>,
    want: Want,
    /// For accepted cases: the raw path that must be applied.
    path: Option<Vec<u8>>,
    /// The good record goes first (the bad one stops reading of the segment by design).
    good_first: bool,
}

fn record_cases(s: &Scene) -> Vec<RecordCase> {
    let esc = s.esc();
    let f = |k: usize, path: &str| s.file(k, path);
    let refuse = |name: &'static str, l: Lines| RecordCase {
        name,
        records: frame(&l.build()),
        want: Want::Refused,
        path: None,
        good_first: false,
    };
    let accept = |name: &'static str, l: Lines, raw: &[u8]| RecordCase {
        name,
        records: frame(&l.build()),
        want: Want::Accepted,
        path: Some(raw.to_vec()),
        good_first: false,
    };
    let long_name = "n".repeat(250);
    let too_long: Vec<String> = (0..20).map(|_| long_name.clone()).collect();
    let too_long = too_long.join("/");
    let link_target = s.canary.to_string_lossy().into_owned();
    let symlink_rec = |k: usize, path: &str| {
        f(k, path)
            .set("kind", "symlink")
            .set("size", "0")
            .set("mode", "0777")
            .set("target", &link_target)
            .remove("block")
    };
    let non_utf8 = b"caf\xe9-\xff\xfe".to_vec();
    let mut v = vec![
        refuse("dot-dot", f(1, &format!("../../../{esc}"))),
        refuse("dot-dot inside", f(1, &format!("a/../../{esc}"))),
        refuse("trailing dot-dot", f(1, "a/..")),
        refuse("escaped dot-dot", f(1, &format!("%2E%2E/{esc}"))),
        refuse("escaped slashes", f(1, &format!("a%2F..%2F..%2F{esc}"))),
        refuse("absolute", f(1, &format!("/tmp/{esc}"))),
        refuse("escaped absolute", f(1, &format!("%2Ftmp%2F{esc}"))),
        refuse("NUL", f(1, &format!("x%00{esc}"))),
        refuse("NUL alone", f(1, "%00")),
        refuse(".globofs", f(1, ".globofs")),
        refuse(".globofs/x", f(1, ".globofs/history")),
        refuse("empty component", f(1, "a//b")),
        refuse("dot component", f(1, "./x")),
        refuse("root path", f(1, "")),
        refuse("dot path", f(1, ".")),
        refuse("component of 256 bytes", f(1, &"x".repeat(256))),
        refuse("component of 256 bytes escaped", f(1, &format!("%25{}", "x".repeat(254)))),
        refuse("path over PATH_MAX", f(1, &too_long)),
        refuse("bad escape", f(1, "50%")),
        refuse("bad escape hex", f(1, "a%zz")),
        refuse("path given twice", f(1, "p1").add("path", "p2")),
        refuse("unknown key", f(1, "uk").set("evil", "1")),
        refuse("mode over 7777", f(1, "mo").set("mode", "10000")),
        refuse("mode not octal", f(1, "mo").set("mode", "0968")),
        refuse("negative size", f(1, "sz").set("size", "-6")),
        refuse("size overflow", f(1, "sz").set("size", "99999999999999999999999")),
        refuse("unknown kind", f(1, "kd").set("kind", "socket")),
        refuse("block length 0", f(1, "bl").set("block", &format!("{} 0", sha_hex(HELLO))).set("size", "0")),
        refuse(
            "block over 16 MiB",
            f(1, "bl").set("block", &format!("{} 16777217", sha_hex(HELLO))).set("size", "16777217"),
        ),
        refuse("block id uppercase", f(1, "bl").set("block", &format!("{} 6", sha_hex(HELLO).to_uppercase()))),
        refuse("size is not the blocks' sum", f(1, "sm").set("size", "7")),
        refuse("10^7 blocks claimed", f(1, "many").set("size", &(10_000_000u64 * 16_777_216).to_string())),
        refuse("symlink without target", f(1, "ln").set("kind", "symlink").set("size", "0").remove("block")),
        refuse("symlink target with NUL", symlink_rec(1, "ln").set("target", "a%00b")),
        refuse("dir with blocks", f(1, "dd").set("kind", "dir")),
        refuse("id latest", f(1, "il").set("id", "latest")),
        refuse("id with slash", f(1, "il").set("id", "../x")),
        refuse("id of 65 chars", f(1, "il").set("id", &"1".repeat(65))),
        refuse("id starting with a dot", f(1, "il").set("id", ".tmp-1")),
        refuse("own parent", {
            let l = f(1, "op");
            let id = l.0[1].1.clone();
            l.set("parent", &id)
        }),
        refuse("origin not a uuid", f(1, "or").set("origin", "not-a-uuid a")),
        refuse("format version 2", f(1, "fv").set("globofs-version", "2")),
        refuse("nanoseconds of 8 digits", f(1, "ns").set("time", "1700000000.00000000")),
        refuse("timestamp overflow", f(1, "ts").set("time", "99999999999999999999.000000000")),
        RecordCase {
            name: "empty line",
            records: frame(&seal(&[f(1, "el").body(), b"\n".to_vec()].concat())),
            want: Want::Refused,
            path: None,
            good_first: false,
        },
        RecordCase {
            name: "not UTF-8 with a right checksum",
            records: frame(&seal(&[f(1, "nu").body(), b"target \xff\n".to_vec()].concat())),
            want: Want::Refused,
            path: None,
            good_first: false,
        },
        RecordCase {
            name: "symlink then a file two levels beneath it, one batch",
            records: [frame(&symlink_rec(1, "ln3").build()), frame(&f(2, &format!("ln3/sub/{esc}")).build())].concat(),
            want: Want::Refused,
            path: None,
            good_first: false,
        },
        RecordCase {
            name: "frame claiming 10^12 bytes (a torn tail forever)",
            records: format!("record 1000000000000 {}\n{}", sha_hex(b"x"), "x".repeat(50)).into_bytes(),
            want: Want::Refused,
            path: None,
            good_first: true,
        },
        RecordCase {
            name: "frame length with a sign",
            records: [format!("record +5 {}\nhello", sha_hex(b"hello")).into_bytes(), s.good()].concat(),
            want: Want::Refused,
            path: None,
            good_first: true,
        },
        RecordCase {
            name: "frame line of 200 bytes",
            records: [format!("record 5 {}{}\nhello", sha_hex(b"hello"), " ".repeat(150)).into_bytes(), s.good()]
                .concat(),
            want: Want::Refused,
            path: None,
            good_first: true,
        },
        // Legal, if odd: must be applied and round-trip.
        accept("non-UTF-8 name", f(1, "caf%E9-%FF%FE"), &non_utf8),
        accept("newline in a name", f(1, "a%0Ab"), b"a\nb"),
        accept("sub/.globofs", f(1, "sub/.globofs"), b"sub/.globofs"),
        accept("name of 255 bytes", f(1, &"y".repeat(255)), "y".repeat(255).as_bytes()),
        accept("name `versions`", f(1, "versions/versions"), b"versions/versions"),
        accept("percent names", f(1, "%2550%25/%25x"), b"%50%/%x"),
        accept("unicode", f(1, "été/日本"), "été/日本".as_bytes()),
        accept(
            "far-future id and times",
            {
                f(1, "future")
                    .set("id", &format!("9999999999.999999999-{}-ffffffff", &s.ua[..8]))
                    .set("time", "9223372036854775807.999999999")
                    .set("mtime", "9223372036854775807.999999999")
            },
            b"future",
        ),
        accept(
            "far-past times",
            f(1, "past").set("time", "-9223372036854775807.000000000").set("mtime", "-1.000000000"),
            b"past",
        ),
        accept(
            "id beyond u64 seconds",
            f(1, "big-id").set("id", &format!("99999999999999999999.1-{}-x", &s.ua[..8])),
            b"big-id",
        ),
        accept(
            "unknown origin uuid",
            f(1, "stranger").set("origin", "0f0e0d0c-0b0a-4000-8000-123456789abc x"),
            b"stranger",
        ),
    ];
    // A record given twice, and two records with one id: the first is applied once.
    let dup = frame(&f(1, "dup").build());
    v.push(RecordCase {
        name: "duplicated record",
        records: [dup.clone(), dup.clone(), dup].concat(),
        want: Want::Accepted,
        path: Some(b"dup".to_vec()),
        good_first: false,
    });
    v.push(RecordCase {
        name: "same id, other content",
        records: [frame(&f(1, "sameid").build()), frame(&f(1, "sameid").set("mode", "0600").build())].concat(),
        want: Want::Accepted,
        path: Some(b"sameid".to_vec()),
        good_first: false,
    });
    v
}

#[test]
fn hostile_records() {
    let mut t = Tally::default();
    let n_cases = record_cases(&Scene::new(0)).len();
    for i in 0..n_cases {
        let s = Scene::new(100 + i);
        let case = record_cases(&s).swap_remove(i);
        let name = case.name;
        t.cases += 1;
        let before = s.outside();
        let recs = if case.good_first {
            [s.good(), case.records.clone()].concat()
        } else {
            [case.records.clone(), s.good()].concat()
        };
        s.write_log(&recs);
        let r = run_timed(&s.b, &[os("ls"), os("-a")]);
        if !t.cmd(name, "ls", &r, &[0]) {
            continue;
        }
        t.check(name, s.has_path(b"ok"), || format!("the good record was not applied: {}", text(&r.stderr)));
        match case.want {
            Want::Refused => {
                t.check(name, r.warnings() >= 1 || case.good_first, || "refused without a warning".into());
                t.check(name, !s.root_mentions(&s.esc()), || "an escaping name landed under local/root".into());
                let listed = text(&r.stdout);
                let extra: Vec<&str> =
                    listed.lines().filter(|l| !l.is_empty() && *l != "ok" && !l.ends_with(':')).collect();
                // What a refused record names never shows (a symlink accepted first may).
                t.check(name, extra.iter().all(|l| *l == "ln3"), || format!("ls shows {extra:?}"));
                t.refused += 1;
            }
            Want::Accepted => {
                let p = case.path.clone().unwrap();
                t.check(name, s.has_path(&p), || {
                    format!("legal path {:?} was not applied: {}", text(&p), text(&r.stderr))
                });
                // Round trip: the content reads back (pulling the block from a).
                let rd = run_timed(&s.b, &[os("read"), OsStr::from_bytes(&p)]);
                if t.cmd(name, "read", &rd, &[0]) {
                    t.check(name, rd.stdout == HELLO, || format!("read gave {:?}", text(&rd.stdout)));
                }
                let l = run_timed(&s.b, &[os("ls"), os("-l"), os("-R"), os("-a")]);
                t.cmd(name, "ls -l", &l, &[0]);
                let lg = run_timed(&s.b, &[os("--json"), os("log"), OsStr::from_bytes(&p)]);
                if t.cmd(name, "log", &lg, &[0]) {
                    let n = serde_json::from_slice::<serde_json::Value>(&lg.stdout)
                        .ok()
                        .and_then(|j| j.as_array().map(|a| a.len()))
                        .unwrap_or(0);
                    t.check(name, n == 1, || format!("{n} versions, expected exactly 1"));
                }
                let ex =
                    run_timed(&s.b, &[os("export"), OsStr::from_bytes(&p), s.tmp.path().join("export").as_os_str()]);
                t.cmd(name, "export", &ex, &[0]);
                let _ = fs::remove_dir_all(s.tmp.path().join("export"));
                let _ = fs::remove_file(s.tmp.path().join("export"));
                t.accepted += 1;
            }
        }
        if name == "same id, other content" || name == "duplicated record" {
            let j = fs::read_to_string(s.b.join("local/state/journal")).unwrap_or_default();
            let dups = j.lines().filter(|l| l.contains(&vid(s.n, 1, &s.ua[..8]))).count();
            t.check(name, dups == 1, || format!("journal lists the version {dups} times"));
        }
        // Refused once, not at every command; except a bad frame in `latest`, which is
        // reported each time until the writer cuts it off (FORMAT.md, "Reading").
        let again = run_timed(&s.b, &[os("ls")]);
        if t.cmd(name, "ls again", &again, &[0]) {
            let bad_frame = name.starts_with("frame length") || name.starts_with("frame line");
            t.check(name, bad_frame || again.warnings() == 0, || format!("refused again: {}", text(&again.stderr)));
            t.check(name, !bad_frame || again.warnings() == 1, || {
                format!("bad frame not reported: {}", text(&again.stderr))
            });
        }
        verify_b(&mut t, &s, name, false);
        if s.outside() != before {
            t.outside += 1;
            t.failures.push(format!("{name}: something changed outside the volumes"));
        }
    }
    // The far-future id did not win by its clock: a concurrent version stays another head.
    {
        let s = Scene::new(99);
        t.cases += 1;
        let name = "future id against a head";
        let before = s.outside();
        let now = s.file(1, "clock");
        let future =
            s.file(2, "clock").set("id", &format!("9999999999.000000000-{}-00000001", &s.ua[..8])).set("mode", "0600");
        s.write_log(&[frame(&now.build()), frame(&future.build())].concat());
        let st = run_timed(&s.b, &[os("--json"), os("status")]);
        if t.cmd(name, "status", &st, &[0]) {
            let j: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap_or_default();
            let n = j["conflicts"].as_array().map_or(0, |a| a.len());
            t.check(name, n == 1, || format!("expected one conflict, status says {j}"));
        }
        let lg = run_timed(&s.b, &[os("--json"), os("log"), os("clock")]);
        if t.cmd(name, "log", &lg, &[0]) {
            let j: serde_json::Value = serde_json::from_slice(&lg.stdout).unwrap_or_default();
            let head: Vec<&str> = j
                .as_array()
                .map(|a| a.iter().filter(|e| e["head"] == true).filter_map(|e| e["version"].as_str()).collect())
                .unwrap_or_default();
            t.check(name, head == [now.0[1].1.as_str()], || format!("head is {head:?}"));
        }
        verify_b(&mut t, &s, name, false);
        t.check(name, s.outside() == before, || "outside changed".into());
        t.accepted += 1;
    }
    t.finish("hostile peer, records");
}

// ---------------------------------------------------------------------------------------
// 2. Log directories and segments in our volume
// ---------------------------------------------------------------------------------------

/// Each returns the path that must not be applied (`evil` unless said otherwise).
/// How one case sets the scene up.
type Setup = Box<dyn Fn(&Scene)>;
/// How one case damages a block file of `a` (given its path).
type Tamper = Box<dyn Fn(&Scene, &Path)>;

fn dc(f: impl Fn(&Scene) + 'static) -> Setup {
    Box::new(f)
}
fn pc(f: impl Fn(&Scene, &Path) + 'static) -> Tamper {
    Box::new(f)
}
fn sc(f: impl Fn(&Scene) + 'static) -> Setup {
    Box::new(f)
}

fn dir_cases() -> Vec<(&'static str, Setup)> {
    let big = if long() { 299 << 20 } else { 64 << 20 };
    vec![
        (
            "<uuid>/ is a symlink to a log outside",
            dc(|s: &Scene| {
                fs::create_dir_all(s.b.join("local/upstream")).unwrap();
                symlink(&s.canary, &s.b.join("local/upstream").join(&s.ua));
            }),
        ),
        (
            "updates/ is a symlink outside",
            dc(|s: &Scene| {
                fs::create_dir_all(s.log_dir().parent().unwrap()).unwrap();
                symlink(&s.canary.join("updates"), &s.log_dir());
            }),
        ),
        (
            "latest is a symlink to a log outside",
            dc(|s: &Scene| {
                fs::create_dir_all(s.log_dir()).unwrap();
                symlink(&s.canary_log, &s.log_dir().join("latest"));
            }),
        ),
        (
            "rotated segment is a symlink to a log outside",
            dc(|s: &Scene| {
                s.write_log(&s.good());
                symlink(&s.canary_log, &s.log_dir().join("1000.000000001"));
            }),
        ),
        (
            "latest is a FIFO",
            dc(|s: &Scene| {
                fs::create_dir_all(s.log_dir()).unwrap();
                mkfifo(&s.log_dir().join("latest"));
            }),
        ),
        (
            "rotated segment is a FIFO",
            dc(|s: &Scene| {
                s.write_log(&s.good());
                mkfifo(&s.log_dir().join("1000.000000001"));
            }),
        ),
        (
            "latest is a directory",
            dc(|s: &Scene| {
                fs::create_dir_all(s.log_dir().join("latest")).unwrap();
            }),
        ),
        (
            "latest is a hard link to a file outside",
            dc(|s: &Scene| {
                fs::create_dir_all(s.log_dir()).unwrap();
                fs::hard_link(&s.canary_log, s.log_dir().join("latest")).unwrap();
                // (Its content is a valid log of a: reading it is allowed; nothing writes it.)
            }),
        ),
        (
            "segment over 300 MiB",
            dc(|s: &Scene| {
                s.write_log(&s.good());
                let mut head = b"globofs-log 1 huge\n".to_vec();
                head.extend(frame(&s.file(7, "evil").build()));
                sparse(&s.log_dir().join("1000.000000001"), &head, 301 << 20);
            }),
        ),
        (
            "large segment of zeros",
            dc(move |s: &Scene| {
                s.write_log(&s.good());
                sparse(&s.log_dir().join("1000.000000001"), b"globofs-log 1 zeros\n", big);
            }),
        ),
        (
            "large segment, a record then zeros",
            dc(move |s: &Scene| {
                let mut head = b"globofs-log 1 recthenzeros\n".to_vec();
                head.extend(s.good());
                sparse(
                    &s.log_dir().join("latest"),
                    &{
                        fs::create_dir_all(s.log_dir()).unwrap();
                        head
                    },
                    big,
                );
            }),
        ),
        (
            "header of format 2",
            dc(|s: &Scene| {
                fs::create_dir_all(s.log_dir()).unwrap();
                let mut log = b"globofs-log 2 x\n".to_vec();
                log.extend(frame(&s.file(7, "evil").build()));
                fs::write(s.log_dir().join("latest"), log).unwrap();
                s.write_rot(&s.good());
            }),
        ),
        (
            "segment id of 65 characters",
            dc(|s: &Scene| {
                fs::create_dir_all(s.log_dir()).unwrap();
                let mut log = format!("globofs-log 1 {}\n", "a".repeat(65)).into_bytes();
                log.extend(frame(&s.file(7, "evil").build()));
                fs::write(s.log_dir().join("latest"), log).unwrap();
                s.write_rot(&s.good());
            }),
        ),
        (
            "segment id with a slash",
            dc(|s: &Scene| {
                fs::create_dir_all(s.log_dir()).unwrap();
                let mut log = b"globofs-log 1 ../../x\n".to_vec();
                log.extend(frame(&s.file(7, "evil").build()));
                fs::write(s.log_dir().join("latest"), log).unwrap();
                s.write_rot(&s.good());
            }),
        ),
        (
            "log of a uuid that is not a peer",
            dc(|s: &Scene| {
                s.write_log(&s.good());
                let d = s.b.join("local/upstream/0f0e0d0c-0b0a-4000-8000-123456789abc/updates");
                fs::create_dir_all(&d).unwrap();
                fs::copy(&s.canary_log, d.join("latest")).unwrap();
            }),
        ),
        (
            "log under the peer's uuid in upper case",
            dc(|s: &Scene| {
                s.write_log(&s.good());
                let d = s.b.join("local/upstream").join(s.ua.to_uppercase()).join("updates");
                fs::create_dir_all(&d).unwrap();
                fs::copy(&s.canary_log, d.join("latest")).unwrap();
            }),
        ),
        (
            "log under our own uuid",
            dc(|s: &Scene| {
                s.write_log(&s.good());
                let d = s.b.join("local/upstream").join(&s.ub).join("updates");
                fs::create_dir_all(&d).unwrap();
                fs::copy(&s.canary_log, d.join("latest")).unwrap();
            }),
        ),
        (
            "stray names in updates/",
            dc(|s: &Scene| {
                s.write_log(&s.good());
                for n in ["latest.bak", "1000", ".1000.5", "1000.5.6", "x.1"] {
                    fs::copy(&s.canary_log, s.log_dir().join(n)).unwrap();
                }
            }),
        ),
        (
            "peer config with a wrong uuid",
            dc(|s: &Scene| {
                // b's record of a names another uuid: a's log is a stranger's now.
                fs::copy(&s.canary_log, {
                    s.write_log(&[]);
                    s.log_dir().join("latest")
                })
                .unwrap();
                fs::write(
                    s.b.join("a/config"),
                    format!("uuid = \"0f0e0d0c-0b0a-4000-8000-123456789abc\"\npath = \"{}\"\n", s.a.display()),
                )
                .unwrap();
            }),
        ),
    ]
}

impl Scene {
    /// Writes a rotated segment `1000.000000001` holding `records`.
    fn write_rot(&self, records: &[u8]) {
        fs::create_dir_all(self.log_dir()).unwrap();
        let mut log = format!("globofs-log 1 rot{:04}\n", self.n).into_bytes();
        log.extend_from_slice(records);
        fs::write(self.log_dir().join("1000.000000001"), log).unwrap();
    }
}

#[test]
fn hostile_log_directories() {
    let mut t = Tally::default();
    for (i, (name, setup)) in dir_cases().into_iter().enumerate() {
        let s = Scene::new(300 + i);
        t.cases += 1;
        let before = s.outside();
        setup(&s);
        let expect_good = !matches!(
            name,
            "<uuid>/ is a symlink to a log outside"
                | "updates/ is a symlink outside"
                | "latest is a symlink to a log outside"
                | "latest is a FIFO"
                | "latest is a directory"
                | "peer config with a wrong uuid"
                | "latest is a hard link to a file outside"
        );
        let r = run_timed(&s.b, &[os("ls"), os("-a")]);
        if !t.cmd(name, "ls", &r, &[0]) {
            continue;
        }
        let r2 = run_timed(&s.b, &[os("status")]);
        t.cmd(name, "status", &r2, &[0]);
        let evil_ok = name == "latest is a hard link to a file outside";
        t.check(name, evil_ok || !s.has_path(b"evil"), || "a record that must not be read was applied".into());
        if expect_good {
            t.check(name, s.has_path(b"ok"), || format!("the good record was not applied: {}", text(&r.stderr)));
        }
        if name == "peer config with a wrong uuid" {
            // b's push to `a` finds another volume there: unreachable, nothing written.
            let a_before = tree_hash(&s.a, &[]);
            let p = run_timed(&s.b, &[os("push")]);
            t.cmd(name, "push", &p, &[1]);
            t.check(name, tree_hash(&s.a, &[]) == a_before, || "push wrote into a volume with another uuid".into());
        }
        verify_b(&mut t, &s, name, false);
        if s.outside() != before {
            t.outside += 1;
            t.failures.push(format!("{name}: something changed outside the volumes"));
        }
        if evil_ok {
            t.accepted += 1; // reading a regular file is harmless: nothing writes it
        } else {
            t.refused += 1;
        }
    }
    t.finish("hostile peer, log directories");
}

// ---------------------------------------------------------------------------------------
// 3. Pulling blocks from a hostile peer's volume
// ---------------------------------------------------------------------------------------

fn pull_cases() -> Vec<(&'static str, Want, Tamper)> {
    let bomb = if long() { 4u64 << 30 } else { 256 << 20 };
    vec![
        (
            "block is a symlink to a right copy outside",
            Want::Refused,
            pc(|s: &Scene, f: &Path| replace(f, |f| symlink(&s.canary_gz, f))),
        ),
        (
            "block is a symlink to a file outside",
            Want::Refused,
            pc(|s: &Scene, f: &Path| replace(f, |f| symlink(&s.canary.join("etc/passwd"), f))),
        ),
        (
            "block is a hard link to a wrong file outside",
            Want::Refused,
            pc(|s: &Scene, f: &Path| replace(f, |f| fs::hard_link(s.canary.join("wrong.gz"), f).unwrap())),
        ),
        (
            "block is a hard link to a right copy outside",
            Want::Accepted,
            pc(|s: &Scene, f: &Path| replace(f, |f| fs::hard_link(&s.canary_gz, f).unwrap())),
        ),
        ("block is a FIFO", Want::Refused, pc(|_: &Scene, f: &Path| replace(f, mkfifo))),
        ("block is a directory", Want::Refused, pc(|_: &Scene, f: &Path| replace(f, |f| fs::create_dir(f).unwrap()))),
        (
            "block has the wrong content",
            Want::Refused,
            pc(|_: &Scene, f: &Path| replace(f, |f| fs::write(f, gz(b"hellO\n")).unwrap())),
        ),
        ("block is not gzip", Want::Refused, pc(|_: &Scene, f: &Path| replace(f, |f| fs::write(f, HELLO).unwrap()))),
        (
            "block is a truncated gzip",
            Want::Refused,
            pc(|_: &Scene, f: &Path| {
                let g = gz(HELLO);
                replace(f, |f| fs::write(f, &g[..g.len() - 5]).unwrap())
            }),
        ),
        (
            "block is a gzip bomb",
            Want::Refused,
            pc(move |_: &Scene, f: &Path| replace(f, |f| fs::write(f, gzip_bomb(bomb)).unwrap())),
        ),
        (
            "block is a 40 MiB file",
            Want::Refused,
            pc(|_: &Scene, f: &Path| {
                let g = gz(HELLO);
                replace(f, |f| sparse(f, &g, 40 << 20))
            }),
        ),
        (
            "hashes/ab is a symlink outside",
            Want::Refused,
            pc(|s: &Scene, f: &Path| {
                let ab = f.parent().unwrap().parent().unwrap();
                replace(ab, |ab| symlink(&s.canary.join("hashes_ab"), ab))
            }),
        ),
        (
            "hashes/ is a symlink to an etc outside",
            Want::Refused,
            pc(|s: &Scene, f: &Path| {
                let hashes = f.parent().unwrap().parent().unwrap().parent().unwrap();
                replace(hashes, |h| symlink(&s.canary.join("etc"), h))
            }),
        ),
        (
            "peer's config is a FIFO",
            Want::Refused,
            pc(|s: &Scene, _: &Path| replace(&s.a.join("local/config"), mkfifo)),
        ),
    ]
}

/// A small gzip file that inflates to `len` zero bytes.
pub fn gzip_bomb(len: u64) -> Vec<u8> {
    static CACHE: std::sync::Mutex<BTreeMap<u64, Vec<u8>>> = std::sync::Mutex::new(BTreeMap::new());
    let mut c = CACHE.lock().unwrap();
    c.entry(len)
        .or_insert_with(|| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            let zeros = vec![0u8; 1 << 20];
            for _ in 0..len >> 20 {
                e.write_all(&zeros).unwrap();
            }
            e.finish().unwrap()
        })
        .clone()
}

#[test]
fn hostile_peer_blocks() {
    let mut t = Tally::default();
    let hello = sha_hex(HELLO);
    for (i, (name, want, tamper)) in pull_cases().into_iter().enumerate() {
        let s = Scene::new(500 + i);
        t.cases += 1;
        // a pushes f for real; b knows it but has no block.
        let p = run_timed(&s.a, &[os("push")]);
        if !t.cmd(name, "push", &p, &[0]) {
            continue;
        }
        let before = s.outside();
        let f = block_file(&s.a, &hello);
        let mut perm = fs::metadata(&f).unwrap().permissions();
        perm.set_mode(0o644);
        fs::set_permissions(&f, perm).unwrap();
        tamper(&s, &f);
        let before_canary = tree_hash(&s.canary, &[]);
        let started = Instant::now();
        let r = run_timed(&s.b, &[os("read"), os("f")]);
        let mine = block_file(&s.b, &hello);
        match want {
            Want::Refused => {
                if t.cmd(name, "read", &r, &[2]) {
                    t.check(name, text(&r.stderr).contains(&hello), || {
                        format!("error names no block: {}", text(&r.stderr))
                    });
                }
                t.check(name, fs::symlink_metadata(&mine).is_err(), || "a bad copy was stored".into());
                let m = run_timed(&s.b, &[os("mirror")]);
                t.cmd(name, "mirror", &m, &[1]);
                t.check(name, fs::symlink_metadata(&mine).is_err(), || "mirror stored a bad copy".into());
                t.refused += 1;
            }
            Want::Accepted => {
                if t.cmd(name, "read", &r, &[0]) {
                    t.check(name, r.stdout == HELLO, || "read gave other bytes".into());
                }
                t.check(
                    name,
                    fs::symlink_metadata(&mine).is_ok_and(|m| m.is_file() && !m.file_type().is_symlink()),
                    || "the good copy was not stored as a file".into(),
                );
                t.accepted += 1;
            }
        }
        t.check(name, started.elapsed() < TIMEOUT, || format!("took {:?}", started.elapsed()));
        verify_b(&mut t, &s, name, true);
        // Nothing on b names a bad block; the good record path still reads as before.
        if tree_hash(&s.canary, &[]) != before_canary || s.outside() != before {
            t.outside += 1;
            t.failures.push(format!("{name}: something changed outside the volumes"));
        }
    }
    t.finish("hostile peer, pulled blocks");
}

// ---------------------------------------------------------------------------------------
// 4. Pushing into a hostile peer's volume
// ---------------------------------------------------------------------------------------

fn push_cases() -> Vec<(&'static str, i32, Setup)> {
    let up = |s: &Scene| s.a.join("local/upstream");
    let mine = move |s: &Scene| up(s).join(&s.ub);
    vec![
        (
            "local/upstream is a symlink outside",
            2,
            sc(move |s: &Scene| replace(&up(s), |p| symlink(&s.canary.join("empty"), p))),
        ),
        (
            "local/upstream is a symlink to an etc outside",
            2,
            sc(move |s: &Scene| replace(&up(s), |p| symlink(&s.canary.join("etc"), p))),
        ),
        (
            "<uuid>/ is a symlink outside",
            2,
            sc(move |s: &Scene| {
                fs::create_dir_all(up(s)).unwrap();
                symlink(&s.canary.join("empty"), &mine(s));
            }),
        ),
        (
            "<uuid>/ is a symlink to a dir with updates/",
            2,
            sc(move |s: &Scene| {
                fs::create_dir_all(up(s)).unwrap();
                symlink(&s.canary, &mine(s));
            }),
        ),
        (
            "updates/ is a symlink outside",
            2,
            sc(move |s: &Scene| {
                fs::create_dir_all(mine(s)).unwrap();
                symlink(&s.canary.join("updates"), &mine(s).join("updates"));
            }),
        ),
        (
            "latest is a symlink outside",
            2,
            sc(move |s: &Scene| {
                fs::create_dir_all(mine(s).join("updates")).unwrap();
                symlink(&s.canary.join("secret"), &mine(s).join("updates/latest"));
            }),
        ),
        (
            "latest is a FIFO",
            2,
            sc(move |s: &Scene| {
                fs::create_dir_all(mine(s).join("updates")).unwrap();
                mkfifo(&mine(s).join("updates/latest"));
            }),
        ),
        (
            "latest is a directory",
            2,
            sc(move |s: &Scene| {
                fs::create_dir_all(mine(s).join("updates/latest")).unwrap();
            }),
        ),
        (
            "latest is a hard link to a text file outside",
            2,
            sc(move |s: &Scene| {
                fs::create_dir_all(mine(s).join("updates")).unwrap();
                fs::hard_link(s.canary.join("secret"), mine(s).join("updates/latest")).unwrap();
            }),
        ),
        (
            "latest is a hard link to a one-line file outside",
            0,
            sc(move |s: &Scene| {
                // No complete header: the writer starts the log again (unlinking only its link).
                fs::create_dir_all(mine(s).join("updates")).unwrap();
                fs::hard_link(s.canary.join("oneline"), mine(s).join("updates/latest")).unwrap();
            }),
        ),
        ("the peer's config is a FIFO", 1, sc(|s: &Scene| replace(&s.a.join("local/config"), mkfifo))),
        (
            "the peer's config is a symlink",
            1,
            sc(|s: &Scene| {
                let c = s.a.join("local/config");
                let copy = s.a.join("config.real");
                fs::copy(&c, &copy).unwrap();
                replace(&c, |c| symlink(&copy, c));
            }),
        ),
        (
            "the peer's config is 1 GiB",
            1,
            sc(|s: &Scene| {
                let c = s.a.join("local/config");
                let t = fs::read(&c).unwrap();
                replace(&c, |c| sparse(c, &t, 1 << 30));
            }),
        ),
        ("the peer has no local/upstream", 1, sc(move |s: &Scene| replace(&up(s), |_| {}))),
    ]
}

#[test]
fn hostile_push_targets() {
    let mut t = Tally::default();
    for (i, (name, code, setup)) in push_cases().into_iter().enumerate() {
        let s = Scene::new(700 + i);
        t.cases += 1;
        let before = s.outside();
        let before_canary = tree_hash(&s.canary, &[]);
        let src = s.tmp.path().join("src");
        fs::write(&src, b"from b\n").unwrap();
        let w = run_timed(&s.b, &[os("import"), src.as_os_str(), os("mine")]);
        fs::remove_file(&src).unwrap();
        if !t.cmd(name, "import on b", &w, &[0]) {
            continue;
        }
        setup(&s);
        let p = run_timed(&s.b, &[os("push")]);
        t.cmd(name, "push", &p, &[code]);
        let p2 = run_timed(&s.b, &[os("push")]);
        t.cmd(name, "push again", &p2, &[code]);
        if tree_hash(&s.canary, &[]) != before_canary || s.outside() != before {
            t.outside += 1;
            t.failures.push(format!("{name}: something changed outside the volumes"));
        }
        verify_b(&mut t, &s, name, false);
        if code == 0 {
            // The push went through: a applies it.
            let l = run_timed(&s.a, &[os("ls")]);
            if t.cmd(name, "ls on a", &l, &[0]) {
                t.check(name, text(&l.stdout).contains("mine"), || {
                    format!("a did not get the push: {}", text(&l.stdout))
                });
            }
            t.accepted += 1;
        } else {
            t.refused += 1;
        }
    }
    t.finish("hostile peer, push targets");
}
