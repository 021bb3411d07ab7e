#!/usr/bin/env bash
# Builds h2spec (HTTP/2 conformance tests) from the Go module proxy into a
# cache outside the repository and prints its path. test/transport runs it
# against both xDS transports when SEXTANT_H2SPEC names the binary.
set -euo pipefail
H2SPEC_VERSION="${H2SPEC_VERSION:-v2.2.1+incompatible}"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/sextant/h2spec-${H2SPEC_VERSION}"
BIN="$CACHE/bin/h2spec"
if [ ! -x "$BIN" ]; then
  mkdir -p "$CACHE/bin"
  echo "building h2spec ${H2SPEC_VERSION} into $CACHE (first run only)" >&2
  (cd "$CACHE" && GOFLAGS= GOBIN="$CACHE/bin" go install "github.com/summerwind/h2spec/cmd/h2spec@${H2SPEC_VERSION}") >&2
fi
echo "$BIN"
