package issuer

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/sextant-mesh/sextant/ca/trust"
)

// IstiodSAN is the name istio-agent checks on the secure port (its
// ISTIOD_SAN / PILOT_SAN default).
const IstiodSAN = "istiod.istio-system.svc"

// DefaultServingTTL is the lifetime of the secure port's certificate.
const DefaultServingTTL = 24 * time.Hour

// ServingCert is the secure port's certificate: IstiodSAN plus configured
// DNS names and IPs, signed by this CA, renewed at half its life or when the
// CA material changes. Safe for concurrent use.
type ServingCert struct {
	iss  *Issuer
	sans leafSANs
	ttl  time.Duration
	log  *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	gen     uint64
	renewAt time.Time
	cfg     *tls.Config // per-generation handshake config
	cfgGen  uint64
}

// NewServingCert issues the first serving certificate now, so a broken CA
// fails at startup. Each extra SAN is an IP address or a DNS name; ttl <= 0
// is DefaultServingTTL (the workload maximum does not apply).
func (i *Issuer) NewServingCert(extraSANs []string, ttl time.Duration, log *slog.Logger) (*ServingCert, error) {
	if ttl <= 0 {
		ttl = DefaultServingTTL
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &ServingCert{iss: i, ttl: ttl, log: log, sans: leafSANs{dns: []string{IstiodSAN}}}
	for _, san := range extraSANs {
		switch ip := net.ParseIP(san); {
		case ip != nil:
			s.sans.ips = append(s.sans.ips, ip)
		case san == "" || len(san) > 253 || !validDNS(san):
			return nil, fmt.Errorf("server certificate SAN %q: neither an IP address nor a DNS name", san)
		case !slices.Contains(s.sans.dns, san):
			s.sans.dns = append(s.sans.dns, san)
		}
	}
	if _, err := s.current(); err != nil {
		return nil, err
	}
	return s, nil
}

func validDNS(s string) bool {
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '*') {
			return false
		}
	}
	return true
}

// DNSNames and IPs the certificate carries.
func (s *ServingCert) DNSNames() []string { return slices.Clone(s.sans.dns) }

// Leaf is the certificate in use now.
func (s *ServingCert) Leaf() (*x509.Certificate, error) {
	c, err := s.current()
	if err != nil {
		return nil, err
	}
	return c.Leaf, nil
}

func (s *ServingCert) current() (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.iss.opts.Now()
	m := s.iss.store.Current()
	if s.cert != nil && now.Before(s.renewAt) && s.gen == m.Generation {
		return s.cert, nil
	}
	c, err := s.issue(m)
	if err != nil {
		if s.cert != nil && now.Before(s.cert.Leaf.NotAfter) {
			s.log.Error("renewing the secure port's certificate failed; serving the current one", "err", err,
				"not-after", s.cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
			return s.cert, nil
		}
		return nil, err
	}
	s.cert, s.gen = c, m.Generation
	life := c.Leaf.NotAfter.Sub(c.Leaf.NotBefore)
	s.renewAt = c.Leaf.NotBefore.Add(life / 2)
	return c, nil
}

func (s *ServingCert) issue(m *trust.Material) (*tls.Certificate, error) {
	key, err := s.iss.opts.KeyType.Generate()
	if err != nil {
		return nil, err
	}
	leaf, err := s.iss.sign(m, key.Public(), s.sans, s.ttl, serverOnly)
	if err != nil {
		return nil, fmt.Errorf("secure port certificate: %w", err)
	}
	c := &tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}
	if !m.Cert.Equal(m.Roots[0]) {
		c.Certificate = append(c.Certificate, m.Cert.Raw)
	}
	for _, ic := range m.Intermediates {
		c.Certificate = append(c.Certificate, ic.Raw)
	}
	return c, nil
}

// GetCertificate is for tls.Config.GetCertificate.
func (s *ServingCert) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.current()
}

// TLSConfig is the secure port's TLS configuration: this certificate, TLS
// 1.2 or later, ALPN h2 (gRPC), and client certificates optional but
// verified against the current bundle when given (VerifyClientCertIfGiven),
// with the CA's own signing chain trusted so leaves sent without their chain
// verify too. It follows CA rotation without a restart.
func (s *ServingCert) TLSConfig() *tls.Config {
	base := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"h2"},
		GetCertificate: s.GetCertificate,
		ClientAuth:     tls.VerifyClientCertIfGiven,
	}
	out := base.Clone()
	out.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) { return s.handshakeConfig(base), nil }
	return out
}

func (s *ServingCert) handshakeConfig(base *tls.Config) *tls.Config {
	m := s.iss.store.Current()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg == nil || s.cfgGen != m.Generation {
		pool := x509.NewCertPool()
		for _, r := range m.Roots {
			pool.AddCert(r)
		}
		pool.AddCert(m.Cert)
		for _, c := range m.Intermediates {
			pool.AddCert(c)
		}
		c := base.Clone()
		c.ClientCAs = pool
		s.cfg, s.cfgGen = c, m.Generation
	}
	return s.cfg
}
