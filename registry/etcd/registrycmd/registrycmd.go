// Package registrycmd is `sextantctl registry`: register an instance in the
// etcd registry and keep it registered while the command runs, deregister
// instances, and list what is registered. It lives outside cmd/sextantctl so
// that tests can run the command in-process.
package registrycmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	v1 "github.com/sextant-mesh/sextant/api/etcd/v1"
	"github.com/sextant-mesh/sextant/registry/etcd/etcdclient"
)

// PasswordEnv is the environment variable --etcd-password defaults to.
const PasswordEnv = "SEXTANT_ETCD_PASSWORD"

// connFlags are the flags every subcommand shares.
type connFlags struct {
	cfg     etcdclient.Config
	timeout time.Duration
}

// probeTimeout bounds the reachability check of the etcd endpoints: an
// etcd that is not running refuses at once, an unreachable host answers
// nothing, and either way the user hears about it within seconds rather
// than after --timeout with "context deadline exceeded".
const probeTimeout = 3 * time.Second

func (f *connFlags) dial() (*etcdclient.Client, error) {
	cfg := f.cfg
	if cfg.Password == "" && cfg.Username != "" {
		cfg.Password = os.Getenv(PasswordEnv)
	}
	if err := probe(cfg.Endpoints, min(probeTimeout, f.timeout)); err != nil {
		return nil, err
	}
	return etcdclient.Dial(cfg)
}

// probe checks that at least one endpoint accepts a TCP connection.
func probe(endpoints []string, timeout time.Duration) error {
	if len(endpoints) == 0 {
		return fmt.Errorf("no etcd endpoints: set --etcd-endpoints host:port[,…]")
	}
	deadline := time.Now().Add(timeout)
	var errs []string
	for _, ep := range endpoints {
		hostPort := ep
		if u, err := url.Parse(ep); err == nil && u.Host != "" {
			hostPort = u.Host
		}
		conn, err := net.DialTimeout("tcp", hostPort, time.Until(deadline))
		if err == nil {
			conn.Close()
			return nil
		}
		var nerr net.Error
		if errors.As(err, &nerr) && nerr.Timeout() {
			errs = append(errs, ep+": no answer")
		} else {
			var oerr *net.OpError
			if errors.As(err, &oerr) && oerr.Err != nil {
				err = oerr.Err
			}
			errs = append(errs, ep+": "+err.Error())
		}
	}
	return fmt.Errorf("cannot reach etcd at %s (%s); is etcd running there? set --etcd-endpoints",
		strings.Join(endpoints, ","), strings.Join(errs, "; "))
}

// describe turns an etcd request timeout into words.
func (f *connFlags) describe(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("etcd at %s did not answer within --timeout %s: %w", strings.Join(f.cfg.Endpoints, ","), f.timeout, err)
	}
	return err
}

func (f *connFlags) ctx(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, f.timeout)
}

// NewCommand returns the `registry` command and its subcommands.
func NewCommand() *cobra.Command {
	f := &connFlags{}
	cmd := &cobra.Command{
		Use:   "registry",
		Short: "Register, deregister and list instances in the etcd registry",
		Long: `Manage the etcd registry: services and instances outside Kubernetes.

Records are stored as JSON under --etcd-prefix (see docs/etcd-registry.md):
  <prefix>/v1/services/<namespace>/<host>
  <prefix>/v1/instances/<namespace>/<host>/<address>[:<id>]`,
	}
	pf := cmd.PersistentFlags()
	pf.StringSliceVar(&f.cfg.Endpoints, "etcd-endpoints", []string{"127.0.0.1:2379"}, "etcd endpoints, host:port[,…]")
	pf.StringVar(&f.cfg.Prefix, "etcd-prefix", v1.DefaultPrefix, "key prefix of the registry's records")
	pf.StringVar(&f.cfg.CAFile, "etcd-ca-file", "", "CA certificates to verify etcd's (turns TLS on)")
	pf.StringVar(&f.cfg.CertFile, "etcd-cert-file", "", "client certificate for etcd (turns TLS on)")
	pf.StringVar(&f.cfg.KeyFile, "etcd-key-file", "", "client key for etcd")
	pf.StringVar(&f.cfg.Username, "etcd-username", "", "etcd user name")
	pf.StringVar(&f.cfg.Password, "etcd-password", "", "etcd password (default $"+PasswordEnv+" when --etcd-username is set)")
	pf.DurationVar(&f.timeout, "timeout", 10*time.Second, "how long to wait for etcd")
	cmd.AddCommand(newRegister(f), newDeregister(f), newList(f))
	return cmd
}

func newRegister(f *connFlags) *cobra.Command {
	var (
		reg    etcdclient.Registration
		ports  []string
		labels []string
	)
	cmd := &cobra.Command{
		Use:   "register --namespace NS --service HOST --address IP --port NAME=NUMBER [--label k=v]… [--ttl 10s]",
		Short: "Register an instance and keep it registered until interrupted",
		Long: `Register an instance of a service and keep its lease alive until
interrupted (SIGINT or SIGTERM), then deregister it. If the service has no
record yet, one is created from --service and --port (port protocols derive
from the names: http, http-web, grpc, tcp-…). If this command is killed, the
instance disappears when its lease expires (--ttl).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			var err error
			if reg.Service.Ports, reg.Instance.Ports, err = parsePorts(ports); err != nil {
				return err
			}
			if reg.Instance.Labels, err = parseLabels(labels); err != nil {
				return err
			}
			c, err := f.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			reg.Logger = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			rctx, cancel := f.ctx(ctx)
			r, err := c.Register(rctx, reg)
			cancel()
			if err != nil {
				return f.describe(err)
			}
			out := cmd.OutOrStdout()
			if r.ServiceCreated() {
				fmt.Fprintf(out, "created service %s\n", v1.ServiceKey(c.Prefix(), reg.Service.Namespace, reg.Service.Host))
			}
			fmt.Fprintf(out, "registered %s (lease %x, TTL %s); interrupt to deregister\n", r.Key(), int64(r.Lease()), reg.TTL)
			<-ctx.Done()
			cctx, cancel := f.ctx(context.Background())
			defer cancel()
			if err := r.Close(cctx); err != nil {
				return err
			}
			fmt.Fprintf(out, "deregistered %s\n", r.Key())
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&reg.Service.Namespace, "namespace", "default", "namespace of the service")
	fl.StringVar(&reg.Service.Host, "service", "", "host name of the service (required)")
	fl.StringVar(&reg.Instance.Address, "address", "", "IP address of the instance (required)")
	fl.StringArrayVar(&ports, "port", nil, "port NAME=NUMBER; repeat for several (required)")
	fl.StringArrayVar(&labels, "label", nil, "instance label k=v; repeat for several")
	fl.DurationVar(&reg.TTL, "ttl", etcdclient.DefaultTTL, "lease TTL: how long the instance outlives this process")
	fl.StringVar(&reg.ID, "id", "", "instance id, to register several instances at one address")
	fl.StringVar(&reg.Instance.Locality, "locality", "", "region/zone/subzone of the instance")
	fl.Uint32Var(&reg.Instance.Weight, "weight", 0, "load-balancing weight (0 means 1)")
	for _, name := range []string{"service", "address", "port"} {
		_ = cmd.MarkFlagRequired(name)
	}
	return cmd
}

// parsePorts turns NAME=NUMBER flags into service ports and instance ports.
func parsePorts(specs []string) ([]v1.Port, map[string]uint32, error) {
	var ports []v1.Port
	inst := map[string]uint32{}
	for _, s := range specs {
		name, num, ok := strings.Cut(s, "=")
		n, err := strconv.ParseUint(num, 10, 16)
		if !ok || name == "" || err != nil || n == 0 {
			return nil, nil, fmt.Errorf("--port %q: want NAME=NUMBER with NUMBER in 1-65535", s)
		}
		if _, dup := inst[name]; dup {
			return nil, nil, fmt.Errorf("--port %q: port %s given twice", s, name)
		}
		ports = append(ports, v1.Port{Name: name, Number: uint32(n)})
		inst[name] = uint32(n)
	}
	return ports, inst, nil
}

func parseLabels(specs []string) (map[string]string, error) {
	if len(specs) == 0 {
		return nil, nil
	}
	out := map[string]string{}
	for _, s := range specs {
		k, v, ok := strings.Cut(s, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--label %q: want KEY=VALUE", s)
		}
		out[k] = v
	}
	return out, nil
}

func newDeregister(f *connFlags) *cobra.Command {
	var ns, host, addr string
	cmd := &cobra.Command{
		Use:   "deregister --namespace NS --service HOST --address IP",
		Short: "Delete the instances of a service at an address",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := f.ctx(cmd.Context())
			defer cancel()
			keys, err := c.Deregister(ctx, ns, host, addr)
			if err != nil {
				return f.describe(err)
			}
			if len(keys) == 0 {
				return fmt.Errorf("instance %q not found: no instance of service %s/%s has that address", addr, ns, host)
			}
			for _, k := range keys {
				fmt.Fprintf(cmd.OutOrStdout(), "deregistered %s\n", k)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&ns, "namespace", "default", "namespace of the service")
	fl.StringVar(&host, "service", "", "host name of the service (required)")
	fl.StringVar(&addr, "address", "", "IP address of the instance (required)")
	for _, name := range []string{"service", "address"} {
		_ = cmd.MarkFlagRequired(name)
	}
	return cmd
}

func newList(f *connFlags) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "list [-o table|json|yaml]",
		Short: "List the registered services and instances",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch output {
			case "table", "json", "yaml":
			default:
				return fmt.Errorf("unknown output format %q: this command prints a table (the default), json or yaml", output)
			}
			c, err := f.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := f.ctx(cmd.Context())
			defer cancel()
			l, err := c.List(ctx)
			if err != nil {
				return f.describe(err)
			}
			out := cmd.OutOrStdout()
			switch output {
			case "json":
				b, err := json.MarshalIndent(l, "", "  ")
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(out, "%s\n", b)
				return err
			case "yaml":
				b, err := yaml.Marshal(l)
				if err != nil {
					return err
				}
				_, err = out.Write(b)
				return err
			}
			for _, inv := range l.Invalid {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: invalid record %s: %s\n", inv.Key, inv.Error)
			}
			return writeTable(out, l)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table, json or yaml")
	return cmd
}

// writeTable prints one row per instance, and one per service without
// instances, aligned.
func writeTable(w io.Writer, l *etcdclient.Listing) error {
	type svcID struct{ ns, host string }
	ports := map[svcID]string{}
	for _, s := range l.Services {
		var ps []string
		for _, p := range s.Service.Ports {
			ps = append(ps, p.Name+":"+strconv.FormatUint(uint64(p.Number), 10))
		}
		ports[svcID{s.Service.Namespace, s.Service.Host}] = strings.Join(ps, ",")
	}
	var rows [][]string
	seen := map[svcID]bool{}
	for _, in := range l.Instances {
		id := svcID{in.Namespace, in.Host}
		seen[id] = true
		sp, ok := ports[id]
		if !ok {
			sp = "<no record>"
		}
		health := in.Instance.Health
		if health == "" {
			health = v1.HealthHealthy
		}
		rows = append(rows, []string{in.Namespace, in.Host, sp, in.Name, kv(in.Instance.Ports), health, kv(in.Instance.Labels)})
	}
	for _, s := range l.Services {
		id := svcID{s.Service.Namespace, s.Service.Host}
		if !seen[id] {
			rows = append(rows, []string{id.ns, id.host, ports[id], "<none>", "-", "-", "-"})
		}
	}
	sort.SliceStable(rows, func(i, j int) bool {
		if rows[i][0] != rows[j][0] {
			return rows[i][0] < rows[j][0]
		}
		return rows[i][1] < rows[j][1]
	})
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tSERVICE\tSERVICE PORTS\tINSTANCE\tPORTS\tHEALTH\tLABELS")
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

func kv[V any](m map[string]V) string {
	if len(m) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%v", k, m[k])
	}
	return strings.Join(parts, ",")
}
