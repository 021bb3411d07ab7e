package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	networking "istio.io/api/networking/v1alpha3"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sextant-mesh/sextant/internal/testenv"
)

// TestKubeProxylessGRPC: grpc-go's own xDS client routes real RPCs through
// Sextant, whose whole config comes from a real API server: a Service
// selecting WorkloadEntries (on loopback: EndpointSlices may not hold
// 127.x addresses), a DestinationRule and a VirtualService splitting
// traffic, then shifting it.
func TestKubeProxylessGRPC(t *testing.T) {
	c := startKube(t)
	s := startKubeSextant(t, c)
	cs := s.clients
	ctx := context.Background()
	v1 := testenv.StartBackend(t, "v1")
	v2 := testenv.StartBackend(t, "v2")

	kubeNamespace(t, cs, "apps", nil)
	kubeService(t, cs, "apps", "echo", map[string]string{"app": "echo"}, kubePort("grpc", 7070, 7070))
	for _, be := range []*testenv.Backend{v1, v2} {
		we := &istionet.WorkloadEntry{ObjectMeta: metav1.ObjectMeta{Name: "echo-" + be.Name, Namespace: "apps"}}
		we.Spec.Address = be.Host
		we.Spec.Ports = map[string]uint32{"grpc": be.Port}
		we.Spec.Labels = map[string]string{"app": "echo", "version": be.Name}
		if _, err := cs.Istio.NetworkingV1().WorkloadEntries("apps").Create(ctx, we, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	dr := &istionet.DestinationRule{ObjectMeta: metav1.ObjectMeta{Name: "echo", Namespace: "apps"}}
	dr.Spec.Host = "echo.apps.svc.cluster.local"
	dr.Spec.Subsets = []*networking.Subset{{Name: "v1", Labels: map[string]string{"version": "v1"}}, {Name: "v2", Labels: map[string]string{"version": "v2"}}}
	if _, err := cs.Istio.NetworkingV1().DestinationRules("apps").Create(ctx, dr, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	vs := kubeVS("echo", 90, 10)
	vs.Spec.Hosts = []string{"echo.apps.svc.cluster.local"}
	for _, r := range vs.Spec.Http[0].Route {
		r.Destination.Host = "echo.apps.svc.cluster.local"
	}
	if _, err := cs.Istio.NetworkingV1().VirtualServices("apps").Create(ctx, vs, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	client := testenv.DialXDS(t, s.addr, "echo.apps.svc.cluster.local:7070")
	testenv.Eventually(t, 30*time.Second, func() string {
		split := client.Split(ctx, 100)
		if split["v1"] < 70 || split["v2"] < 1 || split["error"] > 0 {
			return fmt.Sprintf("split %v (last error %v), want about 90/10", split, client.LastErr)
		}
		return ""
	})
	// Shift everything to v2 by editing the VirtualService.
	cur, err := cs.Istio.NetworkingV1().VirtualServices("apps").Get(ctx, "echo", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur.Spec.Http[0].Route[0].Weight, cur.Spec.Http[0].Route[1].Weight = 0, 100
	if _, err := cs.Istio.NetworkingV1().VirtualServices("apps").Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, func() string {
		if split := client.Split(ctx, 20); split["v2"] != 20 {
			return fmt.Sprintf("split %v, want all v2", split)
		}
		return ""
	})
}
