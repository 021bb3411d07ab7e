package kube

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Root ConfigMap name and key, as Istio's (PILOT_CA_CERT_CONFIGMAP).
const (
	RootCertConfigMap = "istio-ca-root-cert"
	RootCertKey       = "root-cert.pem"
	// configLabel marks ConfigMaps istiod writes.
	configLabel = "istio.io/config"
)

// PublisherOptions configure a RootCertPublisher.
type PublisherOptions struct {
	Client kubernetes.Interface
	// Roots returns the current trust bundle (PEM).
	Roots func() []byte
	// Watch notifies (coalesced) when the bundle may have changed; cancel
	// stops it. trust.Store.Watch fits.
	Watch func() (ch <-chan struct{}, cancel func())
	// InMesh reports whether the mesh covers a namespace (discovery
	// selectors); nil means every namespace.
	InMesh func(*corev1.Namespace) bool
	// Resync re-checks every namespace this often (default 10m), which also
	// picks up changes of InMesh's answer.
	Resync time.Duration
	Logger *slog.Logger
}

// RootCertPublisher writes ConfigMap istio-ca-root-cert (key root-cert.pem)
// into every mesh namespace and keeps it equal to the trust bundle: it
// follows namespaces, the ConfigMaps themselves (edited or deleted by
// someone else) and root changes. Run it under leader election
// (Election.RunWhenLeader with NamespaceControllerLease), as istiod does.
type RootCertPublisher struct {
	o   PublisherOptions
	log *slog.Logger

	mu    sync.Mutex
	dirty map[string]bool
	kick  chan struct{}
}

// NewRootCertPublisher returns a publisher; Run starts it.
func NewRootCertPublisher(o PublisherOptions) (*RootCertPublisher, error) {
	if o.Client == nil || o.Roots == nil {
		return nil, errors.New("root cert publisher: Client and Roots are required")
	}
	if o.Resync <= 0 {
		o.Resync = 10 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &RootCertPublisher{o: o, log: o.Logger.With("component", "root-cert-publisher"),
		dirty: map[string]bool{}, kick: make(chan struct{}, 1)}, nil
}

func (p *RootCertPublisher) mark(ns ...string) {
	p.mu.Lock()
	for _, n := range ns {
		p.dirty[n] = true
	}
	p.mu.Unlock()
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// Run publishes until ctx ends. It returns nil then.
func (p *RootCertPublisher) Run(ctx context.Context) error {
	nsf := informers.NewSharedInformerFactoryWithOptions(p.o.Client, p.o.Resync)
	nsInf := nsf.Core().V1().Namespaces().Informer()
	cmf := informers.NewSharedInformerFactoryWithOptions(p.o.Client, p.o.Resync,
		informers.WithTweakListOptions(func(lo *metav1.ListOptions) {
			lo.FieldSelector = fields.OneTermEqualSelector("metadata.name", RootCertConfigMap).String()
		}))
	cmInf := cmf.Core().V1().ConfigMaps().Informer()
	nsName := func(obj any) string {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		switch o := obj.(type) {
		case *corev1.Namespace:
			return o.Name
		case *corev1.ConfigMap:
			return o.Namespace
		}
		return ""
	}
	h := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { p.mark(nsName(obj)) },
		UpdateFunc: func(_, obj any) { p.mark(nsName(obj)) },
		DeleteFunc: func(obj any) { p.mark(nsName(obj)) },
	}
	if _, err := nsInf.AddEventHandler(h); err != nil {
		return fmt.Errorf("root cert publisher: %w", err)
	}
	if _, err := cmInf.AddEventHandler(h); err != nil {
		return fmt.Errorf("root cert publisher: %w", err)
	}
	nsf.Start(ctx.Done())
	cmf.Start(ctx.Done())
	defer nsf.Shutdown()
	defer cmf.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), nsInf.HasSynced, cmInf.HasSynced) {
		return nil
	}
	var rootsChanged <-chan struct{}
	if p.o.Watch != nil {
		ch, cancel := p.o.Watch()
		defer cancel()
		rootsChanged = ch
	}
	p.log.Info("publishing the root certificate", "configmap", RootCertConfigMap)
	for {
		p.mu.Lock()
		dirty := p.dirty
		p.dirty = map[string]bool{}
		p.mu.Unlock()
		roots := p.o.Roots()
		var failed []string
		for ns := range dirty {
			if ns == "" {
				continue
			}
			if err := p.sync(ctx, nsInf.GetStore(), cmInf.GetStore(), ns, roots); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				p.log.Warn("cannot publish the root certificate; retrying", "namespace", ns, "err", err)
				failed = append(failed, ns)
			}
		}
		var retry <-chan time.Time
		var t *time.Timer
		if len(failed) > 0 {
			t = time.NewTimer(2 * time.Second)
			retry = t.C
		}
		stop := func() {
			if t != nil {
				t.Stop()
			}
		}
		select {
		case <-ctx.Done():
			stop()
			return nil
		case <-p.kick:
			stop()
			p.mark(failed...)
		case <-retry:
			p.mark(failed...)
		case <-rootsChanged:
			stop()
			var all []string
			for _, obj := range nsInf.GetStore().List() {
				all = append(all, obj.(*corev1.Namespace).Name)
			}
			p.mark(append(all, failed...)...)
		}
	}
}

// sync makes one namespace's ConfigMap hold roots.
func (p *RootCertPublisher) sync(ctx context.Context, nss, cms cache.Store, name string, roots []byte) error {
	obj, ok, _ := nss.GetByKey(name)
	if !ok {
		return nil
	}
	ns := obj.(*corev1.Namespace)
	if ns.DeletionTimestamp != nil || ns.Status.Phase == corev1.NamespaceTerminating {
		return nil
	}
	if p.o.InMesh != nil && !p.o.InMesh(ns) {
		return nil // as Istio, a ConfigMap left behind is not removed
	}
	api := p.o.Client.CoreV1().ConfigMaps(name)
	cur, ok, _ := cms.GetByKey(name + "/" + RootCertConfigMap)
	if !ok {
		cm := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: RootCertConfigMap, Namespace: name, Labels: map[string]string{configLabel: "true"}},
			Data:       map[string]string{RootCertKey: string(roots)},
		}
		_, err := api.Create(ctx, cm, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return p.update(ctx, name, roots)
		}
		if err != nil {
			return fmt.Errorf("create ConfigMap %s/%s: %w", name, RootCertConfigMap, err)
		}
		p.log.Debug("root certificate published", "namespace", name)
		return nil
	}
	if bytes.Equal([]byte(cur.(*corev1.ConfigMap).Data[RootCertKey]), roots) {
		return nil
	}
	return p.update(ctx, name, roots)
}

func (p *RootCertPublisher) update(ctx context.Context, ns string, roots []byte) error {
	api := p.o.Client.CoreV1().ConfigMaps(ns)
	cm, err := api.Get(ctx, RootCertConfigMap, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("read ConfigMap %s/%s: %w", ns, RootCertConfigMap, err)
	}
	if cm.Data[RootCertKey] == string(roots) {
		return nil
	}
	cm = cm.DeepCopy()
	if cm.Data == nil {
		cm.Data = map[string]string{}
	}
	cm.Data[RootCertKey] = string(roots)
	if cm.Labels == nil {
		cm.Labels = map[string]string{}
	}
	cm.Labels[configLabel] = "true"
	if _, err := api.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("update ConfigMap %s/%s: %w", ns, RootCertConfigMap, err)
	}
	p.log.Info("root certificate updated", "namespace", ns)
	return nil
}
