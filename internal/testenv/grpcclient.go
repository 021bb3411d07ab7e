package testenv

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	xdsresolver "google.golang.org/grpc/xds"
)

// Bootstrap returns a grpc-go xDS bootstrap for a proxyless client of
// namespace ns talking to addr, with Istio's node id and metadata.
func Bootstrap(addr, pod, ns string) []byte {
	b, _ := json.Marshal(map[string]any{
		"xds_servers": []any{map[string]any{
			"server_uri":      addr,
			"channel_creds":   []any{map[string]any{"type": "insecure"}},
			"server_features": []any{"xds_v3"},
		}},
		"node": map[string]any{
			"id": "sidecar~127.0.0.1~" + pod + "." + ns + "~" + ns + ".svc.cluster.local",
			"metadata": map[string]any{
				"GENERATOR":     "grpc",
				"NAMESPACE":     ns,
				"ISTIO_VERSION": "1.32.0",
				"CLUSTER_ID":    "Kubernetes",
				"PROXY_CONFIG":  map[string]any{},
			},
		},
	})
	return b
}

// GRPCClient is a proxyless gRPC client using grpc-go's own xDS support.
type GRPCClient struct {
	Conn   *grpc.ClientConn
	client testgrpc.TestServiceClient
	// LastErr is the last RPC error Split saw.
	LastErr error
}

// DialXDS dials xds:///target through Sextant at addr.
func DialXDS(t testing.TB, addr, target string) *GRPCClient {
	t.Helper()
	res, err := xdsresolver.NewXDSResolverWithConfigForTesting(Bootstrap(addr, "client", "default"))
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient("xds:///"+target, grpc.WithResolvers(res), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return &GRPCClient{Conn: cc, client: testgrpc.NewTestServiceClient(cc)}
}

// Call makes one RPC and returns the backend's name.
func (c *GRPCClient) Call(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := c.client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
	if err != nil {
		return "", err
	}
	return resp.GetHostname(), nil
}

// Split makes n RPCs and counts answers by backend name; errors count
// under "error".
func (c *GRPCClient) Split(ctx context.Context, n int) map[string]int {
	out := map[string]int{}
	for range n {
		name, err := c.Call(ctx)
		if err != nil {
			name = "error"
			c.LastErr = err
		}
		out[name]++
	}
	return out
}
