// Package depsstub keeps dependencies that packages under construction will
// use in go.mod. Delete it once those packages import them.
package depsstub

import (
	_ "go.etcd.io/etcd/client/v3"
	_ "go.etcd.io/etcd/server/v3/embed"
	_ "go.step.sm/crypto/jose"
	_ "go.step.sm/crypto/keyutil"
	_ "go.step.sm/crypto/pemutil"
	_ "go.step.sm/crypto/x509util"
	_ "golang.org/x/time/rate"
	_ "istio.io/api/security/v1alpha1"
)
