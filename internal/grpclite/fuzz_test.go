package grpclite

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// seedFrames writes frames for a fuzz seed.
func seedFrames(f func(fr *http2.Framer)) []byte {
	var b bytes.Buffer
	f(http2.NewFramer(&b, nil))
	return b.Bytes()
}

func seedRequest(extra ...[2]string) []byte {
	var hb []byte
	for _, kv := range append([][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", chat}, {":authority", "x"},
		{"content-type", "application/grpc"}, {"te", "trailers"}}, extra...) {
		hb = appendLiteral(hb, kv[0], kv[1])
	}
	return hb
}

func seedPrefix(n uint32) []byte { return binary.BigEndian.AppendUint32([]byte{0}, n) }

func seedSettings(fr *http2.Framer, id http2.SettingID, v uint32) {
	_ = fr.WriteRawFrame(http2.FrameSettings, 0, 0, binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint16(nil, uint16(id)), v))
}

func seedOpen(fr *http2.Framer, id uint32) {
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: seedRequest(), EndHeaders: true})
	_ = fr.WriteData(id, false, append(seedPrefix(2), "hi"...))
}

// attackSeeds are the attacks of test/transport (docs/transport.md), at
// counts small enough for a seed corpus.
func attackSeeds() [][]byte {
	return [][]byte{
		seedFrames(func(fr *http2.Framer) { seedSettings(fr, http2.SettingMaxFrameSize, 0); seedOpen(fr, 1) }),
		seedFrames(func(fr *http2.Framer) { seedSettings(fr, http2.SettingMaxFrameSize, 1<<24); seedOpen(fr, 1) }),
		seedFrames(func(fr *http2.Framer) { seedSettings(fr, http2.SettingInitialWindowSize, 1<<31); seedOpen(fr, 1) }),
		seedFrames(func(fr *http2.Framer) { seedSettings(fr, http2.SettingEnablePush, 2) }),
		seedFrames(func(fr *http2.Framer) { // SETTINGS flood
			for range 1200 {
				_ = fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20})
			}
		}),
		seedFrames(func(fr *http2.Framer) { // PING flood
			seedOpen(fr, 1)
			for i := range 50 {
				_ = fr.WritePing(false, [8]byte{byte(i)})
			}
		}),
		seedFrames(func(fr *http2.Framer) { // rapid reset
			for i := range 1100 {
				id := uint32(2*i + 1)
				seedOpen(fr, id)
				_ = fr.WriteRSTStream(id, http2.ErrCodeCancel)
			}
		}),
		seedFrames(func(fr *http2.Framer) { // CONTINUATION flood
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: seedRequest()})
			for range 30000 {
				_ = fr.WriteContinuation(1, false, nil)
			}
		}),
		seedFrames(func(fr *http2.Framer) { // oversized header list
			hb := seedRequest([2]string{"x-big", strings.Repeat("a", 100<<10)})
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb[:16384]})
			for rest := hb[16384:]; len(rest) > 0; {
				n := min(len(rest), 16384)
				_ = fr.WriteContinuation(1, n == len(rest), rest[:n])
				rest = rest[n:]
			}
		}),
		seedFrames(func(fr *http2.Framer) { // HPACK bomb
			var b bytes.Buffer
			enc := hpack.NewEncoder(&b)
			for _, kv := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", chat}, {":authority", "x"},
				{"content-type", "application/grpc"}, {"x-bomb", strings.Repeat("b", 4000)}} {
				_ = enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
			}
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: append(b.Bytes(), bytes.Repeat([]byte{0x80 | 62}, 4000)...), EndHeaders: true})
		}),
		seedFrames(func(fr *http2.Framer) { seedOpen(fr, 1); _ = fr.WriteWindowUpdate(1, 1<<31-1) }),
		seedFrames(func(fr *http2.Framer) { seedOpen(fr, 1); _ = fr.WriteWindowUpdate(0, 1<<31-1) }),
		seedFrames(func(fr *http2.Framer) { _ = fr.WriteData(9, false, []byte("idle")) }),
		seedFrames(func(fr *http2.Framer) { // DATA on a closed stream
			seedOpen(fr, 1)
			_ = fr.WriteRSTStream(1, http2.ErrCodeCancel)
			for range 20 {
				_ = fr.WriteData(1, false, []byte("late"))
			}
		}),
		seedFrames(func(fr *http2.Framer) { // DATA beyond the window
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: seedRequest(), EndHeaders: true})
			_ = fr.WriteData(1, false, seedPrefix(4<<20))
			chunk := make([]byte, 16384)
			for range 80 {
				_ = fr.WriteData(1, false, chunk)
			}
		}),
		seedFrames(func(fr *http2.Framer) {
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: seedRequest(), EndHeaders: true})
			_ = fr.WriteData(1, false, append(seedPrefix(1<<32-1), "hello"...))
		}),
		seedFrames(func(fr *http2.Framer) {
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: seedRequest(), EndHeaders: true})
			_ = fr.WriteData(1, true, append(seedPrefix(4<<20+1), "hello"...))
		}),
		seedFrames(func(fr *http2.Framer) { // streams announcing 4 MiB
			for i := range 100 {
				id := uint32(2*i + 1)
				_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: seedRequest(), EndHeaders: true})
				_ = fr.WriteData(id, false, append(seedPrefix(4<<20), make([]byte, 100)...))
			}
		}),
		seedFrames(func(fr *http2.Framer) { // more streams than advertised
			for i := range 1100 {
				_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(2*i + 1), BlockFragment: seedRequest(), EndHeaders: true})
			}
		}),
		seedFrames(func(fr *http2.Framer) { // huge window
			seedSettings(fr, http2.SettingInitialWindowSize, 1<<31-1)
			_ = fr.WriteWindowUpdate(0, 1<<31-1-65535)
			seedOpen(fr, 1)
		}),
		seedFrames(func(fr *http2.Framer) { // half-close in the request's DATA frame, malformed requests
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: seedRequest(), EndHeaders: true})
			_ = fr.WriteData(1, true, append(seedPrefix(2), "hi"...))
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: seedRequest([2]string{"connection", "close"}), EndHeaders: true})
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 5, BlockFragment: seedRequest([2]string{"grpc-timeout", "1m"}), EndHeaders: true})
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 7, BlockFragment: appendLiteral(nil, ":path", chat), EndHeaders: true, EndStream: true})
		}),
	}
}

// FuzzConn feeds arbitrary frames to a connection after a valid preface:
// the server must neither panic nor hang, whatever the client sends.
func FuzzConn(f *testing.F) {
	var b bytes.Buffer
	fr := http2.NewFramer(&b, nil)
	var hb []byte
	for _, kv := range [][2]string{{":method", "POST"}, {":path", chat}, {"content-type", "application/grpc"}} {
		hb = appendLiteral(hb, kv[0], kv[1])
	}
	_ = fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20}, http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1 << 15})
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb, EndHeaders: true})
	_ = fr.WriteData(1, false, []byte{0, 0, 0, 0, 2, 'h', 'i'})
	_ = fr.WriteWindowUpdate(0, 1000)
	_ = fr.WriteWindowUpdate(1, 1000)
	_ = fr.WritePing(false, [8]byte{1})
	_ = fr.WriteData(1, true, []byte{0, 0, 0, 0, 1, 'x'})
	_ = fr.WriteRSTStream(3, http2.ErrCodeCancel)
	_ = fr.WriteGoAway(1, http2.ErrCodeNo, nil)
	f.Add(b.Bytes())
	f.Add(append(b.Bytes()[:len(b.Bytes())/2:len(b.Bytes())/2], 0xff, 0xff, 0xff, 0x01, 0x04, 0, 0, 0, 5))
	f.Add([]byte{0, 0, 4, 8, 0, 0, 0, 0, 1, 0x7f, 0xff, 0xff, 0xff}) // window overflow
	f.Add([]byte{0, 0, 5, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 9})          // data on an unopened stream, compressed flag
	for _, s := range attackSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s := echoServer()
		s.KeepaliveTime = time.Hour
		client, server := net.Pipe()
		c := newConn(s, server)
		done := make(chan struct{})
		go func() { c.serve(); close(done) }()
		go func() { _, _ = io.Copy(io.Discard, client) }()
		_ = client.SetWriteDeadline(time.Now().Add(2 * time.Second))
		if _, err := io.WriteString(client, http2.ClientPreface); err == nil {
			_, _ = client.Write(data)
		}
		client.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("connection goroutine did not end after the client closed")
		}
	})
}
