package registry

import (
	"strings"
	"testing"

	"github.com/iris-im/iris/cluster"
)

// Every provider that cluster.provider accepts must be registered once this
// package is imported; outside a pod the k8s provider reports why it cannot
// start rather than being unknown.
func TestExternalProvidersRegistered(t *testing.T) {
	_, err := cluster.NewProvider(cluster.Options{Provider: cluster.ProviderK8s})
	if err == nil || strings.Contains(err.Error(), "not available in this binary") {
		t.Fatalf("k8s provider outside a pod = %v, want the k8s provider's own error", err)
	}
	for _, name := range []string{cluster.ProviderConsul, cluster.ProviderEtcd} {
		opts := cluster.Options{Provider: name, Registry: cluster.RegistryOptions{
			ConsulAddress: "127.0.0.1:1", EtcdEndpoints: []string{"127.0.0.1:1"}, EtcdPrefix: "/iris",
		}}
		p, err := cluster.NewProvider(opts)
		if err != nil && strings.Contains(err.Error(), "not available in this binary") {
			t.Errorf("%s provider not registered: %v", name, err)
		}
		_ = p
	}
}
