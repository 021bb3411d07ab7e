package grpclite

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

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
