package app

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	protocluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/eventstream"

	"github.com/iris-im/iris/actors"
	"github.com/iris-im/iris/cluster"
	"github.com/iris-im/iris/gateway/admin"
	"github.com/iris-im/iris/storage"
)

// storeActor owns the node's Pebble store: it opens the store when it
// starts and closes it, after the queued writes, when it stops. The open
// store is published through a storeRef, so a restarted store actor is
// picked up by the shards without restarting them.
//
// Handles: actors.Crash.
type storeActor struct {
	opts storage.Options
	ref  *storeRef
	s    *storage.Store
}

func (a *storeActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		s, err := storage.Open(a.opts)
		if err != nil {
			panic(fmt.Errorf("open store: %w", err))
		}
		a.s = s
		a.ref.set(s, s)
	case *actor.Stopping, *actor.Restarting:
		if a.s != nil {
			a.ref.set(nil, nil)
			if err := a.s.Close(); err != nil {
				ctx.Logger().Error("store close failed", "err", err)
			}
			a.s = nil
		}
	case *actors.Crash:
		panic(msg.Reason)
	}
}

// grainStore is the store that the shard and group grains of a node write
// through: the node's Pebble store on role all, the replicated store on a core.
type grainStore interface {
	actors.Store
	Group(id string) (*storage.Group, error)
}

// storeRef is the store the grains use: whichever store the store actor has
// open. Between a close and the next open, every call fails with
// storage.ErrClosed, which sessions report as store_unavailable.
// Appends are timed into writeLatency, from the call to the result.
type storeRef struct {
	p            atomic.Pointer[storeBox]
	writeLatency *actors.Histogram
}

type storeBox struct {
	s     grainStore
	local *storage.Store // this node's Pebble copy, for its backlog count
}

// set publishes s, whose Pebble copy on this node is local; nil closes.
func (r *storeRef) set(s grainStore, local *storage.Store) {
	if s == nil {
		r.p.Store(nil)
		return
	}
	r.p.Store(&storeBox{s: s, local: local})
}

// backlog returns the unacked entries of all inboxes in this node's copy;
// false while no store is open.
func (r *storeRef) backlog() (int64, bool) {
	if b := r.p.Load(); b != nil {
		return b.local.Stats().Backlog, true
	}
	return 0, false
}

func (r *storeRef) get() (grainStore, error) {
	if b := r.p.Load(); b != nil {
		return b.s, nil
	}
	return nil, storage.ErrClosed
}

func (r *storeRef) Append(req storage.AppendRequest, done func(storage.AppendResult, error)) {
	s, err := r.get()
	if err != nil {
		done(storage.AppendResult{}, err)
		return
	}
	if r.writeLatency == nil {
		s.Append(req, done)
		return
	}
	start := time.Now()
	s.Append(req, func(res storage.AppendResult, err error) {
		r.writeLatency.Observe(time.Since(start))
		done(res, err)
	})
}

func (r *storeRef) Submit(op storage.Op, done func(error)) {
	s, err := r.get()
	if err != nil {
		if done != nil {
			done(err)
		}
		return
	}
	s.Submit(op, done)
}

func (r *storeRef) Do(op storage.Op, done func(storage.Result, error)) {
	s, err := r.get()
	if err != nil {
		if done != nil {
			done(storage.Result{}, err)
		}
		return
	}
	s.Do(op, done)
}

func (r *storeRef) Group(id string) (*storage.Group, error) {
	s, err := r.get()
	if err != nil {
		return nil, err
	}
	return s.Group(id)
}

func (r *storeRef) LastSeen(user string) (uint64, bool, error) {
	s, err := r.get()
	if err != nil {
		return 0, false, err
	}
	return s.LastSeen(user)
}

func (r *storeRef) Inbox(user string, afterSeq uint64, limit int) ([]storage.Entry, error) {
	s, err := r.get()
	if err != nil {
		return nil, err
	}
	return s.Inbox(user, afterSeq, limit)
}

// Barrier waits until local reads show every write committed before the
// call (see actors.Barrier). The Pebble store of role all shows them
// already.
func (r *storeRef) Barrier(timeout time.Duration) error {
	s, err := r.get()
	if err != nil {
		return err
	}
	if b, ok := s.(actors.Barrier); ok {
		return b.Barrier(timeout)
	}
	return nil
}

// clusterActor makes the node a member of its cluster when it starts and
// leaves the cluster when it stops. The member is published through
// memberRef for the routers.
//
// NB: proto.actor cannot start a second cluster on an actor system, so a
// crash of this actor is not recoverable by a restart; the node's
// supervisor then escalates and the node stops.
type clusterActor struct {
	start  func(*actor.ActorSystem) (*cluster.Member, error)
	member *memberRef
	m      *cluster.Member
}

func (a *clusterActor) Receive(ctx actor.Context) {
	switch ctx.Message().(type) {
	case *actor.Started:
		m, err := a.start(ctx.ActorSystem())
		if err != nil {
			panic(err)
		}
		a.m = m
		a.member.set(m)
	case *actor.Stopping:
		if a.m != nil {
			a.m.Stop()
			a.m = nil
		}
	}
}

// memberRef holds the started cluster member.
type memberRef struct {
	p atomic.Pointer[cluster.Member]
}

func (r *memberRef) set(m *cluster.Member) { r.p.Store(m) }

func (r *memberRef) cluster() *protocluster.Cluster {
	if m := r.p.Load(); m != nil {
		return m.Cluster
	}
	return nil
}

// shardsActor watches the shard grains this node hosts. proto.actor's
// activator spawns the grains and restarts one that panics; this actor
// counts their activations (restarts included) from the node's event
// stream, so that the node's stats can show them.
//
// Handles: actors.ShardActivated (event stream), actors.Crash.
type shardsActor struct {
	activations *atomic.Int64
	sub         *eventstream.Subscription
}

func (a *shardsActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		self, root := ctx.Self(), ctx.ActorSystem().Root
		a.sub = ctx.ActorSystem().EventStream.Subscribe(func(evt interface{}) {
			if e, ok := evt.(*actors.ShardActivated); ok {
				root.Send(self, e)
			}
		})
	case *actor.Stopping, *actor.Restarting:
		ctx.ActorSystem().EventStream.Unsubscribe(a.sub)
	case *actors.ShardActivated:
		a.activations.Add(1)
	case *actors.Crash:
		panic(msg.Reason)
	}
}

// adminActor runs the admin HTTP server.
type adminActor struct {
	cfg    admin.Config
	server *admin.Server
	addr   *atomic.Pointer[string]
	early  *atomic.Pointer[admin.Server] // the server Start ran before the tree, taken once
}

func (a *adminActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		if s := a.early.Swap(nil); s != nil {
			a.server = s
			return
		}
		if bound := a.addr.Load(); bound != nil {
			a.cfg.Addr = *bound // a restart binds the port the first start picked
		}
		s, err := admin.Start(a.cfg)
		if err != nil {
			panic(err)
		}
		a.server = s
		bound := s.Addr().String()
		a.addr.Store(&bound)
	case *actor.Stopping, *actor.Restarting:
		if a.server != nil {
			a.server.Stop()
			a.server = nil
		}
	case *actors.Crash:
		panic(msg.Reason)
	}
}
