//! Progress bars on stderr for long commands, shown only when stderr is a terminal.
//! Nothing else in the engine prints.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// A byte-counting progress bar, or nothing when stderr is not a terminal.
#[derive(Clone)]
pub struct Progress(Option<ProgressBar>);

impl Progress {
    /// A bar for `total` bytes labelled `what`, if stderr is a terminal and `enabled`.
    pub fn bytes(what: &str, total: u64, enabled: bool) -> Progress {
        Progress::new(what, total, enabled, "{msg:>8} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
    }

    /// A bar counting `total` items.
    pub fn items(what: &str, total: u64, enabled: bool) -> Progress {
        Progress::new(what, total, enabled, "{msg:>8} [{bar:30}] {pos}/{len} eta {eta}")
    }

    fn new(what: &str, total: u64, enabled: bool, template: &str) -> Progress {
        if !enabled || !std::io::stderr().is_terminal() {
            return Progress(None);
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(what.to_string());
        Progress(Some(bar))
    }

    /// A bar that shows nothing.
    pub fn hidden() -> Progress {
        Progress(None)
    }

    /// Advances by `n`.
    pub fn inc(&self, n: u64) {
        if let Some(b) = &self.0 {
            b.inc(n);
        }
    }

    /// Removes the bar from the terminal.
    pub fn finish(&self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}
