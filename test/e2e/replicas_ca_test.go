package e2e

import (
	"bytes"
	"crypto/x509"
	"path/filepath"
	"testing"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/sextant-mesh/sextant/ca/issuer"
	"github.com/sextant-mesh/sextant/ca/trust"
	"github.com/sextant-mesh/sextant/discovery/translate"
	"github.com/sextant-mesh/sextant/internal/adsclient"
	"github.com/sextant-mesh/sextant/internal/testenv"
)

// TestReplicasShareCADir: two replicas on one config directory and one
// --ca-dir (a shared volume) issue certificates that chain to the same
// root, serve the same ROOTCA, and a proxy whose certificate came from one
// replica moves to the other with it: the other accepts it on its secure
// port and its SDS secret stays valid there.
func TestReplicasShareCADir(t *testing.T) {
	dir := t.TempDir()
	testenv.WriteFile(t, dir+"/mesh.yaml", meshYAML)
	caDir := filepath.Join(t.TempDir(), "ca")
	envA := testenv.Start(t, dir, testenv.Options{})
	envB := testenv.Start(t, dir, testenv.Options{})
	a := startSecureCAIn(t, caDir, envA.Server, trust.Options{}, issuer.Options{})
	b := startSecureCAIn(t, caDir, envB.Server, trust.Options{}, issuer.Options{})
	if !a.store.Current().Cert.Equal(b.store.Current().Cert) {
		t.Fatal("the replicas signed with different roots")
	}

	// The workload gets its certificate from replica a with its token …
	cert, rootsA := a.workloadCert(t, a.dial(t, nil), "default", "reviews", bearer(a.kube.KubeToken(t, "default", "reviews")))
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	// … and b's CA accepts it as a client certificate and renews with it.
	_, rootsB := b.workloadCert(t, b.dial(t, &cert), "default", "reviews", nil)
	for name, pool := range map[string]*x509.CertPool{"a": rootsA, "b": rootsB} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("a's workload certificate against %s's roots: %v", name, err)
		}
	}

	// SDS on both: the same ROOTCA, and each default certificate verifies
	// against the other replica's ROOTCA.
	sds := func(ca *secureCA, pod string) (rootPEM []byte, leaf *x509.Certificate) {
		c := startClient(t, ca.dial(t, &cert), pod, "", adsclient.Options{Types: []string{translate.ClusterType, translate.SecretType}})
		if err := c.Subscribe(translate.SecretType, translate.SecretDefault, translate.SecretRootCA); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, 5*time.Second, func() string {
			var ok bool
			leaf, ok = leafOf(t, c)
			if !ok || c.Resources(translate.SecretType)[translate.SecretRootCA] == nil {
				return "default and ROOTCA not received from " + pod
			}
			return ""
		})
		var sec tlsv3.Secret
		if err := c.Resources(translate.SecretType)[translate.SecretRootCA].UnmarshalTo(&sec); err != nil {
			t.Fatal(err)
		}
		return sec.GetValidationContext().GetTrustedCa().GetInlineBytes(), leaf
	}
	rootA, leafA := sds(a, "reviews-a")
	rootB, leafB := sds(b, "reviews-b")
	if len(rootA) == 0 || !bytes.Equal(rootA, rootB) {
		t.Fatalf("ROOTCA differs between replicas:\n%s\n%s", rootA, rootB)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(rootA)
	for name, l := range map[string]*x509.Certificate{"a": leafA, "b": leafB} {
		if _, err := l.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("SDS certificate from %s against the shared ROOTCA: %v", name, err)
		}
	}
}
