package main

import (
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	// The command name may hold spaces and parentheses; fields count from its last ')'.
	line := "4242 (nginx: worker (x)) S 4241 4241 4241 0 -1 4194624 90 0 0 0 17 5 0 0 20 0 1 0 100 1000 200\n"
	ticks, ppid, err := parseStat(line)
	if err != nil {
		t.Fatal(err)
	}
	if ticks != 22 || ppid != 4241 {
		t.Fatalf("ticks, ppid = %d, %d; want 22, 4241", ticks, ppid)
	}
	if _, _, err := parseStat("4242 (short) S 1 2"); err == nil {
		t.Fatal("a truncated line parsed")
	}
}

func TestPct(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i))
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{50, 50}, {99, 99}, {100, 100}, {0, 1}} {
		if got := pct(d, c.p); got != c.want {
			t.Errorf("pct(%g) = %d, want %d", c.p, got, c.want)
		}
	}
	if pct(nil, 50) != 0 {
		t.Error("pct of nothing is not 0")
	}
}

func TestProcFlag(t *testing.T) {
	var p procFlag
	for _, bad := range []string{"x", "=1", "a=0", "a=b", "a b=1"} {
		if p.Set(bad) == nil {
			t.Errorf("Set(%q) accepted", bad)
		}
	}
	if err := p.Set("nginx=12"); err != nil || p.labels[0] != "nginx" || p.pids[0] != 12 {
		t.Fatalf("Set(nginx=12): %v %+v", err, p)
	}
}
