package xds_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // the codec wrapped by rawCodec
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/sextant-mesh/sextant/discovery/proxy"
	"github.com/sextant-mesh/sextant/discovery/translate"
	"github.com/sextant-mesh/sextant/discovery/xds"
	"github.com/sextant-mesh/sextant/internal/testenv"
)

// fuzzMesh: reviews (two subsets) and ratings (HTTP and gRPC ports).
const fuzzMesh = testenv.ReviewsYAML + "---\n" + testenv.RatingsYAML

// Vocabulary the fuzzer picks from (by index) besides raw strings, so it
// reaches real resources quickly.
var (
	fuzzTypes = []string{
		translate.ClusterType, translate.EndpointType, translate.ListenerType, translate.RouteType,
		translate.SecretType, xds.DebugSyncz, xds.DebugConfigDump, "", "type.googleapis.com/unknown.Type",
	}
	fuzzNames = []string{
		"*", "", "outbound|9080||reviews.default.svc.cluster.local", "outbound|9080|v1|reviews.default.svc.cluster.local",
		"outbound|9090|v2|reviews.default.svc.cluster.local", "reviews.default.svc.cluster.local:9080",
		"reviews.default.svc.cluster.local:9090", "9080", "virtualOutbound", "0.0.0.0_9080", "fuzz-0.default",
	}
)

// rawCodec lets the client send pre-encoded (possibly invalid) messages.
type rawCodec struct{ base encoding.CodecV2 }

type rawMsg []byte

func (c rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	if r, ok := v.(rawMsg); ok {
		return mem.BufferSlice{mem.SliceBuffer(r)}, nil
	}
	return c.base.Marshal(v)
}

func (c rawCodec) Unmarshal(data mem.BufferSlice, v any) error { return c.base.Unmarshal(data, v) }

func (c rawCodec) Name() string { return c.base.Name() }

// script reads a fuzz input as a sequence of choices; past its end every
// choice is 0.
type script struct{ data []byte }

func (s *script) done() bool { return len(s.data) == 0 }

func (s *script) byte() byte {
	if len(s.data) == 0 {
		return 0
	}
	b := s.data[0]
	s.data = s.data[1:]
	return b
}

// bytes returns up to 31 raw bytes.
func (s *script) bytes() []byte {
	n := min(int(s.byte()%32), len(s.data))
	b := s.data[:n]
	s.data = s.data[n:]
	return b
}

// str returns a valid UTF-8 string (gRPC clients cannot send others; raw
// ops cover invalid encodings).
func (s *script) str() string { return strings.ToValidUTF8(string(s.bytes()), "?") }

// pick returns a vocabulary entry or, for the last choice, a raw string.
func (s *script) pick(list []string) string {
	i := int(s.byte()) % (len(list) + 1)
	if i == len(list) {
		return s.str()
	}
	return list[i]
}

func (s *script) names() []string {
	out := make([]string, int(s.byte()%4))
	for i := range out {
		out[i] = s.pick(fuzzNames)
	}
	return out
}

func fuzzNode(s *script) *corev3.Node {
	md, _ := structpb.NewStruct(map[string]any{
		"NAMESPACE": "default", "ISTIO_VERSION": "1.32.0", "CLUSTER_ID": "Kubernetes",
		"PROXY_CONFIG": map[string]any{}, "LABELS": map[string]any{"app": "fuzz"},
	})
	switch s.byte() % 5 {
	case 0:
		md.Fields["GENERATOR"] = structpb.NewStringValue("grpc")
		return &corev3.Node{Id: "sidecar~10.0.0.1~fuzz-0.default~default.svc.cluster.local", Metadata: md}
	case 1:
		return &corev3.Node{Id: "sidecar~10.0.0.2~fuzz-1.default~default.svc.cluster.local", Metadata: md}
	case 2:
		md.Fields["GENERATOR"] = structpb.NewStringValue(s.str())
		return &corev3.Node{Id: s.str(), Metadata: md}
	case 3:
		return &corev3.Node{Id: "sidecar~" + s.str() + "~" + s.str() + "~" + s.str()}
	}
	return nil
}

// response is what the fuzz client needs from a SotW or delta response.
type response struct {
	typeURL, nonce, version string
}

// fuzzStream drives one ADS stream, SotW or delta, from a script.
type fuzzStream struct {
	t     *testing.T
	delta bool
	sotw  discoverygrpc.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	dstr  discoverygrpc.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
	resps chan response
	errc  chan error
	// last response seen per type, and overall.
	last map[string]response
	// lastAny is the last xDS (not debug) response.
	lastAny response
	closed  error
	// seen counts responses by type URL, for the log.
	seen map[string]int
	// raw is set once the script sent an undecodable message, after which
	// the server may close the stream with Internal.
	raw bool
}

func (f *fuzzStream) recvLoop() {
	for {
		var r response
		if f.delta {
			m, err := f.dstr.Recv()
			if err != nil {
				f.errc <- err
				return
			}
			r = response{typeURL: m.GetTypeUrl(), nonce: m.GetNonce(), version: m.GetSystemVersionInfo()}
		} else {
			m, err := f.sotw.Recv()
			if err != nil {
				f.errc <- err
				return
			}
			r = response{typeURL: m.GetTypeUrl(), nonce: m.GetNonce(), version: m.GetVersionInfo()}
		}
		f.resps <- r
	}
}

func (f *fuzzStream) send(m proto.Message) {
	var err error
	if f.delta {
		err = f.dstr.SendMsg(m)
	} else {
		err = f.sotw.SendMsg(m)
	}
	f.afterSend(err)
}

func (f *fuzzStream) sendRaw(b []byte) {
	f.raw = true
	var err error
	if f.delta {
		err = f.dstr.SendMsg(rawMsg(b))
	} else {
		err = f.sotw.SendMsg(rawMsg(b))
	}
	f.afterSend(err)
}

// afterSend: io.EOF means the server ended the stream; Recv has its status.
func (f *fuzzStream) afterSend(err error) {
	if err != nil && !errors.Is(err, io.EOF) {
		f.t.Fatalf("send: %v", err)
	}
}

// sync sends a debug request, which the server answers on any open stream
// after handling everything sent before it, and collects every response up
// to its answer. It reports whether the stream is still open.
func (f *fuzzStream) sync(node *corev3.Node) bool {
	if f.closed != nil {
		return false
	}
	if f.delta {
		f.send(&discoverygrpc.DeltaDiscoveryRequest{TypeUrl: xds.DebugSyncz, Node: node})
	} else {
		f.send(&discoverygrpc.DiscoveryRequest{TypeUrl: xds.DebugSyncz, Node: node})
	}
	// Longer than the server's admission wait (10s by default).
	timeout := time.NewTimer(20 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case r := <-f.resps:
			f.last[r.typeURL] = r
			if !strings.HasPrefix(r.typeURL, "istio.io/debug") {
				f.lastAny = r
			}
			f.seen[r.typeURL]++
			if r.typeURL == xds.DebugSyncz {
				return true
			}
		case err := <-f.errc:
			f.closed = err
			return false
		case <-timeout.C:
			f.t.Fatal("the stream neither answered a debug request nor closed within 20s")
		}
	}
}

// checkClosed asserts that a stream the server ended carries a status that
// says why.
func (f *fuzzStream) checkClosed(nodeOK bool) {
	st, ok := status.FromError(f.closed)
	if !ok {
		f.t.Fatalf("stream ended without a gRPC status: %v", f.closed)
	}
	switch st.Code() {
	case codes.InvalidArgument:
		if st.Message() == "" {
			f.t.Error("InvalidArgument without a message")
		}
	case codes.ResourceExhausted:
		// Admission control; a legitimate answer, if unexpected here.
	case codes.Internal:
		if !f.raw || !strings.Contains(st.Message(), "unmarshal") {
			f.t.Errorf("stream closed with Internal: %v", st.Message())
		}
	default:
		f.t.Errorf("stream closed with %v: %s", st.Code(), st.Message())
	}
	if !nodeOK && st.Code() != codes.InvalidArgument && !f.raw {
		f.t.Errorf("bad node refused with %v, want InvalidArgument", st.Code())
	}
}

// request sends one request; node is the stream's node on its first
// request and nil after.
func (f *fuzzStream) request(s *script, node *corev3.Node, first bool) {
	typeURL := s.pick(fuzzTypes)
	var nonce, version string
	switch s.byte() % 4 {
	case 1:
		nonce = f.last[typeURL].nonce
	case 2:
		nonce = f.lastAny.nonce
	case 3:
		nonce = s.str()
	}
	switch s.byte() % 3 {
	case 1:
		version = f.last[typeURL].version
	case 2:
		version = s.str()
	}
	var errDetail *rpcstatus.Status
	switch s.byte() % 4 {
	case 2:
		// A node on a later request, which the server ignores.
		if later := fuzzNode(s); !first {
			node = later
		}
	case 3:
		errDetail = &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: s.str()}
	}
	if f.delta {
		req := &discoverygrpc.DeltaDiscoveryRequest{
			TypeUrl: typeURL, Node: node, ResponseNonce: nonce, ErrorDetail: errDetail,
			ResourceNamesSubscribe: s.names(), ResourceNamesUnsubscribe: s.names(),
		}
		if n := s.byte() % 3; n > 0 {
			req.InitialResourceVersions = map[string]string{}
			for range n {
				req.InitialResourceVersions[s.pick(fuzzNames)] = version
			}
		}
		f.send(req)
		return
	}
	f.send(&discoverygrpc.DiscoveryRequest{
		TypeUrl: typeURL, Node: node, ResponseNonce: nonce, VersionInfo: version,
		ResourceNames: s.names(), ErrorDetail: errDetail,
	})
}

// ack acknowledges (or NACKs) the last xDS response, as a client does
// once it has read it: responses not read yet are read first (sync).
func (f *fuzzStream) ack(s *script) {
	nack := s.byte()%2 == 1
	names := s.names()
	if f.closed != nil || !f.sync(nil) || f.lastAny.typeURL == "" {
		return
	}
	r := f.lastAny
	var errDetail *rpcstatus.Status
	if nack {
		errDetail = &rpcstatus.Status{Message: "rejected by fuzz"}
	}
	if f.delta {
		f.send(&discoverygrpc.DeltaDiscoveryRequest{TypeUrl: r.typeURL, ResponseNonce: r.nonce, ErrorDetail: errDetail})
		return
	}
	f.send(&discoverygrpc.DiscoveryRequest{TypeUrl: r.typeURL, ResponseNonce: r.nonce, VersionInfo: r.version,
		ResourceNames: names, ErrorDetail: errDetail})
}

// runScript plays one fuzz input against the server on cc.
func runScript(t *testing.T, cc *grpc.ClientConn, data []byte) {
	s := &script{data: data}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := &fuzzStream{t: t, delta: s.byte()%2 == 1, resps: make(chan response, 64), errc: make(chan error, 1),
		last: map[string]response{}, seen: map[string]int{}}
	ads := discoverygrpc.NewAggregatedDiscoveryServiceClient(cc)
	var err error
	if f.delta {
		f.dstr, err = ads.DeltaAggregatedResources(ctx)
	} else {
		f.sotw, err = ads.StreamAggregatedResources(ctx)
	}
	if err != nil {
		t.Fatalf("open stream: %v", err)
	}
	go f.recvLoop()

	node := fuzzNode(s)
	_, perr := proxy.Parse(node)
	nodeOK := perr == nil
	first := true
	firstNode := func() *corev3.Node {
		if first {
			first = false
			return node
		}
		return nil
	}
	for ops := 0; !s.done() && ops < 32 && f.closed == nil; ops++ {
		switch s.byte() % 8 {
		case 0, 1, 2, 3:
			isFirst := first
			f.request(s, firstNode(), isFirst)
		case 4, 5:
			if first {
				s.byte() // nothing to acknowledge before the first request
				s.names()
				continue
			}
			f.ack(s)
		case 6:
			f.sync(firstNode())
		case 7:
			// An arbitrary, probably undecodable, message. As the first
			// message it stands in for the node.
			if first {
				first, nodeOK = false, false
			}
			f.sendRaw(s.bytes())
		}
	}
	open := f.sync(firstNode())
	t.Logf("delta=%v node ok=%v responses=%v closed=%v", f.delta, nodeOK, f.seen, f.closed)
	if open {
		if !nodeOK {
			t.Fatalf("a stream whose node does not parse (%v) was served", perr)
		}
		return
	}
	f.checkClosed(nodeOK)
}

// FuzzRequests drives the ADS server (SotW and delta) with arbitrary
// request sequences: type URLs, resource names, nonces, versions, error
// details, node ids and undecodable messages. The server must never crash,
// and every stream must either keep answering (a debug request is answered
// after everything sent before it) or end with a gRPC status that says why.
// One server serves every input.
func FuzzRequests(f *testing.F) {
	dir := f.TempDir()
	testenv.WriteFile(f, filepath.Join(dir, "mesh.yaml"), fuzzMesh)
	// Fuzzing opens streams far faster than the default admission rate;
	// the limiter is not what is under test.
	env := testenv.Start(f, dir, testenv.Options{Server: func(o *xds.Options) { o.NewStreamsPerSecond = 1 << 20 }})
	cc, err := grpc.NewClient(env.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{base: encoding.GetCodecV2("proto")})))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { cc.Close() })
	// Seeds (see runScript for the encoding): byte 0 picks SotW (0) or
	// delta (1), then the node, then ops: 0-3 request (type, nonce,
	// version, flags, names...), 4-5 ACK/NACK, 6 sync, 7 raw message.
	for _, seed := range [][]byte{
		// SotW: CDS, ACK, LDS, ACK, sync, RDS and EDS by name, sync, NACK.
		{0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 2, 0, 0, 0, 0, 4, 0, 0, 6,
			0, 3, 0, 0, 0, 1, 5, 0, 1, 0, 0, 0, 2, 2, 3, 6, 4, 1, 1, 2, 6},
		// Delta, Envoy node: CDS, ACK, EDS subscribe, sync, unsubscribe.
		{1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0, 2, 2, 3, 0, 0, 6,
			0, 1, 1, 0, 0, 0, 1, 2, 0, 6},
		// No node.
		{0, 4, 6},
		// A fuzzed node id and generator.
		{0, 2, 3, 'a', 'b', 'c', 3, 'x', 'y', 'z', 6},
		// Garbage after a request.
		{0, 0, 0, 0, 0, 0, 0, 0, 7, 5, 0xff, 0xfe, 1, 2, 3},
		// Delta with initial versions.
		{1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 3, 6},
		// An empty type URL.
		{0, 0, 0, 7, 0, 0, 0, 0, 6},
		// Debug config_dump of a proxy by name.
		{0, 0, 0, 6, 0, 0, 0, 1, 10, 6},
		// CDS, then CDS again with a stale nonce.
		{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 3, 'n', 'o', 'n', 0, 0, 0, 6},
		// An unknown type as a wildcard, then SDS by name.
		{0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 4, 0, 0, 0, 1, 2, 6},
		// A NACK as the first request of a type.
		{1, 1, 0, 2, 0, 0, 3, 2, 'n', 'o', 0, 0, 0, 6},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		runScript(t, cc, data)
		// Closed streams must leave the server: a leak would grow without
		// bound over a fuzz run.
		if n := len(env.Server.Connections()); n > 64 {
			testenv.Eventually(t, 5*time.Second, func() string {
				if n := len(env.Server.Connections()); n > 64 {
					return fmt.Sprintf("%d connections still registered", n)
				}
				return ""
			})
		}
	})
}
