package conf

import (
	"maps"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// referenceDoc is the configuration reference every schema key must appear in.
const referenceDoc = "../docs/configuration.md"

// schemaKeys walks t by its yaml tags and returns every key path, parents before children:
// a struct field is ".name", a slice element "[]", a map value ".<name>". Struct values are
// descended into; scalars, []string, map[string]string, Duration, ByteSize and `any` are
// leaves. Fields without a yaml tag (or tagged "-") are not part of the schema.
func schemaKeys(t reflect.Type, prefix string, out *[]string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" || name == "-" {
				continue
			}
			p := name
			if prefix != "" {
				p = prefix + "." + name
			}
			*out = append(*out, p)
			schemaKeys(f.Type, p, out)
		}
	case reflect.Slice:
		schemaKeys(t.Elem(), prefix+"[]", out)
	case reflect.Map:
		schemaKeys(t.Elem(), prefix+".<name>", out)
	}
}

// docReference is what docs/configuration.md declares. A key counts as documented when its full
// path is the first cell of a table row anywhere, or when a heading names a parent path P (in
// backticks) and the rest of the key after "P." is the first cell of a table row in that
// heading's section (up to the next heading). A first cell may name several keys: every span in
// backticks counts. A heading naming the key itself also documents it (its section describes it).
type docReference struct {
	rows     map[string]bool     // full paths named in a row or a heading
	sections map[string][]string // heading path → relative names in its rows
}

var (
	headingRe = regexp.MustCompile("^#{1,6} ")
	spanRe    = regexp.MustCompile("`([^`]+)`")
	keyLikeRe = regexp.MustCompile(`^[a-z0-9_]+(\[\]|\.<name>|\.[a-z0-9_]+)*$`)
)

func parseReference(text string) docReference {
	ref := docReference{rows: map[string]bool{}, sections: map[string][]string{}}
	var heads []string
	for line := range strings.SplitSeq(text, "\n") {
		switch {
		case headingRe.MatchString(line):
			heads = nil
			for _, m := range spanRe.FindAllStringSubmatch(line, -1) {
				heads = append(heads, m[1])
				ref.rows[m[1]] = true
				if _, ok := ref.sections[m[1]]; !ok {
					ref.sections[m[1]] = nil
				}
			}
		case strings.HasPrefix(line, "| `"):
			first, _, _ := strings.Cut(strings.TrimPrefix(line, "|"), "|")
			for _, m := range spanRe.FindAllStringSubmatch(first, -1) {
				ref.rows[m[1]] = true
				for _, h := range heads {
					ref.sections[h] = append(ref.sections[h], m[1])
				}
			}
		}
	}
	return ref
}

func (r docReference) documents(key string) bool {
	if r.rows[key] {
		return true
	}
	for head, names := range r.sections {
		if rest, ok := strings.CutPrefix(key, head+"."); ok && slices.Contains(names, rest) {
			return true
		}
	}
	return false
}

// TestReferenceDocumentsEverySchemaKey fails for each key of conf.Config that
// docs/configuration.md does not document, so a new key cannot ship without its entry, and for
// each key-like name in a section row that is not in the schema, so a removed or renamed key
// does not linger in the reference.
func TestReferenceDocumentsEverySchemaKey(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(referenceDoc)
	if err != nil {
		t.Fatal(err)
	}
	ref := parseReference(string(data))
	var keys []string
	schemaKeys(reflect.TypeFor[Config](), "", &keys)
	if len(keys) < 100 {
		t.Fatalf("the schema walk found only %d keys: %v", len(keys), keys)
	}
	for _, k := range keys {
		if !ref.documents(k) {
			t.Errorf("%s: not in %s (a row `%s` in the table of a section headed by its parent's path, or the full path in any table)", k, referenceDoc, k[strings.LastIndexAny(k, ".]")+1:])
		}
	}
	for _, head := range slices.Sorted(maps.Keys(ref.sections)) {
		names := ref.sections[head]
		if !slices.Contains(keys, head) {
			continue // a heading that is not a key path (prose sections)
		}
		for _, n := range names {
			if keyLikeRe.MatchString(n) && !slices.Contains(keys, head+"."+n) && !slices.Contains(keys, n) {
				t.Errorf("%s: the section of `%s` names `%s`, which is not a key of the schema", referenceDoc, head, n)
			}
		}
	}
}

// The walk itself: paths for struct fields, slices, maps and pointers, and no unexported state.
func TestSchemaKeysShape(t *testing.T) {
	t.Parallel()
	var keys []string
	schemaKeys(reflect.TypeFor[Config](), "", &keys)
	for _, want := range []string{
		"listeners", "listeners[].trusted_peers", "listeners[].tls.certificates[].cert_file",
		"routes[].match.headers[].present", "services.<name>.retry.on", "policies.<name>.jwt.strip_token",
		"discovery.static", "discovery.consul.services.<name>.meta", "sidecar.upstreams[].retry.attempts",
		"plugins.<name>.config", "redis.timeout", "shutdown.ready_delay",
	} {
		if !slices.Contains(keys, want) {
			t.Errorf("missing %s", want)
		}
	}
	if slices.Contains(keys, "expanded") || slices.Contains(keys, "discovery.static.<name>") {
		t.Errorf("walk went too far: %v", keys)
	}
}
