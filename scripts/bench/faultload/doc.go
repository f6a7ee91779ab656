// Command faultload is the load generator and observer of the bench harness's (scripts/bench)
// "fault" scenario: it measures what a client sees when one upstream instance
// dies under load behind meshgate.
//
// wrk cannot answer that question: it reports only totals, not when the
// failures happened nor how throughput behaved after the kill. faultload runs
// -conns keep-alive clients for -duration, records every request's completion
// time and outcome, SIGKILLs -kill-pid at -kill-at (so the kill and the
// measurements share one clock), and polls meshgate's admin /clusters every
// -poll to time the ejection of the killed host.
//
//	workers (N keep-alive conns) ──GET──▶ meshgate ──▶ origin 1, 2, 3
//	     │ per-request (time, outcome)        ▲            ▲
//	killer ── SIGKILL at -kill-at ────────────┼────────────┘ (one of them)
//	observer ── GET /clusters every -poll ────┘ (admin port)
//	     │
//	     ▼
//	Markdown report on stdout, one summary line on stderr
//
// The client never retries (fasthttp's idempotent-call retries are off), so
// every failure meshgate lets through is counted.
package main
