package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	pb "istio.io/api/security/v1alpha1"

	"github.com/sextant-mesh/sextant/ca/catest"
	"github.com/sextant-mesh/sextant/ca/issuer"
	"github.com/sextant-mesh/sextant/internal/grpclite"
)

func TestSecureFlags(t *testing.T) {
	f := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	o := addSecureFlags(f)
	if o.maxWorkloadCertTTL != 24*time.Hour || o.keyType != "ecdsa-p256" || len(o.jwtIssuers) != 0 {
		t.Errorf("defaults: %+v", o)
	}
	err := f.Parse([]string{
		"--max-workload-cert-ttl=12h", "--jwt-issuer", "https://a=/a.json", "--jwt-issuer=https://b=/b.json",
		"--ca-token-file=/tokens", "--ca-key-type=rsa-4096", "--secure-san=sextant.example.com,10.0.0.1", "--secure-san", "localhost",
	})
	if err != nil {
		t.Fatal(err)
	}
	if o.maxWorkloadCertTTL != 12*time.Hour || len(o.jwtIssuers) != 2 || o.jwtIssuers[1] != "https://b=/b.json" ||
		o.tokenFile != "/tokens" || o.keyType != "rsa-4096" || len(o.sans) != 3 {
		t.Errorf("parsed: %+v", o)
	}
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func testOptions(t *testing.T, args ...string) secureOptions {
	t.Helper()
	f := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	o := addSecureFlags(f)
	if err := f.Parse(args); err != nil {
		t.Fatal(err)
	}
	o.dir = filepath.Join(t.TempDir(), "ca")
	o.addr = "127.0.0.1:0"
	o.trustDomain = "cluster.local"
	return *o
}

// TestStartSecure runs the secure port as serve will: the CA over TLS,
// plus whatever registerXDS adds (a health service here).
// TestStartSecure runs the secure port on grpc-go, and with grpclite in
// front (as --xds-transport=lean does), where CA calls reach grpc-go through
// the handoff with the TLS state (client certificates) intact.
func TestStartSecure(t *testing.T) {
	for _, lean := range []bool{false, true} {
		t.Run(map[bool]string{false: "grpc", true: "lean"}[lean], func(t *testing.T) { testStartSecure(t, lean) })
	}
}

func testStartSecure(t *testing.T, lean bool) {
	dir := t.TempDir()
	kube := catest.NewJWTIssuer(t, dir, "https://kubernetes.default.svc")
	tokens := filepath.Join(dir, "tokens")
	os.WriteFile(tokens, []byte("dev default dev\n"), 0o600)
	o := testOptions(t, "--jwt-issuer="+kube.Flag(), "--ca-token-file="+tokens, "--secure-san=sextant.example.com")
	if lean {
		o.leanXDS = func(cfg *tls.Config) *grpclite.Server {
			return &grpclite.Server{TLSConfig: cfg, Metadata: true}
		}
	}
	reg := prometheus.NewRegistry()
	registered := false
	sec, err := startSecure(context.Background(), o, reg, quietLog(), func(gs *grpc.Server) {
		registered = true
		healthpb.RegisterHealthServer(gs, health.NewServer())
	})
	if err != nil {
		t.Fatal(err)
	}
	if !registered {
		t.Fatal("registerXDS not called")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sec.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	// istio-agent's view: trust DIR/root-cert.pem, check istiod's name.
	rootPEM, err := os.ReadFile(filepath.Join(o.dir, "root-cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(rootPEM)
	dial := func(cert *tls.Certificate, name string) *grpc.ClientConn {
		cfg := &tls.Config{RootCAs: roots, ServerName: name}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		cc, err := grpc.NewClient(sec.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return cc
	}
	cc := dial(nil, issuer.IstiodSAN)
	key := catest.NewKey(t, catest.EC256)
	for _, tok := range []string{kube.KubeToken(t, "prod", "api"), "dev"} {
		resp, err := pb.NewIstioCertificateServiceClient(cc).CreateCertificate(context.Background(),
			&pb.IstioCertificateRequest{Csr: string(catest.CSR(t, key, ""))}, grpc.PerRPCCredentials(catest.BearerCreds(tok)))
		if err != nil {
			t.Fatal(err)
		}
		catest.VerifyChain(t, resp.CertChain, rootPEM)
	}
	if _, err := healthpb.NewHealthClient(dial(nil, "sextant.example.com")).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("service registered by registerXDS, over --secure-san name: %v", err)
	}

	// Renewal with the issued certificate, no token.
	resp, err := pb.NewIstioCertificateServiceClient(cc).CreateCertificate(context.Background(),
		&pb.IstioCertificateRequest{Csr: string(catest.CSR(t, key, ""))}, grpc.PerRPCCredentials(catest.BearerCreds("dev")))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair([]byte(resp.CertChain[0]), catest.KeyPEM(t, key))
	if err != nil {
		t.Fatal(err)
	}
	renewed, err := pb.NewIstioCertificateServiceClient(dial(&cert, issuer.IstiodSAN)).CreateCertificate(context.Background(),
		&pb.IstioCertificateRequest{Csr: string(catest.CSR(t, catest.NewKey(t, catest.EC256), ""))})
	if err != nil {
		t.Fatalf("renewal over mTLS: %v", err)
	}
	if _, id := catest.VerifyChain(t, renewed.CertChain, rootPEM); id.NamespacedName() != "default/dev" {
		t.Errorf("renewed identity %s", id)
	}

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	for _, want := range []string{"citadel_server_csr_count", "citadel_server_root_cert_expiry_timestamp", "citadel_server_cert_chain_expiry_timestamp"} {
		if !strings.Contains(strings.Join(names, " "), want) {
			t.Errorf("metric %s not registered", want)
		}
	}
}

func TestStartSecureErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, tc := range []struct {
		name  string
		args  []string
		setup func(t *testing.T, o *secureOptions)
		want  []string
	}{
		{"mismatched plugged-in key", nil, func(t *testing.T, o *secureOptions) {
			os.MkdirAll(o.dir, 0o700)
			catest.WritePlugged(t, o.dir, catest.PluggedOptions{})
			os.WriteFile(filepath.Join(o.dir, "ca-key.pem"), catest.KeyPEM(t, catest.NewKey(t, catest.EC256)), 0o600)
		}, []string{"--ca-dir", "ca-key.pem", "does not match"}},
		{"key type", []string{"--ca-key-type=dsa"}, nil, []string{"--ca-key-type", "dsa"}},
		{"jwt issuer syntax", []string{"--jwt-issuer=https://kube"}, nil, []string{"--jwt-issuer", "ISSUER=JWKS_FILE"}},
		{"jwks missing", []string{"--jwt-issuer=https://kube=/nonexistent/jwks.json"}, nil, []string{"--jwt-issuer", "/nonexistent/jwks.json"}},
		{"token file missing", []string{"--ca-token-file=/nonexistent/tokens"}, nil, []string{"--ca-token-file", "/nonexistent/tokens"}},
		{"bad SAN", []string{"--secure-san=bad name"}, nil, []string{"--secure-san", "bad name"}},
		{"max TTL", []string{"--max-workload-cert-ttl=0s"}, nil, []string{"--max-workload-cert-ttl"}},
		{"address in use", nil, func(t *testing.T, o *secureOptions) { o.addr = busy.Addr().String() }, []string{"--secure-addr"}},
		{"no dir", nil, func(t *testing.T, o *secureOptions) { o.dir = "" }, []string{"--ca-dir"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := testOptions(t, tc.args...)
			if tc.setup != nil {
				tc.setup(t, &o)
			}
			sec, err := startSecure(context.Background(), o, prometheus.NewRegistry(), quietLog(), nil)
			if err == nil {
				sec.Close()
				t.Fatal("startSecure succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// TestSecureAuthnGuard: on both transports, over TLS with a real gRPC
// client, an oversized token is refused before any authenticator parses
// it, and a peer that keeps failing is refused without authenticating,
// counted in sextant_authn_failures_total and
// sextant_authn_rate_limited_total.
func TestSecureAuthnGuard(t *testing.T) {
	for _, lean := range []bool{false, true} {
		t.Run(map[bool]string{false: "grpc", true: "lean"}[lean], func(t *testing.T) {
			dir := t.TempDir()
			tokens := filepath.Join(dir, "tokens")
			os.WriteFile(tokens, []byte("dev default dev\n"), 0o600)
			o := testOptions(t, "--ca-token-file="+tokens, "--authn-failure-burst=3", "--authn-failure-rate=0.001")
			if lean {
				o.leanXDS = func(cfg *tls.Config) *grpclite.Server {
					return &grpclite.Server{TLSConfig: cfg, Metadata: true}
				}
			}
			reg := prometheus.NewRegistry()
			sec, err := startSecure(context.Background(), o, reg, quietLog(), nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- sec.Run(ctx) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Error(err)
				}
			}()
			rootPEM, err := os.ReadFile(filepath.Join(o.dir, "root-cert.pem"))
			if err != nil {
				t.Fatal(err)
			}
			roots := x509.NewCertPool()
			roots.AppendCertsFromPEM(rootPEM)
			cc, err := grpc.NewClient(sec.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots, ServerName: issuer.IstiodSAN})))
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			key := catest.NewKey(t, catest.EC256)
			csr := func(tok string) error {
				_, err := pb.NewIstioCertificateServiceClient(cc).CreateCertificate(context.Background(),
					&pb.IstioCertificateRequest{Csr: string(catest.CSR(t, key, ""))}, grpc.PerRPCCredentials(catest.BearerCreds(tok)))
				return err
			}
			if err := csr("dev"); err != nil {
				t.Fatalf("good token: %v", err)
			}
			err = csr(strings.Repeat("x", 20<<10))
			if st := status.Convert(err); st.Code() != codes.Unauthenticated || !strings.Contains(st.Message(), "exceeds the limit of 16384") {
				t.Fatalf("20 KiB token: %v", err)
			}
			for i := range 2 {
				if st := status.Convert(csr("guess")); st.Code() != codes.Unauthenticated {
					t.Fatalf("wrong token %d: %v", i, st)
				}
			}
			// The burst of 3 is spent: even the good token is refused now.
			err = csr("dev")
			if st := status.Convert(err); st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "too many failed authentications") {
				t.Fatalf("rate-limited peer: %v", err)
			}
			got := map[string]float64{}
			mfs, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			for _, mf := range mfs {
				for _, m := range mf.GetMetric() {
					name := mf.GetName()
					for _, l := range m.GetLabel() {
						name += "/" + l.GetValue()
					}
					got[name] = m.GetCounter().GetValue()
				}
			}
			if got["sextant_authn_failures_total/token_too_large"] != 1 || got["sextant_authn_failures_total/rejected"] != 2 ||
				got["sextant_authn_rate_limited_total"] != 1 {
				t.Errorf("metrics: too large %v, rejected %v, rate limited %v", got["sextant_authn_failures_total/token_too_large"],
					got["sextant_authn_failures_total/rejected"], got["sextant_authn_rate_limited_total"])
			}
		})
	}
}
