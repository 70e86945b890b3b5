// Package cluster wires Iris nodes into a proto.actor cluster: the member
// list provider, the identity lookup that places shard grains, and the
// start and stop sequence of a member. A single-node server (role "all") is a
// one-member cluster on loopback, so grains are reached the same way on one
// node as on many.
package cluster

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	protocluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/identitylookup/disthash"
	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// Grain kinds that cores host.
const (
	ShardKind = "shard" // users' presence and inbox operations
	GroupKind = "group" // one grain per group: membership and fan-out
)

// ErrTopologyTimeout is returned when no member list arrives in time.
var ErrTopologyTimeout = errors.New("cluster: no topology received")

// Options configures a cluster member or client.
type Options struct {
	Name           string        // cluster name; members with other names do not join
	Host           string        // remoting bind address
	Port           int           // remoting port; 0 picks a free port
	RequestTimeout time.Duration // timeout of grain requests
	Kinds          []*protocluster.Kind
	Logger         *slog.Logger

	// Provider selects how members find each other: "automanaged" (Seeds) or one of the
	// external registries in providers.go. StartLocalMember ignores it.
	Provider string
	// Seeds are the discovery addresses (host:port) of the members, polled every Refresh by
	// the automanaged provider.
	Seeds []string
	// DiscoveryAddr is the host:port on which a member serves its record to the automanaged
	// provider.
	DiscoveryAddr string
	// Refresh is the automanaged provider's polling period. Zero means DefaultRefresh.
	Refresh time.Duration
	// Registry holds the settings of the external providers.
	Registry RegistryOptions
	// TLS, when set, is the cluster's mutual TLS: remoting and discovery accept only peers
	// whose certificate verifies against its ClientCAs, and dial peers with its
	// Certificates, verifying them against RootCAs.
	TLS *tls.Config
	// TopologyTimeout bounds the wait for the first member list. Zero means 30s.
	TopologyTimeout time.Duration
	// Raft returns this member's raft state, which the automanaged provider adds to the
	// member record each time it serves it. Nil on a node without raft (edges, clients),
	// and a nil result leaves the record without raft state.
	Raft func() *RaftSummary
}

// Member is a started cluster member.
type Member struct {
	Cluster *protocluster.Cluster
	System  *actor.ActorSystem
	logger  *slog.Logger
	client  bool
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

// StartMember starts system as a member of the cluster described by opts, hosting
// opts.Kinds, and returns once the member list includes it.
func StartMember(system *actor.ActorSystem, opts Options) (*Member, error) {
	c, err := newCluster(system, opts)
	if err != nil {
		return nil, err
	}
	if err := startMember(c); err != nil {
		return nil, err
	}
	m := &Member{Cluster: c, System: system, logger: opts.Logger}
	if err := m.waitForTopology(topologyTimeout(opts)); err != nil {
		m.Stop()
		return nil, err
	}
	opts.Logger.Info("cluster member started", "cluster", opts.Name, "provider", opts.Provider,
		"address", system.Address(), "members", c.MemberList.Length())
	return m, nil
}

// StartClient starts system as a client of the cluster: it reaches grains
// and hosts none. It returns once the member list names a member that hosts
// kind, so the node can serve at once.
func StartClient(system *actor.ActorSystem, opts Options, kind string) (*Member, error) {
	c, err := newCluster(system, opts)
	if err != nil {
		return nil, err
	}
	if err := startClient(c); err != nil {
		return nil, err
	}
	m := &Member{Cluster: c, System: system, logger: opts.Logger, client: true}
	deadline := time.Now().Add(topologyTimeout(opts))
	for len(m.MembersOf(kind)) == 0 {
		if time.Now().After(deadline) {
			m.Stop()
			return nil, fmt.Errorf("%w: no member hosting %q within %s; check cluster.seeds and that the cores run",
				ErrTopologyTimeout, kind, topologyTimeout(opts))
		}
		time.Sleep(50 * time.Millisecond)
	}
	opts.Logger.Info("cluster client started", "cluster", opts.Name, "provider", opts.Provider,
		"address", system.Address(), "members", c.MemberList.Length())
	return m, nil
}

// MembersOf returns the remoting addresses of the members that host kind.
func (m *Member) MembersOf(kind string) []string {
	var out []string
	for _, member := range m.Cluster.MemberList.Members().Members() {
		if slices.Contains(member.Kinds, kind) {
			out = append(out, member.Address())
		}
	}
	return out
}

func topologyTimeout(opts Options) time.Duration {
	if opts.TopologyTimeout > 0 {
		return opts.TopologyTimeout
	}
	return 30 * time.Second
}

// newCluster configures remoting (with mutual TLS when opts.TLS is set), the provider and
// the identity lookup.
func newCluster(system *actor.ActorSystem, opts Options) (*protocluster.Cluster, error) {
	provider, err := NewProvider(opts)
	if err != nil {
		return nil, err
	}
	var remoteOpts []remote.ConfigOption
	if opts.TLS != nil {
		server := opts.TLS.Clone()
		server.ClientAuth = tls.RequireAndVerifyClientCert
		remoteOpts = append(remoteOpts,
			remote.WithServerOptions(grpc.Creds(credentials.NewTLS(server))),
			remote.WithDialOptions(grpc.WithTransportCredentials(credentials.NewTLS(opts.TLS.Clone()))),
		)
	}
	remoteConfig := remote.Configure(opts.Host, opts.Port, remoteOpts...)
	config := protocluster.Configure(opts.Name, provider, disthash.New(), remoteConfig,
		protocluster.WithKinds(opts.Kinds...),
		protocluster.WithRequestTimeout(opts.RequestTimeout),
	)
	return protocluster.New(system, config), nil
}

func startClient(c *protocluster.Cluster) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("cluster: start client: %v", r)
		}
	}()
	c.StartClient()
	return nil
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
	if err := m.Cluster.Config.ClusterProvider.Shutdown(false); err != nil {
		m.logger.Warn("cluster provider shutdown failed", "err", err)
	}
	if m.Cluster.Remote == nil {
		return
	}
	// NB: a graceful remote shutdown waits up to 10 s for each endpoint
	// still reconnecting to a node that is gone, which is longer than a
	// node's whole stop budget. It gets remoteStopWait, and then the gRPC
	// server is stopped at once.
	done := make(chan struct{})
	go func() {
		m.Cluster.Remote.Shutdown(true)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(remoteStopWait):
		m.logger.Warn("cluster remoting did not stop in time; closing its connections", "wait", remoteStopWait)
		m.Cluster.Remote.Shutdown(false)
	}
}

// remoteStopWait bounds the graceful part of a remoting shutdown.
const remoteStopWait = 2 * time.Second

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
