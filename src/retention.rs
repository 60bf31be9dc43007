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
use std::collections::{HashMap, HashSet};
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

    /// Which versions of one history (newest first, by the graph) the rules keep, heads
    /// aside. A version is kept if the count rule or the age rule keeps it (as restic and borg
    /// combine them; with neither rule, all are); then the oldest of the kept old versions go
    /// until the old versions fit under the size cap. Ages are those of [`ages`].
    fn keeps(&self, history: &[Version], heads: &HashSet<VersionId>, clock: &Clock) -> Vec<bool> {
        let ages = self.keep_within.map(|_| ages(history, clock));
        let no_rule = self.keep_last == 0 && ages.is_none();
        let mut keep: Vec<bool> = history
            .iter()
            .enumerate()
            .map(|(i, _)| {
                no_rule
                    || (self.keep_last > 0 && i < self.keep_last as usize)
                    || ages.as_ref().zip(self.keep_within).is_some_and(|(a, d)| a[i] < d.as_nanos() as i128)
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

/// What the age rule goes by: this node's clock and uuid.
struct Clock<'a> {
    now: Timestamp,
    local: &'a str,
}

/// How old each version of `history` counts for `keep_within`, in ns. Times are the
/// origins' clocks, so they are only a hint (docs/DESIGN.md, "Ages"):
///
/// - a version is measured on its origin's clock: ours against our `now`; another node's
///   against the newest time of that node's versions of the path (but not past our `now`),
///   so a node whose clock is off, ours or theirs, cannot make another node's versions look
///   old;
/// - a time past that reference counts as new (age 0).
fn ages(history: &[Version], clock: &Clock) -> Vec<i128> {
    let nanos = |t: Timestamp| i128::from(t.sec) * 1_000_000_000 + i128::from(t.nsec);
    let now = nanos(clock.now);
    let mut newest: HashMap<&str, i128> = HashMap::new();
    for v in history.iter().filter(|v| v.origin != clock.local) {
        let t = newest.entry(v.origin.as_str()).or_insert(i128::MIN);
        *t = (*t).max(nanos(v.time));
    }
    history
        .iter()
        .map(|v| {
            let reference = newest.get(v.origin.as_str()).map_or(now, |&t| t.min(now));
            (reference - nanos(v.time)).max(0)
        })
        .collect()
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
        // Manifests left by a prune that crashed between its two steps are finished now.
        let pruned = vol.pruned(&path)?;
        let keep = policy.keeps(&history, &protected, &Clock { now, local: &vol.config().uuid });
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

    const LOCAL: &str = "68d25a11-a34a-4bbb-a29e-c9bd06ff8c53";
    const OTHER: &str = "21f8cc6e-0000-4000-8000-000000000000";

    /// A chain of versions made on this node at `times`, newest first (each the parent of the
    /// one before).
    fn history(times: &[i64], size: u64) -> Vec<Version> {
        let mut h: Vec<Version> = times
            .iter()
            .map(|&t| {
                let mut v = crate::manifest::tests::sample();
                v.id = VersionId::parse(&format!("{t:010}.000000000-0000000a-0000000b")).unwrap();
                v.time = Timestamp { sec: t, nsec: 0 };
                v.origin = LOCAL.into();
                v.size = size;
                v
            })
            .collect();
        for i in 0..h.len() {
            h[i].parents = h.get(i + 1).map(|p| vec![p.id.clone()]).unwrap_or_default();
        }
        h
    }

    fn no_heads() -> HashSet<VersionId> {
        HashSet::new()
    }

    fn clock(sec: i64) -> Clock<'static> {
        Clock { now: Timestamp { sec, nsec: 0 }, local: LOCAL }
    }

    #[test]
    fn count_and_age_rules_keep_the_union() {
        let h = history(&[100, 90, 80, 70, 60], 1);
        let now = clock(100);
        let p = Policy { keep_last: 2, ..Default::default() };
        assert_eq!(p.keeps(&h, &no_heads(), &now), [true, true, false, false, false]);
        let p = Policy { keep_within: Some(Duration::from_secs(25)), ..Default::default() };
        assert_eq!(p.keeps(&h, &no_heads(), &now), [true, true, true, false, false]);
        let p = Policy { keep_last: 4, keep_within: Some(Duration::from_secs(15)), ..Default::default() };
        assert_eq!(p.keeps(&h, &no_heads(), &now), [true, true, true, true, false]);
        assert_eq!(Policy::default().keeps(&h, &no_heads(), &now), [true; 5]);
    }

    #[test]
    fn size_cap_drops_the_oldest_history_first() {
        let h = history(&[5, 4, 3, 2, 1], 10);
        let now = clock(5);
        let head: HashSet<VersionId> = [h[0].id.clone()].into();
        let p = Policy { max_history_size: 25, ..Default::default() };
        // The head is current content, not history: 10 + 10 of history fit, the third would not.
        assert_eq!(p.keeps(&h, &head, &now), [true, true, true, false, false]);
        let p = Policy { keep_last: 2, max_history_size: 5, ..Default::default() };
        assert_eq!(p.keeps(&h, &head, &now), [true, false, false, false, false]);
    }

    #[test]
    fn ages_go_by_each_origins_clock() {
        const DAY: i64 = 86_400;
        let age_days = |h: &[Version], now: i64| -> Vec<i128> {
            ages(h, &clock(now)).into_iter().map(|a| a / (DAY as i128 * 1_000_000_000)).collect()
        };
        // Our clock a year ahead: another node's edits of the last days are measured on its
        // own clock (against its newest edit), not on ours.
        let mut h = history(&[3 * DAY, 2 * DAY, DAY], 1);
        h.iter_mut().for_each(|v| v.origin = OTHER.into());
        assert_eq!(age_days(&h, 365 * DAY), [0, 1, 2]);
        // Our clock right, theirs behind: still their own clock.
        assert_eq!(age_days(&h, 3 * DAY + 10), [0, 1, 2]);
        // Theirs ahead of ours: a time in our future counts as new.
        assert_eq!(age_days(&h, 2 * DAY), [0, 0, 1]);
        // Ours, against our clock, whatever the other node's clock said of the version our
        // edits built on: a version of a node a year ahead is new, our older edits age.
        let mut h = history(&[100 * DAY, 99 * DAY, 98 * DAY], 1);
        h[2].origin = OTHER.into();
        h[2].time = Timestamp { sec: 465 * DAY, nsec: 0 };
        assert_eq!(age_days(&h, 110 * DAY), [10, 11, 0]);
        let plain = history(&[100 * DAY, 99 * DAY, 98 * DAY], 1);
        assert_eq!(age_days(&plain, 110 * DAY), [10, 11, 12]);
    }
}
