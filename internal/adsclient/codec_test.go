package adsclient

import (
	"testing"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// The light codec must read the fields a simulated proxy uses exactly as
// a full decode does, and decode CDS/LDS fully.
func TestLightCodec(t *testing.T) {
	c := lightCodec{base: encoding.GetCodecV2("proto")}
	any1 := &anypb.Any{TypeUrl: resourcev3.EndpointType, Value: []byte{1, 2, 3}}
	sotw := &discoverygrpc.DiscoveryResponse{VersionInfo: "v7", TypeUrl: resourcev3.EndpointType, Nonce: "n9", Resources: []*anypb.Any{any1, any1}}
	b, _ := proto.Marshal(sotw)
	var got discoverygrpc.DiscoveryResponse
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, &got); err != nil {
		t.Fatal(err)
	}
	if got.VersionInfo != "v7" || got.Nonce != "n9" || got.TypeUrl != resourcev3.EndpointType || len(got.Resources) != 2 {
		t.Errorf("light SotW decode: %v", &got)
	}
	delta := &discoverygrpc.DeltaDiscoveryResponse{SystemVersionInfo: "s1", TypeUrl: resourcev3.RouteType, Nonce: "n2",
		Resources:        []*discoverygrpc.Resource{{Name: "r1", Version: "a"}, {Name: "r2", Version: "b", Resource: any1}},
		RemovedResources: []string{"gone"}}
	b, _ = proto.Marshal(delta)
	var gd discoverygrpc.DeltaDiscoveryResponse
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, &gd); err != nil {
		t.Fatal(err)
	}
	if gd.Nonce != "n2" || gd.SystemVersionInfo != "s1" || len(gd.Resources) != 2 || gd.Resources[1].Name != "r2" ||
		gd.Resources[1].Version != "b" || len(gd.RemovedResources) != 1 || gd.RemovedResources[0] != "gone" {
		t.Errorf("light delta decode: %v", &gd)
	}
	cds := &discoverygrpc.DiscoveryResponse{TypeUrl: resourcev3.ClusterType, Nonce: "n", Resources: []*anypb.Any{any1}}
	b, _ = proto.Marshal(cds)
	var gc discoverygrpc.DiscoveryResponse
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, &gc); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(&gc, cds) {
		t.Errorf("CDS must decode fully: %v", &gc)
	}
}
