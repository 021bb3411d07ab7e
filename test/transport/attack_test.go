package transport

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// full runs the attacks at the counts docs/transport.md reports
// (SEXTANT_ATTACK_FULL=1); CI runs smaller counts.
func full() bool { return os.Getenv("SEXTANT_ATTACK_FULL") != "" }

func count(ci, all int) int {
	if full() {
		return all
	}
	return ci
}

// attack is one attack: run drives it on the attacker's connection(s)
// (addr for those that need many), lean is the ending the lean transport
// must show ("" = any, as long as the server holds).
type attack struct {
	name string
	lean string
	run  func(t *testing.T, addr string) *rawConn
}

func simple(f func(r *rawConn)) func(t *testing.T, addr string) *rawConn {
	return func(t *testing.T, addr string) *rawConn {
		r := dialRaw(t, addr)
		r.read()
		f(r)
		r.wait(3 * time.Second)
		return r
	}
}

// withRequest opens stream 1 with a valid ADS request, so the server has
// something to answer.
func withRequest(r *rawConn) {
	_ = r.open(1, false)
	_ = r.fr.WriteData(1, false, adsRequest())
}

func attacks() []attack {
	return []attack{
		{"SETTINGS_MAX_FRAME_SIZE = 0", "GOAWAY PROTOCOL_ERROR", simple(func(r *rawConn) {
			_ = r.settingsRaw(http2.Setting{ID: http2.SettingMaxFrameSize, Val: 0})
			withRequest(r)
		})},
		{"SETTINGS_MAX_FRAME_SIZE = 2^24", "GOAWAY PROTOCOL_ERROR", simple(func(r *rawConn) {
			_ = r.settingsRaw(http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1 << 24})
			withRequest(r)
		})},
		{"SETTINGS_INITIAL_WINDOW_SIZE = 2^31", "GOAWAY FLOW_CONTROL_ERROR", simple(func(r *rawConn) {
			_ = r.settingsRaw(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 31})
			withRequest(r)
		})},
		{"SETTINGS_ENABLE_PUSH = 2", "GOAWAY PROTOCOL_ERROR", simple(func(r *rawConn) {
			_ = r.settingsRaw(http2.Setting{ID: http2.SettingEnablePush, Val: 2})
		})},
		{"SETTINGS flood (20,000)", "GOAWAY ENHANCE_YOUR_CALM", simple(func(r *rawConn) {
			withRequest(r)
			for range 20000 {
				if r.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20}) != nil {
					return
				}
			}
		})},
		{"PING flood (20,000)", "GOAWAY ENHANCE_YOUR_CALM", simple(func(r *rawConn) {
			withRequest(r)
			for i := range 20000 {
				if r.fr.WritePing(false, [8]byte{byte(i)}) != nil {
					return
				}
			}
		})},
		{fmt.Sprintf("rapid reset (%d streams)", count(5000, 20000)), "GOAWAY ENHANCE_YOUR_CALM", simple(func(r *rawConn) {
			for i := range count(5000, 20000) {
				id := uint32(2*i + 1)
				if r.open(id, false) != nil || r.fr.WriteData(id, false, adsRequest()) != nil || r.fr.WriteRSTStream(id, http2.ErrCodeCancel) != nil {
					return
				}
			}
		})},
		{"CONTINUATION flood (200,000 empty)", "GOAWAY ENHANCE_YOUR_CALM", simple(func(r *rawConn) {
			_ = r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: requestBlock()})
			for range 200000 {
				if r.fr.WriteContinuation(1, false, nil) != nil {
					return
				}
			}
		})},
		{"header list of 1 MiB (CONTINUATIONs)", "GOAWAY COMPRESSION_ERROR", simple(func(r *rawConn) {
			block := requestBlock(hpack.HeaderField{Name: "x-big", Value: strings.Repeat("a", 1<<20)})
			_ = r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:16384]})
			for rest := block[16384:]; len(rest) > 0; {
				n := min(len(rest), 16384)
				if r.fr.WriteContinuation(1, n == len(rest), rest[:n]) != nil {
					return
				}
				rest = rest[n:]
			}
		})},
		{"HPACK bomb (4 KB entry referenced 4,000 times)", "HTTP 431", simple(func(r *rawConn) {
			var b bytes.Buffer
			enc := hpack.NewEncoder(&b)
			for _, hf := range []hpack.HeaderField{{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"},
				{Name: ":path", Value: methodSotw}, {Name: ":authority", Value: "x"}, {Name: "content-type", Value: "application/grpc"},
				{Name: "x-bomb", Value: strings.Repeat("b", 4000)}} {
				_ = enc.WriteField(hf)
			}
			// Indexed field 62: the newest dynamic-table entry, x-bomb.
			block := append(b.Bytes(), bytes.Repeat([]byte{0x80 | 62}, 4000)...)
			_ = r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block, EndHeaders: true})
		})},
		{"WINDOW_UPDATE overflow on a stream", "RST_STREAM FLOW_CONTROL_ERROR", simple(func(r *rawConn) {
			withRequest(r)
			_ = r.fr.WriteWindowUpdate(1, 1<<31-1)
		})},
		{"WINDOW_UPDATE overflow on the connection", "GOAWAY FLOW_CONTROL_ERROR", simple(func(r *rawConn) {
			withRequest(r)
			_ = r.fr.WriteWindowUpdate(0, 1<<31-1)
		})},
		{"DATA on an idle stream", "GOAWAY PROTOCOL_ERROR", simple(func(r *rawConn) {
			_ = r.fr.WriteData(9, false, adsRequest())
		})},
		{"DATA on a closed stream (100)", "RST_STREAM STREAM_CLOSED", simple(func(r *rawConn) {
			withRequest(r)
			_ = r.fr.WriteRSTStream(1, http2.ErrCodeCancel)
			for range 100 {
				_ = r.fr.WriteData(1, false, []byte("late"))
			}
		})},
		{"DATA beyond the advertised window (12 MiB at once)", "FLOW_CONTROL_ERROR", simple(func(r *rawConn) {
			chunk := make([]byte, 16384)
			for id := uint32(1); id <= 5; id += 2 {
				_ = r.open(id, false)
				_ = r.fr.WriteData(id, false, prefix(4<<20))
			}
			for range (4 << 20) / len(chunk) {
				for id := uint32(1); id <= 5; id += 2 {
					if r.fr.WriteData(id, false, chunk) != nil {
						return
					}
				}
			}
		})},
		{"gRPC length prefix of 4 GiB", "grpc-status 8", simple(func(r *rawConn) {
			_ = r.open(1, false)
			_ = r.fr.WriteData(1, false, append(prefix(1<<32-1), "hello"...))
		})},
		{"gRPC length prefix of 4 MiB + 1", "grpc-status 8", simple(func(r *rawConn) {
			_ = r.open(1, false)
			_ = r.fr.WriteData(1, false, append(prefix(4<<20+1), "hello"...))
		})},
		{fmt.Sprintf("%d streams announcing 4 MiB, sending slowly", count(200, 1000)), "open", func(t *testing.T, addr string) *rawConn {
			r := dialRaw(t, addr)
			r.read()
			n := count(200, 1000)
			for i := range n {
				id := uint32(2*i + 1)
				_ = r.open(id, false)
				_ = r.fr.WriteData(id, false, append(prefix(4<<20), make([]byte, 1000)...))
			}
			// Slowly: another KB per stream every 500 ms.
			for range 3 {
				time.Sleep(500 * time.Millisecond)
				for i := range n {
					_ = r.fr.WriteData(uint32(2*i+1), false, make([]byte, 1000))
				}
			}
			r.wait(500 * time.Millisecond)
			return r
		}},
		{"1,100 streams (more than advertised)", "RST_STREAM REFUSED_STREAM×100", simple(func(r *rawConn) {
			for i := range 1100 {
				if r.open(uint32(2*i+1), false) != nil {
					return
				}
			}
		})},
		{"huge window, never reads", "", func(t *testing.T, addr string) *rawConn {
			r := dialRaw(t, addr)
			_ = r.settingsRaw(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1<<31 - 1})
			_ = r.fr.WriteWindowUpdate(0, 1<<31-1-65535)
			for i := range 50 {
				id := uint32(2*i + 1)
				_ = r.open(id, false)
				_ = r.fr.WriteData(id, false, adsRequest())
			}
			// No reader: whatever the server sends piles up.
			time.Sleep(3 * time.Second)
			return r
		}},
		{fmt.Sprintf("%d connections sending the preface a byte at a time", count(200, 2000)), "", func(t *testing.T, addr string) *rawConn {
			n := count(200, 2000)
			var wg sync.WaitGroup
			var mu sync.Mutex
			got := 0
			for range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					nc, err := netDial(addr)
					if err != nil {
						return
					}
					defer nc.Close()
					for i := range len(http2.ClientPreface) {
						if _, err := nc.Write([]byte{http2.ClientPreface[i]}); err != nil {
							return
						}
						time.Sleep(40 * time.Millisecond)
					}
					_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
					fr := http2.NewFramer(nc, nc)
					if f, err := fr.ReadFrame(); err == nil {
						if _, ok := f.(*http2.SettingsFrame); ok {
							mu.Lock()
							got++
							mu.Unlock()
						}
					}
				}()
			}
			wg.Wait()
			if got < n*9/10 {
				t.Errorf("only %d of %d slow connections were served after their preface", got, n)
			}
			r := dialRaw(t, addr)
			r.read()
			r.wait(200 * time.Millisecond)
			r.out.status[fmt.Sprintf("%d of %d served", got, n)] = 1
			return r
		}},
	}
}

type row struct {
	ending string
	took   time.Duration
	heap   float64
	p99    time.Duration
}

// TestAttacks runs every attack against both transports, one at a time,
// while a well-behaved proxy on another connection receives pushes. The
// server must hold (bounded heap, the proxy served), and the lean
// transport must end each attack as RFC 9113 says.
func TestAttacks(t *testing.T) {
	if testing.Short() {
		t.Skip("attack suite skipped in -short")
	}
	results := map[string]map[string]row{}
	quiet := map[string]time.Duration{}
	idle := map[string]string{}
	for _, tr := range transports {
		results[tr] = map[string]row{}
		env := startServer(t, tr)
		good := newGoodProxy(t, env)
		// A connection that never opens a stream, watched over the
		// whole run.
		never := dialRaw(t, env.Addr)
		never.read()
		var q []time.Duration
		for range 5 {
			d, err := good.push(t)
			if err != nil {
				t.Fatalf("%s: quiet push: %v", tr, err)
			}
			q = append(q, d)
		}
		quiet[tr] = p99(q)
		for _, a := range attacks() {
			h := watchHeap()
			stop := make(chan struct{})
			var lat []time.Duration
			var pushErr error
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					d, err := good.push(t)
					if err != nil {
						pushErr = err
						return
					}
					lat = append(lat, d)
				}
			}()
			start := time.Now()
			r := a.run(t, env.Addr)
			took := time.Since(start)
			close(stop)
			wg.Wait()
			growth := h.growth()
			ending := r.out.String()
			r.nc.Close()
			if pushErr != nil {
				t.Errorf("%s, %s: the good proxy lost its pushes: %v", tr, a.name, pushErr)
			}
			if len(lat) == 0 {
				d, err := good.push(t)
				if err != nil {
					t.Errorf("%s, %s: the good proxy is not served after the attack: %v", tr, a.name, err)
				}
				lat = append(lat, d)
			}
			res := row{ending: ending, took: took, heap: growth, p99: p99(lat)}
			results[tr][a.name] = res
			t.Logf("%s | %s | %s | %.1f MiB | push p99 %v", tr, a.name, res.ending, growth, res.p99)
			if tr == "lean" && !strings.Contains(ending, a.lean) {
				t.Errorf("lean, %s: ended %q, want %s", a.name, res.ending, a.lean)
			}
			if growth > 256 || (tr == "lean" && growth > 64) {
				t.Errorf("%s, %s: heap grew %.0f MiB", tr, a.name, growth)
			}
		}
		if rem := 25*time.Second - time.Since(never.start); rem > 0 {
			never.wait(rem)
		}
		idle[tr] = never.out.String()
		t.Logf("%s | connection that never opens a stream | %s", tr, idle[tr])
		if tr == "lean" && !strings.Contains(idle[tr], "GOAWAY NO_ERROR") {
			t.Errorf("lean: a connection without streams: %s, want GOAWAY NO_ERROR after 20 s", idle[tr])
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n| attack | lean: ending | lean: heap | lean: push p99 (quiet %v) | grpc: ending | grpc: heap | grpc: push p99 (quiet %v) |\n|---|---|---|---|---|---|---|\n",
		quiet["lean"].Round(time.Millisecond), quiet["grpc"].Round(time.Millisecond))
	for _, a := range attacks() {
		l, g := results["lean"][a.name], results["grpc"][a.name]
		fmt.Fprintf(&b, "| %s | %s | %+.1f MiB | %v | %s | %+.1f MiB | %v |\n", a.name, l.ending, l.heap, l.p99.Round(time.Millisecond),
			g.ending, g.heap, g.p99.Round(time.Millisecond))
	}
	fmt.Fprintf(&b, "| a connection that never opens a stream | %s | | | %s | | |\n", idle["lean"], idle["grpc"])
	t.Log(b.String())
}
