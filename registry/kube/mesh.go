package kube

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/sextant-mesh/sextant/model"
)

// Defaults of where the mesh config lives, as in Istio.
const (
	DefaultSystemNamespace = "istio-system"
	DefaultMeshConfigMap   = "istio"
	// MeshConfigKey is the ConfigMap key holding MeshConfig YAML.
	MeshConfigKey = "mesh"
)

// MeshSettings is the part of Istio's MeshConfig (the mesh ConfigMap's
// "mesh" key) that Sextant reads. Zero fields were not set.
type MeshSettings struct {
	// Found is false when the ConfigMap or its key does not exist.
	Found       bool
	TrustDomain string
	// TrustDomainAliases count as this mesh's trust domain in
	// AuthorizationPolicy principals.
	TrustDomainAliases []string
	RootNamespace      string
	// ExtensionProviders are the envoyExtAuthzHttp/Grpc providers.
	ExtensionProviders []model.ExtAuthzProvider
	// OutboundTrafficPolicy is the mode: "", ALLOW_ANY or REGISTRY_ONLY.
	OutboundTrafficPolicy string
	EnableAutoMTLS        *bool
	ConnectTimeout        time.Duration
	// DiscoverySelectors limit the namespaces the mesh covers (ORed).
	DiscoverySelectors []labels.Selector
}

// meshDoc is MeshConfig's YAML, read leniently: unknown fields are fine.
type meshDoc struct {
	TrustDomain           string   `json:"trustDomain"`
	TrustDomainAliases    []string `json:"trustDomainAliases"`
	RootNamespace         string   `json:"rootNamespace"`
	OutboundTrafficPolicy *struct {
		Mode string `json:"mode"`
	} `json:"outboundTrafficPolicy"`
	EnableAutoMtls     *bool                  `json:"enableAutoMtls"`
	ConnectTimeout     string                 `json:"connectTimeout"`
	DiscoverySelectors []metav1.LabelSelector `json:"discoverySelectors"`
	ExtensionProviders []struct {
		Name              string       `json:"name"`
		EnvoyExtAuthzHTTP *extAuthzDoc `json:"envoyExtAuthzHttp"`
		EnvoyExtAuthzGRPC *extAuthzDoc `json:"envoyExtAuthzGrpc"`
	} `json:"extensionProviders"`
}

type extAuthzDoc struct {
	Service                      string   `json:"service"`
	Port                         uint32   `json:"port"`
	Timeout                      string   `json:"timeout"`
	FailOpen                     bool     `json:"failOpen"`
	PathPrefix                   string   `json:"pathPrefix"`
	IncludeRequestHeadersInCheck []string `json:"includeRequestHeadersInCheck"`
	StatusOnError                string   `json:"statusOnError"`
}

// ParseMeshConfig reads MeshConfig YAML (the ConfigMap's mesh key).
func ParseMeshConfig(data string) (MeshSettings, error) {
	var d meshDoc
	if err := yaml.Unmarshal([]byte(data), &d); err != nil {
		return MeshSettings{}, fmt.Errorf("mesh config: %w", err)
	}
	m := MeshSettings{Found: true, TrustDomain: d.TrustDomain, RootNamespace: d.RootNamespace, EnableAutoMTLS: d.EnableAutoMtls,
		TrustDomainAliases: d.TrustDomainAliases}
	if d.OutboundTrafficPolicy != nil {
		switch mode := strings.ToUpper(d.OutboundTrafficPolicy.Mode); mode {
		case "", "ALLOW_ANY", "REGISTRY_ONLY":
			m.OutboundTrafficPolicy = mode
		default:
			return MeshSettings{}, fmt.Errorf("mesh config: outboundTrafficPolicy.mode %q: want ALLOW_ANY or REGISTRY_ONLY", d.OutboundTrafficPolicy.Mode)
		}
	}
	if d.ConnectTimeout != "" {
		t, err := time.ParseDuration(d.ConnectTimeout)
		if err != nil || t <= 0 {
			return MeshSettings{}, fmt.Errorf("mesh config: connectTimeout %q: want a positive duration such as 10s", d.ConnectTimeout)
		}
		m.ConnectTimeout = t
	}
	for i, ep := range d.ExtensionProviders {
		doc, grpc := ep.EnvoyExtAuthzHTTP, false
		if doc == nil {
			doc, grpc = ep.EnvoyExtAuthzGRPC, true
		}
		if doc == nil {
			continue // other provider kinds (tracing, logging) are not used here
		}
		p := model.ExtAuthzProvider{Name: ep.Name, GRPC: grpc, Service: doc.Service, Port: doc.Port, FailOpen: doc.FailOpen,
			PathPrefix: doc.PathPrefix, IncludeRequestHeadersInCheck: doc.IncludeRequestHeadersInCheck}
		if ep.Name == "" || doc.Service == "" || doc.Port == 0 {
			return MeshSettings{}, fmt.Errorf("mesh config: extensionProviders[%d]: name, service and port are required", i)
		}
		if doc.Timeout != "" {
			t, err := time.ParseDuration(doc.Timeout)
			if err != nil || t <= 0 {
				return MeshSettings{}, fmt.Errorf("mesh config: extensionProviders[%d].timeout %q: want a positive duration", i, doc.Timeout)
			}
			p.Timeout = t
		}
		if doc.StatusOnError != "" {
			n, err := strconv.ParseUint(doc.StatusOnError, 10, 32)
			if err != nil || n < 100 || n > 599 {
				return MeshSettings{}, fmt.Errorf("mesh config: extensionProviders[%d].statusOnError %q: want an HTTP status", i, doc.StatusOnError)
			}
			p.StatusOnError = uint32(n)
		}
		m.ExtensionProviders = append(m.ExtensionProviders, p)
	}
	for i := range d.DiscoverySelectors {
		s, err := metav1.LabelSelectorAsSelector(&d.DiscoverySelectors[i])
		if err != nil {
			return MeshSettings{}, fmt.Errorf("mesh config: discoverySelectors[%d]: %w", i, err)
		}
		m.DiscoverySelectors = append(m.DiscoverySelectors, s)
	}
	return m, nil
}

// Apply overlays the settings on base: fields the mesh config sets win.
func (m MeshSettings) Apply(base model.MeshConfig) model.MeshConfig {
	if m.TrustDomain != "" {
		base.TrustDomain = m.TrustDomain
	}
	if m.RootNamespace != "" {
		base.RootNamespace = m.RootNamespace
	}
	if len(m.ExtensionProviders) > 0 {
		base.ExtensionProviders = append([]model.ExtAuthzProvider(nil), m.ExtensionProviders...)
	}
	if len(m.TrustDomainAliases) > 0 {
		base.TrustDomainAliases = append([]string(nil), m.TrustDomainAliases...)
	}
	switch m.OutboundTrafficPolicy {
	case "REGISTRY_ONLY":
		base.OutboundRegistryOnly = true
	case "ALLOW_ANY":
		base.OutboundRegistryOnly = false
	}
	if m.EnableAutoMTLS != nil {
		base.DisableAutoMTLS = !*m.EnableAutoMTLS
	}
	if m.ConnectTimeout > 0 {
		base.ConnectTimeout = m.ConnectTimeout
	}
	return base
}

// LoadMeshConfig reads the mesh ConfigMap once (for settings that are fixed
// at start-up, such as the trust domain). A missing ConfigMap or key gives
// Found=false and no error.
func LoadMeshConfig(ctx context.Context, client kubernetes.Interface, namespace, name string) (MeshSettings, error) {
	cm, err := client.CoreV1().ConfigMaps(namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return MeshSettings{}, nil
	}
	if err != nil {
		return MeshSettings{}, fmt.Errorf("read ConfigMap %s/%s: %w", namespace, name, err)
	}
	data, ok := cm.Data[MeshConfigKey]
	if !ok {
		return MeshSettings{}, nil
	}
	m, err := ParseMeshConfig(data)
	if err != nil {
		return MeshSettings{}, fmt.Errorf("ConfigMap %s/%s key %s: %w", namespace, name, MeshConfigKey, err)
	}
	return m, nil
}

// ParseSelectors parses label selectors in kubectl's syntax
// ("env=prod,tier in (a,b)"), as --kube-discovery-selector takes them.
func ParseSelectors(ss []string) ([]labels.Selector, error) {
	var out []labels.Selector
	for _, s := range ss {
		sel, err := labels.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("selector %q: %w", s, err)
		}
		out = append(out, sel)
	}
	return out, nil
}

// selectorsMatch reports whether any selector matches; no selector matches
// everything.
func selectorsMatch(sels []labels.Selector, l map[string]string) bool {
	if len(sels) == 0 {
		return true
	}
	set := labels.Set(l)
	for _, s := range sels {
		if s.Matches(set) {
			return true
		}
	}
	return false
}
