# Thin aliases for the scripts (which are what CI and the README call), plus a stamped build.
# `make build` puts the binary in bin/ (git-ignored): static, as docs/operations.md builds it.

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X main.version=$(VERSION) -X main.commit=$(COMMIT)

.PHONY: all build test demo bench lint

all: build

build:
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o bin/meshgate .

test:
	scripts/test.sh

demo:
	scripts/demo.sh

bench:
	scripts/bench.sh

# go vet plus a gofmt check over tracked and new (not ignored) Go files, then scripts/lint.sh
# (shellcheck and golangci-lint, as scripts/test.sh runs them).
lint:
	go vet ./...
	@files=$$( (git ls-files '*.go'; git ls-files -o --exclude-standard '*.go') 2>/dev/null | sort -u); \
	  if [ -z "$$files" ]; then files=$$(find . -name '*.go' -not -path './bin/*'); fi; \
	  out=$$(gofmt -l $$files); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi; \
	  echo "gofmt: ok"
	scripts/lint.sh
