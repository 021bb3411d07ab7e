package trust_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.step.sm/crypto/pemutil"

	"github.com/sextant-mesh/sextant/ca/catest"
	"github.com/sextant-mesh/sextant/ca/trust"
)

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func readBundle(t *testing.T, path string) []*x509.Certificate {
	t.Helper()
	certs, err := pemutil.ReadCertificateBundle(path)
	if err != nil {
		t.Fatal(err)
	}
	return certs
}

func TestSelfSignedGeneratePersistRestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	s, err := trust.Open(dir, trust.Options{TrustDomain: "example.org"})
	if err != nil {
		t.Fatal(err)
	}
	m := s.Current()
	if m.Mode != trust.SelfSigned {
		t.Fatalf("mode %v, want self-signed", m.Mode)
	}
	k, ok := m.Key.Public().(*ecdsa.PublicKey)
	if !ok || k.Curve != elliptic.P256() {
		t.Errorf("default key is %T, want ECDSA P-256", m.Key.Public())
	}
	if life := m.Cert.NotAfter.Sub(m.Cert.NotBefore); life < 3649*24*time.Hour || life > 3651*24*time.Hour {
		t.Errorf("root lifetime %v, want ~10y", life)
	}
	if !m.Cert.IsCA || m.Cert.Subject.Organization[0] != "example.org" {
		t.Errorf("root: IsCA=%v subject %v", m.Cert.IsCA, m.Cert.Subject)
	}
	st, err := os.Stat(filepath.Join(dir, trust.CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("ca-key.pem mode %v, want 0600", st.Mode().Perm())
	}
	published := readBundle(t, filepath.Join(dir, trust.RootCertFile))
	if len(published) != 1 || !published[0].Equal(m.Cert) {
		t.Errorf("root-cert.pem does not hold the root")
	}
	if len(m.ChainPEM()) != 0 {
		t.Errorf("self-signed CA has %d chain elements, want 0", len(m.ChainPEM()))
	}

	// A new Store on the same directory keeps the root and key.
	s2, err := trust.Open(dir, trust.Options{TrustDomain: "example.org", KeyType: trust.RSA2048})
	if err != nil {
		t.Fatal(err)
	}
	m2 := s2.Current()
	if !m2.Cert.Equal(m.Cert) {
		t.Error("restart changed the root")
	}
	if !m2.Cert.PublicKey.(*ecdsa.PublicKey).Equal(m.Key.Public()) {
		t.Error("restart changed the key")
	}
}

func TestSelfSignedRSA(t *testing.T) {
	s, err := trust.Open(t.TempDir(), trust.Options{KeyType: trust.RSA2048})
	if err != nil {
		t.Fatal(err)
	}
	if k, ok := s.Current().Key.Public().(*rsa.PublicKey); !ok || k.N.BitLen() != 2048 {
		t.Errorf("key %T, want RSA 2048", s.Current().Key.Public())
	}
	for _, in := range []string{"ecdsa-p256", "rsa-2048", "rsa-4096"} {
		if _, err := trust.ParseKeyType(in); err != nil {
			t.Error(err)
		}
	}
	if _, err := trust.ParseKeyType("dsa"); err == nil {
		t.Error("ParseKeyType(dsa) succeeded")
	}
}

func TestSelfSignedBadStates(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  []string
	}{
		{"cert without key", func(t *testing.T, dir string) {
			mustOpen(t, dir)
			os.Remove(filepath.Join(dir, trust.CAKeyFile))
		}, []string{trust.CAKeyFile, "missing"}},
		{"key without cert", func(t *testing.T, dir string) {
			mustOpen(t, dir)
			os.Remove(filepath.Join(dir, trust.CACertFile))
		}, []string{trust.CACertFile, "missing"}},
		{"root bundle alone", func(t *testing.T, dir string) {
			mustOpen(t, dir)
			os.Remove(filepath.Join(dir, trust.CACertFile))
			os.Remove(filepath.Join(dir, trust.CAKeyFile))
		}, []string{trust.RootCertFile, "refusing"}},
		{"key of another cert", func(t *testing.T, dir string) {
			mustOpen(t, dir)
			os.WriteFile(filepath.Join(dir, trust.CAKeyFile), catest.KeyPEM(t, catest.NewKey(t, catest.EC256)), 0o600)
		}, []string{trust.CAKeyFile, "does not match"}},
		{"garbage cert", func(t *testing.T, dir string) {
			mustOpen(t, dir)
			os.WriteFile(filepath.Join(dir, trust.CACertFile), []byte("not a certificate"), 0o644)
		}, []string{trust.CACertFile}},
		{"intermediate without chain", func(t *testing.T, dir string) {
			catest.WritePlugged(t, dir, catest.PluggedOptions{})
			os.Remove(filepath.Join(dir, trust.CertChainFile))
			os.Remove(filepath.Join(dir, trust.RootCertFile))
		}, []string{trust.CACertFile, "not self-signed", trust.CertChainFile}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.setup(t, dir)
			_, err := trust.Open(dir, trust.Options{})
			if err == nil {
				t.Fatal("Open succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func mustOpen(t *testing.T, dir string) *trust.Store {
	t.Helper()
	s, err := trust.Open(dir, trust.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestPluggedIn(t *testing.T) {
	dir := t.TempDir()
	p := catest.WritePlugged(t, dir, catest.PluggedOptions{})
	rootBefore, _ := os.ReadFile(filepath.Join(dir, trust.RootCertFile))
	s := mustOpen(t, dir)
	m := s.Current()
	if m.Mode != trust.PluggedIn {
		t.Fatalf("mode %v, want plugged-in", m.Mode)
	}
	if !m.Cert.Equal(p.Intermediate) || !m.Roots[0].Equal(p.Root) || len(m.Intermediates) != 0 {
		t.Errorf("signing %v, roots[0] %v, %d intermediates", m.Cert.Subject, m.Roots[0].Subject, len(m.Intermediates))
	}
	if len(m.ChainPEM()) != 1 {
		t.Errorf("chain has %d elements, want 1 (the intermediate; the root from cert-chain.pem is not repeated)", len(m.ChainPEM()))
	}
	rootAfter, _ := os.ReadFile(filepath.Join(dir, trust.RootCertFile))
	if !bytes.Equal(rootBefore, rootAfter) {
		t.Error("plugged-in root-cert.pem was rewritten")
	}
	if got := m.ChainNotAfter(); !got.Equal(p.Intermediate.NotAfter) {
		t.Errorf("chain expiry %v, want the intermediate's %v", got, p.Intermediate.NotAfter)
	}
}

func TestPluggedInErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  catest.PluggedOptions
		after func(t *testing.T, dir string)
		want  []string
	}{
		{"mismatched key", catest.PluggedOptions{}, func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, trust.CAKeyFile), catest.KeyPEM(t, catest.NewKey(t, catest.EC256)), 0o600)
		}, []string{trust.CAKeyFile, "does not match", trust.CACertFile}},
		{"chain to another root", catest.PluggedOptions{}, func(t *testing.T, dir string) {
			other := catest.WritePlugged(t, t.TempDir(), catest.PluggedOptions{})
			os.WriteFile(filepath.Join(dir, trust.RootCertFile), catest.CertPEM(other.Root), 0o644)
		}, []string{trust.CACertFile, "does not chain", trust.RootCertFile}},
		{"expired intermediate", catest.PluggedOptions{IntermediateNotAfter: time.Now().Add(-time.Minute)}, nil,
			[]string{trust.CACertFile, "expired"}},
		{"not a CA", catest.PluggedOptions{NotCA: true}, nil, []string{trust.CACertFile, "not a CA"}},
		{"missing root", catest.PluggedOptions{}, func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, trust.RootCertFile))
		}, []string{trust.RootCertFile, "missing"}},
		{"garbage chain", catest.PluggedOptions{}, func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, trust.CertChainFile), []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), 0o644)
		}, []string{trust.CertChainFile}},
		{"encrypted or garbage key", catest.PluggedOptions{}, func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, trust.CAKeyFile), []byte("garbage"), 0o600)
		}, []string{trust.CAKeyFile}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			catest.WritePlugged(t, dir, tc.opts)
			if tc.after != nil {
				tc.after(t, dir)
			}
			_, err := trust.Open(dir, trust.Options{})
			if err == nil {
				t.Fatal("Open succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// leafOf signs a client leaf with a root and its key, as the CA did before a
// rotation.
func leafOf(t *testing.T, signer *trust.Material, now time.Time) *x509.Certificate {
	t.Helper()
	k := catest.NewKey(t, catest.EC256)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(now.UnixNano()), NotBefore: now.Add(-time.Minute), NotAfter: now.Add(9 * time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer.Cert, k.Public(), signer.Key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRootRotationSameKeyOverlap(t *testing.T) {
	dir := t.TempDir()
	clk := &clock{t: time.Now()}
	opts := trust.Options{RootTTL: 10 * time.Hour, Now: clk.Now}
	s, err := trust.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	old := s.Current()
	leaf := leafOf(t, old, clk.Now())
	watch, cancel := s.Watch()
	defer cancel()

	clk.Add(7 * time.Hour) // 3h of 10h left: above 20%
	if changed, err := s.Check(); err != nil || changed {
		t.Fatalf("Check at 70%%: changed=%v err=%v, want no rotation", changed, err)
	}
	clk.Add(time.Hour + 30*time.Minute) // 1.5h left: below 20%
	changed, err := s.Check()
	if err != nil || !changed {
		t.Fatalf("Check at 85%%: changed=%v err=%v, want a rotation", changed, err)
	}
	select {
	case <-watch:
	default:
		t.Error("watchers not notified")
	}
	cur := s.Current()
	if cur.Cert.Equal(old.Cert) {
		t.Fatal("root not renewed")
	}
	if !cur.Cert.PublicKey.(*ecdsa.PublicKey).Equal(old.Cert.PublicKey) {
		t.Error("renewal changed the key")
	}
	if !bytes.Equal(cur.Cert.RawSubject, old.Cert.RawSubject) {
		t.Error("renewal changed the subject")
	}
	if cur.Generation <= old.Generation {
		t.Error("generation did not increase")
	}
	if len(cur.Roots) != 2 || !cur.Roots[0].Equal(cur.Cert) || !cur.Roots[1].Equal(old.Cert) {
		t.Fatalf("bundle has %d roots, want new then old", len(cur.Roots))
	}
	if onDisk := readBundle(t, filepath.Join(dir, trust.RootCertFile)); len(onDisk) != 2 {
		t.Errorf("root-cert.pem holds %d roots, want 2", len(onDisk))
	}
	// The old root's leaf verifies with the new bundle, and even with the
	// new root alone (same key and subject).
	newOnly := x509.NewCertPool()
	newOnly.AddCert(cur.Cert)
	for name, pool := range map[string]*x509.CertPool{"bundle": cur.RootPool(), "new root only": newOnly} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: clk.Now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("old leaf against %s: %v", name, err)
		}
	}

	// A restart during the overlap keeps both roots.
	s2, err := trust.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	if m := s2.Current(); !m.Cert.Equal(cur.Cert) || len(m.Roots) != 2 {
		t.Errorf("restart during overlap: %d roots, same root %v", len(m.Roots), m.Cert.Equal(cur.Cert))
	}

	// Once the old root expires it leaves the bundle.
	clk.Add(2 * time.Hour)
	if changed, err := s.Check(); err != nil || !changed {
		t.Fatalf("Check after the old root expired: changed=%v err=%v", changed, err)
	}
	if m := s.Current(); len(m.Roots) != 1 || !m.Roots[0].Equal(cur.Cert) {
		t.Errorf("after overlap: %d roots, want the new one only", len(m.Roots))
	}
	if onDisk := readBundle(t, filepath.Join(dir, trust.RootCertFile)); len(onDisk) != 1 {
		t.Errorf("root-cert.pem holds %d roots after the overlap, want 1", len(onDisk))
	}
}

func TestExpiredRootRenewedAtStartup(t *testing.T) {
	dir := t.TempDir()
	clk := &clock{t: time.Now()}
	s, err := trust.Open(dir, trust.Options{RootTTL: time.Hour, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	old := s.Current().Cert
	clk.Add(3 * time.Hour)
	s2, err := trust.Open(dir, trust.Options{RootTTL: time.Hour, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	m := s2.Current()
	if m.Cert.Equal(old) || !m.Cert.NotAfter.After(clk.Now()) {
		t.Error("expired root not renewed at startup")
	}
	if len(m.Roots) != 1 {
		t.Errorf("bundle holds %d roots, want 1 (the expired one dropped)", len(m.Roots))
	}
}

// TestRunRotates uses the real clock: a 3s root with a 50% threshold renews
// within about 1.5s under Run.
func TestRunRotates(t *testing.T) {
	s, err := trust.Open(t.TempDir(), trust.Options{RootTTL: 3 * time.Second, RenewBefore: 0.5, CheckInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	old := s.Current()
	watch, cancel := s.Watch()
	defer cancel()
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	select {
	case <-watch:
	case <-time.After(10 * time.Second):
		t.Fatal("no rotation within 10s")
	}
	if m := s.Current(); m.Cert.Equal(old.Cert) || len(m.Roots) < 2 {
		t.Errorf("after rotation: same root %v, %d roots", m.Cert.Equal(old.Cert), len(m.Roots))
	}
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Error(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestPluggedInReload(t *testing.T) {
	dir := t.TempDir()
	catest.WritePlugged(t, dir, catest.PluggedOptions{})
	s := mustOpen(t, dir)
	first := s.Current()
	if changed, err := s.Check(); changed || err != nil {
		t.Fatalf("unchanged files: changed=%v err=%v", changed, err)
	}
	// A broken update is refused and the old material stays.
	os.WriteFile(filepath.Join(dir, trust.CAKeyFile), catest.KeyPEM(t, catest.NewKey(t, catest.EC256)), 0o600)
	touch(t, dir, time.Hour)
	if changed, err := s.Check(); changed || err == nil || !strings.Contains(err.Error(), trust.CAKeyFile) {
		t.Fatalf("broken update: changed=%v err=%v", changed, err)
	}
	if s.Current() != first {
		t.Fatal("broken update replaced the material")
	}
	// A complete new set is picked up.
	next := catest.WritePlugged(t, dir, catest.PluggedOptions{})
	touch(t, dir, 2*time.Hour)
	if changed, err := s.Check(); !changed || err != nil {
		t.Fatalf("new set: changed=%v err=%v", changed, err)
	}
	if m := s.Current(); !m.Cert.Equal(next.Intermediate) || m.Generation <= first.Generation {
		t.Error("new plugged-in set not loaded")
	}
}

// touch moves every file's mtime forward, so that changes are visible on
// file systems with coarse timestamps.
func touch(t *testing.T, dir string, d time.Duration) {
	t.Helper()
	at := time.Now().Add(d)
	for _, f := range []string{trust.CACertFile, trust.CAKeyFile, trust.CertChainFile, trust.RootCertFile} {
		if err := os.Chtimes(filepath.Join(dir, f), at, at); err != nil {
			t.Fatal(err)
		}
	}
}
