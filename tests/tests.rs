//! Integration tests: one binary, one module per area (see each module's doc).

mod util;

mod cli;
mod conflicts;
mod corrupt;
mod crash;
mod faults;
mod fuzz;
mod hostile;
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
