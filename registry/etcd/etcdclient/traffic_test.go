package etcdclient_test

import (
	"context"
	"testing"
	"time"

	v1 "github.com/sextant-mesh/sextant/api/etcd/v1"
	trafficv1 "github.com/sextant-mesh/sextant/api/traffic/v1alpha1"
	"github.com/sextant-mesh/sextant/registry/etcd/etcdclient"
	"github.com/sextant-mesh/sextant/registry/etcd/etcdtest"
)

// TestSetTrafficState flips instances' state label in etcd, keeping their
// leases, and only for the instances the selector matches.
func TestSetTrafficState(t *testing.T) {
	srv := etcdtest.Start(t)
	c, err := etcdclient.New(srv.Client(t), "/sextant")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	svc := v1.Service{Host: "pay.default.svc.cluster.local", Namespace: "default", Ports: []v1.Port{{Name: "grpc", Number: 8080, Protocol: "GRPC"}}}
	var regs []*etcdclient.Registered
	for i, pool := range []string{"peak", "peak", "base"} {
		r, err := c.Register(ctx, etcdclient.Registration{
			Service:  svc,
			Instance: v1.Instance{Address: "10.0.0." + string(rune('1'+i)), Ports: map[string]uint32{"grpc": 8080}, Labels: map[string]string{"pool": pool, trafficv1.StateLabel: trafficv1.StateKeepalive}},
			TTL:      10 * time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		regs = append(regs, r)
	}
	defer func() {
		for _, r := range regs {
			_ = r.Close(ctx)
		}
	}()
	n, err := c.SetTrafficState(ctx, "default", svc.Host, map[string]string{"pool": "peak"}, trafficv1.StateRunning)
	if err != nil || n != 2 {
		t.Fatalf("SetTrafficState = %d, %v; want 2 instances", n, err)
	}
	l, err := c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range l.Instances {
		want := trafficv1.StateRunning
		if in.Instance.Labels["pool"] == "base" {
			want = trafficv1.StateKeepalive
		}
		if got := in.Instance.Labels[trafficv1.StateLabel]; got != want {
			t.Errorf("%s: state %q, want %q", in.Key, got, want)
		}
		if in.Lease == 0 {
			t.Errorf("%s lost its lease", in.Key)
		}
	}
	if n, _ := c.SetTrafficState(ctx, "default", svc.Host, map[string]string{"pool": "peak"}, trafficv1.StateRunning); n != 0 {
		t.Errorf("repeating the change touched %d instances", n)
	}
	if _, err := c.SetTrafficState(ctx, "default", svc.Host, nil, "paused"); err == nil {
		t.Error("bad state accepted")
	}
}
