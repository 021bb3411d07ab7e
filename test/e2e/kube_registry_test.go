package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	networking "istio.io/api/networking/v1alpha3"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sextant-mesh/sextant/internal/adsclient"
	"github.com/sextant-mesh/sextant/internal/testenv"
	"github.com/sextant-mesh/sextant/model"
)

func kubeVS(name string, w1, w2 int32) *istionet.VirtualService {
	v := &istionet.VirtualService{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "apps"}}
	v.Spec.Hosts = []string{"echo"}
	v.Spec.Http = []*networking.HTTPRoute{{Route: []*networking.HTTPRouteDestination{
		{Destination: &networking.Destination{Host: "echo", Subset: "v1"}, Weight: w1},
		{Destination: &networking.Destination{Host: "echo", Subset: "v2"}, Weight: w2},
	}}}
	return v
}

// TestKubeRegistryEDS: Services, EndpointSlices, Pods and Istio CRDs from a
// real API server reach a connected proxy; invalid objects are rejected
// with their last good version serving; the API server going away keeps
// the mesh as it was, and Sextant resyncs when it is back.
func TestKubeRegistryEDS(t *testing.T) {
	c := startKube(t)
	s := startKubeSextant(t, c)
	cs := s.clients
	ctx := context.Background()

	kubeNamespace(t, cs, "apps", nil)
	kubeService(t, cs, "apps", "echo", map[string]string{"app": "echo"}, kubePort("http", 80, 8080))
	kubePod(t, cs, "apps", "echo-v1", "echo-sa", map[string]string{"app": "echo", "version": "v1"})
	kubePod(t, cs, "apps", "echo-v2", "echo-sa", map[string]string{"app": "echo", "version": "v2"})
	// Non-routed addresses (198.18.0.0/15): the test checks EDS content.
	kubeSlice(t, cs, "apps", "echo-1", "echo", "http", 8080, map[string]string{"198.18.0.1": "echo-v1"})

	cc, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	proxy, err := adsclient.Start(pctx, cc, adsclient.Node("198.18.9.1", "client", "apps", "", map[string]string{"app": "client"}),
		adsclient.Options{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	const cluster = "outbound|80||echo.apps.svc.cluster.local"
	want := func(what, eds string) {
		t.Helper()
		testenv.Eventually(t, 20*time.Second, func() string {
			if got := edsAddrs(t, proxy, cluster); got != eds {
				return what + ": EDS " + got + ", want " + eds
			}
			return ""
		})
	}
	want("initial", "198.18.0.1:8080")

	// The endpoint carries its Pod's labels and service account.
	snap := s.srv.Snapshot()
	inst := snap.InstancesByIP("198.18.0.1")
	if len(inst) != 1 || inst[0].Endpoint.Labels["version"] != "v1" || inst[0].Endpoint.ServiceAccount != "echo-sa" {
		t.Fatalf("instances of 198.18.0.1: %+v", inst)
	}

	// A new endpoint is pushed.
	kubeSlice(t, cs, "apps", "echo-1", "echo", "http", 8080, map[string]string{"198.18.0.1": "echo-v1", "198.18.0.2": "echo-v2"})
	want("scale up", "198.18.0.1:8080,198.18.0.2:8080")

	// Istio CRDs: a DestinationRule with subsets and a VirtualService.
	dr := &istionet.DestinationRule{ObjectMeta: metav1.ObjectMeta{Name: "echo", Namespace: "apps"}}
	dr.Spec.Host = "echo"
	dr.Spec.Subsets = []*networking.Subset{{Name: "v1", Labels: map[string]string{"version": "v1"}}, {Name: "v2", Labels: map[string]string{"version": "v2"}}}
	if _, err := cs.Istio.NetworkingV1().DestinationRules("apps").Create(ctx, dr, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.Istio.NetworkingV1().VirtualServices("apps").Create(ctx, kubeVS("echo", 90, 10), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	want("subset v2", "198.18.0.1:8080,198.18.0.2:8080")
	testenv.Eventually(t, 20*time.Second, func() string {
		if got := edsAddrs(t, proxy, "outbound|80|v2|echo.apps.svc.cluster.local"); got != "198.18.0.2:8080" {
			return "subset v2: " + got
		}
		return ""
	})
	testenv.Eventually(t, 20*time.Second, func() string {
		if n := len(s.srv.Snapshot().Configs(model.KindVirtualService)); n != 1 {
			return fmt.Sprintf("%d VirtualServices", n)
		}
		return ""
	})
	// Weights adding up to 110: the API server stores it (Istio's webhook
	// would refuse it), Sextant rejects it and keeps serving 90/10.
	cur, err := cs.Istio.NetworkingV1().VirtualServices("apps").Get(ctx, "echo", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bad := kubeVS("echo", 90, 20)
	bad.ResourceVersion = cur.ResourceVersion
	if _, err := cs.Istio.NetworkingV1().VirtualServices("apps").Update(ctx, bad, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, func() string {
		snap := s.srv.Snapshot()
		for _, e := range snap.Errors {
			if e.Location == "kube:VirtualService/apps/echo" && strings.Contains(e.Message, "110") {
				vss := snap.Configs(model.KindVirtualService)
				if len(vss) != 1 || vss[0].Spec.(*networking.VirtualService).GetHttp()[0].GetRoute()[1].GetWeight() != 10 {
					return fmt.Sprintf("last good VirtualService not serving: %d VirtualServices, errors %v", len(vss), snap.Errors)
				}
				return ""
			}
		}
		return fmt.Sprintf("no error for the invalid VirtualService: %v", snap.Errors)
	})

	// The API server goes away: the proxy keeps its endpoints, Sextant
	// stays ready.
	down := time.Now()
	c.StopAPIServer()
	t.Logf("API server stopped in %v", time.Since(down).Round(time.Millisecond))
	time.Sleep(2 * time.Second)
	if got := edsAddrs(t, proxy, cluster); got != "198.18.0.1:8080,198.18.0.2:8080" {
		t.Fatalf("EDS while the API server is down: %s", got)
	}
	if !s.srv.IsReady() || len(s.srv.Snapshot().Services()) == 0 {
		t.Fatal("not ready, or the mesh emptied, while the API server is down")
	}
	if err := c.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	// Back: the informers re-establish their watches; changes flow again.
	back := time.Now()
	kubeSlice(t, cs, "apps", "echo-1", "echo", "http", 8080, map[string]string{"198.18.0.2": "echo-v2", "198.18.0.3": ""})
	want("after the restart", "198.18.0.2:8080,198.18.0.3:8080")
	t.Logf("first change after the API server restart reached the proxy in %v", time.Since(back).Round(time.Millisecond))
}
