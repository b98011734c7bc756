# Makefile for coffer. GNU make and bash are required.
#
#   make build        build bin/coffer
#   make demo         build, then run the end-to-end demo in ./demo (needs root or FUSE)
#   make test         deps + check + unit + integration + stress + fuzz-quick + bench-quick (what CI runs)
#   make soak         the long robustness runs (about an hour)
#   make install      copy bin/coffer to $(DESTDIR)$(PREFIX)/bin

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

# Debian's golang packages and the upstream tarball install go in different places.
export PATH := /usr/local/go/bin:$(PATH)

GO      ?= go
PREFIX  ?= /usr/local
BIN     := bin/coffer
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

# Packages the tests and the demo run; scripts/deps.sh installs the missing ones.
DEPS := fuse3 sqlite3 git openssl tar rsync swtpm swtpm-tools tpm2-tools softhsm2 opensc

FUZZTIME ?= 10s

.PHONY: build demo test deps check unit integration stress soak fuzz-quick clean install

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/coffer

demo: deps build
	scripts/demo.sh $(BIN)

test: deps check unit integration stress fuzz-quick bench-quick

deps:
	scripts/deps.sh $(DEPS)

check:
	@unformatted="$$(gofmt -l .)"; \
	if [[ -n "$$unformatted" ]]; then \
		echo "gofmt would change these files:" >&2; echo "$$unformatted" >&2; exit 1; \
	fi
	$(GO) vet ./...
	GOOS=windows $(GO) vet ./...
	$(GO) mod tidy -diff

unit:
	$(GO) test -race $$($(GO) list ./... | grep -v -e '/integration' -e '/stress')

integration:
	$(GO) test ./integration/... -count=1 -timeout 30m

# The robustness suite mounts many volumes; without -race it fits in minutes.
stress:
	$(GO) test ./stress/... -count=1 -timeout 20m

soak:
	$(GO) test ./stress/ -count=1 -timeout 5h -args -stress.soak
	scripts/fuzz-quick.sh 2m

fuzz-quick:
	scripts/fuzz-quick.sh $(FUZZTIME)

# The benchmark of issue 7: coffer against gocryptfs and go-fuse's loopback on
# tmpfs and on the disk; it rewrites the results section of docs/benchmarks.md.
# Needs root and FUSE; run it on a quiet machine. BENCHFLAGS='-rounds 5' etc.
BENCH      := bin/coffer-bench
BENCHFLAGS ?=

.PHONY: bench bench-quick bench-build

bench-build: build
	scripts/deps.sh gocryptfs
	$(GO) build -trimpath -o $(BENCH) ./cmd/coffer-bench

bench: deps bench-build
	$(BENCH) -coffer $(BIN) $(BENCHFLAGS)

# Tiny sizes, one round, tmpfs only, in seconds; fails if any file system
# returns wrong data, so the benchmark cannot rot.
bench-quick: deps bench-build
	$(BENCH) -quick -coffer $(BIN)

clean:
	scripts/demo.sh --clean $(BIN)
	rm -rf bin

install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/coffer
