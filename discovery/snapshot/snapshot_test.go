package snapshot

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/meshgate/meshgate/discovery"
	"github.com/meshgate/meshgate/internal/syncbuf"
)

func newStore(t *testing.T) (*Store, *syncbuf.Buffer) {
	t.Helper()
	logs := &syncbuf.Buffer{}
	s, err := New(Options{Dir: filepath.Join(t.TempDir(), "snap"), Logger: zerolog.New(logs)})
	if err != nil {
		t.Fatal(err)
	}
	return s, logs
}

func TestNewRequiresDir(t *testing.T) {
	t.Parallel()
	if _, err := New(Options{}); err == nil {
		t.Fatal("New without Dir succeeded")
	}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{Dir: filepath.Join(file, "sub")}); err == nil {
		t.Fatal("New under a regular file succeeded")
	}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		set  discovery.Set
	}{
		{"two endpoints", discovery.Set{Service: "api", Source: "consul", Endpoints: []discovery.Endpoint{{Address: "10.0.0.1:80", Weight: 1}, {Address: "[::1]:81", Weight: 3}}}},
		{"empty is a real answer", discovery.Set{Service: "gone", Source: "consul"}},
		{"dotted name", discovery.Set{Service: "web.v2", Endpoints: []discovery.Endpoint{{Address: "a:1", Weight: 1}}}},
		{"protocol kept", discovery.Set{Service: "rpc", Protocol: discovery.ProtocolGRPC, Endpoints: []discovery.Endpoint{{Address: "a:1", Weight: 1}}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, _ := newStore(t)
			if err := s.Save(tc.set); err != nil {
				t.Fatal(err)
			}
			got, ok := s.Load(tc.set.Service)
			if !ok {
				t.Fatal("Load: no snapshot")
			}
			if !got.Equal(tc.set) || got.Source != "snapshot" || got.Endpoints == nil {
				t.Fatalf("Load = %+v, want %+v from snapshot (non-nil endpoints)", got, tc.set)
			}
			tmps, _ := filepath.Glob(filepath.Join(s.Dir(), KindServices, ".*"))
			if len(tmps) != 0 {
				t.Fatalf("temp files left behind: %v", tmps)
			}
		})
	}
}

func TestSavedAtAndSelector(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	s, err := New(Options{Dir: t.TempDir(), Now: func() time.Time { return at }})
	if err != nil {
		t.Fatal(err)
	}
	set := discovery.Set{Service: "api", Endpoints: []discovery.Endpoint{{Address: "a:1", Weight: 1}}}
	if err := s.SaveSelected(set, "api|tags=v2"); err != nil {
		t.Fatal(err)
	}
	if _, savedAt, ok := s.LoadSelected("api", "api|tags=v2"); !ok || !savedAt.Equal(at) {
		t.Fatalf("LoadSelected same selector = ok %v savedAt %v, want true %v", ok, savedAt, at)
	}
	if _, _, ok := s.LoadSelected("api", "api|tags=v3"); ok {
		t.Fatal("a snapshot for another selector was returned")
	}
	if _, ok := s.Load("api"); ok {
		t.Fatal("Load (no selector) returned a selected snapshot")
	}
}

// Two sets of one service saved in different kinds are two files: neither replaces the other.
func TestSelectedKindsAreApart(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	plain := discovery.Set{Service: "api", Endpoints: []discovery.Endpoint{{Address: "a:1", Weight: 1}}}
	proxies := discovery.Set{Service: "api", Endpoints: []discovery.Endpoint{{Address: "p:2", Weight: 1}}}
	if err := s.SaveSelected(plain, "plain"); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveSelectedIn("connect", proxies, "connect"); err != nil {
		t.Fatal(err)
	}
	if got, _, ok := s.LoadSelected("api", "plain"); !ok || !got.Equal(plain) {
		t.Fatalf("LoadSelected = %+v %v, want %+v", got, ok, plain)
	}
	if got, _, ok := s.LoadSelectedIn("connect", "api", "connect"); !ok || !got.Equal(proxies) || got.Source != "snapshot" {
		t.Fatalf("LoadSelectedIn = %+v %v, want %+v from snapshot", got, ok, proxies)
	}
	if _, _, ok := s.LoadSelectedIn(KindServices, "api", "connect"); ok {
		t.Fatal("the connect set was found among the services")
	}
	if _, err := os.Stat(filepath.Join(s.Dir(), "connect", "api.json")); err != nil {
		t.Fatalf("file not where expected: %v", err)
	}
	if err := s.SaveSelectedIn("../up", proxies, ""); err == nil {
		t.Fatal("SaveSelectedIn with a bad kind succeeded")
	}
}

func TestSaveReplaces(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	a := discovery.Set{Service: "api", Endpoints: []discovery.Endpoint{{Address: "a:1", Weight: 1}}}
	b := discovery.Set{Service: "api", Endpoints: []discovery.Endpoint{{Address: "b:1", Weight: 2}}}
	for _, set := range []discovery.Set{a, b} {
		if err := s.Save(set); err != nil {
			t.Fatal(err)
		}
	}
	if got, ok := s.Load("api"); !ok || !got.Equal(b) {
		t.Fatalf("Load = %+v %v, want %+v", got, ok, b)
	}
}

// Concurrent writers of one name must leave one complete file, never a mix.
func TestConcurrentSavesLeaveAWholeFile(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			eps := make([]discovery.Endpoint, 50)
			for j := range eps {
				eps[j] = discovery.Endpoint{Address: "10.0.0." + string(rune('a'+i)) + ":1", Weight: i + 1}
			}
			if err := s.Save(discovery.Set{Service: "api", Endpoints: eps}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	got, ok := s.Load("api")
	if !ok || len(got.Endpoints) != 50 {
		t.Fatalf("Load = %d endpoints, ok %v; want 50", len(got.Endpoints), ok)
	}
	for _, ep := range got.Endpoints[1:] {
		if ep != got.Endpoints[0] {
			t.Fatalf("mixed writers in one file: %+v vs %+v", ep, got.Endpoints[0])
		}
	}
}

func TestBadFilesAreIgnoredAndLogged(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, content, log string
	}{
		{"not json", "{not json", "corrupt"},
		{"truncated", `{"version":1,"service":"api","endpoints":[{"address":"a:1"`, "corrupt"},
		{"other version", `{"version":99,"service":"api","endpoints":[]}`, "format version"},
		{"other service", `{"version":1,"service":"web","endpoints":[]}`, "holds service"},
		{"zero weight", `{"version":1,"service":"api","endpoints":[{"Address":"a:1","Weight":0}]}`, "weight"},
		{"no address", `{"version":1,"service":"api","endpoints":[{"Weight":1}]}`, "address"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, logs := newStore(t)
			if err := os.MkdirAll(filepath.Join(s.Dir(), KindServices), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(s.Dir(), KindServices, "api.json"), []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if got, ok := s.Load("api"); ok {
				t.Fatalf("Load of a bad file = %+v, want no snapshot", got)
			}
			if !strings.Contains(logs.String(), tc.log) {
				t.Fatalf("log %q does not mention %q", logs.String(), tc.log)
			}
		})
	}
}

func TestMissingIsQuiet(t *testing.T) {
	t.Parallel()
	s, logs := newStore(t)
	if _, ok := s.Load("nothing"); ok {
		t.Fatal("Load of a missing snapshot succeeded")
	}
	if logs.Len() != 0 {
		t.Fatalf("missing snapshot logged: %s", logs.String())
	}
}

func TestDocs(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	if err := s.SaveDoc("kv", "meshgate/routes/a b", []byte("routes: []")); err != nil {
		t.Fatal(err)
	}
	got, ok := s.LoadDoc("kv", "meshgate/routes/a b")
	if !ok || string(got) != "routes: []" {
		t.Fatalf("LoadDoc = %q %v", got, ok)
	}
	if _, err := os.Stat(filepath.Join(s.Dir(), "kv", "meshgate%2Froutes%2Fa%20b")); err != nil {
		t.Fatalf("escaped file not where expected: %v", err)
	}
	for _, bad := range []struct{ kind, name string }{{"", "x"}, {"kv", ""}, {"../up", "x"}, {"a/b", "x"}, {".hidden", "x"}} {
		if err := s.SaveDoc(bad.kind, bad.name, nil); err == nil {
			t.Errorf("SaveDoc(%q, %q) succeeded", bad.kind, bad.name)
		}
	}
}

func TestEscape(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"api":        "api",
		"web.v2":     "web.v2",
		"a_b-c":      "a_b-c",
		".":          "%2E",
		"..":         "%2E.",
		"../etc":     "%2E.%2Fetc",
		"a/b":        "a%2Fb",
		"%":          "%25",
		"ü":          "%C3%BC",
		".hidden.js": "%2Ehidden.js",
	}
	seen := map[string]string{}
	for in, want := range cases {
		got := Escape(in)
		if got != want {
			t.Errorf("Escape(%q) = %q, want %q", in, got, want)
		}
		if prev, dup := seen[got]; dup {
			t.Errorf("Escape(%q) = Escape(%q) = %q", in, prev, got)
		}
		seen[got] = in
	}
}
