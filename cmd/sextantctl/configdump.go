package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	// Filters whose config the summaries read, registered for Any.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
)

// resource is one pushed resource: the JSON as the server sent it (an Any,
// with its "@type") and the decoded message.
type resource[T proto.Message] struct {
	raw json.RawMessage
	msg T
	// entry is the resource's entry in the config dump (with its version),
	// kept to print the dump back in Envoy's shape.
	entry json.RawMessage
}

// dump is a decoded /debug/config_dump.
type dump struct {
	proxy     string
	clusters  []resource[*clusterv3.Cluster]
	listeners []resource[*listenerv3.Listener]
	routes    []resource[*routev3.RouteConfiguration]
	endpoints []resource[*endpointv3.ClusterLoadAssignment]
	secrets   []resource[*tlsv3.Secret]
	// sections are the config dump's sections by key, for printing the
	// dump back with only the selected resources.
	sections map[string]map[string]json.RawMessage
}

// Short names of the xDS types in a config dump.
const (
	keyCDS = "cds"
	keyLDS = "lds"
	keyRDS = "rds"
	keyEDS = "eds"
	keySDS = "sds"
)

// dumpSection says where one xDS type sits in Envoy's admin ConfigDump
// JSON. Names are given as proto names (Envoy, istiod, Sextant) and JSON
// names (protojson's default), so dumps from either kind of tool read.
type dumpSection struct {
	key      string
	typeURL  string
	list     [2]string   // the section's list of entries
	resource [][2]string // path from an entry to the resource
}

var dumpSections = []dumpSection{
	{keyCDS, "type.googleapis.com/envoy.admin.v3.ClustersConfigDump", [2]string{"dynamic_active_clusters", "dynamicActiveClusters"}, [][2]string{{"cluster", "cluster"}}},
	{keyEDS, "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump", [2]string{"dynamic_endpoint_configs", "dynamicEndpointConfigs"}, [][2]string{{"endpoint_config", "endpointConfig"}}},
	{keyLDS, "type.googleapis.com/envoy.admin.v3.ListenersConfigDump", [2]string{"dynamic_listeners", "dynamicListeners"}, [][2]string{{"active_state", "activeState"}, {"listener", "listener"}}},
	{keyRDS, "type.googleapis.com/envoy.admin.v3.RoutesConfigDump", [2]string{"dynamic_route_configs", "dynamicRouteConfigs"}, [][2]string{{"route_config", "routeConfig"}}},
	{keySDS, "type.googleapis.com/envoy.admin.v3.SecretsConfigDump", [2]string{"dynamic_active_secrets", "dynamicActiveSecrets"}, [][2]string{{"secret", "secret"}}},
}

func field(m map[string]json.RawMessage, names [2]string) (json.RawMessage, bool) {
	if v, ok := m[names[0]]; ok {
		return v, true
	}
	v, ok := m[names[1]]
	return v, ok
}

// rawEntry is one resource of a config dump section.
type rawEntry struct {
	entry, resource json.RawMessage
}

// parseConfigDump splits Envoy's ConfigDump JSON into its resources by
// type. Sections it does not know (bootstrap, scoped routes, ...) are
// skipped.
func parseConfigDump(body []byte) (map[string][]rawEntry, map[string]map[string]json.RawMessage, error) {
	var top struct {
		Configs []map[string]json.RawMessage `json:"configs"`
	}
	if err := json.Unmarshal(body, &top); err != nil {
		return nil, nil, fmt.Errorf("not an Envoy config dump: %w", err)
	}
	out := map[string][]rawEntry{}
	sections := map[string]map[string]json.RawMessage{}
	for i, cfg := range top.Configs {
		var typeURL string
		_ = json.Unmarshal(cfg["@type"], &typeURL)
		for _, sec := range dumpSections {
			if sec.typeURL != typeURL {
				continue
			}
			sections[sec.key] = cfg
			list, ok := field(cfg, sec.list)
			if !ok {
				break
			}
			var entries []json.RawMessage
			if err := json.Unmarshal(list, &entries); err != nil {
				return nil, nil, fmt.Errorf("config dump section %d (%s): %w", i+1, typeURL, err)
			}
			for j, e := range entries {
				res := e
				for _, step := range sec.resource {
					var m map[string]json.RawMessage
					if err := json.Unmarshal(res, &m); err != nil {
						return nil, nil, fmt.Errorf("config dump section %d (%s) entry %d: %w", i+1, typeURL, j+1, err)
					}
					if res, ok = field(m, step); !ok {
						break
					}
				}
				if ok {
					out[sec.key] = append(out[sec.key], rawEntry{entry: e, resource: res})
				}
			}
		}
	}
	return out, sections, nil
}

func decodeDump(proxy string, body []byte) (*dump, error) {
	raw, sections, err := parseConfigDump(body)
	if err != nil {
		return nil, fmt.Errorf("config dump of %s: %w", proxy, err)
	}
	out := &dump{proxy: proxy, sections: sections}
	var errs []error
	out.clusters = decodeAll(raw[keyCDS], "cluster", func() *clusterv3.Cluster { return &clusterv3.Cluster{} }, &errs)
	out.listeners = decodeAll(raw[keyLDS], "listener", func() *listenerv3.Listener { return &listenerv3.Listener{} }, &errs)
	out.routes = decodeAll(raw[keyRDS], "route configuration", func() *routev3.RouteConfiguration { return &routev3.RouteConfiguration{} }, &errs)
	out.endpoints = decodeAll(raw[keyEDS], "cluster load assignment", func() *endpointv3.ClusterLoadAssignment { return &endpointv3.ClusterLoadAssignment{} }, &errs)
	out.secrets = decodeAll(raw[keySDS], "secret", func() *tlsv3.Secret { return &tlsv3.Secret{} }, &errs)
	if len(errs) > 0 {
		return nil, fmt.Errorf("config dump of %s: %w", proxy, errors.Join(errs...))
	}
	return out, nil
}

func decodeAll[T proto.Message](raws []rawEntry, what string, newMsg func() T, errs *[]error) []resource[T] {
	out := make([]resource[T], 0, len(raws))
	for i, raw := range raws {
		m := newMsg()
		if err := unmarshalLenient(raw.resource, m); err != nil {
			*errs = append(*errs, fmt.Errorf("%s #%d: %w", what, i+1, err))
			continue
		}
		out = append(out, resource[T]{raw: raw.resource, msg: m, entry: raw.entry})
	}
	return out
}

// unmarshalLenient decodes Envoy JSON, ignoring fields and extension types
// this build of sextantctl does not know, so a newer server's output still
// summarises.
func unmarshalLenient(raw []byte, m proto.Message) error {
	return protojson.UnmarshalOptions{DiscardUnknown: true, Resolver: lenientResolver{}}.Unmarshal(raw, m)
}

// lenientResolver resolves unknown Any types to an empty message, whose
// fields DiscardUnknown then drops.
type lenientResolver struct{}

var unknownType = func() protoreflect.MessageType {
	fd, err := protodesc.NewFile(&descriptorpb.FileDescriptorProto{
		Name:        proto.String("sextantctl/unknown.proto"),
		Package:     proto.String("sextantctl"),
		Syntax:      proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{{Name: proto.String("Unknown")}},
	}, nil)
	if err != nil {
		panic(err) // a constant descriptor: cannot fail
	}
	return dynamicpb.NewMessageType(fd.Messages().Get(0))
}()

func (lenientResolver) FindMessageByName(n protoreflect.FullName) (protoreflect.MessageType, error) {
	if t, err := protoregistry.GlobalTypes.FindMessageByName(n); err == nil {
		return t, nil
	}
	return unknownType, nil
}

func (lenientResolver) FindMessageByURL(url string) (protoreflect.MessageType, error) {
	if t, err := protoregistry.GlobalTypes.FindMessageByURL(url); err == nil {
		return t, nil
	}
	return unknownType, nil
}

func (lenientResolver) FindExtensionByName(n protoreflect.FullName) (protoreflect.ExtensionType, error) {
	return protoregistry.GlobalTypes.FindExtensionByName(n)
}

func (lenientResolver) FindExtensionByNumber(m protoreflect.FullName, f protoreflect.FieldNumber) (protoreflect.ExtensionType, error) {
	return protoregistry.GlobalTypes.FindExtensionByNumber(m, f)
}

// clusterName is an Istio cluster name, direction|port|subset|host, split.
type clusterName struct {
	direction, subset, host string
	port                    int
	istio                   bool // false: a name like BlackHoleCluster
}

func parseClusterName(name string) clusterName {
	parts := strings.Split(name, "|")
	if len(parts) == 4 {
		if port, err := strconv.Atoi(parts[1]); err == nil && (parts[0] == "outbound" || parts[0] == "inbound") {
			return clusterName{direction: parts[0], port: port, subset: parts[2], host: parts[3], istio: true}
		}
	}
	return clusterName{host: name}
}

// filter holds the --fqdn, --port, --subset and --direction flags.
type filter struct {
	fqdn      string
	port      int
	subset    string
	direction string
	name      string // --name, routes only
}

func (f *filter) validate() error {
	switch f.direction {
	case "", "inbound", "outbound":
	default:
		return &usageError{fmt.Errorf("--direction %q: want inbound or outbound", f.direction)}
	}
	if f.port < 0 || f.port > 65535 {
		return &usageError{fmt.Errorf("--port %d: want 1-65535", f.port)}
	}
	return nil
}

// hostMatches reports whether host is fqdn or fqdn is a leading part of it
// ("reviews" and "reviews.default" match reviews.default.svc.cluster.local).
func (f *filter) hostMatches(host string) bool {
	return f.fqdn == "" || host == f.fqdn || strings.HasPrefix(host, f.fqdn+".")
}

// cluster reports whether a cluster (or endpoint) name passes the filter.
func (f *filter) cluster(name string) bool {
	cn := parseClusterName(name)
	if !cn.istio {
		return f.port == 0 && f.subset == "" && f.direction == "" && f.hostMatches(cn.host)
	}
	return f.hostMatches(cn.host) &&
		(f.port == 0 || cn.port == f.port) &&
		(f.subset == "" || cn.subset == f.subset) &&
		(f.direction == "" || cn.direction == f.direction)
}

// splitHostPort splits "host:port"; ok is false when s has no numeric port.
func splitHostPort(s string) (host string, port int, ok bool) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return s, 0, false
	}
	p, err := strconv.Atoi(s[i+1:])
	if err != nil {
		return s, 0, false
	}
	return s[:i], p, true
}

// clusterLess orders clusters as istioctl does: host, subset, port,
// direction; names that are not Istio's sort by name among the hosts.
func clusterLess(a, b string) bool {
	ca, cb := parseClusterName(a), parseClusterName(b)
	if ca.host != cb.host {
		return ca.host < cb.host
	}
	if ca.subset != cb.subset {
		return ca.subset < cb.subset
	}
	if ca.port != cb.port {
		return ca.port < cb.port
	}
	if ca.direction != cb.direction {
		return ca.direction < cb.direction
	}
	return a < b
}

// istioConfigName turns Istio's metadata reference to the config that
// produced a resource, filter_metadata.istio.config =
// /apis/networking.istio.io/v1/namespaces/<ns>/<kind>/<name>, into
// <name>.<ns>; "" if there is none.
func istioConfigName(md *corev3.Metadata) string {
	s := md.GetFilterMetadata()["istio"]
	if s == nil {
		return ""
	}
	v := s.GetFields()["config"].GetStringValue()
	parts := strings.Split(strings.Trim(v, "/"), "/")
	if len(parts) < 6 || parts[len(parts)-4] != "namespaces" {
		return v
	}
	return parts[len(parts)-1] + "." + parts[len(parts)-3]
}

// sortResources sorts resources by a key.
func sortResources[T proto.Message](rs []resource[T], less func(a, b T) bool) {
	sort.SliceStable(rs, func(i, j int) bool { return less(rs[i].msg, rs[j].msg) })
}

type (
	resourceCluster  = resource[*clusterv3.Cluster]
	resourceListener = resource[*listenerv3.Listener]
)
