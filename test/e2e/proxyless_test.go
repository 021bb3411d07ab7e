package e2e

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/sextant-mesh/sextant/api/debug"
	"github.com/sextant-mesh/sextant/internal/testenv"
)

const echoHost = "echo.default.svc.cluster.local"

func serviceEntry(backends ...*testenv.Backend) string {
	var b strings.Builder
	b.WriteString(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: echo
  namespace: default
spec:
  hosts: [echo.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {number: 7070, name: grpc, protocol: GRPC}
  endpoints:
`)
	for _, be := range backends {
		fmt.Fprintf(&b, "  - address: %s\n    ports: {grpc: %d}\n    labels: {app: echo, version: %s}\n", be.Host, be.Port, be.Name)
	}
	b.WriteString(`---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: echo
  namespace: default
spec:
  host: echo.default.svc.cluster.local
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
`)
	return b.String()
}

func split(v1, v2 int) string {
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: echo
  namespace: default
spec:
  hosts: [echo.default.svc.cluster.local]
  http:
  - route:
    - destination: {host: echo.default.svc.cluster.local, subset: v1}
      weight: %d
    - destination: {host: echo.default.svc.cluster.local, subset: v2}
      weight: %d
`, v1, v2)
}

// within reports whether got/n is within tol of want (fractions).
func within(got, n int, want, tol float64) bool {
	return math.Abs(float64(got)/float64(n)-want) <= tol
}

// waitSplit samples until the v1 share is within tol of want.
func waitSplit(t *testing.T, c *testenv.GRPCClient, want, tol float64) map[string]int {
	t.Helper()
	var last map[string]int
	testenv.Eventually(t, 15*time.Second, func() string {
		last = c.Split(context.Background(), 400)
		if last["error"] > 0 || !within(last["v1"], 400, want, tol) {
			return fmt.Sprintf("split %v, want v1 share %.2f±%.2f (last error: %v)", last, want, tol, c.LastErr)
		}
		return ""
	})
	return last
}

func TestProxylessWeightedSplit(t *testing.T) {
	v1 := testenv.StartBackend(t, "v1")
	v2 := testenv.StartBackend(t, "v2")
	dir := t.TempDir()
	testenv.WriteFile(t, dir+"/echo.yaml", serviceEntry(v1, v2))
	testenv.WriteFile(t, dir+"/split.yaml", split(90, 10))
	env := testenv.Start(t, dir, testenv.Options{})
	client := testenv.DialXDS(t, env.Addr, echoHost+":7070")

	// 90/10 holds within tolerance over 2,000 RPCs (binomial sd ≈ 0.7%).
	waitSplit(t, client, 0.9, 0.05)
	got := client.Split(context.Background(), 2000)
	if got["error"] > 0 || !within(got["v1"], 2000, 0.9, 0.03) {
		t.Fatalf("90/10 split: got %v", got)
	}

	t.Run("weights change", func(t *testing.T) {
		env.WriteFile(t, "split.yaml", split(20, 80))
		waitSplit(t, client, 0.2, 0.06)
	})

	t.Run("broken file keeps last good config", func(t *testing.T) {
		env.WriteFile(t, "split.yaml", "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: echo\n  this is not yaml: [")
		testenv.Eventually(t, 5*time.Second, func() string {
			var ce debug.ConfigErrors
			env.GetJSON(t, "/debug/config_errors", &ce)
			for _, e := range ce.Errors {
				if strings.Contains(e.Location, "split.yaml") && !e.Warning {
					return ""
				}
			}
			return fmt.Sprintf("no error for split.yaml in %+v", ce.Errors)
		})
		if m := env.Get(t, "/metrics"); !strings.Contains(m, `sextant_config_errors{severity="error"} `) || strings.Contains(m, `sextant_config_errors{severity="error"} 0`) {
			t.Errorf("config error metric not set:\n%s", grep(m, "sextant_config_errors"))
		}
		got := client.Split(context.Background(), 1000)
		if got["error"] > 0 || !within(got["v1"], 1000, 0.2, 0.06) {
			t.Fatalf("after a broken file traffic must keep the last good 20/80 split, got %v", got)
		}
		// A fix is picked up and clears the error.
		env.WriteFile(t, "split.yaml", split(50, 50))
		waitSplit(t, client, 0.5, 0.07)
		var ce debug.ConfigErrors
		env.GetJSON(t, "/debug/config_errors", &ce)
		for _, e := range ce.Errors {
			if !e.Warning {
				t.Errorf("error not cleared after fix: %v", e)
			}
		}
	})

	t.Run("endpoint removal", func(t *testing.T) {
		// Route everything to the service (no subset), then remove v2.
		env.WriteFile(t, "split.yaml", `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo.default.svc.cluster.local]
  http:
  - route:
    - destination: {host: echo.default.svc.cluster.local}
`)
		testenv.Eventually(t, 10*time.Second, func() string {
			got := client.Split(context.Background(), 200)
			if got["v1"] == 0 || got["v2"] == 0 || got["error"] > 0 {
				return fmt.Sprintf("want both backends, got %v", got)
			}
			return ""
		})
		env.WriteFile(t, "echo.yaml", serviceEntry(v1))
		testenv.Eventually(t, 10*time.Second, func() string {
			got := client.Split(context.Background(), 200)
			if got["v1"] != 200 {
				return fmt.Sprintf("want all traffic on v1 after v2 was removed, got %v", got)
			}
			return ""
		})
	})

	t.Run("proxy status", func(t *testing.T) {
		var st []debug.SyncStatus
		env.GetJSON(t, "/debug/syncz", &st)
		if len(st) != 1 || st[0].Proxy != "client.default" || st[0].Generator != "grpc" {
			t.Fatalf("syncz: %+v", st)
		}
		for _, typ := range []string{"lds", "rds", "cds", "eds"} {
			ts, ok := st[0].Types[typ]
			if !ok || ts.Status != "SYNCED" {
				t.Errorf("%s: %+v, want SYNCED", typ, ts)
			}
		}
		dump := env.Get(t, "/debug/config_dump?proxyID=client.default")
		if !strings.Contains(dump, "outbound|7070||echo.default.svc.cluster.local") {
			t.Errorf("config_dump lacks the echo cluster: %.300s", dump)
		}
	})
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
