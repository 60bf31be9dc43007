//! Names of everything in a volume directory, in one place (docs/FORMAT.md, "Layout").
//! Other modules ask here for paths; they never spell a volume file name themselves.

use std::path::{Path, PathBuf};

/// The node's own directory inside a volume.
pub const LOCAL: &str = "local";
/// Per-directory config file name (the node's and each peer's).
pub const CONFIG: &str = "config";
/// The file naming the newest version of a path, inside its `versions/` directory.
pub const LATEST: &str = "latest";
/// The file listing a path's other heads (versions concurrent with `latest`), if any.
pub const OTHER_HEADS: &str = ".heads";
/// The file the mount shows at `MNT/.globofs/volume`, holding the volume's directory: how
/// the command line run inside a mount finds its volume.
pub const MOUNT_MARKER: &str = "volume";
/// The file keeping the lineage (id and parents) of a path's pruned versions.
pub const PRUNED: &str = ".pruned";

/// Paths of one volume's files.
#[derive(Clone, Debug)]
pub struct Layout {
    /// The volume directory.
    pub volume: PathBuf,
}

impl Layout {
    /// Layout of the volume at `dir`.
    pub fn new(dir: &Path) -> Layout {
        Layout { volume: dir.to_path_buf() }
    }
    /// `local/`
    pub fn local(&self) -> PathBuf {
        self.volume.join(LOCAL)
    }
    /// `local/config`
    pub fn config(&self) -> PathBuf {
        self.local().join(CONFIG)
    }
    /// `local/root/`: version manifests, one directory per path.
    pub fn root(&self) -> PathBuf {
        self.local().join("root")
    }
    /// `local/hashes/`: the block store.
    pub fn hashes(&self) -> PathBuf {
        self.local().join("hashes")
    }
    /// `local/upstream/`: logs that peers push into.
    pub fn upstream(&self) -> PathBuf {
        self.local().join("upstream")
    }
    /// `local/quarantine/`: damaged files that `verify --repair` took out of use.
    pub fn quarantine(&self) -> PathBuf {
        self.local().join("quarantine")
    }
    /// `local/quarantine/blocks/`: damaged block files with no good copy, as `<64 hex>.gz`.
    pub fn quarantine_blocks(&self) -> PathBuf {
        self.quarantine().join("blocks")
    }
    /// `local/quarantine/manifests/`: damaged manifests with no good copy, filed as under
    /// `local/root/` (`<path dirs>/versions/<name>`).
    pub fn quarantine_manifests(&self) -> PathBuf {
        self.quarantine().join("manifests")
    }
    /// `local/state/`: private bookkeeping (lock, import cache).
    pub fn state(&self) -> PathBuf {
        self.local().join("state")
    }
    /// `local/state/lock`: serializes commits of processes on this node.
    pub fn lock(&self) -> PathBuf {
        self.state().join("lock")
    }
    /// `local/state/identity`: the uuid and the fingerprint of the place this node's data
    /// lives in, which a copy of the volume does not carry (docs/FORMAT.md, "Identity").
    pub fn identity(&self) -> PathBuf {
        self.state().join("identity")
    }
    /// `local/state/revoked`: the nodes revoked here or by a peer, one per line.
    pub fn revoked(&self) -> PathBuf {
        self.state().join("revoked")
    }
    /// `local/state/push/`: push bookkeeping, one file per peer uuid.
    pub fn push_dir(&self) -> PathBuf {
        self.state().join("push")
    }
    /// `local/state/import-cache`: source file identities of the last imports.
    pub fn import_cache(&self) -> PathBuf {
        self.state().join("import-cache")
    }
    /// `local/state/journal`: every version this node has, in the order it got them.
    pub fn journal(&self) -> PathBuf {
        self.state().join("journal")
    }
    /// `local/state/push/<peer-uuid>`: how far the journal was pushed to that peer.
    pub fn push_state(&self, peer_uuid: &str) -> PathBuf {
        self.push_dir().join(peer_uuid)
    }
    /// `local/state/recv/<peer-uuid>`: how far that peer's log was applied.
    pub fn recv_state(&self, peer_uuid: &str) -> PathBuf {
        self.state().join("recv").join(peer_uuid)
    }
    /// `local/state/gc.lock`: shared by processes storing blocks not yet committed,
    /// exclusive while `gc` runs.
    pub fn gc_lock(&self) -> PathBuf {
        self.state().join("gc.lock")
    }
    /// `local/state/pulled`: blocks fetched from peers, with the time (cache bookkeeping).
    pub fn pulled(&self) -> PathBuf {
        self.state().join("pulled")
    }
    /// `local/upstream/<uuid>/updates/`: the log that peer `uuid` appends into.
    pub fn updates(&self, uuid: &str) -> PathBuf {
        self.upstream().join(uuid).join("updates")
    }
    /// `<name>/config`: a peer's uuid and where its volume is mounted.
    pub fn peer_config(&self, name: &str) -> PathBuf {
        self.volume.join(name).join(CONFIG)
    }
    /// `README.txt` at the top of the volume.
    pub fn readme(&self) -> PathBuf {
        self.volume.join("README.txt")
    }
}

/// Text of the volume's `README.txt`.
pub const README: &str = "\
This directory is a globofs volume: a deduplicating, versioning file store.

Use the `globofs` command (or `globofs mount`) to read and change the files kept here;
do not edit anything under local/ by hand.

  local/config             this node's settings (uuid, name, block sizes, retention, hooks)
  local/root/<path>/versions/latest   newest version manifest of <path>; older ones beside it
  local/hashes/ab/cd/<rest>.gz        content blocks: `zcat` gives the block back, and
                                      `sha256sum` of that is its name (ab + cd + rest)
  local/upstream/<uuid>/   logs that peers push into
  local/state/             private bookkeeping (lock, caches)
  <peer-name>/config       one directory per peer: its uuid and where its volume is mounted

To recover a file without globofs: read its manifest (a text file), then `zcat` each
`block` it lists, in order. The formats are described in docs/FORMAT.md of globofs.
";
