# The project's vocabulary. CI runs exactly `make test`.
GO        ?= go
PKGS      := ./...
# The fuzz seed corpora run as ordinary tests; `make fuzz` explores beyond them.
FUZZTIME  ?= 30s

.PHONY: all build run cluster bench test test-short chaos lint compose-config image fuzz migrate worker audit clean

all: build

build:
	$(GO) build -trimpath -ldflags='-s -w' -o bin/transferd ./cmd/transferd

# run is the one command: Temporal dev server with its Web UI, worker and API in one process, over the
# PostgreSQL of DATABASE_URL (default postgres://postgres@127.0.0.1:5432/transferd), which it creates
# and migrates if missing. State lives in ./.data; Ctrl-C stops it, and a restart resumes transfers.
run: build
	./bin/transferd dev

# cluster runs a production-shaped Temporal cluster in the foreground (internal/tcluster): the
# official temporal-server of go.mod's version as four processes (frontend, history, matching, worker)
# on the PostgreSQL of 127.0.0.1:5432, databases temporal and temporal_visibility (made with
# temporal-sql-tool, kept), frontend on 127.0.0.1:7233, Web UI on 127.0.0.1:8233, the namespace and
# search attributes registered. The first run builds the two executables (minutes); Ctrl-C stops it.
cluster:
	$(GO) run ./internal/tcluster/cmd/tcluster $(CLUSTER_FLAGS)

# test runs every test: unit, workflow, ledger on real PostgreSQL and end-to-end with an in-process
# Temporal server. It needs PostgreSQL on 127.0.0.1:5432 (or TRANSFERD_TEST_DATABASE_URL).
# Before the tests it builds temporal-server and temporal-sql-tool for the PostgreSQL cluster of the
# end-to-end tests (internal/tcluster), so that a first build (minutes) is not under their timeout.
test:
	$(GO) vet $(PKGS)
	$(GO) run ./internal/tcluster/cmd/tcluster --build-only
	$(GO) test -count=1 -timeout 12m $(PKGS)

# bench runs floor, sql, the saga (three modes and a fixed rate) and the naive saga one after the
# other on one machine, audits, and writes docs/benchmarks.md and docs/bench-results.json. It starts
# its own transferd dev on a throwaway database of the PostgreSQL at DATABASE_URL's server.
bench: build
	./bin/transferd bench suite --out docs/benchmarks.md --json docs/bench-results.json

# chaos first runs the saga's property test on 3,000 new seeds (workflows/TestSagaProperty: the real
# ledger under random step faults, lost tasks, cancels and terminations; make test runs 400), then the
# full fault-injection suite (chaos/): transfers through the real binaries (transferd temporal, server
# and three workers) while it SIGKILLs workers (also right after a debit), the API and Temporal, cuts
# and slows PostgreSQL, freezes sources, and cancels and terminates workflows as an operator would,
# then checks that every accepted transfer ended exactly once and every workflow's result equals its
# row. CHAOS_RUNS=5 runs the suite five times; each run appends its summary row to CHAOS_REPORT. make
# test runs a small schedule of it. Then the same suite on the production-shaped Temporal cluster
# (chaos/TestChaosCluster: internal/tcluster's four temporal-server processes on PostgreSQL, behind a
# fault proxy of their own) SIGKILLs history and matching, restarts the frontend and cuts Temporal off
# from PostgreSQL, besides killing workers and the API and cutting the ledger's connections; its
# summary rows go to CHAOS_CLUSTER_REPORT. Last, the upgrade test (chaos/TestUpgrade) runs a load on the
# previous release's binaries (chaos/testdata/previous-release, or the newest tag), migrates the live
# database and replaces the workers and the API with this checkout's mid-load, then checks the same.
CHAOS_RUNS   ?= 1
CHAOS_REPORT ?= chaos-report.md
CHAOS_CLUSTER_REPORT ?= chaos-cluster-report.md
chaos:
	$(GO) test -count=1 -timeout 60m -run '^TestSagaProperty$$' ./workflows/ -args -saga.seeds=3000 -saga.first=$$(date +%s)
	$(GO) test -count=$(CHAOS_RUNS) -timeout 90m -v -run '^TestChaos$$' ./chaos/ -args -chaos.full -chaos.report=$(abspath $(CHAOS_REPORT))
	$(GO) test -count=$(CHAOS_RUNS) -timeout 60m -v -run '^TestChaosCluster$$' ./chaos/ -args -chaos.full -chaos.report=$(abspath $(CHAOS_CLUSTER_REPORT))
	$(GO) test -count=1 -timeout 30m -v -run '^TestUpgrade$$' ./chaos/ -args -chaos.full

# test-short skips the end-to-end tests that start a Temporal server.
test-short:
	$(GO) test -count=1 -short $(PKGS)

lint: compose-config
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$unformatted" ]; then echo "not gofmt-formatted:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) vet -tags nodev ./cmd/...

# compose-config validates docker-compose.yml with Debian's docker-compose (apt-get install
# docker-compose); it needs no Docker engine.
compose-config:
	@command -v docker-compose >/dev/null || { echo "compose-config: docker-compose is not installed (apt-get install docker-compose)"; exit 1; }
	TRANSFERD_JWT_SECRET=validation-only docker-compose -f docker-compose.yml config -q
	@echo "docker-compose.yml is valid"

# image builds the container image (needs a Docker engine).
image:
	docker build -t transferd:local .

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzTransferRequest -fuzztime $(FUZZTIME) ./server/
	$(GO) test -run '^$$' -fuzz FuzzParseCurrency -fuzztime $(FUZZTIME) ./transfer/
	$(GO) test -run '^$$' -fuzz FuzzHTTPAPI -fuzztime $(FUZZTIME) ./server/

migrate: build
	./bin/transferd migrate

worker: build
	./bin/transferd worker

audit: build
	./bin/transferd audit

clean:
	rm -rf bin
