// Package registry registers the cluster providers that keep the member
// list in an external registry: Consul, etcd and Kubernetes, each through
// proto.actor's provider. Import it for its side effect:
//
//	import _ "github.com/iris-im/iris/cluster/registry"
package registry

import (
	"fmt"
	"time"

	protocluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/clusterproviders/consul"
	"github.com/asynkron/protoactor-go/cluster/clusterproviders/etcd"
	"github.com/asynkron/protoactor-go/cluster/clusterproviders/k8s"
	"github.com/hashicorp/consul/api"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/iris-im/iris/cluster"
)

func init() {
	cluster.RegisterProvider(cluster.ProviderConsul, newConsul)
	cluster.RegisterProvider(cluster.ProviderEtcd, newEtcd)
	cluster.RegisterProvider(cluster.ProviderK8s, newK8s)
}

// newConsul needs a Consul agent at cluster.consul.address.
func newConsul(opts cluster.Options) (protocluster.ClusterProvider, error) {
	p, err := consul.NewWithConfig(&api.Config{Address: opts.Registry.ConsulAddress}, consul.WithRefreshTTL(cluster.DefaultRefresh))
	if err != nil {
		return nil, fmt.Errorf("cluster.consul.address %s: %w", opts.Registry.ConsulAddress, err)
	}
	return p, nil
}

// newEtcd needs an etcd cluster at cluster.etcd.endpoints.
func newEtcd(opts cluster.Options) (protocluster.ClusterProvider, error) {
	p, err := etcd.NewWithConfig(opts.Registry.EtcdPrefix, clientv3.Config{
		Endpoints:   opts.Registry.EtcdEndpoints,
		DialTimeout: 5 * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("cluster.etcd.endpoints %v: %w", opts.Registry.EtcdEndpoints, err)
	}
	return p, nil
}

// newK8s needs to run in a pod whose service account may list, watch and
// patch the pods of its namespace.
func newK8s(cluster.Options) (protocluster.ClusterProvider, error) {
	p, err := k8s.New()
	if err != nil {
		return nil, fmt.Errorf("cluster.provider k8s: the node must run in a Kubernetes pod with a service account: %w", err)
	}
	return p, nil
}
