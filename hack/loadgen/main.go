// Command loadgen is Sextant's fleet simulator. It generates a mesh, starts
// `sextant serve` on it as a separate process, connects N simulated proxies
// (SotW and delta, proxyless and sidecar, ACKing like Envoy), then changes
// one endpoint and reports how long until every proxy received and ACKed
// it, what was sent, how many resources were marshalled, and the server's
// CPU time and RSS.
//
//	go run ./hack/loadgen -proxies 1000 -services 1000 -endpoints 10
//
// Everything runs on loopback; request loops are bounded by -changes and
// -timeout.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sextant-mesh/sextant/discovery/translate"
	"github.com/sextant-mesh/sextant/internal/adsclient"
)

type config struct {
	proxies, services, endpoints, changes int
	deltaFraction, sidecarFraction        float64
	serverBin, workDir                    string
	debounce                              time.Duration
	timeout                               time.Duration
	connectRate                           int
	changeInterval                        time.Duration
	heapProfile                           string
	cpuProfile                            string
	goroutineProfile                      string
	changeKind                            string
	scoped, secure                        bool
	churnRate                             float64
	churnDuration                         time.Duration
	stalled                               int
	stalledSmallWindow                    bool
}

func main() {
	var c config
	flag.IntVar(&c.proxies, "proxies", 1000, "simulated proxies")
	flag.IntVar(&c.services, "services", 1000, "services in the generated mesh")
	flag.IntVar(&c.endpoints, "endpoints", 10, "endpoints per service")
	flag.IntVar(&c.changes, "changes", 5, "endpoint changes to measure")
	flag.Float64Var(&c.deltaFraction, "delta", 0.5, "fraction of proxies using delta xDS")
	flag.Float64Var(&c.sidecarFraction, "sidecar", 0, "fraction of proxies that are Envoy sidecars (the rest are proxyless gRPC)")
	flag.StringVar(&c.serverBin, "server", "", "sextant binary (default: build ./cmd/sextant)")
	flag.StringVar(&c.workDir, "dir", "", "work directory (default: a temp dir)")
	flag.DurationVar(&c.debounce, "debounce", 100*time.Millisecond, "server --debounce-after")
	flag.DurationVar(&c.timeout, "timeout", 60*time.Second, "give up waiting for convergence after this long")
	flag.IntVar(&c.connectRate, "connect-rate", 0, "new streams per second (0 = all at once: a connect storm)")
	flag.DurationVar(&c.changeInterval, "change-interval", 0, "with >0, changes are sent at this interval without waiting for convergence (churn)")
	flag.StringVar(&c.heapProfile, "heap-profile", "", "write the server's heap profile (after connecting) to this file")
	flag.BoolVar(&c.secure, "secure", false, "connect to the secure port (TLS, a bearer token per namespace from a --ca-token-file) instead of the plaintext one")
	flag.StringVar(&c.cpuProfile, "cpu-profile", "", "write the server's CPU profile over the measured changes to this file")
	flag.StringVar(&c.goroutineProfile, "goroutine-profile", "", "write the server's goroutine dump (after connecting) to this file")
	flag.StringVar(&c.changeKind, "change-kind", "endpoint", "what each change does: endpoint (move one endpoint), vs (change one VirtualService: a full push), or flip (switch every endpoint of svc-0 between keepalive and running through /api/v1/traffic)")
	flag.BoolVar(&c.scoped, "scoped", false, "give every namespace a Sidecar importing only its own namespace")
	flag.Float64Var(&c.churnRate, "churn-rate", 0, "after the measured changes, move endpoints at this many events per second")
	flag.DurationVar(&c.churnDuration, "churn-duration", 20*time.Second, "how long churn runs")
	flag.IntVar(&c.stalled, "stalled", 0, "after the proxies connect, add this many proxies that subscribe (CDS, LDS) over raw HTTP/2 with the largest flow-control window and never read (plaintext port only); compare the measured changes with and without")
	flag.BoolVar(&c.stalledSmallWindow, "stalled-small-window", false, "stalled proxies keep the default 64 KiB windows, so they stall at their first push instead of once the socket buffers are full")
	flag.Parse()
	if err := run(c); err != nil {
		log.Fatal(err)
	}
}

func run(c config) error {
	dir := c.workDir
	if dir == "" {
		d, err := os.MkdirTemp("", "sextant-load-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	meshDir := filepath.Join(dir, "mesh")
	if err := os.MkdirAll(meshDir, 0o755); err != nil {
		return err
	}
	if err := writeMesh(meshDir, c.services, c.endpoints, 0); err != nil {
		return err
	}
	if err := writeExtras(meshDir, c, 0); err != nil {
		return err
	}
	bin := c.serverBin
	if bin == "" {
		bin = filepath.Join(dir, "sextant")
		build := exec.Command("go", "build", "-o", bin, "./cmd/sextant")
		build.Stdout, build.Stderr = os.Stdout, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("build sextant: %w", err)
		}
	}
	xdsAddr, monAddr := freeAddr(), freeAddr()
	args := []string{"serve", "--config-dir", meshDir, "--xds-addr", xdsAddr, "--monitoring-addr", monAddr,
		"--debounce-after", c.debounce.String(), "--log-level", "warn"}
	dialAddr, creds := xdsAddr, insecure.NewCredentials()
	var tokens []string // per namespace, on the secure port
	if c.secure {
		secAddr := freeAddr()
		var lines strings.Builder
		for n := range 10 {
			tokens = append(tokens, "load-token-"+strconv.Itoa(n))
			fmt.Fprintf(&lines, "%s ns%d default\n", tokens[n], n)
		}
		tokenFile := filepath.Join(dir, "tokens")
		if err := os.WriteFile(tokenFile, []byte(lines.String()), 0o600); err != nil {
			return err
		}
		args = append(args, "--ca-dir", filepath.Join(dir, "ca"), "--secure-addr", secAddr, "--ca-token-file", tokenFile,
			"--webhook-addr", "", "--ca-csr-rate", "100000", "--ca-csr-burst", "100000")
		dialAddr = secAddr
	}
	srv := exec.Command(bin, args...)
	srv.Stderr = os.Stderr
	if err := srv.Start(); err != nil {
		return err
	}
	defer func() { _ = srv.Process.Signal(os.Interrupt); _ = srv.Wait() }()
	if err := waitReady("http://" + monAddr + "/ready"); err != nil {
		return err
	}
	if c.secure {
		rootPEM, err := os.ReadFile(filepath.Join(dir, "ca", "root-cert.pem"))
		if err != nil {
			return err
		}
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(rootPEM)
		creds = credentials.NewTLS(&tls.Config{RootCAs: roots, ServerName: "istiod.istio-system.svc"})
	}
	rssIdle := rss(srv.Process.Pid)
	cpu0 := cpuSeconds(srv.Process.Pid)
	fmt.Printf("mesh: %d services × %d endpoints; server RSS idle %.1f MiB\n", c.services, c.endpoints, rssIdle)

	// Connect.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clients := make([]*adsclient.Client, c.proxies)
	conns := make([]*grpc.ClientConn, c.proxies)
	start := time.Now()
	var wg sync.WaitGroup
	var failed atomic.Int64
	sem := make(chan struct{}, 256)
	var tick <-chan time.Time
	if c.connectRate > 0 {
		t := time.NewTicker(time.Second / time.Duration(c.connectRate))
		defer t.Stop()
		tick = t.C
	}
	for i := range c.proxies {
		if tick != nil {
			<-tick
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			// The light codec keeps the simulated proxies' decoding cheap:
			// real proxies do not share the server's cores.
			opts := []grpc.DialOption{grpc.WithTransportCredentials(creds), adsclient.LightCodec()}
			if c.secure {
				opts = append(opts, grpc.WithPerRPCCredentials(bearer(tokens[i%10])))
			}
			cc, err := grpc.NewClient(dialAddr, opts...)
			if err != nil {
				failed.Add(1)
				return
			}
			gen := "grpc"
			if float64(i%100) < c.sidecarFraction*100 {
				gen = ""
			}
			delta := float64((i/2)%100) < c.deltaFraction*100
			ns := "ns" + strconv.Itoa(i%10)
			cl, err := adsclient.Start(ctx, cc, adsclient.Node("10.200."+strconv.Itoa(i/250)+"."+strconv.Itoa(i%250), "proxy-"+strconv.Itoa(i), ns, gen, map[string]string{"app": "load"}),
				adsclient.Options{Delta: delta, Follow: true, Light: true})
			if err != nil {
				failed.Add(1)
				return
			}
			conns[i], clients[i] = cc, cl
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		return fmt.Errorf("%d streams failed to start", failed.Load())
	}
	// Initial config: every client got CDS and EDS.
	initial := waitAllSince(clients, translate.EndpointType, start, c.timeout)
	connectTime := time.Since(start)
	fmt.Printf("connected %d proxies (%.0f%% delta, %.0f%% sidecar): all had CDS+EDS after %v (p50 %v, p99 %v)\n",
		c.proxies, c.deltaFraction*100, c.sidecarFraction*100, connectTime.Round(time.Millisecond), pct(initial, 50), pct(initial, 99))
	if c.stalled > 0 {
		if c.secure {
			return errors.New("-stalled needs the plaintext port")
		}
		for i := range c.stalled {
			nc, err := adsclient.DialStalled(ctx, dialAddr, adsclient.Node("10.201."+strconv.Itoa(i/250)+"."+strconv.Itoa(i%250), "stalled-"+strconv.Itoa(i), "ns"+strconv.Itoa(i%10), "", map[string]string{"app": "load"}),
				[]string{translate.ClusterType, translate.ListenerType}, !c.stalledSmallWindow)
			if err != nil {
				return fmt.Errorf("stalled proxy %d: %w", i, err)
			}
			defer nc.Close()
		}
		fmt.Printf("added %d stalled proxies (never read; %s windows)\n", c.stalled, map[bool]string{false: "2^31-1", true: "64 KiB"}[c.stalledSmallWindow])
	}
	time.Sleep(500 * time.Millisecond)
	drain(clients)
	rssConnected := rss(srv.Process.Pid)
	if c.goroutineProfile != "" {
		if err := download("http://"+monAddr+"/debug/pprof/goroutine?debug=1", c.goroutineProfile); err != nil {
			return err
		}
	}
	if c.heapProfile != "" {
		if err := download("http://"+monAddr+"/debug/pprof/heap?gc=1", c.heapProfile); err != nil {
			return err
		}
	}
	fmt.Printf("server RSS with %d proxies: %.1f MiB (%.1f KiB per proxy over idle); heap in use %.1f MiB, goroutine stacks %.1f MiB, goroutines %.0f\n", c.proxies, rssConnected,
		(rssConnected-rssIdle)*1024/float64(c.proxies),
		scrape("http://"+monAddr+"/metrics", "go_memstats_heap_inuse_bytes")/(1<<20),
		scrape("http://"+monAddr+"/metrics", "go_memstats_stack_inuse_bytes")/(1<<20),
		scrape("http://"+monAddr+"/metrics", "go_goroutines"))

	// Endpoint changes.
	var all []time.Duration
	profDone := make(chan error, 1)
	if c.cpuProfile != "" {
		secs := int(float64(c.changes)*0.8) + 1
		go func() {
			profDone <- download(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", monAddr, secs), c.cpuProfile)
		}()
		time.Sleep(100 * time.Millisecond)
	} else {
		profDone <- nil
	}
	for n := 1; n <= c.changes; n++ {
		m0 := scrape("http://"+monAddr+"/metrics", "sextant_xds_resource_marshals_total")
		a0 := scrape("http://"+monAddr+"/metrics", "go_memstats_alloc_bytes_total")
		g0 := scrape("http://"+monAddr+"/metrics", "go_gc_duration_seconds_count")
		c0, l0 := cpuSeconds(srv.Process.Pid), cpuSeconds(os.Getpid())
		t0 := time.Now()
		want := translate.EndpointType
		if c.changeKind == "flip" {
			state := "running"
			if n%2 == 0 {
				state = "keepalive"
			}
			if err := flip("http://"+monAddr, state); err != nil {
				return err
			}
		} else if c.changeKind == "vs" {
			want = translate.RouteType
			if err := writeExtras(meshDir, c, n); err != nil {
				return err
			}
		} else if err := writeMesh(meshDir, c.services, c.endpoints, n); err != nil {
			return err
		}
		watchers := clients
		if c.scoped {
			// With Sidecar scoping only ns0's proxies can see svc-0.
			watchers = nil
			for i, cl := range clients {
				if i%10 == 0 {
					watchers = append(watchers, cl)
				}
			}
		}
		lat := waitAllSince(watchers, want, t0, c.timeout)
		m1 := scrape("http://"+monAddr+"/metrics", "sextant_xds_resource_marshals_total")
		a1 := scrape("http://"+monAddr+"/metrics", "go_memstats_alloc_bytes_total")
		g1 := scrape("http://"+monAddr+"/metrics", "go_gc_duration_seconds_count")
		c1, l1 := cpuSeconds(srv.Process.Pid), cpuSeconds(os.Getpid())
		all = append(all, lat...)
		if dead, err := closed(clients); dead > 0 {
			fmt.Printf("  %d streams ended; first error: %v\n", dead, err)
		}
		last := lastPush("http://" + monAddr)
		fmt.Printf("change %d (%s): %d/%d proxies that can see it got it; convergence p50 %v p99 %v max %v; marshals %v; push: full=%v sent to %d proxies, %d resources, %d bytes; server allocated %.1f MB, %.0f GC cycles, %.2fs CPU (load generator %.2fs)\n",
			n, c.changeKind, len(lat), len(watchers), pct(lat, 50), pct(lat, 99), pct(lat, 100), m1-m0, last.Full, last.Sent, last.Resources, last.Bytes, (a1-a0)/1e6, g1-g0, c1-c0, l1-l0)
		if c.changeInterval > 0 {
			time.Sleep(c.changeInterval)
		} else if c.cpuProfile == "" {
			time.Sleep(300 * time.Millisecond)
		}
	}
	if err := <-profDone; err != nil {
		return fmt.Errorf("cpu profile: %w", err)
	}
	if c.churnRate > 0 {
		if err := churn(c, meshDir, "http://"+monAddr); err != nil {
			return err
		}
	}
	cpu1 := cpuSeconds(srv.Process.Pid)
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	fmt.Printf("overall: convergence p50 %v p99 %v max %v over %d samples; server CPU %.2fs; RSS %.1f MiB (heap in use %.1f MiB, goroutine stacks %.1f MiB)\n",
		pct(all, 50), pct(all, 99), pct(all, 100), len(all), cpu1-cpu0, rss(srv.Process.Pid),
		scrape("http://"+monAddr+"/metrics", "go_memstats_heap_inuse_bytes")/(1<<20),
		scrape("http://"+monAddr+"/metrics", "go_memstats_stack_inuse_bytes")/(1<<20))
	pl, _ := httpGet("http://" + monAddr + "/metrics")
	for _, l := range strings.Split(pl, "\n") {
		if strings.HasPrefix(l, "pilot_xds_pushes{") || strings.HasPrefix(l, "sextant_xds_cache_") || strings.HasPrefix(l, "pilot_xds ") {
			fmt.Println("  ", l)
		}
	}
	for _, cc := range conns {
		if cc != nil {
			cc.Close()
		}
	}
	return nil
}

// writeMesh writes services svc-0..svc-(n-1) in 10 namespaces; generation
// g moves the first endpoint of svc-0 so exactly one service changes.
func writeMesh(dir string, services, endpoints, g int) error {
	var b strings.Builder
	for s := range services {
		ns := "ns" + strconv.Itoa(s%10)
		fmt.Fprintf(&b, "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: svc-%d, namespace: %s}\nspec:\n  hosts: [svc-%d.%s.svc.cluster.local]\n  resolution: STATIC\n  ports: [{number: 8080, name: grpc, protocol: GRPC}]\n  endpoints:\n", s, ns, s, ns)
		for e := range endpoints {
			i := s*endpoints + e
			if s == 0 && e == 0 {
				i = services*endpoints + g%50 // generation g moves this one
			}
			addr := fmt.Sprintf("10.%d.%d.%d", 1+i/65025, (i/255)%255, i%255+1)
			if s == 0 && e > 0 {
				// svc-0: one running endpoint (pool base) and a keepalive
				// pool "peak" that -change-kind flip switches.
				fmt.Fprintf(&b, "  - {address: %s, labels: {app: svc-0, pool: peak, traffic.sextant.io/state: keepalive}}\n", addr)
				continue
			}
			fmt.Fprintf(&b, "  - {address: %s, labels: {app: svc-%d}}\n", addr, s)
		}
	}
	tmp := filepath.Join(dir, ".mesh.yaml.tmp")
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, "mesh.yaml"))
}

// writeExtras writes a VirtualService for svc-0 (generation g sets its
// timeout, so each generation is a config change) and, with -scoped, a
// Sidecar per namespace.
func writeExtras(dir string, c config, g int) error {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: svc-0, namespace: ns0}\nspec:\n  hosts: [svc-0.ns0.svc.cluster.local]\n  http:\n  - route: [{destination: {host: svc-0.ns0.svc.cluster.local}}]\n    timeout: %ds\n", 10+g)
	if c.scoped {
		for ns := range 10 {
			fmt.Fprintf(&b, "---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: default, namespace: ns%d}\nspec:\n  egress:\n  - hosts: [\"./*\"]\n", ns)
		}
	}
	tmp := filepath.Join(dir, ".extras.yaml.tmp")
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, "extras.yaml"))
}

// flip switches svc-0's peak pool to state through the server's
// traffic API, as `sextantctl traffic set` does.
func flip(mon, state string) error {
	body := fmt.Sprintf(`{"service":"svc-0.ns0.svc.cluster.local","selector":{"pool":"peak"},"state":%q}`, state)
	resp, err := http.Post(mon+"/api/v1/traffic", "application/json", strings.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("traffic set: %s: %s", resp.Status, b)
	}
	return nil
}

type pushRecord struct {
	ID          uint64        `json:"id"`
	Full        bool          `json:"full"`
	Sent        int           `json:"sent"`
	Resources   int           `json:"resources"`
	Bytes       int           `json:"bytes"`
	Converged   *time.Time    `json:"converged"`
	ConvergedIn time.Duration `json:"convergedInNanos"`
}

func pushLog(mon string) []pushRecord {
	resp, err := http.Get(mon + "/debug/push_log")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var out []pushRecord
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return out
}

func lastPush(mon string) pushRecord {
	l := pushLog(mon)
	if len(l) == 0 {
		return pushRecord{}
	}
	return l[len(l)-1]
}

// churn moves endpoints at churnRate events per second for churnDuration
// (each event a separate file write, as a registry would see them) and
// reports the server-measured convergence of the pushes they caused: from
// the first change merged into a push until every proxy ACKed it.
func churn(c config, meshDir, mon string) error {
	first := lastPush(mon).ID
	interval := time.Duration(float64(time.Second) / c.churnRate)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	end := time.Now().Add(c.churnDuration)
	events := 0
	for g := 1000; time.Now().Before(end); g++ {
		<-tick.C
		if err := writeMesh(meshDir, c.services, c.endpoints, g); err != nil {
			return err
		}
		events++
	}
	time.Sleep(2 * time.Second)
	var conv []time.Duration
	var pushes, unconverged int
	var firstHalf, secondHalf []time.Duration
	for _, r := range pushLog(mon) {
		if r.ID <= first {
			continue
		}
		pushes++
		if r.Converged == nil {
			unconverged++
			continue
		}
		conv = append(conv, r.ConvergedIn)
	}
	half := len(conv) / 2
	firstHalf, secondHalf = append(firstHalf, conv[:half]...), append(secondHalf, conv[half:]...)
	for _, l := range [][]time.Duration{conv, firstHalf, secondHalf} {
		sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
	}
	fmt.Printf("churn: %d endpoint events at %.0f/s over %v → %d pushes (%d not converged); convergence p50 %v p99 %v max %v; first half p99 %v, second half p99 %v (no backlog growth if similar)\n",
		events, c.churnRate, c.churnDuration, pushes, unconverged, pct(conv, 50), pct(conv, 99), pct(conv, 100), pct(firstHalf, 99), pct(secondHalf, 99))
	return nil
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func waitReady(url string) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("server not ready at %s", url)
}

// waitAllSince returns, for each client, how long after t0 its first
// response of typeURL arrived.
func waitAllSince(clients []*adsclient.Client, typeURL string, t0 time.Time, timeout time.Duration) []time.Duration {
	var mu sync.Mutex
	var out []time.Duration
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			deadline := time.After(timeout)
			for {
				select {
				case e := <-c.Events():
					if e.TypeURL == typeURL && e.At.After(t0) {
						mu.Lock()
						out = append(out, e.At.Sub(t0))
						mu.Unlock()
						return
					}
				case <-deadline:
					return
				case <-c.Done():
					return
				}
			}
		}()
	}
	wg.Wait()
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// closed counts clients whose stream ended and returns one's error.
func closed(clients []*adsclient.Client) (int, error) {
	n := 0
	var first error
	for _, c := range clients {
		select {
		case <-c.Done():
			n++
			if first == nil {
				first = c.Err()
			}
		default:
		}
	}
	return n, first
}

func drain(clients []*adsclient.Client) {
	for _, c := range clients {
		for {
			select {
			case <-c.Events():
				continue
			default:
			}
			break
		}
	}
}

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := (len(d)*p+99)/100 - 1
	if i < 0 {
		i = 0
	}
	if i >= len(d) {
		i = len(d) - 1
	}
	return d[i].Round(time.Millisecond)
}

func rss(pid int) float64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if strings.HasPrefix(s.Text(), "VmRSS:") {
			kb, _ := strconv.ParseFloat(strings.Fields(s.Text())[1], 64)
			return kb / 1024
		}
	}
	return 0
}

func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b)[strings.LastIndexByte(string(b), ')')+2:])
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100
}

func httpGet(url string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var b strings.Builder
	s := bufio.NewScanner(resp.Body)
	s.Buffer(make([]byte, 1<<20), 1<<20)
	for s.Scan() {
		b.WriteString(s.Text())
		b.WriteByte('\n')
	}
	return b.String(), nil
}

func download(url, path string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(f, resp.Body)
	return err
}

func scrape(url, metric string) float64 {
	body, err := httpGet(url)
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, metric+" ") {
			v, _ := strconv.ParseFloat(strings.TrimPrefix(l, metric+" "), 64)
			return v
		}
	}
	return -1
}

// bearer sends a token as istio-agent does.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearer) RequireTransportSecurity() bool { return true }
