// Package proxy parses who a connecting xDS client is: Istio's node id
// (type~ip~pod.ns~domain) and the node metadata istio-agent sends.
package proxy

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/sextant-mesh/sextant/model"
)

// Type is the proxy kind from the node id.
type Type string

// Proxy types Istio defines. Sextant serves sidecars and proxyless gRPC
// clients (which identify as sidecars with GENERATOR=grpc).
const (
	Sidecar Type = "sidecar"
	Router  Type = "router"
)

// Generator selects the translation for a proxy.
type Generator string

// Generators.
const (
	GenEnvoy Generator = "envoy"
	GenGRPC  Generator = "grpc"
	// GenEvent is istioctl's debug client (GENERATOR=event).
	GenEvent Generator = "event"
)

// Proxy is an identified xDS client. It is immutable once parsed.
type Proxy struct {
	// ID is the node id as sent.
	ID   string
	Type Type
	// IPs are the workload addresses (INSTANCE_IPS, else the node id IP).
	IPs []string
	// Name is "<pod>.<namespace>", Istio's proxy name.
	Name      string
	Namespace string
	DNSDomain string

	Generator      Generator
	Labels         map[string]string
	ClusterID      string
	IstioVersion   string
	ServiceAccount string
	Locality       string // region/zone/subzone
	// HasProxyConfig is true when the node metadata carries PROXY_CONFIG,
	// which istio-agent always sends; istioctl lists only such proxies.
	HasProxyConfig bool
	// InterceptionNone disables the capture listeners (INTERCEPTION_MODE=NONE).
	InterceptionNone bool
	// Authenticated is set by the xDS server, before the proxy is used,
	// for streams on the secure port: the proxy proved it runs as
	// Namespace/VerifiedServiceAccount. It then gets inbound config only
	// for instances of that service account.
	Authenticated          bool
	VerifiedServiceAccount string
	// metadata is the raw node metadata, kept encoded: it is only read
	// for debug output, and thousands of decoded Struct trees are a large
	// share of the per-proxy memory.
	metadata []byte
}

// Metadata returns the raw node metadata (nil if there was none).
func (p *Proxy) Metadata() *structpb.Struct {
	if p.metadata == nil {
		return nil
	}
	md := &structpb.Struct{}
	if err := proto.Unmarshal(p.metadata, md); err != nil {
		return nil
	}
	return md
}

// Parse builds a Proxy from an xDS node. It fails with a message that names
// the problem when the id is not Istio's 4-part form.
func Parse(node *core.Node) (*Proxy, error) {
	if node == nil || node.GetId() == "" {
		return nil, fmt.Errorf("node id is required (want type~ip~pod.namespace~namespace.svc.cluster.local)")
	}
	parts := strings.Split(node.GetId(), "~")
	if len(parts) != 4 {
		return nil, fmt.Errorf("node id %q has %d '~'-separated parts, want 4 (type~ip~pod.namespace~namespace.svc.cluster.local)", node.GetId(), len(parts))
	}
	p := &Proxy{ID: node.GetId(), Type: Type(parts[0]), Name: parts[2], DNSDomain: parts[3]}
	if md := node.GetMetadata(); md != nil {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(md)
		if err != nil {
			return nil, fmt.Errorf("node %q: encoding metadata: %w", node.GetId(), err)
		}
		p.metadata = b
	}
	switch p.Type {
	case Sidecar, Router:
	default:
		return nil, fmt.Errorf("node id %q: proxy type %q is not supported (want sidecar or router)", node.GetId(), parts[0])
	}
	if p.Name == "" {
		return nil, fmt.Errorf("node id %q: the pod.namespace part is empty", node.GetId())
	}
	md := node.GetMetadata().GetFields()
	str := func(k string) string { return md[k].GetStringValue() }
	p.Namespace = str("NAMESPACE")
	if p.Namespace == "" {
		// Istio falls back to the first label of the DNS domain, then to
		// the part after the pod name.
		if ns, _, ok := strings.Cut(p.DNSDomain, "."); ok && ns != "" {
			p.Namespace = ns
		} else if _, ns, ok := strings.Cut(p.Name, "."); ok {
			p.Namespace = ns
		}
	}
	if p.Namespace == "" {
		return nil, fmt.Errorf("node id %q: cannot tell the namespace (set NAMESPACE metadata or use pod.namespace)", node.GetId())
	}
	if ips := str("INSTANCE_IPS"); ips != "" {
		for _, ip := range strings.Split(ips, ",") {
			if ip = strings.TrimSpace(ip); ip != "" {
				p.IPs = append(p.IPs, ip)
			}
		}
	}
	if len(p.IPs) == 0 && parts[1] != "" {
		if _, err := netip.ParseAddr(parts[1]); err != nil {
			return nil, fmt.Errorf("node id %q: %q is not an IP address", node.GetId(), parts[1])
		}
		p.IPs = []string{parts[1]}
	}
	switch g := str("GENERATOR"); g {
	case "", "envoy":
		p.Generator = GenEnvoy
	case "grpc":
		p.Generator = GenGRPC
	case "event":
		p.Generator = GenEvent
	default:
		return nil, fmt.Errorf("node %q: GENERATOR %q is not supported (want grpc, envoy or event)", node.GetId(), g)
	}
	p.Labels = map[string]string{}
	if l := md["LABELS"].GetStructValue(); l != nil {
		for k, v := range l.GetFields() {
			p.Labels[k] = v.GetStringValue()
		}
	}
	p.ClusterID = str("CLUSTER_ID")
	p.IstioVersion = str("ISTIO_VERSION")
	p.ServiceAccount = str("SERVICE_ACCOUNT")
	_, p.HasProxyConfig = md["PROXY_CONFIG"]
	p.InterceptionNone = str("INTERCEPTION_MODE") == "NONE"
	if loc := node.GetLocality(); loc != nil {
		p.Locality = loc.GetRegion() + "/" + loc.GetZone() + "/" + loc.GetSubZone()
		if p.Locality == "//" {
			p.Locality = ""
		}
	}
	return p, nil
}

// LabelsKey is a canonical string of the proxy's labels, used to group
// proxies of one workload that must get identical config.
func (p *Proxy) LabelsKey() string {
	keys := make([]string, 0, len(p.Labels))
	for k := range p.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		// Quoted, so no label value can forge another label.
		b.WriteString(strconv.Quote(k))
		b.WriteByte('=')
		b.WriteString(strconv.Quote(p.Labels[k]))
		b.WriteByte(',')
	}
	return b.String()
}

// Scope holds what decides which config a proxy sees. Proxies with equal
// Scope get identical CDS/LDS/RDS and share the built resources.
type Scope struct {
	Generator Generator
	Namespace string
	// Sidecar is the key of the Sidecar resource that scopes the proxy, if any.
	Sidecar string
	// Labels is set only when config depends on the workload's labels.
	Labels string
	// Workload is set only for sidecars, whose inbound config depends on
	// their own addresses.
	Workload string
	// IstioProxy is set for sidecars running Istio's Envoy (ISTIO_VERSION in
	// the node metadata), which get Istio's own filters.
	IstioProxy bool
}

// ScopeFor returns p's scope under snap.
func ScopeFor(p *Proxy, snap *model.Snapshot, labelsMatter bool) Scope {
	s := Scope{Generator: p.Generator, Namespace: p.Namespace}
	if sc := snap.Sidecar(p.Namespace, p.Labels); sc != nil {
		s.Sidecar = sc.Key.String()
	}
	if labelsMatter {
		s.Labels = p.LabelsKey()
	}
	if p.Generator == GenEnvoy {
		// Inbound listeners and clusters depend on the workload's own
		// addresses (and ingress scoping on its labels).
		s.Workload = strings.Join(p.IPs, ",") + "|" + p.LabelsKey()
		s.IstioProxy = p.IstioVersion != ""
		if p.Authenticated {
			s.Workload += "|sa=" + p.VerifiedServiceAccount
		}
	}
	return s
}
