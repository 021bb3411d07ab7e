package xds

import (
	"encoding/json"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/sextant-mesh/sextant/api/debug"
	"github.com/sextant-mesh/sextant/discovery/translate"
)

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
	mux.HandleFunc("/debug/syncz", s.handleSyncz)
	mux.HandleFunc("/debug/config_dump", s.handleConfigDump)
	mux.HandleFunc("/debug/config_errors", s.handleConfigErrors)
	mux.HandleFunc("/debug/push_log", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, s.PushLog())
	})
	mux.HandleFunc("/debug/version", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, debug.Version{Version: debug.BuildVersion(), Instance: s.opts.InstanceID})
	})
	mux.HandleFunc("/api/v1/traffic", s.handleTraffic)
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
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

func (s *Server) handleSyncz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, s.Syncz())
}

// ConnectionFor finds a connection by proxy name (pod.namespace), node id or
// connection id.
func (s *Server) ConnectionFor(name string) *Connection {
	for _, c := range s.Connections() {
		if c.proxy.Name == name || c.id == name || c.proxy.ID == name {
			return c
		}
	}
	return nil
}

func (s *Server) handleConfigDump(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("proxyID")
	if id == "" {
		http.Error(w, "proxyID=<pod>.<namespace> is required", http.StatusBadRequest)
		return
	}
	c := s.ConnectionFor(id)
	if c == nil {
		http.Error(w, "no connected proxy named "+id, http.StatusNotFound)
		return
	}
	dump := debug.ConfigDump{Proxy: c.proxy.Name, Resources: map[string][]json.RawMessage{}}
	for _, t := range []string{translate.ClusterType, translate.EndpointType, translate.ListenerType, translate.RouteType, translate.SecretType} {
		for _, m := range c.Sent(t) {
			b, err := protojson.MarshalOptions{UseProtoNames: false}.Marshal(m)
			if err != nil {
				continue
			}
			dump.Resources[debug.ShortType(t)] = append(dump.Resources[debug.ShortType(t)], b)
		}
	}
	writeJSON(w, dump)
}

func (s *Server) handleConfigErrors(w http.ResponseWriter, _ *http.Request) {
	snap := s.Snapshot()
	out := debug.ConfigErrors{Time: time.Now()}
	if snap != nil {
		out.Version = snap.Version
		out.Errors = snap.Errors
	}
	if st := s.state.Load(); st != nil {
		for _, e := range st.tctx.Errors() {
			out.Translation = append(out.Translation, e.Error())
		}
	}
	writeJSON(w, out)
}
