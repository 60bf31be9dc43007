//! Integration tests: one binary, one module per area (see each module's doc).

mod util;

mod cli;
mod conflicts;
mod crash;
mod killall;
mod model;
mod mount;
mod peerloss;
mod repair;
mod retention;
mod roundtrip;
mod sshfs;
mod stress;
mod sync;
