#!/usr/bin/env bash
# The test command (README "Quick start", and exactly what .ci/run calls).
# vet, a gofmt check, the linters (scripts/lint.sh: shellcheck and golangci-lint), then every
# test with the race detector. Everything it needs is the Go toolchain, the module proxy and
# Debian's packages (installed below when missing); integration tests start their own servers
# on loopback ports chosen at run time.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== go vet"
go vet ./...

echo "== gofmt"
# One file name per line (xargs -d '\n'), so names are not split on spaces or globbed.
unformatted=$( { git ls-files '*.go'; git ls-files -o --exclude-standard '*.go'; } 2>/dev/null |
  xargs -r -d '\n' gofmt -l 2>/dev/null || true)
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

# The linters: shellcheck and golangci-lint, each installed (pinned, cached) when missing.
scripts/lint.sh

echo "== redis-server (cluster rate-limit tests start their own on a free loopback port)"
if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    sudo=""
  elif command -v sudo >/dev/null 2>&1; then
    sudo="sudo"
  else
    sudo="none"
  fi
  if [ "$sudo" = none ]; then
    echo "warning: redis-server is missing and neither root nor sudo is available; Redis tests will skip (and fail when CI is set)" >&2
  elif ! { $sudo env DEBIAN_FRONTEND=noninteractive apt-get update &&
           $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server; }; then
    echo "warning: installing redis-server failed; Redis tests will skip (and fail when CI is set)" >&2
  fi
  # Debian's package starts a system service on port 6379; the tests do not use it.
  [ "$sudo" = none ] || $sudo service redis-server stop 2>/dev/null || true
fi

echo "== nats-server (the demo's self-test ships its access logs to one on a free loopback port)"
# Debian's package puts it in /usr/sbin, which is not on every user's PATH; the demo looks there.
if ! command -v nats-server >/dev/null 2>&1 && ! [ -x /usr/sbin/nats-server ]; then
  if [ "$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1; then sudo="sudo"; else sudo="none"; fi
  if [ "$sudo" = none ]; then
    echo "warning: nats-server is missing and neither root nor sudo is available; the demo's self-test will skip (and fail when CI is set)" >&2
  elif ! { $sudo env DEBIAN_FRONTEND=noninteractive apt-get update &&
           $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y nats-server; }; then
    echo "warning: installing nats-server failed; the demo's self-test will skip (and fail when CI is set)" >&2
  fi
  # The package may start a system service on port 4222; the demo does not use it.
  [ "$sudo" = none ] || $sudo service nats-server stop 2>/dev/null || true
fi

echo "== systemd-analyze (the unit-file test runs systemd-analyze verify)"
if ! command -v systemd-analyze >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1; then sudo="sudo"; else sudo="none"; fi
  if [ "$sudo" = none ] || ! $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y systemd; then
    echo "warning: systemd-analyze is missing; the unit-file test will skip (and fail when CI is set)" >&2
  fi
fi

echo "== chromium (the dashboard test loads the admin page in headless Chromium)"
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1; then sudo="sudo"; else sudo="none"; fi
  if [ "$sudo" = none ]; then
    echo "warning: chromium is missing and neither root nor sudo is available; the dashboard test will skip (and fail when CI is set)" >&2
  elif ! { $sudo env DEBIAN_FRONTEND=noninteractive apt-get update &&
           $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }; then
    echo "warning: installing chromium failed; the dashboard test will skip (and fail when CI is set)" >&2
  fi
fi

echo "== consul (tests that need a real agent start their own on free loopback ports)"
# The first build takes several minutes; later runs reuse the cached binary. A failed build
# fails the run: without the binary, Consul tests skip locally but fail when CI is set.
MESHGATE_CONSUL_BIN="$(scripts/install-consul.sh | tail -1)"
export MESHGATE_CONSUL_BIN

echo "== jaeger (the demo's self-test sends its traces to one on free loopback ports)"
# Built from source like Consul: several minutes the first time, then cached per version and Go
# toolchain. A failed build fails the run (without it the self-test fails when CI is set).
MESHGATE_JAEGER_BIN="$(scripts/install-jaeger.sh | tail -1)"
export MESHGATE_JAEGER_BIN

echo "== go test -race"
go test -race -count=1 -timeout 20m "$@" ./...

echo "== allocation checks (without -race: the race detector changes allocation counts)"
# The hot-path AllocsPerRun assertions skip themselves under -race, so they run here once more
# without it; each is named *Alloc*.
go test -count=1 -timeout 5m -run 'Alloc|DoesNotAllocate' "$@" ./...
