package etcd

import (
	"reflect"
	"testing"

	"go.etcd.io/etcd/api/v3/mvccpb"

	v1 "github.com/sextant-mesh/sextant/api/etcd/v1"
	"github.com/sextant-mesh/sextant/model"
)

// apply runs one batch of changes through a state into a shard.
func apply(st *state, shard *model.Shard, fn func(b *batch)) {
	b := newBatch()
	fn(b)
	shard.Update(st.prepare(b).apply)
}

func TestProtocolsMapToModel(t *testing.T) {
	for _, p := range v1.Protocols {
		if model.ParseProtocol(p) == model.ProtocolUnsupported {
			t.Errorf("protocol %s is accepted by the schema but unknown to the model", p)
		}
	}
}

func TestDNSServiceWithoutInstances(t *testing.T) {
	agg := model.NewAggregator()
	shard := agg.NewShard(RegistryName)
	shard.MarkSynced()
	st := newState(v1.DefaultPrefix, testLogger(t))
	apply(st, shard, func(b *batch) {
		st.put(svcKey("default", "db.example.com"), []byte(`{"apiVersion":"sextant.io/v1","host":"db.example.com","namespace":"default",
			"ports":[{"name":"tcp","number":5432}],"resolution":"DNS"}`), 1, 1, 0, b)
	})
	snap, _ := agg.Build()
	if got := endpointAddrs(snap, "db.example.com"); got != "db.example.com" {
		t.Errorf("endpoints %q, want the host itself", got)
	}
	if snap.Service("db.example.com").Resolution != model.DNSLB {
		t.Error("resolution not DNS")
	}
	apply(st, shard, func(b *batch) {
		st.put(instKey("default", "db.example.com", "10.0.0.5"), []byte(instanceJSON("10.0.0.5", "")), 2, 2, 0, b)
	})
	snap, _ = agg.Build()
	if got := endpointAddrs(snap, "db.example.com"); got != "10.0.0.5" {
		t.Errorf("endpoints %q, want the instance only", got)
	}
}

func TestInterning(t *testing.T) {
	agg := model.NewAggregator()
	shard := agg.NewShard(RegistryName)
	st := newState(v1.DefaultPrefix, testLogger(t))
	k1, k2 := instKey("default", "a.example.com", "10.0.0.1"), instKey("default", "a.example.com", "10.0.0.2")
	apply(st, shard, func(b *batch) {
		st.put(k1, []byte(instanceJSON("10.0.0.1", `"labels":{"app":"a","v":"1"},"ports":{"http":80}`)), 1, 1, 0, b)
		st.put(k2, []byte(instanceJSON("10.0.0.2", `"labels":{"v":"1","app":"a"},"ports":{"http":80}`)), 2, 2, 0, b)
	})
	e1, e2 := st.records[k1].ep, st.records[k2].ep
	if reflect.ValueOf(e1.Labels).UnsafePointer() != reflect.ValueOf(e2.Labels).UnsafePointer() ||
		reflect.ValueOf(e1.Ports).UnsafePointer() != reflect.ValueOf(e2.Ports).UnsafePointer() {
		t.Error("equal label and port maps are not shared")
	}
	if len(st.labels.m) != 1 || len(st.ports.m) != 1 {
		t.Errorf("intern tables: %d labels, %d ports", len(st.labels.m), len(st.ports.m))
	}
	apply(st, shard, func(b *batch) {
		st.put(k1, []byte(instanceJSON("10.0.0.1", `"labels":{"app":"a","v":"2"}`)), 1, 3, 0, b)
		st.del(k2, 4, b)
	})
	if len(st.labels.m) != 1 || len(st.ports.m) != 0 {
		t.Errorf("after changes: %d labels, %d ports; want 1, 0", len(st.labels.m), len(st.ports.m))
	}
}

// TestRestoredKeyIsReparsed: a listing with a key at another revision than
// the applied one (etcd restored from a backup) replaces it.
func TestRestoredKeyIsReparsed(t *testing.T) {
	agg := model.NewAggregator()
	shard := agg.NewShard(RegistryName)
	shard.MarkSynced()
	st := newState(v1.DefaultPrefix, testLogger(t))
	key := instKey("default", "a.example.com", "10.0.0.1")
	apply(st, shard, func(b *batch) {
		st.put(svcKey("default", "a.example.com"), []byte(serviceJSON("default", "a.example.com")), 1, 1, 1, b)
		st.put(key, []byte(instanceJSON("10.0.0.1", `"weight":7`)), 5, 9, 1, b)
	})
	apply(st, shard, func(b *batch) {
		st.putAll([]*mvccpb.KeyValue{
			{Key: []byte(svcKey("default", "a.example.com")), Value: []byte(serviceJSON("default", "a.example.com")), CreateRevision: 1, ModRevision: 1},
			{Key: []byte(key), Value: []byte(instanceJSON("10.0.0.1", `"weight":3`)), CreateRevision: 5, ModRevision: 6},
		}, 2, b)
		st.sweep(2, b)
	})
	snap, _ := agg.Build()
	if es := snap.Endpoints("a.example.com"); es == nil || es.Endpoints[0].Weight != 3 {
		t.Errorf("restored record not applied: %s", describe(snap))
	}
}
