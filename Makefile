# Build, test and code generation for Iris. CI runs `make test` through .ci/run.

GO ?= go

# Release name compiled into the binary; `iris version` prints it.
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

PROTO_FILES := $(wildcard actors/irispb/*.proto)

.PHONY: build run test fmt vet proto clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/iris ./cmd/iris

run: build
	./bin/iris start

test: vet
	$(GO) test -race -timeout 14m ./...

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
