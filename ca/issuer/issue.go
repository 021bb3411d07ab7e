package issuer

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/url"
	"time"

	"go.step.sm/crypto/pemutil"

	"github.com/sextant-mesh/sextant/ca/spiffe"
)

// Issued is a key and certificate made by Issue.
type Issued struct {
	Identity spiffe.ID
	// CertChainPEM is the leaf then the CA's intermediates (none for a
	// self-signed CA): an SDS tls_certificate chain.
	CertChainPEM []byte
	// KeyPEM is the leaf's private key, PKCS#8. Never log it.
	KeyPEM []byte
	// RootsPEM is the trust bundle at issuance (SDS ROOTCA).
	RootsPEM []byte
	Leaf     *x509.Certificate
	// RootGeneration is the trust.Material generation signed with; when
	// the store's generation moves on, the bundle may have changed.
	RootGeneration uint64
}

// NotAfter is when the certificate expires.
func (c *Issued) NotAfter() time.Time { return c.Leaf.NotAfter }

// RotateAt is when to replace the certificate, Istio-agent style: when
// graceRatio of its lifetime is left (istio-agent's
// SECRET_GRACE_PERIOD_RATIO is 0.5).
func (c *Issued) RotateAt(graceRatio float64) time.Time {
	life := c.Leaf.NotAfter.Sub(c.Leaf.NotBefore)
	return c.Leaf.NotAfter.Add(-time.Duration(float64(life) * graceRatio))
}

// TLSCertificate is the chain and key as a crypto/tls certificate.
func (c *Issued) TLSCertificate() (tls.Certificate, error) {
	return tls.X509KeyPair(c.CertChainPEM, c.KeyPEM)
}

// CertValidity is the share of a certificate's lifetime left at now: 1
// when just issued, 0 at (or after) expiry. Renew when it drops below the
// grace ratio.
func CertValidity(cert *x509.Certificate, now time.Time) float64 {
	life := cert.NotAfter.Sub(cert.NotBefore)
	if life <= 0 || !now.Before(cert.NotAfter) {
		return 0
	}
	left := cert.NotAfter.Sub(now)
	if left >= life {
		return 1
	}
	return float64(left) / float64(life)
}

// Issue generates a key (Options.KeyType) and a certificate for id, as if
// the workload had sent a CSR: the SDS "default" secret without a CSR round
// trip. The TTL rules are Sign's.
func (i *Issuer) Issue(ctx context.Context, id spiffe.ID, ttl time.Duration) (*Issued, error) {
	ttl, err := i.precheck(ctx, id, ttl)
	if err != nil {
		return nil, err
	}
	key, err := i.opts.KeyType.Generate()
	if err != nil {
		return nil, err
	}
	m := i.store.Current()
	leaf, err := i.sign(m, key.Public(), leafSANs{uris: []*url.URL{id.URL()}}, ttl, clientAndServer)
	if err != nil {
		return nil, err
	}
	block, err := pemutil.Serialize(key, pemutil.WithPKCS8(true))
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	var chain bytes.Buffer
	_ = pem.Encode(&chain, &pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw})
	for _, c := range m.ChainPEM() {
		chain.WriteString(c)
	}
	return &Issued{
		Identity:       id,
		CertChainPEM:   chain.Bytes(),
		KeyPEM:         pem.EncodeToMemory(block),
		RootsPEM:       m.RootsPEM(),
		Leaf:           leaf,
		RootGeneration: m.Generation,
	}, nil
}
