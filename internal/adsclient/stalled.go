package adsclient

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"syscall"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/protobuf/proto"
)

// DialStalled opens a SotW ADS stream the way a broken or hostile proxy
// would: over raw HTTP/2, it subscribes to types (wildcard) with node and
// then never reads the socket again. With bigWindow it grants the server
// the largest flow-control windows (2^31-1 on the stream and the
// connection), so the server's writes block in the kernel once the
// socket buffers are full (several MiB on loopback); without, the
// default 64 KiB windows run out first and the server's sends wait on
// flow control. Its receive buffer is made tiny before connecting. Close
// the returned connection to end it.
func DialStalled(ctx context.Context, addr string, node *corev3.Node, types []string, bigWindow bool) (net.Conn, error) {
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		}); err != nil {
			return err
		}
		return serr
	}}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	out.WriteString(http2.ClientPreface)
	fr := http2.NewFramer(&out, nil)
	const maxWindow = 1<<31 - 1
	var settings []http2.Setting
	if bigWindow {
		settings = append(settings, http2.Setting{ID: http2.SettingInitialWindowSize, Val: maxWindow})
	}
	if err := fr.WriteSettings(settings...); err != nil {
		nc.Close()
		return nil, err
	}
	if bigWindow {
		if err := fr.WriteWindowUpdate(0, maxWindow-65535); err != nil {
			nc.Close()
			return nil, err
		}
	}
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":authority", addr},
		{":path", "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"},
		{"content-type", "application/grpc"}, {"te", "trailers"}} {
		if err := enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]}); err != nil {
			nc.Close()
			return nil, err
		}
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true}); err != nil {
		nc.Close()
		return nil, err
	}
	for i, t := range types {
		req := &discoverygrpc.DiscoveryRequest{TypeUrl: t}
		if i == 0 {
			req.Node = node
		}
		b, err := proto.Marshal(req)
		if err != nil {
			nc.Close()
			return nil, fmt.Errorf("encoding request: %w", err)
		}
		msg := make([]byte, 5, 5+len(b))
		binary.BigEndian.PutUint32(msg[1:], uint32(len(b)))
		if err := fr.WriteData(1, false, append(msg, b...)); err != nil {
			nc.Close()
			return nil, err
		}
	}
	if _, err := nc.Write(out.Bytes()); err != nil {
		nc.Close()
		return nil, fmt.Errorf("writing to %s: %w", addr, err)
	}
	return nc, nil
}
