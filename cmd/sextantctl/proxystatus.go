package main

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sextant-mesh/sextant/api/debug"
)

// Sync states, as /debug/syncz and istioctl spell them.
const (
	statusSynced  = "SYNCED"
	statusNotSent = "NOT SENT"
	statusNack    = "NACK"
)

// xdsType is one column of the status table.
type xdsType struct {
	key   string // short name in SyncStatus.Types
	label string
	// optional columns are shown only when some proxy watches the type.
	optional bool
}

var statusTypes = []xdsType{
	{key: "cds", label: "CDS"},
	{key: "lds", label: "LDS"},
	{key: "eds", label: "EDS"},
	{key: "rds", label: "RDS"},
	{key: "ecds", label: "ECDS", optional: true},
	{key: "sds", label: "SDS", optional: true},
}

// typeKey maps a SyncStatus.Types key to its column key: debug.ShortType
// leaves types it does not know (ECDS) as the full type URL.
func typeKey(k string) string {
	if strings.HasSuffix(k, ".TypedExtensionConfig") {
		return "ecds"
	}
	return k
}

func newProxyStatusCommand(e *env, g *globalFlags) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:     "proxy-status [<pod>.<namespace>]",
		Aliases: []string{"ps"},
		Short:   "Show whether each connected proxy accepted its latest config",
		Long: `Show the xDS sync state of every proxy connected to the control plane.

For each proxy and xDS type (CDS, LDS, EDS, RDS, and ECDS and SDS when any
proxy uses them) a cell says:

  SYNCED (age)  the proxy ACKed the last response sent; age is since that ACK
  STALE         a response was sent and the proxy has not answered yet
  NACK          the proxy rejected the last response (see the detail view)
  NOT SENT      nothing of that type was sent (or the proxy did not ask)

ISTIOD is the control plane instance the proxy is connected to and VERSION
the proxy's ISTIO_VERSION.

With a proxy name, shows that proxy in detail: per type the status, the
versions and nonces last sent and ACKed, and the error of a NACK.`,
		Example: `  # All connected proxies
  sextantctl proxy-status

  # One proxy: versions, nonces and why it rejected config
  sextantctl proxy-status demo-client.default

  # For scripts
  sextantctl proxy-status -o json`,
		Args:              maxArgs(1, "a proxy name (<pod>.<namespace>)"),
		ValidArgsFunction: completeProxies(e, g),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output, outJSON, outYAML); err != nil {
				return err
			}
			c, err := g.client(cmd, e)
			if err != nil {
				return err
			}
			all, err := c.Syncz(cmd.Context())
			if err != nil {
				return err
			}
			sortStatuses(all)
			w := cmd.OutOrStdout()
			if len(args) == 0 {
				if output != outTable {
					return writeStructured(w, output, nonNil(all))
				}
				if len(all) == 0 {
					fmt.Fprintf(cmd.ErrOrStderr(), "No proxies are connected to the control plane at %s.\n", c.addr)
				}
				return e.writeStatusTable(w, all)
			}
			var match []debug.SyncStatus
			for _, st := range all {
				if st.Proxy == args[0] || st.NodeID == args[0] || st.ID == args[0] {
					match = append(match, st)
				}
			}
			if len(match) == 0 {
				return fmt.Errorf("proxy %q not found: not connected to the control plane at %s; %s (run 'sextantctl proxy-status' to list them; names are <pod>.<namespace>)",
					args[0], c.addr, connectedCount(len(all)))
			}
			if output != outTable {
				return writeStructured(w, output, match)
			}
			for i, st := range match {
				if i > 0 {
					fmt.Fprintln(w)
				}
				if err := e.writeStatusDetail(w, st); err != nil {
					return err
				}
			}
			return nil
		},
	}
	addOutputFlag(cmd, &output, outJSON, outYAML)
	return cmd
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func sortStatuses(all []debug.SyncStatus) {
	sort.SliceStable(all, func(i, j int) bool {
		if all[i].Proxy != all[j].Proxy {
			return all[i].Proxy < all[j].Proxy
		}
		return all[i].ID < all[j].ID
	})
}

// typeStatus finds the status of a column's type.
func typeStatus(st debug.SyncStatus, key string) (debug.TypeStatus, bool) {
	for k, ts := range st.Types {
		if typeKey(k) == key {
			return ts, true
		}
	}
	return debug.TypeStatus{}, false
}

// columns returns the types to show: the fixed ones plus the optional ones
// some proxy watches.
func columns(all []debug.SyncStatus) []xdsType {
	var out []xdsType
	for _, t := range statusTypes {
		if !t.optional {
			out = append(out, t)
			continue
		}
		for _, st := range all {
			if _, ok := typeStatus(st, t.key); ok {
				out = append(out, t)
				break
			}
		}
	}
	return out
}

// cell renders one type's state for the table.
func (e *env) cell(st debug.SyncStatus, key string) string {
	ts, ok := typeStatus(st, key)
	if !ok || ts.Status == "" {
		return statusNotSent
	}
	if ts.Status == statusSynced {
		if a := e.age(ts.LastAcked); a != "" {
			return ts.Status + " (" + a + ")"
		}
	}
	return ts.Status
}

func (e *env) writeStatusTable(w io.Writer, all []debug.SyncStatus) error {
	cols := columns(all)
	tw := newTable(w)
	header := []string{"NAME", "CLUSTER"}
	for _, c := range cols {
		header = append(header, c.label)
	}
	header = append(header, "ISTIOD", "VERSION")
	// The authenticated identity tells apart streams that claim the same
	// name; shown only when some proxy is on the secure port.
	withIdentity := false
	for _, st := range all {
		withIdentity = withIdentity || st.Identity != ""
	}
	if withIdentity {
		header = append(header, "IDENTITY")
	}
	row(tw, header...)
	for _, st := range all {
		cells := []string{st.Proxy, orDash(st.ClusterID)}
		for _, c := range cols {
			cells = append(cells, e.cell(st, c.key))
		}
		cells = append(cells, orDash(st.Instance), orDash(st.IstioVersion))
		if withIdentity {
			cells = append(cells, orDash(st.Identity))
		}
		row(tw, cells...)
	}
	return tw.Flush()
}

// detailTypes orders a proxy's types: the known columns, then the rest.
func detailTypes(st debug.SyncStatus) []string {
	rank := map[string]int{}
	for i, t := range statusTypes {
		rank[t.key] = i
	}
	keys := make([]string, 0, len(st.Types))
	for k := range st.Types {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		ri, oki := rank[typeKey(keys[i])]
		rj, okj := rank[typeKey(keys[j])]
		switch {
		case oki && okj:
			return ri < rj
		case oki != okj:
			return oki
		}
		return keys[i] < keys[j]
	})
	return keys
}

func typeLabel(k string) string {
	k = typeKey(k)
	for _, t := range statusTypes {
		if t.key == k {
			return t.label
		}
	}
	return k
}

func (e *env) when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	if e.stable {
		return "<masked>"
	}
	return t.Local().Format(time.RFC3339) + " (" + formatAge(e.now().Sub(t)) + " ago)"
}

func (e *env) writeStatusDetail(w io.Writer, st debug.SyncStatus) error {
	mode := "state of the world"
	if st.Delta {
		mode = "delta"
	}
	generator := st.Generator
	switch generator {
	case "", "envoy":
		generator = "envoy (sidecar)"
	case "grpc":
		generator = "grpc (proxyless)"
	}
	kv := newTable(w)
	row(kv, "Proxy:", st.Proxy)
	row(kv, "Node ID:", st.NodeID)
	row(kv, "Connection:", e.mask(st.ID)+" ("+mode+" ADS)")
	row(kv, "Connected:", e.when(st.ConnectedAt))
	row(kv, "Cluster:", orDash(st.ClusterID))
	row(kv, "Generator:", generator)
	row(kv, "Proxy version:", orDash(st.IstioVersion))
	row(kv, "Control plane:", orDash(st.Instance))
	if st.Identity != "" {
		row(kv, "Identity:", st.Identity+" (authenticated)")
	}
	if err := kv.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)

	tw := newTable(w)
	row(tw, "TYPE", "STATUS", "RESOURCES", "VERSION SENT", "VERSION ACKED", "NONCE SENT", "NONCE ACKED", "LAST SENT", "LAST ACKED")
	keys := detailTypes(st)
	for _, k := range keys {
		ts := st.Types[k]
		row(tw, typeLabel(k), orDash(ts.Status), strconv.Itoa(ts.Resources),
			orDash(e.mask(ts.VersionSent)), orDash(e.mask(ts.VersionAcked)),
			orDash(e.mask(ts.NonceSent)), orDash(e.mask(ts.NonceAcked)),
			e.ago(ts.LastSent), e.ago(ts.LastAcked))
	}
	if len(keys) == 0 {
		row(tw, "(the proxy has not subscribed to any type yet)")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, k := range keys {
		ts := st.Types[k]
		if ts.LastError == "" {
			continue
		}
		verb := "rejected the last response (NACK)"
		if ts.Status != statusNack {
			verb = "last rejected a response"
		}
		fmt.Fprintf(w, "\n%s: the proxy %s:\n", typeLabel(k), verb)
		for _, line := range strings.Split(strings.TrimRight(ts.LastError, "\n"), "\n") {
			fmt.Fprintf(w, "  %s\n", line)
		}
	}
	return nil
}

// ago is a short "3s ago" for tables.
func (e *env) ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	if e.stable {
		return "<masked>"
	}
	return formatAge(e.now().Sub(t)) + " ago"
}

// maxArgs accepts at most n arguments.
func maxArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) > n {
			return &usageError{fmt.Errorf("%s takes at most %d argument(s), %s; got %d", cmd.CommandPath(), n, what, len(args))}
		}
		return nil
	}
}

// proxyArg requires exactly one proxy name.
func proxyArg(cmd *cobra.Command, args []string) error {
	switch len(args) {
	case 1:
		return nil
	case 0:
		return &usageError{fmt.Errorf("%s needs a proxy name (<pod>.<namespace>); 'sextantctl proxy-status' lists the connected proxies", cmd.CommandPath())}
	}
	return &usageError{fmt.Errorf("%s takes one proxy name (<pod>.<namespace>), got %d arguments", cmd.CommandPath(), len(args))}
}

// completeProxies completes proxy names from the control plane.
func completeProxies(e *env, g *globalFlags) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		c, err := g.client(cmd, e)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		all, err := c.Syncz(cmd.Context())
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var names []string
		for _, st := range all {
			if strings.HasPrefix(st.Proxy, toComplete) {
				names = append(names, st.Proxy)
			}
		}
		sort.Strings(names)
		return names, cobra.ShellCompDirectiveNoFileComp
	}
}

// connectedCount says how many proxies are connected, in words.
func connectedCount(n int) string {
	switch n {
	case 0:
		return "no proxy is"
	case 1:
		return "1 proxy is"
	}
	return strconv.Itoa(n) + " proxies are"
}
