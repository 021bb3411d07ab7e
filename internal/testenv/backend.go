package testenv

import (
	"context"
	"net"
	"strconv"
	"testing"

	"google.golang.org/grpc"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
)

// Backend is a real gRPC server that answers UnaryCall with its name.
type Backend struct {
	Name string
	Host string
	Port uint32
	stop func()
}

type echo struct {
	testgrpc.UnimplementedTestServiceServer
	name string
}

func (e *echo) UnaryCall(context.Context, *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	return &testgrpc.SimpleResponse{Hostname: e.name}, nil
}

func (e *echo) EmptyCall(context.Context, *testgrpc.Empty) (*testgrpc.Empty, error) {
	return &testgrpc.Empty{}, nil
}

// StartBackend listens on 127.0.0.1 and serves until the test ends.
func StartBackend(t testing.TB, name string) *Backend {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(gs, &echo{name: name})
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	port := lis.Addr().(*net.TCPAddr).Port
	return &Backend{Name: name, Host: "127.0.0.1", Port: uint32(port), stop: gs.Stop}
}

// PortString returns the port as text.
func (b *Backend) PortString() string { return strconv.FormatUint(uint64(b.Port), 10) }
