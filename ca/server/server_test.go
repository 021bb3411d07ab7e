package server_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
	pb "istio.io/api/security/v1alpha1"

	"github.com/sextant-mesh/sextant/ca/authn"
	"github.com/sextant-mesh/sextant/ca/catest"
	"github.com/sextant-mesh/sextant/ca/issuer"
	"github.com/sextant-mesh/sextant/ca/server"
	"github.com/sextant-mesh/sextant/ca/spiffe"
	"github.com/sextant-mesh/sextant/ca/trust"
)

type env struct {
	iss  *issuer.Issuer
	svc  *server.Service
	reg  *prometheus.Registry
	addr string
	kube *catest.JWTIssuer
	dir  string
}

type envOptions struct {
	keyType       trust.KeyType
	maxTTL        time.Duration
	rateLimit     rate.Limit
	burst         int
	impersonation server.ImpersonationPolicy
}

// start runs the CA service over TLS on loopback, trusting JWTs of a test
// Kubernetes issuer, a token file ("dev-token default dev") and client
// certificates.
func start(t testing.TB, o envOptions) *env {
	t.Helper()
	dir := t.TempDir()
	store, err := trust.Open(filepath.Join(dir, "ca"), trust.Options{KeyType: o.keyType})
	if err != nil {
		t.Fatal(err)
	}
	iss, err := issuer.New(store, issuer.Options{MaxTTL: o.maxTTL})
	if err != nil {
		t.Fatal(err)
	}
	kube := catest.NewJWTIssuer(t, dir, "https://kubernetes.default.svc")
	j, err := authn.NewJWT([]authn.JWTIssuer{{Issuer: kube.Issuer, JWKSFile: kube.JWKSFile}}, authn.JWTOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, []byte("dev-token default dev\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tf, err := authn.NewTokenFile(tokens, iss.TrustDomain())
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	rl := o.rateLimit
	if rl == 0 {
		rl = rate.Inf
	}
	svc, err := server.New(iss, server.Options{
		Authenticators: authn.Chain{authn.NewClientCert(iss.TrustDomain(), iss), j, tf},
		RateLimit:      rl, Burst: o.burst, Impersonation: o.impersonation, Registry: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	addr := catest.ServeTLS(t, iss, nil, nil, func(gs *grpc.Server) { svc.Register(gs) })
	return &env{iss: iss, svc: svc, reg: reg, addr: addr, kube: kube, dir: dir}
}

// client dials the CA as istio-agent does: TLS, trusting root-cert.pem,
// checking istiod's name; cert is an optional client certificate.
func (e *env) client(t testing.TB, cert *tls.Certificate) pb.IstioCertificateServiceClient {
	t.Helper()
	roots := x509.NewCertPool()
	b, err := os.ReadFile(filepath.Join(e.dir, "ca", trust.RootCertFile))
	if err != nil {
		t.Fatal(err)
	}
	roots.AppendCertsFromPEM(b)
	cfg := &tls.Config{RootCAs: roots, ServerName: issuer.IstiodSAN, MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	cc, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return pb.NewIstioCertificateServiceClient(cc)
}

func withToken(tok string) grpc.CallOption { return grpc.PerRPCCredentials(catest.BearerCreds(tok)) }

func csr(t testing.TB) string {
	return string(catest.CSR(t, catest.NewKey(t, catest.EC256), "", "spiffe://cluster.local/ns/kube-system/sa/admin", "evil.example.com"))
}

// metric reads a counter or gauge from reg ("" labels: the first series).
func metric(t testing.TB, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label != "" && (len(m.GetLabel()) == 0 || m.GetLabel()[0].GetValue() != label) {
				continue
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s{%s} not found", name, label)
	return 0
}

func TestCreateCertificate(t *testing.T) {
	for _, kt := range []trust.KeyType{trust.ECDSAP256, trust.RSA2048} {
		t.Run(string(kt), func(t *testing.T) {
			e := start(t, envOptions{keyType: kt})
			c := e.client(t, nil)
			resp, err := c.CreateCertificate(context.Background(), &pb.IstioCertificateRequest{Csr: csr(t)},
				withToken(e.kube.KubeToken(t, "bookinfo", "reviews")))
			if err != nil {
				t.Fatal(err)
			}
			leaf, id := catest.VerifyChain(t, resp.CertChain, e.iss.Roots())
			if id.String() != "spiffe://cluster.local/ns/bookinfo/sa/reviews" || len(leaf.URIs) != 1 || len(leaf.DNSNames) != 0 {
				t.Errorf("identity %s, URIs %v, DNS %v: want only the token's identity", id, leaf.URIs, leaf.DNSNames)
			}
			if got := time.Until(leaf.NotAfter); got < 24*time.Hour-time.Minute || got > 24*time.Hour {
				t.Errorf("default TTL: %v", got)
			}
			resp, err = c.CreateCertificate(context.Background(), &pb.IstioCertificateRequest{Csr: csr(t), ValidityDuration: 3600},
				withToken("dev-token"))
			if err != nil {
				t.Fatal(err)
			}
			leaf, id = catest.VerifyChain(t, resp.CertChain, e.iss.Roots())
			if id.NamespacedName() != "default/dev" {
				t.Errorf("token-file identity %s", id)
			}
			if got := time.Until(leaf.NotAfter); got < time.Hour-time.Minute || got > time.Hour {
				t.Errorf("1h TTL: %v", got)
			}
			if n := metric(t, e.reg, "citadel_server_success_cert_issuance_count", ""); n != 2 {
				t.Errorf("success count %v, want 2", n)
			}
		})
	}
}

func TestCreateCertificateErrors(t *testing.T) {
	e := start(t, envOptions{maxTTL: 12 * time.Hour})
	c := e.client(t, nil)
	rogue := catest.NewJWTIssuer(t, t.TempDir(), e.kube.Issuer) // same issuer name, another key
	rogue.Kid = e.kube.Kid
	stranger := catest.NewJWTIssuer(t, t.TempDir(), "https://stranger.example.com")
	good := e.kube.KubeToken(t, "default", "sleep")
	sub := "system:serviceaccount:default:sleep"
	now := time.Now()
	meta := func(kv map[string]any) *structpb.Struct {
		s, err := structpb.NewStruct(kv)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for _, tc := range []struct {
		name string
		req  *pb.IstioCertificateRequest
		tok  string
		code codes.Code
		msg  string
	}{
		{"missing auth", &pb.IstioCertificateRequest{Csr: csr(t)}, "", codes.Unauthenticated, "no credentials"},
		{"expired token", &pb.IstioCertificateRequest{Csr: csr(t)},
			e.kube.Token(t, catest.Claims{Subject: sub, Expiry: now.Add(-time.Hour), IssuedAt: now.Add(-2 * time.Hour)}),
			codes.Unauthenticated, "token expired"},
		{"forged token", &pb.IstioCertificateRequest{Csr: csr(t)}, rogue.KubeToken(t, "default", "sleep"),
			codes.Unauthenticated, "signature does not verify"},
		{"wrong audience", &pb.IstioCertificateRequest{Csr: csr(t)}, e.kube.Token(t, catest.Claims{Subject: sub, Audience: []string{"kubernetes"}}),
			codes.Unauthenticated, "does not include"},
		{"wrong issuer", &pb.IstioCertificateRequest{Csr: csr(t)}, stranger.KubeToken(t, "default", "sleep"),
			codes.Unauthenticated, "is not trusted"},
		{"unknown static token", &pb.IstioCertificateRequest{Csr: csr(t)}, "guess", codes.Unauthenticated, "not in the token file"},
		{"garbage CSR", &pb.IstioCertificateRequest{Csr: "hello"}, good, codes.InvalidArgument, "invalid CSR"},
		{"empty CSR", &pb.IstioCertificateRequest{}, good, codes.InvalidArgument, "invalid CSR"},
		{"weak key", &pb.IstioCertificateRequest{Csr: string(catest.CSR(t, catest.NewKey(t, catest.RSA1024), ""))}, good,
			codes.InvalidArgument, "RSA 1024 bits"},
		{"TTL over cap", &pb.IstioCertificateRequest{Csr: csr(t), ValidityDuration: 13 * 3600}, good,
			codes.InvalidArgument, "greater than the max allowed TTL 12h0m0s"},
		{"huge TTL", &pb.IstioCertificateRequest{Csr: csr(t), ValidityDuration: 1 << 62}, good,
			codes.InvalidArgument, "greater than the max allowed TTL"},
		{"impersonation", &pb.IstioCertificateRequest{Csr: csr(t),
			Metadata: meta(map[string]any{server.ImpersonatedIdentity: "spiffe://cluster.local/ns/istio-system/sa/istiod"})}, good,
			codes.PermissionDenied, "may not request a certificate for spiffe://cluster.local/ns/istio-system/sa/istiod"},
		{"bad impersonated identity", &pb.IstioCertificateRequest{Csr: csr(t),
			Metadata: meta(map[string]any{server.ImpersonatedIdentity: "root"})}, good,
			codes.InvalidArgument, "ImpersonatedIdentity"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var opts []grpc.CallOption
			if tc.tok != "" {
				opts = append(opts, withToken(tc.tok))
			}
			_, err := c.CreateCertificate(context.Background(), tc.req, opts...)
			st := status.Convert(err)
			if st.Code() != tc.code || !strings.Contains(st.Message(), tc.msg) {
				t.Fatalf("got %v %q, want %v containing %q", st.Code(), st.Message(), tc.code, tc.msg)
			}
			if tc.tok != "" && strings.Contains(st.Message(), tc.tok) {
				t.Error("the error message contains the token")
			}
		})
	}
	// Asking for one's own identity explicitly is fine.
	_, err := c.CreateCertificate(context.Background(), &pb.IstioCertificateRequest{Csr: csr(t),
		Metadata: meta(map[string]any{server.ImpersonatedIdentity: "spiffe://cluster.local/ns/default/sa/sleep"})}, withToken(good))
	if err != nil {
		t.Errorf("self-impersonation: %v", err)
	}
	for name, want := range map[string]float64{
		"citadel_server_csr_count":                    14,
		"citadel_server_authentication_failure_count": 7, // 6 unauthenticated + 1 impersonation
		"citadel_server_csr_parsing_err_count":        3,
		"citadel_server_success_cert_issuance_count":  1,
	} {
		if got := metric(t, e.reg, name, ""); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if got := metric(t, e.reg, "citadel_server_csr_sign_err_count", "TTL_ERROR"); got != 2 {
		t.Errorf("TTL sign errors = %v, want 2", got)
	}
	root := e.iss.Store().Current().RootNotAfter()
	if got := metric(t, e.reg, "citadel_server_root_cert_expiry_timestamp", ""); got != float64(root.Unix()) {
		t.Errorf("root expiry gauge %v, want %v", got, root.Unix())
	}
	if got := metric(t, e.reg, "citadel_server_cert_chain_expiry_seconds", ""); got < 3649*86400 {
		t.Errorf("chain expiry seconds %v", got)
	}
}

func TestRateLimit(t *testing.T) {
	e := start(t, envOptions{rateLimit: 0.001, burst: 2})
	c := e.client(t, nil)
	tok := e.kube.KubeToken(t, "default", "busy")
	for i := range 3 {
		_, err := c.CreateCertificate(context.Background(), &pb.IstioCertificateRequest{Csr: csr(t)}, withToken(tok))
		if i < 2 && err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if i == 2 {
			if st := status.Convert(err); st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "spiffe://cluster.local/ns/default/sa/busy") {
				t.Fatalf("over the limit: %v", err)
			}
		}
	}
	// Another identity has its own budget.
	if _, err := c.CreateCertificate(context.Background(), &pb.IstioCertificateRequest{Csr: csr(t)}, withToken("dev-token")); err != nil {
		t.Errorf("other identity: %v", err)
	}
	if got := metric(t, e.reg, "sextant_ca_csr_rate_limited_total", ""); got != 1 {
		t.Errorf("rate-limited count %v", got)
	}
}

// TestRenewalWithClientCert: a workload bootstraps with a token, then renews
// over mTLS with the certificate it got, without a token.
func TestRenewalWithClientCert(t *testing.T) {
	e := start(t, envOptions{})
	key := catest.NewKey(t, catest.EC256)
	resp, err := e.client(t, nil).CreateCertificate(context.Background(),
		&pb.IstioCertificateRequest{Csr: string(catest.CSR(t, key, ""))}, withToken(e.kube.KubeToken(t, "prod", "api")))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair([]byte(strings.Join(resp.CertChain[:len(resp.CertChain)-1], "")), catest.KeyPEM(t, key))
	if err != nil {
		t.Fatal(err)
	}
	renewed, err := e.client(t, &cert).CreateCertificate(context.Background(), &pb.IstioCertificateRequest{Csr: csr(t)})
	if err != nil {
		t.Fatalf("renewal with the client certificate: %v", err)
	}
	if _, id := catest.VerifyChain(t, renewed.CertChain, e.iss.Roots()); id.String() != "spiffe://cluster.local/ns/prod/sa/api" {
		t.Errorf("renewed identity %s", id)
	}
	// A client certificate from another CA fails the handshake.
	other := start(t, envOptions{})
	foreign, err := other.iss.Issue(context.Background(), spiffe.ID{TrustDomain: "cluster.local", Namespace: "prod", ServiceAccount: "api"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	fc, err := foreign.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := e.client(t, &fc).CreateCertificate(ctx, &pb.IstioCertificateRequest{Csr: csr(t)}); err == nil {
		t.Error("a certificate from another CA was accepted")
	}
}

func TestImpersonationPolicy(t *testing.T) {
	ztunnel := "istio-system/ztunnel"
	e := start(t, envOptions{impersonation: func(_ context.Context, caller *authn.Caller, target spiffe.ID) error {
		if caller.Identity.NamespacedName() != ztunnel {
			return fmt.Errorf("%s is not a trusted node agent", caller.Identity.NamespacedName())
		}
		return nil
	}})
	c := e.client(t, nil)
	req := func() *pb.IstioCertificateRequest {
		m, _ := structpb.NewStruct(map[string]any{server.ImpersonatedIdentity: "spiffe://cluster.local/ns/prod/sa/api"})
		return &pb.IstioCertificateRequest{Csr: csr(t), Metadata: m}
	}
	resp, err := c.CreateCertificate(context.Background(), req(), withToken(e.kube.KubeToken(t, "istio-system", "ztunnel")))
	if err != nil {
		t.Fatal(err)
	}
	if _, id := catest.VerifyChain(t, resp.CertChain, e.iss.Roots()); id.NamespacedName() != "prod/api" {
		t.Errorf("impersonated identity %s", id)
	}
	_, err = c.CreateCertificate(context.Background(), req(), withToken(e.kube.KubeToken(t, "default", "sleep")))
	if st := status.Convert(err); st.Code() != codes.PermissionDenied || !strings.Contains(st.Message(), "not a trusted node agent") {
		t.Errorf("untrusted impersonation: %v", err)
	}
}

func TestPluggedInChainOverGRPC(t *testing.T) {
	dir := t.TempDir()
	p := catest.WritePlugged(t, dir, catest.PluggedOptions{})
	store, err := trust.Open(dir, trust.Options{})
	if err != nil {
		t.Fatal(err)
	}
	iss, err := issuer.New(store, issuer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tokens := filepath.Join(t.TempDir(), "tokens")
	os.WriteFile(tokens, []byte("t default dev\n"), 0o600)
	tf, err := authn.NewTokenFile(tokens, "cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	svc, err := server.New(iss, server.Options{Authenticators: authn.Chain{tf}, Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	addr := catest.ServeTLS(t, iss, nil, nil, func(gs *grpc.Server) { svc.Register(gs) })
	// istio-agent trusts root-cert.pem; the server presents its chain.
	roots := x509.NewCertPool()
	roots.AddCert(p.Root)
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots, ServerName: issuer.IstiodSAN})))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	resp, err := pb.NewIstioCertificateServiceClient(cc).CreateCertificate(context.Background(), &pb.IstioCertificateRequest{Csr: csr(t)}, withToken("t"))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.CertChain) != 3 {
		t.Fatalf("chain has %d elements, want leaf, intermediate, root", len(resp.CertChain))
	}
	parsed := catest.ParseChain(t, resp.CertChain)
	if !parsed[1][0].Equal(p.Intermediate) || !parsed[2][0].Equal(p.Root) {
		t.Error("chain is not leaf, intermediate, root")
	}
	catest.VerifyChain(t, resp.CertChain, catest.CertPEM(p.Root))
}
