// Package etcdclient lets an application take part in Sextant's etcd
// registry: Register writes the service definition (if it does not exist
// yet) and an instance bound to a lease, keeps the lease alive, and removes
// the instance on Close. A crashed process stops refreshing its lease and
// its instance disappears when the lease's TTL expires.
//
//	c, err := etcdclient.Dial(etcdclient.Config{Endpoints: []string{"127.0.0.1:2379"}})
//	...
//	reg, err := c.Register(ctx, etcdclient.Registration{
//		Service:  v1.Service{Host: "echo.example.com", Namespace: "default",
//			Ports: []v1.Port{{Name: "http", Number: 8080}}},
//		Instance: v1.Instance{Address: "10.0.0.7", Ports: map[string]uint32{"http": 18080}},
//		TTL:      10 * time.Second,
//	})
//	...
//	defer reg.Close(context.Background())
//
// Records follow the schema of package
// github.com/sextant-mesh/sextant/api/etcd/v1.
package etcdclient

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	v1 "github.com/sextant-mesh/sextant/api/etcd/v1"
)

// DefaultDialTimeout bounds authentication when connecting.
const DefaultDialTimeout = 5 * time.Second

// Config says how to reach etcd and where the records are.
type Config struct {
	// Endpoints are host:port (or http(s)://host:port) of etcd members.
	Endpoints []string
	// Prefix is the key prefix; empty means v1.DefaultPrefix.
	Prefix string
	// CAFile verifies the servers' certificates; CertFile and KeyFile are
	// the client certificate. Any of them turns TLS on.
	CAFile   string
	CertFile string
	KeyFile  string
	// Username and Password authenticate with etcd's auth, if enabled.
	Username string
	Password string
	// DialTimeout bounds authentication at connect time; 0 means
	// DefaultDialTimeout. Connecting itself never blocks: requests wait
	// until etcd is reachable or their context ends.
	DialTimeout time.Duration
}

// NormalizedPrefix returns the checked prefix without trailing slash.
func (c Config) NormalizedPrefix() (string, error) { return v1.NormalizePrefix(c.Prefix) }

// ClientConfig checks the configuration and returns the clientv3
// configuration for it, with TLS files loaded.
func (c Config) ClientConfig() (clientv3.Config, error) {
	if len(c.Endpoints) == 0 {
		return clientv3.Config{}, errors.New("no etcd endpoints")
	}
	for _, ep := range c.Endpoints {
		if strings.TrimSpace(ep) == "" {
			return clientv3.Config{}, errors.New("empty etcd endpoint")
		}
	}
	if _, err := c.NormalizedPrefix(); err != nil {
		return clientv3.Config{}, err
	}
	if (c.Username == "") != (c.Password == "") {
		return clientv3.Config{}, errors.New("etcd username and password must be given together")
	}
	cc := clientv3.Config{
		Endpoints:            c.Endpoints,
		DialTimeout:          c.DialTimeout,
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		Username:             c.Username,
		Password:             c.Password,
		// Errors are returned to the caller, who logs them with slog.
		Logger: zap.NewNop(),
	}
	if cc.DialTimeout == 0 {
		cc.DialTimeout = DefaultDialTimeout
	}
	tlsCfg, err := c.tlsConfig()
	if err != nil {
		return clientv3.Config{}, err
	}
	cc.TLS = tlsCfg
	return cc, nil
}

func (c Config) tlsConfig() (*tls.Config, error) {
	https := false
	for _, ep := range c.Endpoints {
		if strings.HasPrefix(ep, "https://") || strings.HasPrefix(ep, "unixs://") {
			https = true
		}
	}
	if c.CAFile == "" && c.CertFile == "" && c.KeyFile == "" && !https {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("etcd CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("etcd CA file %s: no PEM certificates found", c.CAFile)
		}
		cfg.RootCAs = pool
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return nil, errors.New("etcd client certificate and key files must be given together")
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("etcd client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
