package webhook

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/sextant-mesh/sextant/internal/filestamp"
)

// GetCertificateFunc supplies the serving certificate for a TLS handshake,
// as tls.Config.GetCertificate.
type GetCertificateFunc func(*tls.ClientHelloInfo) (*tls.Certificate, error)

// Server is the webhook's HTTPS listener.
type Server struct {
	lis   net.Listener
	srv   *http.Server
	log   *slog.Logger
	grace time.Duration
}

// shutdownGrace bounds how long Run waits for requests in flight once its
// context is done. The API server's webhook timeout is at most 30s and
// usually 10s.
const shutdownGrace = 10 * time.Second

// Listen listens on addr and returns a Server that serves h over HTTPS on
// Path and Path + "/" (everything else is 404) once Run is called.
// getCert provides the certificate for every handshake, so rotation needs
// no restart. A nil logger means slog.Default().
func Listen(addr string, h http.Handler, getCert GetCertificateFunc, log *slog.Logger) (*Server, error) {
	if getCert == nil {
		return nil, errors.New("webhook: a certificate source is required")
	}
	if log == nil {
		log = slog.Default()
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("webhook: listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle(Path, h)
	mux.Handle(Path+"/", h)
	srv := &http.Server{
		Handler: mux,
		TLSConfig: &tls.Config{
			MinVersion:     tls.VersionTLS12,
			GetCertificate: getCert,
		},
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    64 << 10,
		// TLS handshake failures (probes, clients that do not trust the
		// CA) are worth seeing but not as errors.
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelInfo),
	}
	return &Server{lis: lis, srv: srv, log: log, grace: shutdownGrace}, nil
}

// Addr returns the address the server listens on.
func (s *Server) Addr() net.Addr { return s.lis.Addr() }

// Run serves until ctx is done, then stops accepting connections and waits
// (up to a grace period) for requests in flight. It returns nil after a
// clean stop.
func (s *Server) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.ServeTLS(s.lis, "", "") }()
	s.log.Info("validating webhook serving", "addr", s.lis.Addr().String(), "path", Path)
	select {
	case err := <-errc:
		return fmt.Errorf("webhook server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.grace)
	defer cancel()
	if err := s.srv.Shutdown(sctx); err != nil {
		_ = s.srv.Close()
		return fmt.Errorf("webhook server shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("webhook server: %w", err)
	}
	return nil
}

// CertFiles serves a certificate and key from PEM files, re-reading them
// when either changes (as cert-manager or a Secret mount rotates them). A
// rotation that cannot be read keeps the previous pair in service.
type CertFiles struct {
	certFile, keyFile string
	log               *slog.Logger

	mu       sync.Mutex
	cert     *tls.Certificate
	certStat filestamp.Stamp
	keyStat  filestamp.Stamp
	// failed is the last pair of stamps that did not load, so a broken
	// rotation is logged once rather than on every handshake.
	failed [2]filestamp.Stamp
	// lastErr is the last reload error logged.
	lastErr string
}

// LoadCertFiles reads the pair once, so a bad flag fails at start-up.
func LoadCertFiles(certFile, keyFile string, log *slog.Logger) (*CertFiles, error) {
	if log == nil {
		log = slog.Default()
	}
	c := &CertFiles{certFile: certFile, keyFile: keyFile, log: log}
	if err := c.reload(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *CertFiles) reload() error {
	cs, err := filestamp.Of(c.certFile)
	if err != nil {
		return fmt.Errorf("webhook certificate: %w", err)
	}
	ks, err := filestamp.Of(c.keyFile)
	if err != nil {
		return fmt.Errorf("webhook key: %w", err)
	}
	if c.cert != nil && cs == c.certStat && ks == c.keyStat {
		return nil
	}
	if c.cert != nil && c.failed == [2]filestamp.Stamp{cs, ks} {
		return nil // already reported
	}
	pair, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		c.failed = [2]filestamp.Stamp{cs, ks}
		return fmt.Errorf("webhook certificate %s and key %s: %w", c.certFile, c.keyFile, err)
	}
	if c.cert != nil {
		c.log.Info("webhook certificate reloaded", "cert", c.certFile)
	}
	c.cert, c.certStat, c.keyStat = &pair, cs, ks
	return nil
}

// GetCertificate implements GetCertificateFunc.
func (c *CertFiles) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.reload(); err != nil {
		// Mid-rotation (one file written, not the other) or a vanished
		// mount: keep serving the pair that worked.
		if err.Error() != c.lastErr {
			c.lastErr = err.Error()
			c.log.Warn("cannot reload webhook certificate; keeping the previous one", "err", err)
		}
	} else {
		c.lastErr = ""
	}
	return c.cert, nil
}
