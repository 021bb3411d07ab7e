package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	trafficv1 "github.com/sextant-mesh/sextant/api/traffic/v1alpha1"
	"github.com/sextant-mesh/sextant/discovery/translate"
	"github.com/sextant-mesh/sextant/internal/adsclient"
	"github.com/sextant-mesh/sextant/internal/testenv"
)

func setTraffic(t *testing.T, env *testenv.Env, req trafficv1.SetRequest) trafficv1.SetResponse {
	t.Helper()
	body, _ := json.Marshal(req)
	resp, err := http.Post(env.Monitor.URL+"/api/v1/traffic", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var b strings.Builder
		_, _ = fmt.Fprint(&b, resp.Status)
		t.Fatalf("POST /api/v1/traffic: %s", b.String())
	}
	var out trafficv1.SetResponse
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestKeepaliveShareRealClient: grpc-go's own balancer splits traffic by the
// locality weights Sextant sends, so a keepalive endpoint gets its share.
func TestKeepaliveShareRealClient(t *testing.T) {
	run := testenv.StartBackend(t, "running")
	ka := testenv.StartBackend(t, "keepalive")
	dir := t.TempDir()
	testenv.WriteFile(t, dir+"/echo.yaml", fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: echo
  namespace: default
  annotations: {traffic.sextant.io/keepalive-share: "0.2"}
spec:
  hosts: [echo.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 7070, name: grpc, protocol: GRPC}]
  endpoints:
  - {address: 127.0.0.1, ports: {grpc: %d}, labels: {app: echo}}
  - {address: 127.0.0.1, ports: {grpc: %d}, labels: {app: echo, traffic.sextant.io/state: keepalive}}
`, run.Port, ka.Port))
	env := testenv.Start(t, dir, testenv.Options{})
	client := testenv.DialXDS(t, env.Addr, echoHost+":7070")
	testenv.Eventually(t, 15*time.Second, func() string {
		got := client.Split(context.Background(), 1000)
		if got["error"] > 0 || !within(got["keepalive"], 1000, 0.2, 0.05) {
			return fmt.Sprintf("want keepalive ≈20%%, got %v (last error %v)", got, client.LastErr)
		}
		return ""
	})
	// Flip the keepalive endpoint to running through the API: an even split.
	setTraffic(t, env, trafficv1.SetRequest{Service: echoHost, Selector: map[string]string{}, State: trafficv1.StateRunning})
	testenv.Eventually(t, 15*time.Second, func() string {
		got := client.Split(context.Background(), 1000)
		if got["error"] > 0 || !within(got["keepalive"], 1000, 0.5, 0.07) {
			return fmt.Sprintf("after flipping to running want ≈50/50, got %v", got)
		}
		return ""
	})
	// And everything keepalive: traffic still flows, evenly.
	setTraffic(t, env, trafficv1.SetRequest{Service: echoHost, State: trafficv1.StateKeepalive})
	testenv.Eventually(t, 15*time.Second, func() string {
		got := client.Split(context.Background(), 400)
		if got["error"] > 0 || got["running"] == 0 || got["keepalive"] == 0 {
			return fmt.Sprintf("all keepalive must not black-hole traffic, got %v", got)
		}
		return ""
	})
}

// TestFleetFlipOneEDSPush: flipping 1,000 endpoints from keepalive to
// running reaches every connected proxy as one EDS-only push, and the state
// survives a restart (it is stored in the config directory).
func TestFleetFlipOneEDSPush(t *testing.T) {
	var b strings.Builder
	b.WriteString(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: fleet, namespace: default}
spec:
  hosts: [fleet.default.svc.cluster.local]
  resolution: STATIC
  ports: [{number: 8080, name: grpc, protocol: GRPC}]
  endpoints:
`)
	for i := range 1000 {
		fmt.Fprintf(&b, "  - {address: 10.%d.%d.%d, labels: {pool: peak, traffic.sextant.io/state: keepalive}}\n", 40+i/65025, (i/255)%255, i%255+1)
	}
	b.WriteString("  - {address: 10.99.0.1, labels: {pool: base}}\n")
	dir := t.TempDir()
	testenv.WriteFile(t, dir+"/fleet.yaml", b.String())
	env := testenv.Start(t, dir, testenv.Options{})
	cc := dial(t, env.Addr)
	const n = 20
	var clients []*adsclient.Client
	for i := range n {
		clients = append(clients, startClient(t, cc, fmt.Sprintf("p%d", i), "grpc", adsclient.Options{Delta: i%2 == 1}))
	}
	for _, c := range clients {
		waitResources(t, c, translate.EndpointType, 1)
	}
	waitSynced(t, env, n)
	st := env.Traffic.Status("fleet.default.svc.cluster.local")
	if len(st) != 1 || st[0].Keepalive != 1000 || st[0].Running != 1 {
		t.Fatalf("status before: %+v", st)
	}
	before := len(env.Server.PushLog())
	resp := setTraffic(t, env, trafficv1.SetRequest{Service: "fleet.default.svc.cluster.local", Selector: map[string]string{"pool": "peak"}, State: trafficv1.StateRunning})
	if resp.Matched != 1000 || resp.Registry != "file" {
		t.Errorf("response %+v", resp)
	}
	testenv.Eventually(t, 10*time.Second, func() string {
		if s := env.Traffic.Status("fleet.default.svc.cluster.local"); len(s) != 1 || s[0].Running != 1001 {
			return fmt.Sprintf("status %+v", s)
		}
		log := env.Server.PushLog()
		if len(log) == before || log[len(log)-1].Converged == nil {
			return "flip not pushed and converged"
		}
		return ""
	})
	log := env.Server.PushLog()
	if len(log) != before+1 {
		t.Fatalf("flip took %d pushes, want 1", len(log)-before)
	}
	last := log[len(log)-1]
	if last.Full || last.Sent != n {
		t.Errorf("flip push: full=%v sent=%d; want one EDS-only push to all %d proxies", last.Full, last.Sent, n)
	}
	t.Logf("flip of 1,000 endpoints: EDS-only push, %d proxies, %d bytes, converged %v after the change", last.Sent, last.Bytes, last.ConvergedIn)

	// Durable: a new server on the same directory sees the new state.
	env2 := testenv.Start(t, dir, testenv.Options{})
	if s := env2.Traffic.Status("fleet.default.svc.cluster.local"); len(s) != 1 || s[0].Running != 1001 || s[0].Keepalive != 0 {
		t.Errorf("after restart: %+v", s)
	}
}
