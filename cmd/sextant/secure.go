package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/sextant-mesh/sextant/ca/authn"
	"github.com/sextant-mesh/sextant/ca/issuer"
	"github.com/sextant-mesh/sextant/ca/sds"
	caserver "github.com/sextant-mesh/sextant/ca/server"
	"github.com/sextant-mesh/sextant/ca/trust"
	"github.com/sextant-mesh/sextant/discovery/xds"
	"github.com/sextant-mesh/sextant/internal/grpclite"
)

// secureOptions configure the CA and the secure port. dir, addr and
// trustDomain are set by serve from its --ca-dir, --secure-addr and
// --trust-domain; the rest come from addSecureFlags.
type secureOptions struct {
	dir         string
	addr        string
	trustDomain string
	// kube adds the in-cluster CA parts (Secrets, TokenReview, root
	// ConfigMap) when the Kubernetes registry is on.
	kube *kubeOptions

	maxWorkloadCertTTL time.Duration
	jwtIssuers         []string
	tokenFile          string
	keyType            string
	sans               []string
	csrRate            float64
	csrBurst           int
	authnFailRate      float64
	authnFailBurst     int
	// stopGrace bounds the graceful stop of the secure gRPC server.
	stopGrace time.Duration
	// leanXDS, if set, serves ADS with grpclite over TLS; other calls (the
	// CA) are handed to the gRPC server.
	leanXDS func(cfg *tls.Config) *grpclite.Server
}

// addSecureFlags registers the CA flags on f.
func addSecureFlags(f *pflag.FlagSet) *secureOptions {
	o := &secureOptions{stopGrace: 5 * time.Second}
	f.DurationVar(&o.maxWorkloadCertTTL, "max-workload-cert-ttl", issuer.MaxTTL,
		"longest workload certificate the CA issues; longer requests are refused (InvalidArgument), as in Istio")
	f.StringArrayVar(&o.jwtIssuers, "jwt-issuer", nil,
		"ISSUER=JWKS_FILE: trust JWTs of ISSUER (audience istio-ca), verified with the JWKS in JWKS_FILE, for CreateCertificate (repeatable)")
	f.StringVar(&o.tokenFile, "ca-token-file", "",
		"development only: file of \"token namespace serviceaccount\" lines accepted as bearer tokens by the CA")
	f.StringVar(&o.keyType, "ca-key-type", string(trust.ECDSAP256),
		"key of a newly generated self-signed root: ecdsa-p256, rsa-2048 or rsa-4096 (an existing key is kept)")
	f.StringSliceVar(&o.sans, "secure-san", nil,
		"extra DNS names or IPs for the secure port's certificate, besides "+issuer.IstiodSAN+" (repeatable, comma-separated)")
	f.Float64Var(&o.csrRate, "ca-csr-rate", float64(caserver.DefaultRateLimit),
		"certificate requests per second allowed per identity (0: unlimited)")
	f.IntVar(&o.csrBurst, "ca-csr-burst", caserver.DefaultBurst, "burst of certificate requests allowed per identity")
	f.Float64Var(&o.authnFailRate, "authn-failure-rate", authn.DefaultFailureRate,
		"failed authentications per second allowed per peer address on the secure port, after the burst; beyond it calls are refused without authenticating")
	f.IntVar(&o.authnFailBurst, "authn-failure-burst", authn.DefaultFailureBurst,
		"failed authentications in a row allowed per peer address on the secure port")
	return o
}

// secureServer is the CA plus the TLS gRPC port that serves it and ADS.
type secureServer struct {
	Trust   *trust.Store
	Issuer  *issuer.Issuer // for SDS: Issue, Roots, WatchRoots
	CA      *caserver.Service
	Serving *issuer.ServingCert
	// Authn authenticates callers of the CA and of ADS on the secure port:
	// the chain behind a Guard (token size, failures per peer).
	Authn *authn.Guard
	kube  *kubeCA

	lis       net.Listener
	gs        *grpc.Server
	lean      *grpclite.Server // nil: grpc-go serves lis
	gsLis     net.Listener     // what gs serves: lis, or grpclite's handoff
	log       *slog.Logger
	stopGrace time.Duration
}

// startSecure opens (or creates) the CA in o.dir, builds the CA service and
// listens on o.addr with TLS. registerXDS registers ADS on the secure gRPC
// server. Nothing is served until Run. Errors name the flag or file at fault.
func startSecure(ctx context.Context, o secureOptions, reg *prometheus.Registry, log *slog.Logger, registerXDS func(*grpc.Server)) (*secureServer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if o.dir == "" {
		return nil, errors.New("--ca-dir is required for the secure port")
	}
	keyType, err := trust.ParseKeyType(o.keyType)
	if err != nil {
		return nil, fmt.Errorf("--ca-key-type: %w", err)
	}
	if o.maxWorkloadCertTTL <= 0 {
		return nil, fmt.Errorf("--max-workload-cert-ttl %s: must be positive", o.maxWorkloadCertTTL)
	}
	limit := rate.Limit(o.csrRate)
	switch {
	case o.csrRate < 0:
		return nil, fmt.Errorf("--ca-csr-rate %v: must not be negative", o.csrRate)
	case o.csrRate == 0:
		limit = rate.Inf
	}
	log = log.With("component", "ca")

	topts := trust.Options{TrustDomain: o.trustDomain, KeyType: keyType, Logger: log}
	var kca *kubeCA
	if o.kube != nil {
		if kca, err = o.kube.ca(ctx, o.dir, func(d string) (*trust.Store, error) { return trust.Open(d, topts) }, log); err != nil {
			return nil, err
		}
	}
	store, err := trust.Open(o.dir, topts)
	if err != nil {
		return nil, fmt.Errorf("--ca-dir: %w", err)
	}
	iss, err := issuer.New(store, issuer.Options{TrustDomain: o.trustDomain, MaxTTL: o.maxWorkloadCertTTL})
	if err != nil {
		return nil, fmt.Errorf("--trust-domain: %w", err)
	}

	chain := authn.Chain{authn.NewClientCert(iss.TrustDomain(), iss)}
	if len(o.jwtIssuers) > 0 {
		var issuers []authn.JWTIssuer
		for _, s := range o.jwtIssuers {
			ji, err := authn.ParseJWTIssuer(s)
			if err != nil {
				return nil, err
			}
			issuers = append(issuers, ji)
		}
		j, err := authn.NewJWT(issuers, authn.JWTOptions{TrustDomain: iss.TrustDomain(), Logger: log})
		if err != nil {
			return nil, fmt.Errorf("--jwt-issuer: %w", err)
		}
		chain = append(chain, j)
	}
	if o.tokenFile != "" {
		tf, err := authn.NewTokenFile(o.tokenFile, iss.TrustDomain())
		if err != nil {
			return nil, fmt.Errorf("--ca-token-file: %w", err)
		}
		chain = append(chain, tf)
		log.Warn("--ca-token-file: static CA tokens are for development only", "file", o.tokenFile)
	}
	if kca != nil {
		chain = append(chain, authn.NewKubeJWT(kca.Reviewer, iss.TrustDomain(), nil))
	}
	if len(chain) == 1 {
		log.Warn("neither --jwt-issuer nor --ca-token-file is set: the CA only renews certificates it issued (client certificates)")
	}

	guard, err := authn.NewGuard(chain, authn.GuardOptions{FailureRate: o.authnFailRate, FailureBurst: o.authnFailBurst, Registry: reg})
	if err != nil {
		return nil, fmt.Errorf("--authn-failure-rate, --authn-failure-burst: %w", err)
	}
	svc, err := caserver.New(iss, caserver.Options{Authenticators: guard, RateLimit: limit, Burst: o.csrBurst, Registry: reg, Logger: log})
	if err != nil {
		return nil, err
	}
	serving, err := iss.NewServingCert(o.sans, 0, log)
	if err != nil {
		return nil, fmt.Errorf("--secure-san: %w", err)
	}

	lis, err := net.Listen("tcp", o.addr)
	if err != nil {
		return nil, fmt.Errorf("--secure-addr: %w", err)
	}
	// With grpclite, ADS streams are served there over TLS and every other
	// connection (CreateCertificate) is handed, TLS done, to grpc-go.
	creds := credentials.NewTLS(serving.TLSConfig())
	var lean *grpclite.Server
	var gsLis net.Listener = lis
	if o.leanXDS != nil {
		lean, creds = o.leanXDS(serving.TLSConfig()), grpclite.HandoffCredentials()
	}
	gs := grpc.NewServer(append(xds.GRPCServerOptions(), grpc.Creds(creds))...)
	svc.Register(gs)
	if registerXDS != nil {
		registerXDS(gs)
	}
	if lean != nil {
		gsLis = lean.Front(gs, lis.Addr())
	}
	if o.stopGrace <= 0 {
		o.stopGrace = 5 * time.Second
	}
	return &secureServer{Trust: store, Issuer: iss, CA: svc, Serving: serving, Authn: guard, kube: kca, lis: lis, gs: gs,
		lean: lean, gsLis: gsLis, log: log, stopGrace: o.stopGrace}, nil
}

// xdsSecurity adapts the CA for the xDS server: the same authenticators
// authenticate ADS streams on the secure port, and the issuer provides SDS
// secrets (default, ROOTCA). rotateAt is the share of a certificate's life
// left when it is replaced.
func (s *secureServer) xdsSecurity(rotateAt float64) (xds.Authenticator, xds.SecretSource) {
	return sds.Authenticator(s.Authn), sds.Source{Issuer: s.Issuer, RotateAt: rotateAt}
}

// Addr is the secure port's listening address.
func (s *secureServer) Addr() net.Addr { return s.lis.Addr() }

// Run serves the secure port and checks the CA for rotation until ctx
// ends, then stops gracefully (bounded by stopGrace; ADS streams should have
// been drained by then).
func (s *secureServer) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.Trust.Run(gctx) })
	if s.kube != nil {
		g.Go(func() error { return s.kube.Run(gctx, s.Trust) })
	}
	g.Go(func() error {
		if err := s.gs.Serve(s.gsLis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("secure server: %w", err)
		}
		return nil
	})
	if s.lean != nil {
		g.Go(func() error {
			if err := s.lean.Serve(s.lis); err != nil && !errors.Is(err, grpclite.ErrServerClosed) {
				return fmt.Errorf("secure server: %w", err)
			}
			return nil
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		if s.lean != nil {
			s.lean.Stop()
		}
		stopped := make(chan struct{})
		go func() { s.gs.GracefulStop(); close(stopped) }()
		t := time.NewTimer(s.stopGrace)
		defer t.Stop()
		select {
		case <-stopped:
		case <-t.C:
			s.gs.Stop()
			<-stopped
		}
		return nil
	})
	s.log.Info("secure port serving (CA, ADS)", "addr", s.lis.Addr().String(), "sans", s.Serving.DNSNames())
	return g.Wait()
}

// Close releases the port when Run will not be called (a later startup
// step failed).
func (s *secureServer) Close() {
	if s.lean != nil {
		s.lean.Stop()
	}
	s.gs.Stop()
	s.lis.Close()
}
