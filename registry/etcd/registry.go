package etcd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"k8s.io/apimachinery/pkg/util/wait"

	v1 "github.com/sextant-mesh/sextant/api/etcd/v1"
	"github.com/sextant-mesh/sextant/model"
)

// RegistryName names this registry in sources, errors and its shard.
const RegistryName = "etcd"

const (
	defaultPageSize = 2000
	minBackoff      = 100 * time.Millisecond
	maxBackoff      = 10 * time.Second
	// maxBatchEvents bounds how many events of watch responses that
	// arrive together are merged into one shard transaction.
	maxBatchEvents = 10000
)

// errRelist asks Run to list the prefix again.
type errRelist struct{ reason string }

func (e errRelist) Error() string { return e.reason }

// Registry serves the services and instances stored in etcd.
type Registry struct {
	cfg     Config
	shard   *model.Shard
	log     *slog.Logger
	running atomic.Bool
	// applied is the etcd revision the shard reflects.
	applied atomic.Int64
	// lists counts completed listings (the initial one and relists).
	lists atomic.Int64

	// The fields below are owned by the goroutine running Run.

	st      *state
	rev     int64  // every event up to rev has been applied
	gen     uint64 // listing generation
	pending *batch // changes not yet written to the shard
}

// New returns a registry that reads cfg's etcd and writes to shard. A nil
// logger means slog.Default(). Configuration errors are returned by Run;
// check them first with cfg.Validate.
func New(cfg Config, shard *model.Shard, logger *slog.Logger) *Registry {
	if logger == nil {
		logger = slog.Default()
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.PageSize <= 0 {
		cfg.PageSize = defaultPageSize
	}
	return &Registry{
		cfg:   cfg,
		shard: shard,
		log:   logger.With("registry", RegistryName),
	}
}

// Revision returns the etcd revision the shard reflects: every change up to
// it has been applied. It is 0 until the first listing completes.
func (r *Registry) Revision() int64 { return r.applied.Load() }

// Run connects to etcd, loads the prefix, marks the shard synced and
// follows changes until ctx is cancelled, when it returns nil. While etcd
// cannot be reached it retries with backoff, keeping the last state in the
// shard. It returns an error only for an invalid configuration. Run may be
// called only once.
func (r *Registry) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("etcd registry: Run called more than once")
	}
	cc, prefix, err := r.cfg.clientConfig()
	if err != nil {
		return fmt.Errorf("etcd registry: %w", err)
	}
	r.log = r.log.With("prefix", prefix)
	r.st = newState(prefix, r.log)
	watchPrefix := v1.WatchPrefix(prefix)
	cli, err := clientv3.New(cc)
	for err != nil {
		// Only authentication needs etcd at this point.
		r.log.Warn("cannot connect to etcd; retrying", "endpoints", strings.Join(cc.Endpoints, ","), "err", err)
		if !sleep(ctx, newBackoff().Step()) {
			return nil
		}
		cli, err = clientv3.New(cc)
	}
	defer cli.Close()
	mctx, stopMonitor := context.WithCancel(ctx)
	monitorDone := make(chan struct{})
	go func() {
		defer close(monitorDone)
		r.monitor(mctx, cli.ActiveConnection())
	}()
	defer func() {
		stopMonitor()
		<-monitorDone
	}()

	relist := true
	retry := newBackoff()
	for ctx.Err() == nil {
		if relist {
			if err := r.list(ctx, cli, watchPrefix); err != nil {
				if ctx.Err() != nil {
					break
				}
				d := retry.Step()
				r.log.Warn("cannot list etcd; retrying", "endpoints", strings.Join(cc.Endpoints, ","), "err", err, "retry_in", d.Round(time.Millisecond))
				sleep(ctx, d)
				continue
			}
			relist = false
			retry = newBackoff()
		}
		before := r.rev
		err := r.watch(ctx, cli, watchPrefix)
		if ctx.Err() != nil {
			break
		}
		if r.rev > before {
			retry = newBackoff() // the watch made progress before it failed
		}
		var rl errRelist
		if errors.As(err, &rl) {
			r.log.Warn("listing etcd again", "reason", rl.reason, "revision", r.rev)
			relist = true
			continue
		}
		d := retry.Step()
		r.log.Warn("etcd watch ended; resuming", "err", err, "revision", r.rev, "retry_in", d.Round(time.Millisecond))
		sleep(ctx, d)
	}
	return nil
}

// monitor logs when etcd becomes unreachable and reachable again; the
// watch resumes by itself.
func (r *Registry) monitor(ctx context.Context, conn *grpc.ClientConn) {
	lost := false
	state := conn.GetState()
	for conn.WaitForStateChange(ctx, state) {
		state = conn.GetState()
		switch {
		case state == connectivity.TransientFailure && !lost:
			lost = true
			r.log.Warn("etcd unreachable; serving the last state read", "revision", r.applied.Load())
		case state == connectivity.Ready && lost:
			lost = false
			r.log.Info("etcd reachable again")
		}
	}
}

// list reads the whole prefix at one revision, page by page, reconciles it
// with the state and writes the difference in one transaction.
func (r *Registry) list(ctx context.Context, cli *clientv3.Client, prefix string) error {
	start := time.Now()
	if r.pending == nil {
		r.pending = newBatch()
	}
	b := r.pending
	r.gen++
	end := clientv3.GetPrefixRangeEnd(prefix)
	var rev int64
	keys := 0
	for key := prefix; ; {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(r.cfg.PageSize)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		gctx, cancel := context.WithTimeout(ctx, r.cfg.RequestTimeout)
		resp, err := cli.Get(gctx, key, opts...)
		cancel()
		if err != nil {
			return fmt.Errorf("get %s at revision %d: %w", key, rev, err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
			r.st.reserve(int(resp.Count))
		}
		r.st.putAll(resp.Kvs, r.gen, b)
		keys += len(resp.Kvs)
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	removed := r.st.sweep(r.gen, b)
	r.rev = rev
	first := r.lists.Load() == 0
	r.commit()
	r.lists.Add(1)
	if first {
		r.shard.MarkSynced()
	}
	r.log.Info("etcd listed", "keys", keys, "removed", removed, "revision", rev,
		"errors", len(r.st.reported), "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// watch follows changes from r.rev+1 until the watch fails. It returns an
// errRelist when the next revision is no longer available.
func (r *Registry) watch(ctx context.Context, cli *clientv3.Client, prefix string) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(r.rev+1),
		clientv3.WithProgressNotify(), clientv3.WithCreatedNotify())
	for {
		resp, ok := <-wch
		if !ok {
			return errors.New("watch channel closed")
		}
		// Merge the responses that are already waiting into one
		// transaction.
		if r.pending == nil {
			r.pending = newBatch()
		}
		var err error
		for {
			if err = r.handle(resp, r.pending); err != nil || r.pending.events >= maxBatchEvents {
				break
			}
			select {
			case resp, ok = <-wch:
				if !ok {
					err = errors.New("watch channel closed")
				}
			default:
				ok = false
			}
			if !ok {
				break
			}
		}
		r.commit()
		if err != nil {
			return err
		}
	}
}

// handle applies one watch response to the state.
func (r *Registry) handle(resp clientv3.WatchResponse, b *batch) error {
	switch {
	case resp.CompactRevision != 0:
		return errRelist{fmt.Sprintf("revision %d was compacted (oldest available: %d)", r.rev+1, resp.CompactRevision)}
	case resp.Canceled:
		err := resp.Err()
		if errors.Is(err, rpctypes.ErrCompacted) {
			return errRelist{err.Error()}
		}
		return fmt.Errorf("watch cancelled: %w", err)
	case resp.Created:
		if h := resp.Header.Revision; h < r.rev {
			// etcd was restored from an older backup (or replaced):
			// the revisions we know mean nothing there.
			return errRelist{fmt.Sprintf("etcd revision went back from %d to %d", r.rev, h)}
		}
		return nil
	case resp.IsProgressNotify():
		// Every event up to the header revision has been delivered.
		r.rev = max(r.rev, resp.Header.Revision)
		return nil
	}
	last := r.rev
	for _, ev := range resp.Events {
		kv := ev.Kv
		if kv.ModRevision <= r.rev {
			continue // already applied (a resumed watch may repeat)
		}
		switch ev.Type {
		case mvccpb.PUT:
			r.st.put(string(kv.Key), kv.Value, kv.CreateRevision, kv.ModRevision, r.gen, b)
		case mvccpb.DELETE:
			r.st.del(string(kv.Key), kv.ModRevision, b)
		}
		last = max(last, kv.ModRevision)
	}
	r.rev = last
	return nil
}

// commit writes the pending changes to the shard in one transaction.
func (r *Registry) commit() {
	b := r.pending
	r.pending = nil
	if b != nil && !b.empty() {
		ch := r.st.prepare(b)
		if len(ch.services) > 0 || len(ch.errors) > 0 {
			r.shard.Update(ch.apply)
		}
	}
	r.applied.Store(r.rev)
}

// newBackoff is the retry schedule: exponential from minBackoff to
// maxBackoff, each wait drawn from [d/2, d] ("equal jitter": a base of d/2
// plus up to 100% of it), so replicas that lost etcd together do not retry
// in step. Step never runs out: at the cap it keeps returning capped waits.
func newBackoff() *wait.Backoff {
	return &wait.Backoff{Duration: minBackoff / 2, Factor: 2, Jitter: 1, Cap: maxBackoff / 2, Steps: math.MaxInt32}
}

// sleep waits d and reports whether ctx is still alive.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
