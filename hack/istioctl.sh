#!/usr/bin/env bash
# Builds Istio's istioctl from the Go module proxy into a cache outside the
# repository (same Istio version and cache as hack/istio-agent.sh) and prints
# its path. The interop test runs `istioctl proxy-status --xds-address`
# against Sextant.
set -euo pipefail
ISTIO_VERSION="${ISTIO_VERSION:-v0.0.0-20260827124520-eed52ebb66ad}"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/sextant/istio-${ISTIO_VERSION}"
BIN="$CACHE/bin/istioctl"
if [ ! -x "$BIN" ]; then
  mkdir -p "$CACHE/bin"
  echo "building istioctl ${ISTIO_VERSION} into $CACHE (first run only)" >&2
  (cd "$CACHE" && GOFLAGS= GOBIN="$CACHE/bin" go install "istio.io/istio/istioctl/cmd/istioctl@${ISTIO_VERSION}") >&2
fi
echo "$BIN"
