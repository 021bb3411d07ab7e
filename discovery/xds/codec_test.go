package xds

import (
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/encoding"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/sextant-mesh/sextant/discovery/translate"
	"github.com/sextant-mesh/sextant/internal/meshtest"
	"github.com/sextant-mesh/sextant/model"
)

// Pre-encoded responses must decode to exactly the message a plain
// proto.Marshal of the same content gives.
func TestEncodedResponsesDecode(t *testing.T) {
	snap := meshtest.FromYAML(t, map[string][]byte{"m.yaml": []byte(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: a, namespace: default}
spec:
  hosts: [a.default.svc.cluster.local]
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}, {number: 81, name: tcp, protocol: TCP}]
  endpoints: [{address: 10.0.0.1}]
`)})
	tctx := translate.NewContext(snap, model.DefaultMeshConfig(), translate.NewCache())
	p := testProxy(t)
	rs := tctx.Resources(p, translate.ClusterType).Resources
	if len(rs) < 2 {
		t.Fatalf("want clusters, got %d", len(rs))
	}
	// Through the gRPC codec, as grpc-go sends it (grpclite sends the
	// parts as they are).
	flat := func(e *encoded) []byte {
		bufs, err := codec{base: encoding.GetCodecV2("proto")}.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		return bufs.Materialize()
	}
	var sotw discoverygrpc.DiscoveryResponse
	if err := proto.Unmarshal(flat(encodeSotw("v1", translate.ClusterType, "n1", rs)), &sotw); err != nil {
		t.Fatal(err)
	}
	want := &discoverygrpc.DiscoveryResponse{VersionInfo: "v1", TypeUrl: translate.ClusterType, Nonce: "n1"}
	for _, r := range rs {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r.Msg)
		if err != nil {
			t.Fatal(err)
		}
		want.Resources = append(want.Resources, &anypb.Any{TypeUrl: translate.ClusterType, Value: b})
	}
	if !proto.Equal(&sotw, want) {
		t.Errorf("SotW response decodes to\n%v\nwant\n%v", &sotw, want)
	}
	var delta discoverygrpc.DeltaDiscoveryResponse
	if err := proto.Unmarshal(flat(encodeDelta("v2", translate.ClusterType, "n2", rs, []string{"gone"})), &delta); err != nil {
		t.Fatal(err)
	}
	wantDelta := &discoverygrpc.DeltaDiscoveryResponse{SystemVersionInfo: "v2", TypeUrl: translate.ClusterType, Nonce: "n2", RemovedResources: []string{"gone"}}
	for i, r := range rs {
		wantDelta.Resources = append(wantDelta.Resources, &discoverygrpc.Resource{Name: r.Name, Version: r.Version, Resource: want.Resources[i]})
	}
	if !proto.Equal(&delta, wantDelta) {
		t.Errorf("delta response decodes to\n%v\nwant\n%v", &delta, wantDelta)
	}
	var cl clusterv3.Cluster
	if err := rs[0].Any.UnmarshalTo(&cl); err != nil || cl.GetName() != rs[0].Name {
		t.Errorf("Any.Value does not alias the encoded cluster: %v %q", err, cl.GetName())
	}
}
