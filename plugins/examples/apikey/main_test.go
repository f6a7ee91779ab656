package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/meshgate/meshgate/plugins/sdk"
)

// The plugin's logic, called directly; plugins/sdk's tests run it as a process.

func configured(t *testing.T, config string) *apiKey {
	t.Helper()
	a := newAPIKey(hclog.NewNullLogger())
	if err := a.Configure([]byte(config)); err != nil {
		t.Fatal(err)
	}
	return a
}

func TestOnRequest(t *testing.T) {
	t.Parallel()
	hashed := sha256.Sum256([]byte("alpha"))
	a := configured(t, fmt.Sprintf(`{"keys":[
		{"consumer":"a","sha256":%q},
		{"consumer":"b","key":"beta","routes":["b-only"]}]}`, hex.EncodeToString(hashed[:])))
	keep := configured(t, `{"header":"Authorization","hide_credentials":false,"keys":[{"consumer":"c","key":"gamma"}]}`)

	tests := []struct {
		name       string
		plugin     *apiKey
		route, key string
		header     string
		wantStatus int
		wantWho    string
		wantRemove bool
	}{
		{name: "missing", plugin: a, route: "r", wantStatus: 401},
		{name: "wrong", plugin: a, route: "r", key: "alpha2", wantStatus: 401},
		{name: "prefix of a key", plugin: a, route: "r", key: "alph", wantStatus: 401},
		{name: "hashed", plugin: a, route: "r", key: "alpha", wantWho: "a", wantRemove: true},
		{name: "header name is case-insensitive", plugin: a, route: "r", key: "alpha", header: "x-api-key", wantWho: "a", wantRemove: true},
		{name: "route allowed", plugin: a, route: "b-only", key: "beta", wantWho: "b", wantRemove: true},
		{name: "route not allowed", plugin: a, route: "r", key: "beta", wantStatus: 403},
		{name: "custom header, kept", plugin: keep, route: "r", key: "gamma", header: "Authorization", wantWho: "c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := &sdk.Request{Route: tt.route}
			if tt.key != "" {
				h := tt.header
				if h == "" {
					h = "X-Api-Key"
				}
				r.Headers = []sdk.Header{{Name: h, Value: tt.key}}
			}
			d, err := tt.plugin.OnRequest(t.Context(), r)
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantStatus != 0 {
				if !d.Responds() || d.Reply.Status != tt.wantStatus {
					t.Fatalf("decision = %+v, want %d", d, tt.wantStatus)
				}
				return
			}
			if d.Responds() || d.Consumer != tt.wantWho || (len(d.RemoveHeaders) == 1) != tt.wantRemove {
				t.Errorf("decision = %+v, want consumer %q, remove %v", d, tt.wantWho, tt.wantRemove)
			}
		})
	}
}

func TestUnconfiguredFails(t *testing.T) {
	t.Parallel()
	a := newAPIKey(hclog.NewNullLogger())
	if _, err := a.OnRequest(t.Context(), &sdk.Request{}); err == nil || !strings.Contains(err.Error(), "not configured") {
		t.Errorf("err = %v", err)
	}
	if got := a.Describe().Request.Headers.Names; len(got) != 1 || got[0] != "X-Api-Key" {
		t.Errorf("unconfigured asks for %v", got)
	}
}

func TestParseConfigErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ config, want string }{
		{``, "EOF"},
		{`{}`, "at least one key"},
		{`{"keys":[{"consumer":"a"}]}`, "keys[0]: sha256 or key is required"},
		{`{"keys":[{"consumer":"a","key":"k","sha256":"00"}]}`, "not both"},
		{`{"keys":[{"consumer":"a","sha256":"zz"}]}`, "keys[0].sha256: want 64 hex digits"},
		{`{"keys":[{"consumer":"a","key":"k"}],"extra":1}`, `unknown field "extra"`},
	} {
		if _, err := parseConfig([]byte(tt.config)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("parseConfig(%s) = %v, want %q", tt.config, err, tt.want)
		}
	}
}

// A rejected configuration leaves the previous one in force.
func TestBadReloadKeepsConfig(t *testing.T) {
	t.Parallel()
	a := configured(t, `{"keys":[{"consumer":"a","key":"k"}]}`)
	if err := a.Configure([]byte(`{"keys":[]}`)); err == nil {
		t.Fatal("empty keys accepted")
	}
	d, err := a.OnRequest(t.Context(), &sdk.Request{Headers: []sdk.Header{{Name: "X-Api-Key", Value: "k"}}})
	if err != nil || d.Consumer != "a" {
		t.Errorf("after a rejected reload: %+v, %v", d, err)
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add(`{"keys":[{"consumer":"a","key":"k"}]}`)
	f.Add(`{"header":"X","hide_credentials":false,"keys":[{"consumer":"a","sha256":"2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae","routes":["r"]}]}`)
	f.Add(`{"keys":[{"consumer":"a","sha256":"zz"}]}`)
	f.Fuzz(func(t *testing.T, config string) {
		c, err := parseConfig([]byte(config))
		if err != nil {
			return
		}
		// Whatever was accepted is usable: a header to read and consumers to name.
		if c.header == "" || len(c.keys) == 0 {
			t.Fatalf("accepted %q into %+v", config, c)
		}
		for _, k := range c.keys {
			if k.consumer == "" {
				t.Fatalf("accepted a key without a consumer: %q", config)
			}
		}
	})
}
