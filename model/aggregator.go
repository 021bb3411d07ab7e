package model

import (
	"fmt"
	"sort"
	"sync"
)

// EventKind says what part of the model an Event touches.
type EventKind int

// Event kinds. Only EventEndpoints can be pushed incrementally (EDS only).
const (
	EventEndpoints EventKind = iota
	EventService
	EventConfig
	EventErrors
)

func (k EventKind) String() string {
	switch k {
	case EventService:
		return "service"
	case EventConfig:
		return "config"
	case EventErrors:
		return "errors"
	}
	return "endpoint"
}

// Event names one change in the model.
type Event struct {
	Kind    EventKind
	Service ServiceKey // EventService, EventEndpoints
	Config  ConfigKey  // EventConfig
}

func (e Event) String() string {
	switch e.Kind {
	case EventConfig:
		return "config " + e.Config.String()
	case EventErrors:
		return "errors"
	}
	return e.Kind.String() + " " + e.Service.String()
}

// Aggregator merges the shards of all registries. It is safe for concurrent
// use: registries write to their shards from their own goroutines while the
// push pipeline builds snapshots.
type Aggregator struct {
	mu      sync.Mutex
	shards  []*Shard
	pending []Event
	version uint64
	notify  chan struct{}
}

// NewAggregator returns an empty aggregator.
func NewAggregator() *Aggregator {
	return &Aggregator{notify: make(chan struct{}, 1)}
}

// Changed is signalled (coalesced) whenever a shard records events.
func (a *Aggregator) Changed() <-chan struct{} { return a.notify }

// NewShard registers a registry's shard. A registry must call MarkSynced once
// its initial load is complete; until every shard is synced, snapshots report
// Synced=false and are not served.
func (a *Aggregator) NewShard(name string) *Shard {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := &Shard{
		name:      name,
		agg:       a,
		services:  map[ServiceKey]*Service{},
		svcHash:   map[ServiceKey]uint64{},
		endpoints: map[ServiceKey]*EndpointSet{},
		configs:   map[ConfigKey]*Config{},
		errors:    map[string][]ConfigError{},
	}
	a.shards = append(a.shards, s)
	return s
}

func (a *Aggregator) record(evs ...Event) {
	if len(evs) == 0 {
		return
	}
	a.pending = append(a.pending, evs...)
	select {
	case a.notify <- struct{}{}:
	default:
	}
}

// Build merges all shards into a new immutable snapshot and returns it with
// the events recorded since the previous Build.
func (a *Aggregator) Build() (*Snapshot, []Event) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.version++
	evs := a.pending
	a.pending = nil
	return a.buildLocked(), evs
}

// Shard is one registry's contribution to the model. All methods are safe for
// concurrent use; a change that does not alter content records no event.
type Shard struct {
	name      string
	agg       *Aggregator
	synced    bool
	services  map[ServiceKey]*Service
	svcHash   map[ServiceKey]uint64
	endpoints map[ServiceKey]*EndpointSet
	configs   map[ConfigKey]*Config
	errors    map[string][]ConfigError
}

// Name returns the shard's registry name.
func (s *Shard) Name() string { return s.name }

// EndpointSet is the endpoints of one service, immutable once stored.
type EndpointSet struct {
	Endpoints []*Endpoint
	Hash      uint64
}

// Txn is a batch of changes applied to a shard atomically: a snapshot never
// sees half of it.
type Txn struct {
	s   *Shard
	evs []Event
}

// Update applies fn's changes atomically.
func (s *Shard) Update(fn func(tx *Txn)) {
	s.agg.mu.Lock()
	defer s.agg.mu.Unlock()
	tx := &Txn{s: s}
	fn(tx)
	s.agg.record(tx.evs...)
}

// MarkSynced records that the registry finished its initial load.
func (s *Shard) MarkSynced() {
	s.agg.mu.Lock()
	defer s.agg.mu.Unlock()
	if !s.synced {
		s.synced = true
		s.agg.record(Event{Kind: EventErrors})
	}
}

// SetService adds or replaces a service.
func (tx *Txn) SetService(svc *Service) {
	k := ServiceKey{Namespace: svc.Namespace, Hostname: svc.Hostname}
	h := svc.Hash()
	if old, ok := tx.s.svcHash[k]; ok && old == h {
		return
	}
	tx.s.services[k] = svc
	tx.s.svcHash[k] = h
	tx.evs = append(tx.evs, Event{Kind: EventService, Service: k})
}

// DeleteService removes a service and its endpoints.
func (tx *Txn) DeleteService(k ServiceKey) {
	if _, ok := tx.s.services[k]; ok {
		delete(tx.s.services, k)
		delete(tx.s.svcHash, k)
		tx.evs = append(tx.evs, Event{Kind: EventService, Service: k})
	}
	tx.SetEndpoints(k, nil)
}

// Services returns the keys of the shard's services.
func (tx *Txn) Services() []ServiceKey {
	out := make([]ServiceKey, 0, len(tx.s.services))
	for k := range tx.s.services {
		out = append(out, k)
	}
	return out
}

// Service returns a stored service.
func (tx *Txn) Service(k ServiceKey) *Service { return tx.s.services[k] }

// SetEndpoints replaces the endpoints of a service (nil removes them). The
// slice is sorted and owned by the shard afterwards.
func (tx *Txn) SetEndpoints(k ServiceKey, eps []*Endpoint) {
	old, had := tx.s.endpoints[k]
	if len(eps) == 0 {
		if had {
			delete(tx.s.endpoints, k)
			tx.evs = append(tx.evs, Event{Kind: EventEndpoints, Service: k})
		}
		return
	}
	SortEndpoints(eps)
	h := HashEndpoints(eps)
	if had && old.Hash == h {
		return
	}
	tx.s.endpoints[k] = &EndpointSet{Endpoints: eps, Hash: h}
	tx.evs = append(tx.evs, Event{Kind: EventEndpoints, Service: k})
}

// EndpointKeys returns the services that have endpoints in this shard.
func (tx *Txn) EndpointKeys() []ServiceKey {
	out := make([]ServiceKey, 0, len(tx.s.endpoints))
	for k := range tx.s.endpoints {
		out = append(out, k)
	}
	return out
}

// Endpoints returns the stored endpoints of a service.
func (tx *Txn) Endpoints(k ServiceKey) []*Endpoint {
	if s := tx.s.endpoints[k]; s != nil {
		return s.Endpoints
	}
	return nil
}

// SetConfig adds or replaces a config object.
func (tx *Txn) SetConfig(c *Config) {
	if c.Hash == 0 {
		c.Hash = HashConfig(c)
	}
	if old, ok := tx.s.configs[c.Key]; ok && old.Hash == c.Hash {
		return
	}
	tx.s.configs[c.Key] = c
	tx.evs = append(tx.evs, Event{Kind: EventConfig, Config: c.Key})
}

// DeleteConfig removes a config object.
func (tx *Txn) DeleteConfig(k ConfigKey) {
	if _, ok := tx.s.configs[k]; ok {
		delete(tx.s.configs, k)
		tx.evs = append(tx.evs, Event{Kind: EventConfig, Config: k})
	}
}

// Configs returns the keys of the shard's configs.
func (tx *Txn) Configs() []ConfigKey {
	out := make([]ConfigKey, 0, len(tx.s.configs))
	for k := range tx.s.configs {
		out = append(out, k)
	}
	return out
}

// SetErrors replaces the errors recorded for one location (a file, a key).
func (tx *Txn) SetErrors(location string, errs []ConfigError) {
	if len(errs) == 0 {
		if _, ok := tx.s.errors[location]; !ok {
			return
		}
		delete(tx.s.errors, location)
	} else {
		tx.s.errors[location] = errs
	}
	tx.evs = append(tx.evs, Event{Kind: EventErrors})
}

func (a *Aggregator) buildLocked() *Snapshot {
	snap := &Snapshot{
		Version:   a.version,
		Synced:    true,
		byHost:    map[string]*Service{},
		endpoints: map[string]*EndpointSet{},
		configs:   map[Kind][]*Config{},
		svcHash:   map[string]uint64{},
	}
	// Services: resolve hostname conflicts as Istio does (oldest wins,
	// then namespace/name), and remember losers as warnings.
	cands := map[string][]*Service{}
	for _, sh := range a.shards {
		if !sh.synced {
			snap.Synced = false
		}
		for _, svc := range sh.services {
			cands[svc.Hostname] = append(cands[svc.Hostname], svc)
		}
		for _, errs := range sh.errors {
			snap.Errors = append(snap.Errors, errs...)
		}
		for _, c := range sh.configs {
			snap.configs[c.Key.Kind] = append(snap.configs[c.Key.Kind], c)
		}
	}
	for host, list := range cands {
		sort.Slice(list, func(i, j int) bool { return serviceLess(list[i], list[j]) })
		win := list[0]
		snap.byHost[host] = win
		snap.svcHash[host] = a.hashOf(win)
		snap.services = append(snap.services, win)
		for _, lost := range list[1:] {
			snap.Errors = append(snap.Errors, ConfigError{
				Registry: lost.Source.Registry, Location: lost.Source.Location,
				Object:  lost.Source.Kind + " " + lost.Source.Namespace + "/" + lost.Source.Name,
				Message: fmt.Sprintf("host %s is also defined by %s, which is older and wins", host, win.Source),
				Warning: true,
			})
		}
	}
	sort.Slice(snap.services, func(i, j int) bool { return snap.services[i].Hostname < snap.services[j].Hostname })
	// Endpoints: every shard's endpoints for the winning (host, namespace).
	for _, svc := range snap.services {
		k := ServiceKey{Namespace: svc.Namespace, Hostname: svc.Hostname}
		var sets []*EndpointSet
		for _, sh := range a.shards {
			if es := sh.endpoints[k]; es != nil {
				sets = append(sets, es)
			}
		}
		switch len(sets) {
		case 0:
		case 1:
			snap.endpoints[svc.Hostname] = sets[0]
		default:
			var all []*Endpoint
			for _, es := range sets {
				all = append(all, es.Endpoints...)
			}
			SortEndpoints(all)
			snap.endpoints[svc.Hostname] = &EndpointSet{Endpoints: all, Hash: HashEndpoints(all)}
		}
	}
	for k := range snap.configs {
		list := snap.configs[k]
		sort.Slice(list, func(i, j int) bool { return list[i].Less(list[j]) })
	}
	snap.index()
	snap.Errors = append(snap.Errors, snap.referenceWarnings()...)
	sort.Slice(snap.Errors, func(i, j int) bool {
		if snap.Errors[i].Location != snap.Errors[j].Location {
			return snap.Errors[i].Location < snap.Errors[j].Location
		}
		return snap.Errors[i].Error() < snap.Errors[j].Error()
	})
	return snap
}

func (a *Aggregator) hashOf(svc *Service) uint64 {
	for _, sh := range a.shards {
		k := ServiceKey{Namespace: svc.Namespace, Hostname: svc.Hostname}
		if sh.services[k] == svc {
			return sh.svcHash[k]
		}
	}
	return svc.Hash()
}

func serviceLess(a, b *Service) bool {
	if !a.CreationTime.Equal(b.CreationTime) {
		return a.CreationTime.Before(b.CreationTime)
	}
	if a.Namespace != b.Namespace {
		return a.Namespace < b.Namespace
	}
	if a.Source.Name != b.Source.Name {
		return a.Source.Name < b.Source.Name
	}
	return a.Source.Registry < b.Source.Registry
}
