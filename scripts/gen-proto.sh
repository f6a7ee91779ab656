#!/usr/bin/env bash
# Regenerates the committed Go code for the plugin contract (plugins/proto/plugin.proto):
# plugin.pb.go (messages) and plugin_grpc.pb.go (the gRPC service). Usage:
#
#   scripts/gen-proto.sh          # rewrite plugins/proto/*.pb.go
#   scripts/gen-proto.sh -check   # regenerate into a temp dir; exit 1 if the committed code differs
#
# Works on a fresh Debian machine: protoc comes from Debian's protobuf-compiler package
# (installed here if missing, with sudo when not root, as scripts/test.sh does for Redis), and
# both code generators are built from the Go module proxy at pinned versions into a cache, so
# every machine generates the same bytes.
#
# protoc-gen-go is pinned to the google.golang.org/protobuf version in go.mod: generated code
# must not be newer than the runtime it links against, and taking the version from go.mod keeps
# the two from drifting apart. protoc-gen-go-grpc is its own module, pinned below.
#
# Environment: MESHGATE_CACHE (default ${XDG_CACHE_HOME:-$HOME/.cache}/meshgate).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

grpc_gen_version="v1.6.2"
# The protoc whose output is committed (Debian 12's). Another version still generates working
# code; it only changes the version comment at the top of the files, which -check ignores.
protoc_version="3.21.12"

check=false
case "${1:-}" in
  "") ;;
  -check|--check) check=true ;;
  *) echo "usage: $0 [-check]" >&2; exit 2 ;;
esac

if ! command -v protoc >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    sudo=""
  elif command -v sudo >/dev/null 2>&1; then
    sudo="sudo"
  else
    echo "protoc is missing and neither root nor sudo is available: install Debian's protobuf-compiler" >&2
    exit 1
  fi
  echo "== installing protoc (protobuf-compiler)" >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y protobuf-compiler
fi
have="$(protoc --version | awk '{print $2}')"
if [ "$have" != "$protoc_version" ]; then
  echo "note: protoc $have here, the committed code came from $protoc_version (only the header comment differs)" >&2
fi

protobuf_version="$(go list -m -f '{{.Version}}' google.golang.org/protobuf)"
cache="${MESHGATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/meshgate}/protoc-gen"

# build NAME PACKAGE VERSION: go install PACKAGE@VERSION into its own cache dir (once) and
# print the binary's path. `go install pkg@version` builds from that module's own go.mod, so it
# never touches ours.
build() {
  local name="$1" pkg="$2" version="$3"
  local dir="$cache/$name-$version"
  if [ ! -x "$dir/$name" ]; then
    echo "== building $name $version into $dir" >&2
    mkdir -p "$dir"
    GOBIN="$dir" GOFLAGS=-buildvcs=false go install "$pkg@$version"
  fi
  echo "$dir/$name"
}

gen_go="$(build protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go "$protobuf_version")"
gen_grpc="$(build protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc "$grpc_gen_version")"

out="plugins/proto"
if $check; then
  out="$(mktemp -d)"
  trap 'rm -rf "$out"' EXIT
fi

# paths=source_relative writes next to the .proto (plugins/proto/) whatever go_package says.
protoc \
  --proto_path=plugins/proto \
  --plugin=protoc-gen-go="$gen_go" \
  --plugin=protoc-gen-go-grpc="$gen_grpc" \
  --go_out="$out" --go_opt=paths=source_relative \
  --go-grpc_out="$out" --go-grpc_opt=paths=source_relative \
  plugins/proto/plugin.proto

if $check; then
  # -I skips the generators' version comments, the only lines another protoc changes.
  for f in plugin.pb.go plugin_grpc.pb.go; do
    if ! diff -u -I '^//[[:space:]]*\(- \)\?protoc' "plugins/proto/$f" "$out/$f"; then
      echo "plugins/proto/$f is out of date: run scripts/gen-proto.sh" >&2
      exit 1
    fi
  done
  echo "plugins/proto: generated code is up to date" >&2
else
  echo "plugins/proto: regenerated plugin.pb.go and plugin_grpc.pb.go" >&2
fi
