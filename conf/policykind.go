package conf

import (
	"reflect"
	"strings"
)

// What every policy kind has in common is derived here from the fields of Policy (schema.go)
// instead of being listed per kind: the kinds, which one a policy is, and the walk that redacts
// it; its deep copy is derived from the types too (clone.go). Lists of kinds kept by hand fell
// behind the struct before (clone copied two of the eight blocks, so Defaults wrote into KV
// documents through the other six); a derived list cannot. The one per-kind decision left in
// conf, besides defaults and validation, is what in a block is secret (redactKind).

// PolicyKinds returns every policy kind, in the order Policy declares them.
func PolicyKinds() []PolicyKind {
	t := reflect.TypeFor[Policy]()
	out := make([]PolicyKind, t.NumField())
	for i := range out {
		out[i] = kindOf(t.Field(i))
	}
	return out
}

// Kind returns the kind of p's one block, or "" when none or several are set (which validation
// rejects, so a validated config's policies all have a kind).
func (p Policy) Kind() PolicyKind {
	if ks := p.kinds(); len(ks) == 1 {
		return ks[0]
	}
	return ""
}

// kinds returns the kinds whose block is set in p, in declaration order.
func (p Policy) kinds() []PolicyKind {
	v := reflect.ValueOf(p)
	var out []PolicyKind
	for i := range v.NumField() {
		if !v.Field(i).IsZero() {
			out = append(out, kindOf(v.Type().Field(i)))
		}
	}
	return out
}

// kindOf is the kind a field of Policy declares: its yaml key.
func kindOf(f reflect.StructField) PolicyKind {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	return PolicyKind(name)
}

// kindList is every kind for messages: "rate_limit, fault, …".
func kindList() string {
	ks := PolicyKinds()
	names := make([]string, len(ks))
	for i, k := range ks {
		names[i] = string(k)
	}
	return strings.Join(names, ", ")
}

// redact replaces the secrets in p's blocks, in place: p is Redacted's own copy. A kind without
// a case in redactKind fails closed, every string in its block replaced, so forgetting one
// hides too much rather than showing a secret.
func (p *Policy) redact() {
	v := reflect.ValueOf(p).Elem()
	for i := range v.NumField() {
		if f := v.Field(i); !f.IsZero() && !p.redactKind(kindOf(v.Type().Field(i))) {
			redactStrings(f)
		}
	}
}

// redactKind replaces the secrets of p's block of kind k (which must be set) and reports
// whether k has a case. Every kind has one, those without a secret too: adding a kind means
// deciding what in it is secret, and TestPolicyKindsRoundTrip fails until that is decided.
func (p *Policy) redactKind(k PolicyKind) bool {
	switch k {
	case KindHeaders:
		// Static credentials for upstreams are injected as set/add values; the names stay.
		p.Headers.Request = redactHeaderOps(p.Headers.Request)
		p.Headers.Response = redactHeaderOps(p.Headers.Response)
	case KindJWT:
		p.JWT.JWKSURL = redactAddress(p.JWT.JWKSURL) // userinfo and ?access_token=
	case KindRateLimit, KindFault, KindPlugin, KindAPIKey, KindHMAC, KindIP, KindCORS:
		// Nothing secret: limits, names, CIDRs, origins, and the paths of the files that hold
		// the api_key and hmac secrets. A plugin's config and args are redacted with plugins:.
	default:
		return false
	}
	return true
}

// redactStrings replaces every non-empty string reachable from v (settable), keeping the
// structure: map keys, lengths and which values are set stay visible.
func redactStrings(v reflect.Value) {
	switch v.Kind() {
	case reflect.String:
		if v.Len() > 0 {
			v.SetString(redactedValue)
		}
	case reflect.Pointer:
		if !v.IsNil() {
			redactStrings(v.Elem())
		}
	case reflect.Interface:
		if !v.IsNil() {
			e := reflect.New(v.Elem().Type()).Elem()
			e.Set(v.Elem())
			redactStrings(e)
			v.Set(e)
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			redactStrings(v.Index(i))
		}
	case reflect.Map:
		for it := v.MapRange(); it.Next(); {
			e := reflect.New(v.Type().Elem()).Elem()
			e.Set(it.Value())
			redactStrings(e)
			v.SetMapIndex(it.Key(), e)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Field(i).CanSet() {
				redactStrings(v.Field(i))
			}
		}
	}
}
