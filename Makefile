# Sextant developer commands. `make help` lists them.
GO        ?= go
PKGS      ?= ./...
BIN       ?= bin
CONFIG    ?= examples/mesh
STATICCHECK_VERSION ?= v0.8.2
# Stamped into the binaries (sextant version, sextantctl version,
# /debug/version). Without them a build falls back to what the Go
# toolchain records (module version, vcs.revision).
VERSION   ?= $(shell git describe --tags --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse HEAD 2>/dev/null)$(shell git diff --quiet HEAD 2>/dev/null || echo -dirty)
LDFLAGS   ?= -X github.com/sextant-mesh/sextant/internal/buildinfo.version=$(VERSION) \
             -X github.com/sextant-mesh/sextant/internal/buildinfo.commit=$(COMMIT)

.PHONY: help build test test-short kube-bin test-kube bench lint run demo fuzz clean

help: ## show this help
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build sextant and sextantctl into ./bin
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

test: ## all tests, race detector on; builds pilot-agent, istioctl, h2spec and kube-apiserver+etcd once (cached outside the repo)
	eval "$$(hack/kube-real.sh env)" && \
	SEXTANT_PILOT_AGENT="$$(hack/istio-agent.sh)" SEXTANT_ISTIOCTL="$$(hack/istioctl.sh)" SEXTANT_H2SPEC="$$(hack/h2spec.sh)" \
	$(GO) test -race -count=1 -timeout 25m $(PKGS)

kube-bin: ## build kube-apiserver + etcd for the Kubernetes tests (cached outside the repo)
	hack/kube-real.sh build

test-kube: ## only the Kubernetes tests, against a real kube-apiserver
	eval "$$(hack/kube-real.sh env)" && $(GO) test -race -count=1 -run 'Kube' ./test/e2e/ ./registry/kube/... ./ca/kube/ ./cmd/sextant/

test-short: ## quick tests without the race detector
	$(GO) test -count=1 -short $(PKGS)

bench: ## benchmarks (figures go to docs/performance.md)
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

lint: ## gofmt, go vet, and staticcheck when it installs
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	@if $(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) -version >/dev/null 2>&1; then \
		$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) $(PKGS); \
	else echo "staticcheck unavailable; skipped"; fi

run: ## run Sextant on the sample mesh in examples/mesh
	@echo "building sextant (the first build compiles every dependency: about 5 minutes on 2 idle cores; it lists each package as it compiles; later builds take seconds)..."
	$(GO) build -v -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/sextant
	$(BIN)/sextant serve --config-dir $(CONFIG)

demo: ## run the sample backends and a proxyless gRPC client against `make run`
	$(GO) run ./examples/demo

fuzz: ## run each fuzz target for FUZZTIME (default 30s)
	@for t in $$(grep -rl 'func Fuzz' --include='*_test.go' . | xargs -n1 dirname | sort -u); do \
		for f in $$(grep -ho 'func Fuzz[A-Za-z0-9_]*' $$t/*_test.go | cut -d' ' -f2); do \
			$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $${FUZZTIME:-30s} -fuzzminimizetime 10x $$t || exit 1; \
		done; \
	done

clean: ## remove build output
	rm -rf $(BIN)
