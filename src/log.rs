//! Upstream logs (docs/FORMAT.md, "Logs"): the files a node appends into a peer's
//! `local/upstream/<its uuid>/updates/`. A log is a series of segments (`latest`, rotated to
//! `<sec>.<nsec>` as it grows); each starts with a header naming the segment, then framed,
//! checksummed records, each carrying one version manifest. Exactly one node writes a log.
//! Parsing never panics, never applies a torn tail, and skips a bad record by its length.

use crate::error::{Error, IoContext, Result};
use crate::fsio;
use crate::ids::BlockId;
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// First word of a segment's header line.
const HEADER: &str = "globofs-log 1";
/// `latest` is rotated once it is larger than this.
pub const ROTATE_AT: u64 = 4 << 20;
/// A segment larger than this is refused unread (no writer makes one).
pub const MAX_SEGMENT: u64 = 300 << 20;

/// Frames one payload: `record <len> <sha256>\n<payload>`.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let sum = BlockId(Sha256::digest(payload).into());
    let mut out = format!("record {} {}\n", payload.len(), sum).into_bytes();
    out.extend_from_slice(payload);
    out
}

/// What parsing a segment found.
#[derive(Debug, Default)]
pub struct Parsed {
    /// The segment's id from its header (`None`: no complete header yet).
    pub segment: Option<String>,
    /// Byte offset where the header ends (where records start).
    pub body_start: u64,
    /// Complete, checksum-valid records with the offset just past each.
    pub records: Vec<(Vec<u8>, u64)>,
    /// Records refused (bad checksum or frame), as messages.
    pub refused: Vec<String>,
    /// Offset just past the last complete record: everything after it is a torn tail.
    pub valid_end: u64,
}

/// Parses a segment's bytes from `start` (0, or an offset inside the body).
pub fn parse(bytes: &[u8], start: u64) -> Parsed {
    let mut p = Parsed::default();
    let Some(nl) = bytes.iter().position(|&b| b == b'\n') else { return p };
    let header = String::from_utf8_lossy(&bytes[..nl]);
    let Some(id) = header.strip_prefix(HEADER).and_then(|r| r.strip_prefix(' ')).filter(|id| valid_segment_id(id))
    else {
        p.refused.push("segment header is not `globofs-log 1 <id>`".into());
        return p;
    };
    p.segment = Some(id.to_string());
    p.body_start = nl as u64 + 1;
    let mut at = start.max(p.body_start) as usize;
    p.valid_end = at as u64;
    while at < bytes.len() {
        let rest = &bytes[at..];
        let Some(nl) = rest.iter().position(|&b| b == b'\n').filter(|&n| n <= 100) else {
            if rest.len() > 100 {
                p.refused.push(format!("unreadable record frame at byte {at}; the rest of the segment is skipped"));
            }
            break; // torn tail, or garbage we cannot resynchronize past
        };
        let line = String::from_utf8_lossy(&rest[..nl]);
        let mut parts = line.split(' ');
        let (Some("record"), Some(len), Some(sum), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            p.refused.push(format!("bad record frame at byte {at}; the rest of the segment is skipped"));
            break;
        };
        let (Some(len), Some(sum)) =
            (len.parse::<usize>().ok().filter(|_| len.bytes().all(|c| c.is_ascii_digit())), BlockId::parse(sum))
        else {
            p.refused.push(format!("bad record frame at byte {at}; the rest of the segment is skipped"));
            break;
        };
        let Some(payload) = rest.get(nl + 1..).and_then(|r| r.get(..len)) else { break }; // torn
        at += nl + 1 + len;
        p.valid_end = at as u64;
        if BlockId(Sha256::digest(payload).into()) == sum {
            p.records.push((payload.to_vec(), at as u64));
        } else {
            p.refused.push(format!("record ending at byte {at} fails its checksum"));
        }
    }
    p
}

fn valid_segment_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
}

/// Reads a segment file without following a symlink, refusing oversized ones.
pub fn read_segment(path: &Path) -> Result<Vec<u8>> {
    let f = open_nofollow(path).ctx("open log", path)?;
    let m = f.metadata().ctx("stat log", path)?;
    if !m.is_file() || m.len() > MAX_SEGMENT {
        return Err(Error::corrupt("log segment", path, "not a regular file of a plausible size"));
    }
    let mut buf = Vec::with_capacity(m.len() as usize);
    f.take(MAX_SEGMENT).read_to_end(&mut buf).ctx("read log", path)?;
    Ok(buf)
}

/// The segment files of a log directory: rotated ones oldest first, then `latest`.
pub fn segments(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(e).ctx("list log", dir),
    };
    let mut rotated = Vec::new();
    let mut latest = None;
    for e in rd {
        let e = e.ctx("list log", dir)?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name == "latest" {
            latest = Some(e.path());
        } else if name.split_once('.').is_some_and(|(a, b)| {
            !a.is_empty() && !b.is_empty() && a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit())
        }) {
            rotated.push((name, e.path()));
        }
    }
    rotated.sort_by(|a, b| {
        let key = |n: &str| n.split_once('.').map(|(s, ns)| (s.len(), s.to_string(), ns.len(), ns.to_string()));
        key(&a.0).cmp(&key(&b.0))
    });
    let mut out: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
    out.extend(latest);
    Ok(out)
}

/// The writer's memory of its log in one peer: which segment `latest` is and how long it
/// was after the last complete append.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriterState {
    /// Segment id of the peer's `latest` as we last wrote it.
    pub segment: String,
    /// Its length then.
    pub len: u64,
}

/// Appends framed records to the log in `dir` (creating it), repairing a torn tail first and
/// rotating `latest` as it grows. Called only by the log's single writer.
pub fn append(dir: &Path, state: &mut WriterState, records: &[Vec<u8>]) -> Result<()> {
    // The directory must exist: creating it here could fill an empty mount point.
    if !fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()) {
        return Err(Error::corrupt("log directory", dir, "missing or not a directory"));
    }
    let latest = dir.join("latest");
    let mut pending = records.iter().peekable();
    while pending.peek().is_some() {
        let len = open_latest(&latest, state)?;
        let mut f = fsio::open_append(&latest, false).ctx("open log", &latest)?;
        let mut buf = Vec::new();
        let mut size = len;
        while let Some(r) = pending.peek() {
            if size > ROTATE_AT && !buf.is_empty() {
                break;
            }
            let framed = frame(r);
            size += framed.len() as u64;
            buf.extend_from_slice(&framed);
            pending.next();
        }
        fsio::write(&mut f, &buf, &latest).ctx("append to log", &latest)?;
        fsio::fsync(&f, &latest).ctx("fsync log", &latest)?;
        state.len = size;
        if size > ROTATE_AT {
            let rotated = dir.join(rotated_name(dir)?);
            fsio::rename(&latest, &rotated).ctx("rotate log", &latest)?;
            *state = WriterState::default();
        }
    }
    Ok(())
}

/// True if the peer's `latest` lost records we appended (it was truncated, replaced or
/// removed by someone else): the writer must then resend everything, since it cannot know
/// what else is gone. A tail torn by our own interrupted append is not a loss.
pub fn lost_records(dir: &Path, state: &WriterState) -> bool {
    if state.segment.is_empty() {
        return false; // nothing written since the last rotation
    }
    let latest = dir.join("latest");
    let same_len = fs::symlink_metadata(&latest).is_ok_and(|m| m.len() == state.len);
    if same_len && header_id(&latest).as_deref() == Some(state.segment.as_str()) {
        return false; // as we left it
    }
    let Ok(bytes) = read_segment(&latest) else { return true };
    let parsed = parse(&bytes, 0);
    parsed.segment.as_deref() != Some(state.segment.as_str()) || parsed.valid_end < state.len
}

/// Makes sure `latest` exists, starts with a header, and ends with a complete record;
/// returns its length. A tail torn by an interrupted append is cut off (we are the only
/// writer, so nothing but our own unfinished append can be there).
fn open_latest(latest: &Path, state: &mut WriterState) -> Result<u64> {
    match fs::symlink_metadata(latest) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = uuid::Uuid::new_v4().simple().to_string();
            let header = format!("{HEADER} {id}\n");
            let mut f = fsio::create_new(latest, 0o644).ctx("create log", latest)?;
            fsio::write(&mut f, header.as_bytes(), latest).ctx("write log", latest)?;
            fsio::fsync(&f, latest).ctx("fsync log", latest)?;
            *state = WriterState { segment: id, len: header.len() as u64 };
            Ok(state.len)
        }
        Err(e) => Err(e).ctx("stat log", latest),
        Ok(m) if !m.is_file() => Err(Error::corrupt("log segment", latest, "not a regular file")),
        Ok(m)
            if m.len() == state.len
                && !state.segment.is_empty()
                && header_id(latest).as_ref() == Some(&state.segment) =>
        {
            Ok(m.len())
        }
        Ok(_) => {
            let bytes = read_segment(latest)?;
            let parsed = parse(&bytes, 0);
            let Some(segment) = parsed.segment else {
                if bytes.contains(&b'\n') {
                    return Err(Error::corrupt("log segment", latest, "its header is not `globofs-log 1 <id>`"));
                }
                // Not even a complete header (a crash while creating it): start again.
                fsio::remove_file(latest).ctx("reset log", latest)?;
                return open_latest(latest, state);
            };
            if parsed.valid_end < bytes.len() as u64 {
                let f = fsio::open_write(latest).ctx("open log", latest)?;
                fsio::set_len(&f, parsed.valid_end, latest).ctx("repair torn log", latest)?;
                fsio::fsync(&f, latest).ctx("fsync log", latest)?;
            }
            *state = WriterState { segment, len: parsed.valid_end };
            Ok(state.len)
        }
    }
}

/// The segment id in the header of the file at `path`, reading only its first line.
pub fn header_id(path: &Path) -> Option<String> {
    let mut f = open_nofollow(path).ok().filter(|f| f.metadata().is_ok_and(|m| m.is_file()))?;
    let mut head = [0u8; 128];
    let n = f.read(&mut head).ok()?;
    parse(head.get(..n)?, 0).segment
}

/// A name for the next rotated segment: the time now, but always after every existing
/// segment, so a clock that went backwards cannot reorder the log.
fn rotated_name(dir: &Path) -> Result<String> {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let mut next = (t.as_secs(), t.subsec_nanos());
    for seg in segments(dir)? {
        let name = seg.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if let Some((s, ns)) =
            name.split_once('.').and_then(|(s, ns)| Some((s.parse::<u64>().ok()?, ns.parse::<u32>().ok()?)))
        {
            if (s, ns) >= next {
                next = if ns >= 999_999_999 { (s + 1, 0) } else { (s, ns + 1) };
            }
        }
    }
    Ok(format!("{}.{:09}", next.0, next.1))
}

/// Opens `path` for reading without following symlinks and without blocking on a FIFO
/// (files a peer controls); callers check that it is a regular file.
pub fn open_nofollow(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_parse_repair_and_rotate() {
        let d = tempfile::tempdir().unwrap();
        let mut st = WriterState::default();
        append(d.path(), &mut st, &[b"one\n".to_vec(), b"two\n".to_vec()]).unwrap();
        let bytes = fs::read(d.path().join("latest")).unwrap();
        let p = parse(&bytes, 0);
        assert_eq!(
            p.records.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
            vec![b"one\n".to_vec(), b"two\n".to_vec()]
        );
        // Torn tail: half a record appended by a dropped connection.
        let mut torn = bytes.clone();
        torn.extend_from_slice(&frame(b"three\n")[..10]);
        fs::write(d.path().join("latest"), &torn).unwrap();
        assert_eq!(parse(&torn, 0).records.len(), 2);
        append(d.path(), &mut st, &[b"four\n".to_vec()]).unwrap();
        let p = parse(&fs::read(d.path().join("latest")).unwrap(), 0);
        assert_eq!(p.records.len(), 3);
        assert!(p.refused.is_empty());
        // Reading from a watermark gives only what is new.
        let mark = p.records[1].1;
        assert_eq!(parse(&fs::read(d.path().join("latest")).unwrap(), mark).records.len(), 1);
        // Rotation.
        let big = vec![b'x'; (ROTATE_AT / 2) as usize];
        append(d.path(), &mut st, &[big.clone(), big.clone(), big]).unwrap();
        assert!(segments(d.path()).unwrap().len() >= 2);
    }

    #[test]
    fn corrupt_records_are_refused_not_fatal() {
        let mut bytes = format!("{HEADER} abc\n").into_bytes();
        bytes.extend(frame(b"good\n"));
        let mut bad = frame(b"evil\n");
        let n = bad.len();
        bad[n - 2] ^= 1;
        bytes.extend(bad);
        bytes.extend(frame(b"after\n"));
        let p = parse(&bytes, 0);
        assert_eq!(p.records.len(), 2);
        assert_eq!(p.refused.len(), 1);
        assert!(parse(b"garbage", 0).records.is_empty());
    }
}
