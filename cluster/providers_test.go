package cluster

import (
	"strings"
	"testing"
)

func TestUnregisteredProviderRejected(t *testing.T) {
	_, err := NewProvider(Options{Provider: "zookeeper"})
	if err == nil || !strings.Contains(err.Error(), `cluster.provider "zookeeper"`) {
		t.Fatalf("NewProvider(zookeeper) = %v, want an error naming cluster.provider", err)
	}
}

func TestAutomanagedIsBuiltIn(t *testing.T) {
	for _, name := range []string{"", ProviderAutomanaged} {
		p, err := NewProvider(Options{Provider: name})
		if err != nil {
			t.Fatalf("NewProvider(%q): %v", name, err)
		}
		if _, ok := p.(*seedProvider); !ok {
			t.Errorf("NewProvider(%q) = %T, want the seed provider", name, p)
		}
	}
}
