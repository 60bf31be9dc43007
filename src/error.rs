//! The library's one error type. Every variant names what the user can act on: the path,
//! the block, the peer. It never carries a backtrace; the binary prints it on one line.

use std::io;
use std::path::{Path, PathBuf};

/// Result alias used across the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system call failed; `op` says what we were doing.
    #[error("{op} {}: {}", path.display(), io_reason(source))]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// No volume was given and none was found walking up from the working directory.
    #[error("no globofs volume at or above {}: pass -V DIR, set GLOBOFS_VOLUME, or run `globofs init DIR`", .0.display())]
    NoVolume(PathBuf),
    /// The directory is not a volume (no `local/config`).
    #[error("{} is not a globofs volume (no local/config): check the path or run `globofs init`", .0.display())]
    NotAVolume(PathBuf),
    /// A volume that holds data but lost its `local/config`.
    #[error("{} holds a volume's data but its local/config is missing: run `globofs init {} --recover` to rebuild it from the peers' records of this node (plain `init` would make it a new node)", .0.display(), .0.display())]
    LostConfig(PathBuf),
    /// A copy of a volume (`cp -a`, a restored backup), found by its identity.
    #[error("{} is a copy of volume {uuid} (the original was at {at}): run `globofs reidentify` to make it a new node with its data and history, or `globofs reidentify --moved` if the original no longer exists", dir.display())]
    Copy { dir: PathBuf, uuid: String, at: String },
    /// `init` on a directory that already holds a volume.
    #[error("{} is already a globofs volume: choose another directory", .0.display())]
    AlreadyVolume(PathBuf),
    /// A config file could not be understood.
    #[error("config {}: {reason}", path.display())]
    Config { path: PathBuf, reason: String },
    /// A format version this build does not read.
    #[error("{}: format version {found} is not supported (this globofs reads version {supported}): upgrade globofs", path.display())]
    UnsupportedFormat { path: PathBuf, found: u32, supported: u32 },
    /// A path inside the volume that is not acceptable.
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath { path: String, reason: String },
    /// The volume has no live version at this path.
    #[error("{0}: no such file or directory in the volume")]
    NotFound(String),
    /// The path exists but has no version with this id.
    #[error("{path}: no version {version} (see `globofs log {path}`)")]
    UnknownVersion { path: String, version: String },
    /// A manifest, log record or other metadata file that fails its checks.
    #[error("corrupt {what} {}: {reason}; run `globofs verify`", path.display())]
    Corrupt { what: &'static str, path: PathBuf, reason: String },
    /// A block is not stored locally (and no peer could supply it).
    #[error("{path}: block {block} is missing{}; run `globofs verify`", tried(peers))]
    MissingBlock { path: String, block: String, peers: Vec<String> },
    /// A stored block whose content does not match its name.
    #[error("{path}: block {block} is corrupt ({reason}); run `globofs verify`")]
    CorruptBlock { path: String, block: String, reason: String },
    /// A peer whose volume is not there (missing, unmounted, denied, or another volume).
    #[error("peer {peer} ({}) is unreachable: missing, not mounted, or not the expected volume; nothing was changed there, try again when it is mounted", path.display())]
    Unreachable { peer: String, path: PathBuf },
    /// The path is a directory where a file was expected.
    #[error("{0}: is a directory")]
    IsDirectory(String),
    /// The path is a file where a directory was expected.
    #[error("{0}: is not a directory")]
    NotDirectory(String),
    /// The operation would overwrite something that exists.
    #[error("{0}: already exists")]
    Exists(String),
    /// A version that retention must keep (a head, a conflict, not yet pushed).
    #[error("{path}@{version}: not pruned: {reason}")]
    Protected { path: String, version: String, reason: String },
    /// A directory that still holds something, where an empty one was needed.
    #[error("{0}: directory not empty")]
    NotEmpty(String),
    /// A change to something globofs shows read-only (history, peers, conflict files).
    #[error("{path}: read-only: {hint}")]
    ReadOnly { path: String, hint: String },
    /// An operation globofs does not store (hard links, device files).
    #[error("{0}")]
    Unsupported(String),
    /// A command-line argument that cannot be used.
    #[error("{0}")]
    Usage(String),
    /// Something that should not happen did (a worker thread died): not the user's doing.
    #[error("internal error: {0}; nothing acknowledged was lost, run the command again (and report it if it recurs)")]
    Internal(String),
}

fn tried(peers: &[String]) -> String {
    if peers.is_empty() {
        " (no reachable peer to fetch it from)".to_string()
    } else {
        format!(" (not found on peers: {})", peers.join(", "))
    }
}

fn io_reason(e: &io::Error) -> String {
    // Strip the " (os error N)" tail: the text before it is what a person reads.
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Turns a directory-walk error into [`Error::Io`] naming the entry that failed.
pub fn walk_error(op: &'static str, fallback: &Path, e: walkdir::Error) -> Error {
    let path = e.path().unwrap_or(fallback).to_path_buf();
    let source = match e.into_io_error() {
        Some(io) => io,
        None => io::Error::other("symlink loop"),
    };
    Error::Io { op, path, source }
}

/// Attaches an operation and a path to an `io::Result`.
pub trait IoContext<T> {
    /// Turns the I/O error into [`Error::Io`] naming `op` and `path`.
    fn ctx(self, op: &'static str, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, op: &'static str, path: &Path) -> Result<T> {
        self.map_err(|source| Error::Io { op, path: path.to_path_buf(), source })
    }
}

impl Error {
    /// Builds a [`Error::Corrupt`] for the metadata file at `path`.
    pub fn corrupt(what: &'static str, path: &Path, reason: impl Into<String>) -> Error {
        Error::Corrupt { what, path: path.to_path_buf(), reason: reason.into() }
    }

    /// True when the error is an I/O "not found".
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}
