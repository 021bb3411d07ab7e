package xds

import (
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"net/http/pprof"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/sextant-mesh/sextant/api/debug"
	"github.com/sextant-mesh/sextant/internal/buildinfo"
	"github.com/sextant-mesh/sextant/model"
)

// debugEndpoint is one /debug/ path: listed on the index page and in
// /debug/list, as istiod lists its own.
type debugEndpoint struct {
	path, help string
	handler    http.HandlerFunc
}

func (s *Server) debugEndpoints() []debugEndpoint {
	return []debugEndpoint{
		{"/debug/syncz", "Sync state of every connected proxy: per type, sent and acked nonces and versions, NACK errors, authenticated identity", s.handleSyncz},
		{"/debug/config_dump", "What one proxy was last sent, as Envoy's admin ConfigDump (?proxyID=<pod>.<namespace> or a connection id)", s.handleConfigDump},
		{"/debug/configz", "Every Istio config object of the served snapshot", s.handleConfigz},
		{"/debug/registryz", "Every service of the served snapshot", s.handleRegistryz},
		{"/debug/endpointz", "Endpoints of every service port of the served snapshot", s.handleEndpointz},
		{"/debug/config_errors", "Rejected config inputs and warnings", s.handleConfigErrors},
		{"/debug/push_log", "Recent pushes: reason, EDS-only or full, proxies, resources, bytes, time until ACKed", func(w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, s.PushLog())
		}},
		{"/debug/version", "Server version, commit and instance", func(w http.ResponseWriter, _ *http.Request) {
			bi := buildinfo.Get()
			writeJSON(w, debug.Version{Version: bi.Version, Commit: bi.Commit, Instance: s.opts.InstanceID})
		}},
		{"/debug/list", "This list, as JSON", s.handleList},
		{"/debug/pprof/", "Go profiling", pprof.Index},
	}
}

// Handler returns the monitoring mux: /ready, /metrics and /debug/*.
// Nothing it serves contains private keys or tokens.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/ready", func(w http.ResponseWriter, _ *http.Request) {
		if !s.IsReady() {
			http.Error(w, "not ready: waiting for the initial sync of every registry", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.Handle("/metrics", promhttp.HandlerFor(s.metrics.Registry, promhttp.HandlerOpts{}))
	for _, e := range s.debugEndpoints() {
		mux.HandleFunc(e.path, e.handler)
	}
	mux.HandleFunc("/debug/{$}", s.handleIndex)
	mux.HandleFunc("/debug", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/debug/", http.StatusMovedPermanently)
	})
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

var indexPage = template.Must(template.New("index").Parse(`<!DOCTYPE html>
<html><head><title>Sextant debug endpoints</title></head>
<body>
<h1>Sextant debug endpoints</h1>
<table>
<tr><th align="left">path</th><th align="left">what</th></tr>
{{range .}}<tr><td><a href="{{.Path}}">{{.Path}}</a></td><td>{{.Help}}</td></tr>
{{end}}</table>
<p>Also: <a href="/metrics">/metrics</a> (Prometheus), <a href="/ready">/ready</a>.</p>
</body></html>
`))

func (s *Server) endpointList() []debug.Endpoint {
	var out []debug.Endpoint
	for _, e := range s.debugEndpoints() {
		out = append(out, debug.Endpoint{Path: e.path, Help: e.help})
	}
	return out
}

// handleIndex serves /debug/: an HTML list of the debug endpoints for a
// browser, the same list as JSON for anything that asks for JSON.
func (s *Server) handleIndex(w http.ResponseWriter, r *http.Request) {
	if strings.Contains(r.Header.Get("Accept"), "application/json") {
		writeJSON(w, s.endpointList())
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = indexPage.Execute(w, s.endpointList())
}

func (s *Server) handleList(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, s.endpointList())
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// Syncz returns the sync state of every connected proxy.
func (s *Server) Syncz() []debug.SyncStatus {
	var out []debug.SyncStatus
	for _, c := range s.Connections() {
		st := debug.SyncStatus{
			Proxy:        c.proxy.Name,
			ID:           c.id,
			NodeID:       c.proxy.ID,
			ClusterID:    c.proxy.ClusterID,
			IstioVersion: c.proxy.IstioVersion,
			Generator:    string(c.proxy.Generator),
			Delta:        c.delta,
			Instance:     s.opts.InstanceID,
			ConnectedAt:  c.connectedAt,
			Identity:     c.identityName(),
			Types:        map[string]debug.TypeStatus{},
		}
		for _, ws := range c.Watches() {
			st.Types[debug.ShortType(ws.TypeURL)] = debug.TypeStatus{
				TypeURL: ws.TypeURL, Status: ws.Status, NonceSent: ws.NonceSent, NonceAcked: ws.NonceAcked,
				VersionSent: ws.VersionSent, VersionAcked: ws.VersionAcked, LastError: ws.LastError,
				LastSent: ws.LastSent, LastAcked: ws.LastAcked, Resources: ws.Resources,
			}
		}
		out = append(out, st)
	}
	return out
}

// identityName is the SPIFFE identity of an authenticated stream, "" on
// the plaintext port.
func (c *Connection) identityName() string {
	if c.identity == nil {
		return ""
	}
	if c.identity.SpiffeID != "" {
		return c.identity.SpiffeID
	}
	return c.identity.Namespace + "/" + c.identity.ServiceAccount
}

func (s *Server) handleSyncz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, s.Syncz())
}

// ConnectionFor finds a connection by proxy name (pod.namespace), node id or
// connection id. A name held by several connections is ambiguous when
// they are authenticated as different identities (one of them is not who
// it claims to be); otherwise the newest connection wins (a proxy that
// reconnected before its old stream ended).
func (s *Server) ConnectionFor(name string) (*Connection, error) {
	var found []*Connection
	for _, c := range s.Connections() {
		if c.id == name {
			return c, nil
		}
		if c.proxy.Name == name || c.proxy.ID == name {
			found = append(found, c)
		}
	}
	if len(found) == 0 {
		return nil, nil
	}
	newest := found[0]
	ids := map[string]bool{}
	var desc []string
	for _, c := range found {
		ids[c.identityName()] = true
		id := c.identityName()
		if id == "" {
			id = "unauthenticated"
		}
		desc = append(desc, c.id+" ("+id+")")
		if c.connectedAt.After(newest.connectedAt) {
			newest = c
		}
	}
	if len(ids) > 1 {
		return nil, fmt.Errorf("%d connections claim the name %s with different identities: %s; ask for one by its connection id",
			len(found), name, strings.Join(desc, ", "))
	}
	return newest, nil
}

func (s *Server) handleConfigDump(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("proxyID")
	if id == "" {
		http.Error(w, "proxyID=<pod>.<namespace> is required", http.StatusBadRequest)
		return
	}
	c, err := s.ConnectionFor(id)
	if err != nil {
		http.Error(w, err.Error(), http.StatusConflict)
		return
	}
	if c == nil {
		http.Error(w, "no connected proxy named "+id, http.StatusNotFound)
		return
	}
	dump, err := c.ConfigDump()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	// Envoy's and istiod's dumps use the proto field names.
	b, err := protojson.MarshalOptions{UseProtoNames: true, Multiline: true, Indent: "  "}.Marshal(dump)
	if err != nil {
		http.Error(w, "config dump of "+c.proxy.Name+": "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(append(b, '\n'))
}

func (s *Server) handleConfigErrors(w http.ResponseWriter, _ *http.Request) {
	snap := s.Snapshot()
	out := debug.ConfigErrors{Time: time.Now(), Errors: []debug.ConfigError{}}
	if snap != nil {
		out.Version = snap.Version
		for _, e := range snap.Errors {
			out.Errors = append(out.Errors, debugConfigError(e))
		}
	}
	if st := s.state.Load(); st != nil {
		for _, e := range st.tctx.Errors() {
			out.Translation = append(out.Translation, e.Error())
		}
	}
	writeJSON(w, out)
}

// debugConfigError converts the model's error to the public API's, so the
// model may change without changing the API.
func debugConfigError(e model.ConfigError) debug.ConfigError {
	return debug.ConfigError{Registry: e.Registry, Location: e.Location, Object: e.Object, Field: e.Field, Message: e.Message, Warning: e.Warning, Code: e.Code, Summary: e.Summary}
}

func sourceString(src model.Source) string {
	if src.Location == "" {
		return src.Registry
	}
	return src.Registry + ": " + src.Location
}

// apiVersions are the Kubernetes API versions of the config kinds.
var apiVersions = map[model.Kind]string{
	model.KindVirtualService:        "networking.istio.io/v1",
	model.KindDestinationRule:       "networking.istio.io/v1",
	model.KindSidecar:               "networking.istio.io/v1",
	model.KindPeerAuthentication:    "security.istio.io/v1",
	model.KindAuthorizationPolicy:   "security.istio.io/v1",
	model.KindRequestAuthentication: "security.istio.io/v1",
}

// handleConfigz serves /debug/configz: every config object of the served
// snapshot in its Kubernetes shape, as istiod's configz does. Services
// and endpoints are in registryz and endpointz.
func (s *Server) handleConfigz(w http.ResponseWriter, _ *http.Request) {
	out := []debug.Config{}
	snap := s.Snapshot()
	if snap == nil {
		writeJSON(w, out)
		return
	}
	kinds := make([]model.Kind, 0, len(apiVersions))
	for k := range apiVersions {
		kinds = append(kinds, k)
	}
	sort.Slice(kinds, func(i, j int) bool { return kinds[i] < kinds[j] })
	for _, k := range kinds {
		for _, c := range snap.Configs(k) {
			spec := map[string]any{}
			if c.Spec != nil {
				if b, err := protojson.Marshal(c.Spec); err == nil {
					_ = json.Unmarshal(b, &spec)
				}
			}
			out = append(out, debug.Config{
				APIVersion: apiVersions[k], Kind: string(k),
				Metadata: debug.ConfigMetadata{Name: c.Key.Name, Namespace: c.Key.Namespace, Labels: c.Labels,
					Annotations: c.Annotations, CreationTimestamp: c.CreationTime},
				Spec: spec, Source: sourceString(c.Source),
			})
		}
	}
	writeJSON(w, out)
}

// handleRegistryz serves /debug/registryz: the services of the served
// snapshot, merged from every registry.
func (s *Server) handleRegistryz(w http.ResponseWriter, _ *http.Request) {
	out := []debug.Service{}
	if snap := s.Snapshot(); snap != nil {
		for _, svc := range snap.Services() {
			ds := debug.Service{Hostname: svc.Hostname, Namespace: svc.Namespace, Addresses: svc.Addresses,
				Ports: []debug.ServicePort{}, Resolution: svc.Resolution.String(), MeshExternal: svc.MeshExternal,
				Labels: svc.Labels, ExportTo: svc.ExportTo, CreationTime: svc.CreationTime,
				Registry: svc.Source.Registry, Source: sourceString(svc.Source)}
			for _, p := range svc.Ports {
				ds.Ports = append(ds.Ports, debug.ServicePort{Name: p.Name, Port: p.Number, Protocol: string(p.Protocol)})
			}
			out = append(out, ds)
		}
	}
	writeJSON(w, out)
}

// handleEndpointz serves /debug/endpointz: per service port
// (host:port-name, as istiod), its endpoints with the port they serve it
// on.
func (s *Server) handleEndpointz(w http.ResponseWriter, _ *http.Request) {
	out := []debug.ServiceEndpoints{}
	snap := s.Snapshot()
	if snap == nil {
		writeJSON(w, out)
		return
	}
	for _, svc := range snap.Services() {
		es := snap.Endpoints(svc.Hostname)
		for _, p := range svc.Ports {
			se := debug.ServiceEndpoints{Service: svc.Hostname + ":" + p.Name, Endpoints: []debug.ServiceEndpoint{}}
			if es != nil {
				for _, ep := range es.Endpoints {
					se.Endpoints = append(se.Endpoints, debug.ServiceEndpoint{Address: ep.Address, Port: ep.PortFor(p),
						Labels: ep.Labels, Locality: ep.Locality, Weight: ep.Weight, Health: ep.Health.String(),
						ServiceAccount: ep.ServiceAccount, Network: ep.Network, Source: sourceString(ep.Source)})
				}
			}
			out = append(out, se)
		}
	}
	writeJSON(w, out)
}
