package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"

	"github.com/sextant-mesh/sextant/discovery/translate"
	"github.com/sextant-mesh/sextant/discovery/xds"
	"github.com/sextant-mesh/sextant/internal/adsclient"
	"github.com/sextant-mesh/sextant/internal/testenv"
)

// TestSlowProxyNeverBlocksOthers: a proxy that stops reading fills its
// stream's flow-control window; its send times out, the stream is closed
// and counted, and a healthy proxy keeps getting pushes meanwhile.
func TestSlowProxyNeverBlocksOthers(t *testing.T) {
	var b strings.Builder
	for i := range 400 {
		fmt.Fprintf(&b, "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: svc-%d, namespace: default}\nspec:\n  hosts: [a-rather-long-service-name-to-make-big-responses-%d.default.svc.cluster.local]\n  resolution: STATIC\n  ports: [{number: 8080, name: http, protocol: HTTP}]\n  endpoints: [{address: 10.40.%d.%d}]\n", i, i, i/250, i%250+1)
	}
	dir := t.TempDir()
	testenv.WriteFile(t, dir+"/mesh.yaml", b.String())
	env := testenv.Start(t, dir, testenv.Options{Server: func(o *xds.Options) {
		o.SendTimeout = 500 * time.Millisecond
		o.PushConcurrency = 1 // the stuck proxy must not hold the only push slot
	}})
	cc := dial(t, env.Addr)

	// The stuck proxy: subscribes, never reads.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stuck, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(dial(t, env.Addr)).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{translate.ClusterType, translate.ListenerType} {
		if err := stuck.Send(&discoverygrpc.DiscoveryRequest{TypeUrl: typ, Node: adsclient.Node("10.9.9.9", "stuck", "default", "", nil)}); err != nil {
			t.Fatal(err)
		}
	}
	healthy := startClient(t, cc, "healthy", "grpc", adsclient.Options{})
	waitResources(t, healthy, translate.ClusterType, 400)

	// Changes keep flowing to the healthy proxy.
	start := time.Now()
	env.WriteFile(t, "extra.yaml", testenv.StaticServiceEntry("extra", "10.41.0.1"))
	waitResources(t, healthy, translate.ClusterType, 401)
	t.Logf("healthy proxy got the change %v after it was written, with a stuck proxy connected", time.Since(start).Round(time.Millisecond))
	testenv.Eventually(t, 10*time.Second, func() string {
		if !strings.Contains(env.Get(t, "/metrics"), "pilot_xds_write_timeout 1") {
			return "stuck stream not closed and counted"
		}
		return ""
	})
	for _, st := range syncz(t, env) {
		if st.Proxy == "stuck.default" {
			t.Error("stuck proxy still connected")
		}
	}
}
