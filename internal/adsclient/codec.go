package adsclient

import (
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // the codec wrapped below
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/anypb"
)

// LightCodec is a dial option for load tests: EDS and RDS responses are
// decoded only as far as a proxy simulator needs (type, version, nonce,
// resource names and versions), not into resource messages, so thousands
// of simulated proxies in one process do not out-eat the server they
// measure. CDS and LDS are decoded fully (clients follow them to EDS/RDS).
func LightCodec() grpc.DialOption {
	return grpc.WithDefaultCallOptions(grpc.ForceCodecV2(lightCodec{base: encoding.GetCodecV2("proto")}))
}

type lightCodec struct{ base encoding.CodecV2 }

func (c lightCodec) Marshal(v any) (mem.BufferSlice, error) { return c.base.Marshal(v) }
func (c lightCodec) Name() string                           { return c.base.Name() }

func (c lightCodec) Unmarshal(data mem.BufferSlice, v any) error {
	switch v.(type) {
	case *discoverygrpc.DiscoveryResponse, *discoverygrpc.DeltaDiscoveryResponse:
	default:
		return c.base.Unmarshal(data, v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	b := buf.ReadOnlyData()
	typeURL := scanString(b, 4)
	if typeURL != resourcev3.EndpointType && typeURL != resourcev3.RouteType {
		return c.base.Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, v)
	}
	switch m := v.(type) {
	case *discoverygrpc.DiscoveryResponse:
		m.TypeUrl = typeURL
		m.VersionInfo = scanString(b, 1)
		m.Nonce = scanString(b, 5)
		for range countField(b, 2) {
			m.Resources = append(m.Resources, &anypb.Any{TypeUrl: typeURL})
		}
	case *discoverygrpc.DeltaDiscoveryResponse:
		m.TypeUrl = typeURL
		m.SystemVersionInfo = scanString(b, 1)
		m.Nonce = scanString(b, 5)
		walk(b, func(num protowire.Number, val []byte) {
			switch num {
			case 2:
				m.Resources = append(m.Resources, &discoverygrpc.Resource{Name: scanString(val, 3), Version: scanString(val, 1)})
			case 6:
				m.RemovedResources = append(m.RemovedResources, string(val))
			}
		})
	}
	return nil
}

// walk calls fn for every length-delimited field of a message.
func walk(b []byte, fn func(protowire.Number, []byte)) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return
		}
		b = b[n:]
		if typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return
			}
			b = b[n:]
			continue
		}
		val, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return
		}
		fn(num, val)
		b = b[n:]
	}
}

func scanString(b []byte, field protowire.Number) string {
	var out string
	walk(b, func(num protowire.Number, val []byte) {
		if num == field {
			out = string(val)
		}
	})
	return out
}

func countField(b []byte, field protowire.Number) int {
	n := 0
	walk(b, func(num protowire.Number, _ []byte) {
		if num == field {
			n++
		}
	})
	return n
}
