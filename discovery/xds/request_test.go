package xds

import (
	"hash/maphash"
	"reflect"
	"strconv"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// TestDecodeSotwRequest: the allocation-free decoder reads what proto
// decoding reads.
func TestDecodeSotwRequest(t *testing.T) {
	md, _ := structpb.NewStruct(map[string]any{"NAMESPACE": "default", "LABELS": map[string]any{"app": "a"}})
	for _, m := range []*discoverygrpc.DiscoveryRequest{
		{},
		{TypeUrl: "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment", VersionInfo: "v1", ResponseNonce: "n-1",
			ResourceNames: []string{"outbound|80||a.default.svc.cluster.local", "outbound|80||b.default.svc.cluster.local"}},
		{Node: &corev3.Node{Id: "sidecar~10.0.0.1~a.default~default.svc.cluster.local", Cluster: "a", Metadata: md},
			TypeUrl: "t", ErrorDetail: &statuspb.Status{Code: 3, Message: "rejected: ünïcode"}},
		{TypeUrl: "t", ResourceLocators: []*discoverygrpc.ResourceLocator{{Name: "xdstp://x"}}},
	} {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeSotwRequest(b)
		if err != nil {
			t.Fatalf("%v: %v", m, err)
		}
		want := sotwRequest(m)
		var in interner
		got.sotwNames(&in)
		got.raw, got.rawNames = nil, 0
		if !proto.Equal(got.node, want.node) {
			t.Errorf("node: got %v, want %v", got.node, want.node)
		}
		got.node, want.node = nil, nil
		if len(want.names) == 0 {
			want.names = nil
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("got %+v, want %+v", got, want)
		}
	}
	for _, bad := range [][]byte{{0x1a, 0x05, 'a'}, {0x1a, 0x01, 0xff}, {0xff}} {
		if _, err := decodeSotwRequest(bad); err == nil {
			t.Errorf("%x: decoded without error", bad)
		}
	}
}

func TestSameSubscription(t *testing.T) {
	seed := maphash.MakeSeed()
	w := &watch{}
	w.names.add([]string{"a", "b"})
	for _, tc := range []struct {
		names []string
		same  bool
	}{{[]string{"b", "a"}, true}, {[]string{"b", "a"}, true}, {[]string{"a"}, false}, {[]string{"a", "c"}, false}, {[]string{"a", "b", "c"}, false}, {[]string{"a", "b"}, true}} {
		b, _ := proto.Marshal(&discoverygrpc.DiscoveryRequest{ResourceNames: tc.names})
		r, err := decodeSotwRequest(b)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.sameSubscription(w, seed); got != tc.same {
			t.Errorf("%v: same = %v, want %v", tc.names, got, tc.same)
		}
	}
}

// BenchmarkSotwACK: decoding and applying an ACK that repeats a 1,000-name
// subscription.
func BenchmarkSotwACK(b *testing.B) {
	names := make([]string, 1000)
	w := &watch{}
	for i := range names {
		names[i] = "outbound|80||svc-" + strconv.Itoa(i) + ".ns.svc.cluster.local"
	}
	w.names.add(names)
	msg, _ := proto.Marshal(&discoverygrpc.DiscoveryRequest{TypeUrl: "t", VersionInfo: "v", ResponseNonce: "n", ResourceNames: names})
	seed := maphash.MakeSeed()
	b.Run("lean", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r, err := decodeSotwRequest(msg)
			if err != nil || !r.sameSubscription(w, seed) {
				b.Fatal(err)
			}
		}
	})
	b.Run("proto", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var m discoverygrpc.DiscoveryRequest
			if err := proto.Unmarshal(msg, &m); err != nil {
				b.Fatal(err)
			}
			r := sotwRequest(&m)
			want := make(map[string]bool, len(r.names))
			for _, n := range r.names {
				want[n] = true
			}
		}
	})
}
