//! The FUSE mount, through real kernel mounts: round trips between the mount and the CLI,
//! every write operation, editors' save patterns, history with ls/cat/rm, conflicts
//! resolved with rm/mv and followed by a peer, pulling every block from a peer with `cat`,
//! freshness of changes made elsewhere, and a kill -9 of the mount. Where /dev/fuse or
//! fusermount3 is missing, each test prints why and passes without checking.

use crate::util::*;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

macro_rules! need_fuse {
    () => {
        if let Some(why) = fuse_missing() {
            eprintln!("skipping: {why}");
            return;
        }
    };
}

fn errno_of(r: std::io::Result<impl Sized>) -> i32 {
    match r {
        Ok(_) => 0,
        Err(e) => e.raw_os_error().unwrap_or(-1),
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    v.sort();
    v
}

fn link(x: &TestVolume, xn: &str, y: &TestVolume, yn: &str) {
    x.ok(&["peer", "add", yn, s(&y.dir)]);
    y.ok(&["peer", "add", xn, s(&x.dir)]);
}

#[test]
fn files_round_trip_between_the_mount_and_the_cli() {
    need_fuse!();
    let v = TestVolume::new(&[]);
    let big = noise(3 << 20, 7);
    v.write("cli/small.txt", b"from the cli\n");
    v.write("cli/big.bin", &big);
    let m = Mounted::new(&v, "mnt");
    assert_eq!(fs::read(m.p("cli/small.txt")).unwrap(), b"from the cli\n");
    assert_eq!(fs::read(m.p("cli/big.bin")).unwrap(), big, "multi-block file through the mount");
    // Random reads touch only their blocks, and give the right bytes.
    let mut f = fs::File::open(m.p("cli/big.bin")).unwrap();
    for &off in &[0u64, 1, 131_071, 1 << 20, (3 << 20) - 10] {
        let mut buf = [0u8; 10];
        f.seek(SeekFrom::Start(off)).unwrap();
        let n = f.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], &big[off as usize..off as usize + n], "read at {off}");
    }
    drop(f);
    // Written through the mount, read through the CLI.
    let other = noise(5 << 20, 9);
    fs::create_dir_all(m.p("mnt/deep/er")).unwrap();
    fs::write(m.p("mnt/deep/er/other.bin"), &other).unwrap();
    fs::write(m.p("mnt/empty"), b"").unwrap();
    assert_eq!(v.read("mnt/deep/er/other.bin"), other);
    assert_eq!(v.read("mnt/empty"), b"");
    // A file written through the mount and read back through it is the same too.
    assert_eq!(fs::read(m.p("mnt/deep/er/other.bin")).unwrap(), other);
    assert_eq!(names(&m.dir), [".globofs", "cli", "mnt"]);
    m.unmount();
    let out = v.run(&["verify"]);
    assert!(out.status.success(), "verify: {}", text(&out.stdout));
    // Export of what the mount wrote equals the bytes written.
    let dest = v.scratch("export");
    v.ok(&["export", "mnt", s(&dest.join("mnt"))]);
    assert_eq!(fs::read(dest.join("mnt/deep/er/other.bin")).unwrap(), other);
}

#[test]
fn every_write_operation_becomes_versions() {
    need_fuse!();
    let v = TestVolume::new(&[]);
    let m = Mounted::new(&v, "mnt");
    // create + write + close: one version.
    fs::write(m.p("a.txt"), b"one\n").unwrap();
    assert_eq!(log_ids(&v, "a.txt").len(), 1, "one version per close");
    // fsync stores the content while the file stays open.
    let mut f = fs::OpenOptions::new().append(true).open(m.p("a.txt")).unwrap();
    f.write_all(b"two\n").unwrap();
    f.sync_all().unwrap();
    assert_eq!(v.read("a.txt"), b"one\ntwo\n", "fsync stored the open file");
    drop(f);
    assert_eq!(log_ids(&v, "a.txt").len(), 2, "close after fsync adds nothing");
    // The writer sees its own writes before closing; other readers through the mount too.
    let mut f = fs::OpenOptions::new().read(true).write(true).open(m.p("a.txt")).unwrap();
    f.seek(SeekFrom::End(0)).unwrap();
    f.write_all(b"three\n").unwrap();
    assert_eq!(fs::read(m.p("a.txt")).unwrap(), b"one\ntwo\nthree\n");
    // Not stored before close: the CLI run here is a child process, and its closing of the
    // descriptor it inherited is not the writer's close.
    assert_eq!(v.read("a.txt"), b"one\ntwo\n", "not stored before close");
    assert_eq!(names(&m.p(".globofs/history/a.txt")).len(), 2, "not stored before close");
    drop(f);
    assert_eq!(v.read("a.txt"), b"one\ntwo\nthree\n");
    // truncate: shrink, and grow with zeros.
    fs::OpenOptions::new().write(true).open(m.p("a.txt")).unwrap().set_len(3).unwrap();
    assert_eq!(v.read("a.txt"), b"one");
    let f = fs::OpenOptions::new().write(true).open(m.p("a.txt")).unwrap();
    f.set_len(6).unwrap();
    drop(f);
    assert_eq!(v.read("a.txt"), b"one\0\0\0");
    // truncate(2) on a path, without opening it.
    Command::new("truncate").args(["-s", "2"]).arg(m.p("a.txt")).status().unwrap();
    assert_eq!(v.read("a.txt"), b"on");
    // chmod and utimens.
    fs::set_permissions(m.p("a.txt"), fs::Permissions::from_mode(0o600)).unwrap();
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_500_000_000);
    fs::File::options().write(true).open(m.p("a.txt")).unwrap().set_modified(when).unwrap();
    let head = &json(&v.ok(&["--json", "log", "a.txt"]))[0];
    assert_eq!(head["mode"], "0600", "chmod stored: {head}");
    let meta = fs::metadata(m.p("a.txt")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
    // The kernel may cache the old attributes for up to a second.
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(fs::metadata(m.p("a.txt")).unwrap().mtime(), 1_500_000_000, "utimens stored");
    // mkdir, symlink, rename of a file and of a directory, unlink, rmdir.
    fs::create_dir(m.p("d")).unwrap();
    fs::write(m.p("d/f"), b"in d").unwrap();
    std::os::unix::fs::symlink("d/f", m.p("link")).unwrap();
    assert_eq!(fs::read_link(m.p("link")).unwrap(), Path::new("d/f"));
    assert_eq!(fs::read(m.p("link")).unwrap(), b"in d", "symlink followed inside the mount");
    fs::rename(m.p("d/f"), m.p("d/g")).unwrap();
    assert_eq!(v.read("d/g"), b"in d");
    assert_eq!(v.run(&["read", "d/f"]).status.code(), Some(2), "the old name is gone");
    fs::rename(m.p("d"), m.p("e")).unwrap();
    assert_eq!(names(&m.p("e")), ["g"]);
    assert_eq!(v.read("e/g"), b"in d");
    assert_eq!(errno_of(fs::remove_dir(m.p("e"))), libc::ENOTEMPTY);
    fs::remove_file(m.p("e/g")).unwrap();
    fs::remove_dir(m.p("e")).unwrap();
    assert!(!m.p("e").exists());
    assert_eq!(v.run(&["read", "e/g"]).status.code(), Some(2));
    assert_eq!(log_ids(&v, "e/g").len(), 2, "the removal is a tombstone version");
    // Rename over an existing file replaces it; RENAME_NOREPLACE semantics via `mv -n`.
    fs::write(m.p("x"), b"x").unwrap();
    fs::write(m.p("y"), b"y").unwrap();
    fs::rename(m.p("x"), m.p("y")).unwrap();
    assert_eq!(v.read("y"), b"x");
    assert_eq!(fs::read(m.p("y")).unwrap(), b"x");
    // Errors users see.
    assert_eq!(errno_of(fs::remove_file(m.p("nope"))), libc::ENOENT);
    assert_eq!(errno_of(fs::create_dir(m.p("y"))), libc::EEXIST);
    assert_eq!(errno_of(fs::hard_link(m.p("y"), m.p("z"))), libc::EPERM);
    assert_eq!(errno_of(fs::write(m.p(".globofs/x"), b"")), libc::EROFS);
    assert_eq!(errno_of(fs::remove_dir(m.p(".globofs/history"))), libc::EROFS);
    assert_eq!(errno_of(fs::rename(m.p("y"), m.p(".globofs/peers/y"))), libc::EROFS);
    assert_eq!(errno_of(fs::read_dir(m.p("y"))), libc::ENOTDIR);
    let log = m.unmount();
    assert!(!log.contains("panicked"), "{log}");
    assert!(v.run(&["verify"]).status.success());
}

#[test]
fn editors_save_patterns_keep_every_version() {
    need_fuse!();
    let v = TestVolume::new(&[]);
    let m = Mounted::new(&v, "mnt");
    fs::write(m.p("notes.txt"), b"draft 1\n").unwrap();
    fs::set_permissions(m.p("notes.txt"), fs::Permissions::from_mode(0o640)).unwrap();
    // vim/emacs style: write a temp file, rename it over the original.
    for i in 2..=4 {
        let tmp = m.p(&format!(".notes.txt.swp{i}"));
        fs::write(&tmp, format!("draft {i}\n")).unwrap();
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o640)).unwrap();
        fs::rename(&tmp, m.p("notes.txt")).unwrap();
        assert_eq!(fs::read(m.p("notes.txt")).unwrap(), format!("draft {i}\n").as_bytes());
    }
    // nano/gedit style: truncate and rewrite in place.
    for i in 5..=6 {
        let mut f = fs::OpenOptions::new().write(true).truncate(true).open(m.p("notes.txt")).unwrap();
        // The release of the previous save's handle arrives meanwhile: it must not store
        // the file truncated and not yet rewritten.
        std::thread::sleep(Duration::from_millis(100));
        f.write_all(format!("draft {i}, longer than before\n").as_bytes()).unwrap();
    }
    assert_eq!(v.read("notes.txt"), b"draft 6, longer than before\n");
    assert_eq!(names(&m.dir), [".globofs", "notes.txt"], "no temp file left");
    // One version per save: create, chmod, 3 renames over it, 2 rewrites in place (an
    // O_TRUNC open stores no empty version first).
    assert_eq!(log_ids(&v, "notes.txt").len(), 7, "{}", text(&v.ok(&["log", "notes.txt"])));
    // Every save is a version whose content reads back.
    let ids = log_ids(&v, "notes.txt");
    let contents: Vec<Vec<u8>> = ids.iter().map(|id| v.read(&format!("notes.txt@{id}"))).collect();
    for i in 1..=4 {
        assert!(contents.contains(&format!("draft {i}\n").into_bytes()), "draft {i} kept");
    }
    assert!(contents.contains(&b"draft 5, longer than before\n".to_vec()));
    let head = &json(&v.ok(&["--json", "log", "notes.txt"]))[0];
    assert_eq!(head["mode"], "0640");
    m.unmount();
}

#[test]
fn history_is_browsable_read_only_and_rm_prunes() {
    need_fuse!();
    let v = TestVolume::new(&[]);
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(v.write("docs/r.txt", format!("revision {i}\n").as_bytes()));
    }
    v.ok(&["rm", "docs/r.txt"]);
    let m = Mounted::new(&v, "mnt");
    assert!(!m.p("docs/r.txt").exists());
    assert_eq!(names(&m.p(".globofs")), ["history", "peers", "volume"]);
    assert_eq!(names(&m.p(".globofs/history")), ["docs"]);
    let hist = m.p(".globofs/history/docs/r.txt");
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(names(&hist), sorted, "every version with content is listed (a deleted file too)");
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(fs::read(hist.join(id)).unwrap(), format!("revision {i}\n").as_bytes());
        let mode = fs::metadata(hist.join(id)).unwrap().permissions().mode();
        assert_eq!(mode & 0o222, 0, "versions show read-only");
    }
    // cd into it works like any directory.
    let out = Command::new("sh").arg("-c").arg(format!("cd '{}' && cat {}", hist.display(), ids[1])).output().unwrap();
    assert_eq!(out.stdout, b"revision 1\n");
    assert_eq!(errno_of(fs::OpenOptions::new().write(true).open(hist.join(&ids[0]))), libc::EROFS);
    assert_eq!(errno_of(fs::write(hist.join("new"), b"x")), libc::EROFS);
    // rm of an old version prunes it; the CLI agrees.
    fs::remove_file(hist.join(&ids[0])).unwrap();
    assert!(!log_ids(&v, "docs/r.txt").contains(&ids[0]));
    assert!(!names(&hist).contains(&ids[0]));
    // The current version is refused, with the reason in the mount's log.
    v.write("docs/r.txt", b"back\n");
    let head = log_ids(&v, "docs/r.txt")[0].clone();
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(errno_of(fs::remove_file(hist.join(&head))), libc::EPERM);
    assert!(log_ids(&v, "docs/r.txt").contains(&head));
    let log = m.unmount();
    assert!(log.contains("current version"), "reason logged: {log}");
}

/// A (`a`) and B (`b`) with a conflict on `f`: A's local version, B's as the conflict file.
fn conflicted() -> (TestVolume, TestVolume) {
    let (a, b) = (TestVolume::named("a"), TestVolume::named("b"));
    link(&a, "a", &b, "b");
    a.write("f", b"base\n");
    a.ok(&["push"]);
    b.ok(&["mirror"]);
    a.write("f", b"edit on a\n");
    b.write("f", b"edit on b\n");
    b.ok(&["push"]);
    a.ok(&["mirror"]);
    (a, b)
}

#[test]
fn conflict_files_resolve_with_rm_and_mv_and_peers_follow() {
    need_fuse!();
    for how in ["rm", "mv"] {
        let (a, b) = conflicted();
        let m = Mounted::new(&a, "mnt");
        assert_eq!(names(&m.dir), [".f.conflict-b", ".globofs", "f"], "{how}: conflict shown");
        assert_eq!(fs::read(m.p(".f.conflict-b")).unwrap(), b"edit on b\n");
        assert_eq!(fs::read(m.p("f")).unwrap(), b"edit on a\n");
        assert_eq!(errno_of(fs::write(m.p(".f.conflict-b"), b"x")), libc::EROFS, "conflict files are read-only");
        let want: &[u8] = if how == "rm" {
            fs::remove_file(m.p(".f.conflict-b")).unwrap();
            b"edit on a\n"
        } else {
            fs::rename(m.p(".f.conflict-b"), m.p("f")).unwrap();
            b"edit on b\n"
        };
        assert_eq!(names(&m.dir), [".globofs", "f"], "{how}: resolved");
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(fs::read(m.p("f")).unwrap(), want);
        m.unmount();
        a.ok(&["push"]);
        b.ok(&["mirror"]);
        assert_eq!(b.read("f"), want, "{how}: the peer follows");
        let st = json(&b.ok(&["--json", "status"]));
        assert_eq!(st["conflicts"].as_array().map(|c| c.len()), Some(0), "{how}: no conflict left on b: {st}");
        assert_eq!(log_ids(&a, "f")[0], log_ids(&b, "f")[0], "{how}: same head on both");
    }
}

#[test]
fn cat_through_the_mount_pulls_every_block_from_a_peer() {
    need_fuse!();
    let (a, b) = (TestVolume::named("a"), TestVolume::named("b"));
    link(&a, "a", &b, "b");
    let src = a.scratch("src");
    let mut files = Vec::new();
    for i in 0..40 {
        let data = noise(1000 + i * 20_000, i as u64 + 1);
        let rel = format!("t/d{}/f{i}.bin", i % 4);
        fs::create_dir_all(src.join(&rel).parent().unwrap()).unwrap();
        fs::write(src.join(&rel), &data).unwrap();
        files.push((rel, data));
    }
    a.ok(&["import", s(&src.join("t")), "t"]);
    a.ok(&["push"]);
    let before = b.block_count();
    let m = Mounted::new(&b, "mnt");
    let peers = names(&m.p(".globofs/peers"));
    assert_eq!(peers, ["a"]);
    let state = fs::read_to_string(m.p(".globofs/peers/a")).unwrap();
    assert!(state.contains("state: reachable"), "{state}");
    // `cat **/* > /dev/null`
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("cd '{}' && find t -type f -exec cat {{}} + >/dev/null", m.dir.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "cat: {}", text(&out.stderr));
    m.unmount();
    let pulled = b.block_count() - before;
    eprintln!("cat through the mount pulled {pulled} blocks");
    assert!(pulled > 0);
    // A goes away: B has everything.
    fs::rename(&a.dir, a.tmp.path().join("gone")).unwrap();
    for (rel, data) in &files {
        assert_eq!(&b.read(rel), data, "{rel} from b alone");
    }
    let st = json(&b.ok(&["--json", "status"]));
    assert_eq!(st["missing_blocks"].as_u64(), Some(0), "{st}");
}

#[test]
fn a_missing_block_is_an_io_error_naming_it_in_the_log() {
    need_fuse!();
    let (a, b) = (TestVolume::named("a"), TestVolume::named("b"));
    link(&a, "a", &b, "b");
    a.write("f", &noise(200_000, 3));
    a.ok(&["push"]);
    b.ok(&["ls"]);
    fs::rename(&a.dir, a.tmp.path().join("gone")).unwrap();
    let m = Mounted::new(&b, "mnt");
    assert_eq!(fs::metadata(m.p("f")).unwrap().len(), 200_000, "known without its blocks");
    assert_eq!(errno_of(fs::read(m.p("f"))), libc::EIO);
    let log = m.unmount();
    assert!(log.contains("block") && log.contains("missing") && log.contains('f'), "log names it: {log}");
}

#[test]
fn changes_from_the_cli_and_from_peers_show_within_two_seconds() {
    need_fuse!();
    let (a, b) = (TestVolume::named("a"), TestVolume::named("b"));
    link(&a, "a", &b, "b");
    let m = Mounted::new(&b, "mnt");
    let wait_for = |path: &Path, want: &[u8]| -> Duration {
        let t = Instant::now();
        while fs::read(path).ok().as_deref() != Some(want) {
            assert!(t.elapsed() < Duration::from_secs(2), "{} did not show within 2 s", path.display());
            std::thread::sleep(Duration::from_millis(20));
        }
        t.elapsed()
    };
    // Listed (and so cached by the kernel) before the change.
    assert_eq!(names(&m.dir), [".globofs"]);
    b.write("local.txt", b"by the cli\n");
    let cli = wait_for(&m.p("local.txt"), b"by the cli\n");
    b.write("local.txt", b"changed by the cli\n");
    let cli2 = wait_for(&m.p("local.txt"), b"changed by the cli\n");
    a.write("pushed.txt", b"from a\n");
    a.ok(&["push"]);
    let peer = wait_for(&m.p("pushed.txt"), b"from a\n");
    a.write("pushed.txt", b"from a, again\n");
    a.ok(&["push"]);
    let peer2 = wait_for(&m.p("pushed.txt"), b"from a, again\n");
    eprintln!("shown after: cli write {cli:?}, cli change {cli2:?}, peer push {peer:?}, peer change {peer2:?}");
    m.unmount();
}

#[test]
fn kill_9_of_the_mount_keeps_every_closed_file() {
    need_fuse!();
    let v = TestVolume::new(&[]);
    let mut written = Vec::new();
    for round in 0..3 {
        let mut m = Mounted::new(&v, &format!("mnt{round}"));
        for i in 0..10 {
            let data = noise(10_000 + i * 3000, (round * 100 + i) as u64);
            let rel = format!("r{round}/f{i}");
            fs::create_dir_all(m.p(&format!("r{round}"))).unwrap();
            fs::write(m.p(&rel), &data).unwrap();
            written.push((rel, data));
        }
        // One file still open and half written when the mount dies.
        let mut open = fs::File::create(m.p(&format!("r{round}/open"))).unwrap();
        open.write_all(b"not closed").unwrap();
        let mut child = m.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        drop(open);
        let _ = Command::new("fusermount3").arg("-uz").arg(&m.dir).output();
    }
    for (rel, data) in &written {
        assert_eq!(&v.read(rel), data, "{rel} survived kill -9");
    }
    let out = v.run(&["verify"]);
    assert!(out.status.success(), "verify after kill -9: {}", text(&out.stdout));
    eprintln!("kill -9 of the mount: {} closed files, all read back", written.len());
}

#[test]
fn mount_runs_in_the_background_and_fusermount_stops_it() {
    need_fuse!();
    let v = TestVolume::new(&[]);
    v.write("hello", b"hi\n");
    let mnt = v.scratch("mnt");
    let out = v.run(&["mount", s(&mnt)]);
    assert!(out.status.success(), "mount: {}", text(&out.stderr));
    assert!(text(&out.stdout).contains("mounted"), "{}", text(&out.stdout));
    assert!(is_mounted(&mnt));
    assert_eq!(fs::read(mnt.join("hello")).unwrap(), b"hi\n");
    let u = Command::new("fusermount3").arg("-u").arg(&mnt).output().unwrap();
    assert!(u.status.success(), "{}", text(&u.stderr));
    assert!(!is_mounted(&mnt));
    // Bad input: a clear error, nothing mounted.
    let out = v.run(&["mount", s(&v.tmp.path().join("no-such-dir"))]);
    assert_error(&out, "no-such-dir");
    let file = v.tmp.path().join("plain-file");
    fs::write(&file, b"").unwrap();
    let out = v.run(&["mount", s(&file), "--foreground"]);
    assert_error(&out, "plain-file");
}

#[test]
fn a_random_read_pulls_only_the_blocks_it_touches() {
    need_fuse!();
    let (a, b) = (TestVolume::named("a"), TestVolume::named("b"));
    link(&a, "a", &b, "b");
    let data = noise(4 << 20, 5);
    a.write("big", &data);
    a.ok(&["push"]);
    b.ok(&["ls"]);
    let blocks = json(&a.ok(&["--json", "log", "big"]))[0]["blocks"].as_u64().unwrap();
    assert!(blocks >= 8, "{blocks} blocks");
    let before = b.block_count();
    let m = Mounted::new(&b, "mnt");
    let mut f = fs::File::open(m.p("big")).unwrap();
    let mut buf = [0u8; 100];
    f.seek(SeekFrom::Start(2 << 20)).unwrap();
    f.read_exact(&mut buf).unwrap();
    assert_eq!(&buf[..], &data[2 << 20..(2 << 20) + 100]);
    drop(f);
    m.unmount();
    let pulled = b.block_count() - before;
    eprintln!("a 100-byte read in a {blocks}-block file pulled {pulled} block(s)");
    // The kernel reads ahead (up to 1 MiB), so a few neighbours may come along; never all.
    assert!(pulled >= 1 && (pulled as u64) < blocks / 2, "pulled {pulled} of {blocks}");
}

#[test]
fn ctrl_c_unmounts_a_foreground_mount() {
    need_fuse!();
    let v = TestVolume::new(&[]);
    let mut m = Mounted::new(&v, "mnt");
    fs::write(m.p("kept"), b"stored before the signal").unwrap();
    let mut child = m.child.take().unwrap();
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "the mount did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit after SIGINT: {status}: {}", m.log_text());
    assert!(!is_mounted(&m.dir), "unmounted");
    assert_eq!(v.read("kept"), b"stored before the signal");
}

#[test]
fn inodes_the_kernel_forgets_come_back_on_the_next_lookup() {
    need_fuse!();
    let v = TestVolume::new(&[]);
    for i in 0..50 {
        v.write(&format!("d/f{i}"), format!("file {i}\n").as_bytes());
    }
    let m = Mounted::new(&v, "mnt");
    let forget_all = || {
        // Dropping the dentry and inode caches makes the kernel forget every inode.
        let _ = Command::new("sync").status();
        if fs::write("/proc/sys/vm/drop_caches", b"2").is_err() {
            eprintln!("cannot drop caches (not root): forgets are not forced");
        }
    };
    assert_eq!(names(&m.p("d")).len(), 50);
    forget_all();
    assert_eq!(names(&m.p("d")).len(), 50, "listed again after the kernel forgot them");
    for i in 0..50 {
        assert_eq!(fs::read(m.p(&format!("d/f{i}"))).unwrap(), format!("file {i}\n").as_bytes());
    }
    fs::rename(m.p("d"), m.p("e")).unwrap();
    forget_all();
    assert_eq!(fs::read(m.p("e/f7")).unwrap(), b"file 7\n");
    fs::write(m.p("e/new"), b"new").unwrap();
    forget_all();
    assert_eq!(fs::metadata(m.p("e/new")).unwrap().len(), 3);
    let log = m.unmount();
    assert!(!log.contains("panicked"), "{log}");
    assert_eq!(v.read("e/new"), b"new");
}

/// Reads `path` whole through one descriptor: (size fstat gave at open, bytes read).
fn read_with_size(path: &Path) -> std::io::Result<(u64, Vec<u8>)> {
    let mut f = fs::File::open(path)?;
    let size = f.metadata()?.len();
    let mut data = Vec::new();
    f.read_to_end(&mut data)?;
    Ok((size, data))
}

/// Readers of a file through the mount while it is replaced, by the CLI on the same
/// volume and by pushes from a peer: every read returns exactly one version's bytes, and
/// the size fstat gives on the descriptor is that version's size.
#[test]
fn every_read_is_one_version_while_the_file_is_replaced() {
    need_fuse!();
    let (a, b) = (TestVolume::named("a"), TestVolume::named("b"));
    link(&a, "a", &b, "b");
    let contents: Vec<Vec<u8>> = [30_000, 120_000, 270_000, 480_000].iter().map(|&n| noise(n, n as u64)).collect();
    b.write("f", &contents[0]);
    b.write("g", &contents[0]);
    a.ok(&["mirror"]);
    let m = Mounted::new(&b, "mnt");
    // A descriptor open across a replacement goes on reading the version it opened, whole,
    // with that version's size; a new open after the change shows the new one.
    let mut held = fs::File::open(m.p("f")).unwrap();
    let mut head = vec![0; 10];
    held.read_exact(&mut head).unwrap();
    b.write("f", &contents[3]);
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(held.metadata().unwrap().len(), contents[0].len() as u64, "fstat of the held descriptor");
    let mut rest = Vec::new();
    held.read_to_end(&mut rest).unwrap();
    assert!([head, rest].concat() == contents[0], "the held descriptor read another version");
    assert_eq!(read_with_size(&m.p("f")).unwrap(), (contents[3].len() as u64, contents[3].clone()));
    drop(held);
    let secs = if long_mode() { 40 } else { 8 };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // f: replaced by `globofs write` on the mounted volume; g: by pushes from peer a.
    let writers: Vec<_> = [("f", false), ("g", true)]
        .into_iter()
        .map(|(name, by_peer)| {
            let (stop, contents) = (stop.clone(), contents.clone());
            let vol = if by_peer { a.dir.clone() } else { b.dir.clone() };
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let run = |args: &[&str], input: &[u8]| {
                        let mut c = Command::new(bin())
                            .arg("-V")
                            .arg(&vol)
                            .args(args)
                            .stdin(std::process::Stdio::piped())
                            .stdout(std::process::Stdio::null())
                            .spawn()
                            .unwrap();
                        c.stdin.take().unwrap().write_all(input).unwrap();
                        assert!(c.wait().unwrap().success(), "{args:?}");
                    };
                    run(&["write", name], &contents[(n + 1) % contents.len()]);
                    if by_peer {
                        run(&["push"], b"");
                    }
                    n += 1;
                }
                n
            })
        })
        .collect();
    let (mut reads, mut wrong) = (0, Vec::new());
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(secs) {
        for name in ["f", "g"] {
            let (size, data) = read_with_size(&m.p(name)).unwrap();
            reads += 1;
            if !contents.contains(&data) || size != data.len() as u64 {
                wrong.push((name, size, data.len()));
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let versions: Vec<usize> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    eprintln!("{reads} reads while {versions:?} versions were made: {} wrong", wrong.len());
    assert!(wrong.is_empty(), "reads matching no version (file, fstat size, bytes read): {wrong:?}");
    m.unmount();
}

#[test]
fn mount_refuses_a_non_empty_directory_or_a_mount_point() {
    need_fuse!();
    let v = TestVolume::new(&[]);
    v.write("f", b"in the volume\n");
    let busy = v.scratch("busy");
    fs::write(busy.join("mine.txt"), b"mine\n").unwrap();
    for extra in [&[][..], &["--foreground"][..]] {
        let out = v.run(&[&["mount", s(&busy)][..], extra].concat());
        assert_error(&out, "is not empty");
        assert!(text(&out.stderr).contains(s(&busy)) && text(&out.stderr).contains("--allow-non-empty"));
        assert!(!is_mounted(&busy));
    }
    let file = v.tmp.path().join("plain-file");
    fs::write(&file, b"x").unwrap();
    assert_error(&v.run(&["mount", s(&file)]), "is not a directory");
    // --allow-non-empty mounts over it (in the background: the flag reaches the mount).
    let out = v.run(&["mount", s(&busy), "--allow-non-empty"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(is_mounted(&busy));
    assert_eq!(fs::read(busy.join("f")).unwrap(), b"in the volume\n");
    let _ = Command::new("fusermount3").arg("-u").arg(&busy).output();
    assert_eq!(fs::read(busy.join("mine.txt")).unwrap(), b"mine\n");
    // A mount point already in use is refused, whatever the flags.
    let m = Mounted::new(&v, "mnt");
    for extra in [&[][..], &["--allow-non-empty"][..]] {
        let out = v.run(&[&["mount", s(&m.dir)][..], extra].concat());
        assert_error(&out, "is already a mount point");
    }
    m.unmount();
}

/// The command line run inside a mount finds the volume (through `.globofs/volume`).
#[test]
fn the_cli_inside_the_mount_finds_the_volume() {
    need_fuse!();
    let v = TestVolume::new(&[]);
    v.write("d/a.txt", b"a\n");
    let m = Mounted::new(&v, "mnt");
    let marker = fs::read_to_string(m.p(".globofs/volume")).unwrap();
    assert_eq!(marker.trim_end(), s(&v.dir));
    let run = |args: &[&str]| {
        Command::new(bin()).current_dir(m.p("d")).args(args).env_remove("GLOBOFS_VOLUME").output().unwrap()
    };
    let out = run(&["ls", "d"]);
    assert!(out.status.success(), "ls inside the mount: {}", text(&out.stderr));
    assert!(text(&out.stdout).contains("a.txt"), "{}", text(&out.stdout));
    let out = run(&["log", "d/a.txt"]);
    assert!(out.status.success(), "log inside the mount: {}", text(&out.stderr));
    assert_eq!(errno_of(fs::write(m.p(".globofs/volume"), b"x")), libc::EROFS);
    m.unmount();
}
