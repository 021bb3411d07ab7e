package catest

import (
	"crypto/tls"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/sextant-mesh/sextant/ca/issuer"
	"github.com/sextant-mesh/sextant/internal/grpclite"
)

// ServeTLS runs a gRPC server with the CA's serving certificate (SANs
// istiod.istio-system.svc plus sans), as the secure port does, registers
// the services with register, and stops it when the test ends. It returns
// the listening address on 127.0.0.1.
func ServeTLS(t testing.TB, iss *issuer.Issuer, sans []string, opts []grpc.ServerOption, register func(*grpc.Server)) string {
	return ServeLeanTLS(t, iss, sans, opts, register, nil)
}

// ServeLeanTLS is ServeTLS with, when newLean is set, a grpclite server in
// front, as sextant serve runs the secure port: newLean builds it with the
// serving certificate's TLS config, and the gRPC server behind it serves
// every other call.
func ServeLeanTLS(t testing.TB, iss *issuer.Issuer, sans []string, opts []grpc.ServerOption, register func(*grpc.Server),
	newLean func(cfg *tls.Config) *grpclite.Server) string {
	t.Helper()
	sc, err := iss.NewServingCert(sans, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if newLean == nil {
		gs := grpc.NewServer(append(opts, grpc.Creds(credentials.NewTLS(sc.TLSConfig())))...)
		register(gs)
		done := make(chan struct{})
		go func() { _ = gs.Serve(lis); close(done) }()
		t.Cleanup(func() { gs.Stop(); <-done })
		return lis.Addr().String()
	}
	gs := grpc.NewServer(append(opts, grpc.Creds(grpclite.HandoffCredentials()))...)
	register(gs)
	lean := newLean(sc.TLSConfig())
	gsLis := lean.Front(gs, lis.Addr())
	done := make(chan struct{}, 2)
	go func() { _ = gs.Serve(gsLis); done <- struct{}{} }()
	go func() { _ = lean.Serve(lis); done <- struct{}{} }()
	t.Cleanup(func() {
		lean.Stop()
		gs.Stop()
		<-done
		<-done
	})
	return lis.Addr().String()
}
