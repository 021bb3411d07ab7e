package jwks

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sextant-mesh/sextant/internal/meshtest"
	"github.com/sextant-mesh/sextant/model"
)

func requestAuthn(uri string) []byte {
	return []byte(`apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: default}
spec:
  jwtRules:
  - issuer: https://issuer.example
    jwksUri: ` + uri + `
`)
}

func keysIn(snap *model.Snapshot, uri string) string {
	for _, c := range snap.Configs(model.KindJWKS) {
		if c.Key.Name == uri {
			return c.Spec.(*wrapperspb.StringValue).GetValue()
		}
	}
	return ""
}

func warningsIn(snap *model.Snapshot) string {
	var out []string
	for _, e := range snap.Errors {
		out = append(out, e.Error())
	}
	return strings.Join(out, "\n")
}

func TestFetcher(t *testing.T) {
	var body atomic.Value
	body.Store(`{"keys":[{"kty":"oct","kid":"1"}]}`)
	var fail atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fail.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, body.Load().(string))
	}))
	defer srv.Close()
	uri := srv.URL + "/jwks.json"

	agg := model.NewAggregator()
	if err := meshtest.Load(agg.NewShard("file"), map[string][]byte{"ra.yaml": requestAuthn(uri)}); err != nil {
		t.Fatal(err)
	}
	var snap *model.Snapshot
	rebuild := func() { snap, _ = agg.Build() }
	rebuild()
	f := New(agg.NewShard(ShardName), func() *model.Snapshot { return snap },
		Options{Refresh: time.Minute, RetryAfter: time.Second, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ctx := context.Background()
	now := time.Now()

	f.Sync(ctx, now)
	rebuild()
	if got := keysIn(snap, uri); !strings.Contains(got, `"kid":"1"`) {
		t.Fatalf("keys after first sync = %q", got)
	}
	// Not due yet: a changed key set is not fetched before Refresh.
	body.Store(`{"keys":[{"kty":"oct","kid":"2"}]}`)
	f.Sync(ctx, now.Add(30*time.Second))
	rebuild()
	if got := keysIn(snap, uri); !strings.Contains(got, `"kid":"1"`) {
		t.Fatalf("refetched before refresh: %q", got)
	}
	f.Sync(ctx, now.Add(time.Minute))
	rebuild()
	if got := keysIn(snap, uri); !strings.Contains(got, `"kid":"2"`) {
		t.Fatalf("not refreshed: %q", got)
	}
	// A failed refresh keeps the last good keys and is reported.
	fail.Store(true)
	f.Sync(ctx, now.Add(2*time.Minute))
	rebuild()
	if got := keysIn(snap, uri); !strings.Contains(got, `"kid":"2"`) {
		t.Fatalf("failed refresh dropped the keys: %q", got)
	}
	if w := warningsIn(snap); !strings.Contains(w, "cannot fetch the key set") {
		t.Fatalf("failure not reported: %q", w)
	}
	// Recovery clears the report.
	fail.Store(false)
	f.Sync(ctx, now.Add(2*time.Minute+time.Second))
	rebuild()
	if w := warningsIn(snap); strings.Contains(w, "cannot fetch") {
		t.Fatalf("stale report: %q", w)
	}
	// A URI no longer used is forgotten.
	snap = nil // no RequestAuthentication in use any more
	f.Sync(ctx, now.Add(3*time.Minute))
	rebuild()
	if got := keysIn(snap, uri); got != "" {
		t.Fatalf("keys of an unused URI kept: %q", got)
	}
}

// A URI that never answered gets no keys (translation then inlines a set
// that refuses every token), and the response must be a key set.
func TestFetcherRejectsNonJWKS(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `<html>login</html>`)
	}))
	defer srv.Close()
	uri := srv.URL + "/jwks.json"
	agg := model.NewAggregator()
	if err := meshtest.Load(agg.NewShard("file"), map[string][]byte{"ra.yaml": requestAuthn(uri)}); err != nil {
		t.Fatal(err)
	}
	snap, _ := agg.Build()
	f := New(agg.NewShard(ShardName), func() *model.Snapshot { return snap }, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	f.Sync(context.Background(), time.Now())
	snap, _ = agg.Build()
	if got := keysIn(snap, uri); got != "" {
		t.Fatalf("non-JWKS accepted: %q", got)
	}
	if w := warningsIn(snap); !strings.Contains(w, "not a JSON Web Key Set") {
		t.Fatalf("not reported: %q", w)
	}
}
