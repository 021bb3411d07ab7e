package kube

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// Lease names, in the system namespace.
const (
	// RootLease elects the replica that creates the self-signed root.
	RootLease = "sextant-ca-root"
	// NamespaceControllerLease is Istio's lease for the root-cert
	// ConfigMap writer.
	NamespaceControllerLease = "istio-namespace-controller-election"
)

// Election configures leader election on a Lease.
type Election struct {
	Client    kubernetes.Interface
	Namespace string
	Lease     string
	// Identity names this replica (the pod name); must be unique.
	Identity string
	// Durations; defaults 15s, 10s, 2s as client-go recommends.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	Logger                                    *slog.Logger
}

func (e Election) elector(fn func(ctx context.Context)) (*leaderelection.LeaderElector, error) {
	if e.LeaseDuration <= 0 {
		e.LeaseDuration = 15 * time.Second
	}
	if e.RenewDeadline <= 0 {
		e.RenewDeadline = 10 * time.Second
	}
	if e.RetryPeriod <= 0 {
		e.RetryPeriod = 2 * time.Second
	}
	if e.Logger == nil {
		e.Logger = slog.Default()
	}
	log := e.Logger.With("lease", e.Namespace+"/"+e.Lease, "identity", e.Identity)
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: e.Namespace, Name: e.Lease},
		Client:     e.Client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: e.Identity},
	}
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   e.LeaseDuration,
		RenewDeadline:   e.RenewDeadline,
		RetryPeriod:     e.RetryPeriod,
		ReleaseOnCancel: true,
		Name:            e.Lease,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				log.Info("became leader")
				fn(ctx)
			},
			OnStoppedLeading: func() { log.Info("not leading") },
		},
	})
	if err != nil {
		return nil, fmt.Errorf("leader election %s/%s: %w", e.Namespace, e.Lease, err)
	}
	return le, nil
}

// RunWhenLeader runs fn while this replica holds the lease, campaigning
// again whenever leadership is lost, until ctx ends. fn's context is
// cancelled when leadership is lost.
func (e Election) RunWhenLeader(ctx context.Context, fn func(ctx context.Context)) error {
	le, err := e.elector(fn)
	if err != nil {
		return err
	}
	for ctx.Err() == nil {
		le.Run(ctx) // returns when leadership is lost or ctx ends
	}
	return nil
}
