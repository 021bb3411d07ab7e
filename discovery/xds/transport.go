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

// queue is an unbounded FIFO that worker goroutines take from: connections
// with a pending push (each at most once, see Connection.queued), or
// streams waiting to be opened.
type queue[T any] struct {
	mu    sync.Mutex
	items []T
	wake  chan struct{}
}

type pushQueue = queue[*Connection]

func newQueue[T any]() *queue[T] { return &queue[T]{wake: make(chan struct{}, 1)} }

func newPushQueue() *pushQueue { return newQueue[*Connection]() }

func (q *queue[T]) put(c T) {
	q.mu.Lock()
	q.items = append(q.items, c)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// take returns the next item, waiting for one until ctx is done (then ok
// is false).
func (q *queue[T]) take(ctx context.Context) (c T, ok bool) {
	var zero T
	for {
		q.mu.Lock()
		if len(q.items) > 0 {
			c := q.items[0]
			q.items[0] = zero
			q.items = q.items[1:]
			if len(q.items) == 0 {
				q.items = nil
			}
			more := len(q.items) > 0
			q.mu.Unlock()
			if more {
				// Pass the wake-up on so idle workers join in.
				select {
				case q.wake <- struct{}{}:
				default:
				}
			}
			return c, true
		}
		q.mu.Unlock()
		select {
		case <-q.wake:
		case <-ctx.Done():
			return zero, false
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
				c, ok := s.pushq.take(ctx)
				if !ok {
					return
				}
				c.runPush()
			}
		}()
	}
	// Openers admit new lean-transport streams (parse the node, wait for
	// admission), so neither a connection's goroutine nor a push worker
	// waits for that, and a connect storm does not leave a goroutine per
	// waiting stream behind.
	for range openers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				open, ok := s.openq.take(ctx)
				if !ok {
					return
				}
				open()
			}
		}()
	}
	wg.Wait()
}

// openers is how many goroutines admit new lean-transport streams.
const openers = 32
