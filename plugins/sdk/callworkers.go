package sdk

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	pb "github.com/meshgate/meshgate/plugins/proto"
)

// keepWorkers is how many idle call goroutines a plugin's socket keeps. More than a proxy
// on a few cores has in flight to one plugin at once; fewer than would hold much memory.
const keepWorkers = 16

// socketTask is one call read off the socket: req or resp is set.
type socketTask struct {
	id   uint64
	req  *pb.RequestPhase
	resp *pb.ResponsePhase
}

// callWorkers runs the socket's calls, each on a goroutine of its own, reusing goroutines
// that finished a call. Why: a new goroutine starts on a small stack that a handler (the
// SDK's translation, protobuf, the plugin's own code) grows on every call, and growing it
// copies it: that was 8% of a plugin's CPU under load. A goroutine kept for the next call
// keeps its grown stack. It also takes over no work: a call finds an idle goroutine or gets
// a new one, never waits for one.
type callWorkers struct {
	ctx  context.Context //nolint:containedctx // the socket's lifetime: idle goroutines exit when it ends
	s    *server
	w    *socketWriter
	work chan socketTask // unbuffered: a send succeeds only into an idle goroutine
	idle atomic.Int64    // goroutines waiting on work
}

func newCallWorkers(ctx context.Context, s *server, w *socketWriter) *callWorkers {
	return &callWorkers{ctx: ctx, s: s, w: w, work: make(chan socketTask)}
}

// start runs t on an idle goroutine, or on a new one.
func (c *callWorkers) start(t socketTask) {
	select {
	case c.work <- t:
	default:
		go c.worker(t)
	}
}

// worker runs t, then the calls handed to it, until keepWorkers others are idle or the socket
// ends.
func (c *callWorkers) worker(t socketTask) {
	for {
		c.run(t)
		if c.idle.Add(1) > keepWorkers {
			c.idle.Add(-1)
			return
		}
		select {
		case t = <-c.work:
			c.idle.Add(-1)
		case <-c.ctx.Done():
			c.idle.Add(-1)
			return
		}
	}
}

// run makes call t and replies.
func (c *callWorkers) run(t socketTask) {
	if t.req != nil {
		ctx := newCallCtx(c.ctx, t.req.GetTimeoutNanos())
		out, err := c.s.OnRequest(ctx, t.req)
		ctx.release()
		c.w.reply(t.id, kindDecision, out, err)
		return
	}
	ctx := newCallCtx(c.ctx, t.resp.GetTimeoutNanos())
	out, err := c.s.OnResponse(ctx, t.resp)
	ctx.release()
	c.w.reply(t.id, kindMutation, out, err)
}

// callCtx is a socket call's context: its parent's values and cancellation, and the deadline
// the host gave the call (timeout_nanos), as on the gRPC streams. It starts the timer that
// context.WithTimeout starts for every call only when the handler asks for Done: most
// handlers never wait on their context, and the timer (made, armed and stopped on every
// call) was 7% of a plugin's CPU under load. Err and Deadline need no timer: they compare
// the clock with the deadline.
type callCtx struct {
	context.Context //nolint:containedctx // it is a context: the parent it derives from
	deadline        time.Time
	once            sync.Once
	timed           atomic.Pointer[context.Context] // set by Done: the parent with the deadline
	cancel          context.CancelFunc
}

func newCallCtx(parent context.Context, timeoutNanos uint64) *callCtx {
	c := &callCtx{Context: parent}
	if timeoutNanos != 0 {
		c.deadline = time.Now().Add(time.Duration(min(timeoutNanos, uint64(1<<63-1))))
	}
	return c
}

// Deadline is the host's deadline for the call (none when it gave none).
func (c *callCtx) Deadline() (time.Time, bool) {
	if c.deadline.IsZero() {
		return c.Context.Deadline()
	}
	return c.deadline, true
}

// Done closes when the deadline passes or the parent ends.
func (c *callCtx) Done() <-chan struct{} {
	if c.deadline.IsZero() {
		return c.Context.Done()
	}
	c.once.Do(func() {
		ctx, cancel := context.WithDeadline(c.Context, c.deadline)
		c.cancel = cancel
		c.timed.Store(&ctx)
	})
	return (*c.timed.Load()).Done()
}

// Err is the parent's error, or context.DeadlineExceeded once the deadline has passed.
func (c *callCtx) Err() error {
	if t := c.timed.Load(); t != nil {
		return (*t).Err()
	}
	if err := c.Context.Err(); err != nil {
		return err
	}
	if !c.deadline.IsZero() && !time.Now().Before(c.deadline) {
		return context.DeadlineExceeded
	}
	return nil
}

// release stops the timer, if Done started one.
func (c *callCtx) release() {
	if c.timed.Load() != nil {
		c.once.Do(func() {}) // the Do that stored timed has returned, so cancel is set
		c.cancel()
	}
}
