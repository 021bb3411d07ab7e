package trafficapi

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
	"time"

	trafficv1 "github.com/sextant-mesh/sextant/api/traffic/v1alpha1"
	"github.com/sextant-mesh/sextant/model"
)

// Snapshots is where the API reads the served model: the xDS server.
type Snapshots interface {
	// Snapshot returns the snapshot being served (nil before the first).
	Snapshot() *model.Snapshot
	// SnapshotChanged returns a channel closed when the next snapshot is
	// served.
	SnapshotChanged() <-chan struct{}
}

// Setter applies a state change through the registry that owns the
// service (by model.Source.Registry: "file", "etcd", "kube").
type Setter func(ctx context.Context, registry, namespace, host string, selector map[string]string, state string) error

// Options configure an API.
type Options struct {
	Snapshots Snapshots
	// Set applies changes; nil refuses them.
	Set Setter
	// KeepaliveShare is the mesh-wide keepalive share (services may
	// override it).
	KeepaliveShare float64
	// AdminToken, if set, lets non-loopback callers change states.
	AdminToken string
	// ApplyWait bounds how long a POST waits for its change to be served.
	// Default 10s.
	ApplyWait time.Duration
}

// API serves /api/v1/traffic.
type API struct {
	opts Options
}

// New returns the traffic API.
func New(o Options) *API {
	if o.ApplyWait <= 0 {
		o.ApplyWait = 10 * time.Second
	}
	return &API{opts: o}
}

// Path is where the API is served.
const Path = "/api/v1/traffic"

// Error is a refused change, with the HTTP status it is answered with.
type Error struct {
	Code int
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

func refuse(code int, format string, args ...any) error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// ServeHTTP serves GET (status) and POST (change) on Path. Writes are
// accepted from loopback callers, or with the admin token.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		writeJSON(w, a.Status(r.URL.Query().Get("service")))
	case http.MethodPost:
		if !a.adminAllowed(r) {
			http.Error(w, "traffic changes need a loopback caller or the admin token (Authorization: Bearer …)", http.StatusForbidden)
			return
		}
		var req trafficv1.SetRequest
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			http.Error(w, "bad request body: "+err.Error(), http.StatusBadRequest)
			return
		}
		resp, err := a.Set(r.Context(), req)
		if err != nil {
			code := http.StatusInternalServerError
			var e *Error
			if errors.As(err, &e) {
				code = e.Code
			}
			http.Error(w, err.Error(), code)
			return
		}
		writeJSON(w, resp)
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "use GET or POST", http.StatusMethodNotAllowed)
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func (a *API) adminAllowed(r *http.Request) bool {
	if tok := a.opts.AdminToken; tok != "" {
		got := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		if subtle.ConstantTimeCompare([]byte(got), []byte(tok)) == 1 {
			return true
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// findService resolves a host as given: the full hostname, or a leading
// part of exactly one ("echo", "echo.default"), as proxy-config --fqdn.
func findService(snap *model.Snapshot, host, namespace string) (*model.Service, error) {
	if svc := snap.Service(host); svc != nil && (namespace == "" || svc.Namespace == namespace) {
		return svc, nil
	}
	var matches []*model.Service
	var all []string
	for _, svc := range snap.Services() {
		if namespace != "" && svc.Namespace != namespace {
			continue
		}
		all = append(all, svc.Hostname)
		if strings.HasPrefix(svc.Hostname, host+".") {
			matches = append(matches, svc)
		}
	}
	if len(matches) == 1 {
		return matches[0], nil
	}
	where := "in the mesh"
	if namespace != "" {
		where = "in namespace " + namespace
	}
	if len(matches) > 1 {
		var names []string
		for _, m := range matches {
			names = append(names, m.Hostname)
		}
		return nil, refuse(http.StatusNotFound, "%q matches several services %s: %s; give the full hostname", host, where, strings.Join(names, ", "))
	}
	sort.Strings(all)
	switch {
	case len(all) == 0:
		return nil, refuse(http.StatusNotFound, "service %q not found: there are no services %s", host, where)
	case len(all) > 10:
		all = append(all[:10], fmt.Sprintf("and %d more", len(all)-10))
	}
	return nil, refuse(http.StatusNotFound, "service %q not found %s; services: %s", host, where, strings.Join(all, ", "))
}

// labelsString renders labels as k=v,k=v, sorted.
func labelsString(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ",")
}

// Set validates a state change against the served snapshot, hands it to
// the owning registry and waits (up to ApplyWait) until it is served.
func (a *API) Set(ctx context.Context, req trafficv1.SetRequest) (*trafficv1.SetResponse, error) {
	switch req.State {
	case trafficv1.StateRunning, trafficv1.StateKeepalive:
	default:
		return nil, refuse(http.StatusBadRequest, "state %q: want %s or %s", req.State, trafficv1.StateKeepalive, trafficv1.StateRunning)
	}
	if req.Service == "" {
		return nil, refuse(http.StatusBadRequest, "no service given")
	}
	snap := a.opts.Snapshots.Snapshot()
	if snap == nil {
		return nil, refuse(http.StatusServiceUnavailable, "the control plane is not ready yet (registries still syncing); try again shortly")
	}
	svc, err := findService(snap, req.Service, req.Namespace)
	if err != nil {
		return nil, err
	}
	matched := 0
	labelSets := map[string]bool{}
	if es := snap.Endpoints(svc.Hostname); es != nil {
		for _, ep := range es.Endpoints {
			if model.LabelsMatch(req.Selector, ep.Labels) {
				matched++
			}
			labelSets[labelsString(ep.Labels)] = true
		}
	}
	if matched == 0 {
		if len(labelSets) == 0 {
			return nil, refuse(http.StatusNotFound, "service %s has no endpoints", svc.Hostname)
		}
		sets := make([]string, 0, len(labelSets))
		for s := range labelSets {
			if s == "" {
				s = "(no labels)"
			}
			sets = append(sets, s)
		}
		sort.Strings(sets)
		return nil, refuse(http.StatusNotFound, "no endpoint of %s has the labels %s; its endpoints have: %s",
			svc.Hostname, labelsString(req.Selector), strings.Join(sets, "; "))
	}
	if a.opts.Set == nil {
		return nil, refuse(http.StatusNotImplemented, "traffic changes are not enabled on this server")
	}
	reg := svc.Source.Registry
	if err := a.opts.Set(ctx, reg, svc.Namespace, svc.Hostname, req.Selector, req.State); err != nil {
		return nil, refuse(http.StatusBadGateway, "the %s registry could not apply the change: %v", reg, err)
	}
	resp := &trafficv1.SetResponse{Service: svc.Hostname, Registry: reg, Matched: matched}
	resp.Served = a.waitServed(ctx, svc.Hostname, req.Selector, req.State)
	return resp, nil
}

// waitServed waits until every endpoint of host matching selector is in
// state in the served snapshot, so a status read after a set sees it. The
// change is durable either way; false means it is not served yet.
func (a *API) waitServed(ctx context.Context, host string, selector map[string]string, state string) bool {
	ctx, cancel := context.WithTimeout(ctx, a.opts.ApplyWait)
	defer cancel()
	for {
		// Take the channel before reading the snapshot: a snapshot served
		// between the two closes it and the loop looks again.
		changed := a.opts.Snapshots.SnapshotChanged()
		if served(a.opts.Snapshots.Snapshot(), host, selector, state) {
			return true
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return false
		}
	}
}

func served(snap *model.Snapshot, host string, selector map[string]string, state string) bool {
	if snap == nil {
		return false
	}
	es := snap.Endpoints(host)
	if es == nil {
		return false
	}
	for _, ep := range es.Endpoints {
		if !model.LabelsMatch(selector, ep.Labels) {
			continue
		}
		got := ep.Labels[trafficv1.StateLabel]
		if got == "" {
			got = trafficv1.StateRunning
		}
		if got != state {
			return false
		}
	}
	return true
}

// Status reports, per service (or the named one), endpoints by state and
// the share keepalive endpoints get.
func (a *API) Status(service string) []trafficv1.ServiceStatus {
	out := []trafficv1.ServiceStatus{}
	snap := a.opts.Snapshots.Snapshot()
	if snap == nil {
		return out
	}
	if service != "" {
		if svc, err := findService(snap, service, ""); err == nil {
			service = svc.Hostname
		}
	}
	for _, svc := range snap.Services() {
		if service != "" && svc.Hostname != service {
			continue
		}
		st := trafficv1.ServiceStatus{Service: svc.Hostname, Namespace: svc.Namespace, Registry: svc.Source.Registry,
			ConfiguredShare: a.opts.KeepaliveShare}
		if svc.KeepaliveShare > 0 {
			st.ConfiguredShare = svc.KeepaliveShare
		}
		if es := snap.Endpoints(svc.Hostname); es != nil {
			for _, ep := range es.Endpoints {
				if ep.Labels[model.TrafficStateLabel] == model.StateKeepalive {
					st.Keepalive++
				} else {
					st.Running++
				}
			}
		}
		switch {
		case st.Keepalive == 0:
		case st.Running == 0:
			st.KeepaliveShare = 1
		default:
			st.KeepaliveShare = st.ConfiguredShare
		}
		if service == "" && st.Keepalive == 0 && st.Running == 0 {
			continue
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Service < out[j].Service })
	return out
}
