package transport

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/protobuf/proto"

	"github.com/sextant-mesh/sextant/internal/adsclient"
)

// rawConn is an attacker: HTTP/2 written frame by frame with x/net's
// Framer and HPACK encoder, whatever the protocol says.
type rawConn struct {
	nc    net.Conn
	fr    *http2.Framer
	start time.Time
	out   *outcome
}

// dialRaw connects and sends the client preface and an empty SETTINGS.
func dialRaw(t testing.TB, addr string) *rawConn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	r := &rawConn{nc: nc, fr: http2.NewFramer(nc, nc), start: time.Now(), out: &outcome{rst: map[http2.ErrCode]int{}, status: map[string]int{}}}
	r.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	r.fr.MaxHeaderListSize = 1 << 20
	_ = nc.SetWriteDeadline(time.Now().Add(20 * time.Second))
	_, _ = nc.Write([]byte(http2.ClientPreface))
	_ = r.fr.WriteSettings()
	return r
}

// settingsRaw writes a SETTINGS frame without validating its values.
func (r *rawConn) settingsRaw(ss ...http2.Setting) error {
	var p []byte
	for _, s := range ss {
		p = binary.BigEndian.AppendUint16(p, uint16(s.ID))
		p = binary.BigEndian.AppendUint32(p, s.Val)
	}
	return r.fr.WriteRawFrame(http2.FrameSettings, 0, 0, p)
}

// requestBlock is an ADS request's header block.
func requestBlock(extra ...hpack.HeaderField) []byte {
	var b bytes.Buffer
	enc := hpack.NewEncoder(&b)
	for _, hf := range append([]hpack.HeaderField{{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"},
		{Name: ":path", Value: methodSotw}, {Name: ":authority", Value: "sextant"},
		{Name: "content-type", Value: "application/grpc"}, {Name: "te", Value: "trailers"}}, extra...) {
		_ = enc.WriteField(hf)
	}
	return b.Bytes()
}

func (r *rawConn) open(id uint32, end bool) error {
	return r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: requestBlock(), EndHeaders: true, EndStream: end})
}

// adsRequest is a valid first request (CDS), gRPC-framed.
func adsRequest() []byte {
	b, _ := proto.Marshal(&discoveryv3.DiscoveryRequest{Node: adsclient.Node("10.8.0.1", "attacker", "default", "", nil),
		TypeUrl: resourcev3.ClusterType})
	return append(prefix(uint32(len(b))), b...)
}

func prefix(n uint32) []byte { return binary.BigEndian.AppendUint32([]byte{0}, n) }

// outcome is what the attacker's connection saw from the server.
type outcome struct {
	mu       sync.Mutex
	goAway   *http2.ErrCode
	goAwayAt time.Duration
	rst      map[http2.ErrCode]int
	rstAt    time.Duration
	status   map[string]int
	settings bool
	closed   bool
	closedAt time.Duration
	done     chan struct{}
}

// read collects frames until the connection ends.
func (r *rawConn) read() {
	o := r.out
	o.done = make(chan struct{})
	go func() {
		defer close(o.done)
		for {
			f, err := r.fr.ReadFrame()
			o.mu.Lock()
			if err != nil {
				if _, ok := err.(http2.StreamError); ok {
					o.mu.Unlock()
					continue
				}
				o.closed, o.closedAt = true, time.Since(r.start)
				o.mu.Unlock()
				return
			}
			switch f := f.(type) {
			case *http2.SettingsFrame:
				o.settings = true
			case *http2.GoAwayFrame:
				if o.goAway == nil {
					code := f.ErrCode
					o.goAway, o.goAwayAt = &code, time.Since(r.start)
				}
			case *http2.RSTStreamFrame:
				if len(o.rst) == 0 {
					o.rstAt = time.Since(r.start)
				}
				o.rst[f.ErrCode]++
			case *http2.MetaHeadersFrame:
				if s := f.PseudoValue("status"); s != "" && s != "200" {
					o.status["HTTP "+s]++
				}
				for _, hf := range f.RegularFields() {
					if hf.Name == "grpc-status" && hf.Value != "0" {
						o.status["grpc-status "+hf.Value]++
					}
				}
			}
			o.mu.Unlock()
		}
	}()
}

// wait waits up to d for the connection to end.
func (r *rawConn) wait(d time.Duration) {
	select {
	case <-r.out.done:
	case <-time.After(d):
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%d ms", d.Milliseconds()) }

// String is the ending as docs/transport.md tabulates it.
func (o *outcome) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var parts []string
	if o.goAway != nil {
		parts = append(parts, fmt.Sprintf("GOAWAY %v in %s", *o.goAway, ms(o.goAwayAt)))
	}
	if len(o.rst) > 0 {
		var codes []string
		for c, n := range o.rst {
			codes = append(codes, fmt.Sprintf("%v×%d", c, n))
		}
		sort.Strings(codes)
		parts = append(parts, fmt.Sprintf("RST_STREAM %s (first in %s)", strings.Join(codes, ", "), ms(o.rstAt)))
	}
	if len(o.status) > 0 {
		var ss []string
		for s, n := range o.status {
			ss = append(ss, fmt.Sprintf("%s×%d", s, n))
		}
		sort.Strings(ss)
		parts = append(parts, strings.Join(ss, ", "))
	}
	if o.closed {
		parts = append(parts, "closed in "+ms(o.closedAt))
	} else {
		parts = append(parts, "open")
	}
	return strings.Join(parts, "; ")
}

func netDial(addr string) (net.Conn, error) { return net.DialTimeout("tcp", addr, 5*time.Second) }
