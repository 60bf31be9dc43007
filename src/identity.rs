//! Where a node's data lives: `local/state/identity` ties the node's uuid to a fingerprint
//! of its `local/` directory (inode number and creation time), which `mv` within a file
//! system keeps and a copy (`cp -a`, rsync, tar, a restored backup) does not. A copy of a
//! volume is therefore told from the original, and refuses to write or push as it until
//! `globofs reidentify` makes it a node of its own (docs/DESIGN.md, "Identity").

use crate::error::{Error, IoContext, Result};
use crate::fsio::{self, Durability};
use crate::layout::Layout;
use std::fs;
use std::os::unix::fs::MetadataExt;

/// The fingerprint of a volume's `local/` directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    /// Inode number (not the device: a USB disk gets another one at each mount).
    pub inode: u64,
    /// Creation time in nanoseconds since the epoch, where the file system keeps one.
    pub born: Option<i128>,
}

impl Fingerprint {
    /// The fingerprint of the volume's `local/` directory now.
    pub fn of(layout: &Layout) -> Result<Fingerprint> {
        let m = fs::metadata(layout.local()).ctx("stat", &layout.local())?;
        let born =
            m.created().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_nanos() as i128);
        Ok(Fingerprint { inode: m.ino(), born })
    }

    /// True if `self` (recorded) and `now` are the same directory. A creation time counts
    /// only when both have one (NFS and sshfs report none).
    fn matches(&self, now: &Fingerprint) -> bool {
        self.inode == now.inode && (self.born.is_none() || now.born.is_none() || self.born == now.born)
    }
}

/// What `local/state/identity` holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The node's uuid when the fingerprint was recorded.
    pub uuid: String,
    /// The fingerprint of `local/` then.
    pub fingerprint: Fingerprint,
    /// The volume directory then (for messages).
    pub path: String,
}

impl Record {
    /// Reads `local/state/identity`; `None` if it is missing or does not parse.
    pub fn load(layout: &Layout) -> Option<Record> {
        let text = fs::read_to_string(layout.identity()).ok()?;
        let (mut uuid, mut inode, mut born, mut path) = (None, None, None, String::new());
        for line in text.lines() {
            let (k, v) = line.split_once(' ').unwrap_or((line, ""));
            match k {
                "uuid" => uuid = uuid::Uuid::parse_str(v).ok().map(|u| u.to_string()),
                "inode" => inode = v.parse().ok(),
                "born" => born = v.parse().ok(),
                "path" => path = v.to_string(),
                _ => {}
            }
        }
        Some(Record { uuid: uuid?, fingerprint: Fingerprint { inode: inode?, born }, path })
    }

    /// Records `uuid` as the node whose data is in `layout`'s volume, at its place now.
    pub fn save(layout: &Layout, uuid: &str) -> Result<Record> {
        let r = Record {
            uuid: uuid.to_string(),
            fingerprint: Fingerprint::of(layout)?,
            path: layout.volume.to_string_lossy().into_owned(),
        };
        let born = r.fingerprint.born.map_or("-".to_string(), |b| b.to_string());
        let text = format!("uuid {}\ninode {}\nborn {born}\npath {}\n", r.uuid, r.fingerprint.inode, r.path);
        fsio::write_atomic(&layout.identity(), text.as_bytes(), Durability::Now)?;
        Ok(r)
    }
}

/// Whether a volume is where its node's data was recorded to live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// The recorded fingerprint is this directory's.
    Here,
    /// No usable record, and none could be written (a read-only medium): taken as here.
    Unrecorded,
    /// A copy: the record was made for another directory (`at`, where the original was).
    Copy {
        /// The volume directory as recorded (where the original was made or last moved to).
        at: String,
    },
}

/// Checks the volume's identity for node `uuid`, recording it if there is no usable record
/// yet (a volume made before identities existed, or a record lost) or if the record names
/// another uuid (a config edited by hand: the config is the authority on the uuid).
pub fn check(layout: &Layout, uuid: &str) -> Identity {
    let Ok(now) = Fingerprint::of(layout) else { return Identity::Unrecorded };
    match Record::load(layout) {
        Some(r) if r.uuid == uuid && !r.fingerprint.matches(&now) => Identity::Copy { at: r.path },
        Some(r) if r.uuid == uuid => Identity::Here,
        _ => match Record::save(layout, uuid) {
            Ok(_) => Identity::Here,
            Err(_) => Identity::Unrecorded,
        },
    }
}

/// The error (or warning) for a copy of volume `uuid` found at `dir`.
pub fn copy_error(dir: &std::path::Path, uuid: &str, at: &str) -> Error {
    Error::Copy { dir: dir.to_path_buf(), uuid: uuid.to_string(), at: at.to_string() }
}
