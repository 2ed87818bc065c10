#!/usr/bin/env bash
# The one test command (see README.md): unit, integration, doc and crash tests, lints,
# and a short run of every fuzz target. Installs what it needs if it is missing
# (cargo-fuzz, and the Debian packages below).
set -euo pipefail
cd "$(dirname "$0")"

# Tests that drive real programs use Debian's packages: nginx in front of `keyledger
# serve` (tests/serve.rs) and Chromium with its WebDriver for the admins' page
# (tests/ui.rs). They fail without them. Installed when missing, with one `apt-get update`.
missing=()
[ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
fi

cargo fmt --check
cargo clippy --all-targets --locked --features tower -- -D warnings
# The bare library (no command-line tool, no HTTP) builds alone.
cargo clippy --lib --locked --no-default-features -- -D warnings
if [ -d fuzz ]; then
  bash fuzz/smoke.sh "${FUZZ_SECONDS:-20}"
fi
cargo test --locked --features tower
