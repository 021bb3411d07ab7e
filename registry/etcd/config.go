package etcd

import (
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sextant-mesh/sextant/registry/etcd/etcdclient"
)

// DefaultRequestTimeout bounds each request of a listing.
const DefaultRequestTimeout = 10 * time.Second

// Config configures the etcd registry: how to reach etcd (the same
// settings as the etcdclient package) and how to list it.
type Config struct {
	etcdclient.Config
	// RequestTimeout bounds each Get of a listing; 0 means
	// DefaultRequestTimeout.
	RequestTimeout time.Duration
	// PageSize is the number of keys per Get of a listing; 0 means 2000.
	PageSize int64
}

// Client returns the connection part of the configuration.
func (c Config) Client() etcdclient.Config { return c.Config }

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
