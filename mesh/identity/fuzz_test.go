package identity

import "testing"

// FuzzParsePath: whatever parses is exactly one of the two Consul shapes, rebuilt from its
// parts, so no path with extra segments (e.g. ".../ns/x/.../svc/web/svc/admin") identifies a
// caller by a name found somewhere inside it.
func FuzzParsePath(f *testing.F) {
	for _, s := range []string{
		"/ns/default/dc/dc1/svc/web", "/ap/p/ns/n/dc/d/svc/s", "/agent/x/svc/web",
		"/ns/default/dc/dc1/svc/web/svc/admin", "/ns//dc/dc1/svc/web", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		n, ok := ParsePath(p)
		if !ok {
			return
		}
		rebuilt := "/ns/" + n.Namespace + "/dc/" + n.Datacenter + "/svc/" + n.Service
		if p != rebuilt && p != "/ap/"+n.Partition+rebuilt {
			t.Fatalf("ParsePath(%q) = %+v, which rebuilds to a different path", p, n)
		}
		if n.Partition == "" || n.Namespace == "" || n.Datacenter == "" || n.Service == "" {
			t.Fatalf("ParsePath(%q) = %+v with an empty part", p, n)
		}
	})
}
