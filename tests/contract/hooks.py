"""Schemathesis hooks for keyledger's admin API (loaded by tests/contract/run.sh).

`POST /v1/keys/import` takes the `import-keys` JSON Lines as `application/x-ndjson`, a
media type Schemathesis has no serializer for: its generated text goes on the wire as
it is, as for `text/plain`.
"""

import schemathesis

schemathesis.serializer.alias("application/x-ndjson", "text/plain")
