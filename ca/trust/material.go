package trust

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"time"
)

// Mode says where the signing material comes from.
type Mode int

// Modes.
const (
	SelfSigned Mode = iota + 1
	PluggedIn
)

func (m Mode) String() string {
	switch m {
	case SelfSigned:
		return "self-signed"
	case PluggedIn:
		return "plugged-in"
	}
	return "unknown"
}

// Material is one immutable snapshot of the CA's key material. The Store
// replaces it as a whole on rotation or reload; never modify one.
type Material struct {
	Mode Mode
	// Cert signs workload certificates; Key is its private key.
	Cert *x509.Certificate
	Key  crypto.Signer
	// Intermediates are the certificates between Cert and the root, nearest
	// to Cert first; neither Cert nor any root is among them.
	Intermediates []*x509.Certificate
	// Roots is the trust bundle. Roots[0] is the root Cert chains to (Cert
	// itself for a self-signed CA); the rest are older or extra roots.
	Roots []*x509.Certificate
	// Generation increases with every change the Store makes.
	Generation uint64

	chainPEM      []string
	rootsPEM      []byte
	rootPool      *x509.CertPool
	intermediates *x509.CertPool
}

func newMaterial(mode Mode, cert *x509.Certificate, key crypto.Signer, intermediates, roots []*x509.Certificate, gen uint64) *Material {
	m := &Material{Mode: mode, Cert: cert, Key: key, Intermediates: intermediates, Roots: roots, Generation: gen,
		rootPool: x509.NewCertPool(), intermediates: x509.NewCertPool()}
	if !cert.Equal(roots[0]) {
		m.chainPEM = append(m.chainPEM, encodeCert(cert))
		m.intermediates.AddCert(cert)
	}
	for _, c := range intermediates {
		m.chainPEM = append(m.chainPEM, encodeCert(c))
		m.intermediates.AddCert(c)
	}
	var b bytes.Buffer
	for _, r := range roots {
		b.WriteString(encodeCert(r))
		m.rootPool.AddCert(r)
	}
	m.rootsPEM = b.Bytes()
	return m
}

func encodeCert(c *x509.Certificate) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
}

// ChainPEM is what goes between a leaf and the root bundle in a response:
// Cert (unless it is itself the root) and the intermediates, one PEM
// certificate per element, each ending in "\n". Empty for a self-signed CA.
// The slice is shared: do not modify it.
func (m *Material) ChainPEM() []string { return m.chainPEM }

// RootsPEM is the trust bundle, PEM, current root first. Shared: do not
// modify it.
func (m *Material) RootsPEM() []byte { return m.rootsPEM }

// RootPool holds Roots. Shared: do not modify it.
func (m *Material) RootPool() *x509.CertPool { return m.rootPool }

// IntermediatePool holds Cert (unless it is a root) and Intermediates, for
// verifying leaves that arrive without their chain. Shared: do not modify.
func (m *Material) IntermediatePool() *x509.CertPool { return m.intermediates }

// RootNotAfter is when the current root (Roots[0]) expires.
func (m *Material) RootNotAfter() time.Time { return m.Roots[0].NotAfter }

// ChainNotAfter is when the signing chain stops being usable: the earliest
// expiry of Cert and its intermediates.
func (m *Material) ChainNotAfter() time.Time {
	t := m.Cert.NotAfter
	for _, c := range m.Intermediates {
		if c.NotAfter.Before(t) {
			t = c.NotAfter
		}
	}
	return t
}
