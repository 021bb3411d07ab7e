package authn

import (
	"context"
	"crypto/x509"
	"fmt"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/sextant-mesh/sextant/ca/spiffe"
)

// Verifier supplies the options that verify a certificate against the CA's
// current roots; *issuer.Issuer implements it.
type Verifier interface {
	VerifyOptions(usage x509.ExtKeyUsage) x509.VerifyOptions
}

// ClientCert authenticates a TLS client certificate issued by this CA, the
// way workloads renew over mTLS: the chain must verify against the current
// roots for client authentication, and the leaf's SPIFFE URI SAN (in this
// trust domain) is the identity.
type ClientCert struct {
	trustDomain string
	verifier    Verifier
}

// NewClientCert returns a ClientCert authenticator.
func NewClientCert(trustDomain string, v Verifier) *ClientCert {
	return &ClientCert{trustDomain: trustDomain, verifier: v}
}

// Name implements Authenticator.
func (c *ClientCert) Name() string { return "client-cert" }

// Authenticate implements Authenticator.
func (c *ClientCert) Authenticate(ctx context.Context) (*Caller, error) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return nil, fmt.Errorf("%w: not a TLS connection", ErrNoCredentials)
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return nil, fmt.Errorf("%w: not a TLS connection", ErrNoCredentials)
	}
	certs := info.State.PeerCertificates
	if len(certs) == 0 {
		return nil, fmt.Errorf("%w: no client certificate", ErrNoCredentials)
	}
	id, err := c.Verify(certs)
	if err != nil {
		return nil, err
	}
	return &Caller{Identity: id, Method: c.Name()}, nil
}

// Verify checks a presented chain (leaf first) and returns its identity.
func (c *ClientCert) Verify(certs []*x509.Certificate) (spiffe.ID, error) {
	opts := c.verifier.VerifyOptions(x509.ExtKeyUsageClientAuth)
	if len(certs) > 1 {
		opts.Intermediates = opts.Intermediates.Clone()
		for _, ic := range certs[1:] {
			opts.Intermediates.AddCert(ic)
		}
	}
	if _, err := certs[0].Verify(opts); err != nil {
		return spiffe.ID{}, fmt.Errorf("client certificate does not verify against this CA's roots: %v", err)
	}
	id, err := spiffe.FromCertificate(certs[0])
	if err != nil {
		return spiffe.ID{}, fmt.Errorf("%w: client %v", ErrNoIdentity, err)
	}
	if id.TrustDomain != c.trustDomain {
		return spiffe.ID{}, fmt.Errorf("client certificate identity %s is not in trust domain %q", id, c.trustDomain)
	}
	return id, nil
}
