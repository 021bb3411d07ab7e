package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	cakube "github.com/sextant-mesh/sextant/ca/kube"
	"github.com/sextant-mesh/sextant/ca/trust"
	"github.com/sextant-mesh/sextant/internal/testenv"
	"github.com/sextant-mesh/sextant/model"
	"github.com/sextant-mesh/sextant/registry/kube"
	"github.com/sextant-mesh/sextant/registry/kube/kubetest"
)

// TestKubeManifests validates deploy/ against a real API server: every
// object of the base passes a server-side dry run (DryRun=All), and the
// ClusterRole/Role are enough for what Sextant does with them: the
// registry syncs, the CA creates its Secret and publishes the root
// ConfigMap, traffic set patches a Pod, all as the sextant ServiceAccount.
func TestKubeManifests(t *testing.T) {
	c := startKube(t) // installs deploy/crds for real
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	base := filepath.Join(repoRoot(t), "deploy", "base")
	var kust struct {
		Resources []string `json:"resources"`
	}
	b, err := os.ReadFile(filepath.Join(base, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &kust); err != nil || len(kust.Resources) == 0 {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	files := map[string][]byte{}
	for _, r := range kust.Resources {
		data, err := os.ReadFile(filepath.Join(base, r))
		if err != nil {
			t.Fatal(err)
		}
		files[r] = data
	}
	// The namespace for real, so namespaced objects can be dry-run in it.
	if err := kubetest.Apply(ctx, c.Config, files["namespace.yaml"], false); err != nil {
		t.Fatal(err)
	}
	for _, r := range kust.Resources {
		if err := kubetest.Apply(ctx, c.Config, files[r], true); err != nil {
			t.Errorf("server-side dry run of %s: %v", r, err)
		}
	}
	if kubectl, err := exec.LookPath("kubectl"); err == nil {
		out, err := exec.CommandContext(ctx, kubectl, "--kubeconfig", c.Kubeconfig, "apply", "--dry-run=server", "-k", base).CombinedOutput()
		if err != nil {
			t.Errorf("kubectl apply --dry-run=server -k deploy/base: %v\n%s", err, out)
		}
		if out, err := exec.CommandContext(ctx, kubectl, "kustomize", filepath.Dir(base)).CombinedOutput(); err != nil {
			t.Errorf("kubectl kustomize deploy: %v\n%.2000s", err, out)
		}
	} else {
		t.Log("kubectl not found: the kustomization itself is not rendered (objects were dry-run one file at a time)")
	}

	// Least privilege, checked by use: apply the ServiceAccount and RBAC
	// for real and act as the ServiceAccount.
	for _, r := range []string{"serviceaccount.yaml", "rbac.yaml"} {
		if err := kubetest.Apply(ctx, c.Config, files[r], false); err != nil {
			t.Fatal(err)
		}
	}
	admin, err := kube.NewClients(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := admin.Kube.CoreV1().ServiceAccounts("istio-system").CreateToken(ctx, "sextant",
		&authv1.TokenRequest{Spec: authv1.TokenRequestSpec{ExpirationSeconds: kptr(int64(3600))}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	asSA := rest.AnonymousClientConfig(c.Config)
	asSA.BearerToken = tr.Status.Token
	cs, err := kube.NewClients(asSA)
	if err != nil {
		t.Fatal(err)
	}
	kubeNamespace(t, admin, "apps", nil)
	kubeService(t, admin, "apps", "echo", map[string]string{"app": "echo"}, kubePort("http", 80, 8080))
	kubePod(t, admin, "apps", "echo-1", "default", map[string]string{"app": "echo"})
	kubeSlice(t, admin, "apps", "echo-1", "echo", "http", 8080, map[string]string{"198.18.1.1": "echo-1"})

	log := kubeTestLogger()
	agg := model.NewAggregator()
	reg := kube.New(cs.Kube, cs.Istio, agg.NewShard(kube.RegistryName), kube.Options{Logger: log})
	done := make(chan error, 3)
	go func() { done <- reg.Run(ctx) }()
	select {
	case <-reg.Synced():
	case <-time.After(30 * time.Second):
		t.Fatal("registry did not sync as the sextant ServiceAccount (RBAC?)")
	}
	if err := reg.SetTrafficState(ctx, "apps", "echo.apps.svc.cluster.local", nil, model.StateKeepalive); err != nil {
		t.Errorf("traffic set as the ServiceAccount: %v", err)
	}
	dir := filepath.Join(t.TempDir(), "ca")
	ss, err := cakube.Bootstrap(ctx, cakube.RootOptions{Client: cs.Kube, Dir: dir, Identity: "istiod-0", Logger: log})
	if err != nil {
		t.Fatalf("CA bootstrap as the ServiceAccount: %v", err)
	}
	store, err := trust.Open(dir, trust.Options{})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := cakube.NewRootCertPublisher(cakube.PublisherOptions{Client: cs.Kube, Roots: func() []byte { return store.Current().RootsPEM() },
		Watch: store.Watch, InMesh: reg.InMesh, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	e := cakube.Election{Client: cs.Kube, Namespace: "istio-system", Lease: cakube.NamespaceControllerLease, Identity: "istiod-0", Logger: log}
	go func() {
		done <- e.RunWhenLeader(ctx, func(lctx context.Context) { _ = pub.Run(lctx) })
	}()
	go func() { done <- ss.Run(ctx, store) }()
	testenv.Eventually(t, 30*time.Second, func() string {
		if _, err := admin.Kube.CoreV1().ConfigMaps("apps").Get(ctx, cakube.RootCertConfigMap, metav1.GetOptions{}); err != nil {
			return "root ConfigMap: " + err.Error()
		}
		return ""
	})
	cancel()
	for range 3 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
