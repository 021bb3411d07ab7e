package kube

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"
	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/sextant-mesh/sextant/ca/authn"
	"github.com/sextant-mesh/sextant/ca/catest"
	"github.com/sextant-mesh/sextant/ca/trust"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// reviewing makes a fake clientset answer TokenReviews: "good-<user>"
// tokens are valid for istio-ca.
func reviewing(t *testing.T) *fake.Clientset {
	c := fake.NewClientset()
	c.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		tr := a.(k8stesting.CreateAction).GetObject().(*authv1.TokenReview)
		out := tr.DeepCopy()
		switch tr.Spec.Token {
		case "good":
			out.Status = authv1.TokenReviewStatus{Authenticated: true, Audiences: []string{"istio-ca"},
				User: authv1.UserInfo{Username: "system:serviceaccount:default:echo"}}
		case "other-audience":
			out.Status = authv1.TokenReviewStatus{Authenticated: true, Audiences: []string{"api"},
				User: authv1.UserInfo{Username: "system:serviceaccount:default:echo"}}
		default:
			out.Status = authv1.TokenReviewStatus{Error: "invalid bearer token"}
		}
		return true, out, nil
	})
	return c
}

func TestTokenReviewer(t *testing.T) {
	local := reviewing(t)
	remote := reviewing(t)
	r := NewTokenReviewer(local, ReviewerOptions{ClusterID: "east", Remote: func(id string) kubernetes.Interface {
		if id == "west" {
			return remote
		}
		return nil
	}})
	ctx := context.Background()
	withCluster := func(id string) context.Context {
		return metadata.NewIncomingContext(ctx, metadata.Pairs(ClusterIDMetadata, id))
	}
	aud := []string{"istio-ca"}
	if u, err := r.ReviewToken(ctx, "good", aud); err != nil || u != "system:serviceaccount:default:echo" {
		t.Errorf("good token: %q %v", u, err)
	}
	if _, err := r.ReviewToken(ctx, "bad", aud); !errors.Is(err, authn.ErrReviewRejected) {
		t.Errorf("bad token: %v", err)
	}
	if _, err := r.ReviewToken(ctx, "other-audience", aud); !errors.Is(err, authn.ErrReviewRejected) {
		t.Errorf("wrong audience: %v", err)
	}
	if _, err := r.ReviewToken(withCluster("east"), "good", aud); err != nil {
		t.Errorf("own cluster id: %v", err)
	}
	if _, err := r.ReviewToken(withCluster("mars"), "good", aud); !errors.Is(err, ErrUnknownCluster) {
		t.Errorf("unknown cluster: %v", err)
	}
	before := len(remote.Actions())
	if _, err := r.ReviewToken(withCluster("west"), "good", aud); err != nil || len(remote.Actions()) != before+1 {
		t.Errorf("remote cluster: %v (%d actions)", err, len(remote.Actions())-before)
	}
	// Through the CA's authenticator: identity from the service account.
	k := authn.NewKubeJWT(r, "cluster.local", nil)
	caller, err := k.Authenticate(metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", "Bearer good")))
	if err != nil || caller.Identity.String() != "spiffe://cluster.local/ns/default/sa/echo" {
		t.Errorf("KubeJWT: %+v %v", caller, err)
	}
}

func fastElection() Election {
	return Election{LeaseDuration: time.Second, RenewDeadline: 800 * time.Millisecond, RetryPeriod: 100 * time.Millisecond}
}

// Several replicas start at once with no root: exactly one generates it,
// every replica ends up with the same root.
func TestBootstrapSelfSignedReplicas(t *testing.T) {
	c := fake.NewClientset()
	ctx := context.Background()
	const n = 3
	dirs := make([]string, n)
	syncs := make([]*SecretSync, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		dirs[i] = t.TempDir()
		wg.Go(func() {
			syncs[i], errs[i] = Bootstrap(ctx, RootOptions{Client: c, Dir: dirs[i], Identity: "replica-" + string(rune('a'+i)),
				PollInterval: 50 * time.Millisecond, Logger: quiet(), Election: fastElection()})
		})
	}
	wg.Wait()
	var first []byte
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("replica %d: %v", i, errs[i])
		}
		if syncs[i].Mode() != ModeSelfSigned {
			t.Errorf("replica %d: mode %s", i, syncs[i].Mode())
		}
		b, err := os.ReadFile(filepath.Join(dirs[i], trust.CACertFile))
		if err != nil {
			t.Fatal(err)
		}
		if first == nil {
			first = b
		} else if string(b) != string(first) {
			t.Errorf("replica %d has another root", i)
		}
		if _, err := trust.Open(dirs[i], trust.Options{}); err != nil {
			t.Errorf("replica %d: trust.Open: %v", i, err)
		}
	}
	s, err := c.CoreV1().Secrets("istio-system").Get(ctx, SelfSignedSecret, metav1.GetOptions{})
	if err != nil || string(s.Data[trust.CACertFile]) != string(first) || len(s.Data[trust.CAKeyFile]) == 0 {
		t.Fatalf("Secret: %v", err)
	}
}

func TestBootstrapPluggedIn(t *testing.T) {
	src := t.TempDir()
	catest.WritePlugged(t, src, catest.PluggedOptions{})
	data := map[string][]byte{}
	for _, f := range []string{trust.CACertFile, trust.CAKeyFile, trust.CertChainFile, trust.RootCertFile} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		data[f] = b
	}
	c := fake.NewClientset(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: PluggedSecret, Namespace: "istio-system"}, Data: data})
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ss, err := Bootstrap(ctx, RootOptions{Client: c, Dir: dir, Logger: quiet(), PollInterval: 50 * time.Millisecond})
	if err != nil || ss.Mode() != ModePlugged {
		t.Fatalf("Bootstrap: %v %v", ss, err)
	}
	store, err := trust.Open(dir, trust.Options{})
	if err != nil || store.Current().Mode != trust.PluggedIn {
		t.Fatalf("trust.Open: %v", err)
	}
	gen := store.Current().Generation
	done := make(chan error, 1)
	go func() { done <- ss.Run(ctx, store) }()
	// The operator rotates the intermediate: the store reloads it.
	src2 := t.TempDir()
	catest.WritePlugged(t, src2, catest.PluggedOptions{})
	sec, _ := c.CoreV1().Secrets("istio-system").Get(ctx, PluggedSecret, metav1.GetOptions{})
	for f := range data {
		b, _ := os.ReadFile(filepath.Join(src2, f))
		sec.Data[f] = b
	}
	if _, err := c.CoreV1().Secrets("istio-system").Update(ctx, sec, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for store.Current().Generation == gen {
		if time.Now().After(deadline) {
			t.Fatal("plugged-in CA not reloaded from its Secret")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Bad Secrets are refused with a message naming the key.
	bad := fake.NewClientset(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: PluggedSecret, Namespace: "istio-system"},
		Data: map[string][]byte{trust.CACertFile: data[trust.CACertFile]}})
	if _, err := Bootstrap(context.Background(), RootOptions{Client: bad, Dir: t.TempDir(), Logger: quiet()}); err == nil {
		t.Error("incomplete cacerts accepted")
	}
}

func TestRootCertPublisher(t *testing.T) {
	c := fake.NewClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "a"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "b"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "outside", Labels: map[string]string{"mesh": "off"}}},
	)
	var mu sync.Mutex
	roots := "ROOT-1"
	watch := make(chan struct{}, 1)
	p, err := NewRootCertPublisher(PublisherOptions{
		Client: c,
		Roots:  func() []byte { mu.Lock(); defer mu.Unlock(); return []byte(roots) },
		Watch:  func() (<-chan struct{}, func()) { return watch, func() {} },
		InMesh: func(ns *corev1.Namespace) bool { return ns.Labels["mesh"] != "off" },
		Logger: quiet(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	want := func(ns, v string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			cm, err := c.CoreV1().ConfigMaps(ns).Get(ctx, RootCertConfigMap, metav1.GetOptions{})
			got := "<none>"
			if err == nil {
				got = cm.Data[RootCertKey]
			}
			if got == v {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: root %q, want %q", ns, got, v)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	want("a", "ROOT-1")
	want("b", "ROOT-1")
	want("outside", "<none>")
	// A new namespace gets it; a root change reaches every namespace.
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "c"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	want("c", "ROOT-1")
	mu.Lock()
	roots = "ROOT-2"
	mu.Unlock()
	watch <- struct{}{}
	want("a", "ROOT-2")
	want("c", "ROOT-2")
	// Someone deletes it: it comes back.
	if err := c.CoreV1().ConfigMaps("b").Delete(ctx, RootCertConfigMap, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	want("b", "ROOT-2")
}
