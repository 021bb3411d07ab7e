package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	cakube "github.com/sextant-mesh/sextant/ca/kube"
	"github.com/sextant-mesh/sextant/ca/trust"

	"github.com/sextant-mesh/sextant/model"
	"github.com/sextant-mesh/sextant/registry/kube"
)

func parseKubeFlags(t *testing.T, args ...string) *kubeOptions {
	t.Helper()
	f := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	o := addKubeFlags(f)
	if err := f.Parse(args); err != nil {
		t.Fatal(err)
	}
	return o
}

func TestKubeFlags(t *testing.T) {
	t.Setenv("KUBECONFIG", "")
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	agg := model.NewAggregator()

	// No cluster configured: off, unless required.
	if _, _, on, err := parseKubeFlags(t).registry(agg, log); on || err != nil {
		t.Errorf("auto without a cluster: on=%v err=%v", on, err)
	}
	if _, _, _, err := parseKubeFlags(t, "--kube-registry=on").registry(agg, log); !errors.Is(err, kube.ErrNoCluster) {
		t.Errorf("on without a cluster: %v", err)
	}
	if _, _, _, err := parseKubeFlags(t, "--kube-registry=maybe").registry(agg, log); err == nil {
		t.Error("bad --kube-registry accepted")
	}
	if _, _, _, err := parseKubeFlags(t, "--kube-registry=off", "--kubeconfig=x").registry(agg, log); err == nil {
		t.Error("--kubeconfig with --kube-registry=off accepted")
	}

	// A kubeconfig (the API server need not be up: informers retry).
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kc, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`), 0o600); err != nil {
		t.Fatal(err)
	}
	run, set, on, err := parseKubeFlags(t, "--kubeconfig", kc, "--kube-discovery-selector", "mesh=on").registry(agg, log)
	if err != nil || !on || run == nil || set == nil {
		t.Fatalf("--kubeconfig: on=%v err=%v", on, err)
	}
	// $KUBECONFIG alone enables it too.
	t.Setenv("KUBECONFIG", kc)
	if _, _, on, err := parseKubeFlags(t).registry(model.NewAggregator(), log); !on || err != nil {
		t.Errorf("$KUBECONFIG: on=%v err=%v", on, err)
	}
	if _, _, _, err := parseKubeFlags(t, "--kube-discovery-selector", "a in (").registry(model.NewAggregator(), log); err == nil {
		t.Error("bad selector accepted")
	}
	if _, err := parseKubeFlags(t, "--kubeconfig", filepath.Join(t.TempDir(), "missing")).client(); err == nil {
		t.Error("missing kubeconfig accepted")
	}
	// The mesh ConfigMap cannot be read: flags and defaults apply.
	base := model.DefaultMeshConfig()
	got, err := parseKubeFlags(t, "--kubeconfig", kc).meshConfig(context.Background(), base, log)
	if err != nil || !reflect.DeepEqual(got, base) {
		t.Errorf("meshConfig without an API server: %+v %v", got, err)
	}
}

// The CA's in-cluster pieces as serve runs them: the root is created in
// istio-ca-secret and published to every namespace.
func TestKubeCA(t *testing.T) {
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "unused"))
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if kca, err := parseKubeFlags(t, "--kube-ca=false").ca(ctx, t.TempDir(), nil, log); kca != nil || err != nil {
		t.Errorf("--kube-ca=false: %v %v", kca, err)
	}
	c := fake.NewClientset(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "apps"}})
	o := parseKubeFlags(t)
	o.once.Do(func() {}) // use the fake clients
	o.clients = &kube.Clients{Kube: c}
	dir := filepath.Join(t.TempDir(), "ca")
	open := func(d string) (*trust.Store, error) { return trust.Open(d, trust.Options{Logger: log}) }
	kca, err := o.ca(ctx, dir, open, log)
	if err != nil || kca == nil || kca.Reviewer == nil {
		t.Fatalf("ca: %v %v", kca, err)
	}
	store, err := open(dir)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- kca.Run(ctx, store) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		cm, err := c.CoreV1().ConfigMaps("apps").Get(ctx, cakube.RootCertConfigMap, metav1.GetOptions{})
		if err == nil && cm.Data[cakube.RootCertKey] == string(store.Current().RootsPEM()) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("root ConfigMap not published: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := c.CoreV1().Secrets("istio-system").Get(ctx, cakube.SelfSignedSecret, metav1.GetOptions{}); err != nil {
		t.Errorf("istio-ca-secret: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Error(err)
	}
}
