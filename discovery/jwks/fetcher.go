package jwks

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"
	security "istio.io/api/security/v1beta1"

	"github.com/sextant-mesh/sextant/model"
)

// ShardName is the aggregator shard the fetcher writes.
const ShardName = "jwks"

// maxBody bounds a key set; real ones are a few KiB.
const maxBody = 1 << 20

// Options tune a Fetcher. Zero values take Istio's defaults.
type Options struct {
	// Refresh is how often a fetched key set is fetched again (istiod's
	// PILOT_JWT_PUB_KEY_REFRESH_INTERVAL, default 20m).
	Refresh time.Duration
	// RetryAfter is how soon a failed fetch is retried (default 10s).
	RetryAfter time.Duration
	// Timeout bounds one fetch (default 5s).
	Timeout time.Duration
	// Poll is how often the served snapshot is checked for new jwksUris
	// (default 1s).
	Poll   time.Duration
	Client *http.Client
	Logger *slog.Logger
}

// Fetcher keeps the key sets of every jwksUri in use.
type Fetcher struct {
	shard    *model.Shard
	snapshot func() *model.Snapshot
	o        Options
	state    map[string]*entry // by URI; owned by Run's goroutine
}

type entry struct {
	next    time.Time
	fetched bool // a key set is in the shard
}

// New returns a fetcher writing into shard and reading the URIs in use
// from snapshot (which may return nil before the first snapshot).
func New(shard *model.Shard, snapshot func() *model.Snapshot, o Options) *Fetcher {
	if o.Refresh <= 0 {
		o.Refresh = 20 * time.Minute
	}
	if o.RetryAfter <= 0 {
		o.RetryAfter = 10 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	if o.Client == nil {
		o.Client = &http.Client{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Fetcher{shard: shard, snapshot: snapshot, o: o, state: map[string]*entry{}}
}

// Run fetches until ctx is done. The shard is marked synced at once: the
// mesh is served without waiting for identity providers, and until a key
// set arrives translation inlines one that refuses every token.
func (f *Fetcher) Run(ctx context.Context) error {
	f.shard.MarkSynced()
	t := time.NewTicker(f.o.Poll)
	defer t.Stop()
	for {
		f.Sync(ctx, time.Now())
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// URIs lists the jwksUris of the RequestAuthentications in snap.
func URIs(snap *model.Snapshot) []string {
	if snap == nil {
		return nil
	}
	seen := map[string]bool{}
	var out []string
	for _, cfg := range snap.Configs(model.KindRequestAuthentication) {
		for _, r := range cfg.Spec.(*security.RequestAuthentication).GetJwtRules() {
			if u := r.GetJwksUri(); u != "" && r.GetJwks() == "" && !seen[u] {
				seen[u] = true
				out = append(out, u)
			}
		}
	}
	sort.Strings(out)
	return out
}

// Sync fetches what is due at now and forgets URIs no longer in use.
func (f *Fetcher) Sync(ctx context.Context, now time.Time) {
	uris := URIs(f.snapshot())
	inUse := map[string]bool{}
	for _, u := range uris {
		inUse[u] = true
		e := f.state[u]
		if e == nil {
			e = &entry{}
			f.state[u] = e
		}
		if now.Before(e.next) {
			continue
		}
		keys, err := f.fetch(ctx, u)
		if err != nil {
			// A key set fetched before stays (istiod keeps its cache); a URI
			// never fetched keeps refusing tokens.
			f.o.Logger.Warn("cannot fetch JWKS", "uri", u, "err", err, "keeping_previous", e.fetched)
			e.next = now.Add(f.o.RetryAfter)
			f.shard.Update(func(tx *model.Txn) {
				tx.SetErrors(ShardName+":"+u, []model.ConfigError{{Registry: ShardName, Location: u, Field: "jwksUri",
					Message: fmt.Sprintf("cannot fetch the key set: %v; tokens of this issuer are refused until it can be fetched", err), Warning: true}})
			})
			continue
		}
		e.next, e.fetched = now.Add(f.o.Refresh), true
		f.shard.Update(func(tx *model.Txn) {
			tx.SetErrors(ShardName+":"+u, nil)
			tx.SetConfig(&model.Config{Key: model.ConfigKey{Kind: model.KindJWKS, Name: u}, Spec: wrapperspb.String(keys),
				Source: model.Source{Registry: ShardName, Kind: "JWKS", Name: u, Location: u}})
		})
	}
	for u := range f.state {
		if inUse[u] {
			continue
		}
		delete(f.state, u)
		f.shard.Update(func(tx *model.Txn) {
			tx.SetErrors(ShardName+":"+u, nil)
			tx.DeleteConfig(model.ConfigKey{Kind: model.KindJWKS, Name: u})
		})
	}
}

// fetch gets one key set and checks it is a JWKS.
func (f *Fetcher) fetch(ctx context.Context, uri string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, f.o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return "", err
	}
	resp, err := f.o.Client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", uri, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return "", fmt.Errorf("GET %s: %w", uri, err)
	}
	if len(b) > maxBody {
		return "", fmt.Errorf("GET %s: key set larger than %d bytes", uri, maxBody)
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil || set.Keys == nil {
		return "", fmt.Errorf("GET %s: not a JSON Web Key Set", uri)
	}
	return string(b), nil
}
