package e2e

import (
	"context"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sextant-mesh/sextant/discovery/translate"
	"github.com/sextant-mesh/sextant/discovery/xds"
	"github.com/sextant-mesh/sextant/internal/adsclient"
	"github.com/sextant-mesh/sextant/internal/testenv"
)

// TestStalledProxiesDoNotDelayHealthy: on both transports, 50 proxies
// that subscribe and never read (raw HTTP/2, default windows, so their
// windows run out at the first push; a big window only delays this until
// the kernel's socket buffers fill, several MiB per connection on
// loopback, see hack/loadgen -stalled) sit next to 50 healthy ones. Pushes are queued per connection and written by each
// connection's writer, so the healthy proxies keep getting every change
// promptly, and each stalled proxy is closed once its writes block for
// --send-timeout, counted in pilot_xds_write_timeout.
func TestStalledProxiesDoNotDelayHealthy(t *testing.T) {
	if testing.Short() {
		t.Skip("100 proxies for a few seconds")
	}
	for _, grpcTransport := range []bool{false, true} {
		t.Run(map[bool]string{false: "lean", true: "grpc"}[grpcTransport], func(t *testing.T) {
			testStalled(t, grpcTransport, 50, 50)
		})
	}
}

func testStalled(t *testing.T, grpcTransport bool, stalled, healthy int) {
	const services = 300
	var b strings.Builder
	for i := range services {
		fmt.Fprintf(&b, "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: svc-%d, namespace: default}\nspec:\n  hosts: [a-rather-long-service-name-to-make-big-responses-%d.default.svc.cluster.local]\n  resolution: STATIC\n  ports: [{number: 8080, name: http, protocol: HTTP}]\n  endpoints: [{address: 10.%d.%d.%d}]\n", i, i, 40+i/62500, i/250%250, i%250+1)
	}
	dir := t.TempDir()
	testenv.WriteFile(t, dir+"/mesh.yaml", b.String())
	const sendTimeout = 3 * time.Second
	env := testenv.Start(t, dir, testenv.Options{GRPCTransport: grpcTransport, Server: func(o *xds.Options) {
		o.SendTimeout = sendTimeout
	}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	clients := make([]*adsclient.Client, healthy)
	for i := range clients {
		// One connection each, as real proxies have.
		clients[i] = startClient(t, dial(t, env.Addr), fmt.Sprintf("healthy-%d", i), "", adsclient.Options{})
	}
	base := 0
	testenv.Eventually(t, 20*time.Second, func() string {
		for _, c := range clients {
			if n := len(c.Resources(translate.ClusterType)); n < services {
				return fmt.Sprintf("a healthy proxy has %d clusters", n)
			}
		}
		base = len(clients[0].Resources(translate.ClusterType))
		return ""
	})
	changes := 0
	// change adds a service (a full push) and returns how long each
	// healthy proxy took to get it.
	change := func() []time.Duration {
		changes++
		n := changes
		start := time.Now()
		env.WriteFile(t, fmt.Sprintf("extra-%d.yaml", n), testenv.StaticServiceEntry(fmt.Sprintf("extra-%d", n), fmt.Sprintf("10.41.0.%d", n)))
		var wg sync.WaitGroup
		var mu sync.Mutex
		var lat []time.Duration
		for _, c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for len(c.Resources(translate.ClusterType)) < base+n {
					if time.Since(start) > 20*time.Second {
						return
					}
					time.Sleep(5 * time.Millisecond)
				}
				mu.Lock()
				lat = append(lat, time.Since(start))
				mu.Unlock()
			}()
		}
		wg.Wait()
		if len(lat) != healthy {
			for _, c := range clients {
				if len(c.Resources(translate.ClusterType)) < base+n {
					t.Logf("a healthy proxy without change %d: has %d clusters, stream error %v", n, len(c.Resources(translate.ClusterType)), c.Err())
					break
				}
			}
			t.Fatalf("change %d reached %d of %d healthy proxies within 20s", n, len(lat), healthy)
		}
		return lat
	}
	var quiet []time.Duration
	for range 3 {
		quiet = append(quiet, change()...)
	}

	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range stalled {
		nc, err := adsclient.DialStalled(ctx, env.Addr, adsclient.Node(fmt.Sprintf("10.8.%d.%d", i/250, i%250+1), fmt.Sprintf("stalled-%d", i), "default", "", nil),
			[]string{translate.ClusterType, translate.ListenerType}, false)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, nc)
	}
	stalledConnected := func() int {
		n := 0
		for _, st := range syncz(t, env) {
			if strings.HasPrefix(st.Proxy, "stalled-") {
				n++
			}
		}
		return n
	}
	// Every stalled proxy got its first push (more than its window) and
	// is now stuck, or already closed for it.
	testenv.Eventually(t, 20*time.Second, func() string {
		if n := stalledConnected() + writeTimeouts(t, env); n < stalled {
			return fmt.Sprintf("%d stalled proxies connected or closed, want %d", n, stalled)
		}
		return ""
	})
	// Full pushes until every stalled proxy was closed; each must reach
	// every healthy proxy as fast as without the stalled ones.
	var loaded []time.Duration
	deadline := time.Now().Add(60 * time.Second)
	for {
		loaded = append(loaded, change()...)
		if stalledConnected() == 0 {
			// Counted in pilot_xds_write_timeout when their send timed out;
			// on a very slow run (-race on a busy machine) grpc-go may end
			// them first for not answering its keepalive pings.
			t.Logf("after %d changes every stalled proxy was closed; pilot_xds_write_timeout %d", changes, writeTimeouts(t, env))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %d changes %d of %d stalled proxies are still connected; %d closed as stuck", changes, stalledConnected(), stalled, writeTimeouts(t, env))
		}
	}
	q, l := p99(quiet), p99(loaded)
	t.Logf("healthy proxies' change latency p99: %v quiet, %v with %d stalled proxies (%d samples)", q, l, stalled, len(loaded))
	// A push worker held by a stalled proxy's send would make healthy
	// proxies wait out the send timeout, once per stalled proxy a worker
	// met. That is what this asserts against; the 2x-of-quiet target is a
	// benchmark figure (hack/loadgen -stalled, docs/performance.md), not a
	// timed test: under -race on two shared cores the ratio alone varies
	// past 2x with nothing held (seen: 4.1 s vs 1.1 s quiet, while the
	// run alone gave 1.9 s vs 1.0 s).
	if l > 2*q+sendTimeout {
		t.Errorf("p99 with stalled proxies %v: healthy proxies waited behind stalled sends (quiet p99 %v, send timeout %v)", l, q, sendTimeout)
	}
}

func p99(d []time.Duration) time.Duration {
	slices.Sort(d)
	return d[len(d)*99/100]
}

var writeTimeoutRE = regexp.MustCompile(`(?m)^pilot_xds_write_timeout (\S+)$`)

func writeTimeouts(t *testing.T, env *testenv.Env) int {
	m := writeTimeoutRE.FindStringSubmatch(env.Get(t, "/metrics"))
	if m == nil {
		return 0
	}
	f, _ := strconv.ParseFloat(m[1], 64)
	return int(f)
}
