package gateway

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/rs/zerolog"

	"github.com/meshgate/meshgate/conf"
	"github.com/meshgate/meshgate/discovery/consul"
)

// Dynamic routes from Consul KV (discovery.consul.kv_prefix):
//
//	consul.WatchKV ──docs──▶ applyKV ─┐                       ┌─ ok ──▶ swap, remember accepted versions, SaveKV
//	file Reload ──file cfg──▶ Reload ─┴─▶ withKV: conf.Merge ─▶ reload (validate-then-swap)
//	                                      (file + documents,  └─ err ─▶ keep the running config
//	                                       rejected ones fall back to their last accepted version)
//
// The effective config is always rebuilt from two inputs kept under Server.mu: the file config
// last loaded from disk (Server.fileCfg) and the documents last delivered (edgeKV.docs). So a
// file reload re-merges the current documents and a KV change re-merges the current file.
//
// "The previous one stays": a document that becomes invalid is replaced by the last version
// of the same key that was accepted (if it is still valid with everything else), so a typo in
// a KV edit never removes working routes. Deleting a key does remove them. The accepted set is
// saved to the snapshot, so a restart during a Consul outage — or with an invalid document in
// Consul — starts from documents that were valid.

// edgeKV is the KV document state of an edge; nil without kv_prefix, and its methods are
// safe on nil.
type edgeKV struct {
	prefix string
	src    *consul.Source
	log    zerolog.Logger
	stop   context.CancelFunc // ends the watch; set by startKV

	// Guarded by Server.mu.
	docs     []consul.KVDoc          // the latest delivery (or the snapshot at start)
	good     map[string]consul.KVDoc // by key: the last accepted version
	applied  []consul.KVDoc          // the documents in the running config
	saved    []consul.KVDoc          // what the snapshot holds
	rejected []kvRejection           // of the running merge
	reasons  map[string]string       // by key: the rejection last logged
	closed   bool
	applyErr error // why the last merge is not running (the gateway refused it); nil if it is

	report atomic.Pointer[[]byte] // the /config comment block
}

// kvResult is one merge of the file config with the documents.
type kvResult struct {
	cfg      *conf.Config
	applied  []consul.KVDoc
	rejected []kvRejection
}

type kvRejection struct {
	doc      consul.KVDoc
	err      error
	previous *consul.KVDoc // the version served instead, if any
}

// newEdgeKV loads the saved documents, if any, so the first generation already serves them.
func newEdgeKV(cfg *conf.Config, disc *edgeDiscovery, log zerolog.Logger) *edgeKV {
	cc := cfg.Discovery.Consul
	if cc == nil || cc.KVPrefix == "" || disc == nil {
		return nil
	}
	k := &edgeKV{
		prefix:  consul.NormalizeKVPrefix(cc.KVPrefix),
		src:     disc.consul,
		log:     log.With().Str("component", "kv").Logger(),
		good:    map[string]consul.KVDoc{},
		reasons: map[string]string{},
	}
	if docs, savedAt, ok := k.src.LoadKV(k.prefix); ok {
		k.docs, k.saved = docs, docs
		k.log.Info().Str(fieldKVPrefix, k.prefix).Int("documents", len(docs)).Time("saved_at", savedAt).
			Msg("kv documents loaded from the snapshot")
	}
	return k
}

const fieldKVPrefix = "kv_prefix"

// startKV starts following the prefix; deliveries re-merge and reload (applyKV). Called once
// the first generation serves, so a delivery always has handlers to swap.
func (e *Server) startKV() error {
	if e.kv == nil {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.kv.stop = cancel
	if err := e.kv.src.WatchKV(ctx, e.kv.prefix, e.applyKV); err != nil {
		cancel()
		return fmt.Errorf("edge: kv: %w", err)
	}
	return nil
}

// stopKV ends the watch; a delivery already waiting for Server.mu then does nothing.
func (e *Server) stopKV() {
	if e.kv == nil {
		return
	}
	e.mu.Lock()
	e.kv.closed = true
	e.mu.Unlock()
	if e.kv.stop != nil {
		e.kv.stop()
	}
}

// withKV returns the config to run for file and the current documents (effective.go). Called
// with Server.mu held; nothing is recorded until commit.
func (e *Server) withKV(file *conf.Config) (*conf.Config, *kvResult) {
	want := ""
	if cc := file.Discovery.Consul; cc != nil {
		want = consul.NormalizeKVPrefix(cc.KVPrefix)
	}
	// Warn about the prefix only for a new file, not again at every KV change.
	newFile := file != e.fileCfg
	if e.kv == nil {
		if want != "" && newFile {
			e.log.Warn().Str(fieldKVPrefix, want).Msg("discovery.consul.kv_prefix takes effect at the next restart")
		}
		return effectiveConfig(file, nil)
	}
	if want != e.kv.prefix && newFile {
		e.log.Warn().Str(fieldKVPrefix, e.kv.prefix).Str("configured", want).
			Msg("discovery.consul.kv_prefix changes take effect at the next restart; still following the old prefix")
	}
	return effectiveConfig(file, &kvInputs{docs: e.kv.docs, good: e.kv.good})
}

// applyKV is the WatchKV callback: re-merge with the file config and reload if the documents
// in force change. It runs on the watch's goroutine; the next query waits for it.
func (e *Server) applyKV(docs []consul.KVDoc) {
	e.mu.Lock()
	defer e.mu.Unlock()
	k := e.kv
	if k.closed || consul.SameKVDocs(k.docs, docs) {
		return
	}
	k.docs = docs
	cfg, res := e.withKV(e.fileCfg)
	if consul.SameKVDocs(res.applied, k.applied) {
		// The running config already is file + these documents: only rejections changed.
		k.commit(res)
		return
	}
	if err := e.reload(cfg); err != nil {
		e.reloads.WithLabelValues("failure").Inc()
		k.applyErr = err
		k.log.Error().Err(err).Str(fieldKVPrefix, k.prefix).Msg("kv documents could not be applied; keeping the running config")
		k.publish()
		return
	}
	e.reloads.WithLabelValues("success").Inc()
	k.commit(res)
	k.log.Info().Str(fieldKVPrefix, k.prefix).Int("applied", len(res.applied)).Int("rejected", len(res.rejected)).
		Str("summary", conf.Summary(cfg)).Msg("kv documents applied")
}

// commit records a merge that is now running: remembers accepted versions (forgetting deleted
// keys), logs rejections that are new, saves the accepted set and refreshes /config's report.
func (k *edgeKV) commit(res *kvResult) {
	if k == nil || res == nil {
		return
	}
	k.applied, k.rejected, k.applyErr = res.applied, res.rejected, nil
	present := map[string]bool{}
	for _, d := range k.docs {
		present[d.Key] = true
	}
	for key := range k.good {
		if !present[key] {
			delete(k.good, key)
		}
	}
	for _, d := range res.applied {
		k.good[d.Key] = d
	}

	rejected := map[string]bool{}
	for _, r := range res.rejected {
		rejected[r.doc.Key] = true
		reason := r.err.Error()
		if k.reasons[r.doc.Key] == reason {
			continue
		}
		k.reasons[r.doc.Key] = reason
		ev := k.log.Error().Str("key", r.doc.Key).Uint64("modify_index", r.doc.ModifyIndex).Str("reason", reason)
		if r.previous != nil {
			ev.Uint64("serving_modify_index", r.previous.ModifyIndex).Msg("kv document rejected; serving its last accepted version")
		} else {
			ev.Msg("kv document rejected; it is not applied")
		}
	}
	for _, key := range slices.Sorted(maps.Keys(k.reasons)) {
		if !rejected[key] {
			delete(k.reasons, key)
			if present[key] {
				k.log.Info().Str("key", key).Msg("kv document accepted")
			}
		}
	}

	if !consul.SameKVDocs(res.applied, k.saved) {
		if err := k.src.SaveKV(k.prefix, res.applied); err != nil {
			k.log.Warn().Err(err).Msg("could not save the kv snapshot; serving continues")
		} else {
			k.saved = res.applied
		}
	}
	k.publish()
}

// publish renders the /config comment block from the state under Server.mu.
func (k *edgeKV) publish() {
	var b strings.Builder
	fmt.Fprintf(&b, "\n# kv documents under %s/: %d applied, %d rejected\n", k.prefix, len(k.applied), len(k.rejected))
	for _, d := range k.applied {
		fmt.Fprintf(&b, "#   applied: %s (modify_index %d)\n", comment(d.Key), d.ModifyIndex)
	}
	for _, r := range k.rejected {
		fmt.Fprintf(&b, "#   rejected: %s (modify_index %d)", comment(r.doc.Key), r.doc.ModifyIndex)
		if r.previous != nil {
			fmt.Fprintf(&b, ", serving its last accepted version (modify_index %d)", r.previous.ModifyIndex)
		}
		b.WriteString(":\n")
		writeCommented(&b, "#     ", r.err.Error())
	}
	if k.applyErr != nil {
		b.WriteString("#   the latest documents could not be applied (the config above is still running):\n")
		writeCommented(&b, "#     ", k.applyErr.Error())
	}
	out := []byte(b.String())
	k.report.Store(&out)
}

// writeCommented writes text with every line behind prefix.
func writeCommented(b *strings.Builder, prefix, text string) {
	for line := range strings.Lines(text) {
		b.WriteString(prefix)
		b.WriteString(comment(strings.TrimSuffix(line, "\n")))
		b.WriteByte('\n')
	}
}

// comment escapes what YAML would take as a line break, so no key or document content can
// end the comment and inject YAML into /config.
func comment(s string) string {
	return strings.NewReplacer("\r", `\r`, "\n", `\n`, "\u0085", `\u0085`, "\u2028", `\u2028`, "\u2029", `\u2029`).Replace(s)
}

// configReport is appended to /config: which documents are in force and why others are not.
func (k *edgeKV) configReport() []byte {
	if k == nil {
		return nil
	}
	if r := k.report.Load(); r != nil {
		return *r
	}
	return nil
}
