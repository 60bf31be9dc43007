//! globofs: a block-level deduplicating, versioning store over plain directories.
//!
//! A *volume* is a directory. Files are cut into blocks ([`chunker`]), each stored once in
//! the [`blocks`] store as gzip named by its SHA-256; every change of a path is an immutable
//! [`manifest::Version`] kept under `local/root/<path>/versions/` by the [`volume`]. The
//! [`tree`] module gives the namespace (live paths, directories, rm, mv); [`ingest`] brings
//! content in, [`export`] takes it out, [`verify`] checks everything. The on-disk format is
//! specified in `docs/FORMAT.md`; the write path and its durability steps in `docs/DESIGN.md`.
//!
//! ```
//! use globofs::{config::Chunking, paths::VolPath, volume::Volume};
//! let dir = tempfile::tempdir().unwrap();
//! let vol = Volume::init(&dir.path().join("vol"), Some("doc".into()), Chunking::default()).unwrap();
//! let src = dir.path().join("hello.txt");
//! std::fs::write(&src, b"hello").unwrap();
//! let dest = VolPath::parse(b"greetings/hello.txt").unwrap();
//! globofs::ingest::import(&vol, &src, &dest, false).unwrap();
//! let head = globofs::export::resolve(&vol, &dest, None).unwrap();
//! let mut out = Vec::new();
//! globofs::export::read_version(&vol, &head, &mut out).unwrap();
//! assert_eq!(out, b"hello");
//! ```

// Library code reports failures as errors, never by panicking on them.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod blocks;
pub mod chunker;
pub mod config;
pub mod error;
pub mod events;
pub mod export;
pub mod faults;
pub mod fsio;
pub mod gc;
pub mod identity;
pub mod ids;
pub mod ingest;
pub mod journal;
pub mod layout;
pub mod log;
pub mod manifest;
pub mod mount;
pub mod paths;
pub mod peers;
pub mod prefetch;
pub mod progress;
pub mod record;
pub mod recover;
pub mod retention;
pub mod revoke;
pub mod sync;
pub mod tree;
pub mod verify;
pub mod view;
pub mod volume;

pub use error::{Error, Result};
