//! Integration tests: one binary, one module per area (see each module's doc).

mod util;

mod cli;
mod crash;
mod roundtrip;
mod sshfs;
mod sync;
