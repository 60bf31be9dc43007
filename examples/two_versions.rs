//! Two versions of one file, through the library API.
//!
//! Creates a volume in a temp directory, imports a file, edits the file and imports it
//! again, then lists the path's history and reads both versions back. The file is large
//! enough to span several blocks, so the output also shows deduplication at work: the
//! edit near the start of the file only changes the blocks around it.
//!
//! ```text
//! cargo run --example two_versions
//! ```

use globofs::config::Chunking;
use globofs::export;
use globofs::ingest;
use globofs::paths::VolPath;
use globofs::volume::Volume;

fn main() -> globofs::Result<()> {
    // Everything lives in a temp directory that is removed when `tmp` is dropped.
    let tmp = tempfile::tempdir().expect("create a temp directory");

    // A volume is a plain directory. `init` creates it with the default chunking
    // (content-defined blocks of 128 KiB on average); the name labels this node.
    let vol = Volume::init(&tmp.path().join("volume"), Some("example".into()), Chunking::default())?;
    println!("created volume {}", vol.dir().display());

    // The source file lives outside the volume: about 1 MiB of numbered lines.
    let src = tmp.path().join("notes.txt");
    let first: String =
        (0..20_000).map(|i| format!("line {i:05}: nothing to report on day {}\n", i * 7 % 365)).collect();
    std::fs::write(&src, &first).expect("write the source file");

    // Paths inside a volume are `VolPath`s; missing parent directories are implied.
    let dest = VolPath::parse(b"journal/notes.txt")?;
    let stats = ingest::import(&vol, &src, &dest, false)?;
    println!(
        "import 1: {} version committed, {} bytes read, {} new blocks ({} bytes on disk)",
        stats.committed, stats.bytes_read, stats.new_blocks, stats.new_block_bytes
    );

    // Edit the file near its start and import it again to the same path: a new version.
    // Blocks that did not change are already in the store and are not written again.
    let second = first.replacen("line 00010: nothing to report", "line 00010: something happened", 1);
    std::fs::write(&src, &second).expect("edit the source file");
    let stats = ingest::import(&vol, &src, &dest, false)?;
    println!(
        "import 2: {} version committed, {} bytes read, {} new blocks ({} bytes on disk)",
        stats.committed, stats.bytes_read, stats.new_blocks, stats.new_block_bytes
    );

    // Every version of the path, newest first. Each one names its blocks by SHA-256.
    let history = vol.history(&dest)?;
    println!("history of {dest}:");
    for v in &history {
        let parents: Vec<&str> = v.parents.iter().map(|p| p.as_str()).collect();
        let parents = if parents.is_empty() { "none".to_string() } else { parents.join(", ") };
        println!("  {}  {:?}, {} bytes in {} blocks, parent: {parents}", v.id, v.kind, v.size, v.blocks.len());
    }
    let [newest, oldest] = history.as_slice() else {
        panic!("expected two versions, found {}", history.len());
    };
    let shared = newest.blocks.iter().filter(|b| oldest.blocks.contains(b)).count();
    println!("  the two versions share {shared} of {} blocks", newest.blocks.len());

    // `resolve` with no id gives the live head; with an id, that version. `read_version`
    // writes a version's content to any `io::Write`, hash-checking each block on the way.
    let head = export::resolve(&vol, &dest, None)?;
    assert_eq!(head.id, newest.id);
    let old = export::resolve(&vol, &dest, Some(oldest.id.as_str()))?;
    for (label, v, expected) in [("old", &old, &first), ("new", &head, &second)] {
        let mut content = Vec::new();
        export::read_version(&vol, v, &mut content)?;
        assert_eq!(content, expected.as_bytes());
        let line = content.split(|&b| b == b'\n').nth(10).unwrap_or_default();
        println!(
            "read {label} version {}: {} bytes, line 11 is {:?}",
            v.id,
            content.len(),
            String::from_utf8_lossy(line)
        );
    }
    Ok(())
}
