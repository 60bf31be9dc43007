#!/usr/bin/env bash
# Runs the whole test suite: unit tests, integration tests (the real binary on temp
# volumes), doc tests, and a build of the benches and examples. Installs what the tests
# need when it is missing (FUSE and sshfs tools for the mount and sync tests, faketime for
# the tests of nodes whose clocks are wrong).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v fusermount3 >/dev/null || need+=(fuse3)
command -v sshfs >/dev/null || need+=(sshfs)
command -v sshd >/dev/null || [ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v faketime >/dev/null || need+=(faketime)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing ${need[*]}"
    apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "note: ${need[*]} missing and cannot be installed here; tests that need them skip"
  fi
fi

# Formatting and lints first: they fail fast (skipped, with a note, where the toolchain
# lacks the components).
if cargo fmt --version >/dev/null 2>&1; then
  cargo fmt --check
else
  echo "note: rustfmt missing; formatting not checked"
fi
if cargo clippy --version >/dev/null 2>&1; then
  cargo clippy --all-targets --quiet -- -D warnings
else
  echo "note: clippy missing; lints not checked"
fi
cargo build --all-targets --quiet
cargo test --quiet --all-targets
cargo test --quiet --doc
