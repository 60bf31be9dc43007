//! What a log record carries: a version manifest, the notice that a version was pruned, or
//! a revoked node ([`crate::revoke`]; see docs/FORMAT.md, "Records"). Prune notices travel with the versions, so that a node
//! which received a version but never fetched its blocks drops it once its maker, or any
//! node it came through, pruned it, instead of keeping forever a version nobody can read.

use crate::ids::{BlockId, VersionId};
use crate::manifest::Version;
use crate::paths::{decode_text, encode_text, VolPath};
use crate::revoke::Revoked;
use sha2::{Digest, Sha256};

const NOTICE_MAGIC: &str = "globofs-pruned 1";
const REVOKED_MAGIC: &str = "globofs-revoked 1";

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
        encode_fields(NOTICE_MAGIC, [("id", self.id.as_str()), ("path", &self.path.to_text())])
    }

    /// Parses and checks a notice.
    pub fn decode(bytes: &[u8]) -> Result<PruneNotice, String> {
        let [id, path] = decode_fields(bytes, NOTICE_MAGIC, ["id", "path"])?;
        let id = VersionId::parse(id).ok_or("bad id line")?;
        let path = VolPath::from_text(path).map_err(|e| e.to_string())?;
        if path.is_root() {
            return Err("path is the volume root".into());
        }
        Ok(PruneNotice { path, id })
    }
}

impl Revoked {
    /// The revocation record's text, ending with its checksum line.
    pub fn encode(&self) -> Vec<u8> {
        encode_fields(REVOKED_MAGIC, [("uuid", &self.uuid), ("name", &encode_text(self.name.as_bytes()))])
    }

    /// Parses and checks a revocation record.
    pub fn decode(bytes: &[u8]) -> Result<Revoked, String> {
        let [uuid, name] = decode_fields(bytes, REVOKED_MAGIC, ["uuid", "name"])?;
        uuid::Uuid::parse_str(uuid).map_err(|_| "bad uuid line")?;
        let name = decode_text(name).ok_or("bad name line")?;
        Ok(Revoked { uuid: uuid.to_string(), name: String::from_utf8_lossy(&name).into_owned() })
    }
}

/// A four-line record: its magic line, two `<key> <value>` lines, and `end <sha256>` of the
/// three lines before.
fn encode_fields(magic: &str, fields: [(&str, &str); 2]) -> Vec<u8> {
    let [(k1, v1), (k2, v2)] = fields;
    let body = format!("{magic}\n{k1} {v1}\n{k2} {v2}\n");
    let sum = BlockId(Sha256::digest(body.as_bytes()).into());
    format!("{body}end {sum}\n").into_bytes()
}

/// The two values of a record made by [`encode_fields`], after checking its checksum,
/// magic line and keys.
fn decode_fields<'a>(bytes: &'a [u8], magic: &str, keys: [&str; 2]) -> Result<[&'a str; 2], String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let [first, one, two, end] = lines[..] else { return Err("a record of this kind has four lines".into()) };
    let body_len = first.len() + one.len() + two.len();
    let sum = end.strip_prefix("end ").and_then(|s| s.strip_suffix('\n')).and_then(BlockId::parse);
    if sum != Some(BlockId(Sha256::digest(&bytes[..body_len]).into())) {
        return Err("checksum mismatch (torn or altered)".into());
    }
    if first.strip_suffix('\n') != Some(magic) {
        return Err("not a record of a supported format".into());
    }
    let value = |key: &str, line: &'a str| {
        line.strip_suffix('\n').and_then(|l| l.strip_prefix(key)).and_then(|l| l.strip_prefix(' '))
    };
    match (value(keys[0], one), value(keys[1], two)) {
        (Some(a), Some(b)) => Ok([a, b]),
        _ => Err(format!("bad {} or {} line", keys[0], keys[1])),
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

    #[test]
    fn records_round_trip_and_refuse_damage() {
        let notice = PruneNotice {
            path: VolPath::parse(b"notes/plan 100%.txt").unwrap(),
            id: VersionId::parse("1740913200.123456789-21f8cc6e-9f3e02c1").unwrap(),
        };
        let revoked = Revoked { uuid: "7c53e0e5-006b-4463-b0d6-444bc19e7550".into(), name: "lost laptop".into() };
        for r in [Record::Pruned(notice), Record::Revoked(revoked)] {
            let bytes = r.encode();
            assert_eq!(Record::decode(&bytes), Ok(r));
            for i in 0..bytes.len() {
                let mut bad = bytes.clone();
                bad[i] ^= 0x20;
                assert!(Record::decode(&bad).is_err(), "flip at {i} accepted");
                assert!(Record::decode(&bytes[..i]).is_err(), "cut at {i} accepted");
            }
        }
    }

    #[test]
    fn a_notice_for_an_escaping_path_is_refused() {
        let body = format!("{NOTICE_MAGIC}\nid 1740913200.123456789-21f8cc6e-9f3e02c1\npath ../etc\n");
        let sum = BlockId(Sha256::digest(body.as_bytes()).into());
        assert!(PruneNotice::decode(format!("{body}end {sum}\n").as_bytes()).is_err());
    }
}
