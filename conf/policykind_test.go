package conf

import (
	"fmt"
	"maps"
	pathpkg "path"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestPolicyKindsRoundTrip takes every field of Policy as a kind (found by reflection, so a new
// kind is in the test without anyone adding it) and checks, with every leaf of its block set:
// Kind names it, and two blocks have no kind; the deep copy is equal and shares no memory (the
// copy is scribbled over and the original must not change); Redacted replaces the kind's
// secrets and keeps everything else, structure included, without touching the original.
func TestPolicyKindsRoundTrip(t *testing.T) {
	t.Parallel()
	// policySecrets are, per kind, the leaves of its block (as yaml paths, * for a map key) that
	// Redacted must replace; every other leaf must come out unchanged. Every kind needs an entry,
	// an empty one when it holds no secret: adding a kind means deciding this here and in
	// Policy.redactKind.
	policySecrets := map[PolicyKind][]string{
		KindRateLimit: nil,
		KindFault:     nil,
		KindPlugin:    nil,
		KindJWT:       {"jwt/jwks_url"},
		KindAPIKey:    nil,
		KindHMAC:      nil,
		KindIP:        nil,
		KindCORS:      nil,
		KindHeaders:   {"headers/request/set/*", "headers/request/add/*", "headers/response/set/*", "headers/response/add/*"},
	}
	typ := reflect.TypeFor[Policy]()
	if kinds := PolicyKinds(); len(kinds) != typ.NumField() {
		t.Fatalf("PolicyKinds() = %v for %d fields", kinds, typ.NumField())
	}
	for i := range typ.NumField() {
		kind := kindOf(typ.Field(i))
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			filled := func(n int) Policy {
				var p Policy
				fill(t, reflect.ValueOf(&p).Elem().Field(i), n)
				return p
			}
			p := filled(1)
			if got := p.Kind(); got != kind {
				t.Fatalf("Kind() = %q, want %q", got, kind)
			}
			two := filled(1)
			other := (i + 1) % typ.NumField()
			fill(t, reflect.ValueOf(&two).Elem().Field(other), 1)
			if got := two.Kind(); got != "" || len(two.kinds()) != 2 {
				t.Errorf("with %s and %s set: Kind() = %q, kinds() = %v; want none and two", kind, kindOf(typ.Field(other)), got, two.kinds())
			}

			c := p.clone()
			if !reflect.DeepEqual(c, p) {
				t.Fatalf("clone differs:\n%+v\n%+v", c, p)
			}
			scribble(reflect.ValueOf(&c).Elem())
			if reflect.DeepEqual(c, p) {
				t.Fatal("scribble changed nothing: the test no longer reaches the block's fields")
			}
			if !reflect.DeepEqual(p, filled(1)) {
				t.Fatalf("mutating the clone changed the original: they share memory\n%+v", p)
			}

			secrets, ok := policySecrets[kind]
			if !ok {
				t.Fatalf("policySecrets has no entry for %s: decide which of its fields are secret (and give it a case in Policy.redactKind)", kind)
			}
			if pc := p.clone(); !pc.redactKind(kind) {
				t.Fatalf("Policy.redactKind has no case for %s: every kind decides what in it is secret", kind)
			}
			cfg := &Config{Policies: map[string]Policy{"p": p}}
			r := Redacted(cfg).Policies["p"]
			if !reflect.DeepEqual(p, filled(1)) {
				t.Fatalf("Redacted changed the original:\n%+v", p)
			}
			checkRedacted(t, kind, secrets, reflect.ValueOf(p).Field(i), reflect.ValueOf(r).Field(i))
		})
	}
}

// checkRedacted compares a block before and after redaction leaf by leaf.
func checkRedacted(t *testing.T, kind PolicyKind, secrets []string, before, after reflect.Value) {
	t.Helper()
	b, a := map[string]string{}, map[string]string{}
	leaves(before, string(kind), b)
	leaves(after, string(kind), a)
	if !slices.Equal(slices.Sorted(maps.Keys(a)), slices.Sorted(maps.Keys(b))) {
		t.Fatalf("redaction changed the structure:\nbefore %v\nafter  %v", b, a)
	}
	secret := func(p string) bool {
		return slices.ContainsFunc(secrets, func(pat string) bool { ok, _ := pathpkg.Match(pat, p); return ok })
	}
	for _, p := range slices.Sorted(maps.Keys(b)) {
		switch {
		case secret(p) && (a[p] == b[p] || strings.Contains(a[p], "SECRET")):
			t.Errorf("%s: secret not replaced: %q", p, a[p])
		case !secret(p) && a[p] != b[p]:
			t.Errorf("%s: not secret, but redaction changed it: %q → %q", p, b[p], a[p])
		}
	}
	for _, pat := range secrets {
		if !slices.ContainsFunc(slices.Collect(maps.Keys(b)), func(p string) bool { ok, _ := pathpkg.Match(pat, p); return ok }) {
			t.Errorf("policySecrets[%s]: %q matches no field", kind, pat)
		}
	}
}

// TestMergeDefaultsNeverWriteIntoDocuments: Defaults on a merged config fills the blocks of a
// document's policies (every kind, each with its pointers allocated and its values zero, which
// is where defaults go) in the merged copy only; the document stays as parsed.
func TestMergeDefaultsNeverWriteIntoDocuments(t *testing.T) {
	t.Parallel()
	typ := reflect.TypeFor[Policy]()
	doc := func() *Fragment {
		f := &Fragment{Policies: map[string]Policy{}}
		for i := range typ.NumField() {
			var p Policy
			f0 := reflect.ValueOf(&p).Elem().Field(i)
			if skeleton(f0); f0.IsZero() {
				fill(t, f0, 1) // a kind that is a plain value is set by any value
			}
			f.Policies[string(kindOf(typ.Field(i)))] = p
		}
		return f
	}
	f := doc()
	c := &Config{}
	f.mergeInto(c)
	c.Defaults()
	if reflect.DeepEqual(c.Policies, f.Policies) {
		t.Fatal("Defaults filled nothing: the test no longer exercises defaults")
	}
	if want := doc(); !reflect.DeepEqual(f.Policies, want.Policies) {
		for k, p := range f.Policies {
			if !reflect.DeepEqual(p, want.Policies[k]) {
				i := slices.Index(PolicyKinds(), PolicyKind(k))
				t.Errorf("Defaults wrote into the document's %s policy: %+v", k, reflect.Indirect(reflect.ValueOf(p).Field(i)))
			}
		}
	}
}

// leaves records every leaf under v by its yaml path (p/key/index), and for each pointer, slice
// and map whether it is nil and its length, which is the structure redaction must keep.
func leaves(v reflect.Value, p string, out map[string]string) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			out[p] = "nil"
			return
		}
		leaves(v.Elem(), p, out)
	case reflect.Slice:
		if v.IsNil() {
			out[p] = "nil"
			return
		}
		out[p+"#"] = strconv.Itoa(v.Len())
		for i := range v.Len() {
			leaves(v.Index(i), p+"/"+strconv.Itoa(i), out)
		}
	case reflect.Map:
		if v.IsNil() {
			out[p] = "nil"
			return
		}
		out[p+"#"] = strconv.Itoa(v.Len())
		for it := v.MapRange(); it.Next(); {
			leaves(it.Value(), p+"/"+fmt.Sprint(it.Key()), out)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			f := v.Type().Field(i)
			if !f.IsExported() {
				continue // config types keep no data there; Interface would panic
			}
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" {
				name = f.Name
			}
			leaves(v.Field(i), p+"/"+name, out)
		}
	default:
		out[p] = fmt.Sprint(v.Interface())
	}
}
