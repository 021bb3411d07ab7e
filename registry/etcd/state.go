package etcd

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"

	v1 "github.com/sextant-mesh/sextant/api/etcd/v1"
	"github.com/sextant-mesh/sextant/model"
	"github.com/sextant-mesh/sextant/registry/config"
)

// record is what the registry knows about one key.
type record struct {
	modRev    int64
	createRev int64
	gen       uint64 // listing generation that last saw the key
	typ       v1.KeyType
	svcKey    model.ServiceKey // service and instance keys
	svc       *model.Service   // valid service record
	ep        *model.Endpoint  // valid instance record
	istio     *config.Result   // valid Istio document(s)
	errs      []model.ConfigError
	// Interning keys of the endpoint's labels and ports.
	labelsID, portsID string
}

// state is the registry's view of etcd and of what it wrote to its shard.
// It does no I/O; the goroutine running the registry owns it.
type state struct {
	prefix string
	log    *slog.Logger

	records map[string]*record
	// services are the valid service records, by service.
	services map[model.ServiceKey]*model.Service
	// instances are the valid instance records, by service and key.
	instances map[model.ServiceKey]map[string]*model.Endpoint
	// istioKeys are the keys holding valid Istio documents.
	istioKeys map[string]*record
	// The last config.Build of the Istio documents.
	istioOut  *config.Output
	istioSvcs map[model.ServiceKey]*model.Service
	istioEps  map[model.ServiceKey][]*model.Endpoint
	istioLoc  map[string]string // object location → key
	// conflicts are the services defined both by a record and an Istio
	// document, with the warning for the one that lost.
	conflicts map[model.ServiceKey]conflict
	// reported is what was last passed to SetErrors, by key.
	reported map[string][]model.ConfigError
	// Shared label and port maps of instances.
	labels interner[string]
	ports  interner[uint32]
}

type conflict struct {
	key string // the loser's key
	err model.ConfigError
}

func newState(prefix string, log *slog.Logger) *state {
	return &state{
		prefix:    prefix,
		log:       log,
		records:   map[string]*record{},
		services:  map[model.ServiceKey]*model.Service{},
		instances: map[model.ServiceKey]map[string]*model.Endpoint{},
		istioKeys: map[string]*record{},
		istioSvcs: map[model.ServiceKey]*model.Service{},
		istioEps:  map[model.ServiceKey][]*model.Endpoint{},
		istioLoc:  map[string]string{},
		conflicts: map[model.ServiceKey]conflict{},
		reported:  map[string][]model.ConfigError{},
		labels:    interner[string]{m: map[string]*interned[string]{}},
		ports:     interner[uint32]{m: map[string]*interned[uint32]{}},
	}
}

// interner keeps one copy of equal maps, counting their users. Interned
// maps are never modified: model endpoints are immutable.
type interner[V comparable] struct {
	m map[string]*interned[V]
}

type interned[V comparable] struct {
	id   string
	m    map[string]V
	refs int
}

// intern returns the shared copy of m and its id (for release); an empty
// map is nil, with id "".
func (t *interner[V]) intern(m map[string]V) (map[string]V, string) {
	if len(m) == 0 {
		return nil, ""
	}
	var kbuf [8]string
	keys := kbuf[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var buf [256]byte
	id := buf[:0]
	for _, k := range keys {
		id = appendLenPrefixed(id, k)
		switch v := any(m[k]).(type) {
		case string:
			id = appendLenPrefixed(id, v)
		case uint32:
			id = strconv.AppendUint(id, uint64(v), 10)
			id = append(id, ';')
		}
	}
	if e := t.m[string(id)]; e != nil {
		e.refs++
		return e.m, e.id
	}
	e := &interned[V]{id: string(id), m: m, refs: 1}
	t.m[e.id] = e
	return m, e.id
}

func appendLenPrefixed(b []byte, s string) []byte {
	b = strconv.AppendInt(b, int64(len(s)), 10)
	b = append(b, ':')
	return append(b, s...)
}

func (t *interner[V]) release(id string) {
	if e := t.m[id]; e != nil {
		if e.refs--; e.refs == 0 {
			delete(t.m, id)
		}
	}
}

// batch collects what changed since the last commit.
type batch struct {
	services map[model.ServiceKey]struct{}
	istio    bool
	errKeys  map[string]struct{}
	events   int
}

func newBatch() *batch {
	return &batch{services: map[model.ServiceKey]struct{}{}, errKeys: map[string]struct{}{}}
}

func (b *batch) empty() bool { return len(b.services) == 0 && !b.istio && len(b.errKeys) == 0 }

// put records a key's value at modRev; a value at the revision already
// applied is not parsed again. (Watch events at or below the registry's
// applied revision never get here.)
func (s *state) put(key string, value []byte, createRev, modRev int64, gen uint64, b *batch) {
	if !s.known(key, modRev, gen, b) {
		s.store(key, parseRecord(s.prefix, key, value, createRev, modRev), gen, b)
	}
}

// known reports whether the key's value at modRev is the one applied, and
// marks the key as seen by listing generation gen. Revisions are compared
// for equality, not order: after etcd is restored from a backup
// (etcdutl snapshot restore --bump-revision --mark-compacted), a listing
// can hold a key at an older revision than the one applied.
func (s *state) known(key string, modRev int64, gen uint64, b *batch) bool {
	b.events++
	rec := s.records[key]
	if rec == nil {
		return false
	}
	rec.gen = gen
	return rec.modRev == modRev
}

// store replaces the key's record.
func (s *state) store(key string, rec *record, gen uint64, b *batch) {
	if old := s.records[key]; old != nil {
		s.unlink(key, old, b)
	}
	rec.gen = gen
	s.records[key] = rec
	s.link(key, rec, b)
	b.errKeys[key] = struct{}{}
}

// reserve sizes the record map for a first listing of n keys.
func (s *state) reserve(n int) {
	if len(s.records) == 0 && n > 0 {
		s.records = make(map[string]*record, n)
	}
}

// putAll is put for a page of a listing: the records that changed are
// parsed in parallel, then stored in order.
func (s *state) putAll(kvs []*mvccpb.KeyValue, gen uint64, b *batch) {
	todo := make([]int, 0, len(kvs))
	for i, kv := range kvs {
		if !s.known(string(kv.Key), kv.ModRevision, gen, b) {
			todo = append(todo, i)
		}
	}
	recs := make([]*record, len(todo))
	workers := min(runtime.GOMAXPROCS(0), (len(todo)+parseChunk-1)/parseChunk)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for j := w; j < len(todo); j += workers {
				kv := kvs[todo[j]]
				recs[j] = parseRecord(s.prefix, string(kv.Key), kv.Value, kv.CreateRevision, kv.ModRevision)
			}
		})
	}
	wg.Wait()
	for j, i := range todo {
		s.store(string(kvs[i].Key), recs[j], gen, b)
	}
}

// parseChunk is the least number of records worth a parsing goroutine.
const parseChunk = 256

// del records a key's deletion at revision rev.
func (s *state) del(key string, rev int64, b *batch) {
	b.events++
	rec := s.records[key]
	if rec == nil || rec.modRev > rev {
		return
	}
	s.unlink(key, rec, b)
	delete(s.records, key)
	b.errKeys[key] = struct{}{}
}

// sweep deletes the keys a complete listing of generation gen did not see.
func (s *state) sweep(gen uint64, b *batch) int {
	n := 0
	for key, rec := range s.records {
		if rec.gen != gen {
			s.unlink(key, rec, b)
			delete(s.records, key)
			b.errKeys[key] = struct{}{}
			n++
		}
	}
	return n
}

func (s *state) link(key string, rec *record, b *batch) {
	switch {
	case rec.svc != nil:
		s.services[rec.svcKey] = rec.svc
		b.services[rec.svcKey] = struct{}{}
	case rec.ep != nil:
		m := s.instances[rec.svcKey]
		if m == nil {
			m = map[string]*model.Endpoint{}
			s.instances[rec.svcKey] = m
		}
		// Instances of a service mostly share labels and ports: keep one
		// copy of each distinct map.
		rec.ep.Labels, rec.labelsID = s.labels.intern(rec.ep.Labels)
		rec.ep.Ports, rec.portsID = s.ports.intern(rec.ep.Ports)
		m[key] = rec.ep
		b.services[rec.svcKey] = struct{}{}
	case rec.istio != nil:
		s.istioKeys[key] = rec
		b.istio = true
	}
}

func (s *state) unlink(key string, rec *record, b *batch) {
	switch {
	case rec.svc != nil:
		delete(s.services, rec.svcKey)
		b.services[rec.svcKey] = struct{}{}
	case rec.ep != nil:
		if m := s.instances[rec.svcKey]; m != nil {
			delete(m, key)
			if len(m) == 0 {
				delete(s.instances, rec.svcKey)
			}
		}
		s.labels.release(rec.labelsID)
		s.ports.release(rec.portsID)
		b.services[rec.svcKey] = struct{}{}
	case rec.istio != nil:
		delete(s.istioKeys, key)
		b.istio = true
	}
}

// parseRecord decodes and validates one key's value. It is pure, so
// listings parse in parallel.
func parseRecord(prefix, key string, value []byte, createRev, modRev int64) *record {
	rec := &record{modRev: modRev, createRev: createRev}
	k, err := v1.ParseKey(prefix, key)
	if err != nil {
		rec.errs = []model.ConfigError{{Registry: RegistryName, Location: key, Message: err.Error()}}
		return rec
	}
	rec.typ = k.Type
	switch k.Type {
	case v1.KeyService:
		rec.svcKey = model.ServiceKey{Namespace: k.Namespace, Hostname: k.Host}
		svc, err := v1.DecodeService(value)
		if err == nil {
			err = k.CheckService(svc)
		}
		if err != nil {
			rec.errs = recordErrors(key, v1.KindService+" "+k.Namespace+"/"+k.Host, err)
			return rec
		}
		rec.svc = convertService(key, svc, createRev)
	case v1.KeyInstance:
		rec.svcKey = model.ServiceKey{Namespace: k.Namespace, Hostname: k.Host}
		in, err := v1.DecodeInstance(value)
		if err == nil {
			err = k.CheckInstance(in)
		}
		if err != nil {
			rec.errs = recordErrors(key, v1.KindInstance+" "+k.Namespace+"/"+k.Host+"/"+k.Instance, err)
			return rec
		}
		rec.ep = convertInstance(key, k, in)
	case v1.KeyIstio:
		res := config.Parse(key, value)
		for i := range res.Errors {
			res.Errors[i].Registry = RegistryName
		}
		for _, o := range res.Objects {
			if o.CreationTime.IsZero() {
				o.CreationTime = revisionTime(createRev)
			}
		}
		if res.Valid() {
			rec.istio = res
			rec.errs = res.Errors // warnings only
		} else {
			rec.errs = append([]model.ConfigError{{
				Registry: RegistryName, Location: key, Message: "key rejected; none of its objects are served", Summary: true,
			}}, res.Errors...)
		}
	default:
		rec.errs = []model.ConfigError{{
			Registry: RegistryName, Location: key, Warning: true,
			Message: fmt.Sprintf("not a key of the %s schema (%s, %s or %s); ignored",
				v1.APIVersion, v1.ServicesPrefix(prefix), v1.AllInstancesPrefix(prefix), v1.IstioPrefix(prefix)),
		}}
	}
	return rec
}

// recordErrors turns a decoding or validation error into config errors.
func recordErrors(key, object string, err error) []model.ConfigError {
	var fes v1.Errors
	if !errors.As(err, &fes) {
		fes = v1.Errors{{Message: err.Error()}}
	}
	out := make([]model.ConfigError, len(fes))
	for i, fe := range fes {
		out[i] = model.ConfigError{Registry: RegistryName, Location: key, Object: object, Field: fe.Field, Message: fe.Message}
	}
	return out
}

// revisionTime stands in for a creation time: etcd records no wall-clock
// time, but create revisions order keys by creation and are the same for
// every reader.
func revisionTime(rev int64) time.Time { return time.Unix(0, rev).UTC() }

func convertService(key string, s *v1.Service, createRev int64) *model.Service {
	ports := make([]model.Port, len(s.Ports))
	for i, p := range s.Ports {
		proto := model.ProtocolFromPortName(p.Name, "")
		if p.Protocol != "" {
			proto = model.ParseProtocol(p.Protocol)
		}
		ports[i] = model.Port{Name: p.Name, Number: p.Number, Protocol: proto, TargetPort: p.TargetPort}
	}
	sort.Slice(ports, func(i, j int) bool { return ports[i].Number < ports[j].Number })
	res := model.ClientSideLB
	switch s.Resolution {
	case v1.ResolutionDNS:
		res = model.DNSLB
	case v1.ResolutionDNSRoundRobin:
		res = model.DNSRoundRobinLB
	case v1.ResolutionNone:
		res = model.Passthrough
	}
	return &model.Service{
		Hostname:       s.Host,
		Namespace:      s.Namespace,
		Ports:          ports,
		Addresses:      nilIfEmpty(s.Addresses),
		Resolution:     res,
		Labels:         nilIfEmptyMap(s.Labels),
		ExportTo:       nilIfEmpty(s.ExportTo),
		CreationTime:   revisionTime(createRev),
		KeepaliveShare: s.KeepaliveShare,
		Source: model.Source{
			Registry: RegistryName, Kind: v1.KindService, Namespace: s.Namespace, Name: s.Host, Location: key,
		},
	}
}

func convertInstance(key string, k v1.Key, in *v1.Instance) *model.Endpoint {
	health := model.Healthy
	switch in.Health {
	case v1.HealthUnhealthy:
		health = model.Unhealthy
	case v1.HealthDraining:
		health = model.Draining
	}
	ep := &model.Endpoint{
		Address:        in.Address,
		Ports:          nilIfEmptyMap(in.Ports),
		Labels:         nilIfEmptyMap(in.Labels),
		Locality:       in.Locality,
		Weight:         in.Weight,
		Health:         health,
		ServiceAccount: in.ServiceAccount,
		Network:        in.Network,
		Source: model.Source{
			Registry: RegistryName, Kind: v1.KindInstance, Namespace: k.Namespace, Name: k.Instance, Location: key,
		},
	}
	ep.Hash() // cache it now, outside the shard's lock
	return ep
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

func nilIfEmptyMap[V any](m map[string]V) map[string]V {
	if len(m) == 0 {
		return nil
	}
	return m
}

// changes is what a commit writes to the shard.
type changes struct {
	services []serviceChange
	errors   []errorChange
}

type serviceChange struct {
	key model.ServiceKey
	svc *model.Service    // nil: none defined here
	eps []*model.Endpoint // sorted; nil: none
}

type errorChange struct {
	key  string
	errs []model.ConfigError
}

// prepare computes the shard writes for a batch and forgets the batch's
// dirty marks. It runs outside the shard's lock.
func (s *state) prepare(b *batch) *changes {
	if b.istio {
		s.rebuildIstio(b)
	}
	ch := &changes{services: make([]serviceChange, 0, len(b.services))}
	for k := range b.services {
		ch.services = append(ch.services, s.service(k, b))
	}
	// Sorted, so that logs and events come in a stable order.
	slices.SortFunc(ch.services, func(a, b serviceChange) int {
		return cmp.Or(cmp.Compare(a.key.Namespace, b.key.Namespace), cmp.Compare(a.key.Hostname, b.key.Hostname))
	})
	keys := slices.Sorted(maps.Keys(b.errKeys))
	for _, key := range keys {
		errs := s.errorsOf(key)
		old := s.reported[key]
		if slices.Equal(old, errs) {
			continue
		}
		s.logErrors(model.NewErrors(errs, old))
		if len(errs) == 0 {
			delete(s.reported, key)
			s.log.Info("etcd key no longer has errors", "key", key)
		} else {
			s.reported[key] = errs
		}
		ch.errors = append(ch.errors, errorChange{key: key, errs: errs})
	}
	return ch
}

// rebuildIstio runs config.Build over the valid Istio documents and marks
// every service it defined before or defines now.
func (s *state) rebuildIstio(b *batch) {
	keys := slices.Sorted(maps.Keys(s.istioKeys))
	results := make([]*config.Result, len(keys))
	clear(s.istioLoc)
	for i, key := range keys {
		results[i] = s.istioKeys[key].istio
		for _, o := range results[i].Objects {
			s.istioLoc[o.Location] = key
		}
		b.errKeys[key] = struct{}{}
	}
	// Keys whose set-level errors may now be gone.
	for key := range s.reported {
		if rec := s.records[key]; rec != nil && rec.typ == v1.KeyIstio {
			b.errKeys[key] = struct{}{}
		}
	}
	out := config.Build(RegistryName, results)
	for k := range s.istioSvcs {
		b.services[k] = struct{}{}
	}
	for k := range s.istioEps {
		b.services[k] = struct{}{}
	}
	clear(s.istioSvcs)
	for _, svc := range out.Services {
		k := model.ServiceKey{Namespace: svc.Namespace, Hostname: svc.Hostname}
		s.istioSvcs[k] = svc
		b.services[k] = struct{}{}
	}
	s.istioEps = out.Endpoints
	for k := range s.istioEps {
		b.services[k] = struct{}{}
	}
	s.istioOut = out
}

// service computes the service and endpoints of one service key.
func (s *state) service(k model.ServiceKey, b *batch) serviceChange {
	rec, ist := s.services[k], s.istioSvcs[k]
	win, lose := rec, ist
	if rec == nil || (ist != nil && older(ist, rec)) {
		win, lose = ist, rec
	}
	old, had := s.conflicts[k]
	if lose != nil {
		c := conflict{key: lose.Source.Location, err: model.ConfigError{
			Registry: RegistryName, Location: lose.Source.Location,
			Object:  lose.Source.Kind + " " + lose.Source.Namespace + "/" + lose.Source.Name,
			Message: fmt.Sprintf("host %s in namespace %s is also defined by %s, which is older and wins; ignored", k.Hostname, k.Namespace, win.Source),
			Warning: true,
		}}
		if lose == ist {
			c.key = s.istioLoc[lose.Source.Location]
		}
		if !had || old != c {
			s.conflicts[k] = c
			b.errKeys[c.key] = struct{}{}
		}
	} else if had {
		delete(s.conflicts, k)
	}
	if had {
		b.errKeys[old.key] = struct{}{}
	}

	inst := s.instances[k]
	istEps := s.istioEps[k]
	if ist != nil && win != ist {
		istEps = nil // the ServiceEntry lost: its own endpoints do not count
	}
	var eps []*model.Endpoint
	if n := len(inst) + len(istEps); n > 0 {
		eps = make([]*model.Endpoint, 0, n)
		for _, ep := range inst {
			eps = append(eps, ep)
		}
		for _, ep := range istEps {
			ep.Hash()
			eps = append(eps, ep)
		}
	}
	if win != nil && win == rec && len(eps) == 0 &&
		(win.Resolution == model.DNSLB || win.Resolution == model.DNSRoundRobinLB) {
		// As for a ServiceEntry: with DNS resolution and no instances,
		// proxies resolve the host itself.
		ep := &model.Endpoint{Address: win.Hostname, Source: win.Source}
		ep.Hash()
		eps = []*model.Endpoint{ep}
	}
	model.SortEndpoints(eps)
	return serviceChange{key: k, svc: win, eps: eps}
}

// older orders two definitions of one service as Istio does.
func older(a, b *model.Service) bool {
	if !a.CreationTime.Equal(b.CreationTime) {
		return a.CreationTime.Before(b.CreationTime)
	}
	return a.Source.Kind+"/"+a.Source.Location < b.Source.Kind+"/"+b.Source.Location
}

// errorsOf returns the errors to report for a key.
func (s *state) errorsOf(key string) []model.ConfigError {
	var errs []model.ConfigError
	if rec := s.records[key]; rec != nil {
		errs = append(errs, rec.errs...)
		if rec.istio != nil && s.istioOut != nil {
			errs = append(errs, s.istioOut.ErrorsFor(key)...)
		}
	}
	if len(s.conflicts) > 0 {
		var cs []conflict
		for _, c := range s.conflicts {
			if c.key == key {
				cs = append(cs, c)
			}
		}
		slices.SortFunc(cs, func(a, b conflict) int { return strings.Compare(a.err.Message, b.err.Message) })
		for _, c := range cs {
			errs = append(errs, c.err)
		}
	}
	return errs
}

func (s *state) logErrors(errs []model.ConfigError) {
	for _, e := range errs {
		level, msg := slog.LevelError, "invalid etcd record"
		if e.Warning {
			level, msg = slog.LevelWarn, "etcd record warning"
		}
		s.log.Log(context.Background(), level, msg, "key", e.Location, "object", e.Object, "field", e.Field, "error", e.Message)
	}
}

// apply writes prepared changes in the transaction.
func (ch *changes) apply(tx *model.Txn) {
	for _, c := range ch.services {
		if c.svc != nil {
			tx.SetService(c.svc)
		} else if tx.Service(c.key) != nil {
			tx.DeleteService(c.key)
		}
		tx.SetEndpoints(c.key, c.eps)
	}
	for _, e := range ch.errors {
		tx.SetErrors(e.key, e.errs)
	}
}
