#!/usr/bin/env bash
# Builds Istio's stock pilot-agent (istio-agent) from the Go module proxy
# into a cache outside the repository, keyed by version, and prints the
# binary's path. A warm run only checks the file; a cold one takes a few
# minutes on 2 cores. The interop tests (test/e2e/agent_*) run it in
# proxyless mode against Sextant.
set -euo pipefail
ISTIO_VERSION="${ISTIO_VERSION:-v0.0.0-20260827124520-eed52ebb66ad}"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/sextant/istio-${ISTIO_VERSION}"
BIN="$CACHE/bin/pilot-agent"
if [ ! -x "$BIN" ]; then
  mkdir -p "$CACHE/bin"
  echo "building pilot-agent ${ISTIO_VERSION} into $CACHE (first run only)" >&2
  # Build outside the repository so Sextant's go.mod stays lean.
  (cd "$CACHE" && GOFLAGS= GOBIN="$CACHE/bin" go install "istio.io/istio/pilot/cmd/pilot-agent@${ISTIO_VERSION}") >&2
fi
echo "$BIN"
