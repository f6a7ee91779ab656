package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/valyala/fasthttp"
)

// instance is one registered instance of a service; its origin is its identity.
type instance struct {
	id     string
	origin int
}

// service is the bench's own record of what it registered; only the goroutine changing a
// service touches it.
type service struct {
	name string
	uri  string // http://sNNNN.bench/ : the Host meshgate routes on
	inst []instance
	gen  int // instances registered so far, for distinct IDs
}

// benchState is what the phases share.
type benchState struct {
	o       runOptions
	agent   *api.Agent
	probe   *fasthttp.HostClient
	admin   *http.Client
	ports   []int // origin number → port
	svcs    []*service
	log     io.Writer
	results results
}

func bench(ctx context.Context, o runOptions, stdout, stderr io.Writer) error {
	origins, err := startOrigins(o.origins)
	if err != nil {
		return err
	}
	defer origins.close()

	tr := &http.Transport{MaxIdleConnsPerHost: o.workers * 2, IdleConnTimeout: 30 * time.Second}
	defer tr.CloseIdleConnections()
	client, err := api.NewClient(&api.Config{Address: o.consul, Scheme: "http",
		Transport: tr, HttpClient: &http.Client{Transport: tr, Timeout: 10 * time.Second}})
	if err != nil {
		return fmt.Errorf("consul client: %w", err)
	}
	s := &benchState{
		o:     o,
		agent: client.Agent(),
		probe: &fasthttp.HostClient{
			Addr:         o.proxy,
			MaxConns:     o.pollers * 2,
			ReadTimeout:  5 * time.Second,
			WriteTimeout: 5 * time.Second,
			// A probe that fails is counted, never retried: a retry would hide an error and
			// shift the timing.
			MaxIdemponentCallAttempts: 1,
			RetryIfErr:                func(*fasthttp.Request, int, error) (bool, bool) { return false, false },
		},
		admin: &http.Client{Timeout: 5 * time.Second},
		ports: origins.ports,
		log:   stderr,
	}
	defer s.probe.CloseIdleConnections()
	s.svcs = make([]*service, o.services)
	for i := range s.svcs {
		name := serviceName(i, o.services)
		s.svcs[i] = &service{name: name, uri: "http://" + serviceHost(name) + "/"}
	}

	steps := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"register", s.register},
		{"wait for meshgate", s.waitEndpoints},
		{"idle", s.measureIdle},
		{"sequential changes", s.sequential},
		{"burst", s.burst},
		{"final state", s.final},
	}
	for _, st := range steps {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("%s: %w", st.name, err)
		}
		s.logf("phase: %s", st.name)
		if err := st.fn(ctx); err != nil {
			return fmt.Errorf("%s: %w", st.name, err)
		}
	}
	s.results.report(stdout, o)
	fmt.Fprintln(stderr, s.results.summary())
	return nil
}

func (s *benchState) logf(format string, args ...any) {
	fmt.Fprintf(s.log, "%s consulbench: %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

// origins are the listeners instances point at; each answers its own number.
type origins struct {
	ports   []int
	servers []*fasthttp.Server
	wg      sync.WaitGroup
}

func startOrigins(n int) (*origins, error) {
	o := &origins{}
	for k := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			o.close()
			return nil, fmt.Errorf("origin %d: %w", k, err)
		}
		body := []byte(strconv.Itoa(k))
		srv := &fasthttp.Server{
			Handler:     func(c *fasthttp.RequestCtx) { c.SetBody(body) },
			ReadTimeout: 30 * time.Second,
			// Longer than meshgate's upstream idle timeout, as the design asks of origins.
			IdleTimeout: 5 * time.Minute,
		}
		o.ports = append(o.ports, ln.Addr().(*net.TCPAddr).Port)
		o.servers = append(o.servers, srv)
		o.wg.Go(func() { _ = srv.Serve(ln) })
	}
	return o, nil
}

func (o *origins) close() {
	for _, srv := range o.servers {
		_ = srv.Shutdown()
	}
	o.wg.Wait()
}

// addInstance registers the next instance of sv on origin k.
func (s *benchState) addInstance(sv *service, k int) error {
	sv.gen++
	in := instance{id: sv.name + "-" + strconv.Itoa(sv.gen), origin: k}
	err := s.agent.ServiceRegister(&api.AgentServiceRegistration{
		ID: in.id, Name: sv.name, Address: "127.0.0.1", Port: s.ports[k],
	})
	if err != nil {
		return fmt.Errorf("register %s: %w", in.id, err)
	}
	sv.inst = append(sv.inst, in)
	return nil
}

// change deregisters sv's oldest instance, then registers one on an origin neither current
// instance uses, and returns that origin: the identity whose first answer proves the change
// reached traffic.
func (s *benchState) change(sv *service) (int, error) {
	k := nextOrigin(sv.inst, len(s.ports))
	old := sv.inst[0]
	if err := s.agent.ServiceDeregister(old.id); err != nil {
		return 0, fmt.Errorf("deregister %s: %w", old.id, err)
	}
	sv.inst = slices.Delete(sv.inst, 0, 1)
	if err := s.addInstance(sv, k); err != nil {
		return 0, err
	}
	return k, nil
}

// nextOrigin picks the first origin after the newest instance's that no instance uses.
func nextOrigin(inst []instance, n int) int {
	start := 0
	if len(inst) > 0 {
		start = inst[len(inst)-1].origin + 1
	}
	for d := range n {
		k := (start + d) % n
		if !slices.ContainsFunc(inst, func(in instance) bool { return in.origin == k }) {
			return k
		}
	}
	return start % n // unreachable while n > len(inst)
}

// forEach runs fn for every service index on s.o.workers goroutines and returns the first
// error; the remaining work is skipped after an error or when ctx ends.
func (s *benchState) forEach(ctx context.Context, idx []int, fn func(i int) error) error {
	next := atomic.Int64{}
	var once sync.Once
	var first error
	var wg sync.WaitGroup
	for range s.o.workers {
		wg.Go(func() {
			for {
				j := int(next.Add(1) - 1)
				if j >= len(idx) || ctx.Err() != nil {
					return
				}
				if err := fn(idx[j]); err != nil {
					once.Do(func() { first = err })
					next.Store(int64(len(idx)))
					return
				}
			}
		})
	}
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}

func (s *benchState) register(ctx context.Context) error {
	n := len(s.ports)
	start := time.Now()
	regCtx, cancel := context.WithTimeout(ctx, s.o.setupTimeout)
	defer cancel()
	err := s.forEach(regCtx, allIndexes(len(s.svcs)), func(i int) error {
		sv := s.svcs[i]
		if err := s.addInstance(sv, i%n); err != nil {
			return err
		}
		return s.addInstance(sv, (i+1)%n)
	})
	if err != nil {
		return err
	}
	s.results.registerTook = time.Since(start)
	s.results.setupStart = start
	s.logf("registered %d instances in %s", 2*len(s.svcs), round(s.results.registerTook))
	return nil
}

// waitEndpoints waits until meshgate's metrics show both instances of every service, then
// probes every route once per instance so each proves the chain works and meshgate holds an
// upstream connection to each instance, as a warmed-up proxy would during the idle window.
func (s *benchState) waitEndpoints(ctx context.Context) error {
	deadline := s.results.setupStart.Add(s.o.setupTimeout)
	var last metricsSnapshot
	for {
		m, err := scrape(ctx, s.admin, s.o.admin)
		if err == nil {
			last = m
			if countAtLeast(m.endpoints, 2) == len(s.svcs) {
				break
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s meshgate has 2 endpoints for %d of %d services (last scrape error: %v)",
				s.o.setupTimeout, countAtLeast(last.endpoints, 2), len(s.svcs), err)
		}
		if !sleepCtx(ctx, 100*time.Millisecond) {
			return ctx.Err()
		}
	}
	s.results.syncedAfter = time.Since(s.results.setupStart)
	// Before any traffic meshgate holds only the watches: no upstream connections yet, so this
	// and the idle figure separate the cost of watching from that of the warmed pools.
	mem, err := readMemory(s.o.pid)
	if err != nil {
		return fmt.Errorf("meshgate: %w", err)
	}
	s.results.beforeTraffic = mem
	s.logf("meshgate has both endpoints of all %d services, %s after registration began; RSS %.1f MB",
		len(s.svcs), round(s.results.syncedAfter), megabytes(mem.RSSKB))

	var errs atomic.Int64
	err = s.forEach(ctx, allIndexes(len(s.svcs)), func(i int) error {
		sv := s.svcs[i]
		seen := map[int]bool{}
		for range 4 * len(sv.inst) {
			k, err := s.get(sv.uri)
			if err != nil {
				errs.Add(1)
				continue
			}
			seen[k] = true
			if len(seen) == len(sv.inst) {
				break
			}
		}
		for _, in := range sv.inst {
			if !seen[in.origin] {
				return fmt.Errorf("%s: origin %d (instance %s) never answered through meshgate", sv.name, in.origin, in.id)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.results.probeErrors += errs.Load()
	return nil
}

// get sends one probe and returns the answering origin.
func (s *benchState) get(uri string) (int, error) {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(uri)
	if err := s.probe.Do(req, resp); err != nil {
		return 0, err
	}
	if resp.StatusCode() != fasthttp.StatusOK {
		return 0, fmt.Errorf("status %d: %.100s", resp.StatusCode(), resp.Body())
	}
	k, err := strconv.Atoi(string(resp.Body()))
	if err != nil {
		return 0, fmt.Errorf("body %.100q is not an origin number", resp.Body())
	}
	return k, nil
}

// measureIdle samples CPU and memory over an idle window: no probes, no registrations.
func (s *benchState) measureIdle(ctx context.Context) error {
	if !sleepCtx(ctx, s.o.settle) {
		return ctx.Err()
	}
	pids := []int{s.o.pid}
	if s.o.consulPID > 0 {
		pids = append(pids, s.o.consulPID)
	}
	before := make([]uint64, len(pids))
	for i, pid := range pids {
		t, err := cpuTicks(pid)
		if err != nil {
			return fmt.Errorf("pid %d: %w", pid, err)
		}
		before[i] = t
	}
	start := time.Now()
	if !sleepCtx(ctx, s.o.idle) {
		return ctx.Err()
	}
	window := time.Since(start)
	for i, pid := range pids {
		t, err := cpuTicks(pid)
		if err != nil {
			return fmt.Errorf("pid %d: %w", pid, err)
		}
		mem, err := readMemory(pid)
		if err != nil {
			return fmt.Errorf("pid %d: %w", pid, err)
		}
		u := usage{
			window: window,
			cpu:    float64(t-before[i]) / float64(s.o.clkTck) / window.Seconds(),
			mem:    mem,
		}
		if i == 0 {
			s.results.idle = u
		} else {
			s.results.consulIdle, s.results.haveConsul = u, true
		}
	}
	s.logf("idle: meshgate RSS %.1f MB, CPU %.2f%% of a core", megabytes(s.results.idle.mem.RSSKB), 100*s.results.idle.cpu)
	return nil
}

// sequential changes distinct random services one at a time, probing the route every poll
// until the new instance answers.
func (s *benchState) sequential(ctx context.Context) error {
	rng := rand.New(rand.NewPCG(s.o.seed, s.o.seed^0x9e3779b97f4a7c15))
	order := rng.Perm(len(s.svcs))[:s.o.changes]
	for n, i := range order {
		sv := s.svcs[i]
		t0 := time.Now()
		want, err := s.change(sv)
		if err != nil {
			return err
		}
		s.results.seqAPI = append(s.results.seqAPI, time.Since(t0))
		deadline := t0.Add(s.o.timeout)
		for {
			k, err := s.get(sv.uri)
			now := time.Now()
			if err != nil {
				s.results.probeErrors++
			} else if k == want {
				s.results.seq = append(s.results.seq, now.Sub(t0))
				break
			}
			if now.After(deadline) {
				s.results.seqTimeouts++
				s.logf("%s: origin %d not seen within %s", sv.name, want, s.o.timeout)
				break
			}
			if !sleepCtx(ctx, s.o.poll) {
				return ctx.Err()
			}
		}
		if (n+1)%25 == 0 {
			s.logf("sequential: %d/%d changes", n+1, len(order))
		}
	}
	return nil
}

// burst changes every service at once (s.o.workers concurrent API calls) while s.o.pollers
// goroutines probe the changed services, each owning every pollers-th service, until each
// answers from its new instance.
func (s *benchState) burst(ctx context.Context) error {
	n := len(s.svcs)
	type track struct {
		issued atomic.Bool
		t0     time.Time     // before the deregister call; written before issued is set
		api    time.Duration // the deregister + register calls
		want   int
		done   bool          // poller-owned from here on
		t1     time.Time     // completion of the first answer from want
		last   time.Time     // start of the previous probe
		gap    time.Duration // between the last two probes before done
	}
	tr := make([]track, n)
	bctx, cancel := context.WithTimeout(ctx, s.o.burstTimeout)
	defer cancel()

	start := time.Now()
	var probeErrs atomic.Int64
	var pw sync.WaitGroup
	for p := range s.o.pollers {
		pw.Go(func() {
			var mine []int
			for i := p; i < n; i += s.o.pollers {
				mine = append(mine, i)
			}
			left := len(mine)
			for left > 0 && bctx.Err() == nil {
				probed := false
				for _, i := range mine {
					t := &tr[i]
					if t.done || !t.issued.Load() {
						continue
					}
					probed = true
					ps := time.Now()
					k, err := s.get(s.svcs[i].uri)
					if err != nil {
						probeErrs.Add(1)
					} else if k == t.want {
						t.done, t.t1 = true, time.Now()
						if !t.last.IsZero() {
							t.gap = ps.Sub(t.last)
						}
						left--
					}
					t.last = ps
				}
				if !probed && !sleepCtx(bctx, time.Millisecond) {
					return
				}
			}
		})
	}
	issueErr := s.forEach(bctx, allIndexes(n), func(i int) error {
		t := &tr[i]
		t.t0 = time.Now()
		k, err := s.change(s.svcs[i])
		if err != nil {
			return err
		}
		t.want, t.api = k, time.Since(t.t0)
		t.issued.Store(true)
		return nil
	})
	s.results.burstIssue = time.Since(start)
	if issueErr != nil {
		cancel()
	}
	pw.Wait()
	if issueErr != nil {
		return issueErr
	}
	s.results.burstN = n
	var last time.Time
	for i := range tr {
		t := &tr[i]
		if !t.done {
			s.results.burstTimeouts++
			continue
		}
		s.results.burst = append(s.results.burst, t.t1.Sub(t.t0))
		s.results.burstAPI = append(s.results.burstAPI, t.api)
		s.results.burstFromStart = append(s.results.burstFromStart, t.t1.Sub(start))
		if t.gap > 0 {
			s.results.burstGaps = append(s.results.burstGaps, t.gap)
		}
		if t.t1.After(last) {
			last = t.t1
		}
	}
	s.results.probeErrors += probeErrs.Load()
	if !last.IsZero() {
		s.results.burstDone = last.Sub(start)
	}
	s.logf("burst: %d changes issued in %s, %d/%d converged, last after %s",
		n, round(s.results.burstIssue), n-s.results.burstTimeouts, n, round(s.results.burstDone))
	return nil
}

// final records memory after the changes and the discovery metrics' view of the run.
func (s *benchState) final(ctx context.Context) error {
	mem, err := readMemory(s.o.pid)
	if err != nil {
		return fmt.Errorf("meshgate: %w", err)
	}
	s.results.after = mem
	m, err := scrape(ctx, s.admin, s.o.admin)
	if err != nil {
		return fmt.Errorf("scrape meshgate: %w", err)
	}
	if !m.haveWatchers {
		return errors.New("meshgate exports no meshgate_discovery_consul_watches")
	}
	s.results.metrics = m
	return nil
}

func allIndexes(n int) []int {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	return idx
}

func countAtLeast(m map[string]float64, want float64) int {
	n := 0
	for _, v := range m {
		if v >= want {
			n++
		}
	}
	return n
}

// sleepCtx waits d or until ctx ends; it reports whether ctx is still live.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
