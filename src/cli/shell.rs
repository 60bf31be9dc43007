//! `globofs completions SHELL` and `globofs man`, generated from the clap definition.

use globofs::error::{Error, Result};
use std::io::Write;

/// Writes the completion script for `shell` to stdout.
pub fn completions(mut cmd: clap::Command, shell: clap_complete::Shell) -> Result<()> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "globofs", &mut out);
    write_stdout(&out)
}

/// Writes the man page (roff) to stdout.
pub fn man(cmd: clap::Command) -> Result<()> {
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut out).map_err(|e| Error::Io {
        op: "render man page",
        path: "<stdout>".into(),
        source: e,
    })?;
    write_stdout(&out)
}

fn write_stdout(b: &[u8]) -> Result<()> {
    let mut so = std::io::stdout().lock();
    so.write_all(b).and_then(|_| so.flush()).map_err(|e| Error::Io { op: "write", path: "<stdout>".into(), source: e })
}
