package issuer

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"

	"go.step.sm/crypto/pemutil"
	"go.step.sm/crypto/x509util"

	"github.com/sextant-mesh/sextant/ca/spiffe"
	"github.com/sextant-mesh/sextant/ca/trust"
)

// Defaults, as Istio's DEFAULT_WORKLOAD_CERT_TTL; the maximum is Sextant's
// --max-workload-cert-ttl default (Istio's MAX_WORKLOAD_CERT_TTL is 90d).
const (
	DefaultTTL = 24 * time.Hour
	MaxTTL     = 24 * time.Hour
	// MaxCSRSize bounds the CSR accepted by Sign.
	MaxCSRSize = 64 << 10
	// backdate is subtracted from NotBefore for clock skew between the CA
	// and the workloads.
	backdate = time.Minute
)

// Errors a caller can map to a status: the request, not the CA, is wrong.
var (
	// ErrInvalidCSR: the CSR does not parse, its signature does not verify,
	// or its key is weak or of an unsupported type.
	ErrInvalidCSR = errors.New("invalid CSR")
	// ErrTTL: the requested lifetime is above the maximum.
	ErrTTL = errors.New("invalid TTL")
)

// Options configure an Issuer. The zero value gives Istio's defaults.
type Options struct {
	// TrustDomain of the identities this CA signs. Default cluster.local.
	TrustDomain string
	// DefaultTTL is used when a request asks for <= 0. Default 24h, and
	// never above MaxTTL.
	DefaultTTL time.Duration
	// MaxTTL is the longest lifetime granted; longer requests fail with
	// ErrTTL. Default 24h.
	MaxTTL time.Duration
	// KeyType is the key Issue and ServingCert generate. Default ECDSA P-256.
	KeyType trust.KeyType
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Issuer signs with a Store's current material. Safe for concurrent use.
type Issuer struct {
	store *trust.Store
	opts  Options
}

// New returns an Issuer signing with store.
func New(store *trust.Store, o Options) (*Issuer, error) {
	if o.TrustDomain == "" {
		o.TrustDomain = trust.DefaultTrustDomain
	}
	if err := spiffe.ValidateTrustDomain(o.TrustDomain); err != nil {
		return nil, err
	}
	if o.MaxTTL <= 0 {
		o.MaxTTL = MaxTTL
	}
	if o.DefaultTTL <= 0 {
		o.DefaultTTL = DefaultTTL
	}
	o.DefaultTTL = min(o.DefaultTTL, o.MaxTTL)
	if o.KeyType == "" {
		o.KeyType = trust.ECDSAP256
	}
	if _, err := trust.ParseKeyType(string(o.KeyType)); err != nil {
		return nil, err
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Issuer{store: store, opts: o}, nil
}

// TrustDomain is the trust domain of the identities this CA signs.
func (i *Issuer) TrustDomain() string { return i.opts.TrustDomain }

// MaxTTL is the longest lifetime granted.
func (i *Issuer) MaxTTL() time.Duration { return i.opts.MaxTTL }

// Store is the root of trust signed with.
func (i *Issuer) Store() *trust.Store { return i.store }

// Roots is the current trust bundle (PEM, current root first), for SDS
// ROOTCA and the istio-ca-root-cert ConfigMap. Do not modify it.
func (i *Issuer) Roots() []byte { return i.store.Current().RootsPEM() }

// WatchRoots signals (coalesced) every change of the CA material, including
// the root bundle. Call cancel to stop.
func (i *Issuer) WatchRoots() (ch <-chan struct{}, cancel func()) { return i.store.Watch() }

// VerifyOptions verify a certificate this CA issued against the current
// bundle; the CA's own signing chain is supplied as intermediates, so
// leaves presented without their chain verify too.
func (i *Issuer) VerifyOptions(usage x509.ExtKeyUsage) x509.VerifyOptions {
	m := i.store.Current()
	return x509.VerifyOptions{Roots: m.RootPool(), Intermediates: m.IntermediatePool(),
		CurrentTime: i.opts.Now(), KeyUsages: []x509.ExtKeyUsage{usage}}
}

// TTL resolves a requested lifetime: <= 0 is the default; above MaxTTL is
// ErrTTL.
func (i *Issuer) TTL(requested time.Duration) (time.Duration, error) {
	if requested <= 0 {
		return i.opts.DefaultTTL, nil
	}
	if requested > i.opts.MaxTTL {
		return 0, fmt.Errorf("%w: requested TTL %s is greater than the max allowed TTL %s", ErrTTL, requested, i.opts.MaxTTL)
	}
	return requested, nil
}

// precheck is what Sign and Issue check first: the caller is still
// waiting, the identity is in the trust domain, and the TTL is allowed
// (returned with the default applied).
func (i *Issuer) precheck(ctx context.Context, id spiffe.ID, ttl time.Duration) (time.Duration, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := i.checkID(id); err != nil {
		return 0, err
	}
	return i.TTL(ttl)
}

// Sign signs a CSR (PEM or DER) for id and returns the chain as Istio's CA
// API does: the leaf first, then Sextant's intermediates (plugged-in CA),
// one PEM certificate per element, and the root bundle last (one element,
// current root first; several certificates while an old root overlaps).
// Every element ends in "\n"; there are at least two.
func (i *Issuer) Sign(ctx context.Context, csr []byte, id spiffe.ID, ttl time.Duration) ([]string, error) {
	ttl, err := i.precheck(ctx, id, ttl)
	if err != nil {
		return nil, err
	}
	req, err := ParseCSR(csr)
	if err != nil {
		return nil, err
	}
	m := i.store.Current()
	leaf, err := i.sign(m, req.PublicKey, leafSANs{uris: []*url.URL{id.URL()}}, ttl, clientAndServer)
	if err != nil {
		return nil, err
	}
	return chainOf(leaf, m), nil
}

func chainOf(leaf *x509.Certificate, m *trust.Material) []string {
	out := make([]string, 0, len(m.ChainPEM())+2)
	out = append(out, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw})))
	out = append(out, m.ChainPEM()...)
	return append(out, string(m.RootsPEM()))
}

func (i *Issuer) checkID(id spiffe.ID) error {
	if err := id.Validate(); err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	if id.TrustDomain != i.opts.TrustDomain {
		return fmt.Errorf("identity %s is not in this CA's trust domain %q", id, i.opts.TrustDomain)
	}
	return nil
}

// ParseCSR parses a PEM or DER certificate request, checks its signature
// and refuses weak or unsupported keys. Errors wrap ErrInvalidCSR.
func ParseCSR(b []byte) (*x509.CertificateRequest, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrInvalidCSR)
	}
	if len(b) > MaxCSRSize {
		return nil, fmt.Errorf("%w: %d bytes, larger than %d", ErrInvalidCSR, len(b), MaxCSRSize)
	}
	req, err := pemutil.ParseCertificateRequest(b)
	if err != nil {
		return nil, fmt.Errorf("%w: not a PEM or DER certificate request: %v", ErrInvalidCSR, err)
	}
	if err := req.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: signature does not verify: %v", ErrInvalidCSR, err)
	}
	if err := CheckKey(req.PublicKey); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidCSR, err)
	}
	return req, nil
}

// CheckKey accepts RSA keys of 2048 to 8192 bits and ECDSA keys on P-256 or
// P-384, the keys istio-agent generates; everything else is refused.
func CheckKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < 2048 || n > 8192 {
			return fmt.Errorf("weak or unsupported key: RSA %d bits, want 2048 to 8192", n)
		}
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return fmt.Errorf("unsupported key: ECDSA curve %s, want P-256 or P-384", k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
		return errors.New("unsupported key: Ed25519, want ECDSA P-256/P-384 or RSA >= 2048")
	default:
		return fmt.Errorf("unsupported key type %T, want ECDSA P-256/P-384 or RSA >= 2048", pub)
	}
	return nil
}

type usage int

const (
	clientAndServer usage = iota // workloads: both ends of mTLS
	serverOnly
)

type leafSANs struct {
	uris []*url.URL
	dns  []string
	ips  []net.IP
}

// sign builds a leaf with the fields of step's DefaultLeafTemplate (empty
// subject, so the SAN extension is critical; keyEncipherment for RSA keys)
// and signs it with m.
func (i *Issuer) sign(m *trust.Material, pub crypto.PublicKey, sans leafSANs, ttl time.Duration, u usage) (*x509.Certificate, error) {
	now := i.opts.Now()
	notAfter := now.Add(ttl)
	if chainEnd := m.ChainNotAfter(); notAfter.After(chainEnd) {
		if !chainEnd.After(now) {
			return nil, fmt.Errorf("the CA's signing chain expired at %s", chainEnd.UTC().Format(time.RFC3339))
		}
		notAfter = chainEnd
	}
	ku := x509.KeyUsageDigitalSignature
	if _, ok := pub.(*rsa.PublicKey); ok {
		ku |= x509.KeyUsageKeyEncipherment
	}
	eku := x509util.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	if u == serverOnly {
		eku = x509util.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	c := &x509util.Certificate{
		URIs:             sans.uris,
		DNSNames:         sans.dns,
		IPAddresses:      sans.ips,
		NotBefore:        now.Add(-backdate),
		NotAfter:         notAfter,
		KeyUsage:         x509util.KeyUsage(ku),
		ExtKeyUsage:      eku,
		BasicConstraints: &x509util.BasicConstraints{IsCA: false},
		PublicKey:        pub,
	}
	leaf, err := x509util.CreateCertificate(c.GetCertificate(), m.Cert, pub, m.Key)
	if err != nil {
		return nil, fmt.Errorf("sign certificate: %w", err)
	}
	return leaf, nil
}
