package xds

import (
	"bytes"
	"context"
	"fmt"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/sextant-mesh/sextant/discovery/proxy"
	"github.com/sextant-mesh/sextant/discovery/translate"
)

// Identity is the authenticated workload identity of a stream on the
// secure port.
type Identity struct {
	Namespace      string
	ServiceAccount string
	SpiffeID       string
}

// Authenticator authenticates a stream on the secure port (client
// certificate, JWT, TokenReview, …).
type Authenticator func(ctx context.Context) (Identity, error)

// SecretSource issues the SDS secrets of authenticated proxies: Istio's
// "default" (workload certificate and key) and "ROOTCA" (trust bundle).
type SecretSource interface {
	// Workload issues a certificate chain and private key for id, and says
	// when it should be replaced.
	Workload(ctx context.Context, id Identity) (chainPEM, keyPEM []byte, rotateAt time.Time, err error)
	// Roots returns the current trust bundle (during a root rotation, old
	// and new roots).
	Roots() []byte
	// WatchRoots signals (coalesced) when the bundle changes.
	WatchRoots() (<-chan struct{}, func())
}

// security is what SetSecurity installs.
type security struct {
	auth    Authenticator
	secrets SecretSource
}

func (s *Server) secrets() SecretSource {
	if sec := s.security.Load(); sec != nil {
		return sec.secrets
	}
	return nil
}

// secretState is what one connection was issued.
type secretState struct {
	workload *translate.Resource
	rotateAt time.Time
	rootsPEM []byte
	roots    *translate.Resource
}

// secureADS serves ADS on the secure port: every stream is authenticated
// first, and only authenticated streams may ask for secrets.
type secureADS struct{ s *Server }

// RegisterSecure adds ADS to the secure (TLS) gRPC server. Streams there are
// authenticated with Options.Authenticate; their node must belong to the
// authenticated namespace (and service account, when it names one).
func (s *Server) RegisterSecure(g *grpc.Server) {
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(g, &secureADS{s: s})
}

func (a *secureADS) StreamAggregatedResources(stream discoverygrpc.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	return a.s.streamSotw(stream, true)
}

func (a *secureADS) DeltaAggregatedResources(stream discoverygrpc.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	return a.s.streamDelta(stream, true)
}

// authenticate checks a secure-port stream and its node against each other.
func (s *Server) authenticate(ctx context.Context, p *proxy.Proxy) (*Identity, error) {
	sec := s.security.Load()
	if sec == nil || sec.auth == nil {
		return nil, status.Error(codes.Unauthenticated, "this server has no authenticator for the secure port")
	}
	id, err := sec.auth(ctx)
	if err != nil {
		s.metrics.RejectedStreams.WithLabelValues("unauthenticated").Inc()
		if st, ok := status.FromError(err); ok && st.Code() == codes.ResourceExhausted {
			return nil, err // the authenticator's rate limit: the client should back off
		}
		return nil, status.Errorf(codes.Unauthenticated, "authentication failed: %v", err)
	}
	if p.Namespace != id.Namespace || (p.ServiceAccount != "" && p.ServiceAccount != id.ServiceAccount) {
		s.metrics.RejectedStreams.WithLabelValues("identity_mismatch").Inc()
		return nil, status.Errorf(codes.PermissionDenied, "authenticated as %s/%s but the node claims namespace %q service account %q",
			id.Namespace, id.ServiceAccount, p.Namespace, p.ServiceAccount)
	}
	return &id, nil
}

// secretLocked returns the current SDS resource for name, issuing or
// rebuilding it when due. It needs an authenticated stream.
func (c *Connection) secretLocked(name string) *translate.Resource {
	src := c.s.secrets()
	if c.identity == nil || src == nil {
		return nil
	}
	switch name {
	case translate.SecretDefault:
		if c.secrets.workload != nil && time.Now().Before(c.secrets.rotateAt) {
			return c.secrets.workload
		}
		chain, key, rotateAt, err := src.Workload(context.Background(), *c.identity)
		if err != nil {
			c.s.log.Error("cannot issue workload certificate", "proxy", c.proxy.Name, "identity", c.identity.SpiffeID, "error", err)
			return c.secrets.workload // keep serving the old one until it can be renewed
		}
		res, err := translate.NewResource(translate.SecretType, name, &tlsv3.Secret{
			Name: name,
			Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
				CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: chain}},
				PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: key}},
			}},
		})
		if err != nil {
			c.s.log.Error("cannot encode workload secret", "proxy", c.proxy.Name, "error", err)
			return c.secrets.workload
		}
		c.secrets.workload, c.secrets.rotateAt = res, rotateAt
		return res
	case translate.SecretRootCA:
		roots := src.Roots()
		if c.secrets.roots != nil && bytes.Equal(roots, c.secrets.rootsPEM) {
			return c.secrets.roots
		}
		res, err := translate.NewResource(translate.SecretType, name, &tlsv3.Secret{
			Name: name,
			Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
				TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: roots}},
			}},
		})
		if err != nil {
			return c.secrets.roots
		}
		c.secrets.roots, c.secrets.rootsPEM = res, roots
		return res
	}
	return nil
}

// secretsDue reports whether the connection's secrets need a push: the
// workload certificate reached its rotation time or the roots changed.
func (c *Connection) secretsDue(now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.watches[translate.SecretType] == nil || c.identity == nil {
		return false
	}
	if c.secrets.workload != nil && !now.Before(c.secrets.rotateAt) {
		return true
	}
	if src := c.s.secrets(); c.secrets.roots != nil && src != nil && !bytes.Equal(src.Roots(), c.secrets.rootsPEM) {
		return true
	}
	return false
}

// runSecretRotation pushes renewed certificates before they expire and new
// trust bundles when the roots change, without the proxy asking.
func (s *Server) runSecretRotation(ctx context.Context) {
	t := time.NewTicker(s.opts.SecretCheckInterval)
	defer t.Stop()
	var rootsChanged <-chan struct{}
	var watched SecretSource
	defer func() {
		if s.stopRootsWatch != nil {
			s.stopRootsWatch()
		}
	}()
	for {
		// The secret source may be installed after Run started.
		if src := s.secrets(); src != nil && src != watched {
			if s.stopRootsWatch != nil {
				s.stopRootsWatch()
			}
			watched = src
			rootsChanged, s.stopRootsWatch = src.WatchRoots()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-rootsChanged:
		}
		if watched == nil {
			continue
		}
		now := time.Now()
		var due []*Connection
		for _, c := range s.Connections() {
			if c.secretsDue(now) {
				due = append(due, c)
			}
		}
		if len(due) == 0 {
			continue
		}
		rec := &PushRecord{ID: s.pushSeq.Add(1), Start: now, Queued: now, Reason: fmt.Sprintf("secret=%d", len(due)), Proxies: len(due)}
		rec.outstanding.Store(int64(len(due)) + 1)
		s.recordPush(rec)
		s.metrics.PushTriggers.WithLabelValues("secret").Add(float64(len(due)))
		for _, c := range due {
			c.enqueue(&PushRequest{Secrets: true, Start: now, Reason: rec.Reason, records: []*PushRecord{rec}})
		}
		rec.release(s)
	}
}

// redact returns a copy of a Secret without private key material, for
// debug output. Other messages are returned as they are.
func redact(m proto.Message) proto.Message {
	sec, ok := m.(*tlsv3.Secret)
	if !ok || sec.GetTlsCertificate() == nil {
		return m
	}
	out := proto.Clone(sec).(*tlsv3.Secret)
	out.GetTlsCertificate().PrivateKey = &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "[redacted]"}}
	return out
}
