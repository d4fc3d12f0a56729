# Bosun — run `make help` for the targets.

SHELL        := /bin/bash
GO           ?= go
BIN          := bin/bosun
VERSION      ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS      := -X github.com/bosun-gitops/bosun/internal/version.Version=$(VERSION)
DATA_DIR     ?= .bosun
# Packages needed by the tests and by `make run` (Debian names).
DEB_PACKAGES := git ca-certificates iproute2 procps containerd runc containernetworking-plugins iptables nftables conntrack busybox-static docker-registry openssh-server openssh-client sudo
export GOFLAGS ?= -buildvcs=false

.PHONY: help deps build run test test-short e2e e2e-clean e2e-vm bench bench-e2e bench-e2e-run lint fuzz clean gitea e2e-forge

help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | sort | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

deps: ## install what builds and tests need (Debian packages, Go modules)
	@missing=""; for p in $(DEB_PACKAGES); do \
		dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi
	$(GO) mod download

build: ## build bin/bosun (static: the operator copies it to machines whatever their libc)
	CGO_ENABLED=0 $(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/bosun

run: deps build ## start a single-machine Bosun in .bosun/: embedded etcd, operator, local Git repo and, as root, a node agent on containerd
	$(BIN) up --data-dir $(DATA_DIR)

test: deps ## vet and run every test (integration tests use real etcd and git)
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 30m ./...

test-short: ## unit tests only (-short skips the slow integration tests)
	$(GO) test -short -count=1 ./...

e2e: deps build ## end-to-end tests against the built binary (as root: namespace machines, networking; Gitea once `make gitea` built it)
	BOSUN_BIN=$(CURDIR)/$(BIN) GITEA_BIN=$(GITEA_BIN) GITEA_SRC=$(GITEA_DIR)/src $(GO) test -count=1 -tags e2e -timeout 30m -v ./e2e/... 2>&1 | \
		grep -vE '^=== (RUN|PAUSE|CONT|NAME)'; exit $${PIPESTATUS[0]}

e2e-clean: ## remove what crashed end-to-end runs left behind (stale namespace-machine labs; live ones are kept)
	$(GO) run ./e2e/machines/cleanup

# The VM tier: qemu, and what builds its Debian image (~/.cache/bosun/vm-<version>, built once).
VM_PACKAGES  := qemu-system-x86 debootstrap e2fsprogs

e2e-vm: deps build ## boot a Debian VM with systemd under qemu (-accel tcg) and bootstrap it through Git (slow; not in CI; first run builds the image, ≈ 2 min)
	@missing=""; for p in $(VM_PACKAGES); do \
		dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; fi
	BOSUN_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -tags e2evm -timeout 40m -v ./e2e/vm/ 2>&1 | \
		grep -vE '^=== (RUN|PAUSE|CONT|NAME)'; exit $${PIPESTATUS[0]}

bench: deps build ## run the benchmarks, bench-e2e's included; each figure prints as "bench: <name> <value> <unit> [limit= ratio=]"
	@mkdir -p bin
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 60m ./... > bin/bench.log 2>&1; rc=$$?; \
		grep -E '^(bench:|Benchmark|ok|FAIL|---)' bin/bench.log; echo "full output: bin/bench.log"; \
		$(MAKE) --no-print-directory bench-e2e-run || rc=1; exit $$rc

bench-e2e: deps build bench-e2e-run ## the operator's benchmarks alone, through its API (as root, ≈ 1-2 min): git push → visible for 1 000 and 10 000 objects, RSS, one-object latency after `bosun sync`

bench-e2e-run:
	@mkdir -p bin
	@BOSUN_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -tags e2e -run '^$$' -bench . -benchtime 1x -timeout 20m ./e2e/bench/ > bin/bench-e2e.log 2>&1; rc=$$?; \
		grep -E '^(bench|Benchmark|ok|FAIL|---)' bin/bench-e2e.log; echo "full output: bin/bench-e2e.log"; exit $$rc

fuzz: ## fuzz the repository loader, and its fast YAML parser against yaml.v3, for 60s each
	$(GO) test -run '^$$' -fuzz FuzzLoadFile -fuzztime 60s ./repo-layout/
	$(GO) test -run '^$$' -fuzz FuzzFastParse -fuzztime 60s ./repo-layout/

GITEA_VERSION ?= 1.26.0
GITEA_DIR     ?= $(HOME)/.cache/bosun/gitea-$(GITEA_VERSION)
GITEA_BIN     := $(GITEA_DIR)/gitea

gitea: ## build Gitea (v1.26.0) from the Go module proxy into ~/.cache/bosun (≈ 9 min cold; skipped when present)
	@if [ -x $(GITEA_BIN) ]; then echo "gitea: $(GITEA_BIN) present"; exit 0; fi; \
	set -euo pipefail; \
	moddir=$$($(GO) mod download -json code.gitea.io/gitea@v$(GITEA_VERSION) | sed -n 's/^\t"Dir": "\(.*\)",$$/\1/p'); \
	test -n "$$moddir" || { echo "gitea: module download failed"; exit 1; }; \
	rm -rf $(GITEA_DIR).tmp && mkdir -p $(GITEA_DIR).tmp && cp -r $$moddir $(GITEA_DIR).tmp/src && chmod -R u+w $(GITEA_DIR).tmp/src; \
	cd $(GITEA_DIR).tmp/src && CGO_ENABLED=1 GOFLAGS=-mod=mod $(GO) build -tags 'sqlite sqlite_unlock_notify' \
		-ldflags '-X main.Version=$(GITEA_VERSION)' -o ../gitea . ; \
	rm -rf $(GITEA_DIR) && mv $(GITEA_DIR).tmp $(GITEA_DIR); echo "gitea: built $(GITEA_BIN)"

e2e-forge: deps build gitea ## end-to-end test of webhooks, plans and commit statuses against a real Gitea
	BOSUN_BIN=$(CURDIR)/$(BIN) GITEA_BIN=$(GITEA_BIN) GITEA_SRC=$(GITEA_DIR)/src \
		$(GO) test -count=1 -tags e2e -timeout 30m -v ./e2e/forge/ 2>&1 | \
		grep -vE '^=== (RUN|PAUSE|CONT)'; exit $${PIPESTATUS[0]}

lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

clean: ## remove build output and the local data dir
	rm -rf bin $(DATA_DIR)
