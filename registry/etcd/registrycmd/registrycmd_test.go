package registrycmd

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"sigs.k8s.io/yaml"

	"github.com/sextant-mesh/sextant/registry/etcd/etcdclient"
	"github.com/sextant-mesh/sextant/registry/etcd/etcdtest"
)

// syncBuffer is a bytes.Buffer safe for a command writing while the test
// reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// run executes `registry args…` in-process.
func run(ctx context.Context, args ...string) (string, error) {
	var out syncBuffer
	err := start(ctx, &out, args...)
	return out.String(), err
}

func start(ctx context.Context, out *syncBuffer, args ...string) error {
	cmd := NewCommand()
	cmd.SetArgs(args)
	cmd.SetOut(out)
	cmd.SetErr(out)
	cmd.SilenceUsage = true
	return cmd.ExecuteContext(ctx)
}

func waitKey(t *testing.T, cli *clientv3.Client, key string, present bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := cli.Get(context.Background(), key)
		if err != nil {
			t.Fatal(err)
		}
		if (len(resp.Kvs) > 0) == present {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("key %s present=%v, want %v", key, !present, present)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRegisterListDeregister(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	ep := "--etcd-endpoints=" + srv.Endpoints()[0]
	const key = "/sextant/v1/instances/shop/cart.example.com/10.1.0.7"

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- start(ctx, &out, "register", ep, "--namespace", "shop", "--service", "cart.example.com",
			"--address", "10.1.0.7", "--port", "http=8080", "--port", "grpc=9090", "--label", "version=v2", "--ttl", "3s")
	}()
	waitKey(t, cli, key, true)

	// A second instance, registered and deregistered by address.
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	var out2 syncBuffer
	done2 := make(chan error, 1)
	go func() {
		done2 <- start(ctx2, &out2, "register", ep, "--namespace", "shop", "--service", "cart.example.com",
			"--address", "10.1.0.8", "--port", "http=18080", "--id", "w1")
	}()
	waitKey(t, cli, key[:len(key)-1]+"8:w1", true)

	table, err := run(context.Background(), "list", ep)
	if err != nil {
		t.Fatal(err)
	}
	wantTable := `NAMESPACE  SERVICE           SERVICE PORTS        INSTANCE     PORTS                HEALTH   LABELS
shop       cart.example.com  http:8080,grpc:9090  10.1.0.7     grpc=9090,http=8080  healthy  version=v2
shop       cart.example.com  http:8080,grpc:9090  10.1.0.8:w1  http=18080           healthy  -
`
	if table != wantTable {
		t.Errorf("table:\n%s\nwant:\n%s", table, wantTable)
	}
	for _, format := range []string{"json", "yaml"} {
		s, err := run(context.Background(), "list", ep, "-o", format)
		if err != nil {
			t.Fatal(err)
		}
		js := []byte(s)
		if format == "yaml" {
			if js, err = yaml.YAMLToJSON(js); err != nil {
				t.Fatalf("yaml: %v\n%s", err, s)
			}
		}
		var l etcdclient.Listing
		if err := json.Unmarshal(js, &l); err != nil {
			t.Fatalf("%s: %v\n%s", format, err, s)
		}
		if len(l.Services) != 1 || len(l.Instances) != 2 || l.Instances[0].Instance.Labels["version"] != "v2" {
			t.Errorf("%s listing: %s", format, s)
		}
	}

	s, err := run(context.Background(), "deregister", ep, "--namespace", "shop", "--service", "cart.example.com", "--address", "10.1.0.8")
	if err != nil || !strings.Contains(s, "deregistered /sextant/v1/instances/shop/cart.example.com/10.1.0.8:w1") {
		t.Errorf("deregister: %v\n%s", err, s)
	}
	if _, err := run(context.Background(), "deregister", ep, "--service", "cart.example.com", "--address", "10.1.0.8"); err == nil {
		t.Error("deregistering nothing should fail")
	}
	cancel2()
	if err := <-done2; err != nil {
		t.Errorf("second register: %v", err)
	}

	// Interrupting register deregisters.
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("register: %v\n%s", err, out.String())
	}
	waitKey(t, cli, key, false)
	got := out.String()
	for _, want := range []string{"created service /sextant/v1/services/shop/cart.example.com", "registered " + key, "deregistered " + key} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	table, err = run(context.Background(), "list", ep)
	if err != nil || !strings.Contains(table, "<none>") {
		t.Errorf("service without instances: %v\n%s", err, table)
	}
}

// TestRegisterSIGTERM: the signal a process manager sends deregisters.
func TestRegisterSIGTERM(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	const key = "/mesh/v1/instances/default/a.example.com/10.0.0.1"
	done := make(chan error, 1)
	var out syncBuffer
	go func() {
		done <- start(context.Background(), &out, "register", "--etcd-endpoints", srv.Endpoints()[0], "--etcd-prefix", "/mesh",
			"--service", "a.example.com", "--address", "10.0.0.1", "--port", "tcp=5432")
	}()
	// The handler is installed before the key is written.
	waitKey(t, cli, key, true)
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("register did not stop on SIGTERM")
	}
	waitKey(t, cli, key, false)
}

func TestFlagErrors(t *testing.T) {
	for _, args := range [][]string{
		{"register", "--service", "a.example.com", "--address", "10.0.0.1"},                      // no --port
		{"register", "--service", "a.example.com", "--address", "10.0.0.1", "--port", "http"},    // no number
		{"register", "--service", "a.example.com", "--address", "10.0.0.1", "--port", "h=70000"}, // range
		{"register", "--service", "a.example.com", "--address", "10.0.0.1", "--port", "h=1", "--label", "x"},
		{"register", "--service", "a.example.com", "--address", "nope", "--port", "h=1", "--etcd-endpoints", "127.0.0.1:1"},
		{"list", "-o", "xml"},
		{"list", "--etcd-prefix", "relative"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if _, err := run(ctx, args...); err == nil {
			t.Errorf("%v: no error", args)
		}
		cancel()
	}
}

// TestUnreachableEtcd: without etcd, the commands say so at once, naming
// the endpoints, instead of waiting for --timeout.
func TestUnreachableEtcd(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	for _, args := range [][]string{
		{"list", "--etcd-endpoints", addr},
		{"deregister", "--namespace", "default", "--service", "a.example.com", "--address", "10.0.0.1", "--etcd-endpoints", addr},
	} {
		start := time.Now()
		_, err := run(context.Background(), args...)
		if err == nil || !strings.Contains(err.Error(), "cannot reach etcd at "+addr) {
			t.Errorf("%v: %v, want \"cannot reach etcd at %s\"", args, err, addr)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%v took %v to fail", args, d)
		}
	}
}
