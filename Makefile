# Build, test and code generation for Iris. CI runs `make test` through .ci/run.

GO ?= go

# Release name compiled into the binary; `iris version` prints it.
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

PROTO_FILES := $(wildcard actors/irispb/*.proto)

.PHONY: build run test test-deps browser-deps fmt vet proto clean fuzz

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/iris ./cmd/iris

run: build
	./bin/iris start

# A local cluster of 3 cores (127.0.0.2-4) and 2 edges (127.0.0.5-6) on
# loopback; Ctrl-C stops every node. CLUSTER_DIR sets where configs, data
# and logs go (default ./cluster-data).
.PHONY: cluster
cluster: build
	scripts/cluster.sh bin/iris

# E2E_REQUIRE_BROWSER makes the browser tests fail instead of skip when
# Chromium is missing, and their screenshots go to E2E_ARTIFACTS_DIR. The
# names do not start with IRIS_ because `iris start` rejects unknown IRIS_
# variables, and the tests pass their environment on to it.
test: vet test-deps browser-deps
	E2E_REQUIRE_BROWSER=1 E2E_ARTIFACTS_DIR=$(CURDIR)/test-artifacts $(GO) test -race -timeout 12m ./...
	$(MAKE) fuzz

# Tools some tests need that a fresh machine lacks: iptables, for the test
# that drops a client's packets inside a private network namespace. Without
# root and apt-get it cannot be installed, and that test skips itself.
test-deps:
	@command -v iptables >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "test-deps: installing iptables"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iptables >/dev/null; \
		else \
			echo "test-deps: iptables is missing and cannot be installed here; the frozen socket test will skip"; \
		fi; \
	}

# Debian's Chromium, for the headless browser tests of the admin pages
# (cmd/iris/browser_test.go). Without root and apt-get it cannot be
# installed, and `make test` then fails in those tests.
browser-deps:
	@{ [ -x /usr/bin/chromium ] || command -v chromium >/dev/null 2>&1; } || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "browser-deps: installing chromium"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		else \
			echo "browser-deps: chromium is missing and cannot be installed here; the browser tests will fail under make test"; \
		fi; \
	}

# Each fuzz target runs for FUZZTIME on top of its committed seed corpus.
# `go test -fuzz` takes one target and one package at a time.
FUZZTIME ?= 5s

fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecoder$$' -fuzztime $(FUZZTIME) ./gateway/wire
	$(GO) test -run '^$$' -fuzz '^FuzzUnmarshalOps$$' -fuzztime $(FUZZTIME) ./storage
	$(GO) test -run '^$$' -fuzz '^FuzzSession$$' -fuzztime $(FUZZTIME) ./supervisor/app

fmt:
	$(GO) fmt ./...

vet:
	$(GO) vet ./...

# The generated *.pb.go files are committed, so build and test never need
# protoc. Run this after editing a .proto file; it needs protoc and
# protoc-gen-go on PATH.
proto:
	protoc --proto_path=. --go_out=. --go_opt=paths=source_relative $(PROTO_FILES)

clean:
	rm -rf bin

# A short standard benchmark set: the Go micro benchmarks, then `iris bench`
# runs against a server that this target starts on free 127.0.0.1 ports with
# a temporary data directory and stops by process id. Results go to
# bench-results/. The server gets the limits a load run needs lifted.
BENCH_OUT ?= bench-results
BENCH_TIME ?= 500ms
BENCH_DURATION ?= 6s
BENCH_IDLE_CONNS ?= 2000

.PHONY: bench
bench: build
	@mkdir -p $(BENCH_OUT)
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCH_TIME) \
		./gateway/wire ./gateway/client ./storage ./supervisor/app | tee $(BENCH_OUT)/micro.txt
	@set -e; \
	dir=$$(mktemp -d); \
	IRIS_LIMITS_SEND_RATE=1000000 IRIS_LIMITS_SEND_BURST=1000000 \
	IRIS_LIMITS_CONN_RATE=0 IRIS_LIMITS_CONN_BURST=0 IRIS_LIMITS_MAX_CONNECTIONS_PER_IP=1000000 IRIS_LOG_LEVEL=info \
		./bin/iris start --data-dir $$dir/data --tcp-addr 127.0.0.1:0 --ws-addr 127.0.0.1:0 \
		--admin-addr 127.0.0.1:0 >$$dir/server.log 2>&1 & \
	pid=$$!; \
	trap 'kill $$pid 2>/dev/null; wait $$pid 2>/dev/null; rm -rf $$dir' EXIT; \
	for i in $$(seq 50); do grep -q 'node started' $$dir/server.log && break; sleep 0.1; done; \
	tcp=$$(sed -n 's/.*msg="node started".* tcp=\([^ ]*\).*/\1/p' $$dir/server.log); \
	ws=$$(sed -n 's/.*msg="node started".* ws=\([^ ]*\).*/\1/p' $$dir/server.log); \
	admin=$$(sed -n 's/.*msg="node started".* admin=\([^ ]*\).*/\1/p' $$dir/server.log); \
	test -n "$$tcp" || { echo "bench: the server did not start:"; cat $$dir/server.log; exit 1; }; \
	run() { name=$$1; shift; echo "== $$name: iris bench $$*"; \
		./bin/iris bench --admin $$admin --json "$$@" >$(BENCH_OUT)/$$name.json || status=1; \
		grep -E '"(logged_in|delivered_per_second|accepted_per_second|p99_ms|lost|heap_bytes_per_conn|rss_bytes_per_conn)"' \
			$(BENCH_OUT)/$$name.json || true; }; \
	status=0; \
	run idle-$(BENCH_IDLE_CONNS) --addr $$tcp --mode idle --conns $(BENCH_IDLE_CONNS) --duration 5s; \
	run login-storm-2000 --addr $$tcp --mode login-storm --conns 2000 --concurrency 200; \
	run v1-tcp-100pairs --addr $$tcp --conns 200 --duration $(BENCH_DURATION); \
	run v1-ws-100pairs --addr $$ws --transport ws --conns 200 --duration $(BENCH_DURATION); \
	run v1-tcp-50pairs --addr $$tcp --conns 100 --duration $(BENCH_DURATION); \
	run v1-tcp-100pairs-inflight32 --addr $$tcp --conns 200 --inflight 32 --duration $(BENCH_DURATION); \
	run v2-tcp-100pairs --addr $$tcp --protocol v2 --conns 200 --duration $(BENCH_DURATION); \
	run v2-tcp-100pairs-inflight32 --addr $$tcp --protocol v2 --conns 200 --inflight 32 --duration $(BENCH_DURATION); \
	run v2-ws-100pairs-inflight32 --addr $$ws --transport ws --protocol v2 --conns 200 --inflight 32 --duration $(BENCH_DURATION); \
	echo "results in $(BENCH_OUT)/"; \
	exit $$status
