package xds

import (
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

// Both transports ping a connection silent for keepaliveTime and drop it
// when the ping is not answered within keepaliveTimeout.
const (
	keepaliveTime    = 30 * time.Second
	keepaliveTimeout = 10 * time.Second
)

// GRPCServerOptions are the transport settings for xDS ports. Per-connection
// buffers dominate memory with thousands of idle proxies, so they are small
// and gRPC shares write buffers between writes (its default).
func GRPCServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		CodecOption(),
		grpc.InTapHandle(tapHandle),
		grpc.MaxConcurrentStreams(100000),
		grpc.MaxRecvMsgSize(4 << 20),
		grpc.ReadBufferSize(8 << 10),
		grpc.WriteBufferSize(8 << 10),
		grpc.InitialWindowSize(1 << 20),
		grpc.InitialConnWindowSize(1 << 20),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: keepaliveTime, Timeout: keepaliveTimeout}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
	}
}
