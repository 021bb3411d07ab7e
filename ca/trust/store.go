package trust

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"go.step.sm/crypto/x509util"

	"github.com/sextant-mesh/sextant/internal/filestamp"
)

// Defaults, as Istio's (security/pkg/cmd/constants.go).
const (
	DefaultRootTTL       = 10 * 365 * 24 * time.Hour // CITADEL_SELF_SIGNED_CA_CERT_TTL
	DefaultRenewBefore   = 0.2                       // CITADEL_SELF_SIGNED_ROOT_CERT_GRACE_PERIOD_PERCENTILE
	DefaultCheckInterval = time.Hour                 // CITADEL_SELF_SIGNED_ROOT_CERT_CHECK_INTERVAL
	DefaultTrustDomain   = "cluster.local"
)

// Options configure a Store. The zero value is usable.
type Options struct {
	// TrustDomain goes into a generated root's subject (O=<trust domain>,
	// as Istio does). Default cluster.local.
	TrustDomain string
	// KeyType is the key of a newly generated root. Default ECDSAP256. An
	// existing key is always kept, whatever its type.
	KeyType KeyType
	// RootTTL is the lifetime of a generated or renewed root. Default 10y.
	RootTTL time.Duration
	// RenewBefore is the share of a self-signed root's lifetime left when
	// it is renewed. Default 0.2.
	RenewBefore float64
	// CheckInterval is how often Run checks for renewal (jittered by up to
	// 10%) and for changed plugged-in files. Default 1h.
	CheckInterval time.Duration
	Logger        *slog.Logger
	// Now is the clock; tests set it. Default time.Now.
	Now func() time.Time
}

func (o *Options) defaults() {
	if o.TrustDomain == "" {
		o.TrustDomain = DefaultTrustDomain
	}
	if o.KeyType == "" {
		o.KeyType = ECDSAP256
	}
	if o.RootTTL <= 0 {
		o.RootTTL = DefaultRootTTL
	}
	if o.RenewBefore <= 0 || o.RenewBefore >= 1 {
		o.RenewBefore = DefaultRenewBefore
	}
	if o.CheckInterval <= 0 {
		o.CheckInterval = DefaultCheckInterval
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Store owns --ca-dir and the current Material. Its methods are safe for
// concurrent use.
type Store struct {
	dir  string
	opts Options
	log  *slog.Logger

	cur atomic.Pointer[Material]

	mu       sync.Mutex // serializes Check; guards watchers and stamps
	watchers map[chan struct{}]struct{}
	stamps   map[string]filestamp.Stamp // plugged-in files as last loaded
}

// Open loads the CA material in dir, generating a self-signed root when
// the directory holds none, and publishes the root bundle. An expired or
// nearly expired self-signed root is renewed before Open returns. Errors
// name the offending file.
func Open(dir string, o Options) (*Store, error) {
	o.defaults()
	if dir == "" {
		return nil, errors.New("CA directory not set")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("CA directory: %w", err)
	}
	s := &Store{dir: dir, opts: o, log: o.Logger.With("ca-dir", dir), watchers: map[chan struct{}]struct{}{}}
	// Replicas may share the directory: the first to start generates the
	// root, the others wait and load it.
	unlock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	chain, err := readOptional(s.path(CertChainFile))
	if err != nil {
		return nil, err
	}
	var m *Material
	switch {
	case len(bytes.TrimSpace(chain)) > 0:
		m, err = s.loadPlugged(1)
		if err == nil {
			s.stamps = s.pluggedStamps()
		}
	default:
		m, err = s.loadOrCreateSelfSigned()
	}
	if err != nil {
		return nil, err
	}
	s.cur.Store(m)
	if m.Mode == SelfSigned {
		s.mu.Lock()
		_, err := s.checkSelfSigned(m)
		s.mu.Unlock()
		if err != nil {
			return nil, err
		}
	}
	m = s.cur.Load()
	s.log.Info("CA ready", "mode", m.Mode.String(), "signer", m.Cert.Subject.String(),
		"root-expiry", m.RootNotAfter().UTC().Format(time.RFC3339), "roots", len(m.Roots))
	return s, nil
}

func (s *Store) path(name string) string { return filepath.Join(s.dir, name) }

// Dir is the CA directory.
func (s *Store) Dir() string { return s.dir }

// Current is the material in use now.
func (s *Store) Current() *Material { return s.cur.Load() }

// Watch returns a channel that receives a value (coalesced) after every
// change of the material: root rotation, an old root leaving the bundle, a
// plugged-in reload. Call cancel to stop watching.
func (s *Store) Watch() (ch <-chan struct{}, cancel func()) {
	c := make(chan struct{}, 1)
	s.mu.Lock()
	s.watchers[c] = struct{}{}
	s.mu.Unlock()
	return c, func() {
		s.mu.Lock()
		delete(s.watchers, c)
		s.mu.Unlock()
	}
}

// set installs m; callers hold s.mu.
func (s *Store) set(m *Material) {
	s.cur.Store(m)
	for c := range s.watchers {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

// Run checks for renewal (self-signed) or changed files (plugged-in) every
// CheckInterval until ctx ends. Failures are logged and retried at the next
// check; the current material stays in use.
func (s *Store) Run(ctx context.Context) error {
	for {
		d := s.opts.CheckInterval
		d += rand.N(d/10 + 1)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		if _, err := s.Check(); err != nil {
			s.log.Error("CA check failed; keeping the current material", "err", err)
		}
	}
}

// Check runs one renewal/reload check now and reports whether the material
// changed.
func (s *Store) Check() (changed bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.cur.Load()
	if m.Mode == PluggedIn {
		return s.reloadPlugged(m)
	}
	unlock, err := lockDir(s.dir)
	if err != nil {
		return false, err
	}
	defer unlock()
	return s.checkSelfSigned(m)
}

// ---- self-signed ----

func (s *Store) loadOrCreateSelfSigned() (*Material, error) {
	certPath, keyPath, rootPath := s.path(CACertFile), s.path(CAKeyFile), s.path(RootCertFile)
	haveCert, err := exists(certPath)
	if err != nil {
		return nil, err
	}
	haveKey, err := exists(keyPath)
	if err != nil {
		return nil, err
	}
	haveRoot, err := exists(rootPath)
	if err != nil {
		return nil, err
	}
	switch {
	case !haveCert && !haveKey && haveRoot:
		return nil, fmt.Errorf("%s exists without %s and %s: refusing to generate a new root over it "+
			"(for a plugged-in CA add %s, %s and %s; to start afresh remove it)",
			rootPath, CACertFile, CAKeyFile, CACertFile, CAKeyFile, CertChainFile)
	case !haveCert && !haveKey:
		return s.generate()
	case !haveCert:
		return nil, fmt.Errorf("%s: missing, but %s exists (a self-signed CA needs both)", certPath, CAKeyFile)
	case !haveKey:
		return nil, fmt.Errorf("%s: missing, but %s exists (a self-signed CA needs both)", keyPath, CACertFile)
	}

	cert, err := readOneCert(certPath)
	if err != nil {
		return nil, err
	}
	if err := checkCA(certPath, cert); err != nil {
		return nil, err
	}
	if !isSelfSigned(cert) {
		return nil, fmt.Errorf("%s: certificate (%s) is not self-signed; a plugged-in intermediate CA also needs %s and %s (Istio's cacerts layout)",
			certPath, describe(cert), CertChainFile, RootCertFile)
	}
	key, err := readKey(keyPath, cert, certPath)
	if err != nil {
		return nil, err
	}
	// Keep the older roots of the published bundle that are still valid.
	roots := []*x509.Certificate{cert}
	if b, err := readOptional(rootPath); err != nil {
		return nil, err
	} else if len(bytes.TrimSpace(b)) > 0 {
		old, err := parseCerts(rootPath, b)
		if err != nil {
			return nil, err
		}
		roots = mergeRoots(cert, old, s.opts.Now())
	}
	return newMaterial(SelfSigned, cert, key, nil, roots, 1), nil
}

// mergeRoots puts cur first, then the other roots of old that are CA
// certificates and not expired, without duplicates.
func mergeRoots(cur *x509.Certificate, old []*x509.Certificate, now time.Time) []*x509.Certificate {
	roots := []*x509.Certificate{cur}
	for _, r := range old {
		if !r.IsCA || now.After(r.NotAfter) {
			continue
		}
		dup := false
		for _, have := range roots {
			if have.Equal(r) {
				dup = true
				break
			}
		}
		if !dup {
			roots = append(roots, r)
		}
	}
	return roots
}

func (s *Store) generate() (*Material, error) {
	key, err := s.opts.KeyType.Generate()
	if err != nil {
		return nil, err
	}
	subject := x509util.Subject{CommonName: "Sextant Root CA", Organization: []string{s.opts.TrustDomain}}
	cert, err := newRoot(key, subject, nil, s.opts.Now(), s.opts.RootTTL)
	if err != nil {
		return nil, err
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode CA key: %w", err)
	}
	if err := writeAtomic(s.path(CAKeyFile), keyPEM, 0o600); err != nil {
		return nil, err
	}
	m := newMaterial(SelfSigned, cert, key, nil, []*x509.Certificate{cert}, 1)
	if err := s.persistSelfSigned(m); err != nil {
		return nil, err
	}
	s.log.Info("generated a self-signed root", "key", string(s.opts.KeyType), "not-after", cert.NotAfter.UTC().Format(time.RFC3339))
	return m, nil
}

// newRoot issues a self-signed root for key from step's root template. A
// non-nil rawSubject (the old root's) keeps the subject byte-identical
// across renewals, so leaves of the old root chain to the new one.
func newRoot(key crypto.Signer, subject x509util.Subject, rawSubject []byte, now time.Time, ttl time.Duration) (*x509.Certificate, error) {
	csr, err := x509util.CreateCertificateRequest(subject.CommonName, nil, key)
	if err != nil {
		return nil, fmt.Errorf("root CSR: %w", err)
	}
	data := x509util.NewTemplateData()
	data.SetSubject(subject)
	c, err := x509util.NewCertificate(csr, x509util.WithTemplate(x509util.DefaultRootTemplate, data))
	if err != nil {
		return nil, fmt.Errorf("root template: %w", err)
	}
	c.RawSubject = rawSubject
	// Backdate for clock skew, by at most 1% of the lifetime so that the
	// renewal threshold stays meaningful for short test lifetimes.
	c.NotBefore = now.Add(-min(time.Minute, ttl/100))
	c.NotAfter = now.Add(ttl)
	tmpl := c.GetCertificate()
	cert, err := x509util.CreateCertificate(tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("sign root: %w", err)
	}
	return cert, nil
}

// persistSelfSigned writes ca-cert.pem and the bundle (root-cert.pem).
func (s *Store) persistSelfSigned(m *Material) error {
	if err := s.writeIfChanged(s.path(CACertFile), []byte(encodeCert(m.Cert)), 0o644); err != nil {
		return err
	}
	return s.writeIfChanged(s.path(RootCertFile), m.RootsPEM(), 0o644)
}

func (s *Store) writeIfChanged(path string, data []byte, perm os.FileMode) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return nil
	}
	return writeAtomic(path, data, perm)
}

// adoptRenewed returns m with the root another replica sharing --ca-dir
// wrote there, when that is a later self-signed root for the same key, so
// that every replica publishes the same bundle and none renews twice. Any
// other difference on disk (a different key, an unreadable file) is logged
// and left alone: the running material stays, and checkSelfSigned writes
// it back.
func (s *Store) adoptRenewed(m *Material, now time.Time) *Material {
	b, err := readOptional(s.path(CACertFile))
	if err != nil || len(bytes.TrimSpace(b)) == 0 {
		return m
	}
	certs, err := parseCerts(s.path(CACertFile), b)
	if err != nil || len(certs) != 1 {
		s.log.Warn("CA certificate on disk does not parse; keeping the running root", "err", err)
		return m
	}
	cert := certs[0]
	if cert.Equal(m.Cert) || !cert.NotAfter.After(m.Cert.NotAfter) {
		return m
	}
	pub, ok := m.Key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !isSelfSigned(cert) || !ok || !pub.Equal(cert.PublicKey) {
		s.log.Warn("CA certificate on disk is not a renewal of the running root (another key?); keeping the running root",
			"disk", describe(cert))
		return m
	}
	s.log.Info("adopting the root another replica renewed", "not-after", cert.NotAfter.UTC().Format(time.RFC3339))
	return newMaterial(SelfSigned, cert, m.Key, nil, mergeRoots(cert, m.Roots, now), m.Generation+1)
}

// checkSelfSigned adopts a root renewed by another replica, renews the
// root when little of its life is left and drops expired old roots from the
// bundle. Callers hold s.mu and the directory lock.
func (s *Store) checkSelfSigned(m *Material) (bool, error) {
	now := s.opts.Now()
	next := s.adoptRenewed(m, now)
	root := next.Cert
	life := root.NotAfter.Sub(root.NotBefore)
	left := root.NotAfter.Sub(now)
	if left < time.Duration(float64(life)*s.opts.RenewBefore) {
		cert, err := newRoot(m.Key, x509util.Subject{}, root.RawSubject, now, s.opts.RootTTL)
		if err != nil {
			return false, fmt.Errorf("renew self-signed root: %w", err)
		}
		next = newMaterial(SelfSigned, cert, m.Key, nil, mergeRoots(cert, next.Roots, now), m.Generation+1)
		s.log.Info("renewing the self-signed root with the same key",
			"old-not-after", root.NotAfter.UTC().Format(time.RFC3339), "new-not-after", cert.NotAfter.UTC().Format(time.RFC3339),
			"roots", len(next.Roots))
	} else if pruned := mergeRoots(next.Cert, next.Roots, now); len(pruned) != len(next.Roots) {
		s.log.Info("expired roots left the bundle", "removed", len(next.Roots)-len(pruned), "roots", len(pruned))
		next = newMaterial(SelfSigned, next.Cert, m.Key, nil, pruned, m.Generation+1)
	}
	// Persist even when nothing changed in memory: root-cert.pem may be
	// missing or stale on disk.
	if err := s.persistSelfSigned(next); err != nil {
		return false, err
	}
	if next == m {
		return false, nil
	}
	s.set(next)
	return true, nil
}

// ---- plugged-in ----

var pluggedFiles = []string{CACertFile, CAKeyFile, CertChainFile, RootCertFile}

func (s *Store) pluggedStamps() map[string]filestamp.Stamp {
	st := make(map[string]filestamp.Stamp, len(pluggedFiles))
	for _, f := range pluggedFiles {
		st[f] = stampOf(s.path(f))
	}
	return st
}

// loadPlugged reads and validates Istio's cacerts layout.
func (s *Store) loadPlugged(gen uint64) (*Material, error) {
	now := s.opts.Now()
	for _, f := range pluggedFiles {
		ok, err := exists(s.path(f))
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("%s: missing; a plugged-in CA needs %s, %s, %s and %s (Istio's cacerts layout)",
				s.path(f), CACertFile, CAKeyFile, CertChainFile, RootCertFile)
		}
	}
	certPath, keyPath, chainPath, rootPath := s.path(CACertFile), s.path(CAKeyFile), s.path(CertChainFile), s.path(RootCertFile)
	cert, err := readOneCert(certPath)
	if err != nil {
		return nil, err
	}
	if err := checkCA(certPath, cert); err != nil {
		return nil, err
	}
	if err := checkValidity(certPath, cert, now); err != nil {
		return nil, err
	}
	key, err := readKey(keyPath, cert, certPath)
	if err != nil {
		return nil, err
	}
	chain, err := readCerts(chainPath)
	if err != nil {
		return nil, err
	}
	roots, err := readCerts(rootPath)
	if err != nil {
		return nil, err
	}
	rootPool := x509.NewCertPool()
	var validRoots int
	for _, r := range roots {
		if err := checkCA(rootPath, r); err != nil {
			return nil, err
		}
		if checkValidity(rootPath, r, now) == nil {
			validRoots++
		}
		rootPool.AddCert(r)
	}
	if validRoots == 0 {
		return nil, checkValidity(rootPath, roots[0], now)
	}
	inter := x509.NewCertPool()
	for _, c := range chain {
		if c.Equal(cert) || isSelfSigned(c) {
			continue
		}
		if err := checkCA(chainPath, c); err != nil {
			return nil, err
		}
		if err := checkValidity(chainPath, c, now); err != nil {
			return nil, err
		}
		inter.AddCert(c)
	}
	chains, err := cert.Verify(x509.VerifyOptions{Roots: rootPool, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return nil, fmt.Errorf("%s does not chain to a root in %s through %s: %w", certPath, RootCertFile, CertChainFile, err)
	}
	path := chains[0]
	anchor := path[len(path)-1]
	ordered := []*x509.Certificate{anchor}
	for _, r := range roots {
		if !r.Equal(anchor) {
			ordered = append(ordered, r)
		}
	}
	var intermediates []*x509.Certificate
	if len(path) > 2 {
		intermediates = path[1 : len(path)-1]
	}
	return newMaterial(PluggedIn, cert, key, intermediates, ordered, gen), nil
}

// reloadPlugged reloads the cacerts files when they changed on disk. A set
// that fails validation is logged and ignored. Callers hold s.mu.
func (s *Store) reloadPlugged(m *Material) (bool, error) {
	st := s.pluggedStamps()
	same := true
	for f, v := range st {
		if s.stamps[f] != v {
			same = false
		}
	}
	if same {
		return false, nil
	}
	next, err := s.loadPlugged(m.Generation + 1)
	if err != nil {
		// Files are often replaced one at a time (Secret updates are
		// atomic, hand edits are not): retry at the next check.
		return false, fmt.Errorf("plugged-in CA files changed but do not load (still signing with the previous set): %w", err)
	}
	s.stamps = st
	if !next.Roots[0].Equal(m.Roots[0]) {
		s.log.Warn("plugged-in CA now chains to a different root; workloads must trust it before they see its certificates",
			"old-root", m.Roots[0].Subject.String(), "new-root", next.Roots[0].Subject.String())
	}
	s.log.Info("reloaded plugged-in CA", "signer", next.Cert.Subject.String())
	s.set(next)
	return true, nil
}
