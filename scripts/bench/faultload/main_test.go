package main

import (
	"strings"
	"testing"
	"time"
)

func TestParseOptions(t *testing.T) {
	t.Parallel()
	req := []string{"-url", "http://127.0.0.1:1/", "-admin", "127.0.0.1:2", "-host", "127.0.0.1:3", "-kill-pid", "42"}
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"defaults", req, ""},
		{"missing pid", req[:6], "required"},
		{"kill after window start", append(append([]string{}, req...), "-kill-at", "10s"), "kill-at"},
		{"window past duration", append(append([]string{}, req...), "-duration", "10s"), "kill-at"},
		{"zero conns", append(append([]string{}, req...), "-conns", "0"), "conns"},
		{"zero poll", append(append([]string{}, req...), "-poll", "0s"), "poll"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o, err := parseOptions(tt.args)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("parseOptions: %v", err)
				}
				if o.duration != 20*time.Second || o.killAt != 5*time.Second || o.afterFrom != 10*time.Second || o.conns != 64 {
					t.Fatalf("defaults = %+v", o)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	t.Parallel()
	o := options{duration: 4 * time.Second, killAt: time.Second, afterFrom: 2 * time.Second}
	ok := func(at time.Duration) record { return record{at: at, kind: outcomeOK} }
	var w1, w2 workerResult
	w1.records = []record{ok(100 * time.Millisecond), ok(900 * time.Millisecond), ok(1500 * time.Millisecond)}
	w1.fail("status 502", 1200*time.Millisecond)
	w2.records = []record{ok(2 * time.Second), ok(3999 * time.Millisecond), ok(4100 * time.Millisecond)}
	w2.fail("status 502", 1100*time.Millisecond)
	w2.fail("transport: reset", 2500*time.Millisecond)

	s := summarize([]workerResult{w1, w2}, o)
	tests := []struct {
		name      string
		got, want float64
	}{
		{"total", float64(s.total), 9},
		{"failed", float64(s.failed), 3},
		// Two successes in [0, 1s).
		{"rps before", s.rpsBefore, 2},
		// Two successes in [2s, 4s): the one at 4.1 s is past the window
		// and failures are not throughput.
		{"rps after", s.rpsAfter, 1},
		{"buckets", float64(len(s.perSecond)), 5},
		{"second 1 ok", float64(s.perSecond[1].ok), 1},
		{"second 1 failed", float64(s.perSecond[1].failed), 2},
		{"502 count", float64(s.failures["status 502"].count), 2},
		{"502 first ms", ms(s.failures["status 502"].first), 1100},
		{"502 last ms", ms(s.failures["status 502"].last), 1200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.got != tt.want {
				t.Fatalf("got %v, want %v", tt.got, tt.want)
			}
		})
	}
}

func TestFirstAfter(t *testing.T) {
	t.Parallel()
	trans := []transition{
		{at: 10 * time.Millisecond, present: true, healthy: true},
		// An ejection before the kill (not ours) must not be reported.
		{at: 1 * time.Second, present: true, ejected: true},
		{at: 2 * time.Second, present: true, healthy: true},
		{notBefore: 5 * time.Second, at: 5013 * time.Millisecond, present: true, ejected: true},
	}
	ejected := func(t transition) bool { return t.ejected }
	tests := []struct {
		name     string
		killedAt time.Duration
		wantOK   bool
		wantAt   time.Duration
	}{
		{"after kill", 4 * time.Second, true, 5013 * time.Millisecond},
		{"kill after every change", 6 * time.Second, false, 0},
		{"answer at the kill instant counts", 5013 * time.Millisecond, true, 5013 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok := firstAfter(trans, tt.killedAt, ejected)
			if ok != tt.wantOK || got.at != tt.wantAt {
				t.Fatalf("firstAfter = (%v, %v), want (%v, %v)", got.at, ok, tt.wantAt, tt.wantOK)
			}
		})
	}
}
