//! Retention: which old versions of each path go (`globofs prune`). A policy keeps the
//! newest N versions and those younger than a duration, then caps the bytes of old
//! versions. Heads, unresolved conflict versions and versions a peer has not received yet
//! are never pruned. Prune deletes manifests only (keeping their lineage, see
//! `Volume::drop_versions`) and never reads a block; `gc` frees the blocks afterwards.

use crate::config::{parse_duration, Retention};
use crate::error::{Error, Result};
use crate::ids::VersionId;
use crate::manifest::{Timestamp, Version};
use crate::paths::VolPath;
use crate::sync;
use crate::volume::Volume;
use std::collections::HashSet;
use std::time::Duration;

/// What to keep of each path's history.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Keep the newest this many versions (0: no count rule).
    pub keep_last: u32,
    /// Keep every version younger than this.
    pub keep_within: Option<Duration>,
    /// Cap on the bytes of old (non-head) versions, newest kept first (0: no cap).
    pub max_history_size: u64,
}

impl Policy {
    /// The policy in the config's `[retention]` table.
    pub fn from_config(r: &Retention) -> Result<Policy> {
        let keep_within = match r.keep_within.trim() {
            "" => None,
            d => Some(parse_duration(d).map_err(|e| Error::Usage(format!("retention keep_within: {e}")))?),
        };
        Ok(Policy { keep_last: r.keep_last, keep_within, max_history_size: r.max_history_size })
    }

    /// True when the policy keeps everything.
    pub fn keeps_all(&self) -> bool {
        self.keep_last == 0 && self.keep_within.is_none() && self.max_history_size == 0
    }

    /// Which versions of one history (newest first) the rules keep, heads aside. A version
    /// is kept if the count rule or the age rule keeps it (as restic and borg combine them;
    /// with neither rule, all are); then the oldest of the kept old versions go until the
    /// old versions fit under the size cap.
    fn keeps(&self, history: &[Version], heads: &HashSet<VersionId>, now: Timestamp) -> Vec<bool> {
        let nanos = |t: Timestamp| i128::from(t.sec) * 1_000_000_000 + i128::from(t.nsec);
        let cutoff = self.keep_within.map(|d| nanos(now) - d.as_nanos() as i128);
        let no_rule = self.keep_last == 0 && cutoff.is_none();
        let mut keep: Vec<bool> = history
            .iter()
            .enumerate()
            .map(|(i, v)| {
                no_rule
                    || (self.keep_last > 0 && i < self.keep_last as usize)
                    || cutoff.is_some_and(|c| nanos(v.time) >= c)
            })
            .collect();
        if self.max_history_size > 0 {
            let mut total = 0u64;
            for (i, v) in history.iter().enumerate() {
                if keep[i] && !heads.contains(&v.id) {
                    total = total.saturating_add(v.size);
                    if total > self.max_history_size {
                        keep[i] = false;
                    }
                }
            }
        }
        keep
    }
}

/// What a prune did (or, dry, would do).
#[derive(Debug, Default)]
pub struct PruneReport {
    /// Paths looked at.
    pub paths: usize,
    /// Versions pruned (or that would be), without their block lists.
    pub pruned: Vec<Version>,
    /// Versions the policy would drop but a peer has not received yet.
    pub kept_unpushed: usize,
    /// Versions left in the histories looked at.
    pub kept: usize,
}

/// Applies `policy` to every path at or under each of `tops` (the whole volume if empty).
/// With `dry_run` nothing changes; the report says what would go.
pub fn prune(vol: &Volume, policy: &Policy, tops: &[VolPath], dry_run: bool) -> Result<PruneReport> {
    let _lock = vol.lock()?;
    let unpushed = sync::unpushed(vol)?;
    let mut paths = Vec::new();
    for top in if tops.is_empty() { vec![VolPath::root()] } else { tops.to_vec() } {
        let found = vol.paths(&top)?;
        if found.is_empty() && !top.is_root() {
            return Err(Error::NotFound(top.to_string()));
        }
        paths.extend(found);
    }
    paths.sort();
    paths.dedup();
    let mut report = PruneReport { paths: paths.len(), ..Default::default() };
    let now = Timestamp::now();
    let mut victims = Vec::new();
    for path in paths {
        let listing = vol.listing(&path)?;
        let history = listing.versions;
        let mut protected: HashSet<VersionId> = vol.other_heads(&path)?.into_iter().map(|v| v.id).collect();
        protected.extend(listing.latest);
        let keep = policy.keeps(&history, &protected, now);
        // Manifests left by a prune that crashed between its two steps are finished now.
        let pruned = vol.pruned(&path)?;
        let mut drop = Vec::new();
        for (mut v, keep) in history.into_iter().zip(keep) {
            if pruned.contains_key(&v.id) {
                drop.push((v.id, v.parents));
            } else if keep || protected.contains(&v.id) {
                report.kept += 1;
            } else if unpushed.contains(&v.id) {
                report.kept_unpushed += 1;
                report.kept += 1;
            } else {
                drop.push((v.id.clone(), v.parents.clone()));
                v.blocks = Vec::new();
                report.pruned.push(v);
            }
        }
        if !drop.is_empty() {
            victims.push((path, drop));
        }
        // In batches, so memory stays bounded on a large volume.
        if victims.len() >= 4096 && !dry_run {
            vol.drop_versions(&std::mem::take(&mut victims))?;
        }
    }
    if !dry_run {
        vol.drop_versions(&victims)?;
    }
    Ok(report)
}

/// Prunes one version of `path` (`globofs prune PATH@ID`, `rm` in the mount's history),
/// refusing heads, conflict versions and versions a peer has not received.
pub fn prune_version(vol: &Volume, path: &VolPath, id: &VersionId) -> Result<Version> {
    let _lock = vol.lock()?;
    let v = check_version(vol, path, id)?;
    vol.drop_versions(&[(path.clone(), vec![(v.id.clone(), v.parents.clone())])])?;
    Ok(v)
}

/// The version [`prune_version`] would remove, or why it may not.
pub fn check_version(vol: &Volume, path: &VolPath, id: &VersionId) -> Result<Version> {
    let v = vol.version(path, id)?;
    let refuse =
        |reason: &str| Error::Protected { path: path.to_string(), version: id.to_string(), reason: reason.into() };
    if vol.head(path)?.is_some_and(|h| h.id == *id) {
        return Err(refuse("it is the current version"));
    }
    if vol.other_heads(path)?.iter().any(|h| h.id == *id) {
        return Err(refuse("it is an unresolved conflict version; resolve the conflict first (see `globofs status`)"));
    }
    if sync::unpushed(vol)?.contains(id) {
        return Err(refuse("a peer has not received it yet; run `globofs push` first"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(times: &[i64], size: u64) -> Vec<Version> {
        times
            .iter()
            .map(|&t| {
                let mut v = crate::manifest::tests::sample();
                v.id = VersionId::parse(&format!("{t:010}.000000000-0000000a-0000000b")).unwrap();
                v.time = Timestamp { sec: t, nsec: 0 };
                v.size = size;
                v
            })
            .collect()
    }

    fn no_heads() -> HashSet<VersionId> {
        HashSet::new()
    }

    #[test]
    fn count_and_age_rules_keep_the_union() {
        let h = history(&[100, 90, 80, 70, 60], 1);
        let now = Timestamp { sec: 100, nsec: 0 };
        let p = Policy { keep_last: 2, ..Default::default() };
        assert_eq!(p.keeps(&h, &no_heads(), now), [true, true, false, false, false]);
        let p = Policy { keep_within: Some(Duration::from_secs(25)), ..Default::default() };
        assert_eq!(p.keeps(&h, &no_heads(), now), [true, true, true, false, false]);
        let p = Policy { keep_last: 4, keep_within: Some(Duration::from_secs(15)), ..Default::default() };
        assert_eq!(p.keeps(&h, &no_heads(), now), [true, true, true, true, false]);
        assert_eq!(Policy::default().keeps(&h, &no_heads(), now), [true; 5]);
    }

    #[test]
    fn size_cap_drops_the_oldest_history_first() {
        let h = history(&[5, 4, 3, 2, 1], 10);
        let now = Timestamp { sec: 5, nsec: 0 };
        let head: HashSet<VersionId> = [h[0].id.clone()].into();
        let p = Policy { max_history_size: 25, ..Default::default() };
        // The head is current content, not history: 10 + 10 of history fit, the third would not.
        assert_eq!(p.keeps(&h, &head, now), [true, true, true, false, false]);
        let p = Policy { keep_last: 2, max_history_size: 5, ..Default::default() };
        assert_eq!(p.keeps(&h, &head, now), [true, false, false, false, false]);
    }
}
