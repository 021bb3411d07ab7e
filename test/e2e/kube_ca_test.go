package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	pb "istio.io/api/security/v1alpha1"
	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sextant-mesh/sextant/ca/authn"
	"github.com/sextant-mesh/sextant/ca/catest"
	"github.com/sextant-mesh/sextant/ca/issuer"
	cakube "github.com/sextant-mesh/sextant/ca/kube"
	caserver "github.com/sextant-mesh/sextant/ca/server"
	"github.com/sextant-mesh/sextant/ca/trust"
	"github.com/sextant-mesh/sextant/internal/testenv"
	"github.com/sextant-mesh/sextant/registry/kube"
)

// TestKubeCATokenReview: two replicas start against a real API server with
// no CA yet; one (the Lease holder) generates the root into
// istio-ca-secret, both load the same root. The root is published as
// ConfigMap istio-ca-root-cert; a workload that trusts it calls
// CreateCertificate with its projected token (audience istio-ca), which
// TokenReview authenticates.
func TestKubeCATokenReview(t *testing.T) {
	c := startKube(t)
	cfg, err := kube.RESTConfig(c.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kube.NewClients(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	kubeNamespace(t, cs, "istio-system", nil)
	kubeNamespace(t, cs, "apps", nil)
	if _, err := cs.Kube.CoreV1().ServiceAccounts("apps").Create(ctx,
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "echo", Namespace: "apps"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// Two replicas bootstrap at once.
	log := kubeTestLogger()
	dirs := []string{filepath.Join(t.TempDir(), "ca"), filepath.Join(t.TempDir(), "ca")}
	syncs := make([]*cakube.SecretSync, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range dirs {
		wg.Go(func() {
			syncs[i], errs[i] = cakube.Bootstrap(ctx, cakube.RootOptions{Client: cs.Kube, Dir: dirs[i], Identity: []string{"istiod-a", "istiod-b"}[i],
				PollInterval: 200 * time.Millisecond, Logger: log,
				Election: cakube.Election{LeaseDuration: 2 * time.Second, RenewDeadline: time.Second, RetryPeriod: 200 * time.Millisecond}})
		})
	}
	wg.Wait()
	var stores []*trust.Store
	for i := range dirs {
		if errs[i] != nil {
			t.Fatalf("replica %d: %v", i, errs[i])
		}
		st, err := trust.Open(dirs[i], trust.Options{Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		stores = append(stores, st)
	}
	if !stores[0].Current().Cert.Equal(stores[1].Current().Cert) {
		t.Fatal("the replicas have different roots")
	}
	if _, err := cs.Kube.CoreV1().Secrets("istio-system").Get(ctx, cakube.SelfSignedSecret, metav1.GetOptions{}); err != nil {
		t.Fatalf("istio-ca-secret: %v", err)
	}

	// Replica 0 serves the CA and publishes the root.
	store := stores[0]
	iss, err := issuer.New(store, issuer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	reviewer := cakube.NewTokenReviewer(cs.Kube, cakube.ReviewerOptions{})
	svc, err := caserver.New(iss, caserver.Options{Authenticators: authn.Chain{authn.NewKubeJWT(reviewer, iss.TrustDomain(), nil)},
		Registry: prometheus.NewRegistry(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	addr := catest.ServeTLS(t, iss, []string{"127.0.0.1"}, nil, func(gs *grpc.Server) { svc.Register(gs) })
	pub, err := cakube.NewRootCertPublisher(cakube.PublisherOptions{Client: cs.Kube, Roots: func() []byte { return store.Current().RootsPEM() },
		Watch: store.Watch, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}, 2)
	go func() { _ = pub.Run(ctx); done <- struct{}{} }()
	go func() { _ = syncs[0].Run(ctx, store); done <- struct{}{} }()
	t.Cleanup(func() {
		cancel()
		for range 2 {
			<-done
		}
	})

	// The workload's view: the root from its namespace's ConfigMap.
	var rootPEM string
	testenv.Eventually(t, 20*time.Second, func() string {
		cm, err := cs.Kube.CoreV1().ConfigMaps("apps").Get(ctx, cakube.RootCertConfigMap, metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		rootPEM = cm.Data[cakube.RootCertKey]
		return ""
	})
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(rootPEM)) {
		t.Fatal("istio-ca-root-cert holds no certificate")
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(
		&tls.Config{RootCAs: roots, ServerName: issuer.IstiodSAN, MinVersion: tls.VersionTLS12})))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ca := pb.NewIstioCertificateServiceClient(cc)
	token := func(aud string) string {
		tr, err := cs.Kube.CoreV1().ServiceAccounts("apps").CreateToken(ctx, "echo",
			&authv1.TokenRequest{Spec: authv1.TokenRequestSpec{Audiences: []string{aud}, ExpirationSeconds: kptr(int64(3600))}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tr.Status.Token
	}
	csr := func(tok string) (*pb.IstioCertificateResponse, error) {
		key := catest.NewKey(t, catest.EC256)
		md := metadata.Pairs("clusterid", "Kubernetes")
		return ca.CreateCertificate(metadata.NewOutgoingContext(ctx, md),
			&pb.IstioCertificateRequest{Csr: string(catest.CSR(t, key, "")), ValidityDuration: 3600},
			grpc.PerRPCCredentials(catest.BearerCreds(tok)))
	}
	resp, err := csr(token("istio-ca"))
	if err != nil {
		t.Fatalf("CreateCertificate with a projected token: %v", err)
	}
	_, id := catest.VerifyChain(t, resp.CertChain, []byte(rootPEM))
	if id.String() != "spiffe://cluster.local/ns/apps/sa/echo" {
		t.Errorf("identity %s", id)
	}
	// A token for another audience, or garbage, is refused.
	for name, tok := range map[string]string{"wrong audience": token("https://kubernetes.default.svc.cluster.local"), "garbage": "not-a-token"} {
		if _, err := csr(tok); status.Code(err) != codes.Unauthenticated {
			t.Errorf("%s: %v, want Unauthenticated", name, err)
		}
	}
}
