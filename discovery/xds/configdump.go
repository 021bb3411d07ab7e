package xds

import (
	"fmt"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sextant-mesh/sextant/discovery/translate"
)

// ConfigDump renders what the connection was last sent as Envoy's admin
// ConfigDump, the shape istiod serves on /debug/config_dump and Envoy on
// its own /config_dump, so tools that read either read ours. Unlike
// istiod, which regenerates the config, it is what was actually sent, and
// EDS is always included (istiod needs ?include_eds=true). Private keys
// are redacted (Sent redacts them).
//
// Sections, in istiod's order: bootstrap (empty: the proxy's bootstrap is
// not the control plane's), clusters, endpoints, listeners, scoped routes
// (empty), routes, secrets.
func (c *Connection) ConfigDump() (*adminv3.ConfigDump, error) {
	version := map[string]string{}
	updated := map[string]*timestamppb.Timestamp{}
	for _, w := range c.Watches() {
		version[w.TypeURL] = w.VersionSent
		if !w.LastSent.IsZero() {
			updated[w.TypeURL] = timestamppb.New(w.LastSent)
		}
	}
	var firstErr error
	anyOf := func(m proto.Message) *anypb.Any {
		a, err := anypb.New(m)
		if err != nil && firstErr == nil {
			firstErr = fmt.Errorf("config dump of %s: %w", c.proxy.Name, err)
		}
		return a
	}

	clusters := &adminv3.ClustersConfigDump{VersionInfo: version[translate.ClusterType]}
	for _, m := range c.Sent(translate.ClusterType) {
		clusters.DynamicActiveClusters = append(clusters.DynamicActiveClusters, &adminv3.ClustersConfigDump_DynamicCluster{
			VersionInfo: version[translate.ClusterType], Cluster: anyOf(m), LastUpdated: updated[translate.ClusterType]})
	}
	endpoints := &adminv3.EndpointsConfigDump{}
	for _, m := range c.Sent(translate.EndpointType) {
		endpoints.DynamicEndpointConfigs = append(endpoints.DynamicEndpointConfigs, &adminv3.EndpointsConfigDump_DynamicEndpointConfig{
			VersionInfo: version[translate.EndpointType], EndpointConfig: anyOf(m), LastUpdated: updated[translate.EndpointType]})
	}
	listeners := &adminv3.ListenersConfigDump{VersionInfo: version[translate.ListenerType]}
	for _, m := range c.Sent(translate.ListenerType) {
		listeners.DynamicListeners = append(listeners.DynamicListeners, &adminv3.ListenersConfigDump_DynamicListener{
			Name: nameOf(m),
			ActiveState: &adminv3.ListenersConfigDump_DynamicListenerState{
				VersionInfo: version[translate.ListenerType], Listener: anyOf(m), LastUpdated: updated[translate.ListenerType]},
		})
	}
	routes := &adminv3.RoutesConfigDump{}
	for _, m := range c.Sent(translate.RouteType) {
		routes.DynamicRouteConfigs = append(routes.DynamicRouteConfigs, &adminv3.RoutesConfigDump_DynamicRouteConfig{
			VersionInfo: version[translate.RouteType], RouteConfig: anyOf(m), LastUpdated: updated[translate.RouteType]})
	}
	secrets := &adminv3.SecretsConfigDump{}
	for _, m := range c.Sent(translate.SecretType) {
		secrets.DynamicActiveSecrets = append(secrets.DynamicActiveSecrets, &adminv3.SecretsConfigDump_DynamicSecret{
			Name: nameOf(m), VersionInfo: version[translate.SecretType], Secret: anyOf(m), LastUpdated: updated[translate.SecretType]})
	}
	dump := &adminv3.ConfigDump{}
	for _, m := range []proto.Message{&adminv3.BootstrapConfigDump{}, clusters, endpoints, listeners, &adminv3.ScopedRoutesConfigDump{}, routes, secrets} {
		dump.Configs = append(dump.Configs, anyOf(m))
	}
	if firstErr != nil {
		return nil, firstErr
	}
	return dump, nil
}
