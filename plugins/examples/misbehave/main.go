package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/meshgate/meshgate/plugins/sdk"
)

func main() {
	sdk.Serve(newMisbehave(sdk.NewLogger()))
}

// header carries a per-request command.
const header = "X-Misbehave"

// crashExitCode is what a commanded crash exits with, so a test can tell it from a real one.
const crashExitCode = 3

type kind int

const (
	none kind = iota
	crash
	hang
	slow
	fail
	panicking
)

type command struct {
	kind  kind
	delay time.Duration // slow
}

// parseCommand reads "crash", "hang", "slow=50ms", "error", "panic" (or "" for nothing).
func parseCommand(s string) (command, error) {
	name, arg, hasArg := strings.Cut(strings.TrimSpace(s), "=")
	var c command
	switch name {
	case "", "none":
		c.kind = none
	case "crash":
		c.kind = crash
	case "hang":
		c.kind = hang
	case "error":
		c.kind = fail
	case "panic":
		c.kind = panicking
	case "slow":
		c.kind = slow
		if !hasArg {
			return command{}, errors.New("slow needs a duration: slow=50ms")
		}
		d, err := time.ParseDuration(arg)
		if err != nil || d < 0 {
			return command{}, fmt.Errorf("slow=%s: not a duration", arg)
		}
		c.delay = d
		return c, nil
	default:
		return command{}, fmt.Errorf("unknown command %q (want crash, hang, slow=DURATION, error or panic)", name)
	}
	if hasArg {
		return command{}, fmt.Errorf("%s takes no argument", name)
	}
	return c, nil
}

type config struct {
	mode       command
	every      uint64
	obeyHeader bool
}

type misbehave struct {
	log   hclog.Logger
	cfg   atomic.Pointer[config]
	calls atomic.Uint64
}

var (
	_ sdk.Configurer     = (*misbehave)(nil)
	_ sdk.RequestHandler = (*misbehave)(nil)
)

func newMisbehave(log hclog.Logger) *misbehave {
	m := &misbehave{log: log}
	m.cfg.Store(defaultConfig())
	return m
}

// defaultConfig behaves well unless a request's header says otherwise.
func defaultConfig() *config { return &config{every: 1, obeyHeader: true} }

func (m *misbehave) Describe() sdk.Capabilities {
	caps := sdk.Capabilities{Name: "misbehave", Version: "1.0.0"}
	if m.cfg.Load().obeyHeader {
		caps.Request.Headers = sdk.HeaderNames(header)
	}
	return caps
}

func (m *misbehave) Configure(raw []byte) error {
	c := defaultConfig()
	if len(bytes.TrimSpace(raw)) > 0 {
		var rc struct {
			Mode       string `json:"mode"`
			Every      uint64 `json:"every"`
			ObeyHeader *bool  `json:"obey_header"`
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&rc); err != nil {
			return fmt.Errorf("misbehave: %w", err)
		}
		mode, err := parseCommand(rc.Mode)
		if err != nil {
			return fmt.Errorf("misbehave: mode: %w", err)
		}
		c.mode = mode
		if rc.Every > 0 {
			c.every = rc.Every
		}
		if rc.ObeyHeader != nil {
			c.obeyHeader = *rc.ObeyHeader
		}
	}
	m.cfg.Store(c)
	return nil
}

func (m *misbehave) OnRequest(ctx context.Context, r *sdk.Request) (sdk.Decision, error) {
	c := m.cfg.Load()
	cmd := command{}
	if n := m.calls.Add(1); c.mode.kind != none && n%c.every == 0 {
		cmd = c.mode
	}
	if c.obeyHeader {
		if h := r.Header(header); h != "" {
			hc, err := parseCommand(h)
			if err != nil {
				return sdk.Decision{}, fmt.Errorf("misbehave: %s: %w", header, err)
			}
			cmd = hc
		}
	}
	switch cmd.kind {
	case crash:
		m.log.Warn("crashing on command", "request_id", r.RequestID)
		os.Exit(crashExitCode)
	case hang:
		<-ctx.Done()
		return sdk.Decision{}, ctx.Err()
	case slow:
		t := time.NewTimer(cmd.delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return sdk.Decision{}, ctx.Err()
		}
	case fail:
		return sdk.Decision{}, errors.New("misbehave: failing on command")
	case panicking:
		panic("misbehave: panicking on command")
	}
	return sdk.Continue(), nil
}
