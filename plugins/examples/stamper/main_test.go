package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/meshgate/meshgate/plugins/sdk"
)

func quietStamper() *stamper { return newStamper(hclog.NewNullLogger()) }

func TestStamps(t *testing.T) {
	t.Parallel()
	s := quietStamper()
	d, _ := s.OnRequest(t.Context(), &sdk.Request{})
	if want := []sdk.Header{{Name: "X-Stamped-By", Value: "stamper"}}; !slices.Equal(d.SetHeaders, want) {
		t.Errorf("default: %v, want %v", d.SetHeaders, want)
	}

	if err := s.Configure([]byte(`{"request":{"X-B":"2","X-A":"1"},"response":{"X-Via":"m"}}`)); err != nil {
		t.Fatal(err)
	}
	d, _ = s.OnRequest(t.Context(), &sdk.Request{})
	// Sorted, so every request gets the same order.
	if want := []sdk.Header{{Name: "X-A", Value: "1"}, {Name: "X-B", Value: "2"}}; !slices.Equal(d.SetHeaders, want) {
		t.Errorf("request: %v, want %v", d.SetHeaders, want)
	}
	m, _ := s.OnResponse(t.Context(), &sdk.Response{})
	if want := []sdk.Header{{Name: "X-Via", Value: "m"}}; !slices.Equal(m.SetHeaders, want) {
		t.Errorf("response: %v, want %v", m.SetHeaders, want)
	}

	// Empty config is the default again.
	if err := s.Configure(nil); err != nil {
		t.Fatal(err)
	}
	if d, _ := s.OnRequest(t.Context(), &sdk.Request{}); len(d.SetHeaders) != 1 {
		t.Errorf("after empty config: %v", d.SetHeaders)
	}
}

func TestConfigureErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ config, want string }{
		{`{"request":{"":"x"}}`, `request: "" is not a valid header name`},
		{`{"response":{"X Y":"x"}}`, `response: "X Y" is not a valid header name`},
		{`{"headers":{}}`, `unknown field "headers"`},
		{`[`, "unexpected EOF"},
	} {
		if err := quietStamper().Configure([]byte(tt.config)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Configure(%s) = %v, want %q", tt.config, err, tt.want)
		}
	}
}
