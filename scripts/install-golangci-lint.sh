#!/usr/bin/env bash
# Builds golangci-lint (pinned below) into a cache and prints its path as the LAST line on stdout;
# progress goes to stderr. Usage:
#
#   GOLANGCI_LINT=$(scripts/install-golangci-lint.sh | tail -1)
#
# There is no Debian package at this version and no prebuilt binary can be downloaded, but the
# module proxy serves its source, so `go install` builds it. The build takes a few minutes on
# 2 cores, so the binary is cached per version (and per Go toolchain, since golangci-lint must be
# built with a Go at least as new as the code it analyses) and reused.
#
# Environment: MESHGATE_CACHE (default ${XDG_CACHE_HOME:-$HOME/.cache}/meshgate), the same cache
# as scripts/install-consul.sh.
set -euo pipefail

version="v2.15.0"
gover="$(go env GOVERSION)"
cache="${MESHGATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/meshgate}"
dir="$cache/golangci-lint-$version-$gover"
bin="$dir/golangci-lint"

if [ -x "$bin" ]; then
  echo "golangci-lint $version: cached at $bin" >&2
  echo "$bin"
  exit 0
fi

mkdir -p "$dir"
# Install into a temporary GOBIN next to the final path and rename, so a concurrent caller or an
# interrupted build never sees a half-written binary under the cached name.
tmp="$(mktemp -d "$dir/build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

echo "golangci-lint $version: building into $bin (takes a few minutes)..." >&2
start=$(date +%s)
# Module mode with an explicit version ignores this repository's go.mod; the checksum database
# verifies the downloaded modules. -buildvcs=false: there is no VCS information to stamp.
GOBIN="$tmp" GOFLAGS="-buildvcs=false" go install -trimpath -ldflags="-s -w" \
  "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$version" >&2
mv -f "$tmp/golangci-lint" "$bin"
echo "golangci-lint $version: built in $(($(date +%s) - start))s" >&2
"$bin" version >&2 || true
echo "$bin"
