// Command iris runs an Iris chat server node and the tools that operate it.
//
//	iris start [--role all|core|edge] [--config FILE]   run a node until SIGINT or SIGTERM
//	iris token --user NAME [--ttl 24h]                  print a signed login token
//	iris version                                        print the version
//
// Settings come from the built-in defaults, a YAML file (--config), IRIS_*
// environment variables and flags, each overriding the one before.
package main

import (
	"context"
	"os"

	// The consul, etcd and k8s values of cluster.provider.
	_ "github.com/iris-im/iris/cluster/registry"
)

// version is the release name, set at build time with
// -ldflags "-X main.version=v1.2.3". The Makefile sets it from git describe.
var version = "dev"

func main() {
	os.Exit(run(context.Background(), os.Args[1:]))
}
