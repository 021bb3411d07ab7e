package catest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.step.sm/crypto/jose"
	"go.step.sm/crypto/pemutil"
	"go.step.sm/crypto/x509util"

	"github.com/sextant-mesh/sextant/ca/spiffe"
)

// Key kinds for NewKey.
const (
	EC256   = "ec256"
	EC384   = "ec384"
	EC521   = "ec521"
	RSA1024 = "rsa1024"
	RSA2048 = "rsa2048"
)

// NewKey generates a key of kind (EC256, EC384, EC521, RSA1024, RSA2048).
// Keys come from the standard library: step's keyutil refuses weak ones.
func NewKey(t testing.TB, kind string) crypto.Signer {
	t.Helper()
	var (
		k   crypto.Signer
		err error
	)
	switch kind {
	case EC256:
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case EC384:
		k, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case EC521:
		k, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case RSA1024:
		k, err = rsa.GenerateKey(rand.Reader, 1024)
	case RSA2048:
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		t.Fatalf("unknown key kind %q", kind)
	}
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// CSR returns a PEM CSR signed by key, asking for sans (DNS names, IPs,
// URIs), with common name cn.
func CSR(t testing.TB, key crypto.Signer, cn string, sans ...string) []byte {
	t.Helper()
	req, err := x509util.CreateCertificateRequest(cn, sans, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: req.Raw})
}

// KeyPEM encodes a private key.
func KeyPEM(t testing.TB, key crypto.Signer) []byte {
	t.Helper()
	b, err := pemutil.Serialize(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(b)
}

// ParseChain parses each element of a CA response; an element may hold
// several certificates (the root bundle).
func ParseChain(t testing.TB, chain []string) [][]*x509.Certificate {
	t.Helper()
	out := make([][]*x509.Certificate, len(chain))
	for i, el := range chain {
		if !strings.HasSuffix(el, "\n") {
			t.Errorf("chain element %d does not end in a newline", i)
		}
		certs, err := pemutil.ParseCertificateBundle([]byte(el))
		if err != nil {
			t.Fatalf("chain element %d: %v", i, err)
		}
		out[i] = certs
	}
	return out
}

// VerifyChain verifies a CA response (leaf, intermediates…, root bundle)
// against rootsPEM and returns the leaf and its SPIFFE identity.
func VerifyChain(t testing.TB, chain []string, rootsPEM []byte) (*x509.Certificate, spiffe.ID) {
	t.Helper()
	if len(chain) < 2 {
		t.Fatalf("chain has %d elements, want at least 2", len(chain))
	}
	parsed := ParseChain(t, chain)
	leaf := parsed[0][0]
	inter := x509.NewCertPool()
	for _, el := range parsed[1 : len(parsed)-1] {
		for _, c := range el {
			inter.AddCert(c)
		}
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(rootsPEM) {
		t.Fatal("no roots")
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Fatalf("leaf does not verify: %v", err)
	}
	id, err := spiffe.FromCertificate(leaf)
	if err != nil {
		t.Fatal(err)
	}
	return leaf, id
}

// JWTIssuer signs tokens and publishes its JWKS in a file.
type JWTIssuer struct {
	Issuer   string
	JWKSFile string
	// Kid goes into the header of the tokens signed; tests may change it.
	Kid string
	key *ecdsa.PrivateKey
}

// NewJWTIssuer makes an issuer with an ES256 key and writes its JWKS into
// dir.
func NewJWTIssuer(t testing.TB, dir, issuer string) *JWTIssuer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	j := &JWTIssuer{Issuer: issuer, key: k, Kid: "kid-" + filepath.Base(t.TempDir())}
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.PublicKey, KeyID: j.Kid, Algorithm: "ES256", Use: "sig"}}}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	j.JWKSFile = filepath.Join(dir, strings.NewReplacer("/", "_", ":", "_").Replace(issuer)+".jwks.json")
	if err := os.WriteFile(j.JWKSFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return j
}

// Flag is the --jwt-issuer value for this issuer.
func (j *JWTIssuer) Flag() string { return j.Issuer + "=" + j.JWKSFile }

// Claims of a token.
type Claims struct {
	Issuer    string // default: the issuer's
	Subject   string
	Audience  []string // default [istio-ca]
	Expiry    time.Time
	NotBefore time.Time
	IssuedAt  time.Time
	// Namespace and ServiceAccount set the kubernetes.io claims when
	// non-empty.
	Namespace      string
	ServiceAccount string
	NoExpiry       bool
}

// KubeToken is a projected service-account token for ns/sa, audience
// istio-ca, valid for an hour.
func (j *JWTIssuer) KubeToken(t testing.TB, ns, sa string) string {
	return j.Token(t, Claims{Subject: "system:serviceaccount:" + ns + ":" + sa, Namespace: ns, ServiceAccount: sa})
}

// Token signs claims.
func (j *JWTIssuer) Token(t testing.TB, c Claims) string {
	t.Helper()
	now := time.Now()
	if c.Issuer == "" {
		c.Issuer = j.Issuer
	}
	if c.Audience == nil {
		c.Audience = []string{"istio-ca"}
	}
	if c.Expiry.IsZero() {
		c.Expiry = now.Add(time.Hour)
	}
	if c.IssuedAt.IsZero() {
		c.IssuedAt = now
	}
	std := jose.Claims{Issuer: c.Issuer, Subject: c.Subject, Audience: c.Audience, IssuedAt: jose.NewNumericDate(c.IssuedAt)}
	if !c.NoExpiry {
		std.Expiry = jose.NewNumericDate(c.Expiry)
	}
	if !c.NotBefore.IsZero() {
		std.NotBefore = jose.NewNumericDate(c.NotBefore)
	}
	extra := map[string]any{}
	if c.Namespace != "" {
		extra["kubernetes.io"] = map[string]any{"namespace": c.Namespace,
			"serviceaccount": map[string]any{"name": c.ServiceAccount, "uid": "00000000-0000-0000-0000-000000000000"}}
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: j.key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", j.Kid))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jose.Signed(sig).Claims(std).Claims(extra).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// BearerCreds sends "authorization: Bearer <token>" on every RPC over TLS.
type BearerCreds string

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (b BearerCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials.
func (BearerCreds) RequireTransportSecurity() bool { return true }

// PluggedCA is a root and an intermediate written in Istio's cacerts layout.
type PluggedCA struct {
	Root, Intermediate       *x509.Certificate
	RootKey, IntermediateKey crypto.Signer
}

// PluggedOptions tweak WritePlugged.
type PluggedOptions struct {
	// IntermediateNotAfter overrides the intermediate's expiry.
	IntermediateNotAfter time.Time
	// NotCA makes the "intermediate" a leaf certificate.
	NotCA bool
}

// WritePlugged makes a root and an intermediate and writes ca-cert.pem
// (the intermediate), ca-key.pem, cert-chain.pem (intermediate + root, as
// Istio's docs build it) and root-cert.pem into dir.
func WritePlugged(t testing.TB, dir string, o PluggedOptions) *PluggedCA {
	t.Helper()
	now := time.Now()
	p := &PluggedCA{RootKey: NewKey(t, EC256), IntermediateKey: NewKey(t, EC256)}
	rootTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Test Root", Organization: []string{"test"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	p.Root = mustCert(t, rootTmpl, rootTmpl, p.RootKey.Public(), p.RootKey)
	notAfter := now.Add(12 * time.Hour)
	if !o.IntermediateNotAfter.IsZero() {
		notAfter = o.IntermediateNotAfter
	}
	interTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "Test Intermediate", Organization: []string{"test"}},
		NotBefore: now.Add(-2 * time.Hour), NotAfter: notAfter, IsCA: !o.NotCA, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature}
	if o.NotCA {
		interTmpl.KeyUsage = x509.KeyUsageDigitalSignature
	}
	p.Intermediate = mustCert(t, interTmpl, p.Root, p.IntermediateKey.Public(), p.RootKey)
	write(t, filepath.Join(dir, "ca-cert.pem"), CertPEM(p.Intermediate))
	write(t, filepath.Join(dir, "ca-key.pem"), KeyPEM(t, p.IntermediateKey))
	write(t, filepath.Join(dir, "cert-chain.pem"), append(CertPEM(p.Intermediate), CertPEM(p.Root)...))
	write(t, filepath.Join(dir, "root-cert.pem"), CertPEM(p.Root))
	return p
}

func mustCert(t testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// CertPEM encodes a certificate.
func CertPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func write(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
