package model

import (
	"encoding/binary"
	"hash/fnv"
	"testing"
	"time"
)

func svc(ns, host string, created time.Time) *Service {
	return &Service{Hostname: host, Namespace: ns, Ports: []Port{{Name: "http", Number: 80, Protocol: ProtocolHTTP}},
		CreationTime: created, Source: Source{Registry: "test", Kind: "ServiceEntry", Namespace: ns, Name: host}}
}

func TestShardEventsOnlyOnChange(t *testing.T) {
	agg := NewAggregator()
	sh := agg.NewShard("a")
	sh.MarkSynced()
	agg.Build()
	k := ServiceKey{Namespace: "ns", Hostname: "h.ns.svc.cluster.local"}
	sh.Update(func(tx *Txn) {
		tx.SetService(svc("ns", k.Hostname, time.Time{}))
		tx.SetEndpoints(k, []*Endpoint{{Address: "10.0.0.2"}, {Address: "10.0.0.1"}})
	})
	snap, evs := agg.Build()
	if len(evs) != 2 || evs[0].Kind != EventService || evs[1].Kind != EventEndpoints {
		t.Fatalf("events = %v, want service then endpoints", evs)
	}
	if got := snap.Endpoints(k.Hostname).Endpoints; got[0].Address != "10.0.0.1" {
		t.Errorf("endpoints not sorted: %v", got[0].Address)
	}
	// Setting identical content records nothing.
	sh.Update(func(tx *Txn) {
		tx.SetService(svc("ns", k.Hostname, time.Time{}))
		tx.SetEndpoints(k, []*Endpoint{{Address: "10.0.0.1"}, {Address: "10.0.0.2"}})
	})
	if _, evs := agg.Build(); len(evs) != 0 {
		t.Errorf("no-op update recorded %v", evs)
	}
	// An endpoint change records only an endpoint event.
	sh.Update(func(tx *Txn) { tx.SetEndpoints(k, []*Endpoint{{Address: "10.0.0.1"}}) })
	if _, evs := agg.Build(); len(evs) != 1 || evs[0].Kind != EventEndpoints {
		t.Errorf("endpoint change recorded %v", evs)
	}
	// Deleting the service removes its endpoints too.
	sh.Update(func(tx *Txn) { tx.DeleteService(k) })
	snap, _ = agg.Build()
	if snap.Service(k.Hostname) != nil || snap.Endpoints(k.Hostname) != nil {
		t.Error("service or endpoints survived deletion")
	}
}

func TestConflictOldestWins(t *testing.T) {
	agg := NewAggregator()
	a, b := agg.NewShard("a"), agg.NewShard("b")
	old, young := time.Unix(100, 0), time.Unix(200, 0)
	a.Update(func(tx *Txn) { tx.SetService(svc("young", "h.example.com", young)) })
	b.Update(func(tx *Txn) { tx.SetService(svc("old", "h.example.com", old)) })
	a.MarkSynced()
	snap, _ := agg.Build()
	if snap.Synced {
		t.Error("snapshot synced before every shard was")
	}
	b.MarkSynced()
	snap, _ = agg.Build()
	if !snap.Synced {
		t.Error("snapshot not synced after every shard was")
	}
	if got := snap.Service("h.example.com").Namespace; got != "old" {
		t.Errorf("winner namespace %q, want the oldest (old)", got)
	}
	if len(snap.Errors) != 1 || !snap.Errors[0].Warning {
		t.Errorf("conflict not reported as a warning: %v", snap.Errors)
	}
	// Equal creation times: namespace order decides, deterministically.
	agg2 := NewAggregator()
	s := agg2.NewShard("a")
	s.Update(func(tx *Txn) {
		tx.SetService(svc("zz", "h.example.com", old))
		tx.SetService(svc("aa", "h.example.com", old))
	})
	s.MarkSynced()
	snap2, _ := agg2.Build()
	if got := snap2.Service("h.example.com").Namespace; got != "aa" {
		t.Errorf("tie broken to %q, want aa", got)
	}
}

func TestHashStableAndContentOnly(t *testing.T) {
	a := svc("ns", "h", time.Unix(1, 0))
	b := svc("ns", "h", time.Unix(1, 0))
	b.Source.Location = "moved.yaml:40"
	if a.Hash() != b.Hash() {
		t.Error("hash depends on the source location")
	}
	b.Ports = append(b.Ports, Port{Name: "grpc", Number: 90, Protocol: ProtocolGRPC})
	if a.Hash() == b.Hash() {
		t.Error("hash ignores ports")
	}
	// A fixed input hashes to a fixed value in every process (FNV-64a over
	// a canonical encoding): versions derived from it survive restarts.
	// The encoding is written out here by hand (uvarint length, bytes,
	// little-endian uint64) and hashed with the standard library, so a
	// change to the encoding, which would change every version, fails.
	enc := append([]byte{7}, "sextant"...)
	enc = binary.LittleEndian.AppendUint64(enc, 42)
	f := fnv.New64a()
	f.Write(enc)
	if got, want := (&Hasher{}).Str("sextant").U64(42).Sum(), f.Sum64(); got != want {
		t.Errorf("Hasher.Str(sextant).U64(42) = %#x, want FNV-64a of the canonical encoding %#x", got, want)
	}
	if a, b := (&Hasher{}).Str("ab").Str("c").Sum(), (&Hasher{}).Str("a").Str("bc").Sum(); a == b {
		t.Error("string boundaries do not change the hash")
	}
	if got := HashBytes([]byte("sextant")); got != 0x1b1bccb8b137ef02 {
		t.Errorf("HashBytes(sextant) = %#x; want FNV-64a 0x1b1bccb8b137ef02", got)
	}
}

func TestResolveAndMatchHosts(t *testing.T) {
	if got := ResolveHost("reviews", "default"); got != "reviews.default.svc.cluster.local" {
		t.Errorf("short name resolved to %q", got)
	}
	if got := ResolveHost("api.example.com", "default"); got != "api.example.com" {
		t.Errorf("FQDN changed to %q", got)
	}
	for _, c := range []struct {
		pattern, host string
		want          bool
	}{{"*", "a.b", true}, {"*.example.com", "api.example.com", true}, {"*.example.com", "example.com", false}, {"a.b", "a.b", true}, {"a.b", "a.c", false}} {
		if got := HostMatches(c.pattern, c.host); got != c.want {
			t.Errorf("HostMatches(%q, %q) = %v", c.pattern, c.host, got)
		}
	}
}

func TestExportTo(t *testing.T) {
	s := &Service{Namespace: "a", ExportTo: []string{"."}}
	if !s.VisibleTo("a") || s.VisibleTo("b") {
		t.Error(`exportTo "." wrong`)
	}
	s.ExportTo = []string{"b", "c"}
	if s.VisibleTo("a") || !s.VisibleTo("c") {
		t.Error("exportTo list wrong")
	}
	s.ExportTo = nil
	if !s.VisibleTo("z") {
		t.Error("empty exportTo must mean all")
	}
}
