// Package adsclient is a small ADS client that behaves like Envoy: it
// subscribes to CDS and LDS as wildcards, follows clusters to EDS and
// listeners to RDS, and ACKs (or, on request, NACKs) every response. It
// speaks state-of-the-world and delta xDS. Tests and the load tool in hack/
// use it.
package adsclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// Options configure a client.
type Options struct {
	Delta bool
	// Types to subscribe at start; defaults to CDS and LDS (wildcard).
	Types []string
	// Follow subscribes to EDS for EDS clusters and RDS for listeners' route
	// configs, as Envoy does.
	Follow bool
	// Nack, if set, is asked about every response; a non-empty answer is
	// sent back as the NACK's error detail.
	Nack func(typeURL string, resources []*anypb.Any) string
	// InitialVersions are reported on a delta (re)connect.
	InitialVersions map[string]map[string]string
	// InitialSotW are version_info and names reported on a SotW reconnect.
	InitialSotW map[string]string
	// InitialNames are the names of named types (EDS, RDS) a reconnecting
	// client was subscribed to, sent in its first request of each type in
	// Types, as Envoy does after a reconnect.
	InitialNames map[string][]string
	// Light keeps only names and versions, not resource bodies, so a load
	// test can run thousands of clients in one process.
	Light bool
}

// Event is one response received.
type Event struct {
	TypeURL   string
	Nonce     string
	Version   string
	Resources int
	Removed   int
	Bytes     int
	At        time.Time
}

// Client is one ADS stream.
type Client struct {
	opts  Options
	node  *corev3.Node
	sotw  discoverygrpc.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	delta discoverygrpc.AggregatedDiscoveryService_DeltaAggregatedResourcesClient

	mu        sync.Mutex
	resources map[string]map[string]*anypb.Any
	versions  map[string]map[string]string
	sotwVer   map[string]string
	lastNonce map[string]string
	names     map[string]map[string]bool
	// sorted caches sortedKeys(names[type]) for SotW ACKs, which repeat
	// the subscription (1,000 names for a big mesh) every time.
	sorted map[string][]string
	events chan Event
	sendMu sync.Mutex
	err    error
	done   chan struct{}
}

// Node builds an Istio-style node: sidecar~ip~pod.ns~ns.svc.cluster.local.
func Node(ip, pod, ns, generator string, labels map[string]string) *corev3.Node {
	lf := map[string]any{}
	for k, v := range labels {
		lf[k] = v
	}
	md, _ := structpb.NewStruct(map[string]any{
		"NAMESPACE":     ns,
		"GENERATOR":     generator,
		"ISTIO_VERSION": "1.32.0",
		"CLUSTER_ID":    "Kubernetes",
		"LABELS":        lf,
		"PROXY_CONFIG":  map[string]any{},
	})
	if generator == "" {
		delete(md.Fields, "GENERATOR")
	}
	return &corev3.Node{Id: "sidecar~" + ip + "~" + pod + "." + ns + "~" + ns + ".svc.cluster.local", Metadata: md}
}

// Start opens the stream on conn and sends the initial subscriptions.
func Start(ctx context.Context, conn grpc.ClientConnInterface, node *corev3.Node, o Options) (*Client, error) {
	if len(o.Types) == 0 {
		o.Types = []string{resourcev3.ClusterType, resourcev3.ListenerType}
	}
	c := &Client{
		opts: o, node: node,
		resources: map[string]map[string]*anypb.Any{},
		versions:  map[string]map[string]string{},
		sotwVer:   map[string]string{},
		lastNonce: map[string]string{},
		names:     map[string]map[string]bool{},
		sorted:    map[string][]string{},
		events:    make(chan Event, 1024),
		done:      make(chan struct{}),
	}
	ads := discoverygrpc.NewAggregatedDiscoveryServiceClient(conn)
	var err error
	if o.Delta {
		c.delta, err = ads.DeltaAggregatedResources(ctx)
	} else {
		c.sotw, err = ads.StreamAggregatedResources(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("open ADS stream: %w", err)
	}
	for _, t := range o.Types {
		if err := c.subscribe(t, o.InitialNames[t], true); err != nil {
			if errors.Is(err, io.EOF) {
				// The server already ended the stream (refused it, say):
				// gRPC reports why on Recv, which the loop does.
				break
			}
			return nil, err
		}
	}
	go c.loop()
	return c, nil
}

// Events delivers every response (dropped if nobody reads and the buffer
// is full).
func (c *Client) Events() <-chan Event { return c.events }

// Done is closed when the stream ends; Err says why.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns the stream's error after Done.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close ends the stream.
func (c *Client) Close() {
	if c.sotw != nil {
		_ = c.sotw.CloseSend()
	}
	if c.delta != nil {
		_ = c.delta.CloseSend()
	}
}

// Subscribe adds names to a named type (EDS, RDS, ...).
func (c *Client) Subscribe(typeURL string, names ...string) error {
	return c.subscribe(typeURL, names, false)
}

func (c *Client) subscribe(typeURL string, names []string, initial bool) error {
	c.mu.Lock()
	set := c.names[typeURL]
	if set == nil {
		set = map[string]bool{}
		c.names[typeURL] = set
	}
	var added []string
	for _, n := range names {
		if !set[n] {
			set[n] = true
			added = append(added, n)
		}
	}
	all := sortedKeys(set)
	c.sorted[typeURL] = all
	// Like Envoy, a SotW subscription change carries the last nonce of
	// the type, so the server sees an update, not a reset.
	nonce := c.lastNonce[typeURL]
	ver := c.sotwVer[typeURL]
	c.mu.Unlock()
	if !initial && len(added) == 0 {
		return nil
	}
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	if c.opts.Delta {
		req := &discoverygrpc.DeltaDiscoveryRequest{TypeUrl: typeURL, ResourceNamesSubscribe: added}
		if initial {
			req.Node = c.node
			req.InitialResourceVersions = c.opts.InitialVersions[typeURL]
		}
		return c.delta.Send(req)
	}
	req := &discoverygrpc.DiscoveryRequest{TypeUrl: typeURL, ResourceNames: all, ResponseNonce: nonce, VersionInfo: ver}
	if initial {
		req.Node = c.node
		if v, ok := c.opts.InitialSotW[typeURL]; ok {
			req.VersionInfo = v
		}
	}
	return c.sotw.Send(req)
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (c *Client) loop() {
	defer close(c.done)
	for {
		var err error
		if c.opts.Delta {
			err = c.recvDelta()
		} else {
			err = c.recvSotw()
		}
		if err != nil {
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
			return
		}
	}
}

func (c *Client) emit(e Event) {
	select {
	case c.events <- e:
	default:
	}
}

func (c *Client) recvSotw() error {
	resp, err := c.sotw.Recv()
	if err != nil {
		return err
	}
	t := resp.GetTypeUrl()
	bytes := 0
	for _, r := range resp.GetResources() {
		bytes += len(r.GetValue())
	}
	detail := ""
	if c.opts.Nack != nil {
		detail = c.opts.Nack(t, resp.GetResources())
	}
	if detail == "" {
		c.mu.Lock()
		m := c.resources[t]
		if m == nil || isWildcard(t) {
			m = map[string]*anypb.Any{}
			c.resources[t] = m
		}
		if !c.opts.Light {
			for _, r := range resp.GetResources() {
				m[resourceName(r)] = r
			}
		}
		c.sotwVer[t] = resp.GetVersionInfo()
		c.mu.Unlock()
	}
	c.mu.Lock()
	names, ok := c.sorted[t]
	if !ok {
		names = sortedKeys(c.names[t])
		c.sorted[t] = names
	}
	ver := c.sotwVer[t]
	c.lastNonce[t] = resp.GetNonce()
	c.mu.Unlock()
	req := &discoverygrpc.DiscoveryRequest{TypeUrl: t, ResponseNonce: resp.GetNonce(), VersionInfo: ver, ResourceNames: names}
	if detail != "" {
		req.ErrorDetail = &rpcstatus.Status{Code: 3, Message: detail}
	}
	c.sendMu.Lock()
	err = c.sotw.Send(req)
	c.sendMu.Unlock()
	if err != nil {
		return err
	}
	c.emit(Event{TypeURL: t, Nonce: resp.GetNonce(), Version: resp.GetVersionInfo(), Resources: len(resp.GetResources()), Bytes: bytes, At: time.Now()})
	if detail == "" && c.opts.Follow {
		return c.follow(t, resp.GetResources())
	}
	return nil
}

func (c *Client) recvDelta() error {
	resp, err := c.delta.Recv()
	if err != nil {
		return err
	}
	t := resp.GetTypeUrl()
	bytes := 0
	var anys []*anypb.Any
	for _, r := range resp.GetResources() {
		bytes += len(r.GetResource().GetValue())
		anys = append(anys, r.GetResource())
	}
	detail := ""
	if c.opts.Nack != nil {
		detail = c.opts.Nack(t, anys)
	}
	if detail == "" {
		c.mu.Lock()
		m, v := c.resources[t], c.versions[t]
		if m == nil {
			m, v = map[string]*anypb.Any{}, map[string]string{}
			c.resources[t], c.versions[t] = m, v
		}
		for _, r := range resp.GetResources() {
			m[r.GetName()] = c.body(r.GetResource())
			v[r.GetName()] = r.GetVersion()
		}
		for _, n := range resp.GetRemovedResources() {
			delete(m, n)
			delete(v, n)
		}
		c.mu.Unlock()
	}
	req := &discoverygrpc.DeltaDiscoveryRequest{TypeUrl: t, ResponseNonce: resp.GetNonce()}
	if detail != "" {
		req.ErrorDetail = &rpcstatus.Status{Code: 3, Message: detail}
	}
	c.sendMu.Lock()
	err = c.delta.Send(req)
	c.sendMu.Unlock()
	if err != nil {
		return err
	}
	c.emit(Event{TypeURL: t, Nonce: resp.GetNonce(), Version: resp.GetSystemVersionInfo(), Resources: len(resp.GetResources()),
		Removed: len(resp.GetRemovedResources()), Bytes: bytes, At: time.Now()})
	if detail == "" && c.opts.Follow {
		return c.follow(t, anys)
	}
	return nil
}

func (c *Client) body(a *anypb.Any) *anypb.Any {
	if c.opts.Light {
		return nil
	}
	return a
}

func isWildcard(t string) bool { return t == resourcev3.ClusterType || t == resourcev3.ListenerType }

// follow subscribes to what clusters and listeners reference.
func (c *Client) follow(t string, rs []*anypb.Any) error {
	var names []string
	var next string
	switch t {
	case resourcev3.ClusterType:
		next = resourcev3.EndpointType
		for _, a := range rs {
			cl := &clusterv3.Cluster{}
			if a.UnmarshalTo(cl) == nil && cl.GetType() == clusterv3.Cluster_EDS {
				n := cl.GetEdsClusterConfig().GetServiceName()
				if n == "" {
					n = cl.GetName()
				}
				names = append(names, n)
			}
		}
	case resourcev3.ListenerType:
		next = resourcev3.RouteType
		for _, a := range rs {
			l := &listenerv3.Listener{}
			if a.UnmarshalTo(l) != nil {
				continue
			}
			names = append(names, RouteNames(l)...)
		}
	default:
		return nil
	}
	if len(names) == 0 {
		return nil
	}
	c.mu.Lock()
	_, had := c.names[next]
	c.mu.Unlock()
	return c.subscribe(next, names, !had)
}

// RouteNames returns the RDS names a listener's HTTP connection managers use.
func RouteNames(l *listenerv3.Listener) []string {
	var out []string
	hcmOf := func(a *anypb.Any) {
		h := &hcmv3.HttpConnectionManager{}
		if a != nil && a.UnmarshalTo(h) == nil {
			if n := h.GetRds().GetRouteConfigName(); n != "" {
				out = append(out, n)
			}
		}
	}
	if api := l.GetApiListener().GetApiListener(); api != nil {
		hcmOf(api)
	}
	for _, fc := range l.GetFilterChains() {
		for _, f := range fc.GetFilters() {
			hcmOf(f.GetTypedConfig())
		}
	}
	if fc := l.GetDefaultFilterChain(); fc != nil {
		for _, f := range fc.GetFilters() {
			hcmOf(f.GetTypedConfig())
		}
	}
	return out
}

// Resources returns a copy of what the client holds for a type.
func (c *Client) Resources(typeURL string) map[string]*anypb.Any {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]*anypb.Any{}
	for k, v := range c.resources[typeURL] {
		out[k] = v
	}
	return out
}

// Names returns the names subscribed to for typeURL, sorted.
func (c *Client) Names(typeURL string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return sortedKeys(c.names[typeURL])
}

// Versions returns the delta versions the client holds for a type.
func (c *Client) Versions(typeURL string) map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]string{}
	for k, v := range c.versions[typeURL] {
		out[k] = v
	}
	return out
}

// SotWVersion returns the last version_info accepted for a type.
func (c *Client) SotWVersion(typeURL string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sotwVer[typeURL]
}

// resourceName extracts the name of a known resource.
func resourceName(a *anypb.Any) string {
	m, err := a.UnmarshalNew()
	if err != nil {
		return ""
	}
	return NameOf(m)
}

// NameOf returns an xDS resource's name.
func NameOf(m proto.Message) string {
	switch v := m.(type) {
	case interface{ GetClusterName() string }:
		return v.GetClusterName()
	case interface{ GetName() string }:
		return v.GetName()
	}
	return ""
}
