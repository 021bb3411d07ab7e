package kube

import (
	"errors"
	"fmt"
	"os"

	istioclient "istio.io/client-go/pkg/clientset/versioned"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// ErrNoCluster means no cluster is configured: no kubeconfig was given,
// KUBECONFIG is not set and the process is not running in a Pod.
var ErrNoCluster = errors.New("no Kubernetes cluster configured (--kubeconfig, $KUBECONFIG or in-cluster)")

// InCluster reports whether the process runs in a Pod with a service
// account token (the conditions rest.InClusterConfig needs).
func InCluster() bool {
	if os.Getenv("KUBERNETES_SERVICE_HOST") == "" || os.Getenv("KUBERNETES_SERVICE_PORT") == "" {
		return false
	}
	_, err := os.Stat("/var/run/secrets/kubernetes.io/serviceaccount/token")
	return err == nil
}

// RESTConfig returns the client configuration: the kubeconfig at path when
// given, else $KUBECONFIG, else the in-cluster configuration. It returns
// ErrNoCluster when none applies.
func RESTConfig(path string) (*rest.Config, error) {
	if path == "" && os.Getenv(clientcmd.RecommendedConfigPathEnvVar) == "" {
		if !InCluster() {
			return nil, ErrNoCluster
		}
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("in-cluster config: %w", err)
		}
		return tune(cfg), nil
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = path
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		src := path
		if src == "" {
			src = "$" + clientcmd.RecommendedConfigPathEnvVar
		}
		return nil, fmt.Errorf("kubeconfig %s: %w", src, err)
	}
	return tune(cfg), nil
}

// tune raises client-go's default rate limits (5 QPS), which are too low
// for a control plane's initial lists and writes, as istiod does.
func tune(cfg *rest.Config) *rest.Config {
	if cfg.QPS == 0 {
		cfg.QPS = 50
	}
	if cfg.Burst == 0 {
		cfg.Burst = 100
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "sextant"
	}
	return cfg
}

// Clients are the API clients a registry needs.
type Clients struct {
	Kube  kubernetes.Interface
	Istio istioclient.Interface
}

// NewClients builds the clients for cfg.
func NewClients(cfg *rest.Config) (*Clients, error) {
	k, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	i, err := istioclient.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("istio client: %w", err)
	}
	return &Clients{Kube: k, Istio: i}, nil
}
