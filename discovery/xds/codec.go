package xds

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // registers the proto codec wrapped below
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/sextant-mesh/sextant/discovery/translate"
)

// Responses are assembled from pre-encoded parts: every resource is
// marshalled once (translate.Cache) and its wire form is shared by every
// response that carries it, so a push to N proxies never re-marshals or
// copies resources N times. Only the few header fields (version, type,
// nonce) are encoded per response.

// encoded is a DiscoveryResponse or DeltaDiscoveryResponse in wire form.
// parts are the header and the shared resource entries, in order.
type encoded struct{ parts [][]byte }

// codec passes encoded messages through and marshals everything else with
// gRPC's proto codec.
type codec struct{ base encoding.CodecV2 }

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	if e, ok := v.(*encoded); ok {
		bufs := make(mem.BufferSlice, len(e.parts))
		for i, p := range e.parts {
			bufs[i] = mem.SliceBuffer(p)
		}
		return bufs, nil
	}
	return c.base.Marshal(v)
}

func (c codec) Unmarshal(data mem.BufferSlice, v any) error { return c.base.Unmarshal(data, v) }

func (c codec) Name() string { return c.base.Name() }

// CodecOption installs the codec on a gRPC server serving xDS.
func CodecOption() grpc.ServerOption {
	return grpc.ForceServerCodecV2(codec{base: encoding.GetCodecV2("proto")})
}

// Field numbers of DiscoveryResponse and DeltaDiscoveryResponse.
const (
	sotwVersionInfo = 1
	sotwTypeURL     = 4
	sotwNonce       = 5

	deltaSystemVersion = 1
	deltaTypeURL       = 4
	deltaRemoved       = 6
	deltaNonce         = 5
)

func appendStringField(b []byte, n protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, n, protowire.BytesType)
	return protowire.AppendString(b, s)
}

// encodeSotw assembles a DiscoveryResponse.
func encodeSotw(version, typeURL, nonce string, rs []*translate.Resource) *encoded {
	var h []byte
	h = appendStringField(h, sotwVersionInfo, version)
	h = appendStringField(h, sotwTypeURL, typeURL)
	h = appendStringField(h, sotwNonce, nonce)
	parts := make([][]byte, 0, len(rs)+1)
	parts = append(parts, h)
	for _, r := range rs {
		parts = append(parts, r.SotWEntry())
	}
	return &encoded{parts: parts}
}

// encodeDelta assembles a DeltaDiscoveryResponse.
func encodeDelta(version, typeURL, nonce string, rs []*translate.Resource, removed []string) *encoded {
	var h []byte
	h = appendStringField(h, deltaSystemVersion, version)
	h = appendStringField(h, deltaTypeURL, typeURL)
	h = appendStringField(h, deltaNonce, nonce)
	for _, n := range removed {
		h = protowire.AppendTag(h, deltaRemoved, protowire.BytesType)
		h = protowire.AppendString(h, n)
	}
	parts := make([][]byte, 0, len(rs)+1)
	parts = append(parts, h)
	for _, r := range rs {
		parts = append(parts, r.DeltaEntry())
	}
	return &encoded{parts: parts}
}
