package translate

import (
	"fmt"
	"sync"
	"sync/atomic"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/sextant-mesh/sextant/model"
)

// Resource is one built, marshalled xDS resource. It is immutable and shared
// between every proxy that receives it.
type Resource struct {
	Name string
	// Version is the content hash of the marshalled resource (16 hex digits).
	Version string
	Any     *anypb.Any
	// Msg is the resource as a message, for debug output.
	Msg proto.Message

	// sotwEntry is the resource as a `resources` entry of a
	// DiscoveryResponse; Any.Value aliases its tail, so the bytes exist once.
	sotwEntry  []byte
	deltaOnce  sync.Once
	deltaEntry []byte
}

// SotWEntry returns the resource encoded as one `resources` field (2) of a
// DiscoveryResponse.
func (r *Resource) SotWEntry() []byte { return r.sotwEntry }

// DeltaEntry returns the resource encoded as one `resources` field (2) of a
// DeltaDiscoveryResponse: a discovery Resource with name, version and body.
// It is built on first use, since only delta clients need it.
func (r *Resource) DeltaEntry() []byte {
	r.deltaOnce.Do(func() {
		var body []byte
		body = protowire.AppendTag(body, 1, protowire.BytesType)
		body = protowire.AppendString(body, r.Version)
		body = protowire.AppendTag(body, 2, protowire.BytesType)
		body = protowire.AppendVarint(body, uint64(len(r.sotwEntry)-r.anyOffset()))
		body = append(body, r.sotwEntry[r.anyOffset():]...)
		body = protowire.AppendTag(body, 3, protowire.BytesType)
		body = protowire.AppendString(body, r.Name)
		e := protowire.AppendTag(nil, 2, protowire.BytesType)
		e = protowire.AppendVarint(e, uint64(len(body)))
		r.deltaEntry = append(e, body...)
	})
	return r.deltaEntry
}

// anyOffset is where the Any message starts inside sotwEntry.
func (r *Resource) anyOffset() int {
	_, _, n := protowire.ConsumeTag(r.sotwEntry)
	_, m := protowire.ConsumeVarint(r.sotwEntry[n:])
	return n + m
}

// NewResource marshals a resource that is not shared through the cache
// (per-proxy SDS secrets) into the same wire form.
func NewResource(typeURL, name string, msg proto.Message) (*Resource, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("marshal %s %q: %w", shortType(typeURL), name, err)
	}
	return newResource(typeURL, name, b, msg), nil
}

// newResource encodes a marshalled resource once, in the wire form
// responses are assembled from.
func newResource(typeURL, name string, value []byte, msg proto.Message) *Resource {
	var a []byte
	a = protowire.AppendTag(a, 1, protowire.BytesType)
	a = protowire.AppendString(a, typeURL)
	a = protowire.AppendTag(a, 2, protowire.BytesType)
	a = protowire.AppendVarint(a, uint64(len(value)))
	valueAt := len(a)
	a = append(a, value...)
	e := protowire.AppendTag(make([]byte, 0, len(a)+12), 2, protowire.BytesType)
	e = protowire.AppendVarint(e, uint64(len(a)))
	anyAt := len(e)
	e = append(e, a...)
	return &Resource{
		Name:      name,
		Version:   model.FormatHash(model.HashBytes(value)),
		Any:       &anypb.Any{TypeUrl: typeURL, Value: e[anyAt+valueAt:]},
		Msg:       msg,
		sotwEntry: e,
	}
}

type cacheKey struct {
	typeURL string
	name    string
	inputs  uint64
}

type cacheEntry struct {
	res   *Resource
	err   error
	used  uint64        // generation of the last snapshot that used it
	ready chan struct{} // closed once res and err are set
}

// CacheStats are counters for metrics and tests.
type CacheStats struct {
	Hits, Misses, Marshals, Size uint64
}

// Cache holds built resources addressed by the hash of their inputs. It is
// safe for concurrent use.
type Cache struct {
	mu       sync.Mutex
	entries  map[cacheKey]*cacheEntry
	gen      uint64
	hits     atomic.Uint64
	misses   atomic.Uint64
	marshals atomic.Uint64
	// Validate runs ValidateAll on every built resource; an invalid one is
	// dropped with an error instead of being pushed.
	Validate bool
}

// NewCache returns an empty cache that validates what it builds.
func NewCache() *Cache {
	return &Cache{entries: map[cacheKey]*cacheEntry{}, Validate: true}
}

// Stats returns the counters.
func (c *Cache) Stats() CacheStats {
	c.mu.Lock()
	n := len(c.entries)
	c.mu.Unlock()
	return CacheStats{Hits: c.hits.Load(), Misses: c.misses.Load(), Marshals: c.marshals.Load(), Size: uint64(n)}
}

// nextGeneration starts a new snapshot generation and evicts entries that no
// snapshot used for two generations.
func (c *Cache) nextGeneration() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	if c.gen%8 == 0 {
		for k, e := range c.entries {
			if e.used+2 < c.gen {
				delete(c.entries, k)
			}
		}
	}
	return c.gen
}

type validator interface{ ValidateAll() error }

// get returns the resource for (typeURL, name, inputs), building it with
// build on a miss. Concurrent misses for one key wait for the first build,
// so every distinct resource is built and marshalled exactly once.
func (c *Cache) get(gen uint64, typeURL, name string, inputs uint64, build func() proto.Message) (*Resource, error) {
	k := cacheKey{typeURL, name, inputs}
	c.mu.Lock()
	if e, ok := c.entries[k]; ok {
		e.used = gen
		c.mu.Unlock()
		<-e.ready
		c.hits.Add(1)
		return e.res, e.err
	}
	e := &cacheEntry{used: gen, ready: make(chan struct{})}
	c.entries[k] = e
	c.mu.Unlock()
	c.misses.Add(1)
	e.res, e.err = c.build(typeURL, name, build)
	close(e.ready)
	return e.res, e.err
}

func (c *Cache) build(typeURL, name string, build func() proto.Message) (*Resource, error) {
	msg := build()
	if c.Validate {
		if v, ok := msg.(validator); ok {
			if err := v.ValidateAll(); err != nil {
				return nil, fmt.Errorf("generated %s %q is invalid, not sent: %w", shortType(typeURL), name, err)
			}
		}
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("marshal %s %q: %w", shortType(typeURL), name, err)
	}
	c.marshals.Add(1)
	return newResource(typeURL, name, b, msg), nil
}
