//! Progress bars on stderr for long commands, shown only when stderr is a terminal.
//! Nothing else in the engine prints.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// A byte-counting progress bar, or nothing when stderr is not a terminal.
#[derive(Clone)]
pub struct Progress(Option<ProgressBar>);

impl Progress {
    /// A bar for `total` bytes labelled `what`, if stderr is a terminal and `enabled`. The
    /// line fits the terminal: the bar takes what the figures leave, and the figures that
    /// do not fit go.
    pub fn bytes(what: &str, total: u64, enabled: bool) -> Progress {
        let template = match columns() {
            80.. => "{msg:>8} [{wide_bar}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            50.. => "{msg:>8} [{wide_bar}] {bytes}/{total_bytes}",
            _ => "{msg} {percent}%",
        };
        Progress::new(what, total, enabled, template)
    }

    /// A bar counting `total` items.
    pub fn items(what: &str, total: u64, enabled: bool) -> Progress {
        let template = match columns() {
            50.. => "{msg:>8} [{wide_bar}] {pos}/{len} eta {eta}",
            _ => "{msg} {pos}/{len}",
        };
        Progress::new(what, total, enabled, template)
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

/// The width of the terminal on stderr (80 when it cannot be told).
fn columns() -> u16 {
    // SAFETY: TIOCGWINSZ fills the winsize it is given, and nothing else.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    match unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut ws) } {
        0 if ws.ws_col > 0 => ws.ws_col,
        _ => 80,
    }
}
