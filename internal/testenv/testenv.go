// Package testenv runs Sextant in-process for tests: the file registry, the
// push pipeline and a real gRPC xDS server on loopback, plus echo backends
// and xDS clients (grpc-go's own, and a raw ADS client).
package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/sextant-mesh/sextant/discovery/jwks"
	"github.com/sextant-mesh/sextant/discovery/trafficapi"
	"github.com/sextant-mesh/sextant/discovery/xds"
	"github.com/sextant-mesh/sextant/internal/grpclite"
	"github.com/sextant-mesh/sextant/model"
	"github.com/sextant-mesh/sextant/registry/file"
)

// Env is a running Sextant.
type Env struct {
	Dir     string
	Agg     *model.Aggregator
	Server  *xds.Server
	Traffic *trafficapi.API
	Addr    string // xDS address
	Monitor *httptest.Server
}

// Options tweak Start.
type Options struct {
	DebounceAfter time.Duration
	Mesh          model.MeshConfig
	// Server, if set, adjusts the xDS server options.
	Server func(*xds.Options)
	// Registry replaces the file registry on dir with another one, built
	// on agg; its setter (may be nil) serves traffic-state changes.
	Registry func(agg *model.Aggregator, log *slog.Logger) (run func(context.Context) error, setter Setter)
	// ReadyTimeout bounds the wait for the initial sync. Default 10s.
	ReadyTimeout time.Duration
	// Logger, if set, receives the server's and registry's logs.
	Logger *slog.Logger
	// GRPCTransport serves ADS with grpc-go alone (sextant serve
	// --xds-transport=grpc) instead of grpclite with a grpc-go fallback.
	// SEXTANT_XDS_TRANSPORT=grpc sets it for every test.
	GRPCTransport bool
}

// Setter changes traffic states in a registry.
type Setter func(ctx context.Context, namespace, host string, selector map[string]string, state string) error

// Start runs Sextant on dir until the test ends.
func Start(t testing.TB, dir string, o Options) *Env {
	t.Helper()
	if o.DebounceAfter == 0 {
		o.DebounceAfter = 20 * time.Millisecond
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() && os.Getenv("SEXTANT_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if o.Logger != nil {
		log = o.Logger
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 10 * time.Second
	}
	agg := model.NewAggregator()
	registry := o.Registry
	if registry == nil {
		registry = func(agg *model.Aggregator, log *slog.Logger) (func(context.Context) error, Setter) {
			reg := file.New(dir, agg.NewShard(file.RegistryName), log)
			return reg.Run, reg.SetTrafficState
		}
	}
	runRegistry, setter := registry(agg, log)
	xo := xds.Options{Logger: log, DebounceAfter: o.DebounceAfter, DebounceMax: time.Second, Mesh: o.Mesh}
	if o.Server != nil {
		o.Server(&xo)
	}
	srv := xds.New(agg, xo)
	fetcher := jwks.New(agg.NewShard(jwks.ShardName), srv.Snapshot, jwks.Options{Logger: log, Poll: 100 * time.Millisecond})
	mesh := o.Mesh
	if mesh.TrustDomain == "" {
		mesh = model.DefaultMeshConfig()
	}
	traffic := trafficapi.New(trafficapi.Options{Snapshots: srv, KeepaliveShare: mesh.KeepaliveShare,
		Set: func(ctx context.Context, registry, namespace, host string, selector map[string]string, state string) error {
			if setter == nil {
				return fmt.Errorf("registry %q cannot change traffic states", registry)
			}
			return setter(ctx, namespace, host, selector, state)
		}})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(xds.GRPCServerOptions()...)
	srv.Register(gs)
	// As sextant serve does: ADS on grpclite, anything else handed to
	// grpc-go.
	var lean *grpclite.Server
	gsLis := lis
	if !o.GRPCTransport && os.Getenv("SEXTANT_XDS_TRANSPORT") != "grpc" {
		lean = srv.NewLeanServer(log)
		gsLis = lean.Front(gs, lis.Addr())
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 5)
	go func() { _ = fetcher.Run(ctx); done <- struct{}{} }()
	go func() {
		if err := runRegistry(ctx); err != nil {
			t.Errorf("registry: %v", err)
		}
		done <- struct{}{}
	}()
	go func() { _ = srv.Run(ctx); done <- struct{}{} }()
	go func() { _ = gs.Serve(gsLis); done <- struct{}{} }()
	if lean != nil {
		go func() { _ = lean.Serve(lis); done <- struct{}{} }()
	} else {
		done <- struct{}{}
	}
	monMux := http.NewServeMux()
	monMux.Handle("/", srv.Handler())
	monMux.Handle(trafficapi.Path, traffic)
	mon := httptest.NewServer(monMux)
	t.Cleanup(func() {
		mon.Close()
		cancel()
		if lean != nil {
			lean.Stop()
		}
		gs.Stop()
		for range 5 {
			<-done
		}
	})
	select {
	case <-srv.Ready():
	case <-time.After(o.ReadyTimeout):
		t.Fatal("sextant did not become ready (the registry did not finish its initial sync)")
	}
	return &Env{Dir: dir, Agg: agg, Server: srv, Traffic: traffic, Addr: lis.Addr().String(), Monitor: mon}
}

// WriteFile writes a file into the config dir atomically (rename), as
// editors and config sync tools do.
func (e *Env) WriteFile(t testing.TB, name, content string) {
	t.Helper()
	WriteFile(t, filepath.Join(e.Dir, name), content)
}

// WriteFile writes path atomically.
func WriteFile(t testing.TB, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// GetJSON fetches a monitoring path and decodes it into v.
func (e *Env) GetJSON(t testing.TB, path string, v any) {
	t.Helper()
	resp, err := http.Get(e.Monitor.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %s: %s", path, resp.Status, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

// Get fetches a monitoring path as text.
func (e *Env) Get(t testing.TB, path string) string {
	t.Helper()
	resp, err := http.Get(e.Monitor.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// Eventually polls cond until it returns "" or the deadline passes.
func Eventually(t testing.TB, timeout time.Duration, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		if last = cond(); last == "" {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("condition not met within %v: %s", timeout, last)
}
