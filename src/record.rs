//! What a log record carries: a version manifest, the notice that a version was pruned, or
//! a revoked node ([`crate::revoke`]; see docs/FORMAT.md, "Records"). Prune notices travel with the versions, so that a node
//! which received a version but never fetched its blocks drops it once its maker, or any
//! node it came through, pruned it, instead of keeping forever a version nobody can read.

use crate::ids::{BlockId, VersionId};
use crate::manifest::Version;
use crate::paths::VolPath;
use crate::revoke::Revoked;
use sha2::{Digest, Sha256};

const NOTICE_MAGIC: &str = "globofs-pruned 1";

/// One record of a log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// A version (its manifest).
    Version(Version),
    /// A version pruned by the node that pushed the record.
    Pruned(PruneNotice),
    /// A node revoked by the node that pushed the record, or by one it heard from.
    Revoked(Revoked),
}

/// "Version `id` of `path` was pruned".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PruneNotice {
    /// The path.
    pub path: VolPath,
    /// The pruned version.
    pub id: VersionId,
}

impl PruneNotice {
    /// The record's text, ending with its checksum line, as a manifest does.
    pub fn encode(&self) -> Vec<u8> {
        let body = format!("{NOTICE_MAGIC}\nid {}\npath {}\n", self.id, self.path.to_text());
        let sum = BlockId(Sha256::digest(body.as_bytes()).into());
        format!("{body}end {sum}\n").into_bytes()
    }

    /// Parses and checks a notice.
    pub fn decode(bytes: &[u8]) -> Result<PruneNotice, String> {
        let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        let [magic, id, path, end] = lines[..] else { return Err("a prune notice has four lines".into()) };
        let body_len = magic.len() + id.len() + path.len();
        let sum = end.strip_prefix("end ").and_then(|s| s.strip_suffix('\n')).and_then(BlockId::parse);
        if sum != Some(BlockId(Sha256::digest(&bytes[..body_len]).into())) {
            return Err("checksum mismatch (torn or altered)".into());
        }
        if magic != format!("{NOTICE_MAGIC}\n") {
            return Err("not a prune notice of a supported format".into());
        }
        fn field<'a>(key: &str, line: &'a str) -> Option<&'a str> {
            line.strip_prefix(key).and_then(|v| v.strip_suffix('\n'))
        }
        let id = field("id ", id).and_then(VersionId::parse).ok_or("bad id line")?;
        let path = field("path ", path).ok_or("bad path line")?;
        let path = VolPath::from_text(path).map_err(|e| e.to_string())?;
        if path.is_root() {
            return Err("path is the volume root".into());
        }
        Ok(PruneNotice { path, id })
    }
}

impl Record {
    /// The record's payload.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Record::Version(v) => v.encode(),
            Record::Pruned(n) => n.encode(),
            Record::Revoked(r) => r.encode(),
        }
    }

    /// Parses a record's payload, with every check of its kind.
    pub fn decode(bytes: &[u8]) -> Result<Record, String> {
        if bytes.starts_with(b"globofs-pruned ") {
            PruneNotice::decode(bytes).map(Record::Pruned)
        } else if bytes.starts_with(b"globofs-revoked ") {
            Revoked::decode(bytes).map(Record::Revoked)
        } else {
            Version::decode(bytes).map(Record::Version)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice() -> PruneNotice {
        PruneNotice {
            path: VolPath::parse(b"notes/plan 100%.txt").unwrap(),
            id: VersionId::parse("1740913200.123456789-21f8cc6e-9f3e02c1").unwrap(),
        }
    }

    #[test]
    fn notices_round_trip_and_refuse_damage() {
        let n = notice();
        let bytes = n.encode();
        assert_eq!(Record::decode(&bytes), Ok(Record::Pruned(n)));
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x20;
            assert!(Record::decode(&bad).is_err(), "flip at {i} accepted");
            assert!(Record::decode(&bytes[..i]).is_err(), "cut at {i} accepted");
        }
    }

    #[test]
    fn a_notice_for_an_escaping_path_is_refused() {
        let body = format!("{NOTICE_MAGIC}\nid 1740913200.123456789-21f8cc6e-9f3e02c1\npath ../etc\n");
        let sum = BlockId(Sha256::digest(body.as_bytes()).into());
        assert!(PruneNotice::decode(format!("{body}end {sum}\n").as_bytes()).is_err());
    }
}
