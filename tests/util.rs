//! Shared helpers: temp volumes and running the real `globofs` binary.

#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Path of the binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_globofs")
}

/// A temp directory holding one fresh volume at `<tmp>/vol`.
pub struct TestVolume {
    pub tmp: tempfile::TempDir,
    pub dir: PathBuf,
}

impl TestVolume {
    /// `globofs init` with the given extra arguments.
    pub fn new(extra: &[&str]) -> TestVolume {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("vol");
        let out =
            Command::new(bin()).arg("init").arg(&dir).args(["--name", "test"]).args(extra).output().expect("run init");
        assert!(out.status.success(), "init failed: {}", String::from_utf8_lossy(&out.stderr));
        TestVolume { tmp, dir }
    }

    /// A fresh volume whose node is called `name` (conflict files and `log` show it).
    pub fn named(name: &str) -> TestVolume {
        let tmp = tempfile::Builder::new().prefix(&format!("globofs-{name}-")).tempdir().expect("tempdir");
        let dir = tmp.path().join("vol");
        let out = Command::new(bin())
            .arg("init")
            .arg(&dir)
            .args(["--name", name])
            .env_remove("GLOBOFS_VOLUME")
            .output()
            .expect("run init");
        assert!(out.status.success(), "init {name} failed: {}", text(&out.stderr));
        TestVolume { tmp, dir }
    }

    /// A command on this volume (with `-V`), not yet run.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.arg("-V").arg(&self.dir).args(args).env_remove("GLOBOFS_VOLUME");
        c
    }

    /// Runs a command on this volume with `stdin` as input.
    pub fn run_with_input(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut child =
            self.cmd(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
        let mut input = child.stdin.take().expect("stdin");
        let data = stdin.to_vec();
        let feeder = std::thread::spawn(move || {
            let _ = input.write_all(&data);
        });
        let out = child.wait_with_output().expect("wait");
        let _ = feeder.join();
        out
    }

    /// A command on this volume run under `faketime` with the clock moved by `offset`
    /// (`+365d`, `-1d`): what a node whose clock is wrong does. Check [`faketime_missing`]
    /// first.
    pub fn cmd_at(&self, offset: &str, args: &[&str]) -> Command {
        let mut c = Command::new("faketime");
        c.args(["-f", offset, bin()]).arg("-V").arg(&self.dir).args(args).env_remove("GLOBOFS_VOLUME");
        c.env("FAKETIME_NO_CACHE", "1");
        c
    }

    /// Runs a command under a moved clock (see [`TestVolume::cmd_at`]); must succeed.
    /// Returns stdout.
    pub fn ok_at(&self, offset: &str, args: &[&str]) -> Vec<u8> {
        let out = self.cmd_at(offset, args).stdin(Stdio::null()).output().expect("run faketime globofs");
        assert!(out.status.success(), "globofs {args:?} at {offset} failed: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    }

    /// `globofs write PATH` under a moved clock, `data` on stdin; must succeed. Returns the
    /// version id.
    pub fn write_at(&self, offset: &str, path: &str, data: &[u8]) -> String {
        let mut child = self
            .cmd_at(offset, &["write", path])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn faketime");
        child.stdin.take().expect("stdin").write_all(data).expect("write stdin");
        let out = child.wait_with_output().expect("wait");
        assert!(out.status.success(), "write {path} at {offset} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Runs a command on this volume.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).stdin(Stdio::null()).output().expect("run globofs")
    }

    /// Runs a command that must succeed; returns stdout.
    pub fn ok(&self, args: &[&str]) -> Vec<u8> {
        let out = self.run(args);
        assert!(out.status.success(), "globofs {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    }

    /// `globofs write PATH` with `data` on stdin; must succeed. Returns the version id.
    pub fn write(&self, path: &str, data: &[u8]) -> String {
        let out = self.run_with_input(&["write", path], data);
        assert!(out.status.success(), "write {path} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `globofs read SPEC`; must succeed.
    pub fn read(&self, spec: &str) -> Vec<u8> {
        self.ok(&["read", spec])
    }

    /// A scratch directory (for import sources, export targets).
    pub fn scratch(&self, name: &str) -> PathBuf {
        let p = self.tmp.path().join(name);
        std::fs::create_dir_all(&p).expect("mkdir scratch");
        p
    }

    /// Number of block files in the volume.
    pub fn block_count(&self) -> usize {
        walkdir::WalkDir::new(self.dir.join("local/hashes"))
            .into_iter()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_file())
            .count()
    }
}

/// Asserts a failed command: exit code 2, one line on stderr containing `needle`, no panic.
pub fn assert_error(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "expected exit 2, stderr: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "expected one line on stderr, got: {err}");
    assert!(err.contains(needle), "stderr {err:?} does not mention {needle:?}");
    assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "panic: {err}");
}

/// Deterministic pseudo-random bytes.
pub fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    seed |= 1;
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect()
}

/// Recursively compares two directory trees (content, file type, mode); panics on a difference.
pub fn assert_same_tree(a: &Path, b: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let list = |root: &Path| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = walkdir::WalkDir::new(root)
            .min_depth(1)
            .into_iter()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_file() || e.file_type().is_symlink() || e.file_type().is_dir())
            .map(|e| e.path().strip_prefix(root).unwrap().to_path_buf())
            .collect();
        v.sort();
        v
    };
    assert_eq!(list(a), list(b), "trees differ in names");
    for rel in list(a) {
        let (pa, pb) = (a.join(&rel), b.join(&rel));
        let (ma, mb) = (std::fs::symlink_metadata(&pa).unwrap(), std::fs::symlink_metadata(&pb).unwrap());
        assert_eq!(ma.file_type(), mb.file_type(), "{rel:?} type");
        if ma.is_file() {
            assert_eq!(std::fs::read(&pa).unwrap(), std::fs::read(&pb).unwrap(), "{rel:?} content");
            assert_eq!(ma.permissions().mode() & 0o7777, mb.permissions().mode() & 0o7777, "{rel:?} mode");
        } else if ma.file_type().is_symlink() {
            assert_eq!(std::fs::read_link(&pa).unwrap(), std::fs::read_link(&pb).unwrap(), "{rel:?} target");
        }
    }
}

/// Bytes as text, lossily.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Bytes parsed as JSON; panics with the text otherwise.
pub fn json(b: &[u8]) -> serde_json::Value {
    serde_json::from_slice(b).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(b)))
}

/// A temp path as `&str` (temp paths are UTF-8).
pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// splitmix64: small, seedable, good enough to pick sizes, delays and operations.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// A seed from env `var` (to replay a run), else from the clock.
pub fn seed_from_env(var: &str) -> u64 {
    std::env::var(var).ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
    })
}

/// True when env GLOBOFS_LONG=1 asks for the long runs of the reliability tests.
pub fn long_mode() -> bool {
    std::env::var("GLOBOFS_LONG").is_ok_and(|v| v == "1")
}

/// Why tests of wrong clocks cannot run here (no `faketime`, or it does not move the
/// binary's clock), if they cannot.
pub fn faketime_missing() -> Option<String> {
    let out = match Command::new("faketime").args(["-f", "+365d", "date", "+%s"]).output() {
        Ok(o) if o.status.success() => o,
        _ => return Some("faketime is not installed (apt-get install faketime)".into()),
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let shifted: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0);
    if shifted < now + 364 * 86_400 {
        return Some("faketime does not move the clock here".into());
    }
    None
}

// ---------------------------------------------------------------------------------------
// FUSE mounts
// ---------------------------------------------------------------------------------------

/// Why FUSE tests cannot run here (no /dev/fuse, no fusermount3), if they cannot.
pub fn fuse_missing() -> Option<String> {
    if !std::path::Path::new("/dev/fuse").exists() {
        return Some("/dev/fuse is missing".into());
    }
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("fusermount3").is_file()))
        .unwrap_or(false);
    if !found {
        return Some("fusermount3 is not installed (apt-get install fuse3)".into());
    }
    None
}

/// True if `dir` is a mount point (its device differs from its parent's).
pub fn is_mounted(dir: &Path) -> bool {
    let (Ok(a), Ok(b)) = (fs::metadata(dir), fs::metadata(dir.join(".."))) else { return false };
    a.dev() != b.dev()
}

/// A volume mounted by `globofs mount --foreground` in a child process; unmounted on drop.
pub struct Mounted {
    pub dir: PathBuf,
    pub child: Option<Child>,
    pub log: PathBuf,
}

impl Mounted {
    pub fn new(vol: &TestVolume, name: &str) -> Mounted {
        let dir = vol.scratch(name);
        let log = vol.tmp.path().join(format!("{name}.log"));
        let child = vol
            .cmd(&["mount", s(&dir), "--foreground"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .expect("start mount");
        let m = Mounted { dir, child: Some(child), log };
        let t = Instant::now();
        while !is_mounted(&m.dir) {
            assert!(t.elapsed() < Duration::from_secs(10), "mount did not appear: {}", m.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
        m
    }

    pub fn p(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Unmounts with fusermount3 and waits for the process to end by itself.
    pub fn unmount(mut self) -> String {
        let t = Instant::now();
        loop {
            let out = Command::new("fusermount3").arg("-u").arg(&self.dir).output().unwrap();
            if out.status.success() {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(10), "fusermount3 -u failed: {}", text(&out.stderr));
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut child = self.child.take().unwrap();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "mount exited with {status}: {}", self.log_text());
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(10), "mount process did not end after unmount");
            std::thread::sleep(Duration::from_millis(20));
        }
        self.log_text()
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("fusermount3").arg("-uz").arg(&self.dir).output();
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The version ids of `path`, newest first (`log --json`, which must succeed).
pub fn log_ids(v: &TestVolume, path: &str) -> Vec<String> {
    json(&v.ok(&["--json", "log", path]))
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["version"].as_str().unwrap().to_string())
        .collect()
}
