// Package grpclite serves long-lived gRPC streams over HTTP/2 with one
// goroutine per connection and no goroutine per stream.
//
// grpc-go's server runs four goroutines for every connection with one
// stream (reader, writer, keepalive, handler) and keeps per-connection
// buffers; with thousands of mostly idle xDS streams that is most of a
// control plane's memory. Here the connection's goroutine reads frames and
// hands each complete message to the stream's Receiver on the same
// goroutine; any goroutine may Send, which writes frames directly under the
// connection's write lock. Data the peer's flow-control window does not
// admit yet is queued on the stream (by reference: responses assembled
// from shared buffers are never copied) and written when a WINDOW_UPDATE
// arrives. A stream whose queue does not move for WriteTimeout, or grows
// past MaxPending, is closed.
//
// It implements what gRPC clients of a streaming service need: the
// connection preface, SETTINGS (validated and acknowledged at once), flow
// control both ways (the client's window is given back as messages are
// consumed, what a connection holds unconsumed is bounded, overruns are
// FLOW_CONTROL_ERRORs), PING and keepalive, GOAWAY (Server.Shutdown and
// Stream.GoAway drain gracefully), RST_STREAM, length-prefixed messages
// (buffers grow as bytes arrive, never to the size a prefix claims),
// status in trailers, grpc-timeout, request checks as RFC 9113 §8 and
// grpc-go make them (HTTP 415 for a wrong content-type), and a budget for
// resets and floods (GOAWAY ENHANCE_YOUR_CALM). test/transport holds it to
// grpc-go's bar with h2spec and an attack suite (docs/transport.md), and optionally TLS (TLSConfig) with the peer and request
// headers in stream contexts (Metadata), as grpc-go presents them. It does
// not implement compression (a compressed message ends its stream with
// Unimplemented) or server push. Other methods are left to a full gRPC
// server: a connection whose first stream asks for one is handed over,
// with the bytes read so far, to Fallback (HandoffCredentials carry the
// TLS state across); a later call on a connection kept here goes to
// Handler (grpc.Server.ServeHTTP) through an http.Request/ResponseWriter
// bridge.
package grpclite
