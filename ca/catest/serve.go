package catest

import (
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/sextant-mesh/sextant/ca/issuer"
)

// ServeTLS runs a gRPC server with the CA's serving certificate (SANs
// istiod.istio-system.svc plus sans), as the secure port does, registers
// the services with register, and stops it when the test ends. It returns
// the listening address on 127.0.0.1.
func ServeTLS(t testing.TB, iss *issuer.Issuer, sans []string, opts []grpc.ServerOption, register func(*grpc.Server)) string {
	t.Helper()
	sc, err := iss.NewServingCert(sans, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(append(opts, grpc.Creds(credentials.NewTLS(sc.TLSConfig())))...)
	register(gs)
	done := make(chan struct{})
	go func() { _ = gs.Serve(lis); close(done) }()
	t.Cleanup(func() { gs.Stop(); <-done })
	return lis.Addr().String()
}
