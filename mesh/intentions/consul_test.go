package intentions

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/rs/zerolog"

	"github.com/meshgate/meshgate/discovery/snapshot"
	"github.com/meshgate/meshgate/internal/await"
	"github.com/meshgate/meshgate/internal/consuldev"
)

// enforceWithin is the promise to operators: an intention change is enforced this fast.
const enforceWithin = 2 * time.Second

func consulClient(t *testing.T, a *consuldev.Agent) *api.Client {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	c, err := api.NewClient(&api.Config{Address: a.HTTPAddr, Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func consulSource(t *testing.T, c *api.Client, wait time.Duration) *ConsulSource {
	t.Helper()
	s, err := NewConsulSource(ConsulSourceOptions{Client: c, WaitTime: wait})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func setEntry(t *testing.T, c *api.Client, e api.ConfigEntry) {
	t.Helper()
	ok, _, err := c.ConfigEntries().Set(e, nil)
	if err != nil || !ok {
		t.Fatalf("set %s %s: ok=%v err=%v", e.GetKind(), e.GetName(), ok, err)
	}
}

// httpService makes L7 intentions legal for name: Consul rejects Permissions for a
// destination whose protocol is not HTTP-based.
func httpService(t *testing.T, c *api.Client, name string) {
	t.Helper()
	setEntry(t, c, &api.ServiceConfigEntry{Kind: api.ServiceDefaults, Name: name, Protocol: "http"})
}

func TestNewConsulSourceValidates(t *testing.T) {
	t.Parallel()
	if _, err := NewConsulSource(ConsulSourceOptions{}); err == nil {
		t.Fatal("NewConsulSource without a client succeeded")
	}
}

// TestConsulSource checks what the real agent returns: the conversion of L4 and L7
// intentions, Consul's precedence order, the entry-level JWT flag, and that the match
// endpoint really blocks (the reason no polling is needed).
func TestConsulSource(t *testing.T) {
	t.Parallel()
	a := consuldev.Start(t)
	c := consulClient(t, a)
	src := consulSource(t, c, 10*time.Second)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	list, idx, err := src.Match(ctx, "api", 0)
	if err != nil || len(list) != 0 || idx == 0 {
		t.Fatalf("empty match = %v, %d, %v; want no intentions and an index", list, idx, err)
	}

	// A blocking query on the current index must not answer before its wait elapses.
	bctx, bcancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, _, err = src.Match(bctx, "api", idx)
	bcancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("blocking match returned %v; want it to block until the deadline", err)
	}

	httpService(t, c, "api")
	setEntry(t, c, &api.ServiceIntentionsConfigEntry{Kind: api.ServiceIntentions, Name: "api", Sources: []*api.SourceIntention{
		{Name: "*", Action: api.IntentionActionDeny},
		{Name: "batch", Permissions: []*api.IntentionPermission{
			{Action: api.IntentionActionAllow, HTTP: &api.IntentionHTTPPermission{
				PathRegex: "/v[0-9]+/.*", Methods: []string{"get"},
				Header: []api.IntentionHTTPHeaderPermission{{Name: "X-Env", Exact: "prod", Invert: true}},
			}},
		}},
		{Name: "web", Action: api.IntentionActionAllow, Description: "frontend"},
	}})
	setEntry(t, c, &api.ServiceIntentionsConfigEntry{Kind: api.ServiceIntentions, Name: "*", Sources: []*api.SourceIntention{
		{Name: "legacy", Action: api.IntentionActionAllow},
	}})
	list, idx2, err := src.Match(ctx, "api", 0)
	if err != nil || idx2 <= idx {
		t.Fatalf("match = %v, index %d (was %d)", err, idx2, idx)
	}
	var got []string
	for _, ix := range list {
		got = append(got, ixLabel(&ix))
	}
	want := []string{"batch→api", "web→api", "*→api", "legacy→*"}
	if len(got) != len(want) {
		t.Fatalf("intentions = %v; want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("intentions = %v; want %v (Consul's precedence order)", got, want)
		}
	}
	batch := list[0]
	wantPerm := Permission{Action: ActionAllow, HTTP: &HTTPMatch{
		PathRegex: "/v[0-9]+/.*", Methods: []string{"GET"},
		Header: []HeaderMatch{{Name: "X-Env", Exact: "prod", Invert: true}},
	}}
	if batch.Precedence != 9 || batch.Action != "" || len(batch.Permissions) != 1 ||
		batch.Permissions[0].Action != wantPerm.Action || batch.Permissions[0].HTTP.PathRegex != wantPerm.HTTP.PathRegex ||
		batch.Permissions[0].HTTP.Methods[0] != "GET" || batch.Permissions[0].HTTP.Header[0] != wantPerm.HTTP.Header[0] {
		t.Fatalf("batch intention = %+v (perm %+v); want %+v", batch, batch.Permissions[0].HTTP, wantPerm.HTTP)
	}
	if list[1].Description != "frontend" || list[1].Action != ActionAllow || list[1].SourceNamespace != "default" ||
		list[1].RequiresJWT {
		t.Fatalf("web intention = %+v", list[1])
	}

	// An entry-level JWT requirement is dropped by the api client's decoding; the source must
	// still report it, or we would allow what Consul only allows with a token.
	jwks := base64.StdEncoding.EncodeToString([]byte(`{"keys":[]}`))
	setEntry(t, c, &api.JWTProviderConfigEntry{Kind: api.JWTProvider, Name: "okta",
		JSONWebKeySet: &api.JSONWebKeySet{Local: &api.LocalJWKS{JWKS: jwks}}})
	setEntry(t, c, &api.ServiceIntentionsConfigEntry{Kind: api.ServiceIntentions, Name: "api",
		JWT:     &api.IntentionJWTRequirement{Providers: []*api.IntentionJWTProvider{{Name: "okta"}}},
		Sources: []*api.SourceIntention{{Name: "web", Action: api.IntentionActionAllow}},
	})
	list, _, err = src.Match(ctx, "api", 0)
	if err != nil || len(list) != 2 {
		t.Fatalf("match = %v, %v", list, err)
	}
	if !list[0].RequiresJWT || list[1].RequiresJWT {
		t.Fatalf("RequiresJWT = %v (api), %v (*); want only the api entry's intention flagged",
			list[0].RequiresJWT, list[1].RequiresJWT)
	}
	rs := mustCompile(t, list, true)
	if d := rs.authorize("web", []byte("GET"), []byte("/"), nil); d.Allow {
		t.Fatalf("web with a JWT requirement: %+v; want deny", d)
	}
}

// TestConsulAuthorizer drives the Authorizer through config entries on a real agent:
// enforcement of L4 and L7 rules, how fast a change takes effect, removal, an outage, and a
// restart during the outage.
func TestConsulAuthorizer(t *testing.T) {
	t.Parallel()
	ag := consuldev.Start(t)
	c := consulClient(t, ag)
	store, err := snapshot.New(snapshot.Options{Dir: t.TempDir(), Logger: zerolog.New(io.Discard)})
	if err != nil {
		t.Fatal(err)
	}
	// A long wait: if changes arrive within enforceWithin, the blocking query woke us, not a
	// timeout or a poll.
	src := consulSource(t, c, time.Minute)
	httpService(t, c, "api")
	entry := func(webAction api.IntentionAction) *api.ServiceIntentionsConfigEntry {
		return &api.ServiceIntentionsConfigEntry{Kind: api.ServiceIntentions, Name: "api", Sources: []*api.SourceIntention{
			{Name: "web", Action: webAction},
			{Name: "batch", Permissions: []*api.IntentionPermission{
				{Action: api.IntentionActionDeny, HTTP: &api.IntentionHTTPPermission{PathPrefix: "/admin"}},
				{Action: api.IntentionActionAllow, HTTP: &api.IntentionHTTPPermission{
					PathPrefix: "/public", Methods: []string{"GET", "HEAD"}}},
			}},
		}}
	}
	setEntry(t, c, entry(api.IntentionActionAllow))

	az := newAuthorizer(t, Options{Source: src, Snapshot: store})
	if d := authorize(az, "web", get("/")); d.Allow {
		t.Fatalf("before Run: %+v; want deny", d)
	}
	start(t, az)
	await.Until(t, 10*time.Second, "first answer", az.Ready)

	type check struct {
		src   string
		req   request
		allow bool
		label string
	}
	expect := func(t *testing.T, checks ...check) {
		t.Helper()
		for _, c := range checks {
			if d := authorize(az, c.src, c.req); d.Allow != c.allow || d.Intention != c.label {
				t.Errorf("%s %s %s = %+v; want allow=%v by %q", c.src, c.req.method, c.req.path, d, c.allow, c.label)
			}
		}
	}
	expect(t,
		check{"web", get("/anything"), true, "web→api allow"},
		check{"batch", get("/public/report"), true, "batch→api permission 2 allow"},
		check{"batch", get("/admin"), false, "batch→api permission 1 deny"},
		check{"batch", request{method: "DELETE", path: "/public/report"}, false, "batch→api no permission matched, default deny"},
		check{"db", get("/"), false, LabelDefaultDeny},
	)

	// allow → deny must be enforced within enforceWithin of the write returning.
	before := az.Version()
	setEntry(t, c, entry(api.IntentionActionDeny))
	changed := time.Now()
	await.Until(t, enforceWithin, "web denied", func() bool { return !authorize(az, "web", get("/")).Allow })
	t.Logf("allow → deny enforced %v after the config entry write", time.Since(changed))
	if az.Version() <= before {
		t.Fatalf("version %d after the change; want > %d", az.Version(), before)
	}

	// Removing the entry falls back to the default.
	if _, err := c.ConfigEntries().Delete(api.ServiceIntentions, "api", nil); err != nil {
		t.Fatal(err)
	}
	await.Until(t, enforceWithin, "entry removal", func() bool {
		return authorize(az, "web", get("/")).Intention == LabelDefaultDeny
	})
	expect(t, check{"batch", get("/public/report"), false, LabelDefaultDeny})

	// Rules in force when Consul goes away stay in force.
	setEntry(t, c, entry(api.IntentionActionAllow))
	await.Until(t, enforceWithin, "web allowed again", func() bool { return authorize(az, "web", get("/")).Allow })
	version := az.Version()
	failures := az.Stats().Failures
	ag.Kill()
	await.Until(t, 10*time.Second, "a failed query", func() bool { return az.Stats().Failures > failures })
	if !az.Ready() || az.Version() != version {
		t.Fatalf("after the outage began: ready=%v version=%d; want ready at %d", az.Ready(), az.Version(), version)
	}
	expect(t,
		check{"web", get("/"), true, "web→api allow"},
		check{"batch", get("/admin"), false, "batch→api permission 1 deny"},
	)

	// A sidecar restarted during the outage enforces the last known rules from the snapshot.
	restarted := newAuthorizer(t, Options{Source: src, Snapshot: store})
	start(t, restarted)
	await.Until(t, 10*time.Second, "the restarted authorizer's failed query", func() bool {
		return restarted.Stats().Failures > 0
	})
	if v := restarted.Rules(); !v.Ready || v.Origin != OriginSnapshot || v.Version != version {
		t.Fatalf("restarted: %+v; want ready from the snapshot at version %d", v, version)
	}
	for _, ck := range []check{
		{"web", get("/"), true, "web→api allow"},
		{"batch", get("/public/x"), true, "batch→api permission 2 allow"},
		{"db", get("/"), false, LabelDefaultDeny},
	} {
		if d := authorize(restarted, ck.src, ck.req); d.Allow != ck.allow || d.Intention != ck.label {
			t.Errorf("restarted: %s %s = %+v; want allow=%v by %q", ck.src, ck.req.path, d, ck.allow, ck.label)
		}
	}
}

// TestConsulMaxAge: with a real agent, rules are confirmed by every answer (idle blocking
// queries included) and stay in force past MaxAge; once the agent is stopped no answer comes,
// and after MaxAge every caller is denied (counted, shown in Rules) instead of being judged
// by rules nobody has confirmed; a restarted agent's answer lifts it.
func TestConsulMaxAge(t *testing.T) {
	t.Parallel()
	ag := consuldev.Start(t)
	c := consulClient(t, ag)
	setEntry(t, c, &api.ServiceIntentionsConfigEntry{Kind: api.ServiceIntentions, Name: "api",
		Sources: []*api.SourceIntention{{Name: "web", Action: api.IntentionActionAllow}}})
	const maxAge = 1500 * time.Millisecond
	// Blocking queries time out well within maxAge, as validation demands of the real config.
	az := newAuthorizer(t, Options{Source: consulSource(t, c, 300*time.Millisecond), MaxAge: maxAge})
	start(t, az)
	await.Until(t, 10*time.Second, "first answer", az.Ready)
	first := az.FetchedAt()
	// Idle answers keep confirming the rules: still enforced after more than maxAge.
	await.Until(t, 10*time.Second, "a confirmation more than maxAge after the first", func() bool {
		return az.FetchedAt().Sub(first) > maxAge
	})
	if d := authorize(az, "web", get("/")); !d.Allow || az.Stale() {
		t.Fatalf("with the agent up: %+v, stale %v", d, az.Stale())
	}

	ag.Kill()
	await.Until(t, 10*time.Second, "stale after the agent stopped", az.Stale)
	if age := time.Since(az.FetchedAt()); age < maxAge {
		t.Fatalf("stale %s after the last answer; max age is %s", age, maxAge)
	}
	if d := authorize(az, "web", get("/")); d.Allow || d.Intention != LabelTooOld {
		t.Fatalf("with stale rules: %+v; want deny by %q", d, LabelTooOld)
	}
	v := az.Rules()
	if !v.Stale || v.StaleDenials == 0 || az.Stats().StaleDenials == 0 || v.MaxAge != maxAge.String() || v.FetchedAt == nil {
		t.Fatalf("rules view = %+v, stats %+v", v, az.Stats())
	}

	// A fresh answer (dev mode comes back empty: the default decides) ends the refusal.
	ag.Restart(t)
	await.Until(t, 30*time.Second, "fresh after the agent restarted", func() bool { return !az.Stale() })
	if d := authorize(az, "web", get("/")); d.Intention != LabelDefaultDeny {
		t.Fatalf("after the restart: %+v; want the default", d)
	}
}
