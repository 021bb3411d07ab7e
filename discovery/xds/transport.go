package xds

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
)

// Streams have no goroutine of their own in Sextant: the transport's
// receive path calls Connection.receive, push workers send pushes, and a
// stream that must end early (stuck, draining) is closed through its
// transport. With grpc-go that needs a way to make a handler blocked in
// Recv return: the tap below gives every stream a context Sextant can
// cancel, and grpc-go's Recv and Send both give up when it is.

type tapCancelKey struct{}

// tapHandle makes each stream's context cancellable by Sextant.
func tapHandle(ctx context.Context, _ *tap.Info) (context.Context, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	return context.WithValue(ctx, tapCancelKey{}, cancel), nil
}

// grpcStream is an ADS stream on grpc-go's transport.
type grpcStream struct {
	s      *Server
	ss     grpc.ServerStream
	cancel context.CancelCauseFunc
}

func newGRPCStream(s *Server, ss grpc.ServerStream) *grpcStream {
	cancel, _ := ss.Context().Value(tapCancelKey{}).(context.CancelCauseFunc)
	if cancel == nil {
		// A server built without GRPCServerOptions: closing takes effect
		// when the client sends or leaves.
		cancel = func(error) {}
	}
	return &grpcStream{s: s, ss: ss, cancel: cancel}
}

// send bounds a send by SendTimeout: a proxy that does not read its stream
// is closed and counted instead of holding a push worker.
func (g *grpcStream) send(m any) error {
	t := time.AfterFunc(g.s.opts.SendTimeout, func() { g.stuck() })
	err := g.ss.SendMsg(m)
	if !t.Stop() {
		return status.Error(codes.DeadlineExceeded, errStuck.Error())
	}
	return err
}

func (g *grpcStream) stuck() {
	g.s.metrics.StuckStreams.Inc()
	peerAddr := ""
	if pr, ok := peer.FromContext(g.ss.Context()); ok {
		peerAddr = pr.Addr.String()
	}
	g.s.log.Warn("closing stuck stream", "peer", peerAddr)
	g.cancel(errStuck)
}

func (g *grpcStream) close(err error) {
	if err == nil {
		err = context.Canceled
	}
	g.cancel(err)
}

// endStatus is the handler's result once Recv failed with err.
func (g *grpcStream) endStatus(err error) error {
	cause := context.Cause(g.ss.Context())
	if cause == nil || errors.Is(cause, context.Canceled) {
		// The client left or half-closed.
		if errors.Is(err, io.EOF) || errors.Is(err, context.Canceled) || status.Code(err) == codes.Canceled {
			return nil
		}
		return err
	}
	if _, ok := status.FromError(cause); ok {
		return cause
	}
	return status.Error(codes.Unavailable, cause.Error())
}

// pushQueue holds connections with a pending push, each at most once
// (Connection.queued), in arrival order.
type pushQueue struct {
	mu    sync.Mutex
	conns []*Connection
	wake  chan struct{}
}

func newPushQueue() *pushQueue { return &pushQueue{wake: make(chan struct{}, 1)} }

func (q *pushQueue) put(c *Connection) {
	q.mu.Lock()
	q.conns = append(q.conns, c)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// take returns the next connection, waiting for one until ctx is done.
func (q *pushQueue) take(ctx context.Context) *Connection {
	for {
		q.mu.Lock()
		if len(q.conns) > 0 {
			c := q.conns[0]
			q.conns[0] = nil
			q.conns = q.conns[1:]
			if len(q.conns) == 0 {
				q.conns = nil
			}
			more := len(q.conns) > 0
			q.mu.Unlock()
			if more {
				// Pass the wake-up on so idle workers join in.
				select {
				case q.wake <- struct{}{}:
				default:
				}
			}
			return c
		}
		q.mu.Unlock()
		select {
		case <-q.wake:
		case <-ctx.Done():
			return nil
		}
	}
}

// runPushWorkers sends queued pushes until ctx is done.
func (s *Server) runPushWorkers(ctx context.Context) {
	var wg sync.WaitGroup
	for range s.opts.PushWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				c := s.pushq.take(ctx)
				if c == nil {
					return
				}
				c.runPush()
			}
		}()
	}
	wg.Wait()
}
