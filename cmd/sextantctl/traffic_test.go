package main

import (
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
	if !strings.Contains(out, "2 endpoints of checkout.default.svc.cluster.local set to running (registry file)") {
		t.Errorf("set output: %q", out)
	}
	testenv.Eventually(t, 5*time.Second, func() string {
		if got := mustSucceed(t, ctl(t, addr, "traffic", "status", "-o", "json")); !strings.Contains(got, `"running": 3`) {
			return "state not applied: " + got
		}
		return ""
	})
	golden(t, "traffic-status-after", mustSucceed(t, ctl(t, addr, "traffic", "status")))

	mustFail(t, ctl(t, addr, "traffic", "set", "--service", "checkout.default.svc.cluster.local", "--state", "paused"), "--state must be")
	mustFail(t, ctl(t, addr, "traffic", "set", "--service", "nope.default.svc.cluster.local", "--state", "running"), "not in the mesh")
	mustFail(t, ctl(t, addr, "traffic", "set", "--service", "checkout.default.svc.cluster.local", "--selector", "pool=none", "--state", "running"), "no endpoint")
}
