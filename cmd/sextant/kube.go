package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"

	"github.com/sextant-mesh/sextant/ca/authn"
	cakube "github.com/sextant-mesh/sextant/ca/kube"
	"github.com/sextant-mesh/sextant/ca/trust"
	"github.com/sextant-mesh/sextant/model"
	"github.com/sextant-mesh/sextant/registry/kube"
)

// kubeOptions are the flags of the Kubernetes registry and of the CA's
// in-cluster pieces.
type kubeOptions struct {
	kubeconfig string
	mode       string // auto, on, off
	clusterID  string
	selectors  []string
	systemNS   string
	resync     time.Duration
	caSecrets  bool

	once    sync.Once
	clients *kube.Clients
	err     error
	reg     *kube.Registry
}

// addKubeFlags registers the Kubernetes flags. The registry is on when a
// cluster is configured: --kubeconfig, $KUBECONFIG, or running in a Pod.
func addKubeFlags(f *pflag.FlagSet) *kubeOptions {
	o := &kubeOptions{}
	ns := os.Getenv("POD_NAMESPACE")
	if ns == "" {
		ns = kube.DefaultSystemNamespace
	}
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "Kubernetes registry: kubeconfig file (default $KUBECONFIG, or the in-cluster config in a Pod)")
	f.StringVar(&o.mode, "kube-registry", "auto", "Kubernetes registry: auto (on when a cluster is configured), on (required) or off")
	f.StringVar(&o.clusterID, "kube-cluster-id", kube.DefaultClusterID, "Kubernetes registry: this cluster's name (Istio's CLUSTER_ID)")
	f.StringArrayVar(&o.selectors, "kube-discovery-selector", nil,
		"Kubernetes registry: label selector of the namespaces the mesh covers, e.g. 'istio-discovery=enabled' (repeatable, ORed; default: the mesh config's discoverySelectors, else all)")
	f.StringVar(&o.systemNS, "kube-system-namespace", ns, "Kubernetes: namespace of the mesh ConfigMap, CA Secrets and leases (default $POD_NAMESPACE or istio-system)")
	f.DurationVar(&o.resync, "kube-resync", 0, "Kubernetes registry: informer resync period (0: none)")
	f.BoolVar(&o.caSecrets, "kube-ca", true,
		"with the Kubernetes registry and --ca-dir: keep the CA root in Secrets (cacerts / istio-ca-secret), authenticate CSRs with TokenReview, publish ConfigMap istio-ca-root-cert")
	return o
}

// enabled reports whether a cluster is to be used.
func (o *kubeOptions) enabled() (bool, error) {
	switch o.mode {
	case "off":
		if o.kubeconfig != "" {
			return false, errors.New("--kubeconfig given with --kube-registry=off")
		}
		return false, nil
	case "auto", "on", "":
	default:
		return false, fmt.Errorf("--kube-registry %q: want auto, on or off", o.mode)
	}
	if o.kubeconfig != "" || os.Getenv("KUBECONFIG") != "" || kube.InCluster() {
		return true, nil
	}
	if o.mode == "on" {
		return false, fmt.Errorf("--kube-registry=on: %w", kube.ErrNoCluster)
	}
	return false, nil
}

// client returns the API clients, built once.
func (o *kubeOptions) client() (*kube.Clients, error) {
	o.once.Do(func() {
		cfg, err := kube.RESTConfig(o.kubeconfig)
		if err != nil {
			o.err = fmt.Errorf("--kubeconfig: %w", err)
			return
		}
		o.clients, o.err = kube.NewClients(cfg)
	})
	return o.clients, o.err
}

// registry returns the Kubernetes registry's Run and its traffic-state
// setter (for `sextantctl traffic set`), writing to a new shard of agg, or
// enabled=false when no cluster is configured. An unreachable API server is
// not an error: the informers retry and the shard stays unsynced (so
// /ready fails) until the initial lists complete.
func (o *kubeOptions) registry(agg *model.Aggregator, log *slog.Logger) (run func(context.Context) error, setter func(ctx context.Context, namespace, host string, selector map[string]string, state string) error, enabled bool, err error) {
	on, err := o.enabled()
	if err != nil || !on {
		return nil, nil, false, err
	}
	sels, err := kube.ParseSelectors(o.selectors)
	if err != nil {
		return nil, nil, false, fmt.Errorf("--kube-discovery-selector: %w", err)
	}
	if o.resync < 0 {
		return nil, nil, false, fmt.Errorf("--kube-resync %s: must not be negative", o.resync)
	}
	c, err := o.client()
	if err != nil {
		return nil, nil, false, err
	}
	// client-go logs through klog; send it to our logger.
	klog.SetSlogLogger(log.With("component", "client-go"))
	o.reg = kube.New(c.Kube, c.Istio, agg.NewShard(kube.RegistryName), kube.Options{
		ClusterID:          o.clusterID,
		DiscoverySelectors: sels,
		SystemNamespace:    o.systemNS,
		Resync:             o.resync,
		Logger:             log,
	})
	return o.reg.Run, o.reg.SetTrafficState, true, nil
}

// meshConfig overlays the cluster's mesh ConfigMap (istio in the system
// namespace, key mesh: trustDomain, rootNamespace, outboundTrafficPolicy,
// enableAutoMtls, connectTimeout) on base. Without a cluster, or when the
// ConfigMap does not exist, base is returned. Changes after start-up are
// logged by the registry and need a restart (discoverySelectors apply live).
func (o *kubeOptions) meshConfig(ctx context.Context, base model.MeshConfig, log *slog.Logger) (model.MeshConfig, error) {
	on, err := o.enabled()
	if err != nil || !on {
		return base, err
	}
	c, err := o.client()
	if err != nil {
		return base, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	m, err := kube.LoadMeshConfig(ctx, c.Kube, o.systemNS, kube.DefaultMeshConfigMap)
	if err != nil {
		// Not fatal: the API server may be starting; defaults apply.
		log.Warn("cannot read the mesh ConfigMap; using flags and defaults", "err", err)
		return base, nil
	}
	if m.Found {
		log.Info("mesh config from the cluster", "configmap", o.systemNS+"/"+kube.DefaultMeshConfigMap,
			"trustDomain", m.TrustDomain, "rootNamespace", m.RootNamespace, "outboundTrafficPolicy", m.OutboundTrafficPolicy)
	}
	return m.Apply(base), nil
}

// kubeCA is the CA's in-cluster part: root material in Secrets,
// TokenReview, and the root ConfigMap in every mesh namespace.
type kubeCA struct {
	// Reviewer authenticates CSRs' bearer tokens with TokenReview; add
	// authn.NewKubeJWT(Reviewer, trustDomain, nil) to the CA's chain.
	Reviewer authn.TokenReviewer
	sync     *cakube.SecretSync
	o        *kubeOptions
	log      *slog.Logger
}

// ca prepares the CA directory from the cluster's Secrets (creating the
// root under leader election when there is none) before the trust store is
// opened on it. It returns nil when the Kubernetes registry or --kube-ca is
// off. open must open the store as the server will (same key type and
// trust domain).
func (o *kubeOptions) ca(ctx context.Context, caDir string, open func(dir string) (*trust.Store, error), log *slog.Logger) (*kubeCA, error) {
	on, err := o.enabled()
	if err != nil || !on || !o.caSecrets || caDir == "" {
		return nil, err
	}
	c, err := o.client()
	if err != nil {
		return nil, err
	}
	log = log.With("component", "ca-kube")
	id := os.Getenv("POD_NAME")
	if id == "" {
		id, _ = os.Hostname()
	}
	ss, err := cakube.Bootstrap(ctx, cakube.RootOptions{Client: c.Kube, Namespace: o.systemNS, Dir: caDir, Identity: id, Open: open, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("CA root from the cluster: %w", err)
	}
	return &kubeCA{
		Reviewer: cakube.NewTokenReviewer(c.Kube, cakube.ReviewerOptions{ClusterID: o.clusterID}),
		sync:     ss,
		o:        o,
		log:      log,
	}, nil
}

// Run keeps the Secrets and the store in step and, while this replica
// leads, publishes the root ConfigMap, until ctx ends.
func (k *kubeCA) Run(ctx context.Context, store *trust.Store) error {
	c, err := k.o.client()
	if err != nil {
		return err
	}
	var inMesh func(*corev1.Namespace) bool // nil: every namespace
	if k.o.reg != nil {
		inMesh = k.o.reg.InMesh
	}
	pub, err := cakube.NewRootCertPublisher(cakube.PublisherOptions{
		Client: c.Kube,
		Roots:  func() []byte { return store.Current().RootsPEM() },
		Watch:  store.Watch,
		InMesh: inMesh,
		Logger: k.log,
	})
	if err != nil {
		return err
	}
	id := os.Getenv("POD_NAME")
	if id == "" {
		id, _ = os.Hostname()
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return k.sync.Run(gctx, store) })
	g.Go(func() error {
		e := cakube.Election{Client: c.Kube, Namespace: k.o.systemNS, Lease: cakube.NamespaceControllerLease, Identity: id, Logger: k.log}
		return e.RunWhenLeader(gctx, func(lctx context.Context) {
			if err := pub.Run(lctx); err != nil {
				k.log.Error("root cert publisher stopped", "err", err)
			}
		})
	})
	return g.Wait()
}
