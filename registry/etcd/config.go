package etcd

import (
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sextant-mesh/sextant/registry/etcd/etcdclient"
)

// DefaultRequestTimeout bounds each request of a listing.
const DefaultRequestTimeout = 10 * time.Second

// Config configures the etcd registry.
type Config struct {
	// Endpoints are host:port (or http(s)://host:port) of etcd members.
	Endpoints []string
	// Prefix is the key prefix; empty means /sextant.
	Prefix string
	// CAFile verifies the servers' certificates; CertFile and KeyFile are
	// the client certificate. Any of them turns TLS on.
	CAFile   string
	CertFile string
	KeyFile  string
	// Username and Password authenticate with etcd's auth, if enabled.
	Username string
	Password string
	// DialTimeout bounds authentication at connect time; 0 means 5s.
	DialTimeout time.Duration
	// RequestTimeout bounds each Get of a listing; 0 means
	// DefaultRequestTimeout.
	RequestTimeout time.Duration
	// PageSize is the number of keys per Get of a listing; 0 means 2000.
	PageSize int64
}

// Client returns the connection part of the configuration.
func (c Config) Client() etcdclient.Config {
	return etcdclient.Config{
		Endpoints:   c.Endpoints,
		Prefix:      c.Prefix,
		CAFile:      c.CAFile,
		CertFile:    c.CertFile,
		KeyFile:     c.KeyFile,
		Username:    c.Username,
		Password:    c.Password,
		DialTimeout: c.DialTimeout,
	}
}

// Validate checks the configuration: endpoints, prefix, credentials and
// that the TLS files load.
func (c Config) Validate() error {
	_, err := c.Client().ClientConfig()
	return err
}

func (c Config) clientConfig() (clientv3.Config, string, error) {
	cc, err := c.Client().ClientConfig()
	if err != nil {
		return cc, "", err
	}
	prefix, err := c.Client().NormalizedPrefix()
	return cc, prefix, err
}
