package conf

import (
	"bytes"
	"testing"
)

// FuzzParse checks that no input makes Parse panic or return an untyped error, and that every
// accepted config survives Marshal → parse → Marshal unchanged (the admin /config output is a
// faithful, loadable config). Seeds live in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	env := func(k string) (string, bool) {
		v, ok := map[string]string{"PORT": "8080", "EMPTY": "", "HOST": "127.0.0.1"}[k]
		return v, ok
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := parse("fuzz.yaml", data, env)
		if err != nil {
			es, ok := AsErrors(err)
			if !ok || len(es) == 0 {
				t.Fatalf("error is not a non-empty Errors: %T %v", err, err)
			}
			if c != nil {
				t.Fatal("config returned with errors")
			}
			return
		}
		out, err := Marshal(c)
		if err != nil {
			t.Fatalf("marshal accepted config: %v", err)
		}
		// Marshal output has literal "$", so it is re-parsed without expansion.
		c2, err := parse("remarshal.yaml", out, nil)
		if err != nil {
			t.Fatalf("re-parse of marshalled config failed: %v\n%s", err, out)
		}
		out2, err := Marshal(c2)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, out2) {
			t.Fatalf("round trip changed the config:\n%s\n---\n%s", out, out2)
		}
	})
}
