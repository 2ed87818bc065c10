#!/usr/bin/env bash
# The admin API's contract, checked against a live `keyledger serve` (./test.sh runs it):
#
#   tests/contract/run.sh [SECONDS]     # default 60; run it longer to search further
#
# 1. `GET /v1/openapi.json` must pass openapi-spec-validator (OpenAPI 3.1).
# 2. Schemathesis generates requests from that document, with an admin key: examples,
#    boundary values, random and schema-violating data, and stateful sequences that
#    follow the document's links (create a key, then act on it). Every check runs but
#    two, which test promises this API does not make:
#    - positive_data_acceptance: the document gives names, roles, IP ranges and
#      durations as strings, and their grammar in words; a schema-valid `"ips": [""]`
#      is rightly answered 400;
#    - use_after_free: a deleted key is still shown by `GET /v1/keys/{id}` (status
#      `deleted`, its history kept), by design.
#    So it must find no 5xx, no answer outside the document (status, content type,
#    headers, body), no schema-invalid request accepted, no route reachable without
#    the key.
# 3. The server must still be running, stop cleanly, and leave a store that `check`
#    passes.
#
# Needs Schemathesis and openapi-spec-validator in target/tools/schemathesis (./test.sh
# installs them from PyPI) and a built keyledger (KEYLEDGER_BIN, default
# target/debug/keyledger).
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds="${1:-60}"
tools="$PWD/target/tools/schemathesis"
bin="${KEYLEDGER_BIN:-$PWD/target/debug/keyledger}"
for need in "$tools/bin/st" "$bin"; do
  [ -x "$need" ] || { echo "contract: $need is missing (run ./test.sh, or cargo build)" >&2; exit 1; }
done
export PYTHONPATH="$tools:$PWD/tests/contract" SCHEMATHESIS_HOOKS=hooks

work="$(mktemp -d)"
server=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# The store, and an admin key for a person of its own, made by the super admin: the
# keys Schemathesis makes are that person's, and an admin cannot touch keys others made,
# so no generated request can delete, roll or disable the key it tests with.
db="$work/keys.db"
"$bin" --db "$db" create --actor root --actor-role super-admin --name contract-root \
  --role super-admin --ip 127.0.0.1 --json >/dev/null
key="$("$bin" --db "$db" create --actor root --actor-role super-admin --name contract \
  --role admin --for contract --ip 127.0.0.1 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')"

"$bin" --db "$db" serve --listen 127.0.0.1:0 >"$work/serve.out" 2>"$work/serve.err" &
server=$!
for _ in $(seq 100); do
  grep -q '^listening on ' "$work/serve.out" 2>/dev/null && break
  sleep 0.1
done
addr="$(sed -n 's/^listening on //p' "$work/serve.out")"
[ -n "$addr" ] || { echo "contract: serve did not start" >&2; cat "$work/serve.err" >&2; exit 1; }
url="http://$addr"

python3 -c 'import sys, urllib.request; sys.stdout.buffer.write(urllib.request.urlopen(sys.argv[1]).read())' \
  "$url/v1/openapi.json" >"$work/openapi.json"
python3 -m openapi_spec_validator "$work/openapi.json"

status=0
"$tools/bin/st" run "$url/v1/openapi.json" \
  --header "x-api-key: $key" \
  --checks all --exclude-checks positive_data_acceptance,use_after_free \
  --max-time "$seconds" --workers 1 --request-timeout 10 \
  --suppress-health-check too_slow,filter_too_much \
  --no-color || status=$?

if ! kill -0 "$server" 2>/dev/null; then
  echo "contract: keyledger serve is no longer running" >&2
  cat "$work/serve.err" >&2
  exit 1
fi
kill -TERM "$server"
wait "$server" || { echo "contract: serve did not stop cleanly" >&2; exit 1; }
server=""
"$bin" --db "$db" check >/dev/null
exit "$status"
