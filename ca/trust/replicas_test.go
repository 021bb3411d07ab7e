package trust_test

import (
	"bytes"
	"crypto/x509"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sextant-mesh/sextant/ca/trust"
)

// Replicas started at once on an empty shared --ca-dir end up with one
// root: the directory lock lets only the first generate it.
func TestReplicasStartTogetherOnOneDir(t *testing.T) {
	dir := t.TempDir()
	const n = 4
	stores := make([]*trust.Store, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stores[i], errs[i] = trust.Open(dir, trust.Options{})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
	}
	for i, s := range stores[1:] {
		if !s.Current().Cert.Equal(stores[0].Current().Cert) {
			t.Errorf("replica %d generated its own root", i+1)
		}
		if !bytes.Equal(s.Current().RootsPEM(), stores[0].Current().RootsPEM()) {
			t.Errorf("replica %d publishes another bundle", i+1)
		}
	}
}

// When one replica renews the shared root, the others adopt that root at
// their next check instead of renewing it again: every replica then
// publishes the same bundle, so a proxy that moves keeps its ROOTCA.
func TestReplicaAdoptsRootRenewedByAnother(t *testing.T) {
	dir := t.TempDir()
	clk := &clock{t: time.Now()}
	opts := trust.Options{RootTTL: 10 * time.Hour, Now: clk.Now}
	a, err := trust.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	b, err := trust.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	old := a.Current()
	leafB := leafOf(t, b.Current(), clk.Now())

	clk.Add(8*time.Hour + 30*time.Minute) // below 20% left
	if changed, err := a.Check(); err != nil || !changed {
		t.Fatalf("replica a: changed=%v err=%v, want a renewal", changed, err)
	}
	renewed := a.Current().Cert
	if renewed.Equal(old.Cert) {
		t.Fatal("replica a did not renew")
	}
	if changed, err := b.Check(); err != nil || !changed {
		t.Fatalf("replica b: changed=%v err=%v, want it to take a's root", changed, err)
	}
	if !b.Current().Cert.Equal(renewed) {
		t.Fatal("replica b renewed on its own instead of adopting a's root")
	}
	if !bytes.Equal(a.Current().RootsPEM(), b.Current().RootsPEM()) {
		t.Error("replicas publish different bundles after the renewal")
	}
	onDisk, err := os.ReadFile(filepath.Join(dir, trust.RootCertFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(onDisk, a.Current().RootsPEM()) {
		t.Error("root-cert.pem is not the bundle both replicas serve")
	}
	// A certificate b issued before the renewal verifies against a's bundle.
	if _, err := leafB.Verify(verifyOpts(a.Current().RootPool(), clk.Now())); err != nil {
		t.Errorf("b's leaf against a's bundle: %v", err)
	}
	// A second check changes nothing on either.
	for name, s := range map[string]*trust.Store{"a": a, "b": b} {
		if changed, err := s.Check(); err != nil || changed {
			t.Errorf("replica %s second check: changed=%v err=%v", name, changed, err)
		}
	}
}

func verifyOpts(roots *x509.CertPool, now time.Time) x509.VerifyOptions {
	return x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
}
