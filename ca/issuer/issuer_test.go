package issuer_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sextant-mesh/sextant/ca/catest"
	"github.com/sextant-mesh/sextant/ca/issuer"
	"github.com/sextant-mesh/sextant/ca/spiffe"
	"github.com/sextant-mesh/sextant/ca/trust"
)

var alice = spiffe.ID{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: "alice"}

func newIssuer(t testing.TB, kt trust.KeyType, o issuer.Options) *issuer.Issuer {
	t.Helper()
	s, err := trust.Open(t.TempDir(), trust.Options{KeyType: kt})
	if err != nil {
		t.Fatal(err)
	}
	iss, err := issuer.New(s, o)
	if err != nil {
		t.Fatal(err)
	}
	return iss
}

func TestSignGoodPath(t *testing.T) {
	for _, kt := range []trust.KeyType{trust.ECDSAP256, trust.RSA2048} {
		for _, csrKey := range []string{catest.EC256, catest.EC384, catest.RSA2048} {
			t.Run(fmt.Sprintf("ca=%s/csr=%s", kt, csrKey), func(t *testing.T) {
				iss := newIssuer(t, kt, issuer.Options{})
				// The CSR asks for another identity and names: all ignored.
				csr := catest.CSR(t, catest.NewKey(t, csrKey), "admin",
					"spiffe://cluster.local/ns/kube-system/sa/admin", "evil.example.com", "10.0.0.1")
				chain, err := iss.Sign(context.Background(), csr, alice, 0)
				if err != nil {
					t.Fatal(err)
				}
				if len(chain) != 2 {
					t.Fatalf("chain has %d elements, want leaf + root", len(chain))
				}
				if chain[1] != string(iss.Roots()) {
					t.Error("last element is not the root bundle")
				}
				leaf, id := catest.VerifyChain(t, chain, iss.Roots())
				if id != alice {
					t.Errorf("identity %v, want %v", id, alice)
				}
				if len(leaf.URIs) != 1 || len(leaf.DNSNames) != 0 || len(leaf.IPAddresses) != 0 || leaf.Subject.CommonName != "" {
					t.Errorf("leaf SANs: URIs %v DNS %v IPs %v CN %q: want only the SPIFFE ID", leaf.URIs, leaf.DNSNames, leaf.IPAddresses, leaf.Subject.CommonName)
				}
				if !sanCritical(leaf) {
					t.Error("SAN extension not critical with an empty subject")
				}
				if leaf.IsCA {
					t.Error("leaf is a CA")
				}
				if got := time.Until(leaf.NotAfter); got < 24*time.Hour-time.Minute || got > 24*time.Hour {
					t.Errorf("default TTL: leaf valid for %v more, want 24h", got)
				}
			})
		}
	}
}

var oidSAN = asn1.ObjectIdentifier{2, 5, 29, 17}

func sanCritical(c *x509.Certificate) bool {
	for _, e := range c.Extensions {
		if e.Id.Equal(oidSAN) {
			return e.Critical
		}
	}
	return false
}

func TestSignTTL(t *testing.T) {
	iss := newIssuer(t, trust.ECDSAP256, issuer.Options{MaxTTL: 2 * time.Hour})
	csr := catest.CSR(t, catest.NewKey(t, catest.EC256), "")
	for _, tc := range []struct {
		ttl     time.Duration
		want    time.Duration
		wantErr bool
	}{
		{0, 2 * time.Hour, false}, // default 24h, limited by the max
		{-time.Second, 2 * time.Hour, false},
		{time.Hour, time.Hour, false},
		{2 * time.Hour, 2 * time.Hour, false},
		{2*time.Hour + time.Second, 0, true},
	} {
		chain, err := iss.Sign(context.Background(), csr, alice, tc.ttl)
		if tc.wantErr {
			if !errors.Is(err, issuer.ErrTTL) || !strings.Contains(err.Error(), "greater than the max allowed TTL 2h0m0s") {
				t.Errorf("ttl %v: err %v, want ErrTTL", tc.ttl, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("ttl %v: %v", tc.ttl, err)
		}
		leaf := catest.ParseChain(t, chain)[0][0]
		if got := time.Until(leaf.NotAfter); got < tc.want-time.Minute || got > tc.want {
			t.Errorf("ttl %v: valid for %v more, want %v", tc.ttl, got, tc.want)
		}
	}
}

func TestSignBadCSR(t *testing.T) {
	iss := newIssuer(t, trust.ECDSAP256, issuer.Options{})
	good := catest.CSR(t, catest.NewKey(t, catest.EC256), "")
	block, _ := pem.Decode(good)
	tampered := append([]byte(nil), block.Bytes...)
	tampered[len(tampered)-5] ^= 0xff // inside the signature
	for _, tc := range []struct {
		name string
		csr  []byte
		want string
	}{
		{"empty", nil, "empty"},
		{"garbage", []byte("hello, CA"), "not a PEM or DER certificate request"},
		{"garbage PEM", []byte("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"), "not a PEM or DER"},
		{"bad signature", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: tampered}), "signature does not verify"},
		{"RSA 1024", catest.CSR(t, catest.NewKey(t, catest.RSA1024), ""), "RSA 1024 bits"},
		{"P-521", catest.CSR(t, catest.NewKey(t, catest.EC521), ""), "curve P-521"},
		{"huge", make([]byte, issuer.MaxCSRSize+1), "larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := iss.Sign(context.Background(), tc.csr, alice, 0)
			if !errors.Is(err, issuer.ErrInvalidCSR) {
				t.Fatalf("err %v, want ErrInvalidCSR", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %q does not say %q", err, tc.want)
			}
		})
	}
	// DER is accepted too.
	if _, err := iss.Sign(context.Background(), block.Bytes, alice, 0); err != nil {
		t.Errorf("DER CSR: %v", err)
	}
	// The identity must be in the trust domain.
	other := alice
	other.TrustDomain = "other.org"
	if _, err := iss.Sign(context.Background(), good, other, 0); err == nil || !strings.Contains(err.Error(), "trust domain") {
		t.Errorf("foreign trust domain: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := iss.Sign(ctx, good, alice, 0); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled context: %v", err)
	}
}

func TestSignPluggedIn(t *testing.T) {
	dir := t.TempDir()
	p := catest.WritePlugged(t, dir, catest.PluggedOptions{IntermediateNotAfter: time.Now().Add(3 * time.Hour)})
	s, err := trust.Open(dir, trust.Options{})
	if err != nil {
		t.Fatal(err)
	}
	iss, err := issuer.New(s, issuer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	chain, err := iss.Sign(context.Background(), catest.CSR(t, catest.NewKey(t, catest.EC256), ""), alice, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(chain) != 3 {
		t.Fatalf("chain has %d elements, want leaf, intermediate, root", len(chain))
	}
	parsed := catest.ParseChain(t, chain)
	if !parsed[1][0].Equal(p.Intermediate) || len(parsed[2]) != 1 || !parsed[2][0].Equal(p.Root) {
		t.Error("chain is not leaf, intermediate, root")
	}
	leaf, _ := catest.VerifyChain(t, chain, catest.CertPEM(p.Root))
	// A leaf never outlives its issuer.
	if !leaf.NotAfter.Equal(p.Intermediate.NotAfter) {
		t.Errorf("leaf expires %v, want capped at the intermediate's %v", leaf.NotAfter, p.Intermediate.NotAfter)
	}
}

func TestIssue(t *testing.T) {
	iss := newIssuer(t, trust.ECDSAP256, issuer.Options{})
	got, err := iss.Issue(context.Background(), alice, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := got.TLSCertificate(); err != nil {
		t.Fatalf("key and chain do not pair: %v", err)
	}
	if !strings.Contains(string(got.KeyPEM), "PRIVATE KEY") {
		t.Error("key is not PEM")
	}
	id, err := spiffe.FromCertificate(got.Leaf)
	if err != nil || id != alice {
		t.Errorf("identity %v %v", id, err)
	}
	if rot := got.RotateAt(0.5); rot.Before(time.Now().Add(29*time.Minute)) || rot.After(time.Now().Add(31*time.Minute)) {
		t.Errorf("RotateAt(0.5) = %v, want in ~30m", rot)
	}
	if v := issuer.CertValidity(got.Leaf, time.Now()); v < 0.95 || v > 1 {
		t.Errorf("CertValidity of a new cert = %v", v)
	}
	if v := issuer.CertValidity(got.Leaf, got.Leaf.NotAfter.Add(time.Second)); v != 0 {
		t.Errorf("CertValidity after expiry = %v", v)
	}
	if _, err := iss.Issue(context.Background(), alice, 48*time.Hour); !errors.Is(err, issuer.ErrTTL) {
		t.Errorf("Issue over max TTL: %v", err)
	}
}

// TestWorkloadMutualTLS: two workloads with certificates from this CA
// complete a mutual TLS handshake, each checking the other's SPIFFE ID.
func TestWorkloadMutualTLS(t *testing.T) {
	iss := newIssuer(t, trust.ECDSAP256, issuer.Options{})
	bob := spiffe.ID{TrustDomain: "cluster.local", Namespace: "prod", ServiceAccount: "bob"}
	ac, err := iss.Issue(context.Background(), alice, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	bc, err := iss.Issue(context.Background(), bob, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	err = MutualTLS(t, ac, bc, iss.Roots(), alice, bob)
	if err != nil {
		t.Fatal(err)
	}
	// A workload expecting someone else refuses the handshake.
	carol := spiffe.ID{TrustDomain: "cluster.local", Namespace: "prod", ServiceAccount: "carol"}
	if err := MutualTLS(t, ac, bc, iss.Roots(), alice, carol); err == nil {
		t.Error("handshake succeeded with the wrong server identity")
	}
	// A workload of another CA is refused.
	other := newIssuer(t, trust.ECDSAP256, issuer.Options{})
	oc, err := other.Issue(context.Background(), bob, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := MutualTLS(t, ac, oc, iss.Roots(), alice, bob); err == nil {
		t.Error("handshake succeeded with a certificate from another CA")
	}
}

// MutualTLS runs a TLS handshake on loopback: client holds cc, server sc;
// each verifies the peer against roots and the expected SPIFFE ID.
func MutualTLS(t *testing.T, cc, sc *issuer.Issued, roots []byte, wantClient, wantServer spiffe.ID) error {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(roots)
	ccert, _ := cc.TLSCertificate()
	scert, _ := sc.TLSCertificate()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	srvErr := make(chan error, 1)
	go func() {
		conn, err := lis.Accept()
		if err != nil {
			srvErr <- err
			return
		}
		defer conn.Close()
		tc := tls.Server(conn, &tls.Config{Certificates: []tls.Certificate{scert}, ClientAuth: tls.RequireAndVerifyClientCert,
			ClientCAs: pool, MinVersion: tls.VersionTLS13, VerifyConnection: expectPeer(wantClient)})
		err = tc.Handshake()
		if err == nil {
			_, err = tc.Write([]byte("ok"))
		}
		srvErr <- err
	}()
	conn, err := net.Dial("tcp", lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// SPIFFE peers are checked by URI SAN, not host name.
	tc := tls.Client(conn, &tls.Config{Certificates: []tls.Certificate{ccert}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS13,
		VerifyConnection: func(cs tls.ConnectionState) error {
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			if _, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter}); err != nil {
				return err
			}
			return expectPeer(wantServer)(cs)
		}})
	cerr := tc.Handshake()
	if cerr == nil {
		buf := make([]byte, 2)
		_, cerr = tc.Read(buf)
	}
	tc.Close()
	serr := <-srvErr
	return errors.Join(cerr, serr)
}

func expectPeer(want spiffe.ID) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("no peer certificate")
		}
		got, err := spiffe.FromCertificate(cs.PeerCertificates[0])
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("peer is %s, want %s", got, want)
		}
		return nil
	}
}

func TestServingCert(t *testing.T) {
	clk := time.Now()
	now := func() time.Time { return clk }
	s, err := trust.Open(t.TempDir(), trust.Options{RootTTL: 10 * time.Hour, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	iss, err := issuer.New(s, issuer.Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := iss.NewServingCert([]string{"bad name!"}, 0, nil); err == nil {
		t.Error("bad SAN accepted")
	}
	sc, err := iss.NewServingCert([]string{"sextant.example.com", "127.0.0.1", issuer.IstiodSAN}, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := sc.Leaf()
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(iss.Roots())
	for _, name := range []string{issuer.IstiodSAN, "sextant.example.com", "127.0.0.1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: name, CurrentTime: clk}); err != nil {
			t.Errorf("server cert for %s: %v", name, err)
		}
	}
	if len(leaf.DNSNames) != 2 {
		t.Errorf("DNS names %v, want istiod's and the extra one, once each", leaf.DNSNames)
	}
	// The leaf is capped by the 10h root; after the root rotates the
	// serving certificate is reissued under the new material.
	clk = clk.Add(9 * time.Hour)
	if changed, err := s.Check(); err != nil || !changed {
		t.Fatalf("rotation: %v %v", changed, err)
	}
	leaf2, err := sc.Leaf()
	if err != nil {
		t.Fatal(err)
	}
	if leaf2.Equal(leaf) {
		t.Error("serving certificate not reissued after the CA changed")
	}
}
