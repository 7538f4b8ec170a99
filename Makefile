# fraiseql-observer — run `make help` for the targets.
SHELL := /bin/bash
GO    ?= go
BIN   ?= bin/fraiseql-observer
CONFIG ?= configs/postgres-only.toml
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

# Addresses of the machine's services, used by the tests (override as needed).
export FRAISEQL_TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable
export FRAISEQL_TEST_REDIS_URL    ?= redis://127.0.0.1:6379/0
export FRAISEQL_TEST_NATS_URL     ?= nats://127.0.0.1:4222

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-18s %s\n", $$1, $$2}'

.PHONY: build
build: ## build the binary into bin/
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/fraiseql-observer

.PHONY: services
services: ## start PostgreSQL, Redis and NATS on this machine if they are down
	@./.ci/services

# The services `make run` starts: only those the topology of $(CONFIG) uses
# (override with TOPOLOGY=...).
TOPOLOGY ?= $(or $(shell sed -n 's/^topology *= *"\([a-z-]*\)".*/\1/p' $(CONFIG) 2>/dev/null | head -n1),postgres-only)
SERVICES_postgres-only    := postgres
SERVICES_postgres-redis   := postgres redis
SERVICES_nats-distributed := postgres redis nats
SERVICES_multi-database   := postgres redis nats
SERVICES_memory           :=

.PHONY: run
run: build ## run the service with CONFIG (default configs/postgres-only.toml), starting only the services its topology needs
	$(if $(strip $(SERVICES_$(TOPOLOGY))),./.ci/services $(SERVICES_$(TOPOLOGY)))
	$(BIN) run --config $(CONFIG)

.PHONY: test
test: services promtool ## run every test (unit and integration, race detector on) against the local services
	$(GO) test -race -count=1 -timeout 30m ./...

.PHONY: test-unit
test-unit: ## run the tests that need no service
	$(GO) test -race -count=1 ./domain/... ./application/... ./adapters/memory/... ./adapters/webhook/... ./adapters/httpguard/... ./adapters/logaction/... ./adapters/adminhttp/... ./adapters/prometheus/... ./bootstrap/config/... ./docker/... ./internal/archtest/...

.PHONY: test-integration
test-integration: services ## run the end-to-end suites against the real services
	$(GO) test -race -count=1 -timeout 30m ./integration/...

.PHONY: bench
bench: services ## run the benchmarks (see README for the load harness)
	$(GO) test -run '^$$' -bench . -benchmem ./...

# The end-to-end load harness (cmd/fraiseql-bench): the real binary per
# topology against the local services; flags in ARGS, e.g.
#   make bench-e2e ARGS='-runs 2 -topologies postgres-only -pprof /tmp/prof'
ARGS ?=
.PHONY: bench-e2e
bench-e2e: services ## run the end-to-end load harness and print its table (ARGS passes flags; see README, Performance)
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/fraiseql-observer
	$(GO) run ./cmd/fraiseql-bench -bin $(BIN) $(ARGS)

.PHONY: fuzz
fuzz: ## fuzz the condition parser for 60s
	$(GO) test -run '^$$' -fuzz FuzzCompileCondition -fuzztime 60s ./domain

GOLANGCI_LINT ?= $(shell command -v golangci-lint 2>/dev/null || echo $(shell $(GO) env GOPATH)/bin/golangci-lint)

.PHONY: lint
lint: ## gofmt check, go vet and golangci-lint (installs it with `make tools` when missing)
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1)
	$(GO) vet ./...
	@test -x "$(GOLANGCI_LINT)" || $(MAKE) tools
	$(GOLANGCI_LINT) run ./...

.PHONY: fmt
fmt: ## format the code
	gofmt -w $$(git ls-files '*.go')

.PHONY: tidy
tidy: ## tidy go.mod
	$(GO) mod tidy

.PHONY: promtool
promtool: ## install promtool (Debian package prometheus) when missing: the alert-rule tests need it
	@command -v promtool >/dev/null 2>&1 || { \
	  echo "installing promtool (Debian package prometheus)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	  if command -v systemctl >/dev/null 2>&1; then systemctl disable --now prometheus >/dev/null 2>&1 || true; fi; }

.PHONY: tools
tools: ## install golangci-lint
	$(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0

.PHONY: image
image: ## build the container image fraiseql-observer:VERSION (and :latest; needs a Docker engine)
	docker build -f docker/Dockerfile --build-arg VERSION=$(VERSION) -t fraiseql-observer:$(VERSION) -t fraiseql-observer .
