package e2e

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sextant-mesh/sextant/discovery/xds"
	"github.com/sextant-mesh/sextant/internal/testenv"
	"github.com/sextant-mesh/sextant/model"
	"github.com/sextant-mesh/sextant/registry/kube"
	"github.com/sextant-mesh/sextant/registry/kube/kubetest"
)

// repoRoot is the repository's root directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the test source")
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// startKube runs a real kube-apiserver + etcd (SEXTANT_KUBE_BIN) for one
// test, with the Istio CRDs of deploy/crds installed.
func startKube(t *testing.T) *kubetest.Cluster {
	t.Helper()
	bin := kubetest.BinDir(t)
	dir := t.TempDir()
	t0 := time.Now()
	c, err := kubetest.Start(bin, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := kubetest.InstallCRDs(ctx, c.Config, filepath.Join(repoRoot(t), "deploy", "crds", "istio-crds.yaml")); err != nil {
		t.Fatal(err)
	}
	t.Logf("kube-apiserver ready with the Istio CRDs in %v", time.Since(t0).Round(time.Millisecond))
	return c
}

func kubeTestLogger() *slog.Logger {
	if testing.Verbose() && os.Getenv("SEXTANT_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// kubeSextant is Sextant in-process with only the Kubernetes registry, as
// serve wires it.
type kubeSextant struct {
	addr    string
	reg     *kube.Registry
	srv     *xds.Server
	clients *kube.Clients
}

func startKubeSextant(t *testing.T, c *kubetest.Cluster) *kubeSextant {
	t.Helper()
	log := kubeTestLogger()
	cfg, err := kube.RESTConfig(c.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	clients, err := kube.NewClients(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var reg *kube.Registry
	env := testenv.Start(t, "", testenv.Options{ReadyTimeout: 60 * time.Second, Logger: log,
		Registry: func(agg *model.Aggregator, log *slog.Logger) (func(context.Context) error, testenv.Setter) {
			reg = kube.New(clients.Kube, clients.Istio, agg.NewShard(kube.RegistryName), kube.Options{Logger: log})
			return reg.Run, reg.SetTrafficState
		}})
	return &kubeSextant{addr: env.Addr, reg: reg, srv: env.Server, clients: clients}
}

func kptr[T any](v T) *T { return &v }

func kubeNamespace(t *testing.T, cs *kube.Clients, name string, labels map[string]string) {
	t.Helper()
	_, err := cs.Kube.CoreV1().Namespaces().Create(context.Background(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

func kubeService(t *testing.T, cs *kube.Clients, ns, name string, selector map[string]string, ports ...corev1.ServicePort) {
	t.Helper()
	_, err := cs.Kube.CoreV1().Services(ns).Create(context.Background(), &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       corev1.ServiceSpec{Selector: selector, Ports: ports},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

func kubePort(name string, port, target int32) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Port: port, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(target)}
}

// kubePod creates a Pod (it stays Pending: there is no scheduler).
func kubePod(t *testing.T, cs *kube.Clients, ns, name, sa string, labels map[string]string) {
	t.Helper()
	_, err := cs.Kube.CoreV1().Pods(ns).Create(context.Background(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: corev1.PodSpec{ServiceAccountName: sa, AutomountServiceAccountToken: kptr(false),
			Containers: []corev1.Container{{Name: "app", Image: "example.invalid/app"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

// kubeSlice creates or replaces an EndpointSlice; addrs maps an address to
// its Pod ("" for none).
func kubeSlice(t *testing.T, cs *kube.Clients, ns, name, svc, portName string, port int32, addrs map[string]string) {
	t.Helper()
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: kptr(portName), Port: kptr(port), Protocol: kptr(corev1.ProtocolTCP)}},
	}
	for addr, pod := range addrs {
		ep := discoveryv1.Endpoint{Addresses: []string{addr}, Conditions: discoveryv1.EndpointConditions{Ready: kptr(true)}}
		if pod != "" {
			ep.TargetRef = &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: pod}
		}
		es.Endpoints = append(es.Endpoints, ep)
	}
	api := cs.Kube.DiscoveryV1().EndpointSlices(ns)
	ctx := context.Background()
	if cur, err := api.Get(ctx, name, metav1.GetOptions{}); err == nil {
		es.ResourceVersion = cur.ResourceVersion
		_, err = api.Update(ctx, es, metav1.UpdateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return
	}
	if _, err := api.Create(ctx, es, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}
