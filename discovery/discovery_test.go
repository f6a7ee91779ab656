package discovery

import "testing"

func TestSetEqualIgnoresOrder(t *testing.T) {
	t.Parallel()
	a := Set{Service: "s", Endpoints: []Endpoint{{"a:1", 1}, {"b:1", 2}}}
	cases := []struct {
		name string
		b    Set
		want bool
	}{
		{"same order", Set{Service: "s", Endpoints: []Endpoint{{"a:1", 1}, {"b:1", 2}}}, true},
		{"other order", Set{Service: "s", Endpoints: []Endpoint{{"b:1", 2}, {"a:1", 1}}}, true},
		{"weight differs", Set{Service: "s", Endpoints: []Endpoint{{"a:1", 1}, {"b:1", 3}}}, false},
		{"fewer", Set{Service: "s", Endpoints: []Endpoint{{"a:1", 1}}}, false},
		{"other service", Set{Service: "t", Endpoints: []Endpoint{{"a:1", 1}, {"b:1", 2}}}, false},
		{"other protocol", Set{Service: "s", Endpoints: []Endpoint{{"a:1", 1}, {"b:1", 2}}, Protocol: ProtocolGRPC}, false},
		{"other source only", Set{Service: "s", Endpoints: []Endpoint{{"a:1", 1}, {"b:1", 2}}, Source: "snapshot"}, true},
	}
	for _, tc := range cases {
		if got := a.Equal(tc.b); got != tc.want {
			t.Errorf("%s: Equal = %v, want %v", tc.name, got, tc.want)
		}
	}
}
