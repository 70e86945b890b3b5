package actors

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
	protocluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/eventstream"

	"github.com/iris-im/iris/actors/irispb"
	"github.com/iris-im/iris/cluster"
)

// Track reports to the registrar that a session of User has logged in.
type Track struct {
	User    string
	Session *actor.PID
}

// Untrack reports to the registrar that a session has ended.
type Untrack struct{ Session *actor.PID }

// ShardActivated is published on the node's event stream when a shard grain
// starts, including after a restart, when it knows no session yet.
type ShardActivated struct{ Identity string }

// RefreshNow requests that the registrar send its registrations at once.
type RefreshNow struct{}

// RetrySends asks a session to send again every append that awaits its
// reply, because a node left the cluster with some of them.
type RetrySends struct{}

// topologyChanged reports a new member list to the registrar; left is true
// when a member is gone.
type topologyChanged struct{ left bool }

type refreshTick struct{}

// RegistrarConfig configures the registrar of an edge.
type RegistrarConfig struct {
	Routers *RouterPool
	Shards  int
	Every   time.Duration // period of the full refresh
}

// registrar keeps the live sessions of this edge and repeats their
// registrations to the shards: every RegistrarConfig.Every, at once when a
// shard on this node announces that it (re)started, and at once when the
// cluster's member list changes. A shard keeps its
// session lists in memory only, so after a restart, or after a move to
// another core when a core dies, this is how it learns who is online again.
//
// Handles: Track, Untrack, RefreshNow, ShardActivated and ClusterTopology
// (event stream), and its own timer.
type registrar struct {
	cfg      *RegistrarConfig
	sessions map[pidKey]Track // session → registration
	sub      *eventstream.Subscription
	timer    *time.Timer
}

// NewRegistrar returns the registrar of an edge.
func NewRegistrar(cfg *RegistrarConfig) actor.Actor {
	return &registrar{cfg: cfg, sessions: make(map[pidKey]Track)}
}

// Receive handles one message.
func (r *registrar) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		self, root := ctx.Self(), ctx.ActorSystem().Root
		r.sub = ctx.ActorSystem().EventStream.Subscribe(func(evt interface{}) {
			switch e := evt.(type) {
			case *ShardActivated:
				root.Send(self, &RefreshNow{})
			case *protocluster.ClusterTopology:
				root.Send(self, &topologyChanged{left: len(e.Left) > 0})
			}
		})
		r.schedule(ctx)
	case *actor.Stopping:
		ctx.ActorSystem().EventStream.Unsubscribe(r.sub)
		if r.timer != nil {
			r.timer.Stop()
		}
	case *Track:
		r.sessions[keyOf(msg.Session)] = *msg
	case *Untrack:
		delete(r.sessions, keyOf(msg.Session))
	case *RefreshNow:
		r.refresh(ctx)
	case *topologyChanged:
		// Shards move when members come and go. The routers forget where
		// shards were, the new owners learn this edge's users from the
		// refresh, and the appends lost with a member that left are sent
		// again. Each router gets ForgetShards before any of the envelopes
		// that follow, because they reach its mailbox after it.
		for _, pid := range r.cfg.Routers.All() {
			ctx.Send(pid, &ForgetShards{})
		}
		r.refresh(ctx)
		if msg.left {
			for _, t := range r.sessions {
				ctx.Send(t.Session, &RetrySends{})
			}
		}
	case *refreshTick:
		r.refresh(ctx)
		r.schedule(ctx)
	case *Crash:
		panic(msg.Reason)
	}
}

func (r *registrar) schedule(ctx actor.Context) {
	self, root := ctx.Self(), ctx.ActorSystem().Root
	r.timer = time.AfterFunc(r.cfg.Every, func() { root.Send(self, &refreshTick{}) })
}

// refresh sends one RefreshRequest per shard that has users on this edge.
func (r *registrar) refresh(ctx actor.Context) {
	byShard := make(map[int]*irispb.RefreshRequest)
	for _, t := range r.sessions {
		n := cluster.ShardOf(t.User, r.cfg.Shards)
		req := byShard[n]
		if req == nil {
			req = &irispb.RefreshRequest{}
			byShard[n] = req
		}
		req.Registrations = append(req.Registrations, &irispb.Registration{User: t.User, Session: fromPID(t.Session)})
	}
	for _, req := range byShard {
		env := &irispb.Envelope{Version: 1, Body: &irispb.Envelope_Refresh{Refresh: req}}
		ctx.Send(r.cfg.Routers.For(req.Registrations[0].User), env)
	}
}
