#!/usr/bin/env bash
# Builds Jaeger v2 (github.com/jaegertracing/jaeger/cmd/jaeger, release v1.75.0: the all-in-one
# binary, an OpenTelemetry Collector with Jaeger's storage and query extensions) from
# scripts/jaeger (a tools module: `tool` directive, committed go.mod and go.sum) into a cache
# and prints its path as the LAST line on stdout; progress goes to stderr. Usage:
#
#   JAEGER=$(scripts/install-jaeger.sh | tail -1)
#
# The demo sends its traces there (scripts/demo.sh). No prebuilt binary can be downloaded here,
# but the source builds from the Go module proxy. The build is large (minutes on 2 cores), so
# the binary is cached per Jaeger version and Go toolchain, and rebuilt only when
# scripts/jaeger/{go.mod,go.sum} change.
#
# Environment: MESHGATE_CACHE (default ${XDG_CACHE_HOME:-$HOME/.cache}/meshgate).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
src="$root/scripts/jaeger"
version="1.75.0" # the approved release; keep it in step with scripts/jaeger/go.mod
pkg="github.com/jaegertracing/jaeger/cmd/jaeger"
cache="${MESHGATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/meshgate}"
gover="$(cd "$src" && go env GOVERSION)"
dir="$cache/jaeger-$version-$gover"
bin="$dir/jaeger"
stamp="$dir/jaeger.inputs.sha256"

if ! grep -q "^[[:space:]]*github.com/jaegertracing/jaeger v$version\b" "$src/go.mod"; then
  echo "jaeger: scripts/jaeger/go.mod does not require github.com/jaegertracing/jaeger v$version" >&2
  exit 1
fi
want="$(cd "$src" && cat go.mod go.sum | sha256sum | cut -d' ' -f1)"

if [ -x "$bin" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "jaeger $version: cached at $bin" >&2
  echo "$bin"
  exit 0
fi

mkdir -p "$dir"
# Build next to the final path and rename, so a concurrent caller or an interrupted build never
# sees a half-written binary under the cached name.
tmp="$(mktemp "$dir/jaeger.tmp.XXXXXX")"
trap 'rm -f "$tmp"' EXIT

echo "jaeger $version: building into $bin with $gover (the first build takes several minutes)..." >&2
start=$(date +%s)
# The committed go.sum pins every module hash (no GOSUMDB=off). -mod=mod lets the build fill the
# module cache from the proxy; -buildvcs=false: the nested module's VCS state means nothing here.
(
  cd "$src"
  GOFLAGS="-mod=mod -buildvcs=false" go build -trimpath -ldflags="-s -w" -o "$tmp" "$pkg" >&2
)
chmod 0755 "$tmp"
mv -f "$tmp" "$bin"
echo "$want" >"$stamp"
echo "jaeger $version: built in $(($(date +%s) - start))s ($(du -h "$bin" | cut -f1))" >&2
echo "$bin"
