package etcdclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	v1 "github.com/sextant-mesh/sextant/api/etcd/v1"
)

// DefaultTTL is the lease TTL of a registration that names none.
const DefaultTTL = 10 * time.Second

// listPageSize is how many keys one Get of List fetches.
const listPageSize = 1000

// Client reads and writes registry records in etcd.
type Client struct {
	cli    *clientv3.Client
	prefix string
	owned  bool
}

// Dial connects to etcd. It does not wait for a connection: requests wait
// until etcd is reachable or their context ends.
func Dial(cfg Config) (*Client, error) {
	cc, err := cfg.ClientConfig()
	if err != nil {
		return nil, err
	}
	prefix, _ := cfg.NormalizedPrefix() // checked by ClientConfig
	cli, err := clientv3.New(cc)
	if err != nil {
		return nil, fmt.Errorf("connect to etcd %s: %w", strings.Join(cfg.Endpoints, ","), err)
	}
	return &Client{cli: cli, prefix: prefix, owned: true}, nil
}

// New wraps an existing etcd client; prefix "" means v1.DefaultPrefix.
// Close does not close cli.
func New(cli *clientv3.Client, prefix string) (*Client, error) {
	p, err := v1.NormalizePrefix(prefix)
	if err != nil {
		return nil, err
	}
	return &Client{cli: cli, prefix: p}, nil
}

// Prefix returns the key prefix in use.
func (c *Client) Prefix() string { return c.prefix }

// Etcd returns the underlying etcd client.
func (c *Client) Etcd() *clientv3.Client { return c.cli }

// Close closes the etcd connection if Dial opened it. Registrations should
// be closed first.
func (c *Client) Close() error {
	if c.owned {
		return c.cli.Close()
	}
	return nil
}

// Registration describes an instance to register.
type Registration struct {
	// Service names the service (Host, Namespace) the instance belongs to.
	// If Ports is not empty and no service record exists yet, Register
	// creates it from Service (without a lease: it outlives the instance).
	// An existing record is left as it is. With no Ports, the service is
	// expected to be defined elsewhere (another record, or a ServiceEntry).
	Service v1.Service
	// Instance is the instance record. APIVersion and Kind may be left
	// empty.
	Instance v1.Instance
	// ID distinguishes several instances at one address; the key ends in
	// "<address>:<ID>".
	ID string
	// TTL of the lease; 0 means DefaultTTL. etcd rounds up to its minimum
	// (about 2s with default settings).
	TTL time.Duration
	// Logger reports lost leases and re-registrations; nil means
	// slog.Default().
	Logger *slog.Logger
}

// Registered is a live registration: its lease is kept alive until Close.
// If the lease is lost anyway (etcd unreachable for longer than the TTL),
// the instance is registered again with a new lease as soon as possible.
type Registered struct {
	c      *Client
	key    string
	svcKey string
	ttl    int64
	log    *slog.Logger
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	svc     []byte // nil: do not create the service
	inst    []byte
	lease   clientv3.LeaseID
	created bool

	closeOnce sync.Once
	closeErr  error
}

// Register writes the instance (and the service definition if it is
// missing) and starts keeping its lease alive. It fails if the records are
// invalid or etcd cannot be written before ctx ends.
func (c *Client) Register(ctx context.Context, reg Registration) (*Registered, error) {
	svc := reg.Service
	svc.APIVersion, svc.Kind = v1.APIVersion, v1.KindService
	inst := reg.Instance
	inst.APIVersion, inst.Kind = v1.APIVersion, v1.KindInstance
	name := v1.InstanceName(inst.Address, reg.ID)
	key, err := v1.ParseKey(c.prefix, v1.InstanceKey(c.prefix, svc.Namespace, svc.Host, name))
	if err != nil {
		return nil, fmt.Errorf("register %s/%s %s: %w", svc.Namespace, svc.Host, name, err)
	}
	if err := inst.Validate(); err != nil {
		return nil, fmt.Errorf("register %s: instance: %w", key, err)
	}
	if err := key.CheckInstance(&inst); err != nil {
		return nil, fmt.Errorf("register %s: instance: %w", key, err)
	}
	r := &Registered{
		c:      c,
		key:    v1.InstanceKey(c.prefix, svc.Namespace, svc.Host, name),
		svcKey: v1.ServiceKey(c.prefix, svc.Namespace, svc.Host),
		ttl:    ttlSeconds(reg.TTL),
		log:    reg.Logger,
		done:   make(chan struct{}),
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	if len(svc.Ports) > 0 {
		if err := svc.Validate(); err != nil {
			return nil, fmt.Errorf("register %s: service: %w", r.svcKey, err)
		}
		if r.svc, err = json.Marshal(svc); err != nil {
			return nil, err
		}
	}
	if r.inst, err = json.Marshal(inst); err != nil {
		return nil, err
	}
	if err := r.put(ctx); err != nil {
		return nil, err
	}
	kctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go r.keepAlive(kctx)
	return r, nil
}

func ttlSeconds(d time.Duration) int64 {
	if d <= 0 {
		d = DefaultTTL
	}
	return max(int64((d+time.Second-1)/time.Second), 1)
}

// Key returns the instance's key.
func (r *Registered) Key() string { return r.key }

// Lease returns the current lease.
func (r *Registered) Lease() clientv3.LeaseID {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lease
}

// ServiceCreated reports whether the last write created the service record.
func (r *Registered) ServiceCreated() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.created
}

// put grants a lease and writes the records with it.
func (r *Registered) put(ctx context.Context) error {
	cli := r.c.cli
	lease, err := cli.Grant(ctx, r.ttl)
	if err != nil {
		return fmt.Errorf("register %s: grant lease: %w", r.key, err)
	}
	r.mu.Lock()
	svc, inst := r.svc, r.inst
	r.mu.Unlock()
	putInst := clientv3.OpPut(r.key, string(inst), clientv3.WithLease(lease.ID))
	txn := cli.Txn(ctx)
	if svc != nil {
		txn = txn.If(clientv3.Compare(clientv3.CreateRevision(r.svcKey), "=", 0)).
			Then(clientv3.OpPut(r.svcKey, string(svc)), putInst).
			Else(putInst)
	} else {
		txn = txn.Then(putInst)
	}
	resp, err := txn.Commit()
	if err != nil {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		_, _ = cli.Revoke(rctx, lease.ID)
		cancel()
		return fmt.Errorf("register %s: write: %w", r.key, err)
	}
	r.mu.Lock()
	r.lease = lease.ID
	r.created = svc != nil && resp.Succeeded
	r.mu.Unlock()
	return nil
}

// keepAlive refreshes the lease until ctx ends and registers again when the
// lease is lost.
func (r *Registered) keepAlive(ctx context.Context) {
	defer close(r.done)
	for {
		ch, err := r.c.cli.KeepAlive(ctx, r.Lease())
		if err == nil {
			for range ch {
			}
		}
		if ctx.Err() != nil || r.c.cli.Ctx().Err() != nil {
			return // closed, or the etcd client was closed
		}
		r.log.Warn("etcd lease lost; registering again", "key", r.key, "lease", int64(r.Lease()), "err", err)
		for wait := 100 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
			if !sleep(ctx, wait) {
				return
			}
			pctx, cancel := context.WithTimeout(ctx, time.Duration(r.ttl)*time.Second)
			err := r.put(pctx)
			cancel()
			if err == nil {
				r.log.Info("registered again", "key", r.key, "lease", int64(r.Lease()))
				break
			}
			if ctx.Err() != nil || r.c.cli.Ctx().Err() != nil {
				return
			}
			r.log.Warn("cannot register again; retrying", "key", r.key, "err", err)
		}
	}
}

// sleep waits d (with up to 20% jitter) and reports whether ctx is alive.
func sleep(ctx context.Context, d time.Duration) bool {
	d += time.Duration(rand.Int64N(int64(d)/5 + 1))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Update replaces the instance record (for example to set health
// "draining" or the traffic state label before shutting down). The address
// cannot change.
func (r *Registered) Update(ctx context.Context, inst v1.Instance) error {
	inst.APIVersion, inst.Kind = v1.APIVersion, v1.KindInstance
	if err := inst.Validate(); err != nil {
		return fmt.Errorf("update %s: %w", r.key, err)
	}
	k, err := v1.ParseKey(r.c.prefix, r.key)
	if err != nil {
		return err
	}
	if err := k.CheckInstance(&inst); err != nil {
		return fmt.Errorf("update %s: %w", r.key, err)
	}
	b, err := json.Marshal(inst)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.inst = b
	lease := r.lease
	r.mu.Unlock()
	if _, err := r.c.cli.Put(ctx, r.key, string(b), clientv3.WithLease(lease)); err != nil {
		return fmt.Errorf("update %s: %w", r.key, err)
	}
	return nil
}

// Close stops refreshing the lease and revokes it, which deletes the
// instance. If etcd cannot be reached before ctx ends, the instance
// disappears when the lease expires instead, and Close returns the error.
// Close may be called more than once.
func (r *Registered) Close(ctx context.Context) error {
	r.closeOnce.Do(func() {
		r.cancel()
		<-r.done
		_, err := r.c.cli.Revoke(ctx, r.Lease())
		if err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			r.closeErr = fmt.Errorf("deregister %s: revoke lease: %w", r.key, err)
		}
	})
	return r.closeErr
}

// Deregister deletes the instances of a service that have the given
// address (whatever their id) and returns their keys. It does not revoke
// leases, so a process still registered keeps running undisturbed but
// stays deregistered until its lease is lost.
func (c *Client) Deregister(ctx context.Context, namespace, host, address string) ([]string, error) {
	prefix := v1.InstancesPrefix(c.prefix, namespace, host)
	resp, err := c.cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("deregister: get %s: %w", prefix, err)
	}
	var keys []string
	var ops []clientv3.Op
	for _, kv := range resp.Kvs {
		name := strings.TrimPrefix(string(kv.Key), prefix)
		addr := ""
		if in, err := v1.DecodeInstance(kv.Value); err == nil {
			addr = in.Address
		}
		if addr == address || (addr == "" && v1.CheckInstanceName(name, address) == nil) {
			keys = append(keys, string(kv.Key))
			ops = append(ops, clientv3.OpDelete(string(kv.Key)))
		}
	}
	if len(ops) == 0 {
		return nil, nil
	}
	if _, err := c.cli.Txn(ctx).Then(ops...).Commit(); err != nil {
		return nil, fmt.Errorf("deregister: delete %s: %w", strings.Join(keys, ", "), err)
	}
	return keys, nil
}

// Listing is the content of the registry's v1 records.
type Listing struct {
	// Revision is the etcd revision the listing was read at.
	Revision  int64            `json:"revision"`
	Services  []ServiceRecord  `json:"services"`
	Instances []InstanceRecord `json:"instances"`
	// Invalid are records that Sextant rejects.
	Invalid []InvalidRecord `json:"invalid,omitempty"`
}

// ServiceRecord is a service record and its key.
type ServiceRecord struct {
	Key     string     `json:"key"`
	Service v1.Service `json:"service"`
}

// InstanceRecord is an instance record and where it is.
type InstanceRecord struct {
	Key       string `json:"key"`
	Namespace string `json:"namespace"`
	Host      string `json:"host"`
	// Name is the key's last segment: the address, or address:id.
	Name     string      `json:"name"`
	Lease    int64       `json:"lease,omitempty"`
	Instance v1.Instance `json:"instance"`
}

// InvalidRecord is a record that failed to decode or validate.
type InvalidRecord struct {
	Key   string `json:"key"`
	Error string `json:"error"`
}

// List reads every service and instance record (not the Istio documents),
// sorted by key, at one revision.
func (c *Client) List(ctx context.Context) (*Listing, error) {
	prefix := c.prefix + "/v1/"
	end := clientv3.GetPrefixRangeEnd(prefix)
	l := &Listing{Services: []ServiceRecord{}, Instances: []InstanceRecord{}}
	for key := prefix; ; {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(listPageSize)}
		if l.Revision != 0 {
			opts = append(opts, clientv3.WithRev(l.Revision))
		}
		resp, err := c.cli.Get(ctx, key, opts...)
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", prefix, err)
		}
		if l.Revision == 0 {
			l.Revision = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			l.add(c.prefix, string(kv.Key), kv.Value, kv.Lease)
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return l, nil
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

func (l *Listing) add(prefix, key string, value []byte, lease int64) {
	invalid := func(err error) { l.Invalid = append(l.Invalid, InvalidRecord{Key: key, Error: err.Error()}) }
	k, err := v1.ParseKey(prefix, key)
	if err != nil {
		invalid(err)
		return
	}
	switch k.Type {
	case v1.KeyService:
		s, err := v1.DecodeService(value)
		if err == nil {
			err = k.CheckService(s)
		}
		if err != nil {
			invalid(err)
			return
		}
		l.Services = append(l.Services, ServiceRecord{Key: key, Service: *s})
	case v1.KeyInstance:
		in, err := v1.DecodeInstance(value)
		if err == nil {
			err = k.CheckInstance(in)
		}
		if err != nil {
			invalid(err)
			return
		}
		l.Instances = append(l.Instances, InstanceRecord{Key: key, Namespace: k.Namespace, Host: k.Host, Name: k.Instance, Lease: lease, Instance: *in})
	default:
		invalid(errors.New("not a sextant.io/v1 service or instance key"))
	}
}
