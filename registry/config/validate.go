package config

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"
	telemetry "istio.io/api/telemetry/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	trafficv1 "github.com/sextant-mesh/sextant/api/traffic/v1alpha1"
	"github.com/sextant-mesh/sextant/model"
)

// validateObject checks one decoded object on its own, following Istio's
// (pkg/config/validation) and Kubernetes' rules for what Sextant supports.
func validateObject(oe *objectErrors, o *Object) {
	switch {
	case o.Name == "":
		oe.add("metadata.name", "name is required")
	case o.Kind == KindService && !isDNS1035Label(o.Name):
		oe.add("metadata.name", "invalid name %q: a Service name must be a lower-case RFC 1035 label", o.Name)
	case !isDNSSubdomain(o.Name):
		oe.add("metadata.name", "invalid name %q: must be a lower-case RFC 1123 subdomain", o.Name)
	}
	if !isLowerDNSLabel(o.Namespace) {
		oe.add("metadata.namespace", "invalid namespace %q: must be a lower-case RFC 1123 label", o.Namespace)
	}
	switch s := o.Spec.(type) {
	case *networking.ServiceEntry:
		validateServiceEntry(oe, s)
	case *networking.WorkloadEntry:
		validateWorkload(oe, "spec", s, nil)
	case *networking.VirtualService:
		validateVirtualService(oe, s)
	case *networking.DestinationRule:
		validateDestinationRule(oe, s)
	case *networking.Sidecar:
		validateSidecar(oe, s)
	case *security.PeerAuthentication:
		validatePeerAuthentication(oe, s)
	case *security.AuthorizationPolicy:
		validateAuthorizationPolicy(oe, s)
	case *security.RequestAuthentication:
		validateRequestAuthentication(oe, s)
	case *telemetry.Telemetry:
		validateTelemetry(oe, s)
	case *corev1.Service:
		validateService(oe, s)
	case *discoveryv1.EndpointSlice:
		validateEndpointSlice(oe, s)
	case *trafficv1.TrafficStateSpec:
		validateTrafficState(oe, s)
	}
	if v, ok := o.Annotations[trafficv1.KeepaliveShareAnnotation]; ok {
		if f, err := strconv.ParseFloat(v, 64); err != nil || f <= 0 || f >= 1 {
			oe.add(key("metadata.annotations", trafficv1.KeepaliveShareAnnotation), "keepalive share %q must be a fraction between 0 and 1, e.g. \"0.01\"", v)
		}
	}
}

func validateTrafficState(oe *objectErrors, s *trafficv1.TrafficStateSpec) {
	if s.Host == "" || !isDNSSubdomain(s.Host) {
		oe.add("spec.host", "host %q must be a service hostname", s.Host)
	}
	switch s.State {
	case trafficv1.StateRunning, trafficv1.StateKeepalive:
	default:
		oe.add("spec.state", "state %q must be %q or %q", s.State, trafficv1.StateRunning, trafficv1.StateKeepalive)
	}
}

func idx(f string, i int) string { return f + "[" + strconv.Itoa(i) + "]" }

func key(f, k string) string { return f + "[" + strconv.Quote(k) + "]" }

func validatePortNumber(oe *objectErrors, field string, n uint32) {
	if n < 1 || n > 65535 {
		oe.add(field, "port number %d is out of range 1-65535", n)
	}
}

func validateExportTo(oe *objectErrors, field string, exportTo []string) {
	seen := map[string]bool{}
	for i, e := range exportTo {
		f := idx(field, i)
		switch {
		case e == "*" || e == "." || e == "~":
		case !isLowerDNSLabel(e):
			oe.add(f, "invalid exportTo value %q: must be \".\", \"*\", \"~\" or a namespace", e)
			continue
		}
		if seen[e] {
			oe.add(f, "duplicate exportTo value %q", e)
		}
		seen[e] = true
	}
	if seen["~"] && len(exportTo) > 1 {
		oe.add(field, "exportTo \"~\" cannot be combined with other values")
	}
}

func validateDuration(oe *objectErrors, field string, d *durationpb.Duration) {
	if d == nil {
		return
	}
	if err := d.CheckValid(); err != nil {
		oe.add(field, "invalid duration: %v", err)
	} else if d.AsDuration() < 0 {
		oe.add(field, "duration %s must not be negative", d.AsDuration())
	}
}

// validatePositiveDuration applies Istio's ValidateDuration: at least 1ms.
func validatePositiveDuration(oe *objectErrors, field string, d *durationpb.Duration) {
	if d == nil {
		return
	}
	if err := d.CheckValid(); err != nil {
		oe.add(field, "invalid duration: %v", err)
	} else if d.AsDuration() < time.Millisecond {
		oe.add(field, "duration %s must be at least 1ms", d.AsDuration())
	}
}

func validatePercentage(oe *objectErrors, field string, p *networking.Percent) {
	if p != nil && (p.GetValue() < 0 || p.GetValue() > 100) {
		oe.add(field, "percentage %v is out of range 0-100", p.GetValue())
	}
}

func validateRegex(oe *objectErrors, field, re string) {
	if re == "" {
		oe.add(field, "regex must not be empty")
		return
	}
	if _, err := regexp.Compile(re); err != nil {
		oe.add(field, "invalid regex %q: %v", re, err)
	}
}

// validateStringMatch checks a StringMatch. allowEmpty permits a match with
// no type, which header matches use to test presence.
func validateStringMatch(oe *objectErrors, field string, m *networking.StringMatch, allowEmpty bool) {
	if m == nil {
		return
	}
	switch mt := m.GetMatchType().(type) {
	case nil:
		if !allowEmpty {
			oe.add(field, "string match must set exact, prefix or regex")
		}
	case *networking.StringMatch_Prefix:
		if mt.Prefix == "" {
			oe.add(field+".prefix", "prefix match must not be empty")
		}
	case *networking.StringMatch_Regex:
		validateRegex(oe, field+".regex", mt.Regex)
	}
}

func validateSelectorLabels(oe *objectErrors, field string, labels map[string]string) {
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		if k == "" {
			oe.add(field, "selector label keys must not be empty")
		}
	}
}

func validateService(oe *objectErrors, svc *corev1.Service) {
	spec := svc.Spec
	switch spec.Type {
	case "", corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort, corev1.ServiceTypeLoadBalancer:
	case corev1.ServiceTypeExternalName:
		if spec.ExternalName == "" {
			oe.add("spec.externalName", "externalName is required for type ExternalName")
		} else if !isDNSName(strings.TrimSuffix(spec.ExternalName, ".")) {
			oe.add("spec.externalName", "invalid externalName %q: must be a DNS name", spec.ExternalName)
		}
	default:
		oe.add("spec.type", "unsupported service type %q", spec.Type)
	}
	headless := spec.ClusterIP == corev1.ClusterIPNone
	if len(spec.Ports) == 0 && !headless && spec.Type != corev1.ServiceTypeExternalName {
		oe.add("spec.ports", "service must have at least one port")
	}
	if spec.ClusterIP != "" && !headless && !isIP(spec.ClusterIP) {
		oe.add("spec.clusterIP", "invalid clusterIP %q: must be an IP address or \"None\"", spec.ClusterIP)
	}
	for i, ip := range spec.ClusterIPs {
		if ip != corev1.ClusterIPNone && !isIP(ip) {
			oe.add(idx("spec.clusterIPs", i), "invalid cluster IP %q", ip)
		}
	}
	names := map[string]int{}
	numbers := map[string]int{}
	for i, p := range spec.Ports {
		f := idx("spec.ports", i)
		switch {
		case p.Name == "" && len(spec.Ports) > 1:
			oe.add(f+".name", "port name is required when a service has more than one port")
		case p.Name != "" && !isLowerDNSLabel(p.Name):
			oe.add(f+".name", "invalid port name %q: must be a lower-case RFC 1123 label", p.Name)
		}
		if j, dup := names[p.Name]; dup && p.Name != "" {
			oe.add(f+".name", "duplicate port name %q (also spec.ports[%d])", p.Name, j)
		}
		names[p.Name] = i
		if p.Port < 1 || p.Port > 65535 {
			oe.add(f+".port", "port number %d is out of range 1-65535", p.Port)
		}
		proto := p.Protocol
		switch proto {
		case "":
			proto = corev1.ProtocolTCP
		case corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP:
		default:
			oe.add(f+".protocol", "unsupported protocol %q: must be TCP, UDP or SCTP", p.Protocol)
		}
		pk := fmt.Sprintf("%d/%s", p.Port, proto)
		if j, dup := numbers[pk]; dup {
			oe.add(f+".port", "duplicate port %s (also spec.ports[%d])", pk, j)
		}
		numbers[pk] = i
		tp := p.TargetPort
		if tp.StrVal != "" || tp.IntVal != 0 {
			if tp.StrVal != "" {
				if !isPortName(tp.StrVal) {
					oe.add(f+".targetPort", "invalid targetPort name %q", tp.StrVal)
				}
			} else if tp.IntVal < 1 || tp.IntVal > 65535 {
				oe.add(f+".targetPort", "targetPort %d is out of range 1-65535", tp.IntVal)
			}
		}
	}
	validateSelectorLabels(oe, "spec.selector", spec.Selector)
}

// isDNS1035Label reports whether s is a lower-case RFC 1035 label (starts
// with a letter), as Kubernetes requires for Service names.
func isDNS1035Label(s string) bool {
	return isLowerDNSLabel(s) && s[0] >= 'a' && s[0] <= 'z'
}

// isPortName reports whether s is an IANA service name, as Kubernetes
// requires for named target ports: at most 15 lower-case alphanumerics or
// '-', with a letter, no leading, trailing or double '-'.
func isPortName(s string) bool {
	if len(s) == 0 || len(s) > 15 || s[0] == '-' || s[len(s)-1] == '-' || strings.Contains(s, "--") {
		return false
	}
	letter := false
	for _, c := range s {
		switch {
		case c >= 'a' && c <= 'z':
			letter = true
		case c >= '0' && c <= '9', c == '-':
		default:
			return false
		}
	}
	return letter
}

// ServiceNameLabel names the Service an EndpointSlice belongs to.
const ServiceNameLabel = discoveryv1.LabelServiceName

func validateEndpointSlice(oe *objectErrors, es *discoveryv1.EndpointSlice) {
	if es.Labels[ServiceNameLabel] == "" {
		oe.add(key("metadata.labels", ServiceNameLabel), "label %q is required", ServiceNameLabel)
	}
	switch es.AddressType {
	case discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6:
	case discoveryv1.AddressTypeFQDN:
		oe.warn("addressType", "EndpointSlices of addressType FQDN are ignored")
	case "":
		oe.add("addressType", "addressType is required")
	default:
		oe.add("addressType", "invalid addressType %q: must be IPv4, IPv6 or FQDN", es.AddressType)
	}
	for i, ep := range es.Endpoints {
		f := idx("endpoints", i)
		if len(ep.Addresses) == 0 {
			oe.add(f+".addresses", "at least one address is required")
		}
		for j, a := range ep.Addresses {
			if !addressMatchesType(a, es.AddressType) {
				oe.add(idx(f+".addresses", j), "address %q is not a valid %s address", a, es.AddressType)
			}
		}
	}
	names := map[string]int{}
	for i, p := range es.Ports {
		f := idx("ports", i)
		name := ""
		if p.Name != nil {
			name = *p.Name
		}
		if name != "" && !isLowerDNSLabel(name) {
			oe.add(f+".name", "invalid port name %q", name)
		}
		if j, dup := names[name]; dup {
			oe.add(f+".name", "duplicate port name %q (also ports[%d])", name, j)
		}
		names[name] = i
		if p.Port != nil && (*p.Port < 1 || *p.Port > 65535) {
			oe.add(f+".port", "port number %d is out of range 1-65535", *p.Port)
		}
	}
}

func addressMatchesType(a string, t discoveryv1.AddressType) bool {
	switch t {
	case discoveryv1.AddressTypeIPv4:
		return isIP(a) && !strings.Contains(a, ":")
	case discoveryv1.AddressTypeIPv6:
		return isIP(a) && strings.Contains(a, ":")
	case discoveryv1.AddressTypeFQDN:
		return isDNSName(a)
	}
	return true // the address type itself is reported
}

// protocolNames lists the protocols model.ParseProtocol understands, for
// error messages.
const protocolNames = "HTTP, HTTPS, HTTP2, GRPC, GRPC-Web, TLS, TCP, UDP, Mongo, Redis, MySQL"

func validateProtocol(oe *objectErrors, field, p string) {
	if model.ParseProtocol(p) == model.ProtocolUnsupported {
		if p == "" {
			oe.add(field, "protocol is required (one of %s)", protocolNames)
		} else {
			oe.add(field, "unsupported protocol %q: must be one of %s", p, protocolNames)
		}
	}
}
