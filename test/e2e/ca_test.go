package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	pb "istio.io/api/security/v1alpha1"

	"github.com/sextant-mesh/sextant/ca/authn"
	"github.com/sextant-mesh/sextant/ca/catest"
	"github.com/sextant-mesh/sextant/ca/issuer"
	"github.com/sextant-mesh/sextant/ca/sds"
	caserver "github.com/sextant-mesh/sextant/ca/server"
	"github.com/sextant-mesh/sextant/ca/spiffe"
	"github.com/sextant-mesh/sextant/ca/trust"
	"github.com/sextant-mesh/sextant/discovery/translate"
	"github.com/sextant-mesh/sextant/discovery/xds"
	"github.com/sextant-mesh/sextant/internal/adsclient"
	"github.com/sextant-mesh/sextant/internal/grpclite"
	"github.com/sextant-mesh/sextant/internal/testenv"
)

// secureCA is the secure port as cmd/sextant assembles it: the CA service
// and (optionally) ADS behind TLS with the CA's serving certificate.
type secureCA struct {
	dir   string // --ca-dir
	store *trust.Store
	iss   *issuer.Issuer
	addr  string
	kube  *catest.JWTIssuer
}

func startSecureCA(t *testing.T, xdsSrv *xds.Server, topts trust.Options) *secureCA {
	t.Helper()
	return startSecureCAWith(t, xdsSrv, topts, issuer.Options{})
}

// startSecureCAWith also serves authenticated ADS with SDS (secrets from
// the CA) on the secure port when xdsSrv is given, as cmd/sextant does.
func startSecureCAWith(t *testing.T, xdsSrv *xds.Server, topts trust.Options, iopts issuer.Options) *secureCA {
	t.Helper()
	return startSecureCAIn(t, filepath.Join(t.TempDir(), "ca"), xdsSrv, topts, iopts)
}

// startSecureCAIn runs the secure port on the CA directory caDir, which
// replicas may share.
func startSecureCAIn(t *testing.T, caDir string, xdsSrv *xds.Server, topts trust.Options, iopts issuer.Options) *secureCA {
	t.Helper()
	dir := t.TempDir()
	store, err := trust.Open(caDir, topts)
	if err != nil {
		t.Fatal(err)
	}
	iss, err := issuer.New(store, iopts)
	if err != nil {
		t.Fatal(err)
	}
	kube := catest.NewJWTIssuer(t, dir, "https://kubernetes.default.svc")
	j, err := authn.NewJWT([]authn.JWTIssuer{{Issuer: kube.Issuer, JWKSFile: kube.JWKSFile}}, authn.JWTOptions{})
	if err != nil {
		t.Fatal(err)
	}
	chain := authn.Chain{authn.NewClientCert(iss.TrustDomain(), iss), j}
	svc, err := caserver.New(iss, caserver.Options{Authenticators: chain, Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	// Clients dial 127.0.0.1; istio-agent verifies that address (the
	// production equivalent is --secure-san).
	register := func(gs *grpc.Server) {
		svc.Register(gs)
		if xdsSrv != nil {
			xdsSrv.RegisterSecure(gs)
			xdsSrv.SetSecurity(sds.Authenticator(chain), sds.Source{Issuer: iss, RotateAt: 0.5})
		}
	}
	var addr string
	if xdsSrv != nil && os.Getenv("SEXTANT_XDS_TRANSPORT") != "grpc" {
		// As sextant serve: ADS on grpclite over TLS, the CA on grpc-go
		// behind it.
		addr = catest.ServeLeanTLS(t, iss, []string{"127.0.0.1"}, xds.GRPCServerOptions(), register,
			func(cfg *tls.Config) *grpclite.Server {
				return xdsSrv.NewSecureLeanServer(cfg, nil)
			})
	} else {
		addr = catest.ServeTLS(t, iss, []string{"127.0.0.1"}, xds.GRPCServerOptions(), register)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = store.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return &secureCA{dir: caDir, store: store, iss: iss, addr: addr, kube: kube}
}

// rootsFromDisk is what a workload mounts: DIR/root-cert.pem.
func (s *secureCA) rootsFromDisk(t *testing.T) *x509.CertPool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.dir, trust.RootCertFile))
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		t.Fatal("root-cert.pem holds no certificate")
	}
	return p
}

// dial connects to the secure port as istio-agent does (server name
// istiod.istio-system.svc), with an optional client certificate.
func (s *secureCA) dial(t *testing.T, cert *tls.Certificate) *grpc.ClientConn {
	t.Helper()
	cfg := &tls.Config{RootCAs: s.rootsFromDisk(t), ServerName: issuer.IstiodSAN, MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	cc, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// workloadCert is what istio-agent does at startup: a key, a CSR, and
// CreateCertificate with its service-account token. It returns the TLS
// certificate (chain without the root) and the roots from the response.
func (s *secureCA) workloadCert(t *testing.T, cc *grpc.ClientConn, ns, sa string, creds grpc.CallOption) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key := catest.NewKey(t, catest.EC256)
	var opts []grpc.CallOption
	if creds != nil {
		opts = append(opts, creds)
	}
	resp, err := pb.NewIstioCertificateServiceClient(cc).CreateCertificate(context.Background(),
		&pb.IstioCertificateRequest{Csr: string(catest.CSR(t, key, "")), ValidityDuration: 3600}, opts...)
	if err != nil {
		t.Fatalf("CreateCertificate for %s/%s: %v", ns, sa, err)
	}
	chain := resp.CertChain
	_, id := catest.VerifyChain(t, chain, []byte(chain[len(chain)-1]))
	if id.NamespacedName() != ns+"/"+sa {
		t.Fatalf("certificate for %s, want %s/%s", id, ns, sa)
	}
	cert, err := tls.X509KeyPair([]byte(strings.Join(chain[:len(chain)-1], "")), catest.KeyPEM(t, key))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM([]byte(chain[len(chain)-1]))
	return cert, roots
}

func bearer(tok string) grpc.CallOption { return grpc.PerRPCCredentials(catest.BearerCreds(tok)) }

// TestCASecureADS: a workload bootstraps its certificate with its token,
// then runs ADS over mTLS on the secure port and renews with its
// certificate instead of a token.
func TestCASecureADS(t *testing.T) {
	dir := t.TempDir()
	testenv.WriteFile(t, dir+"/mesh.yaml", meshYAML)
	env := testenv.Start(t, dir, testenv.Options{})
	ca := startSecureCA(t, env.Server, trust.Options{})

	cert, _ := ca.workloadCert(t, ca.dial(t, nil), "default", "reviews", bearer(ca.kube.KubeToken(t, "default", "reviews")))
	mtls := ca.dial(t, &cert)
	c := startClient(t, mtls, "reviews-v1", "grpc", adsclient.Options{})
	waitResources(t, c, translate.ClusterType, 5)

	// Renewal over the same mTLS connection, no token.
	ca.workloadCert(t, mtls, "default", "reviews", nil)

	// Without a token or a client certificate the CA refuses.
	_, err := pb.NewIstioCertificateServiceClient(ca.dial(t, nil)).CreateCertificate(context.Background(),
		&pb.IstioCertificateRequest{Csr: string(catest.CSR(t, catest.NewKey(t, catest.EC256), ""))})
	if err == nil || !strings.Contains(err.Error(), "Unauthenticated") {
		t.Errorf("anonymous CSR: %v", err)
	}
}

// TestCAWorkloadMutualTLS: two workloads with certificates from the CA
// (obtained over gRPC) talk gRPC over mutual TLS, each checking the other's
// SPIFFE ID; a third identity is refused.
func TestCAWorkloadMutualTLS(t *testing.T) {
	ca := startSecureCA(t, nil, trust.Options{KeyType: trust.RSA2048})
	cc := ca.dial(t, nil)
	srvCert, srvRoots := ca.workloadCert(t, cc, "prod", "backend", bearer(ca.kube.KubeToken(t, "prod", "backend")))
	cliCert, cliRoots := ca.workloadCert(t, cc, "prod", "frontend", bearer(ca.kube.KubeToken(t, "prod", "frontend")))
	strangerCert, _ := ca.workloadCert(t, cc, "dev", "stranger", bearer(ca.kube.KubeToken(t, "dev", "stranger")))

	frontend := spiffe.ID{TrustDomain: "cluster.local", Namespace: "prod", ServiceAccount: "frontend"}
	backend := spiffe.ID{TrustDomain: "cluster.local", Namespace: "prod", ServiceAccount: "backend"}

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{srvCert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: srvRoots,
		MinVersion: tls.VersionTLS13, VerifyConnection: allowPeers(frontend),
	})))
	healthpb.RegisterHealthServer(gs, health.NewServer())
	go gs.Serve(lis)
	defer gs.Stop()

	call := func(cert tls.Certificate, wantServer spiffe.ID) error {
		cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13,
			// Workload certificates carry SPIFFE IDs, not host names:
			// verify the chain and the URI SAN instead of a server name.
			InsecureSkipVerify: true,
			VerifyConnection: func(cs tls.ConnectionState) error {
				inter := x509.NewCertPool()
				for _, c := range cs.PeerCertificates[1:] {
					inter.AddCert(c)
				}
				if _, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: cliRoots, Intermediates: inter}); err != nil {
					return err
				}
				return allowPeers(wantServer)(cs)
			}}
		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			return err
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}
	if err := call(cliCert, backend); err != nil {
		t.Fatalf("frontend → backend over mTLS: %v", err)
	}
	if err := call(strangerCert, backend); err == nil {
		t.Error("backend accepted dev/stranger")
	}
	if err := call(cliCert, frontend); err == nil {
		t.Error("client accepted a server that is not the expected identity")
	}
}

func allowPeers(allowed ...spiffe.ID) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("no peer certificate")
		}
		id, err := spiffe.FromCertificate(cs.PeerCertificates[0])
		if err != nil {
			return err
		}
		for _, a := range allowed {
			if id == a {
				return nil
			}
		}
		return fmt.Errorf("peer %s not allowed", id)
	}
}

// TestCARootRotation: a short-lived self-signed root renews with the same
// key while the server runs; a workload certificate from the old root
// still verifies against the new bundle (root-cert.pem) and still renews
// over mTLS; new clients trusting root-cert.pem reach the secure port.
func TestCARootRotation(t *testing.T) {
	ca := startSecureCA(t, nil, trust.Options{RootTTL: 6 * time.Second, RenewBefore: 0.5, CheckInterval: 50 * time.Millisecond})
	oldRoot := ca.store.Current().Cert
	watch, cancel := ca.store.Watch()
	defer cancel()
	cert, _ := ca.workloadCert(t, ca.dial(t, nil), "default", "sleep", bearer(ca.kube.KubeToken(t, "default", "sleep")))

	select {
	case <-watch:
	case <-time.After(10 * time.Second):
		t.Fatal("root not renewed within 10s")
	}
	m := ca.store.Current()
	if m.Cert.Equal(oldRoot) || len(m.Roots) != 2 {
		t.Fatalf("after renewal: same root %v, %d roots in the bundle", m.Cert.Equal(oldRoot), len(m.Roots))
	}
	bundle := ca.rootsFromDisk(t)
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: bundle, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("old-root leaf against the new bundle: %v", err)
	}
	// A fresh connection (new serving certificate, new bundle) renews with
	// the old-root client certificate.
	ca.workloadCert(t, ca.dial(t, &cert), "default", "sleep", nil)
}
