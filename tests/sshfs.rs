//! Sync over a real sshfs mount: a throwaway `sshd` on 127.0.0.1, volume B mounted on A's
//! side with `sshfs`, and A and B pushing logs into each other and pulling blocks on read
//! (A's peer `b` is the sshfs mount; B reaches A locally). Then the mount goes away: the
//! push reports peer b unreachable (exit 1) and writes nothing into the empty mount point;
//! after a remount the push goes through. A second test drops the sshfs connection (kills
//! sshfs) in the middle of a push: the torn tail in B's log is never applied, and the next
//! push repairs it and rotates the log through sshfs. Skipped (with a reason) unless root
//! with `sshd`, `ssh`, `sshfs`, `ssh-keygen`, `fusermount3`/`fusermount` and /dev/fuse.

use crate::util::*;
use std::fs::{self, File};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const SSHD: &str = "/usr/sbin/sshd";
const TIMEOUT: Duration = Duration::from_secs(10);

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `text`, cut short for an assertion message.
fn short(b: &[u8]) -> String {
    let t = text(b);
    match t.char_indices().nth(3000) {
        Some((i, _)) => format!("{}... ({} bytes in all)", &t[..i], t.len()),
        None => t,
    }
}

/// The first executable called `prog` on `PATH`.
fn which(prog: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path).map(|d| d.join(prog)).find(|p| p.is_file())
}

/// Why the test cannot run here, if it cannot.
fn missing_prerequisite() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not running as root (sshd and FUSE mounts need it)".into());
    }
    if !Path::new(SSHD).is_file() {
        return Some(format!("{SSHD} is missing (apt-get install openssh-server)"));
    }
    if !Path::new("/dev/fuse").exists() {
        return Some("/dev/fuse is missing".into());
    }
    for prog in ["sshfs", "ssh", "ssh-keygen"] {
        if which(prog).is_none() {
            return Some(format!("`{prog}` is not on PATH (apt-get install sshfs openssh-client)"));
        }
    }
    if fusermount().is_none() {
        return Some("neither fusermount3 nor fusermount is on PATH (apt-get install fuse3)".into());
    }
    None
}

fn fusermount() -> Option<PathBuf> {
    which("fusermount3").or_else(|| which("fusermount"))
}

/// True if `path` is a mount point (per /proc/self/mounts).
fn is_mounted(path: &Path) -> bool {
    let Ok(mounts) = fs::read_to_string("/proc/self/mounts") else { return false };
    let want = path.to_string_lossy();
    mounts.lines().filter_map(|l| l.split(' ').nth(1)).any(|m| m.replace("\\040", " ") == want)
}

/// Runs `cmd` with stdout and stderr going to files (so a daemon that inherits them cannot
/// keep us waiting), killing it after `timeout`. Returns (exit code, stdout + stderr).
fn run_with_timeout(cmd: &mut Command, log: &Path, timeout: Duration) -> (Option<i32>, String) {
    let out = File::create(log).expect("create log");
    let err = out.try_clone().expect("clone log");
    let mut child = cmd.stdin(Stdio::null()).stdout(out).stderr(err).spawn().expect("spawn");
    let start = Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status.code();
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (code, fs::read_to_string(log).unwrap_or_default())
}

/// One sshfs mount, run in the foreground as our child (so it can be killed by its id).
struct Mount {
    dir: PathBuf,
    sshfs: Child,
}

/// A throwaway sshd on 127.0.0.1 and the sshfs mounts made through it. Dropping it (also
/// on a panic) unmounts every mount, then kills sshd, then removes its temp directory.
struct SshServer {
    tmp: tempfile::TempDir,
    port: u16,
    key: PathBuf,
    sshd: Option<Child>,
    mounts: Vec<Mount>,
}

impl SshServer {
    fn start() -> SshServer {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let host_key = dir.join("host_ed25519");
        let key = dir.join("client_ed25519");
        for k in [&host_key, &key] {
            let out = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "globofs-test", "-f"])
                .arg(k)
                .stdin(Stdio::null())
                .output()
                .expect("run ssh-keygen");
            assert!(out.status.success(), "ssh-keygen {} failed: {}", k.display(), text(&out.stderr));
        }
        fs::copy(key.with_extension("pub"), dir.join("authorized_keys")).expect("write authorized_keys");
        // A free port: bind port 0, note it, let it go.
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind").local_addr().expect("addr").port();
        let config = dir.join("sshd_config");
        fs::write(
            &config,
            format!(
                "ListenAddress 127.0.0.1\nPort {port}\nHostKey {}\nAuthorizedKeysFile {}\n\
                 PermitRootLogin prohibit-password\nPubkeyAuthentication yes\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPidFile {}\n\
                 Subsystem sftp internal-sftp\nLogLevel VERBOSE\n",
                host_key.display(),
                dir.join("authorized_keys").display(),
                dir.join("sshd.pid").display()
            ),
        )
        .expect("write sshd_config");
        fs::create_dir_all("/run/sshd").expect("create /run/sshd (privilege separation directory)");
        let log = File::create(dir.join("sshd.log")).expect("sshd log");
        let sshd = Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone"))
            .stderr(log)
            .spawn()
            .expect("spawn sshd");
        let mut server = SshServer { tmp, port, key, sshd: Some(sshd), mounts: Vec::new() };
        let start = Instant::now();
        loop {
            if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
                break;
            }
            if let Some(status) = server.sshd.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("sshd exited at start ({status}): {}", server.log("sshd.log"));
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "sshd did not listen on port {port}: {}",
                server.log("sshd.log")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn log(&self, name: &str) -> String {
        fs::read_to_string(self.tmp.path().join(name)).unwrap_or_default()
    }

    /// Mounts `remote` (a directory on "the server", i.e. this machine) at `mnt` over sshfs,
    /// with sshfs in the foreground as our child.
    fn mount(&mut self, remote: &Path, mnt: &Path) {
        assert!(!is_mounted(mnt), "{} is already mounted", mnt.display());
        fs::create_dir_all(mnt).expect("create mount point");
        let opts = format!(
            "IdentityFile={},StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null,BatchMode=yes,ConnectTimeout=10,\
             LogLevel=ERROR",
            self.key.display()
        );
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.tmp.path().join("sshfs.log"))
            .expect("sshfs log");
        let sshfs = Command::new("sshfs")
            .arg("-f")
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-o")
            .arg(opts)
            .arg(format!("root@127.0.0.1:{}", remote.display()))
            .arg(mnt)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone"))
            .stderr(log)
            .spawn()
            .expect("spawn sshfs");
        self.mounts.push(Mount { dir: mnt.to_path_buf(), sshfs });
        let start = Instant::now();
        while !is_mounted(mnt) {
            let m = self.mounts.last_mut().expect("mount");
            if let Some(status) = m.sshfs.try_wait().ok().flatten() {
                self.mounts.pop();
                panic!(
                    "sshfs of {} exited ({status}): {}\nsshd log:\n{}",
                    mnt.display(),
                    self.log("sshfs.log"),
                    self.log("sshd.log")
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{} did not show up as mounted: {}\nsshd log:\n{}",
                mnt.display(),
                self.log("sshfs.log"),
                self.log("sshd.log")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            mnt.join("local/config").is_file(),
            "the volume's config is not visible through sshfs at {}",
            mnt.display()
        );
    }

    /// Kills the sshfs process behind `mnt` (a dropped connection): the mount stays, dead.
    fn kill_sshfs(&mut self, mnt: &Path) {
        let m = self.mounts.iter_mut().find(|m| m.dir == mnt).expect("no such mount");
        let _ = m.sshfs.kill();
        let _ = m.sshfs.wait();
    }

    /// Unmounts `mnt` (retrying while busy; lazily as a last resort) and reaps its sshfs.
    /// True if it is gone.
    fn unmount(&mut self, mnt: &Path) -> bool {
        let log = self.tmp.path().join("fusermount.log");
        let start = Instant::now();
        while is_mounted(mnt) {
            let Some(fm) = fusermount() else { break };
            let lazy = start.elapsed() > Duration::from_secs(5);
            let _ = run_with_timeout(Command::new(&fm).arg(if lazy { "-uz" } else { "-u" }).arg(mnt), &log, TIMEOUT);
            if start.elapsed() > Duration::from_secs(10) {
                let _ = run_with_timeout(Command::new("umount").arg("-l").arg(mnt), &log, TIMEOUT);
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let gone = !is_mounted(mnt);
        if let Some(i) = self.mounts.iter().position(|m| m.dir == mnt) {
            let mut m = self.mounts.remove(i);
            // sshfs exits by itself once unmounted; don't wait forever.
            let start = Instant::now();
            while m.sshfs.try_wait().ok().flatten().is_none() {
                if start.elapsed() > Duration::from_secs(5) {
                    let _ = m.sshfs.kill();
                    let _ = m.sshfs.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        gone
    }
}

impl Drop for SshServer {
    fn drop(&mut self) {
        let dirs: Vec<PathBuf> = self.mounts.iter().map(|m| m.dir.clone()).collect();
        for d in dirs {
            if !self.unmount(&d) {
                eprintln!("sshfs test: could not unmount {}", d.display());
            }
        }
        if let Some(mut c) = self.sshd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Two volumes, A and B, and B mounted over sshfs at `mnt` as A's peer `b`; B has A
/// (locally) as its peer `a`. Fields drop in order: the server (mounts, sshd) first.
struct Rig {
    server: SshServer,
    a: TestVolume,
    b: TestVolume,
    mnt: PathBuf,
}

impl Rig {
    /// None (with the reason printed) when this machine cannot run the test.
    fn new(test: &str) -> Option<Rig> {
        if let Some(why) = missing_prerequisite() {
            eprintln!("{test} skipped: {why}");
            return None;
        }
        let a = TestVolume::new(&[]);
        let b = TestVolume::new(&[]);
        let mut server = SshServer::start();
        let mnt = server.tmp.path().join("mnt");
        fs::create_dir(&mnt).expect("create mount point");
        let mnt = fs::canonicalize(&mnt).expect("canonicalize mount point");
        server.mount(&b.dir, &mnt);
        a.ok(&["peer", "add", "b", mnt.to_str().expect("utf-8 path")]);
        b.ok(&["peer", "add", "a", a.dir.to_str().expect("utf-8 path")]);
        Some(Rig { server, a, b, mnt })
    }
}

/// Asserts exit code `code`, showing the command's stderr otherwise.
fn assert_code(out: &Output, code: i32, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: expected exit {code}\nstdout: {}\nstderr: {}",
        short(&out.stdout),
        short(&out.stderr)
    );
}

fn dir_entries(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(p)
        .unwrap_or_else(|e| panic!("list {}: {e}", p.display()))
        .map(|e| e.expect("dir entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Names under `root` that start with the engine's temp prefix (left-over partial writes).
fn temp_files(root: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
        .map(|e| e.path().to_path_buf())
        .collect()
}

/// "b: N versions pushed" in push's stdout: N.
fn pushed_to(out: &Output, peer: &str) -> usize {
    let stdout = text(&out.stdout);
    let prefix = format!("{peer}: ");
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(&prefix)?.strip_suffix(" versions pushed")?.parse().ok())
        .unwrap_or_else(|| panic!("push stdout does not say what went to {peer}: {stdout:?}"))
}

#[test]
fn push_read_mirror_over_sshfs() {
    let started = Instant::now();
    let Some(mut rig) = Rig::new("sshfs::push_read_mirror_over_sshfs") else { return };
    let (a, b, mnt) = (&rig.a, &rig.b, rig.mnt.clone());
    let peer_ls = text(&a.ok(&["peer", "ls"]));
    assert!(peer_ls.contains("b ") && peer_ls.contains(" reachable"), "A's peer b over sshfs: {peer_ls}");

    // A -> B: A writes, pushes its log into B through sshfs; B reads locally, pulling A's blocks.
    let big = noise(1 << 20, 0x5555_1234);
    let note = b"a small text file, written on A\nsecond line\n".to_vec();
    a.write("big.bin", &big);
    a.write("docs/note.txt", &note);
    let a_blocks = a.block_count();
    assert!(a_blocks >= 3, "1 MiB of noise should make several blocks, A has {a_blocks}");
    let out = a.run(&["push"]);
    assert_code(&out, 0, "A push into B over sshfs");
    assert!(pushed_to(&out, "b") >= 2, "A pushed too little: {}", text(&out.stdout));
    let upstream = b.dir.join("local/upstream");
    let senders = dir_entries(&upstream);
    assert_eq!(senders.len(), 1, "B's upstream should hold A's log only: {senders:?}");
    let latest = upstream.join(&senders[0]).join("updates/latest");
    assert!(fs::metadata(&latest).is_ok_and(|m| m.len() > 0), "no log at {}", latest.display());
    assert_eq!(b.block_count(), 0, "push must not copy blocks");
    assert_eq!(b.read("big.bin"), big, "B's big.bin differs from A's");
    assert_eq!(b.read("docs/note.txt"), note, "B's docs/note.txt differs from A's");
    assert_eq!(b.block_count(), a_blocks, "B should have pulled every block of A");

    // B -> A: B pushes into A locally; A pulls B's blocks through sshfs.
    let from_b = noise(768 << 10, 0xb0b);
    let from_b2 = noise(640 << 10, 0xb0b2);
    b.write("from-b/one.bin", &from_b);
    b.write("from-b/two.bin", &from_b2);
    let b_new = b.block_count() - a_blocks;
    let out = b.run(&["push"]);
    assert_code(&out, 0, "B push into A (local)");
    assert_eq!(pushed_to(&out, "a"), 2, "B should push its own two versions only: {}", text(&out.stdout));
    let before = a.block_count();
    assert_eq!(a.read("from-b/one.bin"), from_b, "A's from-b/one.bin (pulled through sshfs) differs");
    let after_read = a.block_count();
    assert!(after_read > before, "A pulled no blocks through sshfs");
    let out = a.run(&["mirror"]);
    assert_code(&out, 0, "A mirror over sshfs");
    let after_mirror = a.block_count();
    assert!(after_mirror > after_read, "mirror fetched nothing: {}", text(&out.stdout));
    let pulled = after_mirror - before;
    assert_eq!(pulled, b_new, "A should have pulled exactly B's new blocks");
    assert!(text(&out.stdout).contains(", 0 not found"), "mirror: {}", text(&out.stdout));
    assert_eq!(a.read("from-b/two.bin"), from_b2, "A's from-b/two.bin (mirrored) differs");
    let out = a.run(&["mirror"]);
    assert_code(&out, 0, "second mirror");
    assert!(text(&out.stdout).starts_with("0 blocks were missing"), "second mirror: {}", text(&out.stdout));
    assert_eq!(temp_files(&b.dir), Vec::<PathBuf>::new(), "temp files left in B");

    // The peer goes away: unreachable, not empty. Nothing may be created in the bare mount point.
    assert!(rig.server.unmount(&mnt), "could not unmount {}", mnt.display());
    assert_eq!(dir_entries(&mnt), Vec::<String>::new(), "mount point not empty after unmount");
    let later = b"written on A while B was away\n".to_vec();
    a.write("later.txt", &later);
    let out = a.run(&["push"]);
    assert_code(&out, 1, "A push with B unmounted");
    let err = text(&out.stderr);
    assert!(err.contains("peer b") && err.contains("unreachable"), "stderr should say peer b is unreachable: {err}");
    assert!(!err.contains("panicked") && !err.contains("internal error"), "panic: {err}");
    assert_eq!(dir_entries(&mnt), Vec::<String>::new(), "push created something in the empty mount point");
    let peer_ls = text(&a.ok(&["peer", "ls"]));
    assert!(peer_ls.contains("unreachable"), "peer ls with B unmounted: {peer_ls}");
    assert_eq!(a.read("from-b/one.bin"), from_b, "A's local copy must stay readable offline");
    assert_eq!(dir_entries(&mnt), Vec::<String>::new(), "reading offline created something in the mount point");

    // Back again: the push goes through, appending to the log B already has.
    rig.server.mount(&b.dir, &mnt);
    let out = a.run(&["push"]);
    assert_code(&out, 0, "A push after remount");
    assert_eq!(pushed_to(&out, "b"), 1, "only later.txt was pending: {}", text(&out.stdout));
    assert_eq!(b.read("later.txt"), later, "B's later.txt differs");
    assert_eq!(b.read("big.bin"), big, "B's big.bin changed");
    let out = a.run(&["push"]);
    assert_code(&out, 0, "a second push");
    assert_eq!(pushed_to(&out, "b"), 0, "pushing twice must send nothing new: {}", text(&out.stdout));
    let out = b.run(&["verify"]);
    assert_code(&out, 0, "verify B");
    assert_eq!(temp_files(&b.dir), Vec::<PathBuf>::new(), "temp files left in B");

    drop(rig.server);
    assert!(!is_mounted(&mnt), "{} still mounted after cleanup", mnt.display());
    println!(
        "sshfs: push+read+mirror over sshfs ok, {pulled} blocks pulled through sshfs, {} blocks pulled by B, {:.1} s",
        a_blocks,
        started.elapsed().as_secs_f64()
    );
}

/// The `latest` segment of the (only) log pushed into `vol`, if there is one yet.
fn pushed_latest(vol: &Path) -> Option<PathBuf> {
    let upstream = vol.join("local/upstream");
    fs::read_dir(&upstream).ok()?.filter_map(|e| e.ok()).map(|e| e.path().join("updates/latest")).find(|p| p.is_file())
}

/// Where a log segment's last complete record ends (`record <len> <sha256>\n<payload>`
/// frames after a one-line header), read the way a human would with `head` and `dd`.
fn complete_records_end(bytes: &[u8]) -> usize {
    let Some(nl) = bytes.iter().position(|&c| c == b'\n') else { return 0 };
    let mut at = nl + 1;
    loop {
        let rest = &bytes[at..];
        let Some(nl) = rest.iter().position(|&c| c == b'\n') else { return at };
        let line = String::from_utf8_lossy(&rest[..nl]);
        let Some(len) = line.split(' ').nth(1).and_then(|l| l.parse::<usize>().ok()) else { return at };
        if rest.len() < nl + 1 + len {
            return at;
        }
        at += nl + 1 + len;
    }
}

/// A push whose sshfs connection drops half-way leaves a torn tail in B's log: B applies
/// only the complete records before it, never a torn one; after a remount the next push
/// repairs the tail through sshfs, sends the rest and rotates the log (a rename through
/// sshfs); B ends with exactly A's tree.
#[test]
fn torn_push_and_log_rotation_over_sshfs() {
    let started = Instant::now();
    let Some(mut rig) = Rig::new("sshfs::torn_push_and_log_rotation_over_sshfs") else { return };
    let (a, b, mnt) = (&rig.a, &rig.b, rig.mnt.clone());

    // Enough versions for more than one log segment (4 MiB): long paths make big records.
    let src = a.scratch("src");
    let long = "l".repeat(240);
    let mut files = Vec::new();
    for i in 0..1800 {
        let mut rel: String = (0..7).map(|k| format!("{long}{k}/")).collect();
        rel.push_str(&format!("{long}{:02}/{}{i:05}", i % 16, "n".repeat(240)));
        let p = src.join(&rel);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir source");
        fs::write(&p, format!("file {i} of the torn push test\n")).expect("write source");
        files.push(format!("src/{rel}"));
    }
    let imported = text(&a.ok(&["import", src.to_str().expect("utf-8 path"), "src"]));
    let versions: usize = imported
        .strip_prefix("imported src: ")
        .and_then(|r| r.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("import output: {imported}"));
    let tree_a = a.ok(&["ls", "-R"]);
    assert_eq!(text(&tree_a).lines().count(), 1800 + 1 + 7 + 16, "A's tree after the import");

    // Push, and drop the connection (kill sshfs) once part of the log has arrived.
    let mut push = a
        .cmd(&["push"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn push");
    let start = Instant::now();
    let mut dropped_at = None;
    while push.try_wait().expect("wait push").is_none() {
        let len = pushed_latest(&b.dir).and_then(|p| fs::metadata(p).ok()).map_or(0, |m| m.len());
        if len > 64 << 10 {
            rig.server.kill_sshfs(&mnt);
            dropped_at = Some(len);
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "push did not finish");
        std::thread::sleep(Duration::from_millis(1));
    }
    let start = Instant::now();
    while push.try_wait().expect("wait push").is_none() {
        if start.elapsed() > Duration::from_secs(30) {
            let _ = push.kill();
            panic!("push hung after its sshfs connection dropped");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = push.wait_with_output().expect("push output");
    let err = text(&out.stderr);
    assert!(!err.contains("panicked") && !err.contains("internal error"), "push panicked: {err}");
    let torn = out.status.code() != Some(0);
    let torn_bytes = pushed_latest(&b.dir).map(|p| fs::read(p).expect("read B's log")).unwrap_or_default();
    let torn_len = torn_bytes.len();
    let mid_record = complete_records_end(&torn_bytes) < torn_len;
    if torn {
        eprintln!("sshfs: the torn push said: {}", err.trim_end());
        assert!(out.status.code() == Some(1) || out.status.code() == Some(2), "push: {:?} {err}", out.status);
        assert_eq!(err.trim_end().lines().count(), 1, "one line per failed peer: {err}");
        assert!(
            err.contains("peer b") || err.contains(&*mnt.to_string_lossy()),
            "the error should name peer b or its path: {err}"
        );
        // B applies the complete records it has, never the torn one.
        let out = b.run(&["ls", "-R"]);
        assert_code(&out, 0, "B ls -R with a torn log");
        assert_eq!(text(&out.stderr), "", "B warned about a torn tail (it must just wait for the rest)");
        let partial = text(&out.stdout);
        let tree_a_text = text(&tree_a);
        let known: std::collections::HashSet<&str> = tree_a_text.lines().collect();
        assert!(partial.lines().all(|l| known.contains(l)), "B lists paths A never had: {partial}");
        let n = partial.lines().count();
        assert!(n > 0 && n < known.len(), "B lists {n} of {} entries from a torn log", known.len());
    } else {
        eprintln!("sshfs: the push finished before the connection dropped (dropped at {dropped_at:?}); no torn tail");
        rig.server.kill_sshfs(&mnt);
    }

    // The dead mount goes, nothing appears in the mount point; remount and push again.
    assert!(rig.server.unmount(&mnt), "could not unmount the dead sshfs at {}", mnt.display());
    assert_eq!(dir_entries(&mnt), Vec::<String>::new(), "mount point not empty after unmount");
    rig.server.mount(&b.dir, &mnt);
    let out = a.run(&["push"]);
    assert_code(&out, 0, "push after remount");
    let sent = pushed_to(&out, "b");
    assert!(if torn { sent == versions } else { sent == 0 }, "push after remount sent {sent} of {versions}");
    let latest = pushed_latest(&b.dir).expect("B has A's log");
    let segments = dir_entries(latest.parent().expect("updates dir"));
    assert!(segments.len() >= 2, "a log over 4 MiB should have been rotated: {segments:?}");
    assert_eq!(temp_files(&b.dir), Vec::<PathBuf>::new(), "temp files left in B");

    // B has exactly A's tree, no warnings, and reads pull the content (from A, locally).
    let out = b.run(&["ls", "-R"]);
    assert_code(&out, 0, "B ls -R");
    assert_eq!(text(&out.stderr), "", "B's receive complained");
    assert_eq!(text(&out.stdout), text(&tree_a), "B's tree differs from A's");
    for i in [0, 917, 1799] {
        assert_eq!(b.read(&files[i]), format!("file {i} of the torn push test\n").into_bytes(), "B's {}", files[i]);
    }
    let out = a.run(&["push"]);
    assert_code(&out, 0, "third push");
    assert_eq!(pushed_to(&out, "b"), 0, "nothing new to push: {}", text(&out.stdout));
    // B has only what it read; mirror the rest (from A, locally), then everything verifies.
    let out = b.run(&["mirror"]);
    assert_code(&out, 0, "B mirror");
    let out = b.run(&["verify"]);
    assert_code(&out, 0, "verify B");

    drop(rig.server);
    println!(
        "sshfs: {versions} versions pushed over sshfs into {} log segments; {}; {:.1} s",
        segments.len(),
        if torn {
            format!(
                "connection dropped at {} bytes, log cut at {torn_len} bytes ({}) repaired",
                dropped_at.unwrap_or(0),
                if mid_record { "mid-record" } else { "on a record boundary" }
            )
        } else {
            "push finished before the drop (no torn tail)".to_string()
        },
        started.elapsed().as_secs_f64()
    );
}

/// A mirror through sshfs whose connection drops half way: a clear error naming the peer,
/// nothing bad stored, and after a remount the next mirror completes.
#[test]
fn mirror_interrupted_by_unmount_resumes_after_remount() {
    let Some(mut rig) = Rig::new("sshfs::mirror_interrupted_by_unmount_resumes_after_remount") else { return };
    let (a, b, mnt) = (&rig.a, &rig.b, rig.mnt.clone());
    // B holds 32 MiB of incompressible content (~256 blocks) and tells A about it.
    let src = b.scratch("big");
    let mut contents = Vec::new();
    for i in 0..8u64 {
        let data = noise(4 << 20, 1000 + i);
        fs::write(src.join(format!("f{i}")), &data).expect("write source");
        contents.push(data);
    }
    b.ok(&["import", src.to_str().expect("utf-8 path"), "big"]);
    assert_code(&b.run(&["push"]), 0, "B push into A");
    let before = a.block_count();

    let mut mirror = a
        .cmd(&["mirror"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mirror");
    let start = Instant::now();
    let mut dropped = false;
    while mirror.try_wait().expect("wait mirror").is_none() {
        if a.block_count() > before + 20 {
            rig.server.kill_sshfs(&mnt);
            dropped = true;
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "mirror did not progress");
        std::thread::sleep(Duration::from_millis(2));
    }
    let out = mirror.wait_with_output().expect("mirror output");
    let err = text(&out.stderr);
    assert!(!err.contains("panicked") && !err.contains("internal error"), "mirror panicked: {err}");
    if dropped && out.status.code() != Some(0) {
        assert!(matches!(out.status.code(), Some(1) | Some(2)), "mirror exit {:?}: {err}", out.status);
        assert!(err.contains("peer b") || err.contains("not found on peers: b"), "error should name peer b: {err}");
        assert!(err.lines().count() <= 12, "a flood of error lines: {err}");
    }
    // Whatever A stored is sound.
    assert_eq!(temp_files(&a.dir).len(), 0, "temp files left in A");
    let out = a.run(&["verify"]);
    assert!(!text(&out.stdout).contains("corrupt-block"), "A stored a bad block: {}", text(&out.stdout));

    assert!(rig.server.unmount(&mnt), "could not unmount the dead sshfs");
    rig.server.mount(&b.dir, &mnt);
    let out = a.run(&["mirror"]);
    assert_code(&out, 0, "mirror after remount");
    for (i, data) in contents.iter().enumerate() {
        assert_eq!(&a.read(&format!("big/f{i}")), data, "A's big/f{i}");
    }
    assert_code(&a.run(&["verify"]), 0, "verify A after the mirror");
    println!(
        "sshfs: mirror interrupted after {} blocks (dropped: {dropped}), resumed and completed",
        a.block_count() - before
    );
}
