#!/usr/bin/env bash
# The linters (run by scripts/test.sh, so by CI): shellcheck on every shell script in the
# repository, then golangci-lint with .golangci.yml. Both are installed here when missing:
# Debian's shellcheck package (0.9.0 in bookworm; another version is warned about),
# golangci-lint v2.15.0 built once by scripts/install-golangci-lint.sh into the meshgate cache.
# Arguments go to golangci-lint run, before ./... (for example --fix).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== shellcheck"
shellcheck_version="0.9.0"
if ! command -v shellcheck >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1; then sudo="sudo"; else sudo="none"; fi
  if [ "$sudo" = none ]; then
    echo "warning: shellcheck is missing and neither root nor sudo is available to install it" >&2
  elif ! { $sudo env DEBIAN_FRONTEND=noninteractive apt-get update &&
           $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y shellcheck; }; then
    echo "warning: installing shellcheck $shellcheck_version failed" >&2
  fi
fi
if command -v shellcheck >/dev/null 2>&1; then
  have="$(shellcheck --version | sed -n 's/^version: //p')"
  if [ "$have" != "$shellcheck_version" ]; then
    echo "warning: shellcheck $have, not the pinned $shellcheck_version; its findings may differ" >&2
  fi
  # Every tracked or new (not ignored) file that is a shell script by name or by its #! line
  # (all files when this is not a git checkout).
  files="$({ git ls-files; git ls-files -o --exclude-standard; } 2>/dev/null | sort -u || true)"
  [ -n "$files" ] || files="$(find . -path ./.git -prune -o -type f -print | sed 's|^\./||')"
  scripts=()
  while IFS= read -r f; do
    [ -f "$f" ] || continue
    case "$f" in
      *.sh | *.bash) scripts+=("$f") ;;
      *) if head -n1 "$f" 2>/dev/null | grep -qE '^#!.*[/ ](ba|da)?sh( |$)'; then scripts+=("$f"); fi ;;
    esac
  done <<<"$files"
  shellcheck "${scripts[@]}"
  echo "shellcheck: ${#scripts[@]} scripts ok"
elif [ -n "${CI:-}" ]; then
  echo "error: shellcheck is required when CI is set" >&2
  exit 1
else
  echo "warning: skipping shellcheck (not installed); CI fails here" >&2
fi

echo "== golangci-lint"
# A failed build fails the run: golangci-lint is built from the module proxy, which the Go
# tests need anyway.
golangci_lint="$(scripts/install-golangci-lint.sh | tail -1)"
"$golangci_lint" run "$@" ./...
