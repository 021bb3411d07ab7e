package etcdclient

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	v1 "github.com/sextant-mesh/sextant/api/etcd/v1"
	"github.com/sextant-mesh/sextant/registry/etcd/etcdtest"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func get(t *testing.T, cli *clientv3.Client, key string) *clientv3.GetResponse {
	t.Helper()
	resp, err := cli.Get(testCtx(t), key)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func waitGone(t *testing.T, cli *clientv3.Client, key string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for len(get(t, cli, key).Kvs) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%s still exists", key)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func echo(addr string) Registration {
	return Registration{
		Service: v1.Service{Host: "echo.example.com", Namespace: "default",
			Ports: []v1.Port{{Name: "http", Number: 8080}}},
		Instance: v1.Instance{Address: addr, Ports: map[string]uint32{"http": 18080}, Labels: map[string]string{"v": "1"}},
		TTL:      2 * time.Second,
	}
}

func TestRegisterKeepAliveClose(t *testing.T) {
	srv := etcdtest.Start(t)
	raw := srv.Client(t)
	c, err := Dial(Config{Endpoints: srv.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	reg, err := c.Register(testCtx(t), echo("10.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	if !reg.ServiceCreated() {
		t.Error("service record not created")
	}
	if want := "/sextant/v1/instances/default/echo.example.com/10.0.0.1"; reg.Key() != want {
		t.Errorf("key %s, want %s", reg.Key(), want)
	}
	svc := get(t, raw, "/sextant/v1/services/default/echo.example.com")
	if len(svc.Kvs) != 1 || svc.Kvs[0].Lease != 0 {
		t.Fatalf("service record: %v", svc.Kvs)
	}
	if _, err := v1.DecodeService(svc.Kvs[0].Value); err != nil {
		t.Errorf("service record invalid: %v", err)
	}

	// A second instance leaves the existing service alone.
	r2 := echo("10.0.0.2")
	r2.Service.Ports = []v1.Port{{Name: "grpc", Number: 9090}}
	r2.ID = "worker-2"
	reg2, err := c.Register(testCtx(t), r2)
	if err != nil {
		t.Fatal(err)
	}
	if reg2.ServiceCreated() || !strings.HasSuffix(reg2.Key(), "/10.0.0.2:worker-2") {
		t.Errorf("second registration: created=%v key=%s", reg2.ServiceCreated(), reg2.Key())
	}

	// The lease outlives its TTL while kept alive.
	time.Sleep(3 * time.Second)
	inst := get(t, raw, reg.Key())
	if len(inst.Kvs) != 1 || inst.Kvs[0].Lease != int64(reg.Lease()) {
		t.Fatalf("instance not kept alive: %v", inst.Kvs)
	}
	var in v1.Instance
	if err := json.Unmarshal(inst.Kvs[0].Value, &in); err != nil || in.APIVersion != v1.APIVersion || in.Ports["http"] != 18080 {
		t.Errorf("instance record %s (%v)", inst.Kvs[0].Value, err)
	}

	// Update: drain before leaving.
	in.Health = v1.HealthDraining
	if err := reg.Update(testCtx(t), in); err != nil {
		t.Fatal(err)
	}
	if got := get(t, raw, reg.Key()); !strings.Contains(string(got.Kvs[0].Value), `"draining"`) {
		t.Errorf("update not written: %s", got.Kvs[0].Value)
	}
	in.Address = "10.0.0.3"
	if err := reg.Update(testCtx(t), in); err == nil {
		t.Error("update changed the address")
	}

	if err := reg.Close(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if err := reg.Close(testCtx(t)); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if n := len(get(t, raw, reg.Key()).Kvs); n != 0 {
		t.Error("instance still registered after Close")
	}
	if err := reg2.Close(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if n := len(get(t, raw, "/sextant/v1/services/default/echo.example.com").Kvs); n != 1 {
		t.Error("the service record should outlive its instances")
	}
}

// TestReRegisterAfterLeaseLoss: when the lease is revoked behind the
// client's back (as when it expires while etcd is unreachable), the
// instance is written again with a new lease.
func TestReRegisterAfterLeaseLoss(t *testing.T) {
	srv := etcdtest.Start(t)
	raw := srv.Client(t)
	c, err := New(raw, "/mesh")
	if err != nil {
		t.Fatal(err)
	}
	reg, err := c.Register(testCtx(t), echo("10.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close(context.Background())
	first := reg.Lease()
	if _, err := raw.Revoke(testCtx(t), first); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		kvs := get(t, raw, reg.Key()).Kvs
		if len(kvs) == 1 && kvs[0].Lease != int64(first) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("not registered again")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestCrashExpires: a client that stops refreshing (its process died)
// loses its instance after the TTL.
func TestCrashExpires(t *testing.T) {
	srv := etcdtest.Start(t)
	raw := srv.Client(t)
	c, err := Dial(Config{Endpoints: srv.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := c.Register(testCtx(t), echo("10.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	c.Close() // the connection dies with the "process"; no revoke
	waitGone(t, raw, reg.Key())
	select {
	case <-reg.done:
	case <-time.After(10 * time.Second):
		t.Error("keepalive goroutine still running after the client closed")
	}
}

func TestDeregisterAndList(t *testing.T) {
	srv := etcdtest.Start(t)
	raw := srv.Client(t)
	c, err := New(raw, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []Registration{echo("10.0.0.1"), echo("10.0.0.2")} {
		if _, err := c.Register(testCtx(t), r); err != nil {
			t.Fatal(err)
		}
	}
	r := echo("10.0.0.1")
	r.ID = "b"
	if _, err := c.Register(testCtx(t), r); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Put(testCtx(t), "/sextant/v1/instances/default/echo.example.com/10.0.0.9", "{}"); err != nil {
		t.Fatal(err)
	}
	l, err := c.List(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Services) != 1 || len(l.Instances) != 3 || len(l.Invalid) != 1 || l.Revision == 0 {
		t.Fatalf("listing: %+v", l)
	}
	if l.Instances[0].Lease == 0 || l.Instances[0].Host != "echo.example.com" {
		t.Errorf("instance %+v", l.Instances[0])
	}
	keys, err := c.Deregister(testCtx(t), "default", "echo.example.com", "10.0.0.1")
	if err != nil || len(keys) != 2 {
		t.Fatalf("Deregister = %v, %v; want both instances at 10.0.0.1", keys, err)
	}
	l, err = c.List(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Instances) != 1 || l.Instances[0].Instance.Address != "10.0.0.2" {
		t.Errorf("after deregister: %+v", l.Instances)
	}
	if keys, err := c.Deregister(testCtx(t), "default", "echo.example.com", "10.0.0.1"); err != nil || len(keys) != 0 {
		t.Errorf("second Deregister = %v, %v", keys, err)
	}
}

func TestRegisterRejectsInvalid(t *testing.T) {
	srv := etcdtest.Start(t)
	c, err := New(srv.Client(t), "")
	if err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]Registration{
		"bad address": {Service: v1.Service{Host: "a.example.com", Namespace: "default"}, Instance: v1.Instance{Address: "nope"}},
		"bad host":    {Service: v1.Service{Host: "A", Namespace: "default"}, Instance: v1.Instance{Address: "10.0.0.1"}},
		"bad port":    {Service: v1.Service{Host: "a.example.com", Namespace: "default", Ports: []v1.Port{{Name: "http"}}}, Instance: v1.Instance{Address: "10.0.0.1"}},
		"bad id":      {Service: v1.Service{Host: "a.example.com", Namespace: "default"}, Instance: v1.Instance{Address: "10.0.0.1"}, ID: "a/b"},
	} {
		if _, err := c.Register(testCtx(t), r); err == nil {
			t.Errorf("%s: registered", name)
		}
	}
}
