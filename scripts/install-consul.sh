#!/usr/bin/env bash
# Builds the Consul 1.16.6 test binary from scripts/consul (a separate Go module) into a cache and
# prints its path as the LAST line on stdout; progress goes to stderr. Usage:
#
#   CONSUL=$(scripts/install-consul.sh | tail -1)
#
# Consul is not in Debian here and no prebuilt binary can be downloaded, but its source builds
# from the Go module proxy. The first build takes several minutes on 2 cores, so the binary is
# cached and rebuilt only when scripts/consul/{go.mod,go.sum,main.go} change.
#
# Environment: MESHGATE_CACHE (default ${XDG_CACHE_HOME:-$HOME/.cache}/meshgate).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
src="$root/scripts/consul"
version="1.16.6"
cache="${MESHGATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/meshgate}"
dir="$cache/consul-$version"
bin="$dir/consul"
stamp="$dir/consul.inputs.sha256"

want="$(cd "$src" && cat go.mod go.sum main.go | sha256sum | cut -d' ' -f1)"

if [ -x "$bin" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "consul $version: cached at $bin" >&2
  echo "$bin"
  exit 0
fi

mkdir -p "$dir"
# Build next to the final path and rename, so a concurrent caller or an interrupted build never
# sees a half-written binary under the cached name.
tmp="$(mktemp "$dir/consul.tmp.XXXXXX")"
trap 'rm -f "$tmp"' EXIT

echo "consul $version: building into $bin (first build takes several minutes)..." >&2
start=$(date +%s)
# The committed go.sum pins every module hash, so no GOSUMDB=off here: a tampered module fails
# the build. -mod=mod lets the build fill the module cache from the proxy without a vendor dir.
# -buildvcs=false because the nested module's VCS status is meaningless for a test binary and
# git may be unusable in some checkouts.
(
  cd "$src"
  GOFLAGS="-mod=mod -buildvcs=false" go build -trimpath -ldflags="-s -w" -o "$tmp" . >&2
)
chmod 0755 "$tmp"
mv -f "$tmp" "$bin"
echo "$want" >"$stamp"
echo "consul $version: built in $(($(date +%s) - start))s ($(du -h "$bin" | cut -f1))" >&2
"$bin" version >&2 || true
echo "$bin"
