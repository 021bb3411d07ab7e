package main

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestServeBothTransports runs `sextant serve` on the sample mesh with each
// --xds-transport and checks that ADS and gRPC reflection answer on the
// same --xds-addr (with lean, reflection is handed over to grpc-go).
func TestServeBothTransports(t *testing.T) {
	for _, transport := range []string{"lean", "grpc"} {
		t.Run(transport, func(t *testing.T) {
			xdsAddr, monAddr := freeAddr(t), freeAddr(t)
			ctx, cancel := context.WithCancel(context.Background())
			cmd := newRootCommand()
			cmd.SetArgs([]string{"serve", "--config-dir", "../../examples/mesh", "--xds-addr", xdsAddr,
				"--monitoring-addr", monAddr, "--webhook-addr", "", "--kube-registry", "off",
				"--xds-transport", transport, "--drain-window", "10ms", "--log-level", "error"})
			done := make(chan error, 1)
			go func() { done <- cmd.ExecuteContext(ctx) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("serve: %v", err)
				}
			}()
			waitReady(t, "http://"+monAddr+"/ready")

			cc, err := grpc.NewClient(xdsAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
			defer rcancel()
			ads, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(rctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := ads.Send(&discoverygrpc.DiscoveryRequest{
				Node:    &corev3.Node{Id: "sidecar~10.0.0.1~client.default~default.svc.cluster.local"},
				TypeUrl: "type.googleapis.com/envoy.config.cluster.v3.Cluster",
			}); err != nil {
				t.Fatal(err)
			}
			resp, err := ads.Recv()
			if err != nil {
				t.Fatalf("CDS: %v", err)
			}
			if len(resp.GetResources()) == 0 || resp.GetNonce() == "" {
				t.Fatalf("CDS response has %d resources, nonce %q", len(resp.GetResources()), resp.GetNonce())
			}

			// A second connection whose first call is reflection.
			cc2, err := grpc.NewClient(xdsAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer cc2.Close()
			refl, err := reflectionpb.NewServerReflectionClient(cc2).ServerReflectionInfo(rctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := refl.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
				t.Fatal(err)
			}
			rr, err := refl.Recv()
			if err != nil {
				t.Fatalf("reflection: %v", err)
			}
			var names []string
			for _, s := range rr.GetListServicesResponse().GetService() {
				names = append(names, s.GetName())
			}
			if !strings.Contains(strings.Join(names, ","), "envoy.service.discovery.v3.AggregatedDiscoveryService") {
				t.Fatalf("reflection lists %v, want the ADS service among them", names)
			}
		})
	}
}

func TestServeRejectsUnknownTransport(t *testing.T) {
	cmd := newRootCommand()
	cmd.SetArgs([]string{"serve", "--config-dir", "../../examples/mesh", "--xds-transport", "quic", "--kube-registry", "off"})
	err := cmd.ExecuteContext(context.Background())
	if err == nil || !strings.Contains(err.Error(), "--xds-transport") {
		t.Fatalf("got %v, want an error naming --xds-transport", err)
	}
}

func waitReady(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s not ready", url)
}
