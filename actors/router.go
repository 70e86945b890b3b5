package actors

import (
	"log/slog"
	"sync"
	"time"

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
// replies to the session directly. Sessions pick a router by hashing the
// target user, so all traffic for one target passes one router and one shard
// in order. A router caches shard PIDs and watches them: when a shard stops
// or its node leaves, the cache entry is dropped and the next envelope asks
// the cluster again, which activates the shard wherever it now belongs.
//
// Asking the cluster where a grain lives can take seconds: proto.actor's
// lookup waits 5 s for a reply from the owner it computes, and right after
// a core dies that owner can be the dead core. So lookups run off the
// router's goroutine. The envelopes for a grain being looked up wait in
// order in the router, other grains keep flowing, and a change of the member
// list (ForgetShards) starts the waiting lookups again at once.
//
// Handles: Envelope (any body with a user), actor.Terminated, ForgetShards,
// placed, and retryPlacement.
type router struct {
	cfg     *RouterConfig
	cache   map[int]*actor.PID // shard number → grain PID
	waiting map[grainKey]*placement
	gen     uint64
}

// ForgetShards clears a router's cache of shard PIDs. The registrar sends it
// when members join or leave, because shards then move: the next envelope
// for each shard makes the router query the cluster for its owner again.
type ForgetShards struct{}

// grainKey names a grain: a shard by number, a group by id.
type grainKey struct {
	kind  string
	id    string
	shard int
}

// placement is a lookup in progress and the envelopes waiting for it.
type placement struct {
	gen   uint64
	since time.Time
	envs  []routedEnvelope
}

type routedEnvelope struct {
	env    *irispb.Envelope
	sender *actor.PID
}

// placed is the result of a lookup, sent by its goroutine.
type placed struct {
	key grainKey
	gen uint64
	pid *actor.PID
}

// retryPlacement starts a failed lookup again.
type retryPlacement struct {
	key grainKey
	gen uint64
}

// Placement timing. A lookup that finds no owner (no core hosts the kind,
// for a moment after a core died) is retried after placementRetry, and the
// envelopes waiting longer than placementGiveUp are dropped: their senders
// retry on their own timers.
const (
	placementRetry  = 100 * time.Millisecond
	placementGiveUp = 10 * time.Second
)

// NewRouter returns one router of the pool.
func NewRouter(cfg *RouterConfig) actor.Actor {
	return &router{cfg: cfg, cache: make(map[int]*actor.PID), waiting: make(map[grainKey]*placement)}
}

// Receive handles one message.
func (r *router) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *ForgetShards:
		for n, pid := range r.cache {
			ctx.Unwatch(pid)
			delete(r.cache, n)
		}
		for key, p := range r.waiting {
			r.gen++
			p.gen = r.gen
			r.lookup(ctx, key, p.gen)
		}
	case *irispb.Envelope:
		r.route(ctx, msg)
	case *placed:
		r.finishPlacement(ctx, msg)
	case *retryPlacement:
		if p := r.waiting[msg.key]; p != nil && p.gen == msg.gen {
			r.lookup(ctx, msg.key, p.gen)
		}
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
		r.send(ctx, grainKey{kind: cluster.GroupKind, id: g.Group.Group}, env, ctx.Sender())
		return
	}
	user := envelopeUser(env)
	if user == "" {
		r.cfg.Logger.Warn("router: envelope without a user dropped")
		return
	}
	n := cluster.ShardOf(user, r.cfg.Shards)
	key := grainKey{kind: cluster.ShardKind, id: cluster.ShardIdentity(user, r.cfg.Shards), shard: n}
	if pid := r.cache[n]; pid != nil && r.waiting[key] == nil {
		r.cfg.Stats.Routed.Add(1)
		ctx.RequestWithCustomSender(pid, env, ctx.Sender())
		return
	}
	r.send(ctx, key, env, ctx.Sender())
}

// send queues env behind the lookup of key's grain, starting the lookup when
// none runs.
func (r *router) send(ctx actor.Context, key grainKey, env *irispb.Envelope, sender *actor.PID) {
	if p := r.waiting[key]; p != nil {
		p.envs = append(p.envs, routedEnvelope{env, sender})
		return
	}
	r.gen++
	r.waiting[key] = &placement{gen: r.gen, since: time.Now(), envs: []routedEnvelope{{env, sender}}}
	r.lookup(ctx, key, r.gen)
}

// lookup queries the cluster for the grain's PID on a goroutine of its own
// and posts the result back as placed.
func (r *router) lookup(ctx actor.Context, key grainKey, gen uint64) {
	c := r.cfg.Cluster()
	self, root := ctx.Self(), ctx.ActorSystem().Root
	if c == nil {
		root.Send(self, &placed{key: key, gen: gen})
		return
	}
	go func() {
		root.Send(self, &placed{key: key, gen: gen, pid: c.Get(key.id, key.kind)})
	}()
}

// finishPlacement sends the envelopes that waited for a lookup, in order,
// or schedules another try when the cluster had no owner for the grain.
func (r *router) finishPlacement(ctx actor.Context, msg *placed) {
	p := r.waiting[msg.key]
	if p == nil || p.gen != msg.gen {
		return // superseded by a newer lookup
	}
	if msg.pid == nil {
		r.cfg.Stats.RouteFailed.Add(1)
		if msg.key.kind == cluster.GroupKind {
			delete(r.waiting, msg.key)
			for _, e := range p.envs {
				r.rejectGroup(ctx, e)
			}
			return
		}
		if time.Since(p.since) > placementGiveUp {
			r.cfg.Logger.Warn("router: no core hosts the shard; envelopes dropped, their senders will retry",
				"shard", msg.key.id, "envelopes", len(p.envs))
			delete(r.waiting, msg.key)
			return
		}
		self, root, gen := ctx.Self(), ctx.ActorSystem().Root, p.gen
		time.AfterFunc(placementRetry, func() { root.Send(self, &retryPlacement{key: msg.key, gen: gen}) })
		return
	}

	delete(r.waiting, msg.key)
	if msg.key.kind == cluster.ShardKind {
		if old := r.cache[msg.key.shard]; old != nil && !old.Equal(msg.pid) {
			ctx.Unwatch(old)
		}
		r.cache[msg.key.shard] = msg.pid
		ctx.Watch(msg.pid)
	}
	for _, e := range p.envs {
		r.cfg.Stats.Routed.Add(1)
		ctx.RequestWithCustomSender(msg.pid, e.env, e.sender)
	}
}

// rejectGroup replies with an error to a group request whose grain could not be placed.
func (r *router) rejectGroup(ctx actor.Context, e routedEnvelope) {
	if e.sender == nil {
		return
	}
	req := e.env.GetGroup()
	ctx.Send(e.sender, &irispb.Envelope{Version: 1, Body: &irispb.Envelope_GroupReply{GroupReply: &irispb.GroupReply{
		Ref: req.Ref, Op: req.Op, Group: req.Group, Error: reasonGroupUnavailable,
	}}})
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

// All returns every router of the pool.
func (p *RouterPool) All() []*actor.PID {
	p.For("")
	return p.pids
}
