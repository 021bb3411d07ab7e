package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sextant-mesh/sextant/discovery/translate"
	"github.com/sextant-mesh/sextant/internal/adsclient"
	"github.com/sextant-mesh/sextant/internal/testenv"
)

// TestSidecarScoping proves a Sidecar cuts both the config a proxy gets and
// the set of proxies a change is pushed to.
func TestSidecarScoping(t *testing.T) {
	var b strings.Builder
	// Enough services that what scales with them dominates the ~3.7 KB of
	// fixed config every sidecar gets (capture and sniffing listeners,
	// special clusters), which no scoping removes.
	for i := range 30 {
		fmt.Fprintf(&b, `---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: svc-%d, namespace: default}
spec:
  hosts: [svc-%d.default.svc.cluster.local]
  resolution: STATIC
  ports: [{number: 8080, name: http, protocol: HTTP}]
  endpoints: [{address: 10.20.0.%d}]
`, i, i, i+1)
	}
	b.WriteString(`---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: own, namespace: team-b}
spec:
  hosts: [own.team-b.svc.cluster.local]
  resolution: STATIC
  ports: [{number: 8080, name: http, protocol: HTTP}]
  endpoints: [{address: 10.21.0.1}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: team-b}
spec:
  egress:
  - hosts: ["./*"]
`)
	dir := t.TempDir()
	testenv.WriteFile(t, dir+"/mesh.yaml", b.String())
	env := testenv.Start(t, dir, testenv.Options{})
	cc := dial(t, env.Addr)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := func(pod, ns string) *adsclient.Client {
		c, err := adsclient.Start(ctx, cc, adsclient.Node("10.30.0.1", pod, ns, "", nil), adsclient.Options{Follow: true, Delta: true})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	scoped := start("scoped", "team-b")
	full := start("full", "default")
	// 31 services are visible to "full"; "scoped" sees only its namespace.
	// Both also get Passthrough/BlackHole/InboundPassthrough clusters.
	waitResources(t, scoped, translate.ClusterType, 1+3)
	waitResources(t, full, translate.ClusterType, 31+3)
	waitSynced(t, env, 2)
	// The capture listeners are the same whatever the proxy sees (and
	// virtualInbound carries istiod's passthrough chains): only what
	// depends on visible services is compared.
	bytes := func(c *adsclient.Client) int {
		n := 0
		for _, typ := range []string{translate.ClusterType, translate.EndpointType, translate.ListenerType, translate.RouteType} {
			for name, a := range c.Resources(typ) {
				if name == translate.VirtualInbound || name == translate.VirtualOutbound {
					continue
				}
				n += len(a.GetValue())
			}
		}
		return n
	}
	bs, bf := bytes(scoped), bytes(full)
	t.Logf("config bytes: scoped %d, unscoped %d", bs, bf)
	if bs*5 > bf {
		t.Errorf("Sidecar scoping should cut config size by far more: scoped %d bytes vs %d", bs, bf)
	}
	// Drain the events so far, then change something only "full" can see.
	drainEvents(scoped)
	drainEvents(full)
	before := len(env.Server.PushLog())
	env.WriteFile(t, "vs.yaml", `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc-0, namespace: default}
spec:
  hosts: [svc-0.default.svc.cluster.local]
  http:
  - route: [{destination: {host: svc-0.default.svc.cluster.local}}]
    timeout: 3s
`)
	testenv.Eventually(t, 5*time.Second, func() string {
		log := env.Server.PushLog()
		if len(log) <= before || log[len(log)-1].Converged == nil {
			return "push not converged"
		}
		return ""
	})
	log := env.Server.PushLog()
	last := log[len(log)-1]
	if last.Proxies != 2 || last.Sent != 1 {
		t.Errorf("push queued on %d proxies, sent to %d; want sent to 1 (the scoped proxy cannot see the change)", last.Proxies, last.Sent)
	}
	if n := countEvents(scoped, 300*time.Millisecond); n != 0 {
		t.Errorf("scoped proxy received %d responses for a change it cannot see", n)
	}
	if n := countEvents(full, 300*time.Millisecond); n == 0 {
		t.Error("unscoped proxy received nothing for the change")
	}
}

func drainEvents(c *adsclient.Client) {
	for {
		select {
		case <-c.Events():
		default:
			return
		}
	}
}

func countEvents(c *adsclient.Client, wait time.Duration) int {
	n := 0
	timeout := time.After(wait)
	for {
		select {
		case <-c.Events():
			n++
		case <-timeout:
			return n
		}
	}
}
