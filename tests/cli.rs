//! The command line as a user meets it: the real `globofs` binary, its stdout, stderr and
//! exit codes (0 ok, 1 problems found, 2 error with one `globofs: ` line on stderr). Covers
//! init, volume discovery, both config forms, write/read/log, every error a user can
//! provoke (unknown paths and versions, corrupt manifests, missing blocks, bad sources,
//! invalid paths, a full disk), odd file names, tree import/export with modes, mtimes,
//! symlinks and special files, the import cache, ls, rm, mv, verify, and concurrent writers.

use crate::util::*;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, FileTimes};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, UNIX_EPOCH};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// A version id that parses but was never made.
const NO_SUCH_VERSION: &str = "1795263786.000000000-00000000-00000000";

/// A fixed past time for source files (2020-09-13), so the import cache trusts them.
const PAST: u64 = 1_600_000_000;

/// The binary without any volume selected (no `-V`, no `GLOBOFS_VOLUME`).
fn bare() -> Command {
    let mut c = Command::new(bin());
    c.env_remove("GLOBOFS_VOLUME").stdin(Stdio::null());
    c
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn lines(b: &[u8]) -> Vec<String> {
    text(b).lines().map(str::to_string).collect()
}

fn json(b: &[u8]) -> serde_json::Value {
    serde_json::from_slice(b).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(b)))
}

fn assert_ok(out: &Output, what: &str) {
    assert!(out.status.success(), "{what} exited {:?}: {}", out.status.code(), text(&out.stderr));
}

/// Runs a command on `v` with arbitrary (non-UTF-8) arguments and `input` on stdin.
fn run_os(v: &TestVolume, args: &[&OsStr], input: &[u8]) -> Output {
    let mut child = v
        .cmd(&[])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn globofs");
    let mut stdin = child.stdin.take().expect("stdin");
    let data = input.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait");
    let _ = feeder.join();
    out
}

fn os(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

/// `PATH@ID` as an argument.
fn at(path: &str, id: &str) -> String {
    format!("{path}@{id}")
}

/// True for ids of the form `<10-digit sec>.<9-digit nsec>-<8 hex>-<8 hex>`.
fn is_version_id(s: &str) -> bool {
    let Some((sec, rest)) = s.split_once('.') else {
        return false;
    };
    let parts: Vec<&str> = rest.split('-').collect();
    let digits = |t: &str, n: usize| t.len() == n && t.bytes().all(|c| c.is_ascii_digit());
    let hex = |t: &str| t.len() == 8 && t.bytes().all(|c| c.is_ascii_hexdigit());
    digits(sec, 10) && parts.len() == 3 && digits(parts[0], 9) && hex(parts[1]) && hex(parts[2])
}

/// Block files of the volume (temp files excluded), sorted.
fn block_files(v: &TestVolume) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = walkdir::WalkDir::new(v.dir.join("local/hashes"))
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file() && !e.file_name().as_bytes().starts_with(b".tmp-"))
        .map(|e| e.path().to_path_buf())
        .collect();
    out.sort();
    out
}

/// The block id (64 hex digits) a block file `ab/cd/<rest>.gz` is named by.
fn block_hex(p: &Path) -> String {
    let rest = p.file_name().unwrap().to_str().unwrap().strip_suffix(".gz").unwrap();
    let cd = p.parent().unwrap();
    let ab = cd.parent().unwrap();
    let hex =
        format!("{}{}{rest}", ab.file_name().unwrap().to_str().unwrap(), cd.file_name().unwrap().to_str().unwrap());
    assert_eq!(hex.len(), 64, "block file name {p:?}");
    hex
}

/// Sets the modification time of a file or directory (never used on symlinks).
fn set_mtime(p: &Path, sec: u64, nsec: u32) {
    let f = File::open(p).unwrap_or_else(|e| panic!("open {p:?}: {e}"));
    f.set_times(FileTimes::new().set_modified(UNIX_EPOCH + Duration::new(sec, nsec)))
        .unwrap_or_else(|e| panic!("set mtime of {p:?}: {e}"));
}

fn mtime(p: &Path) -> (i64, i64) {
    let m = fs::symlink_metadata(p).unwrap();
    (m.mtime(), m.mtime_nsec())
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

fn write_file(p: &Path, data: &[u8], perm: u32) {
    if let Some(d) = p.parent() {
        fs::create_dir_all(d).unwrap();
    }
    fs::write(p, data).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(perm)).unwrap();
}

fn mkfifo(p: &Path) {
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o644) };
    assert_eq!(rc, 0, "mkfifo {p:?}: {}", std::io::Error::last_os_error());
}

/// Entries (names relative to `dir`) of `local/root/` of a volume: what has ever been
/// committed at the top level.
fn root_entries(v: &TestVolume) -> Vec<OsString> {
    let mut n: Vec<OsString> =
        fs::read_dir(v.dir.join("local/root")).unwrap().map(|e| e.unwrap().file_name()).collect();
    n.sort();
    n
}

/// The entries of `log --json PATH`, newest first.
fn log_json(v: &TestVolume, path: &str) -> Vec<serde_json::Value> {
    json(&v.ok(&["--json", "log", path])).as_array().expect("log --json is a list").clone()
}

/// A failed read of a path that was removed: exit 2, one line naming the path and saying it
/// is gone (either as "no such file" or as "was removed").
fn assert_removed(out: &Output, path: &str) {
    assert_error(out, &format!("{path}: "));
    let err = text(&out.stderr);
    assert!(err.contains("no such file") || err.contains("was removed"), "{err}");
}

/// Waits for `child` at most `limit`; kills it and returns `None` if it is still running.
fn wait_timeout(mut child: Child, limit: Duration) -> Option<Output> {
    let start = Instant::now();
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return Some(child.wait_with_output().expect("wait"));
        }
        if start.elapsed() >= limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A small tmpfs mounted for one test, unmounted on drop.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` at `dir`; `Err` says why not (not root, no permission).
    fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not running as root".into());
        }
        fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!("mount failed: {}", text(&out.stderr).trim()));
        }
        Ok(Tmpfs { dir: dir.to_path_buf() })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).output();
    }
}

// ---------------------------------------------------------------------------------------
// init
// ---------------------------------------------------------------------------------------

#[test]
fn init_creates_config_root_hashes_upstream_and_readme() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("not/yet/there");
    let out = bare().arg("init").arg(&dir).args(["--name", "alpha"]).output().unwrap();
    assert_ok(&out, "init");
    assert!(out.stderr.is_empty(), "init wrote to stderr: {}", text(&out.stderr));
    let msg = text(&out.stdout);
    assert!(msg.contains("initialized volume") && msg.contains("alpha"), "{msg}");
    for d in ["local/root", "local/hashes", "local/upstream"] {
        assert!(dir.join(d).is_dir(), "{d} missing");
    }
    let readme = fs::read_to_string(dir.join("README.txt")).expect("README.txt");
    assert!(readme.contains("globofs volume"), "{readme}");

    let cfg: toml::Table = fs::read_to_string(dir.join("local/config")).unwrap().parse().expect("config is TOML");
    let uuid = cfg["uuid"].as_str().expect("uuid");
    assert!(uuid::Uuid::parse_str(uuid).is_ok(), "uuid {uuid:?}");
    assert!(msg.contains(uuid), "init output does not name the uuid: {msg}");
    assert_eq!(cfg["name"].as_str(), Some("alpha"));
    assert_eq!(cfg["format"].as_integer(), Some(1));
    let ch = cfg["chunking"].as_table().expect("[chunking]");
    assert_eq!(ch["method"].as_str(), Some("cdc"));
    assert_eq!(ch["avg"].as_integer(), Some(128 << 10));

    // A second volume gets a different uuid; --json reports it.
    let dir2 = tmp.path().join("second");
    let out = bare().args(["--json", "init"]).arg(&dir2).args(["--name", "beta"]).output().unwrap();
    assert_ok(&out, "init --json");
    let j = json(&out.stdout);
    let cfg2: toml::Table = fs::read_to_string(dir2.join("local/config")).unwrap().parse().unwrap();
    assert_eq!(j["uuid"].as_str(), cfg2["uuid"].as_str());
    assert_eq!(j["name"], "beta");
    assert_ne!(cfg2["uuid"].as_str(), Some(uuid), "two volumes share a uuid");
}

#[test]
fn init_refuses_a_directory_that_is_already_a_volume() {
    let v = TestVolume::new(&[]);
    let before = fs::read(v.dir.join("local/config")).unwrap();
    v.write("keep", b"data");
    for extra in [&[][..], &["--chunking", "fixed", "--block-size", "64K"][..]] {
        let out = bare().arg("init").arg(&v.dir).args(extra).output().unwrap();
        assert_error(&out, "already a globofs volume");
        assert!(text(&out.stderr).contains(v.dir.to_str().unwrap()), "{}", text(&out.stderr));
        assert!(out.stdout.is_empty());
    }
    assert_eq!(fs::read(v.dir.join("local/config")).unwrap(), before, "config changed");
    assert_eq!(v.read("keep"), b"data");
}

#[test]
fn init_fixed_chunking_and_block_size_are_recorded_and_used() {
    let v = TestVolume::new(&["--chunking", "fixed", "--block-size", "64K"]);
    let cfg: toml::Table = fs::read_to_string(v.dir.join("local/config")).unwrap().parse().unwrap();
    let ch = cfg["chunking"].as_table().expect("[chunking]");
    assert_eq!(ch["method"].as_str(), Some("fixed"));
    for k in ["min", "avg", "max"] {
        assert_eq!(ch[k].as_integer(), Some(65536), "chunking.{k}");
    }
    // 200 KiB = 3 × 64 KiB + 8 KiB: four blocks, whatever the content.
    let data = noise(200 << 10, 7);
    v.write("f", &data);
    assert_eq!(block_files(&v).len(), 4);
    assert_eq!(log_json(&v, "f")[0]["blocks"], 4);
    assert_eq!(v.read("f"), data);
}

#[test]
fn init_with_bad_block_size_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    for (size, needle) in
        [("12Q", "unknown unit"), ("lots", "not a size"), ("1K", "out of range"), ("64MiB", "out of range")]
    {
        let dir = tmp.path().join(format!("v-{size}"));
        let out = bare().arg("init").arg(&dir).args(["--block-size", size]).output().unwrap();
        assert_error(&out, needle);
        assert!(!dir.join("local/config").exists(), "{size}: a volume was created anyway");
    }
}

// ---------------------------------------------------------------------------------------
// Finding the volume, config forms
// ---------------------------------------------------------------------------------------

#[test]
fn volume_is_found_by_flag_then_env_then_walking_up() {
    let one = TestVolume::new(&[]);
    let two = TestVolume::new(&[]);
    one.write("who", b"one");
    two.write("who", b"two");
    let deep = one.dir.join("work/deeper");
    fs::create_dir_all(&deep).unwrap();
    let read = |c: &mut Command| -> String {
        let out = c.args(["read", "who"]).output().unwrap();
        assert_ok(&out, "read who");
        text(&out.stdout)
    };
    // -V beats GLOBOFS_VOLUME and the working directory.
    assert_eq!(read(bare().arg("-V").arg(&one.dir).env("GLOBOFS_VOLUME", &two.dir).current_dir(&deep)), "one");
    assert_eq!(read(bare().arg("--volume").arg(&two.dir).current_dir(&deep)), "two");
    // GLOBOFS_VOLUME beats the working directory.
    assert_eq!(read(bare().env("GLOBOFS_VOLUME", &two.dir).current_dir(&deep)), "two");
    // Walking up from a subdirectory, and from the volume itself.
    assert_eq!(read(bare().current_dir(&deep)), "one");
    assert_eq!(read(bare().current_dir(&one.dir)), "one");
    assert_eq!(read(bare().current_dir(two.dir.join("local/root"))), "two");
}

#[test]
fn no_volume_anywhere_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let sub = tmp.path().join("a/b");
    fs::create_dir_all(&sub).unwrap();
    let out = bare().arg("ls").current_dir(&sub).output().unwrap();
    assert_error(&out, "no globofs volume");
    // An explicit directory that is not a volume says so, by -V or by the environment.
    let out = bare().arg("-V").arg(&sub).arg("ls").output().unwrap();
    assert_error(&out, "is not a globofs volume");
    let out = bare().env("GLOBOFS_VOLUME", &sub).arg("ls").output().unwrap();
    assert_error(&out, "is not a globofs volume");
    assert!(text(&out.stderr).contains(sub.to_str().unwrap()));
}

#[test]
fn seed_key_value_config_is_accepted() {
    let v = TestVolume::new(&[]);
    let cfg_path = v.dir.join("local/config");
    let cfg: toml::Table = fs::read_to_string(&cfg_path).unwrap().parse().unwrap();
    let uuid = cfg["uuid"].as_str().unwrap().to_string();
    let seed = format!(
        "# globofs volume, seed form\nuuid={uuid}\npath={}/ #So that we can just specify a config\ncacheonly=no\ncachetime=30m\n",
        v.dir.display()
    );
    fs::write(&cfg_path, &seed).unwrap();
    let data = noise(300 << 10, 3);
    let id = v.write("seeded/file", &data);
    assert!(is_version_id(&id), "{id}");
    assert_eq!(v.read("seeded/file"), data);
    assert_eq!(lines(&v.ok(&["ls"])), ["seeded/"]);
    let log = log_json(&v, "seeded/file");
    assert_eq!(log[0]["origin"].as_str(), Some(uuid.as_str()), "versions must carry the config's uuid");
    assert!(id.contains(&uuid[..8]), "version id {id} does not carry the node's uuid prefix");
    let out = v.run(&["verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert_eq!(fs::read_to_string(&cfg_path).unwrap(), seed, "commands rewrote the config");
}

#[test]
fn unreadable_config_is_a_one_line_error_naming_it() {
    let v = TestVolume::new(&[]);
    let cfg_path = v.dir.join("local/config");
    for bad in
        ["uuid=not-a-uuid\n", "this is not config\n", "uuid=68d25a11-a34a-4bbb-a29e-c9bd06ff8c53\ncacheonly=maybe\n"]
    {
        fs::write(&cfg_path, bad).unwrap();
        let out = v.run(&["ls"]);
        assert_error(&out, "config");
        assert!(text(&out.stderr).contains(cfg_path.to_str().unwrap()), "{}", text(&out.stderr));
    }
}

// ---------------------------------------------------------------------------------------
// write / read / log
// ---------------------------------------------------------------------------------------

#[test]
fn write_then_read_is_byte_identical() {
    let v = TestVolume::new(&[]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("hello.txt", b"hello\n".to_vec()),
        ("bin/nul", b"\0\0\x01\xff\0".to_vec()),
        ("big/noise.bin", noise(3 << 20, 42)),
    ];
    for (path, data) in &cases {
        let out = v.run_with_input(&["write", path], data);
        assert_ok(&out, path);
        let id = text(&out.stdout).trim().to_string();
        assert!(is_version_id(&id), "write printed {id:?}");
        assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
        let got = v.read(path);
        assert!(got == *data, "{path}: {} bytes read, {} written", got.len(), data.len());
        let log = log_json(&v, path);
        assert_eq!(log.len(), 1);
        assert_eq!(log[0]["version"].as_str(), Some(id.as_str()));
        assert_eq!(log[0]["size"].as_u64(), Some(data.len() as u64));
    }
    // A big file is several blocks.
    assert!(log_json(&v, "big/noise.bin")[0]["blocks"].as_u64().unwrap() > 3);
    // --json write reports the version.
    let out = v.run_with_input(&["--json", "write", "hello.txt"], b"again");
    assert_ok(&out, "write --json");
    let j = json(&out.stdout);
    assert_eq!(j["path"], "hello.txt");
    assert_eq!(j["size"], 5);
    assert!(is_version_id(j["version"].as_str().unwrap()));
}

#[test]
fn second_write_is_a_second_version_and_log_lists_newest_first() {
    let v = TestVolume::new(&[]);
    let id1 = v.write("doc/notes.txt", b"first version\n");
    let id2 = v.write("doc/notes.txt", b"second, longer version\n");
    assert_ne!(id1, id2);
    assert!(id1 < id2, "ids must sort by creation: {id1} !< {id2}");
    assert_eq!(v.read("doc/notes.txt"), b"second, longer version\n");
    assert_eq!(v.read(&at("doc/notes.txt", &id1)), b"first version\n");
    assert_eq!(v.read(&at("doc/notes.txt", &id2)), b"second, longer version\n");

    let log = lines(&v.ok(&["log", "doc/notes.txt"]));
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(log[0].starts_with(&id2), "{log:?}");
    assert!(log[1].starts_with(&id1), "{log:?}");
    assert!(log[0].contains("head"), "{log:?}");
    assert!(!log[1].contains("head"), "{log:?}");
    assert!(log[0].contains(&format!("parents {id1}")), "{log:?}");
    assert!(log[0].contains(" file ") && log[0].contains(" 23 "), "{log:?}");

    let j = log_json(&v, "doc/notes.txt");
    assert_eq!(j.len(), 2);
    assert_eq!(j[0]["version"].as_str(), Some(id2.as_str()));
    assert_eq!(j[1]["version"].as_str(), Some(id1.as_str()));
    assert_eq!(j[0]["head"], true);
    assert_eq!(j[1]["head"], false);
    assert_eq!(j[0]["parents"], serde_json::json!([id1]));
    assert_eq!(j[1]["parents"], serde_json::json!([]));
    assert_eq!(j[0]["kind"], "file");
    assert_eq!(j[0]["path"], "doc/notes.txt");
    assert_eq!(j[0]["size"], 23);
    assert_eq!(j[1]["size"], 14);
}

#[test]
fn read_into_a_closed_pipe_is_quiet() {
    let v = TestVolume::new(&[]);
    v.write("big", &noise(4 << 20, 9));
    let mut child = v.cmd(&["read", "big"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut first = [0u8; 10];
    child.stdout.as_mut().unwrap().read_exact(&mut first).unwrap();
    drop(child.stdout.take());
    let out = wait_timeout(child, Duration::from_secs(60)).expect("read hung after its reader went away");
    assert!(out.stderr.is_empty(), "stderr: {}", text(&out.stderr));
}

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

#[test]
fn unknown_path_is_an_error_for_read_log_rm_export_ls_mv() {
    let v = TestVolume::new(&[]);
    v.write("present", b"x");
    let dest = v.tmp.path().join("exported");
    let d = dest.to_str().unwrap();
    for args in [
        &["read", "nope"][..],
        &["read", "dir/nope"],
        &["log", "nope"],
        &["rm", "nope"],
        &["export", "nope", d],
        &["ls", "nope"],
        &["mv", "nope", "elsewhere"],
    ] {
        let out = v.run(args);
        assert_error(&out, "nope");
        assert!(text(&out.stderr).contains("no such file"), "{args:?}: {}", text(&out.stderr));
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    assert!(!dest.exists(), "export of a missing path created its destination");
    assert_eq!(v.read("present"), b"x");
    // A directory is not readable as a file.
    v.write("dir/inner", b"y");
    assert_error(&v.run(&["read", "dir"]), "dir: is a directory");
}

#[test]
fn unknown_version_is_an_error_naming_path_and_version() {
    let v = TestVolume::new(&[]);
    v.write("f", b"content");
    let dest = v.tmp.path().join("out");
    for args in [
        vec!["read".to_string(), at("f", NO_SUCH_VERSION)],
        vec!["export".to_string(), at("f", NO_SUCH_VERSION), dest.to_str().unwrap().to_string()],
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = v.run(&args);
        assert_error(&out, NO_SUCH_VERSION);
        let err = text(&out.stderr);
        assert!(err.starts_with("globofs: f: no version"), "{err}");
    }
    assert!(!dest.exists());
}

#[test]
fn corrupt_manifest_is_named_on_read_and_by_verify() {
    let v = TestVolume::new(&[]);
    v.write("dir/file", b"old");
    v.write("dir/file", b"new");
    let latest = v.dir.join("local/root/dir/file/versions/latest");
    assert!(latest.is_file());
    fs::write(&latest, b"garbage, not a manifest\n").unwrap();
    let out = v.run(&["read", "dir/file"]);
    assert_error(&out, "corrupt manifest");
    assert!(text(&out.stderr).contains(latest.to_str().unwrap()), "{}", text(&out.stderr));
    let out = v.run(&["verify"]);
    assert_eq!(out.status.code(), Some(1), "verify: {}", text(&out.stdout));
    assert!(text(&out.stdout).contains("corrupt-manifest"), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains(latest.to_str().unwrap()));
}

#[test]
fn old_versions_stay_readable_when_latest_is_corrupt() {
    let v = TestVolume::new(&[]);
    let old = v.write("dir/file", b"old");
    v.write("dir/file", b"new");
    fs::write(v.dir.join("local/root/dir/file/versions/latest"), b"garbage\n").unwrap();
    let out = v.run(&["read", &at("dir/file", &old)]);
    assert_ok(&out, "read of an intact archived version");
    assert_eq!(out.stdout, b"old");
}

#[test]
fn missing_block_is_named_on_read_export_and_verify() {
    let v = TestVolume::new(&[]);
    v.write("f", &noise(5000, 1));
    v.write("other", b"unrelated");
    let blocks = block_files(&v);
    assert_eq!(blocks.len(), 2);
    let manifest = fs::read_to_string(v.dir.join("local/root/f/versions/latest")).unwrap();
    let victim = blocks.iter().find(|b| manifest.contains(&block_hex(b))).expect("the block of f").clone();
    let hex = block_hex(&victim);
    fs::remove_file(&victim).unwrap();

    let out = v.run(&["read", "f"]);
    assert_error(&out, &hex);
    let err = text(&out.stderr);
    assert!(err.starts_with("globofs: f: block") && err.contains("missing"), "{err}");
    assert!(out.stdout.is_empty(), "read printed part of a file whose block is missing");

    let dest = v.tmp.path().join("f.out");
    let out = v.run(&["export", "f", dest.to_str().unwrap()]);
    assert_error(&out, &hex);
    assert!(!dest.exists(), "export left a half-written file");

    let out = v.run(&["verify"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("missing-block") && text(&out.stdout).contains(&hex), "{}", text(&out.stdout));
    assert_eq!(v.read("other"), b"unrelated");
}

#[test]
fn import_of_a_missing_or_dangling_source_is_an_error_naming_it() {
    let v = TestVolume::new(&[]);
    let scratch = v.scratch("src");
    let missing = scratch.join("does-not-exist");
    let out = v.run(&["import", missing.to_str().unwrap(), "dest"]);
    assert_error(&out, missing.to_str().unwrap());
    assert!(text(&out.stderr).contains("No such file"), "{}", text(&out.stderr));
    // A source that is a dangling symlink cannot be read either.
    let dangling = scratch.join("dangling");
    std::os::unix::fs::symlink(scratch.join("gone"), &dangling).unwrap();
    let out = v.run(&["import", dangling.to_str().unwrap(), "dest2"]);
    assert_error(&out, dangling.to_str().unwrap());
    assert!(root_entries(&v).is_empty(), "failed imports committed {:?}", root_entries(&v));
    assert_eq!(v.block_count(), 0);
}

#[test]
fn import_of_a_missing_source_without_dest_says_it_does_not_exist() {
    let v = TestVolume::new(&[]);
    let missing = v.tmp.path().join("typo");
    let out = v.run(&["import", missing.to_str().unwrap()]);
    assert_error(&out, missing.to_str().unwrap());
    assert!(text(&out.stderr).contains("No such file"), "{}", text(&out.stderr));
}

#[test]
fn invalid_paths_are_refused_and_nothing_is_created() {
    let v = TestVolume::new(&[]);
    let src = v.scratch("src");
    fs::write(src.join("f"), b"data").unwrap();
    for bad in ["../x", "/abs", "/etc/passwd", "a//b", ".globofs/x", "a/../b", "./x", "a/./b", ".."] {
        let out = v.run_with_input(&["write", bad], b"data");
        assert_error(&out, "invalid path");
        assert!(text(&out.stderr).contains(&format!("{bad:?}")), "{bad}: {}", text(&out.stderr));
        let out = v.run(&["import", src.to_str().unwrap(), bad]);
        assert_error(&out, "invalid path");
    }
    // The root itself is not a file.
    for root in ["", "."] {
        assert_error(&v.run_with_input(&["write", root], b"data"), "inside the volume");
    }
    assert!(root_entries(&v).is_empty(), "refused paths created {:?}", root_entries(&v));
    assert_eq!(v.block_count(), 0);
    assert!(!v.tmp.path().join("x").exists() && !v.tmp.path().join("abs").exists());
    // `.globofs` below the top and `..` inside a name are fine.
    v.write("sub/.globofs", b"ok");
    v.write("a..b", b"ok");
    assert_eq!(v.read("sub/.globofs"), b"ok");
}

#[test]
fn writes_that_contradict_the_tree_are_refused() {
    let v = TestVolume::new(&[]);
    v.write("file", b"a file");
    v.write("dir/inner", b"inside");
    let out = v.run_with_input(&["write", "file/child"], b"x");
    assert_error(&out, "file: is not a directory");
    let out = v.run_with_input(&["write", "dir"], b"x");
    assert_error(&out, "dir: is a directory");
    assert_eq!(v.read("file"), b"a file");
    assert_eq!(v.read("dir/inner"), b"inside");
    assert_eq!(log_json(&v, "file").len(), 1);
}

/// Fills the tmpfs with a file so that nothing more fits.
fn fill(dir: &Path) -> PathBuf {
    let p = dir.join("filler");
    let mut f = File::create(&p).unwrap();
    let chunk = vec![0u8; 64 << 10];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.write_all(&[0u8; 512]);
    p
}

#[test]
fn disk_full_is_a_clear_error_and_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = match Tmpfs::mount(&tmp.path().join("mnt"), "2m") {
        Ok(m) => m,
        Err(why) => {
            eprintln!("skipping disk-full test: {why}");
            return;
        }
    };
    let vol = mnt.dir.join("vol");
    assert_ok(&bare().arg("init").arg(&vol).output().unwrap(), "init on tmpfs");
    let write = |path: &str, data: &[u8]| -> Option<Output> {
        let mut child = bare()
            .arg("-V")
            .arg(&vol)
            .args(["write", path])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let data = data.to_vec();
        let feeder = std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
        let out = wait_timeout(child, Duration::from_secs(60));
        let _ = feeder.join();
        out
    };
    let kept = write("kept", b"written before the disk filled").expect("write hung");
    assert_ok(&kept, "small write");
    let filler = fill(&mnt.dir);
    // A file of a few blocks on a full disk.
    let out = write("f", &noise(150 << 10, 5)).expect("write on a full disk hung");
    assert_error(&out, "No space left");
    fs::remove_file(&filler).unwrap();
    let run = |args: &[&str]| bare().arg("-V").arg(&vol).args(args).output().unwrap();
    assert_error(&run(&["read", "f"]), "no such file");
    let out = run(&["read", "kept"]);
    assert_ok(&out, "read kept");
    assert_eq!(out.stdout, b"written before the disk filled");
    let out = run(&["verify"]);
    assert_eq!(out.status.code(), Some(0), "verify after ENOSPC: {}", text(&out.stdout));
    // Once there is room again, the same write succeeds.
    let data = noise(150 << 10, 5);
    assert_ok(&write("f", &data).expect("write hung"), "write after freeing space");
    assert_eq!(run(&["read", "f"]).stdout, data);
}

#[test]
fn disk_full_during_a_large_write_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = match Tmpfs::mount(&tmp.path().join("mnt"), "2m") {
        Ok(m) => m,
        Err(why) => {
            eprintln!("skipping disk-full test: {why}");
            return;
        }
    };
    let vol = mnt.dir.join("vol");
    assert_ok(&bare().arg("init").arg(&vol).output().unwrap(), "init on tmpfs");
    let mut child = bare()
        .arg("-V")
        .arg(&vol)
        .args(["write", "big"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&noise(8 << 20, 11));
    });
    let out = wait_timeout(child, Duration::from_secs(60));
    let _ = feeder.join();
    let out = out.expect("write of 8 MiB onto a 2 MiB file system hung (killed after 60 s)");
    assert_error(&out, "No space left");
    let out = bare().arg("-V").arg(&vol).arg("verify").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "verify after ENOSPC: {}", text(&out.stdout));
}

// ---------------------------------------------------------------------------------------
// Odd names
// ---------------------------------------------------------------------------------------

/// Names that are awkward on a command line and in text formats.
fn odd_names() -> Vec<Vec<u8>> {
    vec![
        b"with space.txt".to_vec(),
        b"new\nline".to_vec(),
        b"caf\xe9 latin-1".to_vec(),
        b"\xff\xfe".to_vec(),
        b"tab\there".to_vec(),
        b"100%".to_vec(),
        b"versions".to_vec(),
        b"at@sign".to_vec(),
        "日本語 ünïcode".as_bytes().to_vec(),
    ]
}

#[test]
fn odd_names_round_trip_through_write_read_log_and_ls() {
    let v = TestVolume::new(&[]);
    let mut want = BTreeMap::new();
    for (i, name) in odd_names().into_iter().enumerate() {
        let mut path = b"dir with space/".to_vec();
        path.extend_from_slice(&name);
        let data = format!("content {i}\n").into_bytes();
        let out = run_os(&v, &[os(b"write"), os(&path)], &data);
        assert_ok(&out, &format!("write {:?}", text(&path)));
        want.insert(path, data);
    }
    for (path, data) in &want {
        let out = run_os(&v, &[os(b"read"), os(path)], b"");
        assert_ok(&out, &format!("read {:?}", text(path)));
        assert_eq!(&out.stdout, data, "{:?}", text(path));
        let out = run_os(&v, &[os(b"log"), os(path)], b"");
        assert_ok(&out, &format!("log {:?}", text(path)));
        assert_eq!(text(&out.stdout).lines().count(), 1, "log of {:?}: {}", text(path), text(&out.stdout));
    }
    let listed = json(&v.ok(&["--json", "ls", "dir with space"]));
    assert_eq!(listed.as_array().unwrap().len(), want.len(), "{listed}");
    // Versions of the odd names are readable by id too.
    let path = b"dir with space/new\nline";
    let out = run_os(&v, &[os(b"--json"), os(b"log"), os(path)], b"");
    let id = json(&out.stdout)[0]["version"].as_str().unwrap().to_string();
    let mut spec = path.to_vec();
    spec.push(b'@');
    spec.extend_from_slice(id.as_bytes());
    let out = run_os(&v, &[os(b"read"), os(&spec)], b"");
    assert_ok(&out, "read odd@id");
    assert_eq!(out.stdout, want[&path.to_vec()]);
    let out = v.run(&["verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
}

#[test]
fn odd_names_round_trip_through_import_and_export() {
    let v = TestVolume::new(&[]);
    let src = v.scratch("src");
    for (i, name) in odd_names().into_iter().enumerate() {
        let mut sub = b"sub dir \xe9/".to_vec();
        sub.extend_from_slice(&name);
        write_file(&src.join(os(&name)), format!("top {i}").as_bytes(), 0o644);
        write_file(&src.join(os(&sub)), &noise(100 + i, i as u64), 0o600);
    }
    std::os::unix::fs::symlink(os(b"new\nline"), src.join("link to odd")).unwrap();
    let out = v.run(&["import", src.to_str().unwrap(), "odd"]);
    assert_ok(&out, "import");
    let dest = v.tmp.path().join("exported");
    let out = v.run(&["export", "odd", dest.to_str().unwrap()]);
    assert_ok(&out, "export");
    assert_same_tree(&src, &dest);
    // One file read directly by its raw name.
    let out = run_os(&v, &[os(b"read"), os(b"odd/sub dir \xe9/\xff\xfe")], b"");
    assert_ok(&out, "read raw name");
    assert_eq!(out.stdout, fs::read(src.join(os(b"sub dir \xe9/\xff\xfe"))).unwrap());
}

// ---------------------------------------------------------------------------------------
// Trees: import / export
// ---------------------------------------------------------------------------------------

/// A small source tree: files with modes 0644/0755/0600, nested and empty directories, a
/// relative and a dangling symlink, a FIFO. File and directory mtimes are fixed past times
/// (all distinct). Returns the number of regular files.
fn make_tree(root: &Path) -> usize {
    write_file(&root.join("top.txt"), b"top\n", 0o644);
    write_file(&root.join("run.sh"), b"#!/bin/sh\necho hi\n", 0o755);
    write_file(&root.join("secret"), &noise(5000, 2), 0o600);
    write_file(&root.join("nested/mid.txt"), b"middle\n", 0o644);
    write_file(&root.join("nested/deeper/leaf.bin"), &noise(300 << 10, 3), 0o640);
    write_file(&root.join("nested/deeper/empty-file"), b"", 0o444);
    fs::create_dir_all(root.join("empty")).unwrap();
    fs::set_permissions(root.join("empty"), fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink("nested/mid.txt", root.join("link")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", root.join("nested/dangling")).unwrap();
    mkfifo(&root.join("fifo"));
    let files = ["top.txt", "run.sh", "secret", "nested/mid.txt", "nested/deeper/leaf.bin", "nested/deeper/empty-file"];
    for (i, f) in files.iter().enumerate() {
        set_mtime(&root.join(f), PAST + i as u64 * 1000, 123_456_789 + i as u32);
    }
    // Directories last, deepest first (creating their content moved their mtimes).
    for (i, d) in ["nested/deeper", "nested", "empty", ""].iter().enumerate() {
        set_mtime(&root.join(d), PAST - 1000 * (i as u64 + 1), 5 + i as u32);
    }
    files.len()
}

#[test]
fn import_then_export_restores_content_modes_mtimes_symlinks() {
    let v = TestVolume::new(&[]);
    let src = v.tmp.path().join("tree");
    let nfiles = make_tree(&src);
    let out = v.run(&["import", src.to_str().unwrap(), "data"]);
    assert_ok(&out, "import");
    let err = text(&out.stderr);
    let fifo = src.join("fifo");
    assert!(
        err.contains("warning") && err.contains("special file") && err.contains(fifo.to_str().unwrap()),
        "no warning about the FIFO: {err}"
    );
    assert!(err.lines().all(|l| l.starts_with("globofs: warning: ")), "unexpected stderr: {err}");
    // 6 files, 2 symlinks, 4 directories (the top one included).
    assert!(text(&out.stdout).contains("imported data: 12 new versions"), "{}", text(&out.stdout));
    assert_error(&v.run(&["read", "data/fifo"]), "no such file");

    let ls = text(&v.ok(&["ls", "-l", "data"]));
    let link = ls.lines().find(|l| l.contains(" link")).expect("link listed");
    assert!(link.starts_with('l') && link.ends_with("link -> nested/mid.txt"), "{link}");
    let run = ls.lines().find(|l| l.ends_with(" run.sh")).expect("run.sh listed");
    assert!(run.starts_with("-rwxr-xr-x"), "{run}");
    let secret = ls.lines().find(|l| l.ends_with(" secret")).expect("secret listed");
    assert!(secret.starts_with("-rw-------") && secret.contains(" 5000 "), "{secret}");
    let empty = ls.lines().find(|l| l.contains(" empty/")).expect("empty dir listed");
    assert!(empty.starts_with("drwx------"), "{empty}");

    let dest = v.tmp.path().join("restored");
    let out = v.run(&["--json", "export", "data", dest.to_str().unwrap()]);
    assert_ok(&out, "export");
    let stats = json(&out.stdout);
    assert_eq!(stats["files"], nfiles);
    assert_eq!(stats["symlinks"], 2);
    assert_same_tree(&src, &dest);
    for e in walkdir::WalkDir::new(&src).into_iter().map(|e| e.unwrap()) {
        let rel = e.path().strip_prefix(&src).unwrap();
        let there = dest.join(rel);
        let t = e.file_type();
        if t.is_file() || t.is_dir() {
            assert_eq!(mtime(&there), mtime(e.path()), "mtime of {rel:?}");
            assert_eq!(mode(&there), mode(e.path()), "mode of {rel:?}");
        }
    }
    assert_eq!(fs::read_link(dest.join("nested/dangling")).unwrap(), Path::new("/nonexistent/target"));

    // Export of one file, into an existing directory, keeps its name, mode and mtime.
    let into = v.scratch("into");
    assert_ok(&v.run(&["export", "data/run.sh", into.to_str().unwrap()]), "export file");
    assert_eq!(fs::read(into.join("run.sh")).unwrap(), b"#!/bin/sh\necho hi\n");
    assert_eq!(mode(&into.join("run.sh")), 0o755);
    assert_eq!(mtime(&into.join("run.sh")), mtime(&src.join("run.sh")));
}

#[test]
fn reimport_of_an_unchanged_tree_skips_files_unread() {
    let v = TestVolume::new(&[]);
    let src = v.scratch("src");
    let files = ["a", "b.txt", "sub/c", "sub/d.bin", "sub/deeper/e"];
    for (i, f) in files.iter().enumerate() {
        write_file(&src.join(f), &noise(1000 + 5000 * i, i as u64), 0o644);
        set_mtime(&src.join(f), PAST + i as u64, 0);
    }
    for d in ["sub/deeper", "sub", ""] {
        set_mtime(&src.join(d), PAST - 50, 0);
    }
    let entries = files.len() + 3;
    let import = |v: &TestVolume| json(&v.ok(&["--json", "import", src.to_str().unwrap(), "t"]));
    let first = import(&v);
    assert_eq!(first["committed"], entries, "{first}");
    assert_eq!(first["cached"], 0);
    let blocks = v.block_count();

    let second = import(&v);
    // Every file is skipped unread (directories may be skipped too, or found unchanged).
    assert!(second["cached"].as_u64().unwrap() >= files.len() as u64, "{second}");
    assert_eq!(second["committed"], 0, "{second}");
    assert_eq!(second["cached"].as_u64().unwrap() + second["unchanged"].as_u64().unwrap(), entries as u64, "{second}");
    assert_eq!(second["bytes_read"], 0, "unchanged files were read: {second}");
    assert_eq!(v.block_count(), blocks);
    for f in files {
        assert_eq!(log_json(&v, &format!("t/{f}")).len(), 1, "{f} got a new version");
    }

    // One file changes (content and mtime): exactly that file is committed.
    write_file(&src.join("sub/c"), b"changed content", 0o644);
    set_mtime(&src.join("sub/c"), PAST + 100, 0);
    let third = import(&v);
    assert_eq!(third["committed"], 1, "{third}");
    assert!(third["cached"].as_u64().unwrap() >= files.len() as u64 - 1, "{third}");
    assert_eq!(third["cached"].as_u64().unwrap() + third["unchanged"].as_u64().unwrap(), entries as u64 - 1, "{third}");
    assert_eq!(third["bytes_read"], 15, "{third}");
    assert_eq!(v.read("t/sub/c"), b"changed content");
    assert_eq!(log_json(&v, "t/sub/c").len(), 2);
    assert_eq!(log_json(&v, "t/a").len(), 1);

    // A path changed in the volume since the import is not trusted to the cache.
    v.write("t/a", b"edited in the volume");
    let fourth = import(&v);
    assert_eq!(fourth["committed"], 1, "{fourth}");
    assert_eq!(v.read("t/a"), fs::read(src.join("a")).unwrap());
}

/// A same-size edit whose mtime is then put back (`rsync -t`, `touch -r`) changes the
/// ctime: the import cache must not skip it.
#[test]
fn import_cache_sees_an_edit_whose_mtime_was_put_back() {
    let v = TestVolume::new(&[]);
    let src = v.scratch("src");
    let file = src.join("f");
    fs::write(&file, b"first content").unwrap();
    set_mtime(&file, PAST, 0);
    let import = || json(&v.ok(&["--json", "import", s(&src), "t"]));
    import();
    let second = import();
    assert_eq!(second["bytes_read"], 0, "the unchanged file was not skipped: {second}");
    fs::write(&file, b"other content").unwrap();
    set_mtime(&file, PAST, 0);
    let third = import();
    assert_eq!(third["committed"], 1, "{third}");
    assert_eq!(v.read("t/f"), b"other content");
}

/// globofs a year ahead of the source's clock, mtimes in whole seconds (as over sshfs): an
/// edit, an import, a same-size edit within the same second, another import. The second
/// import must take the new content every time: the cache judges whether an mtime is too
/// recent to trust by the source's clock, never by ours.
#[test]
fn import_cache_never_trusts_a_recent_mtime_when_our_clock_is_ahead() {
    if let Some(why) = faketime_missing() {
        eprintln!("import_cache_never_trusts_a_recent_mtime_when_our_clock_is_ahead skipped: {why}");
        return;
    }
    const AHEAD: &str = "+365d";
    let v = TestVolume::new(&[]);
    let src = v.scratch("src");
    let file = src.join("f");
    let import = || json(&v.ok_at(AHEAD, &["--json", "import", s(&src), "t"]));
    let now = || std::time::SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let rounds = 10;
    let mut kept_new = 0;
    let mut second = now();
    for i in 0..rounds {
        second = now();
        fs::write(&file, format!("round {i:02} old")).unwrap();
        set_mtime(&file, second, 0);
        import();
        fs::write(&file, format!("round {i:02} new")).unwrap();
        set_mtime(&file, second, 0);
        import();
        if v.read("t/f") == format!("round {i:02} new").as_bytes() {
            kept_new += 1;
        }
    }
    eprintln!("import racy: {kept_new}/{rounds} rounds kept the new content (globofs {AHEAD})");
    assert_eq!(kept_new, rounds, "imports kept the older content");

    // Nothing changed, but the mtime is still within the source's last two seconds: read again.
    let again = import();
    assert_eq!(again["bytes_read"], 12, "a recent file was trusted to the cache: {again}");
    // Once its mtime is safely old by the source's clock, the cache skips it unread.
    set_mtime(&file, second - 10, 0);
    import();
    let cached = import();
    assert_eq!(cached["bytes_read"], 0, "an old file was read again: {cached}");
    assert!(cached["cached"].as_u64().unwrap() >= 1, "{cached}");
    assert_eq!(v.read("t/f"), format!("round {:02} new", rounds - 1).as_bytes());
}

// ---------------------------------------------------------------------------------------
// ls
// ---------------------------------------------------------------------------------------

#[test]
fn ls_plain_long_recursive_all_and_json() {
    let v = TestVolume::new(&[]);
    v.write("top.txt", b"hello");
    v.write(".hidden", b"h");
    v.write("docs/readme.txt", b"r");
    v.write("docs/.secret", b"s");
    v.write("docs/sub/deep.txt", b"deep");
    let ls = |args: &[&str]| lines(&v.ok(&[&["ls"][..], args].concat()));

    assert_eq!(ls(&[]), ["docs/", "top.txt"]);
    assert_eq!(ls(&["-a"]), [".hidden", "docs/", "top.txt"]);
    assert_eq!(ls(&["-R"]), ["docs/", "docs/readme.txt", "docs/sub/", "docs/sub/deep.txt", "top.txt"]);
    assert_eq!(
        ls(&["-R", "-a"]),
        [".hidden", "docs/", "docs/.secret", "docs/readme.txt", "docs/sub/", "docs/sub/deep.txt", "top.txt"]
    );
    assert_eq!(ls(&["docs"]), ["readme.txt", "sub/"]);
    assert_eq!(ls(&["docs/"]), ["readme.txt", "sub/"]);
    assert_eq!(ls(&["-R", "docs"]), ["readme.txt", "sub/", "sub/deep.txt"]);
    assert_eq!(ls(&["top.txt"]), ["top.txt"]);
    assert_eq!(ls(&["docs/sub/deep.txt"]), ["docs/sub/deep.txt"]);

    let long = ls(&["-l"]);
    assert_eq!(long.len(), 2, "{long:?}");
    assert!(long[0].starts_with('d') && long[0].ends_with(" docs/"), "{long:?}");
    let f: Vec<&str> = long[1].split_whitespace().collect();
    assert_eq!(f[0], "-rw-r--r--", "{long:?}");
    assert_eq!(f[1], "5", "{long:?}");
    assert_eq!(f.last(), Some(&"top.txt"));
    assert_eq!(f[2].len(), 10, "date in {long:?}");
    let one = ls(&["-l", "docs/sub/deep.txt"]);
    let f: Vec<&str> = one[0].split_whitespace().collect();
    assert_eq!((f[0], f[1], *f.last().unwrap()), ("-rw-r--r--", "4", "docs/sub/deep.txt"));

    let j = json(&v.ok(&["--json", "ls"]));
    let items = j.as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["path"], "docs");
    assert_eq!(items[0]["kind"], "dir");
    assert_eq!(items[1]["path"], "top.txt");
    assert_eq!(items[1]["kind"], "file");
    assert_eq!(items[1]["size"], 5);
    assert_eq!(items[1]["mode"], "0644");
    assert!(is_version_id(items[1]["version"].as_str().unwrap()));
    let j = json(&v.ok(&["--json", "ls", "-R", "-a"]));
    let paths: Vec<&str> = j.as_array().unwrap().iter().map(|i| i["path"].as_str().unwrap()).collect();
    assert_eq!(
        paths,
        [".hidden", "docs", "docs/.secret", "docs/readme.txt", "docs/sub", "docs/sub/deep.txt", "top.txt"]
    );

    // Mode bits of an imported file show in the long listing.
    let src = v.scratch("src");
    write_file(&src.join("tool"), b"#!", 0o750);
    v.ok(&["import", src.join("tool").to_str().unwrap(), "bin/tool"]);
    let one = ls(&["-l", "bin"]);
    assert!(one[0].starts_with("-rwxr-x--- ") && one[0].ends_with(" tool"), "{one:?}");
}

// ---------------------------------------------------------------------------------------
// rm
// ---------------------------------------------------------------------------------------

#[test]
fn rm_of_a_file_hides_it_but_keeps_its_history() {
    let v = TestVolume::new(&[]);
    let id1 = v.write("f", b"one");
    let id2 = v.write("f", b"two");
    v.write("g", b"stays");
    let out = v.run(&["rm", "f"]);
    assert_ok(&out, "rm f");
    assert!(out.stdout.is_empty() && out.stderr.is_empty());
    assert_eq!(lines(&v.ok(&["ls"])), ["g"]);
    assert_removed(&v.run(&["read", "f"]), "f");
    assert_error(&v.run(&["ls", "f"]), "f: no such file");
    assert_error(&v.run(&["rm", "f"]), "f: no such file");

    let log = lines(&v.ok(&["log", "f"]));
    assert_eq!(log.len(), 3, "{log:?}");
    assert!(log[0].contains("deleted") && log[0].contains("head"), "{log:?}");
    assert!(log[1].starts_with(&id2) && log[2].starts_with(&id1), "{log:?}");
    let j = log_json(&v, "f");
    assert_eq!(j[0]["kind"], "tombstone");
    assert_eq!(j[0]["parents"], serde_json::json!([id2]));
    assert_eq!(v.read(&at("f", &id2)), b"two");
    assert_eq!(v.read(&at("f", &id1)), b"one");
    // Reading the deletion itself is a clear error.
    let tomb = j[0]["version"].as_str().unwrap();
    assert_error(&v.run(&["read", &at("f", tomb)]), "deletion");

    // The path can be written again; its history goes on.
    v.write("f", b"three");
    assert_eq!(v.read("f"), b"three");
    assert_eq!(log_json(&v, "f").len(), 4);
    assert_eq!(v.read("g"), b"stays");
    let out = v.run(&["verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
}

#[test]
fn rm_of_a_directory_removes_everything_beneath() {
    let v = TestVolume::new(&[]);
    let files = ["d/a", "d/b", "d/sub/c", "d/sub/deeper/e"];
    let mut ids = BTreeMap::new();
    for f in files {
        ids.insert(f, v.write(f, f.as_bytes()));
    }
    v.write("dx", b"sibling with a common prefix");
    let out = v.run(&["--json", "rm", "-r", "d"]);
    assert_ok(&out, "rm d");
    let gone = json(&out.stdout);
    assert_eq!(gone.as_array().unwrap().len(), files.len(), "{gone}");
    assert!(gone.as_array().unwrap().iter().all(|t| t["kind"] == "tombstone"));
    assert_eq!(lines(&v.ok(&["ls", "-R"])), ["dx"]);
    assert_error(&v.run(&["ls", "d"]), "no such file");
    assert_error(&v.run(&["ls", "d/sub"]), "no such file");
    for f in files {
        assert_removed(&v.run(&["read", f]), f);
        assert_eq!(log_json(&v, f)[0]["kind"], "tombstone", "{f}");
        assert_eq!(v.read(&at(f, &ids[f])), f.as_bytes());
    }
    assert_eq!(v.read("dx"), b"sibling with a common prefix");
    // rm of an imported tree removes its directory markers too.
    let src = v.scratch("src");
    write_file(&src.join("x/y"), b"y", 0o644);
    fs::create_dir_all(src.join("empty")).unwrap();
    v.ok(&["import", src.to_str().unwrap(), "imp"]);
    v.ok(&["rm", "-r", "imp"]);
    assert_eq!(lines(&v.ok(&["ls"])), ["dx"]);
    assert_error(&v.run(&["ls", "imp/empty"]), "no such file");
}

// ---------------------------------------------------------------------------------------
// mv
// ---------------------------------------------------------------------------------------

#[test]
fn mv_of_a_file_to_a_new_name() {
    let v = TestVolume::new(&[]);
    let data = noise(200 << 10, 4);
    v.write("a.bin", &data);
    let blocks = v.block_count();
    let out = v.run(&["mv", "a.bin", "renamed/b.bin"]);
    assert_ok(&out, "mv");
    assert_eq!(v.read("renamed/b.bin"), data);
    assert_removed(&v.run(&["read", "a.bin"]), "a.bin");
    assert_eq!(lines(&v.ok(&["ls", "-R"])), ["renamed/", "renamed/b.bin"]);
    assert_eq!(v.block_count(), blocks, "mv copied blocks");
    assert_eq!(log_json(&v, "a.bin")[0]["kind"], "tombstone");
}

#[test]
fn mv_of_a_file_into_an_existing_directory() {
    let v = TestVolume::new(&[]);
    v.write("dir/already", b"x");
    v.write("f", b"moving");
    v.ok(&["mv", "f", "dir"]);
    assert_eq!(v.read("dir/f"), b"moving");
    assert_eq!(lines(&v.ok(&["ls", "-R"])), ["dir/", "dir/already", "dir/f"]);
    // Also with a trailing slash, and into an imported (marked) directory.
    let src = v.scratch("src");
    fs::create_dir_all(src.join("box")).unwrap();
    v.ok(&["import", src.join("box").to_str().unwrap(), "box"]);
    v.write("g", b"g");
    v.ok(&["mv", "g", "box/"]);
    assert_eq!(v.read("box/g"), b"g");
    assert_removed(&v.run(&["read", "g"]), "g");
}

#[test]
fn mv_of_a_directory_keeps_every_file() {
    let v = TestVolume::new(&[]);
    let src = v.scratch("src");
    for (i, f) in ["a", "b", "sub/c", "sub/deeper/d"].iter().enumerate() {
        write_file(&src.join(f), &noise(100 * (i + 1), i as u64), 0o600 + i as u32);
    }
    fs::create_dir_all(src.join("empty")).unwrap();
    v.ok(&["import", src.to_str().unwrap(), "old"]);
    v.ok(&["mv", "old", "new/place"]);
    assert_error(&v.run(&["ls", "old"]), "no such file");
    let out = v.tmp.path().join("out");
    v.ok(&["export", "new/place", out.to_str().unwrap()]);
    assert_same_tree(&src, &out);
    assert_eq!(
        lines(&v.ok(&["ls", "-R", "new"])),
        [
            "place/",
            "place/a",
            "place/b",
            "place/empty/",
            "place/sub/",
            "place/sub/c",
            "place/sub/deeper/",
            "place/sub/deeper/d"
        ]
    );
    let out = v.run(&["verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
}

#[test]
fn mv_of_a_directory_into_itself_is_refused() {
    let v = TestVolume::new(&[]);
    v.write("d/a", b"a");
    v.write("d/s/b", b"b");
    for dst in ["d/s", "d/s/new", "d/new", "d"] {
        let out = v.run(&["mv", "d", dst]);
        assert_error(&out, "into itself");
    }
    assert_eq!(lines(&v.ok(&["ls", "-R"])), ["d/", "d/a", "d/s/", "d/s/b"]);
    assert_eq!(log_json(&v, "d/a").len(), 1);
    // Onto an existing file, a directory is refused too.
    v.write("file", b"f");
    assert_error(&v.run(&["mv", "d", "file"]), "file: already exists");
    assert_eq!(v.read("file"), b"f");
}

// ---------------------------------------------------------------------------------------
// verify
// ---------------------------------------------------------------------------------------

#[test]
fn verify_of_a_clean_volume_is_ok() {
    let v = TestVolume::new(&[]);
    v.write("a", &noise(400 << 10, 1));
    v.write("a", b"second");
    v.write("b/c", b"c");
    let out = v.run(&["verify"]);
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
    let last = lines(&out.stdout).pop().unwrap();
    assert!(last.starts_with("ok:") && last.ends_with(" 0 problems"), "{last}");
    assert!(last.contains(&format!("{} blocks", v.block_count())), "{last}");
    assert!(last.contains("3 manifests"), "{last}");
    let out = v.run(&["--json", "verify"]);
    assert_eq!(out.status.code(), Some(0));
    let r = json(&out.stdout);
    assert_eq!(r["problems"], serde_json::json!([]));
    assert_eq!(r["blocks"], v.block_count());
    assert_eq!(r["manifests"], 3);
}

#[test]
fn verify_finds_a_flipped_byte_in_a_block() {
    let v = TestVolume::new(&[]);
    v.write("f", &noise(20_000, 8));
    v.write("other", b"fine");
    let victim = block_files(&v)
        .into_iter()
        .find(|b| fs::read_to_string(v.dir.join("local/root/f/versions/latest")).unwrap().contains(&block_hex(b)))
        .expect("the block of f");
    let hex = block_hex(&victim);
    let mut bytes = fs::read(&victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    fs::write(&victim, &bytes).unwrap();

    let out = v.run(&["verify"]);
    assert_eq!(out.status.code(), Some(1), "{}{}", text(&out.stdout), text(&out.stderr));
    let report = text(&out.stdout);
    assert!(report.contains("corrupt-block") && report.contains(&hex), "{report}");
    assert!(report.lines().last().unwrap().starts_with("FAILED"), "{report}");

    let out = v.run(&["--json", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    let r = json(&out.stdout);
    let problems = r["problems"].as_array().expect("problems array");
    assert!(
        problems.iter().any(|p| p["kind"] == "corrupt-block" && p["detail"].as_str().unwrap().contains(&hex)),
        "{r}"
    );
    assert!(problems.iter().all(|p| p["file"].is_string() && p["detail"].is_string()));

    let out = v.run(&["read", "f"]);
    assert_error(&out, &hex);
    assert!(text(&out.stderr).contains("corrupt"), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty(), "read served bytes of a corrupt block");
    assert_eq!(v.read("other"), b"fine");
}

// ---------------------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------------------

#[test]
fn concurrent_writers_lose_nothing() {
    let v = TestVolume::new(&[]);
    const WRITERS: usize = 2;
    const EACH: usize = 20;
    // (path, content, id) of every acknowledged write.
    let acked: Vec<(String, Vec<u8>, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..WRITERS)
            .map(|w| {
                let v = &v;
                s.spawn(move || {
                    (0..EACH)
                        .map(|i| {
                            let path = if i % 2 == 0 { "shared".to_string() } else { format!("w{w}/f{i}") };
                            let mut data = format!("writer {w} write {i}\n").into_bytes();
                            data.extend(noise(1000 * (i % 4), (w * 100 + i) as u64));
                            let id = v.write(&path, &data);
                            (path, data, id)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("writer thread")).collect()
    });
    assert_eq!(acked.len(), WRITERS * EACH);
    let all: BTreeSet<&str> = acked.iter().map(|(_, _, id)| id.as_str()).collect();
    assert_eq!(all.len(), acked.len(), "duplicate version ids");

    let shared = log_json(&v, "shared");
    let logged: BTreeSet<&str> = shared.iter().map(|e| e["version"].as_str().unwrap()).collect();
    let wanted: BTreeSet<&str> = acked.iter().filter(|(p, _, _)| p == "shared").map(|(_, _, id)| id.as_str()).collect();
    assert_eq!(logged, wanted, "log of shared is not every acknowledged write");
    // The history is one chain: each version's parent is the one before it.
    for pair in shared.windows(2) {
        assert_eq!(pair[0]["parents"], serde_json::json!([pair[1]["version"]]), "history forked or skipped a version");
    }
    assert_eq!(shared.iter().filter(|e| e["head"] == true).count(), 1);
    for (path, data, id) in &acked {
        assert!(v.read(&at(path, id)) == *data, "{path}@{id} does not read back");
        if path != "shared" {
            assert_eq!(log_json(&v, path).len(), 1, "{path}");
        }
    }
    let head = shared[0]["version"].as_str().unwrap();
    let head_data = &acked.iter().find(|(_, _, id)| id == head).unwrap().1;
    assert!(v.read("shared") == *head_data);
    let out = v.run(&["verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
}

#[test]
fn import_never_takes_in_the_volume_itself() {
    let v = TestVolume::new(&[]);
    // A source that contains the volume: the volume is left out.
    fs::write(v.tmp.path().join("note.txt"), b"outside").unwrap();
    v.ok(&["import", v.tmp.path().to_str().unwrap(), "home"]);
    let listing = text(&v.ok(&["ls", "-R", "home"]));
    assert!(listing.contains("note.txt"), "{listing}");
    assert!(!listing.contains("vol"), "the volume was imported into itself: {listing}");
    // A source inside the volume: refused, nothing written.
    let inside = v.dir.join("local");
    let out = v.run(&["import", inside.to_str().unwrap(), "x"]);
    assert_error(&out, "inside the volume");
    assert!(!v.dir.join("local/root/x").exists());
}

// ---------------------------------------------------------------------------------------
// Conventions and safety rails: completions, man page, external commands, help, quiet
// ---------------------------------------------------------------------------------------

#[test]
fn completions_for_every_shell_and_the_bash_script_parses() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = bare().args(["completions", shell]).output().unwrap();
        assert_ok(&out, &format!("completions {shell}"));
        assert!(text(&out.stdout).contains("globofs"), "{shell}: {}", text(&out.stdout));
    }
    let script = bare().args(["completions", "bash"]).output().unwrap().stdout;
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("globofs.bash");
    fs::write(&f, &script).unwrap();
    let out = Command::new("bash").arg("-n").arg(&f).output().unwrap();
    assert_ok(&out, "bash -n of the completion script");
    assert!(text(&script).contains("complete"), "{}", text(&script));
    let out = bare().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("tcsh") && text(&out.stderr).contains("bash"), "{}", text(&out.stderr));
}

#[test]
fn man_page_renders() {
    let out = bare().arg("man").output().unwrap();
    assert_ok(&out, "man");
    assert!(text(&out.stdout).lines().any(|l| l.starts_with(".TH globofs 1")), "{}", text(&out.stdout));
    let have_man = Command::new("sh").args(["-c", "command -v man"]).output().unwrap().status.success();
    if !have_man {
        eprintln!("skipping the rendering: man is not installed");
        return;
    }
    let mut child = Command::new("man")
        .args(["-l", "-"])
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&out.stdout).unwrap();
    let shown = child.wait_with_output().unwrap();
    assert_ok(&shown, "man -l -");
    let page = text(&shown.stdout);
    assert!(page.contains("globofs") && page.contains("SUBCOMMANDS"), "{page}");
}

/// A directory holding `globofs-hello`, which prints its arguments and $GLOBOFS_VOLUME and
/// exits 3; and PATH with it first.
fn hello_on_path() -> (tempfile::TempDir, OsString) {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("globofs-hello");
    fs::write(&script, "#!/bin/sh\necho \"args:$*\"\necho \"vol:${GLOBOFS_VOLUME-unset}\"\nexit 3\n").unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let mut path = OsString::from(dir.path());
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap_or_default());
    (dir, path)
}

#[test]
fn an_unknown_command_runs_globofs_name_from_path_with_the_volume() {
    let v = TestVolume::new(&[]);
    let (_bin, path) = hello_on_path();
    let canon = fs::canonicalize(&v.dir).unwrap();
    // -V: the volume is passed on; the arguments too, and the exit code comes back.
    let out = v.cmd(&["hello", "a", "b c", "--flag"]).env("PATH", &path).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(lines(&out.stdout), ["args:a b c --flag".to_string(), format!("vol:{}", canon.display())]);
    // Found by walking up from the working directory.
    let out = bare().arg("hello").current_dir(v.dir.join("local/root")).env("PATH", &path).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(lines(&out.stdout)[1], format!("vol:{}", canon.display()));
    // No volume anywhere: unset.
    let nowhere = tempfile::tempdir().unwrap();
    let out = bare().args(["hello", "x"]).current_dir(nowhere.path()).env("PATH", &path).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(lines(&out.stdout), ["args:x", "vol:unset"]);
}

#[test]
fn a_typo_of_a_command_is_an_error_with_a_suggestion() {
    let (_bin, path) = hello_on_path();
    for (typo, want) in [("lss", "ls"), ("pussh", "push"), ("hellp", "help")] {
        let out = bare().arg(typo).env("PATH", &path).output().unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{typo}: {err}");
        assert!(err.trim_end().lines().count() <= 2, "{typo}: more than 2 lines: {err}");
        assert!(err.contains(typo) && err.contains(&format!("did you mean `{want}`")), "{typo}: {err}");
        assert!(out.stdout.is_empty());
    }
    let out = bare().arg("zzzzqqq").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).trim_end().lines().count() <= 2, "{}", text(&out.stderr));
}

/// The (sub)command names listed under "Commands:" of a help text, `help` left out.
fn listed_commands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect()
}

#[test]
fn help_of_every_command_describes_each_positional_and_gives_an_example() {
    let top = text(&bare().arg("help").output().unwrap().stdout);
    let mut todo: Vec<Vec<String>> = listed_commands(&top).into_iter().map(|c| vec![c]).collect();
    assert!(todo.len() > 15, "{top}");
    let mut checked = 0;
    while let Some(cmd) = todo.pop() {
        let out = bare().arg("help").args(&cmd).output().unwrap();
        assert_ok(&out, &format!("help {cmd:?}"));
        let help = text(&out.stdout);
        let subs = listed_commands(&help);
        if !subs.is_empty() {
            todo.extend(subs.into_iter().map(|s| [cmd.clone(), vec![s]].concat()));
            continue;
        }
        let usage = help.lines().find(|l| l.starts_with("Usage:")).unwrap_or_else(|| panic!("{cmd:?}: {help}"));
        // `<X>` and `[X]` words of the usage line, less option values (`--keep <KEEP>`).
        let words: Vec<&str> = usage.split_whitespace().collect();
        let positionals: Vec<&str> = (0..words.len())
            .filter(|&i| i == 0 || !words[i - 1].starts_with('-'))
            .map(|i| words[i])
            .filter(|w| (w.starts_with('<') || w.starts_with('[')) && *w != "[OPTIONS]")
            .map(|w| w.trim_start_matches(['<', '[']).trim_end_matches(['>', ']', '.']))
            .collect();
        let args: Vec<&str> =
            help.lines().skip_while(|l| !l.starts_with("Arguments:")).skip(1).take_while(|l| !l.is_empty()).collect();
        for p in &positionals {
            let line = args
                .iter()
                .position(|l| {
                    l.trim_start().trim_start_matches(['<', '[']).starts_with(&format!("{p}>"))
                        || l.trim_start().trim_start_matches(['<', '[']).starts_with(&format!("{p}]"))
                })
                .unwrap_or_else(|| panic!("help {cmd:?}: {p} not under Arguments: {help}"));
            // A description on its line (or, in long help, the next one).
            let same = args[line].trim().split_once(char::is_whitespace).map(|(_, d)| d.trim()).unwrap_or("");
            let next = args.get(line + 1).map(|l| l.trim()).unwrap_or("");
            assert!(
                !same.is_empty() || (!next.is_empty() && !next.starts_with('<')),
                "help {cmd:?}: {p} has no description: {help}"
            );
        }
        assert!(help.contains("Example"), "help {cmd:?} gives no example: {help}");
        checked += 1;
    }
    assert!(checked > 20, "only {checked} commands checked");
}

#[test]
fn push_with_no_peers_says_so_and_peer_rm_says_what_it_removed() {
    let v = TestVolume::new(&[]);
    v.write("f", b"x");
    let out = v.run(&["push"]);
    assert_ok(&out, "push with no peers");
    let err = text(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("no peers") && err.contains("globofs peer add NAME PATH"), "{err}");
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    let other = TestVolume::named("other");
    v.ok(&["peer", "add", "other", s(&other.dir)]);
    let said = text(&v.ok(&["peer", "rm", "other"]));
    assert!(said.contains("removed peer other"), "{said}");
    let out = v.run(&["push"]);
    assert!(text(&out.stderr).contains("no peers"), "{}", text(&out.stderr));
}

#[test]
fn init_refuses_a_non_empty_directory_unless_forced() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("photos");
    write_file(&dir.join("IMG_1.jpg"), b"jpeg", 0o644);
    let out = bare().arg("init").arg(&dir).output().unwrap();
    assert_error(&out, &format!("{} is not empty", dir.display()));
    assert!(text(&out.stderr).contains("--force"), "{}", text(&out.stderr));
    let names: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["IMG_1.jpg"], "init created something");
    // A hidden file counts too.
    let dot = tmp.path().join("dot");
    write_file(&dot.join(".profile"), b"x", 0o644);
    assert_error(&bare().arg("init").arg(&dot).output().unwrap(), "is not empty");
    // --force makes it a volume, leaving the file alone.
    assert_ok(&bare().arg("init").arg(&dir).arg("--force").output().unwrap(), "init --force");
    assert_eq!(fs::read(dir.join("IMG_1.jpg")).unwrap(), b"jpeg");
    assert!(dir.join("local/config").is_file());
    // An empty directory, and a fresh file system's lost+found alone, are fine.
    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).unwrap();
    assert_ok(&bare().arg("init").arg(&empty).output().unwrap(), "init of an empty dir");
    let disk = tmp.path().join("disk");
    fs::create_dir_all(disk.join("lost+found")).unwrap();
    assert_ok(&bare().arg("init").arg(&disk).output().unwrap(), "init of a fresh disk");
    // --force does not override the refusal of a volume whose config was lost.
    let v = TestVolume::new(&[]);
    v.write("keep", b"data");
    fs::remove_file(v.dir.join("local/config")).unwrap();
    assert_error(&bare().arg("init").arg(&v.dir).arg("--force").output().unwrap(), "--recover");
    assert!(!v.dir.join("local/config").exists());
}

#[test]
fn rm_of_a_directory_needs_r() {
    let v = TestVolume::new(&[]);
    v.write("d/a", b"a");
    v.write("d/sub/b", b"b");
    v.write("f", b"f");
    assert_error(&v.run(&["rm", "d"]), "d is a directory: use `globofs rm -r");
    assert_error(&v.run(&["rm", "d/sub"]), "d/sub is a directory");
    assert_eq!(v.read("d/a"), b"a");
    assert_eq!(v.read("d/sub/b"), b"b");
    v.ok(&["rm", "-r", "d/sub"]);
    assert_eq!(lines(&v.ok(&["ls", "d"])), ["a"]);
    v.ok(&["rm", "--recursive", "d"]);
    v.ok(&["rm", "-r", "f"]);
    assert!(v.ok(&["ls"]).is_empty());
}

#[test]
fn quiet_prints_nothing_on_success_but_keeps_the_data() {
    let v = TestVolume::new(&[]);
    let peer = TestVolume::named("peer");
    let src = v.scratch("src");
    write_file(&src.join("a"), b"a", 0o644);
    // Without -q, these commands do say something (so the test below can fail).
    assert!(!v.run_with_input(&["write", "loud"], b"l").stdout.is_empty());
    let quiet = |args: &[&str], input: &[u8]| {
        let out = v.run_with_input(&[&["-q"][..], args].concat(), input);
        assert_ok(&out, &format!("{args:?}"));
        assert!(
            out.stdout.is_empty() && out.stderr.is_empty(),
            "{args:?} printed: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    };
    quiet(&["write", "f"], b"one");
    quiet(&["write", "f"], b"two");
    quiet(&["import", s(&src), "imp"], b"");
    let out = v.run(&["--quiet", "push"]); // no peers: not even that line
    assert!(out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(), "{}", text(&out.stderr));
    quiet(&["peer", "add", "peer", s(&peer.dir)], b"");
    quiet(&["push"], b"");
    quiet(&["prune", "--keep-last", "1"], b"");
    quiet(&["gc"], b"");
    quiet(&["mv", "f", "g"], b"");
    quiet(&["rm", "-r", "imp"], b"");
    quiet(&["verify"], b"");
    assert!(!v.ok(&["push"]).is_empty(), "push without -q says what it pushed");
    // The data a command exists to print is kept.
    assert_eq!(v.ok(&["-q", "read", "g"]), b"two");
    assert_eq!(lines(&v.ok(&["-q", "ls"])), ["g", "loud"]);
    assert!(!v.ok(&["-q", "log", "g"]).is_empty());
    assert!(!v.ok(&["-q", "status"]).is_empty());
    assert!(!v.ok(&["-q", "peer", "ls"]).is_empty());
    // Errors still print.
    assert_error(&v.run(&["-q", "read", "nope"]), "nope");
}

#[test]
fn push_offline_ok_exits_0_when_peers_are_only_unreachable() {
    let v = TestVolume::new(&[]);
    let peer = TestVolume::named("peer");
    v.ok(&["peer", "add", "peer", s(&peer.dir)]);
    v.write("f", b"x");
    fs::rename(&peer.dir, peer.tmp.path().join("unmounted")).unwrap();
    assert_eq!(v.run(&["push"]).status.code(), Some(1), "an unreachable peer is exit 1 without --offline-ok");
    let out = v.run(&["push", "--offline-ok"]);
    assert_ok(&out, "push --offline-ok");
    let err = text(&out.stderr);
    assert!(err.contains("peer peer") && err.contains("unreachable"), "{err}");
    let out = v.run(&["-q", "push", "--offline-ok"]);
    assert_ok(&out, "-q push --offline-ok");
    assert!(out.stderr.is_empty() && out.stdout.is_empty(), "{}", text(&out.stderr));
    // A broken peer is not merely offline: still exit 1.
    let bad = v.dir.join("broken");
    fs::create_dir(&bad).unwrap();
    fs::write(bad.join("config"), b"uuid = 12\n").unwrap();
    let out = v.run(&["push", "--offline-ok"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
}

#[test]
fn keep_within_takes_months_minutes_and_years_and_names_the_flag_on_error() {
    let v = TestVolume::new(&[]);
    v.write("f", b"1");
    v.write("f", b"2");
    for good in ["90s", "30m", "12h", "7d", "2w", "6mo", "1y"] {
        let out = v.run(&["prune", "--keep-within", good, "--dry-run"]);
        assert_ok(&out, &format!("--keep-within {good}"));
        assert!(text(&out.stdout).contains("would prune 0 versions"), "{good}: {}", text(&out.stdout));
    }
    assert_error(
        &v.run(&["prune", "--keep-within", "6x"]),
        "--keep-within 6x: unknown unit `x` (use s, m, h, d, w, mo, y)",
    );
    assert_error(&v.run(&["prune", "--keep-within", "soon"]), "--keep-within soon:");
    // The config takes the same units, and names the field.
    let cfg = v.dir.join("local/config");
    let text_cfg = fs::read_to_string(&cfg).unwrap();
    assert!(text_cfg.contains("keep_within = \"\""), "{text_cfg}");
    fs::write(&cfg, text_cfg.replace("keep_within = \"\"", "keep_within = \"3mo\"")).unwrap();
    let out = v.run(&["prune", "--dry-run"]);
    assert_ok(&out, "keep_within = 3mo");
    fs::write(&cfg, text_cfg.replace("keep_within = \"\"", "keep_within = \"3x\"")).unwrap();
    assert_error(&v.run(&["ls"]), "keep_within 3x: unknown unit `x`");
}

/// Under `--json`, an error is one JSON object on stderr: the same message, and the exit code.
#[test]
fn json_errors_are_json_objects_on_stderr() {
    let v = TestVolume::new(&[]);
    let out = v.run(&["--json", "read", "no/such/file"]);
    assert_error(&out, "no/such/file");
    let e = json(&out.stderr);
    assert!(e["error"].as_str().is_some_and(|m| m.contains("no/such/file")), "{e}");
    assert_eq!(e["exit_code"], 2);
    assert!(out.stdout.is_empty());
}
