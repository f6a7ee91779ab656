package host

import (
	"context"
	"errors"
	"time"

	"github.com/sony/gobreaker/v2"
	"github.com/valyala/fasthttp"

	"github.com/meshgate/meshgate/gateway/filter"
	"github.com/meshgate/meshgate/plugins/sdk"
)

// Request runs the plugin's request phase: it implements filter.Filter. It never blocks
// beyond the call's deadline (the plugin's timeout, capped by r.Deadline), and fails fast,
// with the failure policy, while the process is down or the breaker is open.
func (p *Plugin) Request(r *filter.Request) filter.Verdict {
	lv, inst := p.acquire()
	if inst == nil {
		if lv.shape == nil || lv.shape.onRequest {
			return p.failed(lv, phaseRequest, resultUnavailable, nil)
		}
		return filter.Verdict{}
	}
	defer inst.release()
	if !lv.shape.onRequest {
		return filter.Verdict{}
	}
	start := time.Now()
	deadline, ok := callDeadline(start, lv.timeout, r.Deadline)
	if !ok {
		return p.failed(lv, phaseRequest, resultTimeout, context.DeadlineExceeded)
	}

	c := p.requests.Get().(*requestCall)
	defer p.putRequest(c)
	c.fill(r, lv.shape)
	var err error
	// Execute, not the two-step breaker: its closure stays on the stack, while
	// TwoStepCircuitBreaker.Allow allocates a done func per call.
	_, berr := inst.breaker.Execute(func() (struct{}, error) {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		err = inst.rpc.OnRequest(ctx, &c.in, &c.out)
		cancel()
		return struct{}{}, breakerOutcome(err)
	})
	took := time.Since(start)
	r.Notes.PluginTime += took // for the trace: failed and timed-out calls cost the request too
	if errors.Is(berr, gobreaker.ErrOpenState) || errors.Is(berr, gobreaker.ErrTooManyRequests) {
		return p.failed(lv, phaseRequest, resultCircuitOpen, berr)
	}
	p.met.duration[phaseRequest].Observe(took.Seconds())
	if err != nil {
		return p.failed(lv, phaseRequest, classify(err), err)
	}
	v, err := applyDecision(r, &c.out)
	if err != nil {
		return p.failed(lv, phaseRequest, resultError, err)
	}
	p.calls.Add(1)
	p.met.calls[phaseRequest][resultOK].Inc()
	return v
}

// Response runs the plugin's response phase on the upstream's response headers: it
// implements filter.ResponseFilter. A failure leaves the response as it is, whatever the
// policy: the upstream has answered, and refusing that answer now would hide it rather than
// protect anything. Failures are counted and logged like the request phase's.
func (p *Plugin) Response(r *filter.Request, resp *fasthttp.Response) {
	lv, inst := p.acquire()
	if inst == nil {
		if lv.shape != nil && lv.shape.onResponse {
			p.failed(lv, phaseResponse, resultUnavailable, nil)
		}
		return
	}
	defer inst.release()
	if !lv.shape.onResponse {
		return
	}
	start := time.Now()
	deadline, ok := callDeadline(start, lv.timeout, r.Deadline)
	if !ok {
		p.failed(lv, phaseResponse, resultTimeout, context.DeadlineExceeded)
		return
	}

	c := p.responses.Get().(*responseCall)
	defer p.putResponse(c)
	c.fill(r, resp, lv.shape)
	var err error
	_, berr := inst.breaker.Execute(func() (struct{}, error) {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		err = inst.rpc.OnResponse(ctx, &c.in, &c.out)
		cancel()
		return struct{}{}, breakerOutcome(err)
	})
	took := time.Since(start)
	r.Notes.PluginTime += took
	if errors.Is(berr, gobreaker.ErrOpenState) || errors.Is(berr, gobreaker.ErrTooManyRequests) {
		p.failed(lv, phaseResponse, resultCircuitOpen, berr)
		return
	}
	p.met.duration[phaseResponse].Observe(took.Seconds())
	if err == nil {
		err = applyMutation(resp, &c.out)
	}
	if err != nil {
		p.failed(lv, phaseResponse, classify(err), err)
		return
	}
	p.calls.Add(1)
	p.met.calls[phaseResponse][resultOK].Inc()
}

// acquire returns the current state and, when there is a process, registers a call on it.
// The call counts as in flight before the state is checked again: a swap that stored a new
// state before that check makes this call back off, and one that stores it after will see
// the count when it waits for the old process to drain. Either way no call is sent to a
// process being stopped.
func (p *Plugin) acquire() (*live, *instance) {
	for {
		lv := p.cur.Load()
		inst := lv.inst
		if inst == nil {
			return lv, nil
		}
		inst.inflight.Add(1)
		if now := p.cur.Load(); now.inst == inst {
			return now, inst
		}
		inst.release()
	}
}

// callDeadline is the earlier of the plugin's timeout and the request's deadline; ok is false
// when no time is left.
func callDeadline(now time.Time, timeout time.Duration, request time.Time) (time.Time, bool) {
	d := now.Add(timeout)
	if !request.IsZero() && request.Before(d) {
		d = request
	}
	return d, d.After(now)
}

// breakerOutcome is what the breaker records: a dead process is not a failure of the plugin's
// code (the restart handles it), everything else that went wrong is.
func breakerOutcome(err error) error {
	if err != nil && errors.Is(err, sdk.ErrUnavailable) {
		return errNotPluginFault
	}
	return err
}

func classify(err error) result {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return resultTimeout
	case errors.Is(err, sdk.ErrUnavailable):
		return resultUnavailable
	}
	return resultError
}

// failed counts a call that did not get an answer and returns what the failure policy gives
// the request.
func (p *Plugin) failed(lv *live, ph phase, res result, err error) filter.Verdict {
	p.calls.Add(1)
	p.failures.Add(1)
	p.met.calls[ph][res].Inc()
	if err != nil && res != resultUnavailable && res != resultCircuitOpen {
		// Unavailability is logged once, when the process exits; a breaker that opened
		// follows failures that were logged.
		p.failLog.Warn().Err(err).Str("phase", phaseNames[ph]).Str("result", resultNames[res]).
			Bool("fail_closed", lv.closed && ph == phaseRequest).Msg("plugin call failed")
	}
	if ph != phaseRequest {
		return filter.Verdict{}
	}
	if !lv.closed {
		p.failedOpen.Add(1)
		return filter.Verdict{}
	}
	p.failedClosed.Add(1)
	if res == resultTimeout {
		return filter.Verdict{Status: fasthttp.StatusServiceUnavailable, Reason: ReasonTimeout}
	}
	return filter.Verdict{Status: fasthttp.StatusServiceUnavailable, Reason: ReasonUnavailable}
}

func (p *Plugin) putRequest(c *requestCall) {
	c.reset()
	p.requests.Put(c)
}

func (p *Plugin) putResponse(c *responseCall) {
	c.reset()
	p.responses.Put(c)
}
