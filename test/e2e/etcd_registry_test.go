package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	v1 "github.com/sextant-mesh/sextant/api/etcd/v1"
	"github.com/sextant-mesh/sextant/discovery/translate"
	"github.com/sextant-mesh/sextant/internal/adsclient"
	"github.com/sextant-mesh/sextant/internal/testenv"
	"github.com/sextant-mesh/sextant/model"
	"github.com/sextant-mesh/sextant/registry/etcd"
	"github.com/sextant-mesh/sextant/registry/etcd/etcdclient"
	"github.com/sextant-mesh/sextant/registry/etcd/etcdtest"
)

// startEtcdSextant runs Sextant in-process with only the etcd registry and
// returns its xDS address.
func startEtcdSextant(t *testing.T, endpoints []string) string {
	t.Helper()
	env := testenv.Start(t, "", testenv.Options{ReadyTimeout: 20 * time.Second,
		Registry: func(agg *model.Aggregator, log *slog.Logger) (func(context.Context) error, testenv.Setter) {
			reg := etcd.New(etcd.Config{Config: etcdclient.Config{Endpoints: endpoints}}, agg.NewShard(etcd.RegistryName), log)
			return reg.Run, nil
		}})
	return env.Addr
}

// edsAddrs returns the sorted host:port of a cluster's load assignment.
func edsAddrs(t *testing.T, c *adsclient.Client, cluster string) string {
	t.Helper()
	res := c.Resources(translate.EndpointType)[cluster]
	if res == nil {
		return "<no EDS resource>"
	}
	cla := &endpointv3.ClusterLoadAssignment{}
	if err := res.UnmarshalTo(cla); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, lle := range cla.GetEndpoints() {
		for _, lb := range lle.GetLbEndpoints() {
			sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
			out = append(out, fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue()))
		}
	}
	slices.Sort(out)
	return strings.Join(out, ",")
}

// TestEtcdRegistryEDS: an application registers itself in etcd with the
// client package and a connected proxy receives its endpoint over EDS;
// instances coming and going are pushed, over SotW and delta.
func TestEtcdRegistryEDS(t *testing.T) {
	srv := etcdtest.Start(t)
	addr := startEtcdSextant(t, srv.Endpoints())
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })

	app, err := etcdclient.Dial(etcdclient.Config{Endpoints: srv.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	register := func(ip string) *etcdclient.Registered {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		r, err := app.Register(ctx, etcdclient.Registration{
			Service:  v1.Service{Host: "echo.example.com", Namespace: "default", Ports: []v1.Port{{Name: "http", Number: 8080}}},
			Instance: v1.Instance{Address: ip, Ports: map[string]uint32{"http": 18080}, Labels: map[string]string{"app": "echo"}},
			TTL:      5 * time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	first := register("10.3.0.1")
	const cluster = "outbound|8080||echo.example.com"

	for _, delta := range []bool{false, true} {
		t.Run(fmt.Sprintf("delta=%v", delta), func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			pod := fmt.Sprintf("etcd-client-%v", delta)
			c, err := adsclient.Start(ctx, cc, adsclient.Node("10.9.0.2", pod, "default", "", map[string]string{"app": pod}),
				adsclient.Options{Delta: delta, Follow: true})
			if err != nil {
				t.Fatal(err)
			}
			// The SotW run starts with 10.3.0.1 registered, the delta run
			// with 10.3.0.2 (which replaced it).
			want, joiner := "10.3.0.1:18080", "10.3.0.3"
			if delta {
				want, joiner = "10.3.0.2:18080", "10.3.0.4"
			}
			testenv.Eventually(t, 20*time.Second, func() string {
				if got := edsAddrs(t, c, cluster); got != want {
					return "EDS " + got + ", want " + want
				}
				return ""
			})
			// A second instance joins, then the first leaves.
			second := register(joiner)
			next := want + "," + joiner + ":18080"
			testenv.Eventually(t, 20*time.Second, func() string {
				if got := edsAddrs(t, c, cluster); got != next {
					return "EDS " + got + ", want " + next
				}
				return ""
			})
			if err := second.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			testenv.Eventually(t, 20*time.Second, func() string {
				if got := edsAddrs(t, c, cluster); got != want {
					return "EDS " + got + ", want " + want
				}
				return ""
			})
		})
		if !delta {
			// Replace the first instance for the delta run.
			register("10.3.0.2")
			if err := first.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
}
