//! Property tests over the parsers that read what peers and disks hand us: configs (TOML and
//! key=value lines), manifests, log segments, block files, paths, version ids, and the
//! text escapes. Arbitrary bytes and mutations of valid encodings never panic; valid
//! encodings round-trip. Case counts are small for the normal run (the file takes a few
//! seconds in a debug build); `GLOBOFS_LONG=1` runs 20 times as many.

use globofs::blocks::{decode_checked, encode};
use globofs::config::{parse_config_text, parse_duration, parse_size, Config};
use globofs::ids::{BlockId, VersionId};
use globofs::log;
use globofs::manifest::{BlockRef, Kind, Timestamp, Version};
use globofs::paths::{decode_text, encode_text, VolPath};
use proptest::prelude::*;
use std::path::{Component, Path};
use std::sync::atomic::{AtomicUsize, Ordering};

fn cases(n: u32) -> ProptestConfig {
    let long = std::env::var_os("GLOBOFS_LONG").is_some_and(|v| v != "0" && !v.is_empty());
    ProptestConfig { cases: if long { n * 20 } else { n }, failure_persistence: None, ..ProptestConfig::default() }
}

static RUN: AtomicUsize = AtomicUsize::new(0);

fn count() {
    RUN.fetch_add(1, Ordering::Relaxed);
}

/// Flips, inserts, deletes, truncates at, or duplicates a range at, offset `at`.
fn apply_mutation(bytes: &[u8], op: u8, at: usize, byte: u8, len: usize) -> Vec<u8> {
    let mut b = bytes.to_vec();
    let at = at % (b.len() + 1);
    match op {
        0 if at < b.len() => b[at] ^= byte | 1,
        1 => b.insert(at, byte),
        2 if at < b.len() => {
            b.remove(at);
        }
        3 => b.truncate(at),
        _ => {
            let end = (at + len % 64).min(b.len());
            let dup = b[at..end].to_vec();
            b.splice(at..at, dup);
        }
    }
    b
}

/// A mutation of `bytes` (see [`apply_mutation`]).
fn mutated(bytes: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    (0..5u8, any::<usize>(), any::<u8>(), 0..64usize)
        .prop_map(move |(op, at, byte, len)| apply_mutation(&bytes, op, at, byte, len))
}

// ---------------------------------------------------------------------------------------
// Strategies for valid values
// ---------------------------------------------------------------------------------------

fn name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 1..12),
        "[a-z%. _-]{1,10}".prop_map(String::into_bytes),
        Just(b"versions".to_vec()),
        Just("été".as_bytes().to_vec()),
    ]
    .prop_filter("a valid name", |n| {
        !n.contains(&b'/') && !n.contains(&0) && n.as_slice() != b"." && n.as_slice() != b".."
    })
}

fn vol_path() -> impl Strategy<Value = VolPath> {
    proptest::collection::vec(name(), 1..5)
        .prop_filter_map("a valid path", |names| VolPath::parse(&names.join(&b'/')).ok().filter(|p| !p.is_root()))
}

fn version_id() -> impl Strategy<Value = VersionId> {
    prop_oneof!["[0-9]{10}\\.[0-9]{9}-[0-9a-f]{8}-[0-9a-f]{8}", "[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}",]
        .prop_filter_map("a valid id", |s| VersionId::parse(&s))
}

fn timestamp() -> impl Strategy<Value = Timestamp> {
    (any::<i64>().prop_filter("not i64::MIN", |&s| s != i64::MIN), 0..1_000_000_000u32)
        .prop_map(|(sec, nsec)| Timestamp { sec, nsec })
}

fn version() -> impl Strategy<Value = Version> {
    (
        version_id(),
        vol_path(),
        0..4u8,
        proptest::collection::vec(version_id(), 0..3),
        "[ -~é]{0,12}",
        (timestamp(), timestamp(), 0..=0o7777u32),
        proptest::collection::vec((any::<[u8; 32]>(), 1..=16_777_216u32), 0..4),
        proptest::collection::vec(1..=255u8, 1..20),
    )
        .prop_map(|(id, path, kind, parents, origin_name, (time, mtime, mode), blocks, target)| {
            let kind = [Kind::File, Kind::Symlink, Kind::Dir, Kind::Tombstone][kind as usize];
            let blocks: Vec<BlockRef> = if kind == Kind::File {
                blocks.into_iter().map(|(h, len)| BlockRef { id: BlockId(h), len }).collect()
            } else {
                vec![]
            };
            Version {
                parents: parents.into_iter().filter(|p| *p != id).collect(),
                id,
                path,
                kind,
                origin: "68d25a11-a34a-4bbb-a29e-c9bd06ff8c53".into(),
                origin_name,
                time,
                size: blocks.iter().map(|b| u64::from(b.len)).sum(),
                mode,
                mtime,
                target: (kind == Kind::Symlink).then_some(target),
                blocks,
            }
        })
}

fn sample_config() -> String {
    let c = Config::new("node".into(), "/srv/vol".into(), Default::default());
    toml::to_string(&c).unwrap()
}

fn kv_line() -> impl Strategy<Value = String> {
    let keys = prop_oneof![
        Just("uuid"),
        Just("format"),
        Just("name"),
        Just("path"),
        Just("cacheonly"),
        Just("cachetime"),
        Just("compression"),
        Just("chunking"),
        Just("block_size"),
        Just("chunking.min"),
        Just("chunking.avg"),
        Just("chunking.max"),
        Just("keep_last"),
        Just("keep_within"),
        Just("max_history_size"),
        Just("auto_prune"),
        Just("on_commit"),
        Just("on_update"),
        Just("retention.keep_last"),
        Just("bogus"),
        Just("hooks"),
        Just("chunking.method.x"),
        Just("")
    ];
    let vals = prop_oneof![
        Just("68d25a11-a34a-4bbb-a29e-c9bd06ff8c53".to_string()),
        Just("yes".to_string()),
        Just("no".to_string()),
        Just("64K".to_string()),
        Just("30m".to_string()),
        Just("fixed".to_string()),
        Just("cdc".to_string()),
        Just("99999999999999999999999".to_string()),
        Just("18446744073709551615T".to_string()),
        Just("\"quoted\"".to_string()),
        "[ -~]{0,16}",
    ];
    (keys, vals, prop_oneof![Just(""), Just(" #c"), Just("\t#c"), Just(" ")])
        .prop_map(|(k, v, c)| format!("{k}={v}{c}"))
}

// ---------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(cases(300))]

    fn config_text_never_panics(s in "\\PC{0,200}") {
        count();
        let _ = parse_config_text::<Config>(&s);
        let _ = parse_size(&s);
        let _ = parse_duration(&s);
    }

    fn config_mutations_never_panic(b in mutated(sample_config().into_bytes())) {
        count();
        let s = String::from_utf8_lossy(&b);
        if let Ok(c) = parse_config_text::<Config>(&s) {
            // Whatever parses is checked on load without panicking.
            let d = tempfile::tempdir().unwrap();
            let p = d.path().join("config");
            std::fs::write(&p, s.as_bytes()).unwrap();
            let _ = Config::load(&p);
            let _ = c;
        }
    }

    fn key_value_configs_never_panic(lines in proptest::collection::vec(kv_line(), 0..12)) {
        count();
        let text = lines.join("\n");
        if parse_config_text::<Config>(&text).is_ok() {
            let d = tempfile::tempdir().unwrap();
            let p = d.path().join("config");
            std::fs::write(&p, &text).unwrap();
            let _ = Config::load(&p);
        }
    }

    fn manifests_round_trip(v in version()) {
        count();
        let bytes = v.encode();
        prop_assert_eq!(Version::decode(&bytes), Ok(v));
    }

    fn manifest_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..600)) {
        count();
        let _ = Version::decode(&b);
    }

    fn manifest_mutations_are_refused(v in version(), op in 0..5u8, at in any::<usize>(), byte in any::<u8>(), len in 1..64usize) {
        count();
        let good = v.encode();
        let bad = apply_mutation(&good, op, at, byte, len);
        // Further empty lines after `end` are accepted (FORMAT.md, lenient reader).
        let lenient = bad.len() > good.len() && bad.starts_with(&good) && bad[good.len()..].iter().all(|&c| c == b'\n');
        if bad != good && !lenient {
            prop_assert!(Version::decode(&bad).is_err(), "a mutated manifest decoded");
        }
    }

    fn log_segments_round_trip(payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..6)) {
        count();
        let mut seg = b"globofs-log 1 abc-123\n".to_vec();
        for p in &payloads {
            seg.extend(log::frame(p));
        }
        let parsed = log::parse(&seg, 0);
        prop_assert_eq!(parsed.segment.as_deref(), Some("abc-123"));
        prop_assert!(parsed.refused.is_empty());
        prop_assert_eq!(parsed.valid_end, seg.len() as u64);
        let got: Vec<Vec<u8>> = parsed.records.into_iter().map(|r| r.0).collect();
        prop_assert_eq!(got, payloads);
    }

    fn log_bytes_and_mutations_never_panic(
        b in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..400),
            mutated({
                let mut s = b"globofs-log 1 abc\n".to_vec();
                s.extend(log::frame(b"one\n"));
                s.extend(log::frame(b"two two\n"));
                s
            }),
        ],
        start in 0..500u64,
    ) {
        count();
        let p = log::parse(&b, start);
        prop_assert!(p.valid_end <= (b.len() as u64).max(start).max(p.body_start));
        for (payload, end) in &p.records {
            prop_assert!(*end as usize <= b.len());
            let _ = Version::decode(payload);
        }
    }

    fn block_files_round_trip(data in proptest::collection::vec(any::<u8>(), 0..4096), level in 1..=9u32) {
        count();
        let id = BlockId::of(&data);
        let gz = encode(&data, level).unwrap();
        prop_assert_eq!(decode_checked(&id, &gz), Ok(data.clone()));
        prop_assert!(decode_checked(&BlockId::of(b"other"), &gz).is_err() || data == b"other");
    }

    fn block_bytes_and_mutations_never_panic(
        b in prop_oneof![proptest::collection::vec(any::<u8>(), 0..300), mutated(encode(b"hello hello hello\n", 6).unwrap())],
    ) {
        count();
        let id = BlockId::of(b"hello hello hello\n");
        if let Ok(d) = decode_checked(&id, &b) {
            prop_assert_eq!(BlockId::of(&d), id);
        }
    }

    fn vol_paths_never_escape(raw in prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300),
        proptest::collection::vec(prop_oneof![Just(b"..".to_vec()), Just(b".".to_vec()), Just(b"".to_vec()), Just(b".globofs".to_vec()), name()], 0..6).prop_map(|n| n.join(&b'/')),
    ]) {
        count();
        if let Ok(p) = VolPath::parse(&raw) {
            prop_assert_eq!(VolPath::from_text(&p.to_text()).ok(), Some(p.clone()));
            prop_assert_eq!(VolPath::parse(&p.to_bytes()).ok(), Some(p.clone()));
            prop_assert!(!p.to_text().contains('\n'));
            let root = Path::new("/r/local/root");
            let d = p.disk_dir(root);
            prop_assert!(d.starts_with(root));
            prop_assert!(d.components().all(|c| matches!(c, Component::Normal(_) | Component::RootDir)));
        }
        let s = String::from_utf8_lossy(&raw);
        let _ = VolPath::from_text(&s);
    }

    fn text_escapes_round_trip(raw in proptest::collection::vec(any::<u8>(), 0..100), s in "\\PC{0,40}") {
        count();
        prop_assert_eq!(decode_text(&encode_text(&raw)), Some(raw));
        let _ = decode_text(&s);
    }

    fn version_ids_parse_safely(s in prop_oneof!["\\PC{0,80}", "[0-9.a-z-]{0,70}"]) {
        count();
        if let Some(id) = VersionId::parse(&s) {
            prop_assert_eq!(id.as_str(), s.as_str());
            prop_assert!(!s.contains('/') && !s.starts_with('.') && s != "latest" && s.len() <= 64);
            let _ = id.time();
        }
        let _ = BlockId::parse(&s);
    }
}

#[test]
fn parsers_never_panic_and_valid_encodings_round_trip() {
    let t = std::time::Instant::now();
    config_text_never_panics();
    config_mutations_never_panic();
    key_value_configs_never_panic();
    manifests_round_trip();
    manifest_bytes_never_panic();
    manifest_mutations_are_refused();
    log_segments_round_trip();
    log_bytes_and_mutations_never_panic();
    block_files_round_trip();
    block_bytes_and_mutations_never_panic();
    vol_paths_never_escape();
    text_escapes_round_trip();
    version_ids_parse_safely();
    let n = RUN.load(Ordering::Relaxed);
    eprintln!("fuzz: 13 properties, {n} inputs, 0 panics, 0 round-trip failures ({:.1?})", t.elapsed());
}
