//! Git-style external commands: `globofs NAME ARGS...` runs `globofs-NAME ARGS...` from
//! PATH when NAME is not a built-in, with `GLOBOFS_VOLUME` set to the volume found by the
//! usual rules (unset when there is none), and exits with its exit code.

use globofs::error::{Error, Result};
use globofs::volume::Volume;
use std::ffi::OsString;
use std::path::Path;

/// Runs `globofs-NAME` with `args` (`args[0]` is NAME); returns its exit code. An unknown
/// NAME with no such program is a one-line error suggesting the nearest built-in.
pub fn run(cmd: &clap::Command, args: &[OsString], explicit_volume: Option<&Path>) -> Result<u8> {
    let name = args.first().map(|a| a.to_string_lossy().into_owned()).unwrap_or_default();
    let program = format!("globofs-{name}");
    // Like every built-in: -V/GLOBOFS_VOLUME must name a volume; walking up may find none.
    let volume = match Volume::find(explicit_volume) {
        Ok(v) => Some(v.dir().to_path_buf()),
        Err(Error::NoVolume(_)) => None,
        Err(e) => return Err(e),
    };
    let mut child = std::process::Command::new(&program);
    child.args(&args[1..]);
    match &volume {
        Some(v) => child.env("GLOBOFS_VOLUME", v),
        None => child.env_remove("GLOBOFS_VOLUME"),
    };
    let status = match child.status() {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(unknown(cmd, &name, &program)),
        Err(e) => return Err(Error::Io { op: "run", path: program.into(), source: e }),
    };
    use std::os::unix::process::ExitStatusExt;
    Ok(match (status.code(), status.signal()) {
        (Some(c), _) => c.clamp(0, 255) as u8,
        (None, Some(sig)) => (128 + sig).clamp(0, 255) as u8,
        _ => 2,
    })
}

/// "unknown command", with the built-in nearest to `name` if one is near (clap's rule:
/// Jaro similarity above 0.7).
fn unknown(cmd: &clap::Command, name: &str, program: &str) -> Error {
    let best = cmd
        .get_subcommands()
        .map(|c| c.get_name())
        .chain(["help"])
        .map(|c| (strsim::jaro(name, c), c))
        .filter(|(score, _)| *score > 0.7)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match best {
        Some((_, c)) => Error::Usage(format!(
            "unknown command `{name}` (and no {program} on PATH): did you mean `{c}`? (see `globofs help`)"
        )),
        None => Error::Usage(format!("unknown command `{name}` (and no {program} on PATH): see `globofs help`")),
    }
}
