package proxy

import (
	"maps"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/sextant-mesh/sextant/model"
)

// fuzzValue turns a fuzzed string into a metadata value of the kind chosen
// by the low bits of sel: a string (the usual case), a number, a bool, a
// list, a struct or null, so Parse meets wrongly typed metadata too.
func fuzzValue(sel uint8, s string) *structpb.Value {
	switch sel % 6 {
	case 1:
		return structpb.NewNumberValue(float64(len(s)))
	case 2:
		return structpb.NewBoolValue(s != "")
	case 3:
		return structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{structpb.NewStringValue(s)}})
	case 4:
		return structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{s: structpb.NewStringValue(s)}})
	case 5:
		return structpb.NewNullValue()
	}
	return structpb.NewStringValue(s)
}

// FuzzParseNode: any node id and metadata either parse into a complete
// Proxy or fail with a message; nothing panics, including what the server
// does next with a parsed proxy (labels key, scope).
func FuzzParseNode(f *testing.F) {
	f.Add("sidecar~10.1.2.3~reviews-v1-abc.default~default.svc.cluster.local", "default", "grpc", "app", "reviews", "10.1.2.3,fd00::3", "Kubernetes", "r/z", uint16(0))
	f.Add("router~~gw.istio-system~istio-system.svc.cluster.local", "", "", "", "", "", "", "", uint16(0xffff))
	f.Add("sidecar~not-an-ip~p.ns~ns.svc", "", "envoy", "k", "", " , ,", "", "", uint16(0x1234))
	f.Add("sidecar~1.2.3.4~~", "", "event", "", "", "", "", "///", uint16(1))
	f.Add("~~~", "ns", "weird", "", "", "", "", "", uint16(0))
	snap, _ := model.NewAggregator().Build()
	f.Fuzz(func(t *testing.T, id, ns, generator, labelKey, labelValue, ips, clusterID, locality string, kinds uint16) {
		md := &structpb.Struct{Fields: map[string]*structpb.Value{}}
		set := func(bit int, key, s string) {
			if kinds&(1<<bit) == 0 || s != "" {
				md.Fields[key] = fuzzValue(uint8(kinds>>(bit+8)), s)
			}
		}
		set(0, "NAMESPACE", ns)
		set(1, "GENERATOR", generator)
		set(2, "INSTANCE_IPS", ips)
		set(3, "CLUSTER_ID", clusterID)
		set(4, "INTERCEPTION_MODE", labelValue)
		if kinds&(1<<5) != 0 {
			md.Fields["PROXY_CONFIG"] = structpb.NewStructValue(&structpb.Struct{})
		}
		if kinds&(1<<6) != 0 {
			md.Fields["LABELS"] = fuzzValue(uint8(kinds>>12), labelKey)
		} else {
			md.Fields["LABELS"] = structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{
				labelKey: fuzzValue(uint8(kinds>>13), labelValue),
			}})
		}
		node := &corev3.Node{Id: id}
		if kinds&(1<<7) == 0 {
			node.Metadata = md
		}
		if locality != "" {
			region, rest, _ := strings.Cut(locality, "/")
			zone, sub, _ := strings.Cut(rest, "/")
			node.Locality = &corev3.Locality{Region: region, Zone: zone, SubZone: sub}
		}

		p, err := Parse(node)
		if err != nil {
			if p != nil {
				t.Errorf("Parse returned a proxy and error %v", err)
			}
			if strings.TrimSpace(err.Error()) == "" {
				t.Error("Parse failed with an empty message")
			}
			return
		}
		if p == nil {
			t.Fatal("Parse returned neither proxy nor error")
		}
		if p.ID != id || p.Name == "" || p.Namespace == "" || p.Labels == nil {
			t.Errorf("incomplete proxy %+v", p)
		}
		switch p.Type {
		case Sidecar, Router:
		default:
			t.Errorf("proxy type %q accepted", p.Type)
		}
		switch p.Generator {
		case GenEnvoy, GenGRPC, GenEvent:
		default:
			t.Errorf("generator %q accepted", p.Generator)
		}
		for _, ip := range p.IPs {
			if ip == "" || strings.TrimSpace(ip) != ip {
				t.Errorf("IP %q not trimmed", ip)
			}
		}
		if p.Locality == "//" {
			t.Error("an empty locality should be reported as empty")
		}
		// Map order must not show through the key.
		q := *p
		q.Labels = maps.Clone(p.Labels)
		if q.LabelsKey() != p.LabelsKey() {
			t.Error("LabelsKey is not deterministic")
		}
		for _, labelsMatter := range []bool{false, true} {
			if s := ScopeFor(p, snap, labelsMatter); s.Namespace != p.Namespace || s.Generator != p.Generator {
				t.Errorf("scope %+v does not match proxy %+v", s, p)
			}
		}
	})
}
