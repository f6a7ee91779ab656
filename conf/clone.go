package conf

import "reflect"

// Copies of a config are derived from its types instead of written field by field, so a field
// added to the schema is copied without anyone remembering to. The hand-written copy had fallen
// behind: it copied two of the eight policy blocks (Defaults on a merged config wrote into KV
// documents through the other six) and shared sidecar.inbound.trusted_peers.
// TestCloneSharesNothing checks every field of Config.

// clone returns a copy of c that shares no memory with it.
func (c *Config) clone() *Config {
	out := deepCopy(*c)
	return &out
}

// clone returns a copy of p that shares no memory with it, whatever its blocks hold.
func (p Policy) clone() Policy { return deepCopy(p) }

// clone returns a copy of r that shares no memory with it.
func (r Route) clone() Route { return deepCopy(r) }

// clone returns a copy of s that shares no memory with it.
func (s Service) clone() Service { return deepCopy(s) }

// clone returns a copy of r that shares no memory with it; nil stays nil.
func (r *Retry) clone() *Retry { return deepCopy(r) }

// deepCopy returns a copy of v that shares no memory with it: every pointer, slice, map and
// interface reachable through exported fields is copied, recursively; nil stays nil and empty
// stays empty. Unexported fields are copied as values (config types have none that refer to
// memory). It is for config values, which hold no cycles, channels or funcs.
func deepCopy[T any](v T) T {
	var out T
	copyValue(reflect.ValueOf(&out).Elem(), reflect.ValueOf(&v).Elem())
	return out
}

// copyValue sets dst (settable, of src's type) to a deep copy of src.
func copyValue(dst, src reflect.Value) {
	switch src.Kind() {
	case reflect.Pointer:
		if !src.IsNil() {
			p := reflect.New(src.Type().Elem())
			copyValue(p.Elem(), src.Elem())
			dst.Set(p)
		}
	case reflect.Interface:
		if !src.IsNil() {
			e := reflect.New(src.Elem().Type()).Elem()
			copyValue(e, src.Elem())
			dst.Set(e)
		}
	case reflect.Slice:
		if !src.IsNil() {
			s := reflect.MakeSlice(src.Type(), src.Len(), src.Len())
			for i := range src.Len() {
				copyValue(s.Index(i), src.Index(i))
			}
			dst.Set(s)
		}
	case reflect.Map:
		if !src.IsNil() {
			m := reflect.MakeMapWithSize(src.Type(), src.Len())
			for it := src.MapRange(); it.Next(); {
				e := reflect.New(src.Type().Elem()).Elem()
				copyValue(e, it.Value())
				m.SetMapIndex(it.Key(), e)
			}
			dst.Set(m)
		}
	case reflect.Struct:
		dst.Set(src)
		for i := range src.NumField() {
			if dst.Field(i).CanSet() {
				copyValue(dst.Field(i), src.Field(i))
			}
		}
	case reflect.Array:
		for i := range src.Len() {
			copyValue(dst.Index(i), src.Index(i))
		}
	default:
		dst.Set(src)
	}
}
