package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/pflag"

	v1 "github.com/sextant-mesh/sextant/api/etcd/v1"
	"github.com/sextant-mesh/sextant/model"
	"github.com/sextant-mesh/sextant/registry/etcd"
	"github.com/sextant-mesh/sextant/registry/etcd/etcdclient"
)

// etcdPasswordEnv is read when --etcd-password is not given.
const etcdPasswordEnv = "SEXTANT_ETCD_PASSWORD"

// etcdOptions are the flags of the etcd registry.
type etcdOptions struct {
	endpoints []string
	prefix    string
	caFile    string
	certFile  string
	keyFile   string
	username  string
	password  string
}

// addEtcdFlags registers the etcd registry's flags. The registry is enabled
// by --etcd-endpoints.
func addEtcdFlags(f *pflag.FlagSet) *etcdOptions {
	o := &etcdOptions{}
	f.StringSliceVar(&o.endpoints, "etcd-endpoints", nil, "etcd registry: etcd endpoints host:port[,…] (enables the registry)")
	f.StringVar(&o.prefix, "etcd-prefix", v1.DefaultPrefix, "etcd registry: key prefix of the records")
	f.StringVar(&o.caFile, "etcd-ca-file", "", "etcd registry: CA certificates to verify etcd (turns TLS on)")
	f.StringVar(&o.certFile, "etcd-cert-file", "", "etcd registry: client certificate (turns TLS on)")
	f.StringVar(&o.keyFile, "etcd-key-file", "", "etcd registry: client key")
	f.StringVar(&o.username, "etcd-username", "", "etcd registry: user name")
	f.StringVar(&o.password, "etcd-password", "", "etcd registry: password (default $"+etcdPasswordEnv+" when --etcd-username is set)")
	return o
}

// registry returns the etcd registry's Run, writing to a new shard of agg,
// or enabled=false when no endpoint is configured. Configuration errors
// (unreadable TLS files, a bad prefix) are returned here; etcd being
// unreachable is not an error: the registry retries and its shard stays
// unsynced until the first load.
func (o *etcdOptions) registry(agg *model.Aggregator, log *slog.Logger) (run func(context.Context) error, setter trafficSetter, enabled bool, err error) {
	var endpoints []string
	for _, ep := range o.endpoints {
		if ep = strings.TrimSpace(ep); ep != "" {
			endpoints = append(endpoints, ep)
		}
	}
	if len(endpoints) == 0 {
		if o.caFile != "" || o.certFile != "" || o.keyFile != "" || o.username != "" {
			return nil, nil, false, fmt.Errorf("--etcd-* flags need --etcd-endpoints")
		}
		return nil, nil, false, nil
	}
	password := o.password
	if password == "" && o.username != "" {
		password = os.Getenv(etcdPasswordEnv)
	}
	cfg := etcd.Config{Config: etcdclient.Config{
		Endpoints: endpoints,
		Prefix:    o.prefix,
		CAFile:    o.caFile,
		CertFile:  o.certFile,
		KeyFile:   o.keyFile,
		Username:  o.username,
		Password:  password,
	}}
	if err := cfg.Validate(); err != nil {
		return nil, nil, false, fmt.Errorf("etcd registry (--etcd-*): %w", err)
	}
	reg := etcd.New(cfg, agg.NewShard(etcd.RegistryName), log)
	// `sextantctl traffic set` rewrites the instances' state label in etcd
	// (keeping their leases); the watch brings the change back.
	setter = func(ctx context.Context, namespace, host string, selector map[string]string, state string) error {
		c, err := etcdclient.Dial(cfg.Client())
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.SetTrafficState(ctx, namespace, host, selector, state)
		return err
	}
	return reg.Run, setter, true, nil
}
