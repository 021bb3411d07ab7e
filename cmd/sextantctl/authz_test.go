package main

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sextant-mesh/sextant/api/debug"
	"github.com/sextant-mesh/sextant/internal/adsclient"
	"github.com/sextant-mesh/sextant/internal/testenv"
)

// TestAuthzCheck: the rules on a sidecar's inbound chains, read back from
// what was pushed, for the translate golden mesh of every
// AuthorizationPolicy field plus a RequestAuthentication.
func TestAuthzCheck(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"authz.yaml", "jwt.yaml"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "discovery", "translate", "testdata", f))
		if err != nil {
			t.Fatal(err)
		}
		in := string(b)
		if f == "jwt.yaml" {
			// Only its RequestAuthentications: the service and policy
			// are in authz.yaml already.
			var docs []string
			for _, d := range strings.Split(in, "\n---\n") {
				if strings.Contains(d, "kind: RequestAuthentication") {
					docs = append(docs, d)
				}
			}
			in = strings.Join(docs, "\n---\n")
		}
		testenv.WriteFile(t, filepath.Join(dir, f), in)
	}
	env := testenv.Start(t, dir, testenv.Options{})
	cc, err := grpc.NewClient(env.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	for _, n := range []struct{ ip, pod string }{{"10.1.0.1", "reviews"}, {"10.9.0.9", "idle"}} {
		if _, err := adsclient.Start(ctx, cc, adsclient.Node(n.ip, n.pod, "default", "", map[string]string{"app": n.pod, "version": "v1"}),
			adsclient.Options{Follow: true}); err != nil {
			t.Fatal(err)
		}
	}
	u, err := url.Parse(env.Monitor.URL)
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() string {
		var all []debug.SyncStatus
		env.GetJSON(t, "/debug/syncz", &all)
		n := 0
		for _, st := range all {
			if st.Types["lds"].Status == "SYNCED" {
				n++
			}
		}
		if n != 2 {
			return "listeners not synced"
		}
		return ""
	})
	golden(t, "authz-check", mustSucceed(t, ctl(t, u.Host, "authz", "check", "reviews.default")))
	// A workload no policy selects: only namespace and mesh-wide rules.
	golden(t, "authz-check-idle", mustSucceed(t, ctl(t, u.Host, "authz", "check", "idle.default")))
	mustFail(t, ctl(t, u.Host, "authz", "check", "nobody.default"), `proxy "nobody.default" not found`)
}
