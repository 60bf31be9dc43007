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

/// A peer directory whose `config` cannot be used (it does not parse, or its uuid is not a
/// uuid). It is no peer until fixed: nothing is pushed to it or read from it, and every
/// command that works with peers reports it (`push` as unreachable, exit 1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Broken {
    /// Directory name in our volume.
    pub name: String,
    /// Its config file.
    pub config: PathBuf,
    /// What is wrong with it.
    pub reason: String,
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "peer {}: {}: {}; fix it or `globofs peer rm {}`",
            self.name,
            self.config.display(),
            self.reason,
            self.name
        )
    }
}

/// Every peer recorded in the volume, sorted by name. Directories without a peer config
/// are not peers; a peer config that cannot be used is reported by [`broken`] and skipped.
pub fn list(vol: &Volume) -> Result<Vec<Peer>> {
    Ok(scan(vol.layout())?.0)
}

/// Peer directories whose config cannot be used, sorted by name.
pub fn broken(vol: &Volume) -> Result<Vec<Broken>> {
    Ok(scan(vol.layout())?.1)
}

/// The peers recorded in the volume at `layout` (which need not open: `init --recover`),
/// and the broken ones.
pub(crate) fn scan(layout: &Layout) -> Result<(Vec<Peer>, Vec<Broken>)> {
    let mut out = Vec::new();
    let mut bad = Vec::new();
    let dir = &layout.volume;
    let rd = fs::read_dir(dir).ctx("list", dir)?;
    for e in rd {
        let e = e.ctx("list", dir)?;
        let name = e.file_name().to_string_lossy().into_owned();
        if check_name(&name).is_err() || !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let cfg = layout.peer_config(&name);
        // Only a regular file makes a peer directory; one that cannot be read is broken.
        if !fs::metadata(&cfg).is_ok_and(|m| m.is_file()) {
            continue;
        }
        let broken = |reason: String| Broken { name: name.clone(), config: cfg.clone(), reason };
        let file = match fs::read_to_string(&cfg) {
            Ok(text) => parse_peer_file(&text),
            Err(e) => Err(format!("cannot be read ({})", e.kind())),
        };
        match file.and_then(|f| match uuid::Uuid::parse_str(&f.uuid) {
            Ok(u) => Ok((u.to_string(), f.path)),
            Err(_) => Err(format!("uuid {:?} is not a uuid", f.uuid)),
        }) {
            Ok((uuid, path)) => out.push(Peer { name, uuid, path }),
            Err(reason) => bad.push(broken(reason)),
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    bad.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((out, bad))
}

/// Reads a peer config (TOML, or `key=value` lines), saying what is wrong in words a person
/// can act on: an empty file, a missing key, a key that is not a string.
fn parse_peer_file(text: &str) -> std::result::Result<PeerFile, String> {
    if text.trim().is_empty() {
        return Err("the file is empty".into());
    }
    let toml_err = match toml::from_str::<toml::Table>(text) {
        Ok(t) => {
            for key in ["uuid", "path"] {
                match t.get(key) {
                    None => return Err(format!("{key} is missing")),
                    Some(v) if !v.is_str() => return Err(format!("{key} is not a string")),
                    _ => {}
                }
            }
            return parse_config_text(text);
        }
        Err(e) => e.message().to_string(),
    };
    parse_config_text(text).map_err(|kv| {
        if kv.starts_with("neither") {
            kv
        } else {
            format!("neither TOML ({toml_err}) nor key=value lines ({kv})")
        }
    })
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
    let text = toml::to_string(&file).map_err(|e| Error::Internal(format!("peer config: {e}")))?;
    let dest = vol.layout().peer_config(name);
    fsio::create_dirs(dest.parent().unwrap_or(vol.dir()))?;
    fsio::write_atomic(&dest, format!("# globofs peer; see docs/FORMAT.md\n{text}").as_bytes(), Durability::Now)?;
    Ok(peer)
}

/// What `peer rm` removed.
pub enum Removed {
    /// A peer.
    Peer(Peer),
    /// A peer directory whose config could not be used.
    Broken(Broken),
}

/// Forgets peer `name` (also a broken one): its config and our bookkeeping of it. Its log in our volume is no
/// longer applied.
pub fn remove(vol: &Volume, name: &str) -> Result<Removed> {
    let (good, bad) = scan(vol.layout())?;
    let peer = match (good.into_iter().find(|p| p.name == name), bad.into_iter().find(|b| b.name == name)) {
        (Some(p), _) => Removed::Peer(p),
        (None, Some(b)) => Removed::Broken(b),
        (None, None) => return Err(Error::NotFound(format!("peer {name}"))),
    };
    fsio::remove_file(&vol.layout().peer_config(name)).ctx("remove", &vol.layout().peer_config(name))?;
    let _ = fs::remove_dir(vol.dir().join(name));
    // A broken config names no usable uuid: there is no bookkeeping of it to remove.
    let Removed::Peer(p) = &peer else { return Ok(peer) };
    let push = vol.layout().push_state(&p.uuid);
    for p in [push.with_extension("lock"), push, vol.layout().recv_state(&p.uuid)] {
        match fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e).ctx("remove", &p),
            _ => {}
        }
    }
    Ok(peer)
}
