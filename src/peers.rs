//! Peers: the `<name>/config` directories of a volume (uuid and where the peer's volume is
//! mounted), adding and removing them, and deciding whether one is reachable. A peer is
//! reachable only if its path holds a volume whose config carries the expected uuid: an
//! unmounted, missing or denied directory is unreachable, never an empty peer.

use crate::config::{parse_config_text, Config};
use crate::error::{Error, IoContext, Result};
use crate::fsio::{self, Durability};
use crate::layout::{Layout, LOCAL};
use crate::volume::Volume;
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};

/// One peer as recorded in our volume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// Directory name in our volume (e.g. a host name).
    #[serde(skip)]
    pub name: String,
    /// The peer node's uuid.
    pub uuid: String,
    /// Where its volume is mounted on this machine.
    pub path: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct PeerFile {
    uuid: String,
    path: PathBuf,
}

impl Peer {
    /// The peer's layout (its volume directory as mounted here).
    pub fn layout(&self) -> Layout {
        Layout::new(&self.path)
    }

    /// True if the peer's volume is there and carries the expected uuid.
    pub fn reachable(&self) -> bool {
        let Ok(f) = crate::log::open_nofollow(&self.layout().config()) else { return false };
        if !f.metadata().is_ok_and(|m| m.is_file()) {
            return false;
        }
        let mut text = String::new();
        if std::io::Read::read_to_string(&mut std::io::Read::take(f, 1 << 16), &mut text).is_err() {
            return false;
        }
        parse_config_text::<Config>(&text)
            .ok()
            .and_then(|c| uuid::Uuid::parse_str(&c.uuid).ok())
            .is_some_and(|u| u.to_string() == self.uuid)
    }

    /// The error for an unreachable peer: the same words whatever the reason.
    pub fn unreachable(&self) -> Error {
        Error::Unreachable { peer: self.name.clone(), path: self.path.clone() }
    }
}

fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name != LOCAL
        && name != "README.txt"
        && !name.starts_with('.')
        && !name.contains('/')
        && !name.contains('\0');
    ok.then_some(()).ok_or_else(|| {
        Error::Usage(format!("{name:?} cannot name a peer: use a plain name such as a host name (not `local`)"))
    })
}

/// Every peer recorded in the volume, sorted by name. Directories without a peer config
/// are not peers; a peer config that cannot be read is reported by [`problems`] and skipped.
pub fn list(vol: &Volume) -> Result<Vec<Peer>> {
    Ok(scan(vol)?.0)
}

/// Peer configs that cannot be used, one message each.
pub fn problems(vol: &Volume) -> Result<Vec<String>> {
    Ok(scan(vol)?.1)
}

fn scan(vol: &Volume) -> Result<(Vec<Peer>, Vec<String>)> {
    let mut out = Vec::new();
    let mut bad = Vec::new();
    let rd = fs::read_dir(vol.dir()).ctx("list", vol.dir())?;
    for e in rd {
        let e = e.ctx("list", vol.dir())?;
        let name = e.file_name().to_string_lossy().into_owned();
        if check_name(&name).is_err() || !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let cfg = vol.layout().peer_config(&name);
        let Ok(text) = fs::read_to_string(&cfg) else { continue };
        let file: PeerFile = match parse_config_text(&text) {
            Ok(f) => f,
            Err(reason) => {
                bad.push(Error::Config { path: cfg, reason }.to_string());
                continue;
            }
        };
        match uuid::Uuid::parse_str(&file.uuid) {
            Ok(uuid) => out.push(Peer { name, uuid: uuid.to_string(), path: file.path }),
            Err(_) => {
                bad.push(format!("config {}: uuid {:?} is not a uuid; this peer is ignored", cfg.display(), file.uuid))
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((out, bad))
}

/// Records the volume at `path` as peer `name`. The volume must be there now (to learn its
/// uuid); it may be unreachable later.
pub fn add(vol: &Volume, name: &str, path: &Path) -> Result<Peer> {
    check_name(name)?;
    let path = std::path::absolute(path).ctx("resolve", path)?;
    let theirs = Layout::new(&path).config();
    if !theirs.is_file() {
        return Err(Error::NotAVolume(path));
    }
    let cfg = Config::load(&theirs)?;
    if cfg.uuid == vol.config().uuid {
        return Err(Error::Usage(format!("{} is this volume itself (same uuid)", path.display())));
    }
    let existing = list(vol)?;
    if let Some(p) = existing.iter().find(|p| p.name == name || p.uuid == cfg.uuid) {
        return Err(Error::Exists(format!("peer {} ({})", p.name, p.uuid)));
    }
    if vol.dir().join(name).exists() {
        return Err(Error::Exists(vol.dir().join(name).display().to_string()));
    }
    let peer = Peer { name: name.to_string(), uuid: cfg.uuid, path };
    let file = PeerFile { uuid: peer.uuid.clone(), path: peer.path.clone() };
    let text = toml::to_string(&file).map_err(|e| Error::Usage(e.to_string()))?;
    let dest = vol.layout().peer_config(name);
    fsio::create_dirs(dest.parent().unwrap_or(vol.dir()))?;
    fsio::write_atomic(&dest, format!("# globofs peer; see docs/FORMAT.md\n{text}").as_bytes(), Durability::Now)?;
    Ok(peer)
}

/// Forgets peer `name`: its config and our bookkeeping of it. Its log in our volume is no
/// longer applied.
pub fn remove(vol: &Volume, name: &str) -> Result<Peer> {
    let peer =
        list(vol)?.into_iter().find(|p| p.name == name).ok_or_else(|| Error::NotFound(format!("peer {name}")))?;
    fsio::remove_file(&vol.layout().peer_config(name)).ctx("remove", &vol.layout().peer_config(name))?;
    let _ = fs::remove_dir(vol.dir().join(name));
    let push = vol.layout().push_state(&peer.uuid);
    for p in [push.with_extension("lock"), push, vol.layout().recv_state(&peer.uuid)] {
        match fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e).ctx("remove", &p),
            _ => {}
        }
    }
    Ok(peer)
}
