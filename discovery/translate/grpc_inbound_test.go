package translate

import (
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/sextant-mesh/sextant/internal/meshtest"
	"github.com/sextant-mesh/sextant/model"
)

const grpcServerMesh = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 7070, name: grpc, protocol: GRPC}, {number: 8080, name: http, protocol: HTTP}]
  endpoints:
  - {address: 10.1.0.1, ports: {grpc: 17070}, serviceAccount: echo, labels: {app: echo}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec:
  mtls: {mode: STRICT}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-a, namespace: default}
spec:
  selector: {matchLabels: {app: echo}}
  rules:
  - from: [{source: {principals: [cluster.local/ns/default/sa/client-a]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-empty, namespace: default}
spec:
  selector: {matchLabels: {app: echo}}
  action: DENY
  rules:
  - to: [{operation: {paths: [/grpc.testing.TestService/EmptyCall]}}]
`

func grpcInboundFor(t *testing.T, ctx *Context, ip, ns, name string) *listenerv3.Listener {
	t.Helper()
	p := testProxyIP(t, ip, "echo-1", ns, "grpc", map[string]string{"app": "echo"})
	r := ctx.GRPCInboundListener(p, name)
	if r == nil {
		return nil
	}
	if err := r.Msg.(*listenerv3.Listener).ValidateAll(); err != nil {
		t.Fatalf("listener fails ValidateAll: %v", err)
	}
	return r.Msg.(*listenerv3.Listener)
}

func TestGRPCInboundListener(t *testing.T) {
	snap := meshtest.FromYAML(t, map[string][]byte{"mesh.yaml": []byte(grpcServerMesh)})
	ctx := NewContext(snap, model.DefaultMeshConfig(), NewCache())
	name := GRPCInboundPrefix + "10.1.0.1:17070"
	l := grpcInboundFor(t, ctx, "10.1.0.1", "default", name)
	if l == nil {
		t.Fatal("no listener for the served port")
	}
	if l.GetAddress().GetSocketAddress().GetPortValue() != 17070 || len(l.FilterChains) != 1 {
		t.Fatalf("listener = %v", l)
	}
	fc := l.FilterChains[0]
	if fc.Name != "inbound-mtls" || fc.TransportSocket == nil {
		t.Fatalf("STRICT port must be mTLS: %v", fc)
	}
	dtc := &tlsv3.DownstreamTlsContext{}
	if err := fc.TransportSocket.GetTypedConfig().UnmarshalTo(dtc); err != nil {
		t.Fatal(err)
	}
	if !dtc.GetRequireClientCertificate().GetValue() ||
		dtc.GetCommonTlsContext().GetTlsCertificateProviderInstance().GetInstanceName() != "default" ||
		dtc.GetCommonTlsContext().GetCombinedValidationContext().GetDefaultValidationContext().GetCaCertificateProviderInstance().GetCertificateName() != SecretRootCA {
		t.Errorf("TLS context = %v", dtc)
	}
	hcm := &hcmv3.HttpConnectionManager{}
	if err := fc.Filters[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range hcm.HttpFilters {
		names = append(names, f.Name)
	}
	if got, want := strings.Join(names, ","), RBACGRPCDenyFilter+","+RBACHTTPFilter+","+RouterFilter; got != want {
		t.Errorf("HTTP filters = %s, want %s", got, want)
	}
	if hcm.GetRouteConfig().GetVirtualHosts()[0].GetRoutes()[0].GetNonForwardingAction() == nil {
		t.Errorf("server route must be non-forwarding")
	}

	// A port the workload does not serve gets no listener.
	if l := grpcInboundFor(t, ctx, "10.1.0.1", "default", GRPCInboundPrefix+"10.1.0.1:9999"); l != nil {
		t.Errorf("unserved port got a listener")
	}
	// A proxy of another namespace claiming the workload's IP gets nothing.
	if l := grpcInboundFor(t, ctx, "10.1.0.1", "team-b", name); l != nil {
		t.Errorf("a team-b proxy got default's inbound listener")
	}
	if l := grpcInboundFor(t, ctx, "10.1.0.1", "default", GRPCInboundPrefix+"bad"); l != nil {
		t.Errorf("malformed name got a listener")
	}
	if len(ctx.Errors()) != 1 {
		t.Errorf("want the malformed name reported once, got %v", ctx.Errors())
	}
}

// Inbound config goes only to the proxies that may claim the instance: in
// its namespace and, on the secure port, of its service account.
func TestInboundClaims(t *testing.T) {
	snap := meshtest.FromYAML(t, map[string][]byte{"mesh.yaml": []byte(grpcServerMesh)})
	ctx := NewContext(snap, model.DefaultMeshConfig(), NewCache())
	inbound := func(ns, sa string, authenticated bool) []string {
		p := testProxyIP(t, "10.1.0.1", "echo-1", ns, "", map[string]string{"app": "echo"})
		p.Authenticated, p.VerifiedServiceAccount = authenticated, sa
		var out []string
		for _, r := range ctx.Resources(p, ClusterType).Resources {
			if cl, ok := r.Msg.(*clusterv3.Cluster); ok && strings.HasPrefix(cl.Name, "inbound|") {
				out = append(out, cl.Name)
			}
		}
		return out
	}
	if got := inbound("default", "", false); strings.Join(got, ",") != "inbound|17070||,inbound|8080||" {
		t.Errorf("own workload: inbound clusters %v", got)
	}
	if got := inbound("default", "echo", true); len(got) != 2 {
		t.Errorf("authenticated as the endpoint's service account: inbound clusters %v", got)
	}
	if got := inbound("team-b", "", false); len(got) != 0 {
		t.Errorf("a team-b proxy claiming default's IP got %v", got)
	}
	if got := inbound("default", "other", true); len(got) != 0 {
		t.Errorf("a proxy authenticated as another service account got %v", got)
	}
}

// gRPC cannot serve PERMISSIVE on one port: as istiod, plaintext, unless
// the workload is labelled for auto mTLS (clients then use mTLS).
func TestGRPCInboundPermissive(t *testing.T) {
	mesh := strings.Replace(grpcServerMesh, "mtls: {mode: STRICT}", "mtls: {mode: PERMISSIVE}", 1)
	for _, c := range []struct {
		labels string
		want   string
	}{
		{"{app: echo}", "inbound-plaintext"},
		{"{app: echo, security.istio.io/tlsMode: istio}", "inbound-mtls"},
	} {
		in := strings.Replace(mesh, "labels: {app: echo}}", "labels: "+c.labels+"}", 1)
		snap := meshtest.FromYAML(t, map[string][]byte{"mesh.yaml": []byte(in)})
		ctx := NewContext(snap, model.DefaultMeshConfig(), NewCache())
		l := grpcInboundFor(t, ctx, "10.1.0.1", "default", GRPCInboundPrefix+"10.1.0.1:17070")
		if l == nil {
			t.Fatal("no listener")
		}
		fc := l.FilterChains[0]
		if fc.Name != c.want || (fc.TransportSocket != nil) != (c.want == "inbound-mtls") {
			t.Errorf("labels %s: chain %s (TLS %v), want %s", c.labels, fc.Name, fc.TransportSocket != nil, c.want)
		}
	}
}
