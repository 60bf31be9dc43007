//! Revoked nodes (`globofs peer rm NAME --revoke`): a node whose changes nobody in the
//! group accepts any more, however they arrive. The list (`local/state/revoked`, one line
//! `<uuid> <name text>` per node, appended only) travels to every peer with the logs (a
//! revocation record, encoded in [`crate::record`]; see docs/FORMAT.md "Records"), and
//! every node that has it stops reading that node's log and refuses each version it made
//! that the node does not already have. Revocation is for good: a node trusted again joins
//! under a new uuid (`globofs reidentify`).

use crate::error::{IoContext, Result};
use crate::fsio::{self, Durability};
use crate::layout::Layout;
use crate::paths::{decode_text, encode_text};
use std::fs;
use std::io::ErrorKind;

/// One revoked node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revoked {
    /// Its uuid.
    pub uuid: String,
    /// Its name where it was revoked (for people).
    pub name: String,
}

/// Every node revoked here, in the order this node learnt of them. Lines that do not parse
/// (a torn last line) are skipped.
pub fn list(layout: &Layout) -> Result<Vec<Revoked>> {
    let path = layout.revoked();
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).ctx("read", &path),
    };
    Ok(text
        .lines()
        .filter_map(|l| {
            let (uuid, name) = l.split_once(' ')?;
            uuid::Uuid::parse_str(uuid).ok()?;
            Some(Revoked { uuid: uuid.to_string(), name: String::from_utf8_lossy(&decode_text(name)?).into_owned() })
        })
        .collect())
}

/// Adds the nodes of `new` not revoked yet; returns those added. The list is rewritten
/// whole, atomically and durably.
pub fn add(layout: &Layout, new: &[Revoked]) -> Result<Vec<Revoked>> {
    let mut all = list(layout)?;
    let mut added = Vec::new();
    for r in new {
        if !all.iter().any(|a| a.uuid == r.uuid) {
            all.push(r.clone());
            added.push(r.clone());
        }
    }
    if !added.is_empty() {
        let text: String = all.iter().map(|r| format!("{} {}\n", r.uuid, encode_text(r.name.as_bytes()))).collect();
        fsio::create_dirs(&layout.state())?;
        fsio::write_atomic(&layout.revoked(), text.as_bytes(), Durability::Now)?;
    }
    Ok(added)
}
