#!/usr/bin/env bash
# Real kube-apiserver + etcd for Sextant's Kubernetes tests, built from the Go
# module proxy (no Docker, no downloads of release binaries).
#
#   hack/kube-real.sh build          build (or reuse) kube-apiserver + etcd
#   hack/kube-real.sh env            print `export SEXTANT_KUBE_BIN=…` (builds first)
#   hack/kube-real.sh start [RUNDIR] start etcd + kube-apiserver on free loopback ports
#   hack/kube-real.sh stop [RUNDIR]  stop them (apiserver first, then etcd)
#
# The binaries go to a cache OUTSIDE the repository, keyed by version:
#   ${SEXTANT_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sextant/kube-v$KUBE_VERSION}/bin
# with the scratch module in …/src. A cold build takes 8-10 minutes on 2
# cores; a warm run (binaries present) returns in about a second.
# Tests find the binaries through SEXTANT_KUBE_BIN (see test/e2e/kube_*_test.go);
# each test starts its own apiserver + etcd.
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-1.37.2}
CACHE=${SEXTANT_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sextant/kube-v$KUBE_VERSION}
BIN=$CACHE/bin
SRC=$CACHE/src
HERE=$(cd "$(dirname "$0")" && pwd)

log() { printf 'kube-real: %s\n' "$*" >&2; }

have_bins() {
	[ -x "$BIN/kube-apiserver" ] && [ -x "$BIN/etcd" ] &&
		"$BIN/kube-apiserver" --version 2>/dev/null | grep -qx "Kubernetes v$KUBE_VERSION"
}

build() {
	if have_bins; then
		log "kube-apiserver v$KUBE_VERSION and etcd already in $BIN"
		return 0
	fi
	local t0 sv minor ldf
	t0=$(date +%s)
	mkdir -p "$BIN" "$SRC"
	# Serialise concurrent builds (two CI steps, two terminals).
	exec 9>"$CACHE/.build.lock"
	flock 9
	if have_bins; then
		log "built meanwhile by another run: $BIN"
		return 0
	fi
	sv=0.${KUBE_VERSION#1.}
	minor=$(echo "$KUBE_VERSION" | cut -d. -f2)
	"$HERE/kube/gomod.sh" "$KUBE_VERSION" >"$SRC/go.mod"
	cp "$HERE/kube/tools.go.txt" "$SRC/tools.go"
	cd "$SRC"
	log "resolving modules for k8s.io/kubernetes v$KUBE_VERSION (staging v$sv) in $SRC"
	GOFLAGS=-mod=mod go mod tidy
	ldf="-s -w -X k8s.io/component-base/version.gitVersion=v$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1"
	ldf="$ldf -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
	log "building kube-apiserver (cold: 8-10 min on 2 cores)"
	go build -trimpath -ldflags "$ldf" -o "$BIN/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver
	log "building etcd (the version kubernetes pins)"
	go build -trimpath -ldflags "-s -w" -o "$BIN/etcd.tmp" go.etcd.io/etcd/server/v3
	mv "$BIN/etcd.tmp" "$BIN/etcd"
	mv "$BIN/kube-apiserver.tmp" "$BIN/kube-apiserver"
	"$BIN/kube-apiserver" --version
	"$BIN/etcd" --version | head -1
	log "built in $(($(date +%s) - t0))s into $BIN"
}

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null ||
		echo $((20000 + RANDOM % 20000))
}

start() {
	have_bins || { log "no binaries in $BIN: run '$0 build' first"; exit 1; }
	local run=${1:-$CACHE/run} etcd_port peer_port kube_port token i
	mkdir -p "$run/certs" "$run/pki"
	etcd_port=${ETCD_PORT:-$(free_port)}
	peer_port=${ETCD_PEER_PORT:-$(free_port)}
	kube_port=${KUBE_PORT:-$(free_port)}
	rm -rf "$run/etcd"
	"$BIN/etcd" --name kube --data-dir "$run/etcd" \
		--listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
		--listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
		--initial-cluster "kube=http://127.0.0.1:$peer_port" --unsafe-no-fsync >"$run/etcd.log" 2>&1 &
	echo $! >"$run/etcd.pid"
	for i in $(seq 1 100); do curl -sf "http://127.0.0.1:$etcd_port/health" >/dev/null && break; sleep 0.1; done
	curl -sf "http://127.0.0.1:$etcd_port/health" >/dev/null || { log "etcd did not start"; tail -20 "$run/etcd.log"; exit 1; }
	[ -f "$run/pki/sa.key" ] || openssl genrsa -out "$run/pki/sa.key" 2048 2>/dev/null
	openssl rsa -in "$run/pki/sa.key" -pubout -out "$run/pki/sa.pub" 2>/dev/null
	token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
	echo "$token,admin,admin-uid,system:masters" >"$run/pki/tokens.csv"
	"$BIN/kube-apiserver" \
		--etcd-servers="http://127.0.0.1:$etcd_port" \
		--bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$kube_port" \
		--cert-dir="$run/certs" --token-auth-file="$run/pki/tokens.csv" \
		--authorization-mode=Node,RBAC \
		--service-account-issuer=https://kubernetes.default.svc.cluster.local \
		--service-account-key-file="$run/pki/sa.pub" --service-account-signing-key-file="$run/pki/sa.key" \
		--api-audiences=https://kubernetes.default.svc.cluster.local,istio-ca \
		--service-cluster-ip-range=10.0.0.0/24 --endpoint-reconciler-type=none \
		--disable-admission-plugins=ServiceAccount --allow-privileged=true \
		>"$run/kube-apiserver.log" 2>&1 &
	echo $! >"$run/kube-apiserver.pid"
	cat >"$run/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:$kube_port
    insecure-skip-tls-verify: true
users:
- name: admin
  user:
    token: $token
contexts:
- name: local
  context: {cluster: local, user: admin}
current-context: local
KC
	for i in $(seq 1 600); do
		curl -sfk -H "Authorization: Bearer $token" "https://127.0.0.1:$kube_port/readyz" >/dev/null 2>&1 && break
		kill -0 "$(cat "$run/kube-apiserver.pid")" 2>/dev/null || { log "kube-apiserver exited"; tail -30 "$run/kube-apiserver.log"; exit 1; }
		sleep 0.1
	done
	curl -sfk -H "Authorization: Bearer $token" "https://127.0.0.1:$kube_port/readyz" >/dev/null ||
		{ log "kube-apiserver not ready"; tail -30 "$run/kube-apiserver.log"; exit 1; }
	echo "export KUBECONFIG=$run/kubeconfig"
}

stop_pid() { # pidfile timeout-seconds
	[ -f "$1" ] || return 0
	local p i
	p=$(cat "$1")
	kill "$p" 2>/dev/null || { rm -f "$1"; return 0; }
	for i in $(seq 1 $(($2 * 10))); do
		kill -0 "$p" 2>/dev/null || { rm -f "$1"; return 0; }
		sleep 0.1
	done
	kill -9 "$p" 2>/dev/null || true
	rm -f "$1"
}

stop() {
	local run=${1:-$CACHE/run}
	# The apiserver hangs in shutdown when etcd goes first.
	stop_pid "$run/kube-apiserver.pid" 15
	stop_pid "$run/etcd.pid" 10
}

case "${1:-}" in
build) build ;;
env)
	build >&2
	echo "export SEXTANT_KUBE_BIN=$BIN"
	;;
start) shift; start "$@" ;;
stop) shift; stop "$@" ;;
*)
	sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
	exit 2
	;;
esac
