// Package kubetest runs a real kube-apiserver and etcd on loopback for
// tests, from binaries built by hack/kube-real.sh (SEXTANT_KUBE_BIN). There
// is no controller-manager, scheduler or kubelet: tests create
// EndpointSlices and ServiceAccounts themselves, Pods stay Pending.
package kubetest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// BinEnv names the directory holding kube-apiserver and etcd.
const BinEnv = "SEXTANT_KUBE_BIN"

// BinDir returns $SEXTANT_KUBE_BIN. When it is unset the test is skipped,
// except under CI=true, where it fails: CI must build the binaries
// (hack/kube-real.sh build) and export the variable.
func BinDir(t testing.TB) string {
	t.Helper()
	dir, err := FindBinDir()
	if err == nil {
		return dir
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%v (CI=true: run `hack/kube-real.sh build` and export %s)", err, BinEnv)
	}
	t.Skipf("%v: run `eval $(hack/kube-real.sh env)` to test against a real kube-apiserver", err)
	return ""
}

// FindBinDir returns $SEXTANT_KUBE_BIN if it holds both binaries.
func FindBinDir() (string, error) {
	dir := os.Getenv(BinEnv)
	if dir == "" {
		return "", fmt.Errorf("%s is not set", BinEnv)
	}
	for _, b := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return "", fmt.Errorf("%s: %w", BinEnv, err)
		}
	}
	return dir, nil
}

// Cluster is a running etcd + kube-apiserver.
type Cluster struct {
	// Config is an admin client configuration (system:masters).
	Config *rest.Config
	// Kubeconfig is a file with the same credentials.
	Kubeconfig string
	// URL is the API server's address.
	URL string

	bin, dir                 string
	token                    string
	etcdPort, peerPort, port int
	etcd, apiserver          *exec.Cmd
	etcdDone, apiserverDone  chan struct{}
}

// Start runs etcd and kube-apiserver from bin with their state in dir, on
// free loopback ports, and waits until the API server is ready.
func Start(bin, dir string) (*Cluster, error) {
	c := &Cluster{bin: bin, dir: dir}
	if err := os.MkdirAll(filepath.Join(dir, "pki"), 0o700); err != nil {
		return nil, err
	}
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	c.etcdPort, c.peerPort, c.port = ports[0], ports[1], ports[2]
	if err := c.credentials(); err != nil {
		return nil, err
	}
	if err := c.startEtcd(); err != nil {
		return nil, err
	}
	if err := c.StartAPIServer(); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

func freePorts(n int) ([]int, error) {
	var out []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

func (c *Cluster) credentials() error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return fmt.Errorf("service account key: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(c.dir, "pki", "sa.key"),
		pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(c.dir, "pki", "sa.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644); err != nil {
		return err
	}
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	c.token = hex.EncodeToString(b)
	if err := os.WriteFile(filepath.Join(c.dir, "pki", "tokens.csv"), []byte(c.token+",admin,admin-uid,system:masters\n"), 0o600); err != nil {
		return err
	}
	c.URL = "https://127.0.0.1:" + strconv.Itoa(c.port)
	c.Config = &rest.Config{Host: c.URL, BearerToken: c.token, TLSClientConfig: rest.TLSClientConfig{Insecure: true}, QPS: 100, Burst: 200}
	c.Kubeconfig = filepath.Join(c.dir, "kubeconfig")
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: %s
    insecure-skip-tls-verify: true
users:
- name: admin
  user:
    token: %s
contexts:
- name: local
  context: {cluster: local, user: admin}
current-context: local
`, c.URL, c.token)
	return os.WriteFile(c.Kubeconfig, []byte(kc), 0o600)
}

func (c *Cluster) logFile(name string) (*os.File, error) {
	return os.OpenFile(filepath.Join(c.dir, name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
}

func run(bin string, args []string, log *os.File) (*exec.Cmd, chan struct{}, error) {
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the test binary
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, nil, fmt.Errorf("start %s: %w", filepath.Base(bin), err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		log.Close()
		close(done)
	}()
	return cmd, done, nil
}

func (c *Cluster) startEtcd() error {
	log, err := c.logFile("etcd.log")
	if err != nil {
		return err
	}
	client := "http://127.0.0.1:" + strconv.Itoa(c.etcdPort)
	peer := "http://127.0.0.1:" + strconv.Itoa(c.peerPort)
	c.etcd, c.etcdDone, err = run(filepath.Join(c.bin, "etcd"), []string{
		"--name", "kube", "--data-dir", filepath.Join(c.dir, "etcd"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "kube=" + peer, "--unsafe-no-fsync",
	}, log)
	if err != nil {
		return err
	}
	return c.wait("etcd", c.etcdDone, 30*time.Second, func(hc *http.Client) bool {
		resp, err := hc.Get(client + "/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// StartAPIServer (re)starts kube-apiserver on the same port and etcd.
func (c *Cluster) StartAPIServer() error {
	log, err := c.logFile("kube-apiserver.log")
	if err != nil {
		return err
	}
	pki := filepath.Join(c.dir, "pki")
	c.apiserver, c.apiserverDone, err = run(filepath.Join(c.bin, "kube-apiserver"), []string{
		"--etcd-servers=http://127.0.0.1:" + strconv.Itoa(c.etcdPort),
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--secure-port=" + strconv.Itoa(c.port),
		"--cert-dir=" + filepath.Join(c.dir, "certs"),
		"--token-auth-file=" + filepath.Join(pki, "tokens.csv"),
		"--authorization-mode=Node,RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + filepath.Join(pki, "sa.pub"),
		"--service-account-signing-key-file=" + filepath.Join(pki, "sa.key"),
		"--api-audiences=https://kubernetes.default.svc.cluster.local,istio-ca",
		"--service-cluster-ip-range=10.0.0.0/24", "--endpoint-reconciler-type=none",
		"--disable-admission-plugins=ServiceAccount", "--allow-privileged=true",
	}, log)
	if err != nil {
		return err
	}
	return c.wait("kube-apiserver", c.apiserverDone, 90*time.Second, func(hc *http.Client) bool {
		req, _ := http.NewRequest(http.MethodGet, c.URL+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+c.token)
		resp, err := hc.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

func (c *Cluster) wait(what string, done chan struct{}, timeout time.Duration, ready func(*http.Client) bool) error {
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	defer hc.CloseIdleConnections()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return fmt.Errorf("%s exited: %s", what, c.tail(what+".log"))
		default:
		}
		if ready(hc) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready after %v: %s", what, timeout, c.tail(what+".log"))
}

// tail returns the last lines of a log, for errors.
func (c *Cluster) tail(name string) string {
	b, _ := os.ReadFile(filepath.Join(c.dir, name))
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return strings.Join(lines, "\n")
}

func stop(cmd *exec.Cmd, done chan struct{}, grace time.Duration) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-done
	}
}

// StopAPIServer stops kube-apiserver (etcd keeps running).
func (c *Cluster) StopAPIServer() {
	stop(c.apiserver, c.apiserverDone, 5*time.Second)
	c.apiserver = nil
}

// Stop stops the API server, then etcd (the API server hangs in shutdown
// when etcd goes first).
func (c *Cluster) Stop() {
	c.StopAPIServer()
	stop(c.etcd, c.etcdDone, 10*time.Second)
	c.etcd = nil
}

// Logs returns the end of the API server's log.
func (c *Cluster) Logs() string { return c.tail("kube-apiserver.log") }

// Apply creates (or, with dryRun, validates server-side with DryRun=All)
// every object of a multi-document YAML stream, resolving kinds through
// discovery. Existing objects are updated.
func Apply(ctx context.Context, cfg *rest.Config, data []byte, dryRun bool) error {
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return err
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var errs []error
	for {
		var u unstructured.Unstructured
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return fmt.Errorf("decode: %w", err)
		}
		if len(u.Object) == 0 {
			continue
		}
		gvk := u.GroupVersionKind()
		m, err := mapper.RESTMapping(schema.GroupKind{Group: gvk.Group, Kind: gvk.Kind}, gvk.Version)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %s: %w", gvk.Kind, u.GetName(), err))
			continue
		}
		var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			ns := u.GetNamespace()
			if ns == "" {
				ns = "default"
			}
			ri = dyn.Resource(m.Resource).Namespace(ns)
		}
		var opts []string
		if dryRun {
			opts = []string{metav1.DryRunAll}
		}
		_, err = ri.Create(ctx, &u, metav1.CreateOptions{DryRun: opts})
		if apierrors.IsAlreadyExists(err) {
			var cur *unstructured.Unstructured
			if cur, err = ri.Get(ctx, u.GetName(), metav1.GetOptions{}); err == nil {
				u.SetResourceVersion(cur.GetResourceVersion())
				_, err = ri.Update(ctx, &u, metav1.UpdateOptions{DryRun: opts})
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %s/%s: %w", gvk.Kind, u.GetNamespace(), u.GetName(), err))
		}
	}
	return errors.Join(errs...)
}

// InstallCRDs applies the CRDs in a YAML file and waits until every one is
// Established.
func InstallCRDs(ctx context.Context, cfg *rest.Config, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := Apply(ctx, cfg, data, false); err != nil {
		return fmt.Errorf("install CRDs from %s: %w", path, err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	gvr := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	deadline := time.Now().Add(60 * time.Second)
	for {
		list, err := dyn.Resource(gvr).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		var pending []string
		for _, crd := range list.Items {
			conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
			ok := false
			for _, c := range conds {
				m, _ := c.(map[string]any)
				if m["type"] == "Established" && m["status"] == "True" {
					ok = true
				}
			}
			if !ok {
				pending = append(pending, crd.GetName())
			}
		}
		if len(pending) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("CRDs not established: %v", pending)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
