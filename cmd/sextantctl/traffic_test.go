package main

import (
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sextant-mesh/sextant/internal/testenv"
)

func TestTraffic(t *testing.T) {
	dir := t.TempDir()
	testenv.WriteFile(t, filepath.Join(dir, "mesh.yaml"), `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: checkout, namespace: default}
spec:
  hosts: [checkout.default.svc.cluster.local]
  resolution: STATIC
  ports: [{number: 8080, name: grpc, protocol: GRPC}]
  endpoints:
  - {address: 10.5.0.1, labels: {pool: base}}
  - {address: 10.5.0.2, labels: {pool: peak, traffic.sextant.io/state: keepalive}}
  - {address: 10.5.0.3, labels: {pool: peak, traffic.sextant.io/state: keepalive}}
`)
	env := testenv.Start(t, dir, testenv.Options{})
	u, _ := url.Parse(env.Monitor.URL)
	addr := u.Host

	golden(t, "traffic-status-before", mustSucceed(t, ctl(t, addr, "traffic", "status")))
	out := mustSucceed(t, ctl(t, addr, "traffic", "set", "--service", "checkout.default.svc.cluster.local", "--selector", "pool=peak", "--state", "running"))
	if !strings.Contains(out, "2 endpoints of checkout.default.svc.cluster.local set to running (registry file, served)") {
		t.Errorf("set output: %q", out)
	}
	// No waiting: status reads what set wrote.
	golden(t, "traffic-status-after", mustSucceed(t, ctl(t, addr, "traffic", "status")))
	out = mustSucceed(t, ctl(t, addr, "traffic", "set", "--service", "checkout", "--selector", "pool=base", "--state", "keepalive"))
	if !strings.Contains(out, "1 endpoint of checkout.default.svc.cluster.local set to keepalive") {
		t.Errorf("set output: %q", out)
	}

	mustFail(t, ctl(t, addr, "traffic", "set", "--service", "checkout.default.svc.cluster.local", "--state", "paused"), "--state must be")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--service", "nope.default.svc.cluster.local", "--state", "running"},
			`traffic set: service "nope.default.svc.cluster.local" not found in the mesh; services: checkout.default.svc.cluster.local`},
		{[]string{"--service", "checkout.default.svc.cluster.local", "--selector", "pool=none", "--state", "running"},
			"no endpoint of checkout.default.svc.cluster.local has the labels pool=none; its endpoints have: pool=base,traffic.sextant.io/state=keepalive; pool=peak,traffic.sextant.io/state=running"},
	} {
		r := ctl(t, addr, append([]string{"traffic", "set"}, c.args...)...)
		mustFail(t, r, c.want)
		if strings.Contains(r.stderr, "404") || strings.Contains(r.stderr, "map[") {
			t.Errorf("%v: HTTP status or Go syntax in %q", c.args, r.stderr)
		}
	}
}
