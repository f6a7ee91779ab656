package intentions

import (
	"bytes"
	"testing"
)

// FuzzAuthorize checks properties every decision has, for arbitrary callers and requests:
// no panic; a label from the compiled set; a query string never changes the outcome (no rule
// here looks at ":path"); and a caller with no intention of its own is decided exactly as
// any other such caller.
func FuzzAuthorize(f *testing.F) {
	f.Add("web", []byte("GET"), []byte("/public/a"), []byte("prod"))
	f.Add("batch", []byte("POST"), []byte("/admin/x?y=1"), []byte(""))
	f.Add("batch", []byte("GET"), []byte("/v1/items"), []byte("dev"))
	f.Add("", []byte(""), []byte(""), []byte("\x00"))
	f.Add("*", []byte("get"), []byte("?"), []byte("PROD"))
	rs := mustCompile(f, []Intention{
		l4("web", ActionAllow),
		l4("*", ActionDeny),
		l7("batch",
			denyHTTP(HTTPMatch{PathRegex: "/admin/.*"}),
			allowHTTP(HTTPMatch{PathPrefix: "/public", Methods: []string{"GET"}}),
			allowHTTP(HTTPMatch{PathRegex: "/v[0-9]+/.*", Header: []HeaderMatch{{Name: "X-Env", Exact: "prod", Invert: true}}}),
		),
	}, true)
	labels := map[string]bool{labelNoSource: true, LabelDefaultAllow: true}
	for _, r := range rs.exact {
		labels[r.decision.Intention], labels[r.noMatch.Intention] = true, true
		for _, p := range r.perms {
			labels[p.decision.Intention] = true
		}
	}
	labels[rs.wildcard.decision.Intention] = true
	f.Fuzz(func(t *testing.T, src string, method, path, env []byte) {
		h := request{method: "GET", path: "/"}.header()
		h.SetBytesV("X-Env", env)
		d := rs.authorize(src, method, path, h)
		if !labels[d.Intention] {
			t.Fatalf("label %q is not a compiled one", d.Intention)
		}
		if !bytes.Contains(path, []byte("?")) {
			q := append(append([]byte(nil), path...), "?a=/admin/x"...)
			if dq := rs.authorize(src, method, q, h); dq != d {
				t.Fatalf("%q → %+v but %q → %+v", path, d, q, dq)
			}
		}
		if _, own := rs.exact[src]; !own && src != "" {
			if other := rs.authorize("no-such-caller", method, path, h); other != d {
				t.Fatalf("%q → %+v but an unknown caller → %+v", src, d, other)
			}
		}
	})
}
