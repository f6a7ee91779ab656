#!/usr/bin/env bash
# The test command (README "Quick start", and exactly what .ci/run calls).
# vet, a gofmt check, then every test with the race detector. Everything it needs is the Go
# toolchain and the module proxy; integration tests start their own servers on loopback ports
# chosen at run time.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== go vet"
go vet ./...

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null; git ls-files -o --exclude-standard '*.go' 2>/dev/null) 2>/dev/null || true)
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

echo "== go test -race"
go test -race -count=1 -timeout 20m "$@" ./...
