// Command sextantctl inspects a running Sextant control plane and checks
// config files offline.
//
// It talks to the control plane's monitoring port (--addr, SEXTANT_ADDR,
// default localhost:15014) over the JSON debug API of api/debug, so it needs
// no credentials beyond network access to that port.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

const (
	// addrEnv names the environment variable that sets --addr.
	addrEnv = "SEXTANT_ADDR"
	// defaultAddr is the monitoring address of a local `sextant serve`.
	defaultAddr = "localhost:15014"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, newEnv())
	stop()
	os.Exit(code)
}

// run executes one command line and returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, e *env) int {
	root := newRootCommand(e)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "Error:", err)
	if isUsageError(err) && cmd != nil {
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
	}
	return 1
}

// usageError marks errors in how the command was called.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func isUsageError(err error) bool {
	var u *usageError
	if errors.As(err, &u) {
		return true
	}
	// cobra's own argument and flag errors.
	msg := err.Error()
	return strings.HasPrefix(msg, "unknown command") || strings.HasPrefix(msg, "unknown flag") ||
		strings.HasPrefix(msg, "unknown shorthand flag") || strings.Contains(msg, "arg(s)") ||
		strings.HasPrefix(msg, "invalid argument") || strings.HasPrefix(msg, "flag needs an argument")
}

// env is what commands take from their surroundings; tests replace it.
type env struct {
	getenv func(string) string
	now    func() time.Time
	// stable masks values that change from run to run (ages, times, nonces,
	// versions, connection ids) so tests can compare output with golden
	// files. Users never set it.
	stable bool
}

func newEnv() *env { return &env{getenv: os.Getenv, now: time.Now} }

// globalFlags are the root command's persistent flags.
type globalFlags struct {
	addr    string
	timeout time.Duration
}

func newRootCommand(e *env) *cobra.Command {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:   "sextantctl",
		Short: "Inspect a running Sextant control plane and check config offline",
		Long: `sextantctl inspects a running Sextant control plane and checks config files.

It reads the control plane's monitoring port, the address given to
'sextant serve --monitoring-addr'. Point it there with --addr host:port or the
SEXTANT_ADDR environment variable; the default is localhost:15014.

Proxies are named <pod>.<namespace>, as in istioctl.`,
		Example: `  # Which proxies are connected, and did they accept their config?
  sextantctl proxy-status

  # What one proxy was sent: clusters, routes, endpoints
  sextantctl proxy-config cluster demo-client.default
  sextantctl proxy-config route demo-client.default -o wide

  # Check config files before they reach the server (no server needed)
  sextantctl analyze examples/mesh

  # Talk to a control plane on another address
  SEXTANT_ADDR=10.0.0.5:15014 sextantctl push-log`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.addr, "addr", defaultAddr, "monitoring address (host:port) of the control plane; overrides "+addrEnv)
	pf.DurationVar(&g.timeout, "timeout", 10*time.Second, "how long to wait for the control plane to answer")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })

	root.AddCommand(
		newProxyStatusCommand(e, g),
		newProxyConfigCommand(e, g),
		newAuthzCommand(e, g),
		newAnalyzeCommand(e),
		newVersionCommand(e, g),
		newPushLogCommand(e, g),
		newTrafficCommand(e, g),
		newRegistryCommand(),
	)
	return root
}

// client returns a debug API client for the address the flags and the
// environment select.
func (g *globalFlags) client(cmd *cobra.Command, e *env) (*debugClient, error) {
	addr, source := g.addr, "--addr"
	if f := cmd.Flags().Lookup("addr"); f == nil || !f.Changed {
		if v := strings.TrimSpace(e.getenv(addrEnv)); v != "" {
			addr, source = v, addrEnv
		} else {
			addr, source = defaultAddr, "default"
		}
	}
	return newDebugClient(addr, source, g.timeout)
}
