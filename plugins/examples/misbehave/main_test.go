package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/meshgate/meshgate/plugins/sdk"
)

// crash is left to plugins/sdk's process tests: here it would end the test binary.

func TestParseCommand(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in      string
		want    command
		wantErr string
	}{
		{in: "", want: command{}},
		{in: "none", want: command{}},
		{in: "crash", want: command{kind: crash}},
		{in: " hang ", want: command{kind: hang}},
		{in: "slow=50ms", want: command{kind: slow, delay: 50 * time.Millisecond}},
		{in: "error", want: command{kind: fail}},
		{in: "panic", want: command{kind: panicking}},
		{in: "slow", wantErr: "needs a duration"},
		{in: "slow=fast", wantErr: "not a duration"},
		{in: "slow=-1s", wantErr: "not a duration"},
		{in: "crash=now", wantErr: "takes no argument"},
		{in: "explode", wantErr: `unknown command "explode"`},
	} {
		got, err := parseCommand(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseCommand(%q) err = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("parseCommand(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

func TestCommands(t *testing.T) {
	t.Parallel()
	m := newMisbehave(hclog.NewNullLogger())
	req := func(cmd string) *sdk.Request {
		return &sdk.Request{Headers: []sdk.Header{{Name: "X-Misbehave", Value: cmd}}}
	}

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if _, err := m.OnRequest(ctx, req("hang")); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("hang: err = %v", err)
	}
	// slow gives up at the deadline too, rather than outliving the call.
	ctx2, cancel2 := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel2()
	if _, err := m.OnRequest(ctx2, req("slow=1h")); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("slow past the deadline: err = %v", err)
	}
	if _, err := m.OnRequest(t.Context(), req("error")); err == nil {
		t.Error("error: no error")
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("panic: did not panic")
			}
		}()
		_, _ = m.OnRequest(t.Context(), req("panic"))
	}()
	if d, err := m.OnRequest(t.Context(), &sdk.Request{}); err != nil || d.Responds() {
		t.Errorf("no command: %+v, %v", d, err)
	}
}

func TestConfigure(t *testing.T) {
	t.Parallel()
	m := newMisbehave(hclog.NewNullLogger())
	if err := m.Configure([]byte(`{"mode":"error","every":3,"obey_header":false}`)); err != nil {
		t.Fatal(err)
	}
	if names := m.Describe().Request.Headers.Names; len(names) != 0 {
		t.Errorf("ignoring the header, it asks for %v", names)
	}
	var failed []int
	for i := 1; i <= 6; i++ {
		if _, err := m.OnRequest(t.Context(), &sdk.Request{}); err != nil {
			failed = append(failed, i)
		}
	}
	if len(failed) != 2 || failed[0] != 3 || failed[1] != 6 {
		t.Errorf("every=3 failed calls %v, want [3 6]", failed)
	}
	for _, bad := range []string{`{"mode":"explode"}`, `{"mood":"crash"}`} {
		if err := m.Configure([]byte(bad)); err == nil {
			t.Errorf("Configure(%s) accepted", bad)
		}
	}
}
