package etcd

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	v1 "github.com/sextant-mesh/sextant/api/etcd/v1"
	"github.com/sextant-mesh/sextant/model"
	"github.com/sextant-mesh/sextant/registry/etcd/etcdclient"
	"github.com/sextant-mesh/sextant/registry/etcd/etcdtest"
)

const host = "echo.example.com"

func TestRecordsBecomeServicesAndEndpoints(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	// One record exists before the registry starts, the rest arrive by
	// watch.
	put(t, cli, svcKey("default", host), serviceJSON("default", host,
		`{"name":"http-web","number":8080,"targetPort":18080}`, `{"name":"grpc","number":9090,"protocol":"grpc"}`))
	r := startRegistry(t, srv.Endpoints(), "")

	rev := put(t, cli, instKey("default", host, "10.0.0.1"), instanceJSON("10.0.0.1",
		`"ports":{"grpc":19090},"labels":{"version":"v1","traffic.sextant.io/state":"keepalive"},`+
			`"locality":"eu/eu-1a","weight":3,"serviceAccount":"echo","health":"draining","network":"n1"`))
	put(t, cli, instKey("default", host, "10.0.0.2:b"), instanceJSON("10.0.0.2", ""))
	snap := waitFor(t, r.agg, "two endpoints", func(s *model.Snapshot) string {
		if got := endpointAddrs(s, host); got != "10.0.0.1,10.0.0.2(10.0.0.2:b)" {
			return "endpoints " + got
		}
		return ""
	})
	svc := snap.Service(host)
	wantPorts := []model.Port{
		{Name: "http-web", Number: 8080, Protocol: model.ProtocolHTTP, TargetPort: 18080},
		{Name: "grpc", Number: 9090, Protocol: model.ProtocolGRPC},
	}
	if fmt.Sprint(svc.Ports) != fmt.Sprint(wantPorts) {
		t.Errorf("ports = %v, want %v", svc.Ports, wantPorts)
	}
	if svc.Source.Registry != RegistryName || svc.Source.Location != svcKey("default", host) {
		t.Errorf("source = %+v", svc.Source)
	}
	if svc.CreationTime.IsZero() || svc.CreationTime.UnixNano() >= rev {
		t.Errorf("creation time %v should come from the create revision (< %d)", svc.CreationTime, rev)
	}
	ep := snap.Endpoints(host).Endpoints[0]
	if ep.Labels[model.TrafficStateLabel] != model.StateKeepalive || ep.Locality != "eu/eu-1a" || ep.Weight != 3 ||
		ep.Health != model.Draining || ep.ServiceAccount != "echo" || ep.Network != "n1" || ep.Ports["grpc"] != 19090 {
		t.Errorf("endpoint = %+v", ep)
	}
	if len(snap.Errors) != 0 {
		t.Errorf("errors: %v", snap.Errors)
	}

	// Update, delete an instance, delete the service.
	put(t, cli, instKey("default", host, "10.0.0.1"), instanceJSON("10.0.0.1", `"health":"unhealthy"`))
	del(t, cli, instKey("default", host, "10.0.0.2:b"))
	waitFor(t, r.agg, "update and delete", func(s *model.Snapshot) string {
		es := s.Endpoints(host)
		if es == nil || len(es.Endpoints) != 1 || es.Endpoints[0].Health != model.Unhealthy {
			return "endpoints " + endpointAddrs(s, host)
		}
		return ""
	})
	del(t, cli, svcKey("default", host))
	waitFor(t, r.agg, "service gone", func(s *model.Snapshot) string {
		if s.Service(host) != nil {
			return "service still there"
		}
		return ""
	})
}

func TestEventsAreTyped(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	put(t, cli, svcKey("default", host), serviceJSON("default", host))
	put(t, cli, svcKey("default", "other.example.com"), serviceJSON("default", "other.example.com"))
	r := startRegistry(t, srv.Endpoints(), "")
	waitFor(t, r.agg, "services", func(s *model.Snapshot) string {
		if len(s.Services()) != 2 {
			return "no services"
		}
		return ""
	})
	rev := put(t, cli, instKey("default", host, "10.0.0.1"), instanceJSON("10.0.0.1", ""))
	waitApplied(t, r.reg, rev)
	_, evs := r.agg.Build()
	want := []model.Event{{Kind: model.EventEndpoints, Service: model.ServiceKey{Namespace: "default", Hostname: host}}}
	if fmt.Sprint(evs) != fmt.Sprint(want) {
		t.Errorf("events = %v, want %v (an instance change touches only its service's endpoints)", evs, want)
	}
	// Writing the same value again changes nothing.
	rev = put(t, cli, instKey("default", host, "10.0.0.1"), instanceJSON("10.0.0.1", ""))
	waitApplied(t, r.reg, rev)
	if _, evs := r.agg.Build(); len(evs) != 0 {
		t.Errorf("rewrite of an unchanged record recorded %v", evs)
	}
}

func TestInvalidRecords(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	put(t, cli, svcKey("default", host), serviceJSON("default", host))
	put(t, cli, instKey("default", host, "10.0.0.1"), instanceJSON("10.0.0.1", ""))
	r := startRegistry(t, srv.Endpoints(), "")

	bad := instKey("default", host, "10.0.0.2")
	badSvc := svcKey("default", "bad.example.com")
	put(t, cli, bad, instanceJSON("10.0.0.2", `"Labels":{"a":"b"}`))
	put(t, cli, badSvc, serviceJSON("default", "bad.example.com", `{"name":"http","number":70000}`))
	put(t, cli, instKey("default", host, "10.0.0.3"), instanceJSON("10.0.0.4", ""))
	put(t, cli, "/sextant/v1/services/Default/x", serviceJSON("default", "x"))
	put(t, cli, "/sextant/v9/future", "{}")
	snap := waitFor(t, r.agg, "errors", func(s *model.Snapshot) string {
		if len(s.Errors) != 5 {
			return fmt.Sprintf("%d errors", len(s.Errors))
		}
		return ""
	})
	want := []string{
		`/sextant/v1/instances/default/echo.example.com/10.0.0.2: Instance default/echo.example.com/10.0.0.2: Labels: unknown field "Labels"`,
		`/sextant/v1/instances/default/echo.example.com/10.0.0.3: Instance default/echo.example.com/10.0.0.3: address: key must end in the instance's address "10.0.0.4", optionally followed by :<id>, not "10.0.0.3"`,
		`/sextant/v1/services/Default/x: namespace "Default" in key is not a lower-case DNS label`,
		`/sextant/v1/services/default/bad.example.com: Service default/bad.example.com: ports[0].number: port number 70000 is out of range 1-65535`,
		`/sextant/v9/future: not a key of the sextant.io/v1 schema (/sextant/v1/services/, /sextant/v1/instances/ or /sextant/istio/); ignored`,
	}
	for i, e := range snap.Errors {
		if e.Error() != want[i] {
			t.Errorf("error %d = %s\nwant %s", i, e.Error(), want[i])
		}
		if e.Registry != RegistryName || !strings.HasPrefix(e.Location, "/sextant/") {
			t.Errorf("error %d: registry %q location %q", i, e.Registry, e.Location)
		}
	}
	if !snap.Errors[4].Warning {
		t.Error("an unknown key should be a warning")
	}
	if got := endpointAddrs(snap, host); got != "10.0.0.1" {
		t.Errorf("endpoints = %s, want only the valid instance", got)
	}
	if snap.Service("bad.example.com") != nil {
		t.Error("an invalid service is served")
	}

	// A valid record turned invalid is no longer served.
	put(t, cli, instKey("default", host, "10.0.0.1"), instanceJSON("10.0.0.1", `"weight":-1`))
	waitFor(t, r.agg, "invalid update", func(s *model.Snapshot) string {
		if s.Endpoints(host) != nil {
			return "endpoints " + endpointAddrs(s, host)
		}
		return ""
	})

	// Fixing or deleting the keys clears their errors.
	put(t, cli, bad, instanceJSON("10.0.0.2", `"labels":{"a":"b"}`))
	put(t, cli, instKey("default", host, "10.0.0.1"), instanceJSON("10.0.0.1", ""))
	put(t, cli, badSvc, serviceJSON("default", "bad.example.com"))
	del(t, cli, instKey("default", host, "10.0.0.3"))
	del(t, cli, "/sextant/v1/services/Default/x")
	del(t, cli, "/sextant/v9/future")
	waitFor(t, r.agg, "errors cleared", func(s *model.Snapshot) string {
		if len(s.Errors) != 0 {
			return fmt.Sprintf("%d errors", len(s.Errors))
		}
		if got := endpointAddrs(s, host); got != "10.0.0.1,10.0.0.2" {
			return "endpoints " + got
		}
		if s.Service("bad.example.com") == nil {
			return "fixed service missing"
		}
		return ""
	})
}

const seYAML = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings.example.com]
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: ratings}}
`

const weJSON = `{"apiVersion":"networking.istio.io/v1","kind":"WorkloadEntry",
 "metadata":{"name":"ratings-1","namespace":"default"},
 "spec":{"address":"10.2.0.1","labels":{"app":"ratings"}}}`

func TestIstioDocuments(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	r := startRegistry(t, srv.Endpoints(), "")
	put(t, cli, "/sextant/istio/ratings-se.yaml", seYAML)
	put(t, cli, "/sextant/istio/ratings-we.json", weJSON)
	// An instance record attaches to a ServiceEntry's host too.
	put(t, cli, instKey("default", "ratings.example.com", "10.2.0.2"), instanceJSON("10.2.0.2", ""))
	snap := waitFor(t, r.agg, "ServiceEntry with endpoints", func(s *model.Snapshot) string {
		if got := endpointAddrs(s, "ratings.example.com"); got != "10.2.0.1(ratings-1),10.2.0.2" {
			return "endpoints " + got
		}
		return ""
	})
	svc := snap.Service("ratings.example.com")
	if svc.Source.Kind != "ServiceEntry" || !strings.HasPrefix(svc.Source.Location, "/sextant/istio/ratings-se.yaml") {
		t.Errorf("source = %+v", svc.Source)
	}
	if svc.CreationTime.IsZero() {
		t.Error("creation time should come from the create revision")
	}

	// A broken document is rejected as a whole and reported; its objects
	// are not served.
	put(t, cli, "/sextant/istio/ratings-we.json", `{"apiVersion":"networking.istio.io/v1","kind":"WorkloadEntry","metadata":{"name":"ratings-1"},"spec":{"address":"10.2.0.1","bogus":1}}`)
	snap = waitFor(t, r.agg, "rejected WorkloadEntry", func(s *model.Snapshot) string {
		if got := endpointAddrs(s, "ratings.example.com"); got != "10.2.0.2" {
			return "endpoints " + got
		}
		if len(s.Errors) != 2 {
			return fmt.Sprintf("%d errors", len(s.Errors))
		}
		return ""
	})
	for _, e := range snap.Errors {
		if !strings.HasPrefix(e.Location, "/sextant/istio/ratings-we.json") {
			t.Errorf("error does not name the key: %s", e.Error())
		}
	}

	// A record and a ServiceEntry for the same host: the older wins, the
	// other gets a warning on its key.
	rec := svcKey("default", "ratings.example.com")
	put(t, cli, rec, serviceJSON("default", "ratings.example.com"))
	snap = waitFor(t, r.agg, "conflict warning", func(s *model.Snapshot) string {
		for _, e := range s.Errors {
			if e.Location == rec && e.Warning && strings.Contains(e.Message, "older and wins") {
				return ""
			}
		}
		return "no warning"
	})
	if got := snap.Service("ratings.example.com").Source.Kind; got != "ServiceEntry" {
		t.Errorf("winner is %s, want the older ServiceEntry", got)
	}
	del(t, cli, "/sextant/istio/ratings-se.yaml")
	del(t, cli, "/sextant/istio/ratings-we.json")
	waitFor(t, r.agg, "record takes over", func(s *model.Snapshot) string {
		if svc := s.Service("ratings.example.com"); svc == nil || svc.Source.Kind != v1.KindService {
			return "not the record"
		}
		if len(s.Errors) != 0 {
			return fmt.Sprintf("%d errors", len(s.Errors))
		}
		return ""
	})
}

func TestLeaseExpiry(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	put(t, cli, svcKey("default", host), serviceJSON("default", host))
	r := startRegistry(t, srv.Endpoints(), "")
	lease, err := cli.Grant(ctx(t), 2)
	if err != nil {
		t.Fatal(err)
	}
	put(t, cli, instKey("default", host, "10.0.0.1"), instanceJSON("10.0.0.1", ""), clientv3.WithLease(lease.ID))
	put(t, cli, instKey("default", host, "10.0.0.2"), instanceJSON("10.0.0.2", ""))
	waitFor(t, r.agg, "instances", func(s *model.Snapshot) string {
		if got := endpointAddrs(s, host); got != "10.0.0.1,10.0.0.2" {
			return "endpoints " + got
		}
		return ""
	})
	start := time.Now()
	waitFor(t, r.agg, "leased instance expired", func(s *model.Snapshot) string {
		if got := endpointAddrs(s, host); got != "10.0.0.2" {
			return "endpoints " + got
		}
		return ""
	})
	t.Logf("instance removed %v after registration (TTL 2s)", time.Since(start).Round(10*time.Millisecond))
}

// TestUnreachableAtStart: the shard stays unsynced while etcd cannot be
// reached and loads once it can.
func TestUnreachableAtStart(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	put(t, cli, svcKey("default", host), serviceJSON("default", host))
	proxy := etcdtest.NewProxy(t, srv.Endpoints()[0])
	proxy.Pause()
	r := startRegistry(t, proxy.Endpoints(), "")
	time.Sleep(1500 * time.Millisecond)
	if snap, _ := r.agg.Build(); snap.Synced {
		t.Fatal("synced without reaching etcd")
	}
	proxy.Resume()
	waitFor(t, r.agg, "loaded", func(s *model.Snapshot) string {
		if s.Service(host) == nil {
			return "no service"
		}
		return ""
	})
}

// TestRestart: etcd stops in the middle of a stream of changes and comes
// back on the same data; the model keeps serving meanwhile and ends equal
// to etcd, without listing again.
func TestRestart(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	put(t, cli, svcKey("default", host), serviceJSON("default", host))
	r := startRegistry(t, srv.Endpoints(), "")
	for i := range 50 {
		put(t, cli, instKey("default", host, fmt.Sprintf("10.0.1.%d", i)), instanceJSON(fmt.Sprintf("10.0.1.%d", i), ""))
	}
	// Stop at once: the registry may not have seen the last writes yet.
	srv.Stop()
	time.Sleep(500 * time.Millisecond)
	if snap, _ := r.agg.Build(); snap.Service(host) == nil {
		t.Fatal("the last good state is not served while etcd is away")
	}
	srv.Start()
	for i := range 50 {
		if i%2 == 0 {
			del(t, cli, instKey("default", host, fmt.Sprintf("10.0.1.%d", i)))
		}
		put(t, cli, instKey("default", host, fmt.Sprintf("10.0.2.%d", i)), instanceJSON(fmt.Sprintf("10.0.2.%d", i), ""))
	}
	snap, _ := checkEqualsEtcd(t, r, cli)
	if n := len(snap.Endpoints(host).Endpoints); n != 75 {
		t.Errorf("%d endpoints, want 75", n)
	}
	if n := r.reg.lists.Load(); n != 1 {
		t.Errorf("listed %d times, want 1 (resume by watch)", n)
	}
}

// TestCompactionWhileDisconnected: changes and a compaction happen while
// the registry cannot reach etcd; it lists again, reconciles, and writes
// only what changed.
func TestCompactionWhileDisconnected(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	proxy := etcdtest.NewProxy(t, srv.Endpoints()[0])
	hosts := []string{"a.example.com", "b.example.com", "c.example.com"}
	for _, h := range hosts {
		put(t, cli, svcKey("default", h), serviceJSON("default", h))
		for i := range 3 {
			put(t, cli, instKey("default", h, fmt.Sprintf("10.0.0.%d", i)), instanceJSON(fmt.Sprintf("10.0.0.%d", i), ""))
		}
	}
	r := startRegistry(t, proxy.Endpoints(), "")
	checkEqualsEtcd(t, r, cli)
	r.agg.Build() // drop the load's events

	proxy.Pause()
	del(t, cli, instKey("default", "a.example.com", "10.0.0.0"))
	put(t, cli, instKey("default", "b.example.com", "10.0.0.1"), instanceJSON("10.0.0.1", `"weight":5`))
	put(t, cli, instKey("default", "b.example.com", "10.0.0.9"), instanceJSON("10.0.0.9", ""))
	// c is rewritten with the same content: a new revision, no change.
	put(t, cli, instKey("default", "c.example.com", "10.0.0.1"), instanceJSON("10.0.0.1", ""))
	del(t, cli, svcKey("default", "a.example.com"))
	put(t, cli, svcKey("default", "d.example.com"), serviceJSON("default", "d.example.com"))
	srv.Compact(t, cli)
	proxy.Resume()

	snap, evs := checkEqualsEtcd(t, r, cli)
	if n := r.reg.lists.Load(); n != 2 {
		t.Errorf("listed %d times, want 2 (initial, after compaction)", n)
	}
	if snap.Service("a.example.com") != nil || snap.Service("d.example.com") == nil {
		t.Errorf("services not reconciled:\n%s", describe(snap))
	}
	for _, e := range evs {
		if e.Service.Hostname == "c.example.com" {
			t.Errorf("unchanged service c got event %v", e)
		}
	}
	if len(evs) == 0 {
		t.Error("no events for the changes")
	}
}

// TestReplicasConverge: two registries (two aggregators, as two Sextant
// replicas) on the same etcd, one started late, build identical models.
func TestReplicasConverge(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	a := startRegistry(t, srv.Endpoints(), "")
	write := func(round int) {
		for i := range 20 {
			h := fmt.Sprintf("s%d.example.com", i%5)
			put(t, cli, svcKey("default", h), serviceJSON("default", h,
				fmt.Sprintf(`{"name":"http","number":%d}`, 8000+round)))
			put(t, cli, instKey("default", h, fmt.Sprintf("10.0.%d.%d:r%d", round, i, round)), instanceJSON(fmt.Sprintf("10.0.%d.%d", round, i),
				fmt.Sprintf(`"labels":{"round":"r%d","i":"%d"},"ports":{"http":%d}`, round, i, 9000+i)))
		}
		put(t, cli, "/sextant/istio/ratings.yaml", seYAML)
		put(t, cli, fmt.Sprintf("/sextant/istio/we-%d.json", round), strings.Replace(weJSON, "ratings-1", fmt.Sprintf("ratings-%d", round), 1))
		put(t, cli, svcKey("default", "ratings.example.com"), serviceJSON("default", "ratings.example.com"))
		put(t, cli, instKey("default", host, "10.9.9.9"), `{"bad json`)
		del(t, cli, instKey("default", "s1.example.com", fmt.Sprintf("10.0.%d.1:r%d", round, round)))
	}
	write(0)
	b := startRegistry(t, srv.Endpoints(), "")
	write(1)
	write(2)
	rev := put(t, cli, "/sextant/istio/last.yaml", "")
	waitApplied(t, a.reg, rev)
	waitApplied(t, b.reg, rev)
	sa, _ := a.agg.Build()
	sb, _ := b.agg.Build()
	da, db := describe(sa), describe(sb)
	if da != db {
		t.Errorf("replicas differ:\n--- a\n%s\n--- b\n%s", da, db)
	}
	if len(sa.Services()) != 6 || len(sa.Errors) == 0 {
		t.Errorf("unexpected model:\n%s", da)
	}
	t.Logf("model:\n%s", da)
}

// TestNoGoroutineLeak: Run stops everything it started.
func TestNoGoroutineLeak(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	put(t, cli, svcKey("default", host), serviceJSON("default", host))
	before := runtime.NumGoroutine()
	r := startRegistry(t, srv.Endpoints(), "/sextant/")
	waitFor(t, r.agg, "loaded", func(s *model.Snapshot) string {
		if s.Service(host) == nil {
			return "no service"
		}
		return ""
	})
	r.stop()
	checkGoroutines(t, before)
}

// TestRunTwice and configuration errors.
func TestRunErrors(t *testing.T) {
	agg := model.NewAggregator()
	reg := New(Config{}, agg.NewShard(RegistryName), nil)
	if err := reg.Run(t.Context()); err == nil || !strings.Contains(err.Error(), "no etcd endpoints") {
		t.Errorf("Run without endpoints: %v", err)
	}
	if err := reg.Run(t.Context()); err == nil || !strings.Contains(err.Error(), "more than once") {
		t.Errorf("second Run: %v", err)
	}
	for _, cc := range []etcdclient.Config{
		{Endpoints: []string{"x:1"}, Prefix: "relative"},
		{Endpoints: []string{"x:1"}, CertFile: "c.pem"},
		{Endpoints: []string{"x:1"}, CAFile: "/does/not/exist"},
		{Endpoints: []string{"x:1"}, Username: "u"},
	} {
		if cfg := (Config{Config: cc}); cfg.Validate() == nil {
			t.Errorf("Validate(%+v) = nil", cfg)
		}
	}
}
