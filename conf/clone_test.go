package conf

import (
	"fmt"
	"reflect"
	"strconv"
	"testing"
)

// TestCloneSharesNothing fills each field of Config in turn (found by reflection, so a field
// added to the schema is in the test without anyone adding it) with every pointer, slice and map
// allocated, clones it, and scribbles over the clone: the clone must equal the original before,
// and the original must not change. Redacted, Merge and Expanded all start from this clone.
func TestCloneSharesNothing(t *testing.T) {
	t.Parallel()
	typ := reflect.TypeFor[Config]()
	for i := range typ.NumField() {
		if !typ.Field(i).IsExported() {
			continue
		}
		t.Run(typ.Field(i).Name, func(t *testing.T) {
			t.Parallel()
			filled := func() *Config {
				c := &Config{expanded: true}
				fill(t, reflect.ValueOf(c).Elem().Field(i), 1)
				return c
			}
			c := filled()
			cp := c.clone()
			if !reflect.DeepEqual(cp, c) {
				t.Fatalf("clone differs:\n%+v\n%+v", cp, c)
			}
			scribble(reflect.ValueOf(cp).Elem())
			if reflect.DeepEqual(cp, c) {
				t.Fatal("scribble changed nothing: the test no longer reaches the field")
			}
			if !reflect.DeepEqual(c, filled()) {
				t.Fatalf("mutating the clone changed the original: they share memory under %s", typ.Field(i).Name)
			}
		})
	}
	// nil and empty are different configs (an empty list can mean "none", nil "the default").
	c := &Config{Routes: []Route{}, Policies: map[string]Policy{}}
	if cp := c.clone(); cp.Routes == nil || cp.Policies == nil || cp.Services != nil || cp.Listeners != nil {
		t.Errorf("clone changed nil or empty: %+v", cp)
	}
}

// fill sets every leaf reachable from v (settable) to a value derived from n, allocating every
// pointer, two elements per slice and two entries per map, so that a copy sharing any memory
// with v shows when either is changed. Strings look like URLs with credentials so that every
// redaction rule has something to remove.
func fill(t *testing.T, v reflect.Value, n int) {
	t.Helper()
	switch v.Kind() {
	case reflect.String:
		v.SetString(fmt.Sprintf("https://u:SECRET-%d@h%d.example/p?token=SECRET-%d", n, n, n))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(n))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(uint64(n))
	case reflect.Float32, reflect.Float64:
		v.SetFloat(float64(n) + 0.5)
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(t, v.Elem(), n)
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 2, 2))
		for i := range 2 {
			fill(t, v.Index(i), n)
		}
	case reflect.Map:
		v.Set(reflect.MakeMap(v.Type()))
		for j := 1; j <= 2; j++ {
			k := reflect.New(v.Type().Key()).Elem()
			if k.Kind() == reflect.String {
				k.SetString("K" + strconv.Itoa(j)) // keys are structure: plain, and the same for every n
			} else {
				fill(t, k, j)
			}
			e := reflect.New(v.Type().Elem()).Elem()
			fill(t, e, n)
			v.SetMapIndex(k, e)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Field(i).CanSet() {
				fill(t, v.Field(i), n)
			}
		}
	case reflect.Interface:
		v.Set(reflect.ValueOf(map[string]any{"k": []any{"SECRET", n}}))
	default:
		t.Fatalf("fill: no rule for %s: extend it", v.Type())
	}
}

// skeleton allocates every pointer reachable from v and leaves every value zero.
func skeleton(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		skeleton(v.Elem())
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Field(i).CanSet() {
				skeleton(v.Field(i))
			}
		}
	}
}

// scribble changes every leaf reachable from v in place: through its pointers, slice elements
// and map entries, which is what would reach another value sharing them.
func scribble(v reflect.Value) {
	switch v.Kind() {
	case reflect.String:
		v.SetString(v.String() + "!")
	case reflect.Bool:
		v.SetBool(!v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(v.Int() + 1)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(v.Uint() + 1)
	case reflect.Float32, reflect.Float64:
		v.SetFloat(v.Float() + 1)
	case reflect.Pointer:
		if !v.IsNil() {
			scribble(v.Elem())
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			scribble(v.Index(i))
		}
	case reflect.Map:
		for it := v.MapRange(); it.Next(); {
			e := reflect.New(v.Type().Elem()).Elem()
			e.Set(it.Value())
			scribble(e)
			v.SetMapIndex(it.Key(), e)
		}
	case reflect.Interface:
		if !v.IsNil() {
			if m, ok := v.Interface().(map[string]any); ok {
				m["scribbled"] = true // a decoded YAML map, as fill makes it
			}
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Field(i).CanSet() {
				scribble(v.Field(i))
			}
		}
	}
}
