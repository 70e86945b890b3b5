package cluster

import (
	protocluster "github.com/asynkron/protoactor-go/cluster"
)

// localProvider is a cluster provider for a node that is the whole cluster.
// It publishes the node itself as the only member and opens no port of its
// own, unlike the automanaged provider, which serves an HTTP health endpoint.
type localProvider struct{}

func newLocalProvider() *localProvider { return &localProvider{} }

// StartMember publishes this node as the one member of the cluster.
func (p *localProvider) StartMember(c *protocluster.Cluster) error {
	host, port, err := c.ActorSystem.GetHostPort()
	if err != nil {
		return err
	}
	self := &protocluster.Member{
		Id:    c.ActorSystem.ID,
		Host:  host,
		Port:  int32(port),
		Kinds: c.GetClusterKinds(),
	}
	c.MemberList.UpdateClusterTopology(protocluster.Members{self})
	return nil
}

// StartClient is not supported: a local cluster has no other member to
// serve a client.
func (p *localProvider) StartClient(c *protocluster.Cluster) error {
	c.MemberList.UpdateClusterTopology(protocluster.Members{})
	return nil
}

// Shutdown has nothing to release.
func (p *localProvider) Shutdown(bool) error { return nil }
