package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"github.com/meshgate/meshgate/conf"
	"github.com/meshgate/meshgate/discovery/consul"
)

// effective.go builds the config the engine runs, in one order, as pure functions:
//
//	file config ─▶ + KV documents (conf.Merge; a rejected document falls back to its last
//	               accepted version) ─▶ sidecar expansion (conf.Config.Expanded) ─▶ translate.go
//
// The expansion comes last so KV routes land beside the user's own and never on the inbound or
// upstream listeners a sidecar generates. kv.go keeps the inputs (the documents, the accepted
// versions) and records what a merge did once it runs.

// kvInputs are the KV side of the effective config: the documents delivered and the last
// accepted version of each key.
type kvInputs struct {
	docs []consul.KVDoc
	good map[string]consul.KVDoc
}

// effectiveConfig is the config to run for file and, with kv_prefix, the KV documents (kv nil:
// none configured); the result of the merge, nil without KV, says which documents it applied.
func effectiveConfig(file *conf.Config, kv *kvInputs) (*conf.Config, *kvResult) {
	if kv == nil {
		return file.Expanded(), nil
	}
	res := mergeKV(file, kv.docs, kv.good)
	return res.cfg.Expanded(), &res
}

// mergeKV merges file with docs. A rejected document falls back to its last accepted version
// (good, by key) when that differs; if the fallback is refused too, the key is left out.
func mergeKV(file *conf.Config, docs []consul.KVDoc, good map[string]consul.KVDoc) kvResult {
	use := slices.Clone(docs)
	cfg, errs := conf.Merge(file, fragments(use))
	first := rejections(errs)
	fallback := map[string]consul.KVDoc{}
	for i, d := range use {
		g, ok := good[d.Key]
		if _, bad := first[d.Key]; bad && ok && !bytes.Equal(g.Value, d.Value) {
			fallback[d.Key] = g
			use[i] = g
		}
	}
	final := first
	if len(fallback) > 0 {
		cfg, errs = conf.Merge(file, fragments(use))
		final = rejections(errs)
		for key, err := range first {
			if again, ok := final[key]; ok && hasKey(fallback, key) {
				// The previous version no longer fits either (e.g. a name the file now uses).
				final[key] = fmt.Errorf("%w\n(its last accepted version is no longer valid either: %w)", err, again)
				delete(fallback, key)
			} else if !ok {
				final[key] = err // rejected; its fallback (if any) is served
			}
		}
	}
	res := kvResult{cfg: cfg}
	for i, d := range docs {
		err, bad := final[d.Key]
		prev, fell := fallback[d.Key]
		switch {
		case !bad:
			res.applied = append(res.applied, use[i])
		case fell:
			res.applied = append(res.applied, prev)
			res.rejected = append(res.rejected, kvRejection{doc: d, err: err, previous: &prev})
		default:
			res.rejected = append(res.rejected, kvRejection{doc: d, err: err})
		}
	}
	return res
}

func hasKey(m map[string]consul.KVDoc, key string) bool {
	_, ok := m[key]
	return ok
}

func fragments(docs []consul.KVDoc) []conf.NamedFragment {
	out := make([]conf.NamedFragment, len(docs))
	for i, d := range docs {
		out[i] = conf.NamedFragment{Name: d.Key, Data: d.Value}
	}
	return out
}

// rejections indexes Merge's errors by document key.
func rejections(errs []error) map[string]error {
	out := make(map[string]error, len(errs))
	for _, err := range errs {
		var fe *conf.FragmentError
		if errors.As(err, &fe) {
			out[fe.Name] = err
		}
	}
	return out
}
