#!/usr/bin/env bash
# The one test command (see README.md): unit, integration, doc and crash tests, lints,
# and a short run of every fuzz target. Installs what it needs if it is missing
# (cargo-fuzz, nginx).
set -euo pipefail
cd "$(dirname "$0")"

cargo fmt --check
cargo clippy --all-targets --locked --features tower -- -D warnings
# The bare library (no command-line tool, no HTTP) builds alone.
cargo clippy --lib --locked --no-default-features -- -D warnings
if [ -d fuzz ]; then
  bash fuzz/smoke.sh "${FUZZ_SECONDS:-20}"
fi
# The serve tests put Debian's nginx in front of `keyledger serve`; they fail without it.
if [ ! -x /usr/sbin/nginx ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y nginx-light
fi
cargo test --locked --features tower
