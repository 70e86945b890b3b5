package actors

import (
	"log/slog"
	"sync"

	"github.com/asynkron/protoactor-go/actor"
	protocluster "github.com/asynkron/protoactor-go/cluster"

	"github.com/iris-im/iris/actors/irispb"
	"github.com/iris-im/iris/cluster"
)

// RouterConfig holds the settings and services every router of a pool shares.
type RouterConfig struct {
	Cluster func() *protocluster.Cluster // the started cluster member
	Shards  int                          // number of shard grains users are hashed over
	Stats   *Stats
	Logger  *slog.Logger
}

// router forwards envelopes from sessions to the shard grain that owns the
// envelope's user, keeping the session as the sender so that the shard
// replies to the session directly. Sessions pick a router by hashing the target
// user, so all traffic for one target passes one router and one shard in
// order. A router caches shard PIDs and watches them: when a shard stops or
// its node leaves, the cache entry is dropped and the next envelope asks the
// cluster again, which activates the shard wherever it now belongs.
//
// Handles: Envelope (any body with a user), actor.Terminated.
type router struct {
	cfg   *RouterConfig
	cache map[int]*actor.PID // shard number → grain PID
}

// NewRouter returns one router of the pool.
func NewRouter(cfg *RouterConfig) actor.Actor {
	return &router{cfg: cfg, cache: make(map[int]*actor.PID)}
}

// Receive handles one message.
func (r *router) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *irispb.Envelope:
		r.route(ctx, msg)
	case *Crash:
		panic(msg.Reason)
	case *actor.Terminated:
		for n, pid := range r.cache {
			if pid.Equal(msg.Who) {
				delete(r.cache, n)
			}
		}
	}
}

func (r *router) route(ctx actor.Context, env *irispb.Envelope) {
	if g, ok := env.Body.(*irispb.Envelope_Group); ok {
		r.routeGroup(ctx, env, g.Group.Group)
		return
	}
	user := envelopeUser(env)
	if user == "" {
		r.cfg.Logger.Warn("router: envelope without a user dropped")
		return
	}

	n := cluster.ShardOf(user, r.cfg.Shards)
	pid := r.cache[n]
	if pid == nil {
		pid = r.cfg.Cluster().Get(cluster.ShardIdentity(user, r.cfg.Shards), cluster.ShardKind)
		if pid == nil {
			// The cluster could not place the shard (no member hosts the
			// kind yet). The requester's timeout reports the failure.
			r.cfg.Stats.RouteFailed.Add(1)
			return
		}
		r.cache[n] = pid
		ctx.Watch(pid)
	}
	r.cfg.Stats.Routed.Add(1)
	ctx.RequestWithCustomSender(pid, env, ctx.Sender())
}

// routeGroup forwards a group request to the group's grain.
func (r *router) routeGroup(ctx actor.Context, env *irispb.Envelope, group string) {
	pid := r.cfg.Cluster().Get(group, cluster.GroupKind)
	if pid == nil {
		r.cfg.Stats.RouteFailed.Add(1)
		if ctx.Sender() != nil {
			ctx.Send(ctx.Sender(), &irispb.Envelope{Version: 1, Body: &irispb.Envelope_GroupReply{GroupReply: &irispb.GroupReply{
				Ref: env.GetGroup().Ref, Op: env.GetGroup().Op, Group: group, Error: reasonGroupUnavailable,
			}}})
		}
		return
	}
	r.cfg.Stats.Routed.Add(1)
	ctx.RequestWithCustomSender(pid, env, ctx.Sender())
}

// envelopeUser returns the user whose shard handles env.
func envelopeUser(env *irispb.Envelope) string {
	switch b := env.Body.(type) {
	case *irispb.Envelope_Append:
		return b.Append.User
	case *irispb.Envelope_Ack:
		return b.Ack.User
	case *irispb.Envelope_Register:
		return b.Register.User
	case *irispb.Envelope_Unregister:
		return b.Unregister.User
	case *irispb.Envelope_Fetch:
		return b.Fetch.User
	case *irispb.Envelope_Status:
		return b.Status.User
	case *irispb.Envelope_Refresh:
		if len(b.Refresh.Registrations) > 0 {
			return b.Refresh.Registrations[0].User
		}
	case *irispb.Envelope_Resync:
		return b.Resync.User
	case *irispb.Envelope_Relay:
		return b.Relay.User
	case *irispb.Envelope_Key:
		return b.Key.User
	case *irispb.Envelope_Flush:
		return b.Flush.User
	}
	return ""
}

// RouterPool is the set of routers of a node. Routers have stable names
// under their supervisor, so a restarted router is reached at the same PID
// and nobody holds a stale one.
type RouterPool struct {
	system *actor.ActorSystem
	names  []string
	once   sync.Once
	pids   []*actor.PID
}

// NewRouterPool returns a pool over the routers with the given PID ids.
// PIDs are made on first use, once remoting has given the system its
// address.
func NewRouterPool(system *actor.ActorSystem, names []string) *RouterPool {
	return &RouterPool{system: system, names: names}
}

// For returns the router that handles user.
func (p *RouterPool) For(user string) *actor.PID {
	p.once.Do(func() {
		p.pids = make([]*actor.PID, len(p.names))
		for i, name := range p.names {
			p.pids[i] = actor.NewPID(p.system.Address(), name)
		}
	})
	return p.pids[cluster.ShardOf(user, len(p.pids))]
}
