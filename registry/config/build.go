package config

import (
	"strconv"

	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	trafficv1 "github.com/sextant-mesh/sextant/api/traffic/v1alpha1"
	"github.com/sextant-mesh/sextant/model"
)

// ExportToAnnotation is the Kubernetes Service annotation Istio reads
// exportTo from (comma-separated).
const ExportToAnnotation = "networking.istio.io/exportTo"

// Output is what a set of inputs contributes to the model.
type Output struct {
	// Services are sorted by namespace and hostname; no two share a key.
	Services []*model.Service
	// Endpoints holds the endpoints of the services, keyed like them.
	Endpoints map[model.ServiceKey][]*model.Endpoint
	// Configs are sorted by key.
	Configs []*model.Config
	// Errors are the problems found across inputs (see ValidateSet) and
	// while converting, such as two objects defining the same service.
	Errors []model.ConfigError

	inputs []string // the input of each error, parallel to Errors
}

// ErrorsFor returns the errors of Output.Errors that belong to the input
// with the given location (a Result.Location).
func (o *Output) ErrorsFor(location string) []model.ConfigError {
	var out []model.ConfigError
	for i, in := range o.inputs {
		if in == location {
			out = append(out, o.Errors[i])
		}
	}
	return out
}

// Build converts the objects of a set of results into model objects.
// registry names the registry in Sources and errors (e.g. "file"). Every
// object of every result is used, so callers that reject inputs as a whole
// should pass only valid results. Build does not modify the results.
//
//   - A ServiceEntry becomes one service per host, with its inline
//     endpoints (or, for DNS resolution without endpoints, the host itself).
//   - A WorkloadEntry becomes an endpoint of every ServiceEntry and
//     Kubernetes Service in its namespace whose selector matches its labels.
//   - A Kubernetes Service becomes <name>.<namespace>.svc.cluster.local and
//     its EndpointSlices its endpoints; an ExternalName Service resolves its
//     external name with DNS.
//   - Istio routing and security resources become model configs.
func Build(registry string, results []*Result) *Output {
	objs, serrs := collect(results)
	serrs = append(serrs, checkReferences(objs)...)
	b := &builder{
		registry:  registry,
		out:       &Output{Endpoints: map[model.ServiceKey][]*model.Endpoint{}},
		services:  map[model.ServiceKey]*builtService{},
		errs:      serrs,
		endpoints: map[model.ServiceKey][]*model.Endpoint{},
	}
	for _, s := range objs {
		switch spec := s.obj.Spec.(type) {
		case *networking.ServiceEntry:
			b.serviceEntry(s, spec)
		case *corev1.Service:
			b.kubeService(s, spec)
		case proto.Message:
			if s.obj.Kind != KindWorkloadEntry {
				b.config(s.obj, spec)
			}
		}
	}
	var states []*Object
	for _, s := range objs {
		switch spec := s.obj.Spec.(type) {
		case *networking.WorkloadEntry:
			b.workloadEntry(s.obj, spec)
		case *discoveryv1.EndpointSlice:
			b.endpointSlice(s.obj, spec)
		case *trafficv1.TrafficStateSpec:
			states = append(states, s.obj)
		}
	}
	b.finish()
	b.applyTrafficStates(states)
	return b.out
}

type builder struct {
	registry  string
	out       *Output
	services  map[model.ServiceKey]*builtService
	endpoints map[model.ServiceKey][]*model.Endpoint
	errs      []setError
}

// builtService is a service with what endpoint conversion needs to know
// about the object that defined it.
type builtService struct {
	svc   *model.Service
	input string
	kube  *corev1.Service // nil for ServiceEntries
	// own are the endpoints the defining object lists itself.
	own []*model.Endpoint
}

func (b *builder) source(o *Object) model.Source {
	return model.Source{Registry: b.registry, Kind: o.Kind, Namespace: o.Namespace, Name: o.Name, Location: o.Location}
}

// addService records a service unless an older one has the same key.
func (b *builder) addService(bs *builtService) {
	k := model.ServiceKey{Namespace: bs.svc.Namespace, Hostname: bs.svc.Hostname}
	old, ok := b.services[k]
	if !ok {
		b.services[k] = bs
		return
	}
	win, lose := old, bs
	if serviceOlder(bs.svc, old.svc) {
		win, lose = bs, old
		b.services[k] = bs
	}
	src := lose.svc.Source
	b.errs = append(b.errs, setError{input: lose.input, err: model.ConfigError{
		Location: src.Location, Object: src.Kind + " " + src.Namespace + "/" + src.Name,
		Message: fmt.Sprintf("host %s in namespace %s is also defined by %s, which wins; ignored",
			k.Hostname, k.Namespace, win.svc.Source),
		Warning: true,
	}})
}

func serviceOlder(a, b *model.Service) bool {
	if !a.CreationTime.Equal(b.CreationTime) {
		return a.CreationTime.Before(b.CreationTime)
	}
	return a.Source.Kind+"/"+a.Source.Name < b.Source.Kind+"/"+b.Source.Name
}

func resolution(r networking.ServiceEntry_Resolution) model.Resolution {
	switch r {
	case networking.ServiceEntry_STATIC:
		return model.ClientSideLB
	case networking.ServiceEntry_DNS:
		return model.DNSLB
	case networking.ServiceEntry_DNS_ROUND_ROBIN:
		return model.DNSRoundRobinLB
	}
	return model.Passthrough
}

func (b *builder) serviceEntry(s source, se *networking.ServiceEntry) {
	o := s.obj
	ports := make([]model.Port, 0, len(se.GetPorts()))
	for _, p := range se.GetPorts() {
		ports = append(ports, model.Port{
			Name:       p.GetName(),
			Number:     p.GetNumber(),
			Protocol:   model.ParseProtocol(p.GetProtocol()),
			TargetPort: p.GetTargetPort(),
		})
	}
	sortPorts(ports)
	src := b.source(o)
	var selector map[string]string
	if ws := se.GetWorkloadSelector(); ws != nil {
		selector = maps.Clone(ws.GetLabels())
	}
	var inline []*model.Endpoint
	for _, we := range se.GetEndpoints() {
		inline = append(inline, workloadEndpoint(we, we.GetLabels(), maps.Clone(we.GetPorts()), src))
	}
	dnsHosts := len(inline) == 0 && selector == nil &&
		(se.GetResolution() == networking.ServiceEntry_DNS || se.GetResolution() == networking.ServiceEntry_DNS_ROUND_ROBIN)
	for _, host := range se.GetHosts() {
		svc := &model.Service{
			Hostname:       host,
			Namespace:      o.Namespace,
			Ports:          slices.Clone(ports),
			Addresses:      slices.Clone(se.GetAddresses()),
			Resolution:     resolution(se.GetResolution()),
			MeshExternal:   se.GetLocation() == networking.ServiceEntry_MESH_EXTERNAL,
			Labels:         maps.Clone(o.Labels),
			ExportTo:       slices.Clone(se.GetExportTo()),
			Selector:       maps.Clone(selector),
			CreationTime:   o.CreationTime,
			Source:         src,
			KeepaliveShare: keepaliveShare(o),
		}
		own := cloneEndpoints(inline)
		if dnsHosts {
			// As Istio does: with DNS resolution and no endpoints, the proxy
			// resolves the host itself.
			own = []*model.Endpoint{{Address: host, Source: src}}
		}
		b.addService(&builtService{svc: svc, input: s.input, own: own})
	}
}

// workloadEndpoint converts a WorkloadEntry (inline or standalone) to an
// endpoint with the given labels and ports.
func workloadEndpoint(we *networking.WorkloadEntry, labels map[string]string, ports map[string]uint32, src model.Source) *model.Endpoint {
	if len(ports) == 0 {
		ports = nil
	}
	return &model.Endpoint{
		Address:        we.GetAddress(),
		Ports:          ports,
		Labels:         maps.Clone(labels),
		Locality:       we.GetLocality(),
		Weight:         we.GetWeight(),
		Health:         model.Healthy,
		ServiceAccount: we.GetServiceAccount(),
		Network:        we.GetNetwork(),
		Source:         src,
	}
}

func cloneEndpoints(eps []*model.Endpoint) []*model.Endpoint {
	out := make([]*model.Endpoint, len(eps))
	for i, e := range eps {
		c := *e
		c.Ports = maps.Clone(e.Ports)
		c.Labels = maps.Clone(e.Labels)
		out[i] = &c
	}
	return out
}

func sortPorts(ports []model.Port) {
	sort.SliceStable(ports, func(i, j int) bool {
		if ports[i].Number != ports[j].Number {
			return ports[i].Number < ports[j].Number
		}
		return ports[i].Protocol < ports[j].Protocol
	})
}

func (b *builder) kubeService(s source, ks *corev1.Service) {
	o := s.obj
	spec := ks.Spec
	ports := make([]model.Port, 0, len(spec.Ports))
	for _, p := range spec.Ports {
		proto := model.ProtocolFromPortName(p.Name, deref(p.AppProtocol))
		if p.Protocol == corev1.ProtocolUDP {
			proto = model.ProtocolUDP
		}
		var target uint32
		if p.TargetPort.Type == intstr.Int && p.TargetPort.IntVal > 0 {
			target = uint32(p.TargetPort.IntVal)
		}
		ports = append(ports, model.Port{Name: p.Name, Number: uint32(p.Port), Protocol: proto, TargetPort: target})
	}
	sortPorts(ports)
	svc := &model.Service{
		Hostname:       o.Name + "." + o.Namespace + ".svc." + model.DefaultDomainSuffix,
		Namespace:      o.Namespace,
		Ports:          ports,
		Resolution:     model.ClientSideLB,
		Labels:         maps.Clone(o.Labels),
		ExportTo:       exportToAnnotation(o.Annotations[ExportToAnnotation]),
		CreationTime:   o.CreationTime,
		Source:         b.source(o),
		KeepaliveShare: keepaliveShare(o),
	}
	bs := &builtService{svc: svc, input: s.input, kube: ks}
	switch {
	case spec.Type == corev1.ServiceTypeExternalName:
		svc.Resolution = model.DNSLB
		svc.MeshExternal = true
		bs.own = []*model.Endpoint{{Address: strings.TrimSuffix(spec.ExternalName, "."), Source: svc.Source}}
	case spec.ClusterIP == corev1.ClusterIPNone:
		// Headless: clients address the pods directly, as in Istio.
		svc.Resolution = model.Passthrough
		svc.Selector = maps.Clone(spec.Selector)
	default:
		svc.Selector = maps.Clone(spec.Selector)
		ips := spec.ClusterIPs
		if len(ips) == 0 && spec.ClusterIP != "" {
			ips = []string{spec.ClusterIP}
		}
		for _, ip := range ips {
			if ip != corev1.ClusterIPNone {
				svc.Addresses = append(svc.Addresses, ip)
			}
		}
	}
	b.addService(bs)
}

func exportToAnnotation(v string) []string {
	var out []string
	for _, e := range strings.Split(v, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// workloadEntry attaches a WorkloadEntry to every service in its namespace
// whose selector matches it. As in Istio, its metadata labels are merged
// into its spec labels and win.
func (b *builder) workloadEntry(o *Object, we *networking.WorkloadEntry) {
	labels := maps.Clone(we.GetLabels())
	if labels == nil {
		labels = map[string]string{}
	}
	maps.Copy(labels, o.Labels)
	src := b.source(o)
	for _, k := range b.sortedServiceKeys() {
		bs := b.services[k]
		sel := bs.svc.Selector
		if k.Namespace != o.Namespace || len(sel) == 0 || !model.LabelsMatch(sel, labels) {
			continue
		}
		ports := maps.Clone(we.GetPorts())
		if bs.kube != nil {
			ports = kubeWorkloadPorts(bs.kube, we.GetPorts())
		}
		b.endpoints[k] = append(b.endpoints[k], workloadEndpoint(we, labels, ports, src))
	}
}

// kubeWorkloadPorts maps the ports of a Kubernetes Service to the ports of
// a WorkloadEntry: by service port name, then by named targetPort. Ports
// left out fall back to the service's numeric targetPort (Endpoint.PortFor).
func kubeWorkloadPorts(ks *corev1.Service, wePorts map[string]uint32) map[string]uint32 {
	out := map[string]uint32{}
	for _, p := range ks.Spec.Ports {
		if n, ok := wePorts[p.Name]; ok && p.Name != "" {
			out[p.Name] = n
		} else if p.TargetPort.Type == intstr.String {
			if n, ok := wePorts[p.TargetPort.StrVal]; ok {
				out[p.Name] = n
			}
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// endpointSlice adds the endpoints of a slice to its Kubernetes Service.
func (b *builder) endpointSlice(o *Object, es *discoveryv1.EndpointSlice) {
	if es.AddressType == discoveryv1.AddressTypeFQDN {
		return
	}
	k := kubeServiceKey(o.Namespace, es.Labels[ServiceNameLabel])
	bs, ok := b.services[k]
	if !ok || bs.kube == nil {
		return // reported by checkReferences
	}
	ports := map[string]uint32{}
	for _, p := range es.Ports {
		if p.Port != nil {
			ports[deref(p.Name)] = uint32(*p.Port)
		}
	}
	src := b.source(o)
	for _, ep := range es.Endpoints {
		health := sliceHealth(ep.Conditions)
		locality := sliceLocality(ep)
		for _, addr := range ep.Addresses {
			b.endpoints[k] = append(b.endpoints[k], &model.Endpoint{
				Address:  addr,
				Ports:    maps.Clone(ports),
				Locality: locality,
				Health:   health,
				Source:   src,
			})
		}
	}
}

// sliceHealth maps EndpointSlice conditions to a health as Istio does: an
// unset ready condition means ready; a terminating endpoint that still
// serves is draining.
func sliceHealth(c discoveryv1.EndpointConditions) model.Health {
	if c.Ready == nil || *c.Ready {
		return model.Healthy
	}
	if deref(c.Serving) && deref(c.Terminating) {
		return model.Draining
	}
	return model.Unhealthy
}

// Topology labels Kubernetes and Istio use for localities.
const (
	regionLabel  = "topology.kubernetes.io/region"
	zoneLabel    = "topology.kubernetes.io/zone"
	subzoneLabel = "topology.istio.io/subzone"
)

// sliceLocality returns region/zone/subzone from the endpoint's zone and
// deprecated topology; a zone alone gives "/zone".
func sliceLocality(ep discoveryv1.Endpoint) string {
	region := ep.DeprecatedTopology[regionLabel]
	zone := deref(ep.Zone)
	if zone == "" {
		zone = ep.DeprecatedTopology[zoneLabel]
	}
	subzone := ep.DeprecatedTopology[subzoneLabel]
	switch {
	case subzone != "":
		return region + "/" + zone + "/" + subzone
	case zone != "":
		return region + "/" + zone
	}
	return region
}

func (b *builder) config(o *Object, spec proto.Message) {
	c := &model.Config{
		Key:          model.ConfigKey{Kind: model.Kind(o.Kind), Namespace: o.Namespace, Name: o.Name},
		CreationTime: o.CreationTime,
		Labels:       maps.Clone(o.Labels),
		Annotations:  maps.Clone(o.Annotations),
		Spec:         spec,
		Source:       b.source(o),
	}
	c.Hash = model.HashConfig(c)
	b.out.Configs = append(b.out.Configs, c)
}

// keepaliveShare reads the per-service keepalive share annotation
// (validated by Parse).
func keepaliveShare(o *Object) float64 {
	f, _ := strconv.ParseFloat(o.Annotations[trafficv1.KeepaliveShareAnnotation], 64)
	return f
}

// applyTrafficStates sets the traffic-state label on the endpoints each
// TrafficState selects, in name order so later objects win.
func (b *builder) applyTrafficStates(states []*Object) {
	sort.Slice(states, func(i, j int) bool { return states[i].ID() < states[j].ID() })
	for _, o := range states {
		ts := o.Spec.(*trafficv1.TrafficStateSpec)
		k := model.ServiceKey{Namespace: o.Namespace, Hostname: ts.Host}
		eps := b.out.Endpoints[k]
		for i, ep := range eps {
			if !model.LabelsMatch(ts.Selector, ep.Labels) || ep.Labels[trafficv1.StateLabel] == ts.State {
				continue
			}
			cp := *ep
			cp.Labels = maps.Clone(ep.Labels)
			if cp.Labels == nil {
				cp.Labels = map[string]string{}
			}
			cp.Labels[trafficv1.StateLabel] = ts.State
			eps[i] = &cp
		}
	}
}

func (b *builder) sortedServiceKeys() []model.ServiceKey {
	keys := slices.Collect(maps.Keys(b.services))
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].Namespace != keys[j].Namespace {
			return keys[i].Namespace < keys[j].Namespace
		}
		return keys[i].Hostname < keys[j].Hostname
	})
	return keys
}

func (b *builder) finish() {
	for _, k := range b.sortedServiceKeys() {
		bs := b.services[k]
		b.out.Services = append(b.out.Services, bs.svc)
		eps := append(bs.own, b.endpoints[k]...)
		if len(eps) > 0 {
			model.SortEndpoints(eps)
			b.out.Endpoints[k] = eps
		}
	}
	sort.Slice(b.out.Configs, func(i, j int) bool {
		return b.out.Configs[i].Key.String() < b.out.Configs[j].Key.String()
	})
	for _, e := range b.errs {
		e.err.Registry = b.registry
		b.out.Errors = append(b.out.Errors, e.err)
		b.out.inputs = append(b.out.inputs, e.input)
	}
}
