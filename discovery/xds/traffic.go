package xds

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"

	trafficv1 "github.com/sextant-mesh/sextant/api/traffic/v1alpha1"
	"github.com/sextant-mesh/sextant/model"
)

// TrafficSetter applies a traffic-state change through the registry that
// owns the service (by model.Source.Registry: "file", "etcd", "kube").
type TrafficSetter func(ctx context.Context, registry, namespace, host string, selector map[string]string, state string) error

// handleTraffic serves /api/v1/traffic: GET lists per service how many
// endpoints are in each state and the share they get; POST changes states.
// Writes are accepted from loopback callers, or with the admin token.
func (s *Server) handleTraffic(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		writeJSON(w, s.TrafficStatus(r.URL.Query().Get("service")))
	case http.MethodPost:
		if !s.adminAllowed(r) {
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
		resp, code, err := s.SetTraffic(r.Context(), req)
		if err != nil {
			http.Error(w, err.Error(), code)
			return
		}
		writeJSON(w, resp)
	default:
		http.Error(w, "use GET or POST", http.StatusMethodNotAllowed)
	}
}

func (s *Server) adminAllowed(r *http.Request) bool {
	if tok := s.opts.AdminToken; tok != "" {
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

// SetTraffic validates a state change against the served snapshot and
// hands it to the owning registry. It returns an HTTP status for errors.
func (s *Server) SetTraffic(ctx context.Context, req trafficv1.SetRequest) (*trafficv1.SetResponse, int, error) {
	switch req.State {
	case trafficv1.StateRunning, trafficv1.StateKeepalive:
	default:
		return nil, http.StatusBadRequest, fmt.Errorf("state %q must be %q or %q", req.State, trafficv1.StateRunning, trafficv1.StateKeepalive)
	}
	snap := s.Snapshot()
	if snap == nil {
		return nil, http.StatusServiceUnavailable, fmt.Errorf("not ready: no snapshot yet")
	}
	svc := snap.Service(req.Service)
	if svc == nil || (req.Namespace != "" && svc.Namespace != req.Namespace) {
		return nil, http.StatusNotFound, fmt.Errorf("service %q is not in the mesh", req.Service)
	}
	matched := 0
	if es := snap.Endpoints(svc.Hostname); es != nil {
		for _, ep := range es.Endpoints {
			if model.LabelsMatch(req.Selector, ep.Labels) {
				matched++
			}
		}
	}
	if matched == 0 {
		return nil, http.StatusNotFound, fmt.Errorf("no endpoint of %s matches selector %v", svc.Hostname, req.Selector)
	}
	if s.opts.SetTraffic == nil {
		return nil, http.StatusNotImplemented, fmt.Errorf("traffic changes are not enabled on this server")
	}
	reg := svc.Source.Registry
	if err := s.opts.SetTraffic(ctx, reg, svc.Namespace, svc.Hostname, req.Selector, req.State); err != nil {
		return nil, http.StatusBadGateway, fmt.Errorf("registry %s: %w", reg, err)
	}
	return &trafficv1.SetResponse{Service: svc.Hostname, Registry: reg, Matched: matched}, 0, nil
}

// TrafficStatus reports, per service (or the named one), endpoints by state
// and the share keepalive endpoints get.
func (s *Server) TrafficStatus(service string) []trafficv1.ServiceStatus {
	snap := s.Snapshot()
	if snap == nil {
		return nil
	}
	var out []trafficv1.ServiceStatus
	for _, svc := range snap.Services() {
		if service != "" && svc.Hostname != service {
			continue
		}
		st := trafficv1.ServiceStatus{Service: svc.Hostname, Namespace: svc.Namespace, Registry: svc.Source.Registry,
			ConfiguredShare: s.opts.Mesh.KeepaliveShare}
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
