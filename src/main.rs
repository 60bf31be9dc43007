//! The `globofs` command: parses arguments, calls the library, prints results. It never
//! touches the file system itself. Exit codes: 0 success, 1 problems found, 2 error.

#[macro_use]
mod cli;

use clap::{CommandFactory, Parser, Subcommand};
use globofs::config::{parse_duration, parse_size, ChunkMethod, Chunking};
use globofs::error::{Error, Result};
use globofs::manifest::{Kind, Timestamp, Version};
use globofs::paths::VolPath;
use globofs::retention::{self, Policy};
use globofs::tree::{self, Entry};
use globofs::volume::Volume;
use globofs::{events, export, gc, ingest, mount, peers, recover, sync, verify};
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "globofs",
    version,
    disable_version_flag = true,
    allow_external_subcommands = true,
    about = "Deduplicating, versioning file store over plain directories",
    after_help = "Any other NAME runs `globofs-NAME` from PATH, with GLOBOFS_VOLUME set to the volume.\n\nExample:\n  globofs init ~/vol && echo hi | globofs -V ~/vol write notes/hi.txt"
)]
struct Cli {
    /// Print the version.
    #[arg(long, action = clap::ArgAction::Version)]
    version: Option<bool>,
    /// The volume directory (default: $GLOBOFS_VOLUME, else the nearest volume above the
    /// working directory).
    #[arg(short = 'V', long = "volume", global = true, env = "GLOBOFS_VOLUME", value_name = "DIR")]
    volume: Option<PathBuf>,
    /// Machine-readable output (JSON) where the command reports something.
    #[arg(long, global = true)]
    json: bool,
    /// Print nothing on success but the data a command exists to print (read, ls, log,
    /// status, peer ls, --json); errors and warnings still print.
    #[arg(short = 'q', long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a volume in DIR (--recover: rebuild the lost config of the volume in DIR).
    #[command(after_help = "Example:\n  globofs init ~/vol --name laptop")]
    Init {
        /// The directory to make a volume of: new, or empty (see --force).
        dir: PathBuf,
        /// Node name (default: the host name; with --recover, the name its versions carry).
        #[arg(long)]
        name: Option<String>,
        /// Content-defined (cdc, the default) or fixed-size blocks.
        #[arg(long, value_parser = ["cdc", "fixed"])]
        chunking: Option<String>,
        /// Average (cdc) or exact (fixed) block size, e.g. 1MiB.
        #[arg(long, value_name = "SIZE")]
        block_size: Option<String>,
        /// DIR holds a volume whose local/config was lost: rebuild it (uuid from the peers'
        /// records, name and chunking from the manifests), writing nothing else.
        #[arg(long)]
        recover: bool,
        /// Make a volume of DIR even though it holds other files (they are left as they are).
        #[arg(long)]
        force: bool,
    },
    /// Make a copy of a volume (cp -a, a restored backup) a node of its own: a new uuid,
    /// all data and history kept; prints the `peer add` each peer must run.
    #[command(after_help = "Example:\n  globofs -V ~/vol2 reidentify --name laptop2")]
    Reidentify {
        /// A new node name.
        #[arg(long)]
        name: Option<String>,
        /// The volume was moved, not copied (the original no longer exists): keep the uuid.
        #[arg(long)]
        moved: bool,
        /// Give a new uuid even if this volume is not found to be a copy.
        #[arg(long)]
        force: bool,
    },
    /// Store stdin as a new version of PATH.
    #[command(after_help = "Example:\n  echo hello | globofs write notes/hello.txt")]
    Write {
        /// The path in the volume to write, e.g. notes/hello.txt.
        path: OsString,
    },
    /// Import a file or a tree; unchanged files are skipped.
    #[command(after_help = "Example:\n  globofs import ~/Documents docs")]
    Import {
        /// The file or directory to import, outside the volume.
        src: PathBuf,
        /// Where in the volume (default: the name of SRC, at the top).
        dest: Option<OsString>,
    },
    /// Print the content of PATH (or PATH@VERSION).
    #[command(after_help = "Example:\n  globofs read notes/hello.txt > hello.txt")]
    Read {
        /// A file in the volume, or PATH@VERSION for an older version (see `globofs log`).
        path: OsString,
    },
    /// Export a file or a tree (PATH or PATH@VERSION) to plain files at DEST.
    #[command(after_help = "Example:\n  globofs export docs /tmp/restored")]
    Export {
        /// A file or directory in the volume, or PATH@VERSION.
        path: OsString,
        /// The plain file or directory to create outside the volume.
        dest: PathBuf,
    },
    /// List a directory.
    #[command(after_help = "Example:\n  globofs ls -l docs")]
    Ls {
        /// The directory (or file) in the volume to list (default: the top).
        path: Option<OsString>,
        /// Long listing: mode, size, mtime.
        #[arg(short = 'l')]
        long: bool,
        /// Show hidden names (and conflict files).
        #[arg(short = 'a')]
        all: bool,
        /// Recurse into directories.
        #[arg(short = 'R')]
        recursive: bool,
    },
    /// Show the versions of PATH, newest first.
    #[command(after_help = "Example:\n  globofs log notes/hello.txt")]
    Log {
        /// The path in the volume whose history to show.
        path: OsString,
    },
    /// Remove PATH (a directory with -r); its history stays readable.
    #[command(after_help = "Example:\n  globofs rm notes/old.txt\n  globofs rm -r old-docs")]
    Rm {
        /// The file (or, with -r, directory) in the volume to remove.
        path: OsString,
        /// Remove a directory and everything beneath it.
        #[arg(short = 'r', long)]
        recursive: bool,
    },
    /// Move SRC to DST (into DST if it is a directory).
    #[command(after_help = "Example:\n  globofs mv docs/draft.txt docs/final.txt")]
    Mv {
        /// The file or directory in the volume to move.
        src: OsString,
        /// The new path, or an existing directory to move SRC into.
        dst: OsString,
    },
    /// Re-hash every block and check every manifest; --repair fixes them from peers.
    #[command(after_help = "Example:\n  globofs verify --repair")]
    Verify {
        /// Replace damaged or missing blocks and manifests with good copies from peers;
        /// move what has no good copy to local/quarantine/ and report what it affects.
        #[arg(long)]
        repair: bool,
    },
    /// Manage peers: other volumes reachable as directories.
    #[command(after_help = "Example:\n  globofs peer add server ~/mnt/server")]
    Peer {
        #[command(subcommand)]
        cmd: PeerCmd,
    },
    /// Append to each reachable peer's log every version it has not received.
    #[command(after_help = "Example (cron on a laptop):\n  globofs -q push --offline-ok")]
    Push {
        /// Peers to push to (default: all).
        names: Vec<String>,
        /// Exit 0 when the only failures are unreachable peers (not mounted, offline).
        #[arg(long)]
        offline_ok: bool,
    },
    /// Fetch every missing block of the heads (under PATH) from peers.
    #[command(after_help = "Example:\n  globofs mirror docs")]
    Mirror {
        /// Only the files under this path in the volume (default: everything).
        path: Option<OsString>,
    },
    /// Peers, pending pushes, missing blocks, conflicts.
    #[command(after_help = "Example:\n  globofs status --check || echo 'conflicts to resolve'")]
    Status {
        /// Exit 1 when there are unresolved conflicts.
        #[arg(long)]
        check: bool,
    },
    /// Settle a conflict: keep the local version or take the remote one.
    #[command(after_help = "Example:\n  globofs resolve docs/report.txt --keep remote")]
    Resolve {
        /// The conflicted path in the volume (see `globofs status`).
        path: OsString,
        /// Which version becomes the file.
        #[arg(long, value_parser = ["local", "remote"])]
        keep: String,
    },
    /// Make an old version (PATH@VERSION) the current one again, as a new version.
    #[command(after_help = "Example:\n  globofs restore notes/hello.txt@<VERSION>   (ids from `globofs log`)")]
    Restore {
        /// PATH@VERSION: the path in the volume and the version id to bring back.
        spec: OsString,
    },
    /// Remove old versions by the retention policy (the config's, or the flags'), under
    /// PATHs (default: everywhere); or remove one version, PATH@VERSION.
    #[command(after_help = "Example:\n  globofs prune --keep-last 5 --keep-within 6mo --dry-run docs")]
    Prune {
        /// Paths in the volume to prune under (default: everywhere), or one PATH@VERSION.
        paths: Vec<OsString>,
        /// Keep the newest N versions of each file.
        #[arg(long, value_name = "N")]
        keep_last: Option<u32>,
        /// Keep every version younger than DUR: a number and s, m (minutes), h, d, w, mo
        /// (30 days) or y (365 days), e.g. 30d, 12h, 6mo.
        #[arg(long, value_name = "DUR")]
        keep_within: Option<String>,
        /// Cap the bytes of old versions per file (e.g. 100MiB).
        #[arg(long, value_name = "SIZE")]
        max_size: Option<String>,
        /// List what would be pruned; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Delete the blocks no remaining version needs, and report the space freed.
    #[command(after_help = "Example:\n  globofs prune && globofs gc")]
    Gc,
    /// Show the volume as a file system at MOUNTPOINT (history under .globofs/history).
    #[command(after_help = "Example:\n  mkdir -p ~/mnt/vol && globofs mount ~/mnt/vol")]
    Mount {
        /// An empty directory to show the volume at.
        mountpoint: PathBuf,
        /// Stay in the foreground (Ctrl-C unmounts); otherwise run in the background.
        #[arg(long)]
        foreground: bool,
        /// Mount over a directory that holds files (hidden while mounted, not touched).
        #[arg(long)]
        allow_non_empty: bool,
    },
    /// Print the shell completion script for SHELL.
    #[command(after_help = "Example:\n  globofs completions bash > /etc/bash_completion.d/globofs")]
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    #[command(after_help = "Example:\n  globofs man > /usr/local/share/man/man1/globofs.1")]
    Man,
    /// Any other NAME: runs `globofs-NAME ARGS...` from PATH.
    #[command(external_subcommand)]
    External(Vec<OsString>),
}

#[derive(Subcommand)]
enum PeerCmd {
    /// Record the volume at PATH as peer NAME.
    #[command(after_help = "Example:\n  globofs peer add server ~/mnt/server")]
    Add {
        /// The name to call the peer by (its directory in this volume).
        name: String,
        /// Where the peer's volume is reached: a mounted directory (sshfs, NFS, a disk).
        path: PathBuf,
    },
    /// List peers: reachable or not, versions waiting to be pushed, last push.
    #[command(after_help = "Example:\n  globofs peer ls --json")]
    Ls,
    /// Forget peer NAME: stop all exchange with it.
    #[command(after_help = "Example:\n  globofs peer rm laptop --revoke")]
    Rm {
        /// The peer to forget (see `globofs peer ls`).
        name: String,
        /// Also revoke its node everywhere: this node and every peer it reaches (and theirs)
        /// refuse what it makes from now on, however it arrives. For good: a node trusted
        /// again joins under a new uuid (`globofs reidentify`).
        #[arg(long)]
        revoke: bool,
    },
}

fn main() -> ExitCode {
    // Die quietly on a closed pipe (`globofs read f | head`), like other Unix tools.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        eprintln!("globofs: internal error: {msg}{at}; please report it");
    }));
    let cli = Cli::parse();
    let json = cli.json;
    match std::panic::catch_unwind(|| run(cli)) {
        Ok(Ok(code)) => ExitCode::from(code),
        Ok(Err(e)) => {
            report_error(&e, json);
            ExitCode::from(2)
        }
        Err(_) => ExitCode::from(2),
    }
}

/// The one line of a failed command on stderr; under `--json`, a JSON object with the same
/// message and the exit code.
fn report_error(e: &Error, json: bool) {
    if json {
        eprintln!("{}", serde_json::json!({"error": e.to_string(), "exit_code": 2}));
    } else {
        eprintln!("globofs: {e}");
    }
}

fn vpath(s: &OsString) -> Result<VolPath> {
    VolPath::from_os(s)
}

/// Splits `PATH@VERSION`; an `@` not followed by a version id is part of the name.
fn split_version(s: &OsString) -> Result<(VolPath, Option<String>)> {
    let b = s.as_bytes();
    if let Some(i) = b.iter().rposition(|&c| c == b'@') {
        let id = String::from_utf8_lossy(&b[i + 1..]).into_owned();
        if globofs::ids::VersionId::parse(&id).is_some_and(|v| v.time().is_some()) {
            return Ok((VolPath::parse(&b[..i])?, Some(id)));
        }
    }
    Ok((VolPath::parse(b)?, None))
}

fn print_json(v: &impl serde::Serialize) -> Result<()> {
    let s = serde_json::to_string_pretty(v).map_err(|e| Error::Usage(e.to_string()))?;
    println!("{s}");
    Ok(())
}

/// `init`: a new volume in DIR (refusing a directory that holds other files unless
/// `--force`), or `--recover` of a lost config.
fn init(cli: &Cli) -> Result<u8> {
    let Cmd::Init { dir, name, chunking, block_size, recover, force } = &cli.cmd else { unreachable!("init") };
    let method = if chunking.as_deref() == Some("fixed") { ChunkMethod::Fixed } else { ChunkMethod::Cdc };
    let params = match block_size {
        Some(s) => {
            let n = parse_size(s).map_err(Error::Usage)?;
            Chunking::new(method, u32::try_from(n).map_err(|_| Error::Usage(format!("block size {s} is too large")))?)?
        }
        None if method == ChunkMethod::Fixed => Chunking::new(method, 1 << 20)?,
        None => Chunking::default(),
    };
    if *recover {
        let given = (chunking.is_some() || block_size.is_some()).then_some(params);
        let r = recover::recover(dir, name.clone(), given)?;
        if cli.json {
            print_json(&r)?;
        } else {
            for line in r.lines() {
                say!("{line}");
            }
        }
        return Ok(0);
    }
    crate::cli::rails::init_dir(dir, *force)?;
    let vol = Volume::init(dir, name.clone(), params)?;
    let c = vol.config();
    if cli.json {
        print_json(&serde_json::json!({"volume": vol.dir(), "name": c.name, "uuid": c.uuid}))?;
    } else {
        say!("initialized volume {} (node {}, uuid {})", vol.dir().display(), c.name, c.uuid);
    }
    Ok(0)
}

fn run(cli: Cli) -> Result<u8> {
    crate::cli::set_quiet(cli.quiet);
    match &cli.cmd {
        Cmd::Init { .. } => return init(&cli),
        Cmd::Completions { shell } => return crate::cli::shell::completions(Cli::command(), *shell).map(|()| 0),
        Cmd::Man => return crate::cli::shell::man(Cli::command()).map(|()| 0),
        Cmd::External(args) => return crate::cli::external::run(&Cli::command(), args, cli.volume.as_deref()),
        _ => {}
    }
    let vol = Volume::find(cli.volume.as_deref())?;
    let json = cli.json;
    let quiet = cli.quiet;
    if let Cmd::Reidentify { name, moved, force } = cli.cmd {
        let r = globofs::volume::reidentify(vol.dir(), name, moved, force)?;
        if json {
            print_json(&r)?;
        } else if moved {
            say!("{}: recorded as the place of node {} (uuid {})", vol.dir().display(), r.name, r.uuid);
        } else {
            say!(
                "{}: now node {} with uuid {} (was a copy of {}); data and history kept",
                vol.dir().display(),
                r.name,
                r.uuid,
                r.old_uuid
            );
            for c in &r.peer_commands {
                println!(
                    "peer {} must accept the new uuid: run `{}` (on its machine, with the path it reaches this volume by)",
                    c.peer, c.command
                );
            }
        }
        return Ok(0);
    }
    // A copy of a volume may be read, with a warning; anything that writes into it or into
    // its peers is refused until `reidentify` (docs/DESIGN.md, "Identity").
    let writes = match &cli.cmd {
        Cmd::Ls { .. } | Cmd::Read { .. } | Cmd::Export { .. } | Cmd::Log { .. } | Cmd::Status { .. } => false,
        Cmd::Peer { cmd: PeerCmd::Ls } => false,
        Cmd::Verify { repair } => *repair,
        _ => true,
    };
    if writes {
        vol.check_not_copy()?;
    } else if let Err(e) = vol.check_not_copy() {
        eprintln!("globofs: warning: {e}");
    }
    // Logs peers pushed into us are applied first, except when managing peers (a peer
    // being removed must not get its last word in) and in a copy (which writes nothing).
    if !matches!(cli.cmd, Cmd::Peer { .. }) && vol.check_not_copy().is_ok() {
        receive(&vol);
    }
    // A peer config that does not parse is said by every command; push, status and peer
    // ls say it in their report.
    if !matches!(cli.cmd, Cmd::Peer { .. } | Cmd::Push { .. } | Cmd::Status { .. }) {
        for b in peers::broken(&vol)? {
            eprintln!(
                "globofs: warning: peer {}: {}: {}; it is left out (its log is not applied): fix it or `globofs peer rm {}`",
                b.name,
                b.config.display(),
                b.reason,
                b.name
            );
        }
    }
    let committed = |paths: Vec<VolPath>| {
        for w in events::committed(&vol, &paths) {
            eprintln!("globofs: warning: {w}");
        }
    };
    match cli.cmd {
        Cmd::Init { .. } | Cmd::Reidentify { .. } | Cmd::Completions { .. } | Cmd::Man | Cmd::External(_) => {
            unreachable!("handled above")
        }
        Cmd::Write { path } => {
            let (_, v) = ingest::write_stdin(&vol, &vpath(&path)?)?;
            committed(vec![v.path.clone()]);
            if json {
                print_json(&version_json(&v, true))?;
            } else {
                say!("{}", v.id);
            }
        }
        Cmd::Import { src, dest } => {
            let dest = match dest {
                Some(d) => vpath(&d)?,
                None => {
                    let full = std::fs::canonicalize(&src).map_err(|e| Error::Io {
                        op: "read source",
                        path: src.clone(),
                        source: e,
                    })?;
                    let name = full.file_name().map(|n| n.to_os_string());
                    let name = name.ok_or_else(|| Error::Usage(format!("give a destination for {}", src.display())))?;
                    VolPath::from_os(&name)?
                }
            };
            let stats = ingest::import(&vol, &src, &dest, !json && !quiet)?;
            if stats.committed > 0 {
                committed(vec![dest.clone()]);
            }
            for w in &stats.warnings {
                eprintln!("globofs: warning: {w}");
            }
            if json {
                print_json(&stats)?;
            } else {
                say!(
                    "imported {}: {} new versions, {} unchanged, {} skipped unread; {} read, {} new blocks ({} stored)",
                    dest,
                    stats.committed,
                    stats.unchanged,
                    stats.cached,
                    human(stats.bytes_read),
                    stats.new_blocks,
                    human(stats.new_block_bytes)
                );
            }
        }
        Cmd::Read { path } => {
            let (p, id) = split_version(&path)?;
            let v = export::resolve(&vol, &p, id.as_deref())?;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
            export::read_version(&vol, &v, &mut out)?;
            out.flush().map_err(|e| Error::Io { op: "write", path: "<stdout>".into(), source: e })?;
        }
        Cmd::Export { path, dest } => {
            let (p, id) = split_version(&path)?;
            let stats = export::export(&vol, &p, id.as_deref(), &dest, !json && !quiet)?;
            if json {
                print_json(&stats)?;
            } else {
                say!(
                    "exported {} to {}: {} files, {} symlinks, {} directories, {}",
                    p,
                    dest.display(),
                    stats.files,
                    stats.symlinks,
                    stats.dirs,
                    human(stats.bytes)
                );
            }
        }
        Cmd::Ls { path, long, all, recursive } => {
            let p = path.as_ref().map(vpath).transpose()?.unwrap_or_default();
            let top = tree::stat(&vol, &p)?;
            let mut rows = Vec::new();
            let top_is_dir = top.is_dir();
            if top_is_dir {
                list(&vol, &top.path, all, recursive, &mut rows)?;
            } else {
                rows.push(top);
            }
            // Other heads per row: conflicted paths are flagged in -l and --json.
            let conflicted = |e: &Entry| vol.other_heads(&e.path).map(|o| o.len());
            if json {
                let mut items = Vec::with_capacity(rows.len());
                for e in &rows {
                    let mut j = entry_json(e);
                    j["conflicts"] = conflicted(e)?.into();
                    items.push(j);
                }
                print_json(&items)?;
            } else {
                let stdout = std::io::stdout();
                let mut out = stdout.lock();
                for e in &rows {
                    let name = if recursive || !top_is_dir { rel_name(&e.path, &p) } else { last_name(&e.path) };
                    let line = if long {
                        match conflicted(e)? {
                            0 => long_line(e, &name),
                            n => format!("{}  [conflict: {n} other version(s), see ls -a]", long_line(e, &name)),
                        }
                    } else if e.is_dir() {
                        format!("{name}/")
                    } else {
                        name
                    };
                    let _ = writeln!(out, "{line}");
                }
            }
        }
        Cmd::Log { path } => {
            let p = vpath(&path)?;
            let hist = vol.history(&p)?;
            if hist.is_empty() {
                return Err(Error::NotFound(p.to_string()));
            }
            let head = vol.head(&p)?.map(|h| h.id);
            let others: Vec<_> = vol.other_heads(&p)?.into_iter().map(|v| v.id).collect();
            let role = |v: &Version| {
                if Some(&v.id) == head.as_ref() {
                    "head "
                } else if others.contains(&v.id) {
                    "conflict-head "
                } else {
                    ""
                }
            };
            if json {
                let items: Vec<_> = hist
                    .iter()
                    .map(|v| {
                        let mut j = version_json(v, Some(&v.id) == head.as_ref());
                        j["conflict_head"] = serde_json::Value::Bool(others.contains(&v.id));
                        j
                    })
                    .collect();
                print_json(&items)?;
            } else {
                for v in &hist {
                    let parents: Vec<&str> = v.parents.iter().map(|p| p.as_str()).collect();
                    println!(
                        "{}  {}  {:<9} {:>10}  {:<12} {}{}",
                        v.id,
                        format_time(v.time),
                        kind_name(v.kind),
                        v.size,
                        v.origin_name,
                        role(v),
                        if parents.is_empty() { String::new() } else { format!("parents {}", parents.join(",")) }
                    );
                }
            }
        }
        Cmd::Rm { path, recursive } => {
            let p = vpath(&path)?;
            crate::cli::rails::rm_target(&vol, &p, recursive)?;
            let done = tree::rm(&vol, &p)?;
            committed(done.iter().map(|v| v.path.clone()).collect());
            if json {
                print_json(&done.iter().map(|v| version_json(v, true)).collect::<Vec<_>>())?;
            }
        }
        Cmd::Mv { src, dst } => {
            let done = tree::mv(&vol, &vpath(&src)?, &vpath(&dst)?)?;
            committed(done.iter().map(|v| v.path.clone()).collect());
            if json {
                print_json(&done.iter().map(|v| version_json(v, true)).collect::<Vec<_>>())?;
            }
        }
        Cmd::Verify { repair } => {
            let report = verify::run(&vol, repair, !json && !quiet)?;
            if json {
                print_json(&report)?;
            } else if !quiet || report.exit_code() != 0 {
                for line in report.lines() {
                    println!("{line}");
                }
            }
            return Ok(report.exit_code());
        }
        Cmd::Peer { cmd: PeerCmd::Add { name, path } } => {
            let p = peers::add(&vol, &name, &path)?;
            if json {
                print_json(&peer_json(&vol, &p)?)?;
            } else {
                say!("added peer {} ({}) at {}", p.name, p.uuid, p.path.display());
            }
        }
        Cmd::Peer { cmd: PeerCmd::Ls } => {
            let list = peers::list(&vol)?;
            let broken = peers::broken(&vol)?;
            if json {
                let mut items = list.iter().map(|p| peer_json(&vol, p)).collect::<Result<Vec<_>>>()?;
                items.extend(broken.iter().map(broken_json));
                items.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
                print_json(&items)?;
            } else {
                let mut lines: Vec<(String, String)> =
                    list.iter().map(|p| Ok((p.name.clone(), peer_line(&vol, p)?))).collect::<Result<_>>()?;
                lines.extend(broken.iter().map(|b| (b.name.clone(), broken_line(b))));
                lines.sort();
                for (_, l) in &lines {
                    println!("{l}");
                }
            }
        }
        Cmd::Peer { cmd: PeerCmd::Rm { name, revoke } } => {
            if revoke {
                let p = peers::list(&vol)?.into_iter().find(|p| p.name == name).ok_or_else(|| {
                    Error::Usage(format!("peer {name}: no usable config naming its uuid, nothing to revoke"))
                })?;
                globofs::revoke::add(vol.layout(), &[globofs::revoke::Revoked { uuid: p.uuid, name: p.name }])?;
            }
            let removed = peers::remove(&vol, &name)?;
            if !json {
                match removed {
                    peers::Removed::Peer(p) if revoke => say!(
                        "removed and revoked peer {} ({}): nothing it makes from now on is accepted here, \
                         nor by the peers once `globofs push` reaches them",
                        p.name,
                        p.uuid
                    ),
                    peers::Removed::Peer(p) => {
                        say!("removed peer {} ({}); its log is no longer applied", p.name, p.uuid)
                    }
                    peers::Removed::Broken(b) => {
                        say!("removed peer {} ({} could not be used)", b.name, b.config.display())
                    }
                }
            }
        }
        Cmd::Push { names, offline_ok } => return push(&vol, &names, offline_ok, json),
        Cmd::Mirror { path } => {
            let top = path.as_ref().map(vpath).transpose()?.unwrap_or_default();
            let report = sync::mirror(&vol, &top, !json && !quiet)?;
            if json {
                print_json(&report)?;
            } else {
                for p in &report.lost_peers {
                    eprintln!("globofs: {p}");
                }
                // With a peer unreachable, its name is the news, not each block it may hold.
                let shown = if report.lost_peers.is_empty() { 10 } else { 0 };
                for f in report.failed.iter().take(shown) {
                    eprintln!("globofs: {f}");
                }
                if !report.lost_peers.is_empty() {
                    eprintln!(
                        "globofs: {} missing blocks not fetched (e.g. {}); run `globofs mirror` again when the peer is back",
                        report.failed.len(),
                        report.failed[0]
                    );
                } else if report.failed.len() > 10 {
                    eprintln!(
                        "globofs: ... and {} more missing blocks; run `globofs mirror` again",
                        report.failed.len() - 10
                    );
                }
                say!(
                    "{} blocks were missing, {} fetched, {} not found on any reachable peer",
                    report.missing,
                    report.fetched,
                    report.failed.len()
                );
            }
            return Ok(if report.failed.is_empty() { 0 } else { 1 });
        }
        Cmd::Status { check } => {
            let list = peers::list(&vol)?;
            let broken = peers::broken(&vol)?;
            let missing = sync::missing_blocks(&vol, &VolPath::root())?;
            let files: std::collections::BTreeSet<&VolPath> = missing.values().collect();
            let conflicts = tree::conflicts(&vol)?;
            let shadowed = tree::shadowed(&vol)?;
            if json {
                let mut peers = list.iter().map(|p| peer_json(&vol, p)).collect::<Result<Vec<_>>>()?;
                peers.extend(broken.iter().map(broken_json));
                let conflicts: Vec<_> = conflicts
                    .iter()
                    .map(|(p, others)| {
                        let others: Vec<_> = others.iter().map(|v| version_json(v, true)).collect();
                        serde_json::json!({"path": path_json(p), "others": others})
                    })
                    .collect();
                print_json(&serde_json::json!({
                    "volume": vol.dir(), "name": vol.config().name, "uuid": vol.config().uuid,
                    "peers": peers, "missing_blocks": missing.len(), "files_missing_blocks": files.len(),
                    "conflicts": conflicts,
                    "shadowed": shadowed.iter().map(|(p, f)| serde_json::json!({"path": path_json(p), "under_file": path_json(f)})).collect::<Vec<_>>(),
                }))?;
            } else {
                println!("volume {} (node {}, uuid {})", vol.dir().display(), vol.config().name, vol.config().uuid);
                if list.is_empty() && broken.is_empty() {
                    println!("no peers (add one with `globofs peer add NAME PATH`)");
                }
                for p in &list {
                    println!("peer {}", peer_line(&vol, p)?);
                }
                for b in &broken {
                    println!("peer {}", broken_line(b));
                }
                println!(
                    "{} files need {} blocks that are not stored here (`globofs mirror` fetches them)",
                    files.len(),
                    missing.len()
                );
                println!("{} conflicts", conflicts.len());
                for (p, others) in &conflicts {
                    let from: Vec<String> = others
                        .iter()
                        .map(|v| {
                            format!("{} from {}{}", v.id, v.origin_name, if v.is_live() { "" } else { " (deleted)" })
                        })
                        .collect();
                    println!(
                        "conflict {p}: also {} (see `ls -a`; rm or mv the conflict file, or `globofs resolve`)",
                        from.join(", ")
                    );
                }
            }
            if !json {
                for (p, f) in &shadowed {
                    println!("hidden {p}: made while {f} was a file elsewhere; `globofs read {p}` shows it, `globofs mv {f} NEWNAME` brings it back");
                }
            }
            return Ok(if check && !conflicts.is_empty() { 1 } else { 0 });
        }
        Cmd::Resolve { path, keep } => {
            let p = vpath(&path)?;
            let latest = vol.head(&p)?.ok_or_else(|| Error::NotFound(p.to_string()))?;
            let others = vol.other_heads(&p)?;
            if others.is_empty() {
                return Err(Error::Usage(format!("{p}: has no conflict to resolve")));
            }
            let all: Vec<_> = others.iter().map(|o| o.id.clone()).collect();
            let keep_id = match (keep.as_str(), others.as_slice()) {
                ("local", _) => latest.id.clone(),
                (_, [one]) => one.id.clone(),
                _ => {
                    return Err(Error::Usage(format!(
                        "{p}: {} remote versions; `mv` the conflict file you want over {p} (see `ls -a`)",
                        others.len()
                    )))
                }
            };
            let v = vol.settle(&p, &keep_id, &all)?;
            committed(vec![p.clone()]);
            if json {
                print_json(&version_json(&v, true))?;
            } else {
                say!("{}", v.id);
            }
        }
        Cmd::Restore { spec } => {
            let (p, id) = split_version(&spec)?;
            let id = id.ok_or_else(|| Error::Usage("restore needs PATH@VERSION (see `globofs log PATH`)".into()))?;
            // The old version's blocks are named again by the commit below: hold gc off.
            let _lease = vol.block_lease()?;
            let old = export::resolve(&vol, &p, Some(&id))?;
            if !old.is_live() {
                return Err(Error::Usage(format!("{p}@{id}: is a deletion; `globofs rm {p}` does that")));
            }
            if old.kind != Kind::Dir && tree::has_live_descendant(&vol, &p)? {
                return Err(Error::IsDirectory(p.to_string()));
            }
            tree::check_parents(&vol, &p, &mut Default::default())?;
            vol.materialize(&old)?;
            let done =
                vol.commit(vec![(p.clone(), |head: Option<&Version>| Ok(Some(vol.version_like(&p, &old, head))))])?;
            committed(vec![p.clone()]);
            for v in &done {
                if json {
                    print_json(&version_json(v, true))?;
                } else {
                    say!("{}", v.id);
                }
            }
        }
        Cmd::Prune { paths, keep_last, keep_within, max_size, dry_run } => {
            let flags = keep_last.is_some() || keep_within.is_some() || max_size.is_some();
            if let [one] = paths.as_slice() {
                if let (p, Some(id)) = split_version(one)? {
                    if flags {
                        return Err(Error::Usage(
                            "prune PATH@VERSION removes that version: give no policy flags".into(),
                        ));
                    }
                    let id = globofs::ids::VersionId::parse(&id).ok_or_else(|| Error::Usage(format!("bad id {id}")))?;
                    let v = if dry_run {
                        retention::check_version(&vol, &p, &id)?
                    } else {
                        retention::prune_version(&vol, &p, &id)?
                    };
                    if json {
                        print_json(&serde_json::json!({"dry_run": dry_run, "pruned": [pruned_json(&v)]}))?;
                    } else {
                        let line = format!("{} {}@{}", if dry_run { "would prune" } else { "pruned" }, v.path, v.id);
                        if dry_run {
                            println!("{line}");
                        } else {
                            say!("{line}");
                        }
                    }
                    return Ok(0);
                }
            }
            let policy = if flags {
                Policy {
                    keep_last: keep_last.unwrap_or(0),
                    keep_within: keep_within
                        .as_deref()
                        .map(parse_duration)
                        .transpose()
                        .map_err(|e| Error::Usage(format!("--keep-within {e}")))?,
                    max_history_size: max_size
                        .as_deref()
                        .map(parse_size)
                        .transpose()
                        .map_err(Error::Usage)?
                        .unwrap_or(0),
                }
            } else {
                Policy::from_config(&vol.config().retention)?
            };
            if policy.keeps_all() {
                return Err(Error::Usage(
                    "no retention policy: set keep_last, keep_within or max_history_size under [retention] in local/config, or pass --keep-last, --keep-within or --max-size".into(),
                ));
            }
            let tops = paths.iter().map(vpath).collect::<Result<Vec<_>>>()?;
            let report = retention::prune(&vol, &policy, &tops, dry_run)?;
            print_prune(&report, dry_run, json)?;
        }
        Cmd::Gc => {
            let r = gc::gc(&vol)?;
            if json {
                print_json(&r)?;
            } else {
                say!(
                    "gc: {} manifests name {} blocks; {} of {} stored blocks deleted, {} freed; {} temp files removed",
                    r.manifests,
                    r.referenced,
                    r.deleted,
                    r.stored,
                    human(r.freed_bytes),
                    r.temp_files
                );
                if vol.config().cacheonly {
                    say!("gc: {} cached blocks evicted, {} freed", r.evicted, human(r.evicted_bytes));
                }
            }
        }
        Cmd::Mount { mountpoint, foreground, allow_non_empty } => {
            let mnt = std::fs::canonicalize(&mountpoint).map_err(|e| Error::Io {
                op: "find mount point",
                path: mountpoint.clone(),
                source: e,
            })?;
            crate::cli::rails::mount_point(&mnt, allow_non_empty)?;
            if foreground {
                mount::serve(vol, &mnt)?;
            } else {
                let log = mount::spawn_background(&vol, &mnt, allow_non_empty)?;
                say!("mounted {} at {} (log: {})", vol.dir().display(), mnt.display(), log.display());
            }
        }
    }
    Ok(0)
}

/// `push`: one line per peer; exit 1 if a peer was unreachable (0 with `--offline-ok` when
/// every failure was a peer merely not there), 2 if a push failed.
fn push(vol: &Volume, names: &[String], offline_ok: bool, json: bool) -> Result<u8> {
    let quiet = crate::cli::quiet();
    let outcomes = sync::push(vol, names, !json && !quiet)?;
    if json {
        print_json(&outcomes)?;
    }
    if outcomes.is_empty() && !quiet {
        eprintln!("globofs: no peers: nothing pushed; add one with `globofs peer add NAME PATH`");
    }
    let mut code = 0;
    for o in &outcomes {
        match &o.error {
            None if !json => {
                say!("{}: {} versions pushed", o.peer, o.sent);
                if o.notices > 0 {
                    say!("{}: {} prunes and revocations passed on", o.peer, o.notices);
                }
            }
            None => {}
            Some(_) if offline_ok && o.offline && quiet => {}
            Some(e) => {
                eprintln!("globofs: {e}");
                let excused = offline_ok && o.offline;
                code = if !o.unreachable {
                    2
                } else if excused {
                    code
                } else {
                    code.max(1)
                };
            }
        }
    }
    Ok(code)
}

/// A pruned version in `--json` output: what `log` showed of it, less its blocks.
fn pruned_json(v: &Version) -> serde_json::Value {
    let mut j = version_json(v, false);
    if let Some(o) = j.as_object_mut() {
        o.remove("blocks");
        o.remove("head");
    }
    j
}

fn print_prune(r: &retention::PruneReport, dry_run: bool, json: bool) -> Result<()> {
    if json {
        return print_json(&serde_json::json!({
            "dry_run": dry_run, "paths": r.paths, "kept": r.kept, "kept_unpushed": r.kept_unpushed,
            "pruned": r.pruned.iter().map(pruned_json).collect::<Vec<_>>(),
        }));
    }
    if crate::cli::quiet() && !dry_run {
        return Ok(());
    }
    let verb = if dry_run { "would prune" } else { "pruned" };
    for v in &r.pruned {
        println!("{verb} {}@{}  {}  {}", v.path, v.id, format_time(v.time), v.size);
    }
    let unpushed = if r.kept_unpushed > 0 {
        format!(" ({} only because a peer has not received them yet: run `globofs push`)", r.kept_unpushed)
    } else {
        String::new()
    };
    println!("{verb} {} versions in {} paths; {} kept{unpushed}", r.pruned.len(), r.paths, r.kept);
    if !dry_run && !r.pruned.is_empty() {
        println!("run `globofs gc` to free the blocks only they used");
    }
    Ok(())
}

fn receive(vol: &Volume) {
    for w in events::receive(vol) {
        eprintln!("globofs: warning: {w}");
    }
}

fn peer_json(vol: &Volume, p: &peers::Peer) -> Result<serde_json::Value> {
    Ok(serde_json::json!({
        "name": p.name, "uuid": p.uuid, "path": p.path, "reachable": p.reachable(),
        "pending": sync::pending(vol, p)?, "last_push": sync::last_push(vol, p),
    }))
}

fn broken_json(b: &peers::Broken) -> serde_json::Value {
    serde_json::json!({"name": b.name, "config": b.config, "reachable": false, "broken": b.to_string()})
}

/// A peer whose config cannot be used, in `peer ls` and `status`.
fn broken_line(b: &peers::Broken) -> String {
    format!("{}  broken: {}: {}; fix it or `globofs peer rm {}`", b.name, b.config.display(), b.reason, b.name)
}

fn peer_line(vol: &Volume, p: &peers::Peer) -> Result<String> {
    let last =
        sync::last_push(vol, p).map_or("never".to_string(), |t| format_time(Timestamp { sec: t as i64, nsec: 0 }));
    Ok(format!(
        "{}  {}  {}  {} versions to push  last push {}",
        p.name,
        p.path.display(),
        if p.reachable() { "reachable" } else { "unreachable" },
        sync::pending(vol, p)?,
        last
    ))
}

fn list(vol: &Volume, dir: &VolPath, all: bool, recursive: bool, rows: &mut Vec<Entry>) -> Result<()> {
    for c in tree::children(vol, dir)? {
        if !all && last_name(&c.path).starts_with('.') {
            continue;
        }
        let sub = recursive && c.is_dir();
        let path = c.path.clone();
        rows.push(c);
        if sub {
            list(vol, &path, all, recursive, rows)?;
        }
    }
    Ok(())
}

fn last_name(p: &VolPath) -> String {
    String::from_utf8_lossy(p.file_name().unwrap_or(b"/")).into_owned()
}

fn rel_name(p: &VolPath, base: &VolPath) -> String {
    let full = p.to_bytes();
    let b = base.to_bytes();
    let rel = if b.is_empty() {
        &full[..]
    } else {
        full.strip_prefix(&b[..]).map(|r| r.strip_prefix(b"/").unwrap_or(r)).unwrap_or(&full)
    };
    String::from_utf8_lossy(if rel.is_empty() { &full } else { rel }).into_owned()
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::File => "file",
        Kind::Symlink => "symlink",
        Kind::Dir => "dir",
        Kind::Tombstone => "deleted",
    }
}

fn mode_string(e: &Entry) -> String {
    let (t, mode) = match &e.head {
        None => ('d', 0o755),
        Some(v) => (
            match v.kind {
                Kind::Dir => 'd',
                Kind::Symlink => 'l',
                _ => '-',
            },
            v.mode,
        ),
    };
    let mut s = String::from(t);
    for shift in [6, 3, 0] {
        let m = (mode >> shift) & 7;
        s.push(if m & 4 != 0 { 'r' } else { '-' });
        s.push(if m & 2 != 0 { 'w' } else { '-' });
        s.push(if m & 1 != 0 { 'x' } else { '-' });
    }
    s
}

fn long_line(e: &Entry, name: &str) -> String {
    let (size, mtime) = e.head.as_ref().map_or((0, None), |v| (v.size, Some(v.mtime)));
    let when = mtime.map_or_else(|| "-".repeat(19), format_time);
    let target = match e.head.as_ref().and_then(|v| v.target.as_ref()) {
        Some(t) => format!(" -> {}", String::from_utf8_lossy(t)),
        None => String::new(),
    };
    let slash = if e.is_dir() { "/" } else { "" };
    format!("{} {:>12} {} {}{}{}", mode_string(e), size, when, name, slash, target)
}

fn entry_json(e: &Entry) -> serde_json::Value {
    match &e.head {
        Some(v) => {
            let mut j = version_json(v, true);
            j["path"] = path_json(&e.path);
            j
        }
        None => serde_json::json!({"path": path_json(&e.path), "kind": "dir"}),
    }
}

fn path_json(p: &VolPath) -> serde_json::Value {
    serde_json::Value::String(String::from_utf8(p.to_bytes()).unwrap_or_else(|_| p.to_text()))
}

fn version_json(v: &Version, head: bool) -> serde_json::Value {
    serde_json::json!({
        "path": path_json(&v.path),
        "version": v.id.as_str(),
        "kind": v.kind,
        "parents": v.parents.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
        "origin": v.origin,
        "origin_name": v.origin_name,
        "time": v.time.to_string(),
        "size": v.size,
        "mode": format!("{:04o}", v.mode),
        "mtime": v.mtime.to_string(),
        "target": v.target.as_ref().map(|t| String::from_utf8_lossy(t).into_owned()),
        "blocks": v.blocks.len(),
        "head": head,
    })
}

fn human(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut x = n as f64;
    let mut u = 0;
    while x >= 1024.0 && u < units.len() - 1 {
        x /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{x:.1} {}", units[u])
    }
}

/// UTC `YYYY-MM-DD HH:MM:SS` without a date library (civil-from-days).
fn format_time(t: Timestamp) -> String {
    let days = t.sec.div_euclid(86400);
    let secs = t.sec.rem_euclid(86400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}
