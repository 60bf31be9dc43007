//! What follows a change, for every front end (the command line and the mount): after a
//! commit, the automatic prune and the `on_commit` hook; at the start of work, the logs
//! peers pushed into us are applied and the `on_update` hook runs. Each returns warnings
//! for the caller to show; none of them fails the change that triggered it.

use crate::paths::VolPath;
use crate::retention::{self, Policy};
use crate::sync;
use crate::volume::Volume;

/// Runs what the config asks for after versions of `paths` were committed here.
pub fn committed(vol: &Volume, paths: &[VolPath]) -> Vec<String> {
    let mut warnings = Vec::new();
    if vol.config().retention.auto_prune {
        let pruned = Policy::from_config(&vol.config().retention).and_then(|p| {
            if p.keeps_all() {
                Ok(())
            } else {
                retention::prune(vol, &p, paths, false).map(|_| ())
            }
        });
        if let Err(e) = pruned {
            warnings.push(format!("automatic prune failed: {e}"));
        }
    }
    warnings.extend(sync::run_hook(vol, "commit", &vol.config().hooks.on_commit, paths));
    warnings
}

/// Applies the logs peers pushed into this volume, then runs the `on_update` hook for the
/// paths that changed. Returns the warnings (refused records, a failed hook).
pub fn receive(vol: &Volume) -> Vec<String> {
    match sync::receive(vol) {
        Ok(r) => {
            let mut warnings = r.refused;
            warnings.extend(sync::run_hook(vol, "update", &vol.config().hooks.on_update, &r.changed));
            warnings
        }
        Err(e) => vec![format!("could not apply logs from peers: {e}")],
    }
}
