// Package cluster wires Iris nodes into a proto.actor cluster: the member
// list provider, the identity lookup that places shard grains, and the
// start and stop sequence of a member. A single-node server (role "all") is a
// one-member cluster on loopback, so grains are reached the same way on one
// node as on many.
package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	protocluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/identitylookup/disthash"
	"github.com/asynkron/protoactor-go/remote"
)

// Grain kinds that cores host.
const (
	ShardKind = "shard" // users' presence and inbox operations
	GroupKind = "group" // one grain per group: membership and fan-out
)

// ErrTopologyTimeout is returned when no member list arrives in time.
var ErrTopologyTimeout = errors.New("cluster: no topology received")

// Options configures a cluster member.
type Options struct {
	Name           string        // cluster name; members with other names do not join
	Host           string        // remoting bind address
	Port           int           // remoting port; 0 picks a free port
	RequestTimeout time.Duration // timeout of grain requests
	Kinds          []*protocluster.Kind
	Logger         *slog.Logger
}

// Member is a started cluster member.
type Member struct {
	Cluster *protocluster.Cluster
	System  *actor.ActorSystem
	logger  *slog.Logger
}

// StartLocalMember starts system as the only member of an in-process cluster
// and returns once its own grains can be reached.
func StartLocalMember(system *actor.ActorSystem, opts Options) (*Member, error) {
	provider := newLocalProvider()
	remoteConfig := remote.Configure(opts.Host, opts.Port)
	config := protocluster.Configure(opts.Name, provider, disthash.New(), remoteConfig,
		protocluster.WithKinds(opts.Kinds...),
		protocluster.WithRequestTimeout(opts.RequestTimeout),
	)
	c := protocluster.New(system, config)

	// NB: StartMember panics on provider or gossip failures instead of
	// returning an error; turn that into an error for the caller.
	if err := startMember(c); err != nil {
		return nil, err
	}

	m := &Member{Cluster: c, System: system, logger: opts.Logger}
	if err := m.waitForTopology(5 * time.Second); err != nil {
		m.Stop()
		return nil, err
	}
	opts.Logger.Info("cluster member started", "cluster", opts.Name, "address", system.Address(), "members", c.MemberList.Length())
	return m, nil
}

func startMember(c *protocluster.Cluster) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("cluster: start member: %v", r)
		}
	}()
	c.StartMember()
	return nil
}

// waitForTopology polls the member list until it names at least one member.
func (m *Member) waitForTopology(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if m.Cluster.MemberList.Length() > 0 {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return ErrTopologyTimeout
}

// Stop leaves the cluster and shuts remoting down; the actor system stays
// up for its owner to shut down last. It skips proto.actor's graceful
// cluster shutdown, which sleeps for seconds waiting on ownership transfers
// that a stopping node does not need.
func (m *Member) Stop() {
	m.Cluster.IdentityLookup.Shutdown()
	if m.Cluster.Remote != nil {
		m.Cluster.Remote.Shutdown(true)
	}
}

// ShardIdentity names the shard grain that owns user among n shards.
func ShardIdentity(user string, n int) string {
	return fmt.Sprintf("shard-%d", ShardOf(user, n))
}

// ShardOf maps a user to a shard number in [0, n) with FNV-1a, which is
// stable across processes and releases.
func ShardOf(user string, n int) int {
	const offset, prime = 14695981039346656037, 1099511628211
	h := uint64(offset)
	for i := 0; i < len(user); i++ {
		h ^= uint64(user[i])
		h *= prime
	}
	return int(h % uint64(n))
}
