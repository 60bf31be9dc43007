//! Volume configuration (`local/config`): what it holds, how it is read (TOML, or the seed's
//! plain `key=value` lines) and written (TOML, atomically). Also the size and duration
//! syntax shared by the command line (`4MiB`, `30m`). Never writes anything but the config.

use crate::error::{Error, IoContext, Result};
use crate::fsio::{self, Durability};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Format version of config files, manifests and logs this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// How files are cut into blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChunkMethod {
    /// Content-defined chunking (FastCDC): insertions shift no block boundaries but nearby ones.
    Cdc,
    /// Fixed-size blocks of `avg` bytes.
    Fixed,
}

/// Block size parameters, fixed at `init`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chunking {
    /// `cdc` or `fixed`.
    pub method: ChunkMethod,
    /// Smallest block (CDC only).
    pub min: u32,
    /// Average block size (CDC) or the block size (fixed).
    pub avg: u32,
    /// Largest block (CDC only).
    pub max: u32,
}

impl Chunking {
    /// Parameters for an average (or fixed) block size; CDC uses avg/4 .. avg*4.
    pub fn new(method: ChunkMethod, avg: u32) -> Result<Chunking> {
        let (lo, hi) = (64 * 1024, 4 * 1024 * 1024);
        if !(lo..=hi).contains(&avg) {
            return Err(Error::Usage(format!("block size {avg} is out of range: choose between 64KiB and 4MiB")));
        }
        Ok(match method {
            ChunkMethod::Cdc => Chunking { method, min: avg / 4, avg, max: avg * 4 },
            ChunkMethod::Fixed => Chunking { method, min: avg, avg, max: avg },
        })
    }

    /// Largest block this volume writes.
    pub fn max_block(&self) -> usize {
        self.max as usize
    }

    fn check(&self) -> std::result::Result<(), String> {
        let ok = match self.method {
            ChunkMethod::Cdc => {
                64 <= self.min
                    && self.min <= 1 << 20
                    && self.min <= self.avg
                    && self.avg <= self.max
                    && self.avg <= 4 << 20
                    && (1024..=16 << 20).contains(&self.max)
            }
            ChunkMethod::Fixed => (4096..=16 << 20).contains(&self.avg) && self.min == self.avg && self.max == self.avg,
        };
        ok.then_some(()).ok_or_else(|| format!("chunking sizes {}/{}/{} are not usable", self.min, self.avg, self.max))
    }
}

impl Default for Chunking {
    fn default() -> Chunking {
        Chunking { method: ChunkMethod::Cdc, min: 32 << 10, avg: 128 << 10, max: 512 << 10 }
    }
}

/// Retention policy applied by `globofs prune`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Keep at least this many versions of each file (0: no count limit).
    #[serde(default)]
    pub keep_last: u32,
    /// Keep every version younger than this (e.g. `30d`; empty: no age rule).
    #[serde(default)]
    pub keep_within: String,
    /// Cap on the bytes of old versions per file (0: no cap).
    #[serde(default)]
    pub max_history_size: u64,
    /// Prune automatically after each commit.
    #[serde(default)]
    pub auto_prune: bool,
}

/// Commands run on events (see docs/DESIGN.md); empty means none.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hooks {
    /// Run after a local change commits.
    #[serde(default)]
    pub on_commit: String,
    /// Run after versions received from peers are applied.
    #[serde(default)]
    pub on_update: String,
}

/// The contents of `local/config`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Format version of the volume.
    #[serde(default = "default_format")]
    pub format: u32,
    /// This node's uuid, unique across all nodes.
    pub uuid: String,
    /// Human name of this node (default: the host name).
    #[serde(default)]
    pub name: String,
    /// Where the volume was created (informational; the volume is found by its location).
    #[serde(default)]
    pub path: String,
    /// Blocks pulled from peers are a cache that gc may evict after `cachetime`.
    #[serde(default)]
    pub cacheonly: bool,
    /// How long pulled blocks stay cached when `cacheonly` is set.
    #[serde(default = "default_cachetime")]
    pub cachetime: String,
    /// gzip level for compressible blocks (1-9); incompressible ones are stored (level 0).
    #[serde(default = "default_compression")]
    pub compression: u32,
    /// Block sizes.
    #[serde(default)]
    pub chunking: Chunking,
    /// Retention policy.
    #[serde(default)]
    pub retention: Retention,
    /// Event hooks.
    #[serde(default)]
    pub hooks: Hooks,
}

fn default_format() -> u32 {
    FORMAT_VERSION
}
fn default_cachetime() -> String {
    "30m".into()
}
fn default_compression() -> u32 {
    DEFAULT_COMPRESSION
}

/// gzip level used unless the config says otherwise (see docs/PERFORMANCE.md for why).
pub const DEFAULT_COMPRESSION: u32 = 1;

impl Config {
    /// A fresh config for a new node.
    pub fn new(name: String, path: String, chunking: Chunking) -> Config {
        Config {
            format: FORMAT_VERSION,
            uuid: uuid::Uuid::new_v4().to_string(),
            name,
            path,
            cacheonly: false,
            cachetime: default_cachetime(),
            compression: DEFAULT_COMPRESSION,
            chunking,
            retention: Retention::default(),
            hooks: Hooks::default(),
        }
    }

    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).ctx("read config", path)?;
        let mut cfg: Config = parse_config_text(&text).map_err(|reason| Error::Config { path: path.into(), reason })?;
        if cfg.format != FORMAT_VERSION {
            return Err(Error::UnsupportedFormat { path: path.into(), found: cfg.format, supported: FORMAT_VERSION });
        }
        let bad = |reason: String| Error::Config { path: path.into(), reason };
        // Any spelling the uuid crate accepts, normalized to the hyphenated lowercase form.
        cfg.uuid = uuid::Uuid::parse_str(&cfg.uuid)
            .map_err(|_| bad(format!("uuid {:?} is not a uuid", cfg.uuid)))?
            .to_string();
        cfg.chunking.check().map_err(bad)?;
        if !(1..=9).contains(&cfg.compression) {
            return Err(bad(format!("compression {} must be 1..9", cfg.compression)));
        }
        parse_duration(&cfg.cachetime).map_err(|e| bad(format!("cachetime {e}")))?;
        if !cfg.retention.keep_within.is_empty() {
            parse_duration(&cfg.retention.keep_within).map_err(|e| bad(format!("keep_within {e}")))?;
        }
        Ok(cfg)
    }

    /// Writes the config as TOML, atomically and durably.
    pub fn save(&self, path: &Path) -> Result<()> {
        let text =
            toml::to_string_pretty(self).map_err(|e| Error::Config { path: path.into(), reason: e.to_string() })?;
        let text = format!("# globofs volume config; see docs/FORMAT.md\n{text}");
        fsio::write_atomic(path, text.as_bytes(), Durability::Now)
    }
}

/// Parses config text: TOML first, else plain `key=value` lines (`#` starts a comment).
pub fn parse_config_text<T: serde::de::DeserializeOwned>(text: &str) -> std::result::Result<T, String> {
    match toml::from_str::<T>(text) {
        Ok(c) => Ok(c),
        Err(toml_err) => {
            let table = key_value_table(text)
                .map_err(|e| format!("neither TOML ({}) nor key=value lines ({e})", toml_err.message()))?;
            T::deserialize(table).map_err(|e| e.message().to_string())
        }
    }
}

/// Turns `key=value` lines into a TOML table, typing values by key.
fn key_value_table(text: &str) -> std::result::Result<toml::Table, String> {
    let mut root = toml::Table::new();
    for (n, line) in text.lines().enumerate() {
        let line = match line.find(" #").or_else(|| line.find("\t#")) {
            Some(i) => &line[..i],
            None => line,
        }
        .trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = line.split_once('=').ok_or_else(|| format!("line {}: expected key=value", n + 1))?;
        let (k, v) = (k.trim(), v.trim().trim_matches('"'));
        let (section, key) = match k {
            "chunking" => (Some("chunking"), "method"),
            "block_size" => (Some("chunking"), "avg"),
            "keep_last" | "keep_within" | "max_history_size" | "auto_prune" => (Some("retention"), k),
            "on_commit" | "on_update" => (Some("hooks"), k),
            _ => match k.split_once('.') {
                Some((s, key)) => (Some(s), key),
                None => (None, k),
            },
        };
        let value = match key {
            "cacheonly" | "auto_prune" => {
                toml::Value::Boolean(parse_bool(v).ok_or(format!("line {}: {k} must be yes or no", n + 1))?)
            }
            "format" | "compression" | "min" | "avg" | "max" | "keep_last" | "max_history_size" => {
                toml::Value::Integer(parse_size(v).map_err(|e| format!("line {}: {e}", n + 1))? as i64)
            }
            _ => toml::Value::String(v.to_string()),
        };
        let table = match section {
            Some(s) => root
                .entry(s)
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                .as_table_mut()
                .ok_or(format!("line {}: {s} is not a section", n + 1))?,
            None => &mut root,
        };
        table.insert(key.to_string(), value);
    }
    // A `block_size` alone describes the whole chunking section.
    if let Some(ch) = root.get_mut("chunking").and_then(|v| v.as_table_mut()) {
        let method = ch.get("method").and_then(|m| m.as_str()).unwrap_or("cdc").to_string();
        let default_avg = if method == "fixed" { 1 << 20 } else { i64::from(Chunking::default().avg) };
        let avg = ch.get("avg").and_then(|a| a.as_integer()).unwrap_or(default_avg);
        let (min, max) = if method == "fixed" { (avg, avg) } else { (avg / 4, avg * 4) };
        ch.insert("method".into(), toml::Value::String(method));
        ch.entry("avg").or_insert(toml::Value::Integer(avg));
        ch.entry("min").or_insert(toml::Value::Integer(min));
        ch.entry("max").or_insert(toml::Value::Integer(max));
    }
    Ok(root)
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "yes" | "true" | "on" | "1" => Some(true),
        "no" | "false" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// Parses a byte size: `1048576`, `256K`, `256KiB`, `4M`, `4MiB`, `1G` (powers of 1024).
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a size (try 1048576, 256KiB or 4MiB)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(format!("{s:?} has an unknown unit (use K, M, G or KiB, MiB, GiB)")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("{s:?} is too large"))
}

/// Parses a duration: a number and a unit, `s`, `m` (minutes), `h`, `d`, `w`, `mo` (30 days),
/// `y` (365 days), e.g. `90s`, `30m`, `12h`, `7d`, `2w`, `6mo`, `1y`; or plain seconds.
pub fn parse_duration(s: &str) -> std::result::Result<std::time::Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 =
        num.parse().map_err(|_| format!("{s}: not a duration (a number and a unit: 90s, 30m, 12h, 7d, 6mo)"))?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        "w" => 7 * 86400,
        "mo" => 30 * 86400,
        "y" => 365 * 86400,
        _ => return Err(format!("{s}: unknown unit `{unit}` (use s, m, h, d, w, mo, y)")),
    };
    Ok(std::time::Duration::from_secs(n.saturating_mul(mult)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_round_trip() {
        let c = Config::new("n".into(), "/v".into(), Chunking::default());
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("config");
        c.save(&p).unwrap();
        assert_eq!(Config::load(&p).unwrap(), c);
    }

    #[test]
    fn seed_key_value_form() {
        let text = "uuid=68d25a11-a34a-4bbb-a29e-c9bd06ff8c53\npath=/srv/globofs_volume/ #So that we can just specify a config\ncacheonly=no\ncachetime=30m\n";
        let c: Config = parse_config_text(text).unwrap();
        assert_eq!(c.uuid, "68d25a11-a34a-4bbb-a29e-c9bd06ff8c53");
        assert_eq!(c.path, "/srv/globofs_volume/");
        assert!(!c.cacheonly);
        assert_eq!(c.chunking, Chunking::default());
        let c: Config = parse_config_text(
            "uuid=68d25a11-a34a-4bbb-a29e-c9bd06ff8c53\nchunking=fixed\nblock_size=64K\nkeep_last=5\n",
        )
        .unwrap();
        assert_eq!(c.chunking, Chunking { method: ChunkMethod::Fixed, min: 65536, avg: 65536, max: 65536 });
        assert_eq!(c.retention.keep_last, 5);
    }

    #[test]
    fn bad_config_is_an_error() {
        assert!(parse_config_text::<Config>("this is not config").is_err());
        assert!(parse_config_text::<Config>("uuid=x\ncacheonly=maybe").is_err());
        assert!(parse_config_text::<Config>("uuid=x\nbogus=1").is_err());
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("4MiB").unwrap(), 4 << 20);
        assert_eq!(parse_size("256K").unwrap(), 256 << 10);
        assert!(parse_size("12Q").is_err());
        assert_eq!(parse_duration("30m").unwrap().as_secs(), 1800);
        assert_eq!(parse_duration("2mo").unwrap().as_secs(), 60 * 86400);
        assert_eq!(parse_duration("1y").unwrap().as_secs(), 365 * 86400);
        assert_eq!(parse_duration("2w").unwrap().as_secs(), 14 * 86400);
        assert_eq!(parse_duration("6x").unwrap_err(), "6x: unknown unit `x` (use s, m, h, d, w, mo, y)");
        assert!(parse_duration("soon").is_err());
    }
}
