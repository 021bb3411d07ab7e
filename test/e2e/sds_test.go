package e2e

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sextant-mesh/sextant/ca/issuer"
	"github.com/sextant-mesh/sextant/ca/trust"
	"github.com/sextant-mesh/sextant/discovery/translate"
	"github.com/sextant-mesh/sextant/discovery/xds"
	"github.com/sextant-mesh/sextant/internal/adsclient"
	"github.com/sextant-mesh/sextant/internal/testenv"
)

func leafOf(t *testing.T, c *adsclient.Client) (*x509.Certificate, bool) {
	t.Helper()
	a := c.Resources(translate.SecretType)[translate.SecretDefault]
	if a == nil {
		return nil, false
	}
	var sec tlsv3.Secret
	if err := a.UnmarshalTo(&sec); err != nil {
		t.Fatal(err)
	}
	if len(sec.GetTlsCertificate().GetPrivateKey().GetInlineBytes()) == 0 {
		t.Fatal("default secret has no private key")
	}
	block, _ := pem.Decode(sec.GetTlsCertificate().GetCertificateChain().GetInlineBytes())
	if block == nil {
		t.Fatal("default secret has no certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert, true
}

// TestSDSOverADS: an authenticated proxy on the secure port gets Istio's
// SDS secrets from Sextant; the workload certificate is re-issued and pushed
// before it expires without the proxy asking; private keys never show in
// debug output; the node must match the authenticated identity.
func TestSDSOverADS(t *testing.T) {
	dir := t.TempDir()
	testenv.WriteFile(t, dir+"/mesh.yaml", meshYAML)
	env := testenv.Start(t, dir, testenv.Options{Server: func(o *xds.Options) { o.SecretCheckInterval = 100 * time.Millisecond }})
	ca := startSecureCAWith(t, env.Server, trust.Options{}, issuer.Options{DefaultTTL: 3 * time.Second, MaxTTL: time.Hour})

	cert, _ := ca.workloadCert(t, ca.dial(t, nil), "default", "reviews", bearer(ca.kube.KubeToken(t, "default", "reviews")))
	mtls := ca.dial(t, &cert)
	for _, delta := range []bool{false, true} {
		c := startClient(t, mtls, "reviews-sds", "", adsclient.Options{Delta: delta, Types: []string{translate.ClusterType, translate.SecretType}})
		if err := c.Subscribe(translate.SecretType, translate.SecretDefault, translate.SecretRootCA); err != nil {
			t.Fatal(err)
		}
		var first *x509.Certificate
		testenv.Eventually(t, 5*time.Second, func() string {
			leaf, ok := leafOf(t, c)
			if !ok || c.Resources(translate.SecretType)[translate.SecretRootCA] == nil {
				return "default and ROOTCA not received"
			}
			first = leaf
			return ""
		})
		if len(first.URIs) != 1 || first.URIs[0].String() != "spiffe://cluster.local/ns/default/sa/reviews" {
			t.Errorf("workload certificate identity %v", first.URIs)
		}
		// Rotation: a new certificate arrives unasked before the old expires.
		testenv.Eventually(t, 6*time.Second, func() string {
			leaf, _ := leafOf(t, c)
			if leaf.SerialNumber.Cmp(first.SerialNumber) == 0 {
				return "certificate not rotated"
			}
			if time.Now().After(first.NotAfter) {
				return "rotated only after expiry"
			}
			return ""
		})
	}
	dump := env.Get(t, "/debug/config_dump?proxyID=reviews-sds.default")
	if !strings.Contains(dump, "certificate_chain") || strings.Contains(dump, "PRIVATE KEY") {
		t.Errorf("config_dump must show the certificate but never the key:\n%.500s", dump)
	}

	// A node claiming another namespace than its certificate is refused.
	bad, err := adsclient.Start(context.Background(), mtls, adsclient.Node("10.9.0.2", "intruder", "other", "", nil), adsclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	<-bad.Done()
	if status.Code(bad.Err()) != codes.PermissionDenied {
		t.Errorf("identity mismatch: %v, want PermissionDenied", bad.Err())
	}
	// Unauthenticated streams on the secure port are refused.
	anon, err := adsclient.Start(context.Background(), ca.dial(t, nil), adsclient.Node("10.9.0.3", "anon", "default", "", nil), adsclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	<-anon.Done()
	if status.Code(anon.Err()) != codes.Unauthenticated {
		t.Errorf("anonymous stream: %v, want Unauthenticated", anon.Err())
	}
}
