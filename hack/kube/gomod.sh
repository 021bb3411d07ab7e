#!/usr/bin/env bash
# Print the go.mod of the scratch module that builds kube-apiserver and etcd
# for Kubernetes v$1 from the Go module proxy. k8s.io/kubernetes requires its
# staging modules at v0.0.0 with "=> ./staging/src/…" replaces, so each one is
# replaced by its published version. When upgrading Kubernetes, compare this
# list with: grep '=> ./staging' $(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/v$1.mod
# (sample-controller and sample-cli-plugin are not on the proxy and not needed.)
set -euo pipefail
v=$1
sv=0.${v#1.}
printf 'module sextant.local/kubebuild\n\ngo 1.26.0\n\nrequire k8s.io/kubernetes v%s\n\nreplace (\n' "$v"
for m in api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider \
	cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api \
	cri-client cri-streaming csi-translation-lib dynamic-resource-allocation endpointslice externaljwt \
	kms kube-aggregator kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics \
	mount-utils pod-security-admission sample-apiserver streaming; do
	printf '\tk8s.io/%s => k8s.io/%s v%s\n' "$m" "$m" "$sv"
done
printf ')\n'
