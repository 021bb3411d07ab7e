package e2e

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sextant-mesh/sextant/api/debug"
	"github.com/sextant-mesh/sextant/ca/trust"
	"github.com/sextant-mesh/sextant/discovery/translate"
	"github.com/sextant-mesh/sextant/internal/adsclient"
	"github.com/sextant-mesh/sextant/internal/testenv"
)

// TestSecureProxyNameHeldByOneIdentity: two TLS clients authenticated as
// different workloads cannot pass as one proxy. The first to claim
// web.default holds it; another identity claiming it (its node namespace
// matches its own identity, only the pod.namespace name is borrowed) is
// refused, while a second stream of the same identity is accepted. syncz
// shows each stream's authenticated identity.
func TestSecureProxyNameHeldByOneIdentity(t *testing.T) {
	dir := t.TempDir()
	testenv.WriteFile(t, dir+"/mesh.yaml", meshYAML)
	env := testenv.Start(t, dir, testenv.Options{})
	ca := startSecureCA(t, env.Server, trust.Options{})

	webCert, _ := ca.workloadCert(t, ca.dial(t, nil), "default", "web", bearer(ca.kube.KubeToken(t, "default", "web")))
	otherCert, _ := ca.workloadCert(t, ca.dial(t, nil), "other", "intruder", bearer(ca.kube.KubeToken(t, "other", "intruder")))
	webConn, otherConn := ca.dial(t, &webCert), ca.dial(t, &otherCert)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The node id names web.default; NAMESPACE metadata says "other", which
	// matches the intruder's identity, so authentication alone passes it.
	// A stream ends when its context is cancelled (a half-close alone
	// leaves an ADS stream open, as gRPC allows).
	cancels := map[*adsclient.Client]context.CancelFunc{}
	claim := func(ns string) *adsclient.Client {
		node := adsclient.Node("10.9.0.7", "web", ns, "", nil)
		node.Id = "sidecar~10.9.0.7~web.default~default.svc.cluster.local"
		cc := webConn
		if ns == "other" {
			cc = otherConn
		}
		cctx, ccancel := context.WithCancel(ctx)
		c, err := adsclient.Start(cctx, cc, node, adsclient.Options{Follow: true})
		if err != nil {
			ccancel()
			t.Fatal(err)
		}
		cancels[c] = ccancel
		return c
	}

	first := claim("default")
	waitResources(t, first, translate.ClusterType, 8)
	intruder := claim("other")
	select {
	case <-intruder.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("a stream claiming a name held by another identity was not refused")
	}
	if st, _ := status.FromError(intruder.Err()); st.Code() != codes.AlreadyExists ||
		!strings.Contains(st.Message(), "web.default is already held by a stream authenticated as spiffe://cluster.local/ns/default/sa/web") ||
		!strings.Contains(st.Message(), "spiffe://cluster.local/ns/other/sa/intruder") {
		t.Errorf("intruder: %v, want AlreadyExists naming both identities", intruder.Err())
	}

	// The same identity may hold the name twice (a reconnect overlapping
	// its old stream).
	again := claim("default")
	waitResources(t, again, translate.ClusterType, 8)
	var st []debug.SyncStatus
	testenv.Eventually(t, 5*time.Second, func() string {
		st = nil
		env.GetJSON(t, "/debug/syncz", &st)
		if len(st) != 2 {
			return "want the two web.default streams in syncz"
		}
		return ""
	})
	for _, s := range st {
		if s.Proxy != "web.default" || s.Identity != "spiffe://cluster.local/ns/default/sa/web" {
			t.Errorf("syncz entry %+v: want web.default with its authenticated identity", s)
		}
	}
	// config_dump of a name held by one identity answers (the newest
	// stream).
	resp, err := http.Get(env.Monitor.URL + "/debug/config_dump?proxyID=web.default")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("config_dump of web.default: %s", resp.Status)
	}

	// Once every stream of the holder is gone, another identity may take
	// the name.
	cancels[first]()
	cancels[again]()
	testenv.Eventually(t, 5*time.Second, func() string {
		st = nil
		env.GetJSON(t, "/debug/syncz", &st)
		if len(st) != 0 {
			return "web.default streams still connected"
		}
		return ""
	})
	taker := claim("other")
	waitResources(t, taker, translate.ClusterType, 8)
}
