package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	trafficv1 "github.com/sextant-mesh/sextant/api/traffic/v1alpha1"
)

func newTrafficCommand(e *env, g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "traffic",
		Short: "See and switch traffic states (keepalive ↔ running)",
		Long: `Endpoints labelled traffic.sextant.io/state=keepalive get a small share of
their service's traffic (1% by default, or the service's
traffic.sextant.io/keepalive-share annotation); running endpoints share the
rest. "traffic set" switches states through the server, which applies the
change to the registry the endpoints came from (file, Kubernetes, etcd).`,
	}
	cmd.AddCommand(newTrafficSetCommand(e, g), newTrafficStatusCommand(e, g))
	return cmd
}

func parseSelector(sel []string) (map[string]string, error) {
	out := map[string]string{}
	for _, s := range sel {
		for _, kv := range strings.Split(s, ",") {
			k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
			if !ok || k == "" {
				return nil, &usageError{fmt.Errorf("--selector %q: want key=value", kv)}
			}
			out[k] = v
		}
	}
	return out, nil
}

func newTrafficSetCommand(e *env, g *globalFlags) *cobra.Command {
	var service, state string
	var selector []string
	cmd := &cobra.Command{
		Use:   "set --service HOST [--selector k=v]... --state keepalive|running",
		Short: "Switch the traffic state of a service's endpoints",
		Example: `  # On the sample mesh (make run): send echo v2 only the keepalive share, then back.
  sextantctl traffic set --service echo.default.svc.cluster.local --selector version=v2 --state keepalive
  sextantctl traffic set --service echo --selector version=v2 --state running`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case service == "":
				return &usageError{fmt.Errorf("--service is required")}
			case state != trafficv1.StateRunning && state != trafficv1.StateKeepalive:
				return &usageError{fmt.Errorf("--state must be %s or %s", trafficv1.StateKeepalive, trafficv1.StateRunning)}
			}
			sel, err := parseSelector(selector)
			if err != nil {
				return err
			}
			c, err := g.client(cmd, e)
			if err != nil {
				return err
			}
			resp, err := c.SetTraffic(cmd.Context(), trafficv1.SetRequest{Service: service, Selector: sel, State: state})
			if err != nil {
				return err
			}
			served := "served"
			if !resp.Served {
				served = "stored; not served yet, 'sextantctl traffic status' shows it once it is"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s of %s set to %s (registry %s, %s)\n", plural(resp.Matched, "endpoint"), resp.Service, state, resp.Registry, served)
			return nil
		},
	}
	cmd.Flags().StringVar(&service, "service", "", "service hostname, e.g. echo.default.svc.cluster.local (a leading part such as \"echo\" is enough when it names one service)")
	cmd.Flags().StringArrayVar(&selector, "selector", nil, "endpoint labels to match, k=v (repeatable; all endpoints when absent)")
	cmd.Flags().StringVar(&state, "state", "", "keepalive or running")
	return cmd
}

func newTrafficStatusCommand(e *env, g *globalFlags) *cobra.Command {
	var output, service string
	cmd := &cobra.Command{
		Use:   "status [--service HOST]",
		Short: "Show, per service, endpoints in each traffic state and the keepalive share",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output, outJSON, outYAML); err != nil {
				return err
			}
			c, err := g.client(cmd, e)
			if err != nil {
				return err
			}
			st, err := c.TrafficStatus(cmd.Context(), service)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if output != outTable {
				return writeStructured(w, output, st)
			}
			return writeTrafficStatus(w, st)
		},
	}
	addOutputFlag(cmd, &output, outJSON, outYAML)
	cmd.Flags().StringVar(&service, "service", "", "only this service")
	return cmd
}

func writeTrafficStatus(w io.Writer, st []trafficv1.ServiceStatus) error {
	sort.Slice(st, func(i, j int) bool { return st[i].Service < st[j].Service })
	tw := newTable(w)
	row(tw, "SERVICE", "REGISTRY", "RUNNING", "KEEPALIVE", "KEEPALIVE SHARE", "CONFIGURED SHARE")
	for _, s := range st {
		row(tw, s.Service, s.Registry, strconv.Itoa(s.Running), strconv.Itoa(s.Keepalive), pctString(s.KeepaliveShare), pctString(s.ConfiguredShare))
	}
	return tw.Flush()
}

func pctString(f float64) string { return strconv.FormatFloat(f*100, 'f', -1, 64) + "%" }

// TrafficStatus reads GET /api/v1/traffic.
func (c *debugClient) TrafficStatus(ctx context.Context, service string) ([]trafficv1.ServiceStatus, error) {
	q := url.Values{}
	if service != "" {
		q.Set("service", service)
	}
	var out []trafficv1.ServiceStatus
	if err := c.getJSON(ctx, "/api/v1/traffic", q, &out); err != nil {
		return nil, err
	}
	if out == nil {
		out = []trafficv1.ServiceStatus{}
	}
	return out, nil
}

// SetTraffic posts a state change.
func (c *debugClient) SetTraffic(ctx context.Context, req trafficv1.SetRequest) (*trafficv1.SetResponse, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	u := *c.base
	u.Path += "/api/v1/traffic"
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(hreq)
	if err != nil {
		return nil, &unreachableError{addr: c.addr, source: c.source, err: describeDialError(err)}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if resp.StatusCode != http.StatusOK {
		// The server words its refusals for people; the HTTP status adds
		// nothing to them.
		msg := strings.TrimSpace(string(b))
		if msg == "" {
			msg = http.StatusText(resp.StatusCode)
		}
		if resp.StatusCode == http.StatusNotFound && strings.HasPrefix(msg, "404 page not found") {
			msg = "the server at " + c.addr + " has no traffic API (is it Sextant's monitoring port?)"
		}
		return nil, fmt.Errorf("traffic set: %s", msg)
	}
	var out trafficv1.SetResponse
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("decode answer from %s: %w", c.addr, err)
	}
	return &out, nil
}
