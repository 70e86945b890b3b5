package cluster

import (
	"fmt"
	"time"

	protocluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/clusterproviders/consul"
	"github.com/asynkron/protoactor-go/cluster/clusterproviders/etcd"
	"github.com/asynkron/protoactor-go/cluster/clusterproviders/k8s"
	"github.com/hashicorp/consul/api"
	clientv3 "go.etcd.io/etcd/client/v3"
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

// newProvider returns the provider opts.Provider names. The external ones are
// proto.actor's: they need a reachable registry (Consul agent, etcd cluster) or, for k8s,
// a pod with a service account allowed to list, watch and patch pods in its namespace.
func newProvider(opts Options) (protocluster.ClusterProvider, error) {
	switch opts.Provider {
	case ProviderAutomanaged, "":
		return newSeedProvider(opts), nil
	case ProviderConsul:
		p, err := consul.NewWithConfig(&api.Config{Address: opts.Registry.ConsulAddress}, consul.WithRefreshTTL(DefaultRefresh))
		if err != nil {
			return nil, fmt.Errorf("cluster.consul.address %s: %w", opts.Registry.ConsulAddress, err)
		}
		return p, nil
	case ProviderEtcd:
		p, err := etcd.NewWithConfig(opts.Registry.EtcdPrefix, clientv3.Config{
			Endpoints:   opts.Registry.EtcdEndpoints,
			DialTimeout: 5 * time.Second,
		})
		if err != nil {
			return nil, fmt.Errorf("cluster.etcd.endpoints %v: %w", opts.Registry.EtcdEndpoints, err)
		}
		return p, nil
	case ProviderK8s:
		p, err := k8s.New()
		if err != nil {
			return nil, fmt.Errorf("cluster.provider k8s: the node must run in a Kubernetes pod with a service account: %w", err)
		}
		return p, nil
	}
	return nil, fmt.Errorf("cluster.provider %q: expected %s, %s, %s or %s",
		opts.Provider, ProviderAutomanaged, ProviderConsul, ProviderEtcd, ProviderK8s)
}
