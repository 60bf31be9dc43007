//! Revoked nodes (`globofs peer rm NAME --revoke`): a node whose changes nobody in the
//! group accepts any more, however they arrive. The list (`local/state/revoked`, one line
//! `<uuid> <name text>` per node, appended only) travels to every peer with the logs
//! (a revocation record, see docs/FORMAT.md "Records"), and every node that has it stops
//! reading that node's log and refuses each version it made that the node does not already
//! have. Revocation is for good: a node trusted again joins under a new uuid
//! (`globofs reidentify`).

use crate::error::{IoContext, Result};
use crate::fsio::{self, Durability};
use crate::ids::BlockId;
use crate::layout::Layout;
use crate::paths::{decode_text, encode_text};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::ErrorKind;

const MAGIC: &str = "globofs-revoked 1";

/// One revoked node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revoked {
    /// Its uuid.
    pub uuid: String,
    /// Its name where it was revoked (for people).
    pub name: String,
}

impl Revoked {
    /// The revocation record's text, ending with its checksum line.
    pub fn encode(&self) -> Vec<u8> {
        let body = format!("{MAGIC}\nuuid {}\nname {}\n", self.uuid, encode_text(self.name.as_bytes()));
        let sum = BlockId(Sha256::digest(body.as_bytes()).into());
        format!("{body}end {sum}\n").into_bytes()
    }

    /// Parses and checks a revocation record.
    pub fn decode(bytes: &[u8]) -> std::result::Result<Revoked, String> {
        let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        let [magic, uuid, name, end] = lines[..] else { return Err("a revocation has four lines".into()) };
        let body_len = magic.len() + uuid.len() + name.len();
        let sum = end.strip_prefix("end ").and_then(|s| s.strip_suffix('\n')).and_then(BlockId::parse);
        if sum != Some(BlockId(Sha256::digest(&bytes[..body_len]).into())) {
            return Err("checksum mismatch (torn or altered)".into());
        }
        if magic != format!("{MAGIC}\n") {
            return Err("not a revocation of a supported format".into());
        }
        fn value<'a>(key: &str, line: &'a str) -> Option<&'a str> {
            line.strip_prefix(key).and_then(|v| v.strip_suffix('\n'))
        }
        let uuid = value("uuid ", uuid).filter(|u| uuid::Uuid::parse_str(u).is_ok()).ok_or("bad uuid line")?;
        let name = value("name ", name).and_then(decode_text).ok_or("bad name line")?;
        Ok(Revoked { uuid: uuid.to_string(), name: String::from_utf8_lossy(&name).into_owned() })
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocations_round_trip_and_refuse_damage() {
        let r = Revoked { uuid: "7c53e0e5-006b-4463-b0d6-444bc19e7550".into(), name: "lost laptop".into() };
        let bytes = r.encode();
        assert_eq!(Revoked::decode(&bytes), Ok(r));
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x20;
            assert!(Revoked::decode(&bad).is_err(), "flip at {i} accepted");
            assert!(Revoked::decode(&bytes[..i]).is_err(), "cut at {i} accepted");
        }
    }
}
