//! Parts of the `globofs` command kept out of `main.rs`: shell completions and the man page
//! (`shell`), git-style external commands (`external`), the refusals that keep a user from
//! a likely mistake (`rails`), and `--quiet`.

pub mod external;
pub mod rails;
pub mod shell;

use std::sync::atomic::{AtomicBool, Ordering};

static QUIET: AtomicBool = AtomicBool::new(false);

/// `--quiet`: commands print nothing on success but the data they exist to print (`read`,
/// `ls`, `log`, `status`, `peer ls`, `--json`, `prune --dry-run`); errors and warnings
/// still print.
pub fn set_quiet(q: bool) {
    QUIET.store(q, Ordering::Relaxed);
}

pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// `println!` of an informational line: nothing under `--quiet`.
macro_rules! say {
    ($($t:tt)*) => {
        if !$crate::cli::quiet() {
            println!($($t)*);
        }
    };
}
