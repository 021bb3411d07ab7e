package xds

import (
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/sextant-mesh/sextant/discovery/proxy"
)

func testProxy(t testing.TB) *proxy.Proxy {
	t.Helper()
	md, _ := structpb.NewStruct(map[string]any{"NAMESPACE": "default"})
	p, err := proxy.Parse(&corev3.Node{Id: "sidecar~10.0.0.9~test.default~default.svc.cluster.local", Metadata: md})
	if err != nil {
		t.Fatal(err)
	}
	return p
}
