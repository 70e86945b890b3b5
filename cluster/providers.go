package cluster

import (
	"fmt"
	"sync"

	protocluster "github.com/asynkron/protoactor-go/cluster"
)

// Cluster providers, the values of cluster.provider.
const (
	ProviderAutomanaged = "automanaged" // static seeds; see seedProvider
	ProviderConsul      = "consul"      // members register as Consul services with a TTL check
	ProviderEtcd        = "etcd"        // members keep leased keys under a prefix in etcd
	ProviderK8s         = "k8s"         // members are the labelled pods of the namespace
)

// RegistryOptions holds the settings of the providers that keep the member list in an
// external registry.
type RegistryOptions struct {
	// ConsulAddress is the host:port of the local Consul agent's HTTP API.
	ConsulAddress string
	// EtcdEndpoints are the client URLs or host:port addresses of the etcd cluster.
	EtcdEndpoints []string
	// EtcdPrefix is the key prefix under which members register.
	EtcdPrefix string
}

// ProviderFactory makes a cluster provider from the options of a member or client.
type ProviderFactory func(opts Options) (protocluster.ClusterProvider, error)

var (
	factoriesMu sync.Mutex
	factories   = map[string]ProviderFactory{}
)

// RegisterProvider makes the provider name selectable. The external providers register
// themselves from package cluster/registry, which the iris binary imports. Keeping them out
// of this package keeps their client libraries (the Kubernetes client above all) out of
// every test binary that starts a node.
func RegisterProvider(name string, factory ProviderFactory) {
	factoriesMu.Lock()
	defer factoriesMu.Unlock()
	factories[name] = factory
}

// NewProvider returns the provider opts.Provider names: the seed provider for
// automanaged, otherwise one that RegisterProvider made available.
func NewProvider(opts Options) (protocluster.ClusterProvider, error) {
	if opts.Provider == ProviderAutomanaged || opts.Provider == "" {
		return newSeedProvider(opts), nil
	}
	factoriesMu.Lock()
	factory := factories[opts.Provider]
	factoriesMu.Unlock()
	if factory == nil {
		return nil, fmt.Errorf("cluster.provider %q: not available in this binary; expected %s, %s, %s or %s",
			opts.Provider, ProviderAutomanaged, ProviderConsul, ProviderEtcd, ProviderK8s)
	}
	return factory(opts)
}
