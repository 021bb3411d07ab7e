package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"
)

// pcOptions are the flags of the proxy-config subcommands.
type pcOptions struct {
	filter
	output string
}

// pcKind describes one proxy-config subcommand.
type pcKind struct {
	use     string
	aliases []string
	short   string
	long    string
	example string
	// filters lists the filter flags that apply.
	filters []string
	formats []string
	run     func(e *env, w io.Writer, d *dump, o *pcOptions) error
	// keys are the config dump types -o json|yaml prints.
	keys []string
}

func newProxyConfigCommand(e *env, g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "proxy-config",
		Aliases: []string{"pc"},
		Short:   "Show what the control plane last sent a proxy: clusters, listeners, routes, endpoints, secrets",
		Long: `Show the xDS configuration the control plane last sent one proxy.

The data comes from the control plane (/debug/config_dump), not from the
proxy: it is exactly what was pushed, whether or not the proxy accepted it
(check 'sextantctl proxy-status <proxy>' for NACKs). Tables summarise the
resources the way istioctl does; -o json and -o yaml print the resources
themselves, in Envoy's JSON form.`,
		Example: `  sextantctl proxy-config cluster demo-client.default
  sextantctl proxy-config cluster demo-client.default --fqdn echo --subset v2
  sextantctl proxy-config route demo-client.default -o wide
  sextantctl proxy-config endpoint demo-client.default --port 7070
  sextantctl proxy-config listener demo-client.default -o yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return &usageError{fmt.Errorf("%s needs a resource type: cluster, listener, route, endpoint, secret or all", cmd.CommandPath())}
		},
	}
	for _, k := range pcKinds() {
		cmd.AddCommand(newPCSubcommand(e, g, k))
	}
	return cmd
}

func newPCSubcommand(e *env, g *globalFlags, k pcKind) *cobra.Command {
	o := &pcOptions{}
	cmd := &cobra.Command{
		Use:               k.use + " <pod>.<namespace>",
		Aliases:           k.aliases,
		Short:             k.short,
		Long:              k.long,
		Example:           k.example,
		Args:              proxyArg,
		ValidArgsFunction: completeProxies(e, g),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(o.output, k.formats...); err != nil {
				return err
			}
			if err := o.validate(); err != nil {
				return err
			}
			c, err := g.client(cmd, e)
			if err != nil {
				return err
			}
			raw, err := c.ConfigDump(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			d, err := decodeDump(args[0], raw)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if o.output == outJSON || o.output == outYAML {
				return writeDumpResources(w, o, d, k.keys)
			}
			return k.run(e, w, d, o)
		},
	}
	f := cmd.Flags()
	for _, name := range k.filters {
		switch name {
		case "fqdn":
			f.StringVar(&o.fqdn, "fqdn", "", "only this service host (a leading part such as \"reviews\" or \"reviews.default\" is enough)")
		case "port":
			f.IntVar(&o.port, "port", 0, "only this service port")
		case "subset":
			f.StringVar(&o.subset, "subset", "", "only clusters of this DestinationRule subset")
		case "direction":
			f.StringVar(&o.direction, "direction", "", "only inbound or outbound clusters")
		case "name":
			f.StringVar(&o.name, "name", "", "only the route configuration of this name")
		}
	}
	addOutputFlag(cmd, &o.output, k.formats...)
	return cmd
}

const filterHelp = `
Filters: --fqdn matches the service host, exactly or by a leading part
("reviews" matches reviews.default.svc.cluster.local); --port the service
port; --subset the DestinationRule subset; --direction inbound or outbound.`

func pcKinds() []pcKind {
	return []pcKind{
		{
			use: "cluster", aliases: []string{"clusters", "c"},
			short: "Show the clusters (CDS) sent to a proxy",
			long: `Show the clusters (CDS) the control plane last sent a proxy.

Istio cluster names (outbound|<port>|<subset>|<host>, inbound|<port>||) are
split into SERVICE FQDN, PORT, SUBSET and DIRECTION; other clusters
(BlackHoleCluster, PassthroughCluster) show their name. DESTINATION RULE
names the rule (<name>.<namespace>) when the cluster's metadata says.` + filterHelp,
			example: `  sextantctl proxy-config cluster demo-client.default
  sextantctl proxy-config cluster demo-client.default --fqdn echo.default --port 7070
  sextantctl proxy-config cluster demo-client.default --subset v1 -o json`,
			filters: []string{"fqdn", "port", "subset", "direction"},
			formats: []string{outJSON, outYAML},
			keys:    []string{keyCDS},
			run: func(_ *env, w io.Writer, d *dump, o *pcOptions) error {
				return writeClusters(w, filterClusters(d, &o.filter))
			},
		},
		{
			use: "listener", aliases: []string{"listeners", "l"},
			short: "Show the listeners (LDS) sent to a proxy",
			long: `Show the listeners (LDS) the control plane last sent a proxy, one row per
filter chain: the ADDRESS and PORT it listens on, what the chain MATCHes
(SNI, transport, ALPN, destination) and where it sends traffic
(DESTINATION: "Route: <name>" for HTTP via RDS, "Cluster: <name>" for TCP).

Proxyless gRPC clients get api_listeners named <host>:<port>, shown with that
name as ADDRESS.

Filters: --port matches the listener's port; --fqdn the host of a proxyless
client's <host>:<port> listener.`,
			example: `  sextantctl proxy-config listener demo-client.default
  sextantctl proxy-config listener demo-client.default --port 7070 -o yaml`,
			filters: []string{"fqdn", "port"},
			formats: []string{outJSON, outYAML},
			keys:    []string{keyLDS},
			run: func(_ *env, w io.Writer, d *dump, o *pcOptions) error {
				return writeListeners(w, filterListeners(d, &o.filter))
			},
		},
		{
			use: "route", aliases: []string{"routes", "r"},
			short: "Show the routes (RDS) sent to a proxy",
			long: `Show the route configurations (RDS) the control plane last sent a proxy, one
row per route: the route configuration NAME, its virtual host (VHOST NAME,
DOMAINS), what the route MATCHes (path, headers, query) and the VIRTUAL
SERVICE (<name>.<namespace>) it came from when the route's metadata says.

-o wide adds DESTINATION: the cluster, or the weighted clusters with their
share of traffic, which is where misrouted requests usually show.

Filters: --fqdn matches a virtual host's domains; --port the route
configuration's port; --name its name.`,
			example: `  sextantctl proxy-config route demo-client.default
  sextantctl proxy-config route demo-client.default -o wide --fqdn echo
  sextantctl proxy-config route demo-client.default --name 'outbound|7070||echo.default.svc.cluster.local' -o json`,
			filters: []string{"fqdn", "port", "name"},
			formats: []string{outJSON, outYAML, outWide},
			keys:    []string{keyRDS},
			run: func(_ *env, w io.Writer, d *dump, o *pcOptions) error {
				return writeRoutes(w, d.routes, &o.filter, o.output == outWide)
			},
		},
		{
			use: "endpoint", aliases: []string{"endpoints", "ep"},
			short: "Show the endpoints (EDS) sent to a proxy",
			long: `Show the endpoints the control plane last sent a proxy: those of EDS
(ClusterLoadAssignments) and those carried inline by DNS and static
clusters. STATUS is the health the control plane reported (UNKNOWN counts as
HEALTHY, as in Envoy). OUTLIER CHECK is always "-": outlier ejection happens
inside the proxy and the control plane cannot see it.` + filterHelp + `
All filters apply to the endpoint's cluster.`,
			example: `  sextantctl proxy-config endpoint demo-client.default
  sextantctl proxy-config endpoint demo-client.default --fqdn echo --subset v2`,
			filters: []string{"fqdn", "port", "subset", "direction"},
			formats: []string{outJSON, outYAML},
			keys:    []string{keyEDS},
			run: func(_ *env, w io.Writer, d *dump, o *pcOptions) error {
				return writeEndpoints(w, endpointRows(d, &o.filter))
			},
		},
		{
			use: "secret", aliases: []string{"secrets", "s"},
			short: "Show the secrets (SDS) sent to a proxy",
			long: `Show the secrets (SDS) the control plane last sent a proxy: for each
certificate chain or CA bundle its validity, serial number and dates.
Private keys are never printed, in tables or in -o json|yaml.`,
			example: `  sextantctl proxy-config secret demo-client.default`,
			formats: []string{outJSON, outYAML},
			keys:    []string{keySDS},
			run: func(e *env, w io.Writer, d *dump, _ *pcOptions) error {
				return writeSecrets(w, secretRows(d.secrets, e.now()))
			},
		},
		{
			use:   "all",
			short: "Show everything sent to a proxy: clusters, listeners, routes, endpoints, secrets",
			long: `Show every resource the control plane last sent a proxy: the cluster,
listener, route, endpoint and secret tables one after the other. With
-o json|yaml, prints Envoy's admin config dump, as istiod serves it:
{"configs": [{"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
"dynamic_active_clusters": [...]}, ...EndpointsConfigDump, ListenersConfigDump,
RoutesConfigDump, SecretsConfigDump]}, with only the resources that pass
the filters and private keys redacted.` + filterHelp,
			example: `  sextantctl proxy-config all demo-client.default
  sextantctl proxy-config all demo-client.default --fqdn echo -o wide
  sextantctl proxy-config all demo-client.default -o json > dump.json`,
			filters: []string{"fqdn", "port", "subset", "direction"},
			formats: []string{outJSON, outYAML, outWide},
			keys:    []string{keyCDS, keyLDS, keyRDS, keyEDS, keySDS},
			run: func(e *env, w io.Writer, d *dump, o *pcOptions) error {
				steps := []func() error{
					func() error { return writeClusters(w, filterClusters(d, &o.filter)) },
					func() error { return writeListeners(w, filterListeners(d, &o.filter)) },
					func() error { return writeRoutes(w, d.routes, &o.filter, o.output == outWide) },
					func() error { return writeEndpoints(w, endpointRows(d, &o.filter)) },
					func() error { return writeSecrets(w, secretRows(d.secrets, e.now())) },
				}
				for i, step := range steps {
					if i > 0 {
						fmt.Fprintln(w)
					}
					if err := step(); err != nil {
						return err
					}
				}
				return nil
			},
		},
	}
}

func filterClusters(d *dump, f *filter) []resourceCluster {
	var out []resourceCluster
	for _, r := range d.clusters {
		if f.cluster(r.msg.GetName()) {
			out = append(out, r)
		}
	}
	return out
}

func filterListeners(d *dump, f *filter) []resourceListener {
	var out []resourceListener
	for _, r := range d.listeners {
		if f.listener(r) {
			out = append(out, r)
		}
	}
	return out
}

func (f *filter) listener(r resourceListener) bool {
	if f.port != 0 {
		if p, ok := listenerPort(r.msg); !ok || p != f.port {
			return false
		}
	}
	if f.fqdn != "" {
		if r.msg.GetApiListener() == nil {
			return false
		}
		host, _, _ := splitHostPort(r.msg.GetName())
		return f.hostMatches(host)
	}
	return true
}

// selected returns the resources of one type that pass the filter: their
// JSON, or with entries, their config dump entries.
func (f *filter) selected(d *dump, key string, entries bool) []json.RawMessage {
	var out []json.RawMessage
	add := func(raw, entry json.RawMessage) {
		if entries {
			out = append(out, entry)
		} else {
			out = append(out, raw)
		}
	}
	switch key {
	case keyCDS:
		for _, r := range filterClusters(d, f) {
			add(r.raw, r.entry)
		}
	case keyLDS:
		for _, r := range filterListeners(d, f) {
			add(r.raw, r.entry)
		}
	case keyRDS:
		for _, r := range d.routes {
			if f.routeKept(r.msg) {
				add(r.raw, r.entry)
			}
		}
	case keyEDS:
		for _, r := range d.endpoints {
			if f.cluster(r.msg.GetClusterName()) {
				add(r.raw, r.entry)
			}
		}
	case keySDS:
		for _, r := range d.secrets {
			add(redactSecret(r.raw), redactSecret(r.entry))
		}
	}
	return nonNil(out)
}

// writeDumpResources prints the pushed resources as JSON or YAML: a list for
// one type; for all, Envoy's config dump with the selected resources.
func writeDumpResources(w io.Writer, o *pcOptions, d *dump, keys []string) error {
	if len(keys) == 1 {
		return writeStructured(w, o.output, o.selected(d, keys[0], false))
	}
	configs := []map[string]json.RawMessage{}
	for _, sec := range dumpSections {
		if !slices.Contains(keys, sec.key) {
			continue
		}
		cfg := map[string]json.RawMessage{}
		for k, v := range d.sections[sec.key] {
			cfg[k] = v
		}
		if len(cfg) == 0 {
			t, _ := json.Marshal(sec.typeURL)
			cfg["@type"] = t
		}
		delete(cfg, sec.list[1])
		b, err := json.Marshal(o.selected(d, sec.key, true))
		if err != nil {
			return fmt.Errorf("encode JSON: %w", err)
		}
		cfg[sec.list[0]] = b
		configs = append(configs, cfg)
	}
	return writeStructured(w, o.output, map[string]any{"configs": configs})
}

// redactSecret replaces private material in a Secret's JSON: private keys,
// key passwords, generic secrets and session ticket keys.
func redactSecret(raw json.RawMessage) json.RawMessage {
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		// Not an object: print nothing of it rather than risk a key.
		b, _ := json.Marshal(map[string]string{"error": "unreadable secret, not shown"})
		return b
	}
	if !redactWalk(m, "") {
		return raw
	}
	b, err := json.Marshal(m)
	if err != nil {
		b, _ = json.Marshal(map[string]string{"error": "unreadable secret, not shown"})
	}
	return b
}

// redactedAs is what replaces a secret value: an inline string in the
// naming style of the dump (proto names as Envoy and istiod write them, or
// protojson's camel case).
func redactedAs(k, parent string) map[string]any {
	if strings.Contains(k, "_") || strings.Contains(parent, "_") {
		return map[string]any{"inline_string": "[redacted]"}
	}
	return map[string]any{"inlineString": "[redacted]"}
}

func redactWalk(v any, parent string) bool {
	changed := false
	switch t := v.(type) {
	case map[string]any:
		for k, child := range t {
			switch {
			case k == "privateKey" || k == "private_key" || k == "password" ||
				((parent == "genericSecret" || parent == "generic_secret") && k == "secret") ||
				((parent == "genericSecrets" || parent == "generic_secrets") && k == "secret"):
				t[k] = redactedAs(k, parent)
				changed = true
			case (parent == "sessionTicketKeys" || parent == "session_ticket_keys") && k == "keys":
				t[k] = []any{redactedAs(k, parent)}
				changed = true
			default:
				if redactWalk(child, k) {
					changed = true
				}
			}
		}
	case []any:
		for _, child := range t {
			if redactWalk(child, parent) {
				changed = true
			}
		}
	}
	return changed
}
