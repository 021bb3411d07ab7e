package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sextant-mesh/sextant/discovery/translate"
	"github.com/sextant-mesh/sextant/internal/adsclient"
	"github.com/sextant-mesh/sextant/internal/testenv"
)

// readySample is one GET /ready.
type readySample struct {
	start time.Time
	code  int
}

// pollReady samples /ready until stop is closed.
func pollReady(t *testing.T, url string, stop <-chan struct{}) <-chan []readySample {
	out := make(chan []readySample, 1)
	client := &http.Client{Timeout: 2 * time.Second}
	go func() {
		var samples []readySample
		defer func() { out <- samples }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			start := time.Now()
			resp, err := client.Get(url + "/ready")
			if err != nil {
				t.Errorf("GET /ready: %v", err)
				return
			}
			resp.Body.Close()
			samples = append(samples, readySample{start: start, code: resp.StatusCode})
		}
	}()
	return out
}

// TestDrain: Drain makes /ready fail before any stream closes, refuses new
// streams with UNAVAILABLE and closes the connected ones spread over the
// window, each with UNAVAILABLE so the proxy reconnects elsewhere.
func TestDrain(t *testing.T) {
	const (
		n      = 50
		window = time.Second
	)
	dir := t.TempDir()
	testenv.WriteFile(t, dir+"/mesh.yaml", meshYAML)
	env := testenv.Start(t, dir, testenv.Options{})
	cc := dial(t, env.Addr)
	clients := make([]*adsclient.Client, n)
	for i := range clients {
		clients[i] = startClient(t, cc, fmt.Sprintf("drain-%d", i), "grpc", adsclient.Options{Delta: i%2 == 1})
	}
	waitSynced(t, env, n)

	// Watch every stream: when it closes, and whether the server still
	// said ready at that moment.
	closedAt := make([]time.Time, n)
	readyAtClose := make([]bool, n)
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-c.Done():
				closedAt[i] = time.Now()
				readyAtClose[i] = env.Server.IsReady()
			case <-time.After(window + 10*time.Second):
			}
		}()
	}
	if code := httpStatus(t, env.Monitor.URL+"/ready"); code != http.StatusOK {
		t.Fatalf("/ready before the drain: %d, want 200", code)
	}
	stopPoll := make(chan struct{})
	polled := pollReady(t, env.Monitor.URL, stopPoll)

	start := time.Now()
	drained := make(chan time.Duration, 1)
	go func() {
		env.Server.Drain(context.Background(), window)
		drained <- time.Since(start)
	}()

	// A proxy that connects during the drain is refused.
	testenv.Eventually(t, 5*time.Second, func() string {
		if env.Server.IsReady() {
			return "the drain has not started"
		}
		return ""
	})
	late := startClient(t, cc, "drain-late", "grpc", adsclient.Options{})
	select {
	case <-late.Done():
		if st := status.Convert(late.Err()); st.Code() != codes.Unavailable {
			t.Errorf("a stream opened while draining ended with %v, want Unavailable", late.Err())
		} else {
			t.Logf("new stream refused: %s", st.Message())
		}
	case <-time.After(5 * time.Second):
		t.Error("a stream opened while draining was not refused")
	}

	var drainTook time.Duration
	select {
	case drainTook = <-drained:
	case <-time.After(window + 10*time.Second):
		t.Fatal("Drain did not return")
	}
	wg.Wait()
	close(stopPoll)
	samples := <-polled

	var offsets []time.Duration
	firstClose := time.Time{}
	for i, c := range clients {
		if closedAt[i].IsZero() {
			t.Errorf("stream %d was not closed by the drain", i)
			continue
		}
		if readyAtClose[i] {
			t.Errorf("stream %d closed while the server still reported ready", i)
		}
		// grpc-go's transport (SEXTANT_XDS_TRANSPORT=grpc) can only
		// cancel a stream from the server side, so the client sees
		// Canceled there; grpclite sends Unavailable with the reason.
		want := codes.Unavailable
		if os.Getenv("SEXTANT_XDS_TRANSPORT") == "grpc" {
			want = codes.Canceled
		}
		if st := status.Convert(c.Err()); st.Code() != want {
			t.Errorf("stream %d ended with %v, want %v", i, c.Err(), want)
		}
		offsets = append(offsets, closedAt[i].Sub(start))
		if firstClose.IsZero() || closedAt[i].Before(firstClose) {
			firstClose = closedAt[i]
		}
	}
	if len(offsets) == 0 {
		t.FailNow()
	}
	// /ready: never 200 once a stream had closed, and 503 at the end.
	var before, after200, after503 int
	for _, s := range samples {
		switch {
		case s.start.Before(start):
			before++
		case s.start.After(firstClose) && s.code == http.StatusOK:
			after200++
		case s.start.After(firstClose):
			after503++
		}
	}
	t.Logf("/ready samples: %d before Drain, %d after the first close (%d of them 200)", before, after200+after503, after200)
	if after200 > 0 {
		t.Errorf("/ready answered 200 %d times after a stream had closed", after200)
	}
	if code := httpStatus(t, env.Monitor.URL+"/ready"); code != http.StatusServiceUnavailable {
		t.Errorf("/ready after the drain: %d, want 503", code)
	}

	// Spread over the window.
	slices.Sort(offsets)
	lo, hi := offsets[0], offsets[len(offsets)-1]
	pct := func(p int) time.Duration { return offsets[(len(offsets)-1)*p/100] }
	t.Logf("drain of %d streams over %v took %v; close offsets: min %v p10 %v p50 %v p90 %v max %v",
		n, window, drainTook.Round(time.Millisecond), lo.Round(time.Millisecond), pct(10).Round(time.Millisecond),
		pct(50).Round(time.Millisecond), pct(90).Round(time.Millisecond), hi.Round(time.Millisecond))
	t.Logf("closes per 100ms of the window:\n%s", histogram(offsets, 100*time.Millisecond, window))
	if spread := hi - lo; spread < window/2 {
		t.Errorf("closes spread over %v, want at least half the %v window", spread, window)
	}
	if hi-lo <= 100*time.Millisecond {
		t.Error("every stream closed within 100ms")
	}
	if slack := window + time.Second; hi > slack {
		t.Errorf("last stream closed %v after Drain began, want within %v", hi, slack)
	}
}

// TestDrainStreamPendingAtStart: a stream that the server accepted before
// Drain began but registered only after (it had not sent its first request
// yet) must be closed by the drain too, not served forever.
//
// Known bug in discovery/xds (Drain snapshots Connections() once; serve()
// checks draining only on entry): skipped until fixed. Set
// SEXTANT_TEST_KNOWN_BUGS=1 to run it.
func TestDrainStreamPendingAtStart(t *testing.T) {
	if os.Getenv("SEXTANT_TEST_KNOWN_BUGS") == "" {
		t.Skip("known bug: a stream registered after Drain started is never drained; SEXTANT_TEST_KNOWN_BUGS=1 runs this")
	}
	dir := t.TempDir()
	testenv.WriteFile(t, dir+"/mesh.yaml", meshYAML)
	env := testenv.Start(t, dir, testenv.Options{})
	cc := dial(t, env.Addr)
	connected := startClient(t, cc, "connected", "grpc", adsclient.Options{})
	waitResources(t, connected, translate.ClusterType, 5)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Open the stream (the server's handler starts) but send nothing yet.
	stream, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // let the handler reach its first Recv

	drained := make(chan struct{})
	go func() {
		env.Server.Drain(context.Background(), 200*time.Millisecond)
		close(drained)
	}()
	// Drain marks the server unready before it takes its list of streams.
	testenv.Eventually(t, 5*time.Second, func() string {
		if env.Server.IsReady() {
			return "the drain has not started"
		}
		return ""
	})
	node := adsclient.Node("10.9.0.2", "pending", "default", "grpc", nil)
	if err := stream.Send(&discoverygrpc.DiscoveryRequest{TypeUrl: translate.ClusterType, Node: node}); err != nil {
		t.Fatal(err)
	}
	<-drained
	// Every stream must now be closed: read until the stream ends.
	ended := make(chan error, 1)
	go func() {
		for {
			if _, err := stream.Recv(); err != nil {
				ended <- err
				return
			}
		}
	}()
	select {
	case err := <-ended:
		if status.Code(err) != codes.Unavailable {
			t.Errorf("pending stream ended with %v, want Unavailable", err)
		}
	case <-time.After(2 * time.Second):
		t.Errorf("a stream accepted before Drain began is still open after Drain returned (%d connections registered)",
			len(env.Server.Connections()))
	}
}

func httpStatus(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// histogram renders how many offsets fall in each bucket of [0, window).
func histogram(offsets []time.Duration, bucket, window time.Duration) string {
	counts := make([]int, int((window+bucket-1)/bucket)+1)
	for _, o := range offsets {
		i := min(int(o/bucket), len(counts)-1)
		counts[i]++
	}
	var b strings.Builder
	for i, c := range counts {
		label := fmt.Sprintf("%4d-%dms", i*int(bucket/time.Millisecond), (i+1)*int(bucket/time.Millisecond))
		if i == len(counts)-1 {
			label = fmt.Sprintf(">=%dms", i*int(bucket/time.Millisecond))
		}
		fmt.Fprintf(&b, "  %-12s %2d %s\n", label, c, strings.Repeat("#", c))
	}
	return b.String()
}
