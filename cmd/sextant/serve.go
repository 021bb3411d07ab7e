package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	runtimedebug "runtime/debug"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/reflection"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/sextant-mesh/sextant/discovery/jwks"
	"github.com/sextant-mesh/sextant/discovery/trafficapi"
	"github.com/sextant-mesh/sextant/discovery/xds"
	"github.com/sextant-mesh/sextant/internal/buildinfo"
	"github.com/sextant-mesh/sextant/internal/grpclite"
	"github.com/sextant-mesh/sextant/model"
	"github.com/sextant-mesh/sextant/registry/etcd"
	"github.com/sextant-mesh/sextant/registry/file"
	"github.com/sextant-mesh/sextant/registry/kube"
	"github.com/sextant-mesh/sextant/webhook"
)

// trafficSetter changes traffic states in one registry.
type trafficSetter func(ctx context.Context, namespace, host string, selector map[string]string, state string) error

type serveOptions struct {
	configDir      string
	maxConfigFile  string
	xdsAddr        string
	secureAddr     string
	monitoringAddr string
	caDir          string
	trustDomain    string
	debounceAfter  time.Duration
	debounceMax    time.Duration
	logLevel       string
	pushThrottle   int
	sendTimeout    time.Duration
	keepaliveShare float64
	registryOnly   bool
	drainWindow    time.Duration
	xdsTransport   string
	newStreamsRate int
	etcd           *etcdOptions
	secure         *secureOptions
	sdsRotateAt    float64
	webhook        *webhookOptions
	kube           *kubeOptions
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "sextant",
		Short:         "Sextant: an Istio-compatible service-mesh control plane",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(suggestFlag)
	root.AddCommand(newServeCommand(), &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Run:   func(cmd *cobra.Command, _ []string) { fmt.Fprintln(cmd.OutOrStdout(), buildinfo.Get()) },
	})
	return root
}

func newServeCommand() *cobra.Command {
	o := &serveOptions{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the control plane: watch registries, serve xDS, expose monitoring",
		Long: `Run the control plane.

Sextant reads services and Istio config from its registries (a directory of
YAML with --config-dir), merges them into one versioned model and serves it
over ADS (state of the world and delta) on --xds-addr. Readiness, metrics and
debug endpoints are on --monitoring-addr. SIGTERM drains and exits.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runServe(cmd.Context(), o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.configDir, "config-dir", "", "directory of Kubernetes/Istio YAML to serve (watched for changes)")
	f.StringVar(&o.maxConfigFile, "max-config-file-size", "4Mi", "largest file read from --config-dir (bytes, or a quantity such as 4Mi); a larger one is refused with an error and its last good version served")
	f.StringVar(&o.xdsAddr, "xds-addr", ":15010", "plaintext gRPC address for ADS and delta ADS")
	f.StringVar(&o.secureAddr, "secure-addr", ":15012", "TLS gRPC address (CA API, ADS with SDS); needs --ca-dir")
	f.StringVar(&o.monitoringAddr, "monitoring-addr", ":15014", "HTTP address for /ready, /metrics and /debug/*")
	f.StringVar(&o.caDir, "ca-dir", "", "directory holding CA state")
	f.StringVar(&o.trustDomain, "trust-domain", "cluster.local", "SPIFFE trust domain")
	f.DurationVar(&o.debounceAfter, "debounce-after", 100*time.Millisecond, "quiet period before changes are pushed")
	f.DurationVar(&o.debounceMax, "debounce-max", 10*time.Second, "longest a change may wait for a push")
	f.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	f.IntVar(&o.pushThrottle, "push-concurrency", 100, "proxies pushed concurrently")
	f.DurationVar(&o.sendTimeout, "send-timeout", 20*time.Second, "close a stream whose send blocks this long")
	f.Float64Var(&o.keepaliveShare, "keepalive-share", 0.01, "share of a service's traffic its keepalive endpoints get")
	f.BoolVar(&o.registryOnly, "outbound-registry-only", false, "outboundTrafficPolicy REGISTRY_ONLY (default ALLOW_ANY)")
	f.DurationVar(&o.drainWindow, "drain-window", 5*time.Second, "on SIGTERM, spread closing proxy streams over this window")
	f.StringVar(&o.xdsTransport, "xds-transport", "grpc", "HTTP/2 transport for ADS on --xds-addr and --secure-addr: grpc (grpc-go for everything; the default until lean has parity, docs/transport.md) or lean (one goroutine per connection; other gRPC calls are handed to grpc-go on the same port)")
	o.etcd = addEtcdFlags(f)
	o.secure = addSecureFlags(f)
	o.webhook = addWebhookFlags(f)
	o.kube = addKubeFlags(f)
	f.Float64Var(&o.sdsRotateAt, "sds-rotate-at", 0.5, "re-issue and push an SDS workload certificate when this share of its lifetime is left")
	f.IntVar(&o.newStreamsRate, "max-new-streams-per-second", 1000, "admit new xDS streams at this rate; the rest wait up to 10s, then get RESOURCE_EXHAUSTED")
	return cmd
}

func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	switch strings.ToLower(level) {
	case "debug":
		l = slog.LevelDebug
	case "info":
		l = slog.LevelInfo
	case "warn", "warning":
		l = slog.LevelWarn
	case "error":
		l = slog.LevelError
	default:
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}

func runServe(ctx context.Context, o *serveOptions) error {
	log, err := newLogger(o.logLevel)
	if err != nil {
		return err
	}
	mesh := model.DefaultMeshConfig()
	mesh.TrustDomain = o.trustDomain
	mesh.KeepaliveShare = o.keepaliveShare
	mesh.OutboundRegistryOnly = o.registryOnly
	// In a cluster, the mesh ConfigMap wins, as in istiod.
	if mesh, err = o.kube.meshConfig(ctx, mesh, log); err != nil {
		return err
	}
	o.trustDomain = mesh.TrustDomain

	agg := model.NewAggregator()
	var runners []func(context.Context) error
	setters := map[string]trafficSetter{}
	if o.configDir != "" {
		st, err := os.Stat(o.configDir)
		if err != nil {
			return fmt.Errorf("--config-dir: %w", err)
		}
		if !st.IsDir() {
			return fmt.Errorf("--config-dir %s is not a directory", o.configDir)
		}
		q, err := resource.ParseQuantity(o.maxConfigFile)
		if err != nil || q.Value() <= 0 {
			return fmt.Errorf("--max-config-file-size %q: want a positive size such as 4Mi or 4194304", o.maxConfigFile)
		}
		reg := file.New(o.configDir, agg.NewShard("file"), log)
		reg.SetMaxFileSize(q.Value())
		runners = append(runners, reg.Run)
		setters[file.RegistryName] = reg.SetTrafficState
	}
	// Before the CA starts: its root ConfigMap publisher asks the registry
	// which namespaces are in the mesh.
	if run, set, on, err := o.kube.registry(agg, log); err != nil {
		return err
	} else if on {
		runners = append(runners, run)
		setters[kube.RegistryName] = set
	}
	if run, set, on, err := o.etcd.registry(agg, log); err != nil {
		return err
	} else if on {
		runners = append(runners, run)
		setters[etcd.RegistryName] = set
	}
	if len(runners) == 0 {
		log.Warn("no registry configured (--config-dir, --etcd-endpoints, --kubeconfig or in-cluster); serving an empty mesh")
	}

	host, _ := os.Hostname()
	srv := xds.New(agg, xds.Options{
		Logger:              log,
		Mesh:                mesh,
		DebounceAfter:       o.debounceAfter,
		DebounceMax:         o.debounceMax,
		PushConcurrency:     o.pushThrottle,
		SendTimeout:         o.sendTimeout,
		InstanceID:          host,
		NewStreamsPerSecond: o.newStreamsRate,
	})
	// The traffic API writes state changes into the registry each service
	// came from; it reads the served model from the xDS server.
	traffic := trafficapi.New(trafficapi.Options{
		Snapshots:      srv,
		KeepaliveShare: mesh.KeepaliveShare,
		AdminToken:     os.Getenv("SEXTANT_ADMIN_TOKEN"),
		Set: func(ctx context.Context, registry, namespace, host string, selector map[string]string, state string) error {
			set, ok := setters[registry]
			if !ok {
				return fmt.Errorf("registry %q cannot change traffic states", registry)
			}
			return set(ctx, namespace, host, selector, state)
		},
	})

	// RequestAuthentication jwksUris: fetched here and inlined, as istiod
	// does, so sidecars never reach identity providers themselves.
	runners = append(runners, jwks.New(agg.NewShard(jwks.ShardName), srv.Snapshot, jwks.Options{Logger: log}).Run)

	if os.Getenv("GOGC") == "" {
		// Most of the heap is long-lived per-proxy state; collecting at
		// 50% growth instead of 100% keeps RSS near the live heap for a
		// small CPU cost (docs/performance.md). GOGC overrides it.
		runtimedebug.SetGCPercent(50)
	}
	if o.xdsTransport != "lean" && o.xdsTransport != "grpc" {
		return fmt.Errorf("--xds-transport %q: must be lean or grpc", o.xdsTransport)
	}
	xdsLis, err := net.Listen("tcp", o.xdsAddr)
	if err != nil {
		return fmt.Errorf("--xds-addr: %w", err)
	}
	monLis, err := net.Listen("tcp", o.monitoringAddr)
	if err != nil {
		xdsLis.Close()
		return fmt.Errorf("--monitoring-addr: %w", err)
	}
	gs := grpc.NewServer(xds.GRPCServerOptions()...)
	srv.Register(gs)
	reflection.Register(gs)
	// With the lean transport, ADS streams stay on grpclite and any other
	// call (reflection, grpcurl) is handed to grpc-go on the same port.
	var lean *grpclite.Server
	gsLis := xdsLis
	if o.xdsTransport == "lean" {
		lean = srv.NewLeanServer(log)
		gsLis = lean.Front(gs, xdsLis.Addr())
	}
	monMux := http.NewServeMux()
	monMux.Handle("/", srv.Handler())
	monMux.Handle(trafficapi.Path, traffic)
	hs := &http.Server{Handler: monMux, ReadHeaderTimeout: 10 * time.Second}
	var sec *secureServer
	if o.caDir != "" {
		if o.sdsRotateAt <= 0 || o.sdsRotateAt >= 1 {
			xdsLis.Close()
			monLis.Close()
			return fmt.Errorf("--sds-rotate-at %v: must be between 0 and 1", o.sdsRotateAt)
		}
		so := *o.secure
		so.dir, so.addr, so.trustDomain, so.kube = o.caDir, o.secureAddr, o.trustDomain, o.kube
		if o.xdsTransport == "lean" {
			so.leanXDS = func(cfg *tls.Config) *grpclite.Server {
				return srv.NewSecureLeanServer(cfg, log)
			}
		}
		if sec, err = startSecure(ctx, so, srv.Metrics().Registry, log, srv.RegisterSecure); err != nil {
			xdsLis.Close()
			monLis.Close()
			return err
		}
		srv.SetSecurity(sec.xdsSecurity(o.sdsRotateAt))
	} else {
		log.Info("no --ca-dir: the secure port (CA, SDS) is not served", "secure-addr", o.secureAddr)
	}
	// The validating webhook (Istio's /validate on 15017) runs the same
	// validation as the file registry and sextantctl analyze; its
	// certificate comes from the CA unless files are given.
	wh, err := webhook.New(webhook.Options{Registry: srv.Metrics().Registry, Logger: log})
	if err != nil {
		return err
	}
	var getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	if sec != nil {
		getCert = sec.Serving.GetCertificate
	}
	runWebhook, err := o.webhook.server(wh, getCert, log)
	if err != nil {
		xdsLis.Close()
		monLis.Close()
		if sec != nil {
			sec.Close()
		}
		return err
	}

	runCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	g, gctx := errgroup.WithContext(runCtx)
	for _, run := range runners {
		g.Go(func() error { return run(gctx) })
	}
	g.Go(func() error { return srv.Run(gctx) })
	if sec != nil {
		g.Go(func() error { return sec.Run(gctx) })
	}
	if runWebhook != nil {
		g.Go(func() error { return runWebhook(gctx) })
	}
	g.Go(func() error {
		if err := gs.Serve(gsLis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("xds server: %w", err)
		}
		return nil
	})
	if lean != nil {
		g.Go(func() error {
			if err := lean.Serve(xdsLis); err != nil && !errors.Is(err, grpclite.ErrServerClosed) {
				return fmt.Errorf("xds server: %w", err)
			}
			return nil
		})
	}
	g.Go(func() error {
		if err := hs.Serve(monLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("monitoring server: %w", err)
		}
		return nil
	})
	log.Info("sextant serving", "xds", xdsLis.Addr().String(), "monitoring", monLis.Addr().String(), "config-dir", o.configDir)

	select {
	case <-ctx.Done():
		log.Info("shutting down: draining proxy streams", "window", o.drainWindow)
	case <-gctx.Done():
	}
	dctx, dcancel := context.WithTimeout(context.Background(), o.drainWindow+5*time.Second)
	defer dcancel()
	srv.Drain(dctx, o.drainWindow)
	if lean != nil {
		lean.Stop()
	}
	stopped := make(chan struct{})
	go func() { gs.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-dctx.Done():
		gs.Stop()
	}
	_ = hs.Shutdown(dctx)
	cancel()
	err = g.Wait()
	log.Info("stopped")
	return err
}
