// Package conf owns meshgate's user-facing configuration: the YAML schema (schema.go), loading
// it strictly, filling defaults, validating it with precise error locations, and watching the
// file for reloads. It imports nothing from this module; the engine assembly (gateway/translate.go,
// for the edge and the sidecar alike) translates a *Config into each package's own Options, so
// nothing on the hot path depends on this schema. A sidecar block is first turned into plain
// listeners and routes by Config.Expanded (sidecar.go), which is why one engine runs both modes.
//
// # Loading pipeline
//
//	raw bytes ─▶ expand ${ENV} ─▶ parse YAML ─▶ decode strict ─▶ Defaults ─▶ validate ─▶ *Config
//	              (text, lines     (yaml.Node     (unknown keys,   (zero →      (semantics,
//	               preserved)       tree kept)     dup keys,        documented   every problem)
//	                                               wrong types)     values)
//
// Expansion is textual and happens first, so ${PORT} can stand anywhere a scalar can:
// ${VAR} must be set, ${VAR:-default} falls back when VAR is unset or empty, $$ is a literal $.
// Every stage collects all its problems instead of stopping at the first; expansion problems
// are reported alone because decoding text with holes in it only adds noise.
//
// Decoding keeps the yaml.Node tree. Semantic checks produce (key path, message) pairs and the
// path is resolved to a line by walking the tree; yaml.v3's own "line N: ..." type errors are
// mapped back to a key path by searching the tree for the node on that line.
//
// # Errors
//
// Parse and Load fail with Errors (see AsErrors; errors.As works for Errors and Error), one
// Error per problem, sorted by line and rendered one per line as
//
//	FILE:LINE: PATH: MSG
//	meshgate.yaml:7: routes[1].match.path_regex: invalid regex: missing closing )
//
// This is what `meshgate validate` prints and what OnError receives on a bad reload.
//
// # Reload contract
//
// A Watcher watches the file's directory (editors and k8s/Nomad templates replace files by
// rename), debounces bursts, and skips content identical to the config in force. Trigger (main
// calls it on SIGHUP) forces a reload. A new file is fully validated before OnChange sees it:
// consumers swap in the new config only from OnChange, and on OnError they keep the old one.
// Validate, then swap; never half-apply.
//
// # Fragments
//
// ParseFragment and Merge (fragment.go) handle config documents from elsewhere — Consul KV
// under discovery.consul.kv_prefix — that may only add routes, policies and services: each is
// decoded as strictly as a file (without ${ENV} expansion: it is remote data), merged after the
// file in name order with names that must be new, and validated together with it by the same
// validator; an invalid document is dropped with a FragmentError naming it.
package conf
