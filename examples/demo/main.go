// Command demo shows Sextant routing a real proxyless gRPC client.
//
// It starts the two "echo" backends of the sample mesh (v1 on 127.0.0.1:17071,
// v2 on 127.0.0.1:17072), then dials xds:///echo.default.svc.cluster.local:7070
// with grpc-go's own xDS client pointed at Sextant, and prints, every
// second, which version answered how many RPCs. Run `make run` in one
// terminal and `make demo` in another, then edit
// examples/mesh/echo-split.yaml and watch the split follow.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	xdsresolver "google.golang.org/grpc/xds"
)

type echo struct {
	testgrpc.UnimplementedTestServiceServer
	name string
}

func (e *echo) UnaryCall(context.Context, *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	return &testgrpc.SimpleResponse{Hostname: e.name}, nil
}

func serve(name, addr string) (*grpc.Server, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("backend %s: %w", name, err)
	}
	gs := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(gs, &echo{name: name})
	go func() { _ = gs.Serve(lis) }()
	return gs, nil
}

func main() {
	xdsAddr := flag.String("xds-addr", "localhost:15010", "Sextant's plaintext xDS address")
	target := flag.String("target", "echo.default.svc.cluster.local:7070", "service to call")
	rate := flag.Int("rpcs", 200, "RPCs per report")
	backends := flag.Bool("backends", true, "start the v1/v2 backends of the sample mesh")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if *backends {
		for name, addr := range map[string]string{"v1": "127.0.0.1:17071", "v2": "127.0.0.1:17072"} {
			gs, err := serve(name, addr)
			if err != nil {
				log.Fatal(err)
			}
			defer gs.Stop()
		}
	}
	// grpc-go reads GRPC_XDS_BOOTSTRAP at package init; building the
	// resolver from an in-memory bootstrap keeps the demo one command.
	bootstrap, _ := json.Marshal(map[string]any{
		"xds_servers": []any{map[string]any{
			"server_uri":      *xdsAddr,
			"channel_creds":   []any{map[string]any{"type": "insecure"}},
			"server_features": []any{"xds_v3"},
		}},
		"node": map[string]any{
			"id":       "sidecar~127.0.0.1~demo-client.default~default.svc.cluster.local",
			"metadata": map[string]any{"GENERATOR": "grpc", "NAMESPACE": "default", "ISTIO_VERSION": "1.32.0", "PROXY_CONFIG": map[string]any{}},
		},
	})
	res, err := xdsresolver.NewXDSResolverWithConfigForTesting(bootstrap)
	if err != nil {
		log.Fatal(err)
	}
	cc, err := grpc.NewClient("xds:///"+*target, grpc.WithResolvers(res), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer cc.Close()
	client := testgrpc.NewTestServiceClient(cc)
	fmt.Printf("calling xds:///%s through Sextant at %s (Ctrl-C to stop)\n", *target, *xdsAddr)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		counts := map[string]int{}
		var lastErr error
		for range *rate {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			resp, err := client.UnaryCall(cctx, &testgrpc.SimpleRequest{})
			cancel()
			if err != nil {
				counts["error"]++
				lastErr = err
				continue
			}
			counts[resp.GetHostname()]++
		}
		names := make([]string, 0, len(counts))
		for n := range counts {
			names = append(names, n)
		}
		sort.Strings(names)
		var parts []string
		for _, n := range names {
			parts = append(parts, fmt.Sprintf("%s %5.1f%%", n, 100*float64(counts[n])/float64(*rate)))
		}
		line := time.Now().Format("15:04:05") + "  " + strings.Join(parts, "  ")
		if lastErr != nil {
			line += "  (last error: " + lastErr.Error() + ")"
		}
		fmt.Println(line)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
