#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 10) from the committed seed corpus.
# Installs cargo-fuzz if missing; uses the nightly toolchain for its sanitizer flags.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-10}"
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
targets=(token_parse header_value record_decode replay ops_model client_ip stream_message host_head off_chain_decode cursor_decode usage_report forward_message)
cargo +nightly fuzz build
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "$scratch/$t"
  log="$scratch/$t.log"
  # New inputs go to the scratch directory (the first one); the committed seeds stay as they are.
  if cargo +nightly fuzz run "$t" "$scratch/$t" "corpus/$t" -- \
      -max_total_time="$seconds" -malloc_limit_mb=512 -rss_limit_mb=2048 >"$log" 2>&1; then
    echo "fuzz: $t ok ($(grep -Eo 'Done [0-9]+ runs' "$log" | tail -1 || echo 'no summary'))"
  else
    tail -40 "$log"
    echo "fuzz: $t FAILED (reproducer under fuzz/artifacts/$t)"
    exit 1
  fi
done
