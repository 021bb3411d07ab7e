package proxy

import (
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

func node(id string, md map[string]any) *corev3.Node {
	s, _ := structpb.NewStruct(md)
	return &corev3.Node{Id: id, Metadata: s}
}

func TestParse(t *testing.T) {
	p, err := Parse(node("sidecar~10.1.2.3~reviews-v1-abc.default~default.svc.cluster.local", map[string]any{
		"GENERATOR": "grpc", "LABELS": map[string]any{"app": "reviews"}, "ISTIO_VERSION": "1.32.0",
		"CLUSTER_ID": "Kubernetes", "PROXY_CONFIG": map[string]any{}, "INSTANCE_IPS": "10.1.2.3,fd00::3",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "reviews-v1-abc.default" || p.Namespace != "default" || p.Generator != GenGRPC ||
		p.Labels["app"] != "reviews" || p.IstioVersion != "1.32.0" || p.ClusterID != "Kubernetes" ||
		!p.HasProxyConfig || len(p.IPs) != 2 {
		t.Errorf("parsed %+v", p)
	}
	// NAMESPACE metadata wins; without it the DNS domain's first label.
	p, _ = Parse(node("sidecar~10.0.0.1~pod.x~x.svc.cluster.local", map[string]any{"NAMESPACE": "y"}))
	if p.Namespace != "y" || p.Generator != GenEnvoy {
		t.Errorf("namespace %q generator %q", p.Namespace, p.Generator)
	}
	p, _ = Parse(node("sidecar~10.0.0.1~pod.x~x.svc.cluster.local", nil))
	if p.Namespace != "x" {
		t.Errorf("namespace from domain: %q", p.Namespace)
	}
}

func TestParseErrors(t *testing.T) {
	for _, c := range []struct {
		n    *corev3.Node
		want string
	}{
		{nil, "node id is required"},
		{node("", nil), "node id is required"},
		{node("just-a-name", nil), "want 4"},
		{node("sidecar~1.2.3.4~pod.ns", nil), "has 3"},
		{node("gateway~1.2.3.4~pod.ns~ns.svc", nil), `proxy type "gateway"`},
		{node("sidecar~not-an-ip~pod.ns~ns.svc", nil), "not an IP"},
		{node("sidecar~1.2.3.4~~ns.svc", nil), "empty"},
		{node("sidecar~1.2.3.4~pod.ns~ns.svc", map[string]any{"GENERATOR": "weird"}), `GENERATOR "weird"`},
	} {
		_, err := Parse(c.n)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%v) error %v, want it to mention %q", c.n.GetId(), err, c.want)
		}
	}
}
