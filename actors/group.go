package actors

import (
	"errors"
	"log/slog"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	protocluster "github.com/asynkron/protoactor-go/cluster"

	"github.com/iris-im/iris/actors/irispb"
	"github.com/iris-im/iris/cluster"
	"github.com/iris-im/iris/gateway/wire"
	"github.com/iris-im/iris/storage"
)

// Reasons for rejected group operations, sent to the client in 0xFE.
const (
	reasonGroupNotFound    = "group_not_found"
	reasonNotMember        = "not_a_member"
	reasonNotAdmin         = "not_admin"
	reasonGroupFull        = "group_full"
	reasonTooManyGroups    = "too_many_groups"
	reasonGroupUnavailable = "group_service_unavailable"
)

// GroupStore is the durable state group grains work on.
type GroupStore interface {
	Do(op storage.Op, done func(storage.Result, error))
	Group(id string) (*storage.Group, error)
}

// GroupConfig holds the settings and services every group grain of a node shares.
type GroupConfig struct {
	Store    GroupStore
	ShardPID func(user string) *actor.PID // the shard grain that owns a user's inbox
	Stats    *Stats
	Logger   *slog.Logger
}

// group is the cluster grain of one group (identity: the group id). It
// owns the group's membership changes, which it runs one at a time through
// the store, and fans messages, sender keys and member notices out to the
// members' inboxes through the members' shards. Membership is cached from
// the store while the grain is active; the store is the only durable copy.
//
// Handles: Envelope{Group, AppendReply}, groupDone (store results),
// groupRetryTick, Crash.
type group struct {
	cfg    *GroupConfig
	id     string
	self   *actor.PID
	system *actor.ActorSystem

	state  *storage.Group // nil when the group does not exist
	loaded bool

	busy    bool           // a membership change is in the store
	waiting []groupRequest // requests held while busy, in arrival order

	outbox *outbox
	timer  *time.Timer
}

// groupRequest is a request with the session to reply to.
type groupRequest struct {
	req       *irispb.GroupRequest
	requester *actor.PID
}

// groupDone carries a membership change's result back into the mailbox.
type groupDone struct {
	groupRequest
	result storage.Result
	err    error
}

type groupRetryTick struct{}

// NewGroupKind returns the cluster kind that activates group grains.
func NewGroupKind(cfg *GroupConfig) *protocluster.Kind {
	props := actor.PropsFromProducer(func() actor.Actor {
		return &group{cfg: cfg, outbox: newOutbox(cfg.Stats)}
	}, cfg.Stats.Actors.Group.PropsOptions()...)
	return protocluster.NewKind(cluster.GroupKind, props)
}

// Receive handles one message.
func (g *group) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *protocluster.ClusterInit:
		g.id = msg.Identity.Identity
		g.self, g.system = ctx.Self(), ctx.ActorSystem()
		waitForStore(g.cfg.Store, g.cfg.Logger, g.id)
	case *actor.Stopping:
		if g.timer != nil {
			g.timer.Stop()
		}
	case *irispb.Envelope:
		switch body := msg.Body.(type) {
		case *irispb.Envelope_Group:
			g.receive(ctx, groupRequest{req: body.Group, requester: ctx.Sender()})
		case *irispb.Envelope_AppendReply:
			g.answerAppend(ctx, body.AppendReply)
		}
	case *groupDone:
		g.finish(ctx, msg)
	case *groupRetryTick:
		g.timer = nil
		g.outbox.retryDue(time.Now(), g.sender(ctx))
		g.scheduleRetry()
	case *Crash:
		panic(msg.Reason)
	}
}

// receive runs a request now, or holds it while a membership change is in
// the store, so that every request sees the membership of the ones before.
func (g *group) receive(ctx actor.Context, r groupRequest) {
	if g.busy {
		g.waiting = append(g.waiting, r)
		return
	}
	g.run(ctx, r)
}

func (g *group) run(ctx actor.Context, r groupRequest) {
	if err := g.load(); err != nil {
		g.cfg.Logger.Warn("group load failed", "group", g.id, "err", err)
		g.reply(ctx, r, reasonGroupUnavailable, nil)
		return
	}

	req := r.req
	if g.state == nil && req.Op != irispb.GroupOp_GROUP_OP_CREATE {
		// Every change of the group passes through this grain, so the
		// state it loaded is the store's. The grain of a group that does
		// not exist stops after its reply, because anyone can name any
		// group and grains kept for made-up names would fill memory.
		g.reply(ctx, r, reasonGroupNotFound, nil)
		if !g.busy && len(g.waiting) == 0 && len(g.outbox.sends) == 0 {
			ctx.Poison(ctx.Self())
		}
		return
	}
	switch req.Op {
	case irispb.GroupOp_GROUP_OP_CREATE:
		g.change(r, storage.Op{Kind: storage.OpGroupCreate, GroupID: g.id, Name: req.Name, User: req.User, TimeMS: req.TimeMs})
	case irispb.GroupOp_GROUP_OP_ADD:
		g.change(r, storage.Op{Kind: storage.OpGroupAdd, GroupID: g.id, User: req.Member, By: req.User})
	case irispb.GroupOp_GROUP_OP_LEAVE:
		g.change(r, storage.Op{Kind: storage.OpGroupLeave, GroupID: g.id, User: req.User})
	case irispb.GroupOp_GROUP_OP_ROSTER:
		if reason := g.checkMember(req.User); reason != "" {
			g.reply(ctx, r, reason, nil)
			return
		}
		g.reply(ctx, r, "", g.state.Members)
	case irispb.GroupOp_GROUP_OP_MESSAGE, irispb.GroupOp_GROUP_OP_SENDER_KEY:
		if reason := g.checkMember(req.User); reason != "" {
			g.reply(ctx, r, reason, nil)
			return
		}
		g.fanOut(ctx, req)
	}
}

// load reads the group from the store on first use.
func (g *group) load() error {
	if g.loaded {
		return nil
	}
	state, err := g.cfg.Store.Group(g.id)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	g.state, g.loaded = state, true
	return nil
}

func (g *group) checkMember(user string) string {
	switch {
	case g.state == nil:
		return reasonGroupNotFound
	case !slices.Contains(g.state.Members, user):
		return reasonNotMember
	}
	return ""
}

// change runs a membership change in the store; requests that arrive
// meanwhile wait for its result.
func (g *group) change(r groupRequest, op storage.Op) {
	g.busy = true
	self, root := g.self, g.system.Root
	g.cfg.Store.Do(op, func(res storage.Result, err error) {
		root.Send(self, &groupDone{groupRequest: r, result: res, err: err})
	})
}

func (g *group) finish(ctx actor.Context, done *groupDone) {
	g.busy = false
	err := done.err
	if err == nil {
		err = done.result.Err
	}

	if err != nil {
		g.reply(ctx, done.groupRequest, groupErrorReason(err), nil)
		if done.err != nil {
			g.cfg.Logger.Warn("group change failed", "group", g.id, "user", done.req.User, "err", done.err)
		}
	} else {
		g.state = done.result.Group
		if done.req.Op == irispb.GroupOp_GROUP_OP_ADD && !done.result.Duplicate {
			g.announceMember(ctx, done.req)
		}
		var members []string
		if g.state != nil {
			members = g.state.Members
		}
		already := done.req.Op == irispb.GroupOp_GROUP_OP_ADD && done.result.Duplicate
		g.replyAdd(ctx, done.groupRequest, "", members, already)
	}

	for len(g.waiting) > 0 && !g.busy {
		next := g.waiting[0]
		g.waiting = g.waiting[1:]
		g.run(ctx, next)
	}
}

// announceMember sends the live sessions of every member, the new one
// included, who joined, with a 0x31 frame. The notice is not stored: a
// member who is offline sees the change in the roster.
func (g *group) announceMember(ctx actor.Context, req *irispb.GroupRequest) {
	frame := wire.AppendGroupMember(nil, g.id, req.Member)
	for _, member := range g.state.Members {
		if pid := g.cfg.ShardPID(member); pid != nil {
			ctx.Send(pid, &irispb.Envelope{Version: 1, Body: &irispb.Envelope_Relay{Relay: &irispb.Relay{User: member, Frame: frame}}})
		}
	}
}

// fanOut stores a group message or sender key in every other member's
// inbox, as the body of the frame that member gets live.
func (g *group) fanOut(ctx actor.Context, req *irispb.GroupRequest) {
	kind := kindGroupMsg
	body := appendLen16(appendLen16(nil, []byte(g.id)), []byte(req.User))
	if req.Op == irispb.GroupOp_GROUP_OP_SENDER_KEY {
		kind = kindSenderKey
		body = appendLen32(body, req.Key)
	} else {
		body = appendLen32(appendLen16(body, req.Header), req.Cipher)
	}
	for _, member := range g.state.Members {
		if member != req.User {
			g.append(ctx, member, req.User, kind, body, req.TimeMs)
		}
	}
}

func (g *group) append(ctx actor.Context, member, sender string, kind uint8, body []byte, timeMS uint64) {
	req := &irispb.AppendRequest{User: member, Sender: sender, Kind: uint32(kind), Body: body, TimeMs: timeMS}
	g.outbox.add(req, sendMeta{}, g.sender(ctx))
	g.scheduleRetry()
}

// sender returns the function that sends an append to its member's shard.
func (g *group) sender(ctx actor.Context) func(*irispb.Envelope) {
	return func(env *irispb.Envelope) {
		if pid := g.cfg.ShardPID(env.GetAppend().User); pid != nil {
			ctx.Request(pid, env)
		}
	}
}

func (g *group) answerAppend(ctx actor.Context, reply *irispb.AppendReply) {
	if _, ok := g.outbox.answer(reply, g.sender(ctx)); ok && reply.Error != "" {
		g.cfg.Logger.Warn("group delivery refused", "group", g.id, "reason", reply.Error)
	}
}

func (g *group) scheduleRetry() {
	if g.timer == nil && g.outbox.pending() > 0 {
		self, root := g.self, g.system.Root
		g.timer = time.AfterFunc(sendRetryAfter/2, func() { root.Send(self, &groupRetryTick{}) })
	}
}

func (g *group) reply(ctx actor.Context, r groupRequest, reason string, members []string) {
	g.replyAdd(ctx, r, reason, members, false)
}

// replyAdd replies to a request. already reports an add of an existing member.
func (g *group) replyAdd(ctx actor.Context, r groupRequest, reason string, members []string, already bool) {
	if r.requester == nil {
		return
	}
	ctx.Send(r.requester, &irispb.Envelope{Version: 1, Body: &irispb.Envelope_GroupReply{GroupReply: &irispb.GroupReply{
		Ref: r.req.Ref, Op: r.req.Op, Group: g.id, Error: reason, Members: members,
		Member: r.req.Member, AlreadyMember: already,
	}}})
}

// groupErrorReason maps a store error to the reason sent to the client.
func groupErrorReason(err error) string {
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return reasonGroupNotFound
	case errors.Is(err, storage.ErrNotMember):
		return reasonNotMember
	case errors.Is(err, storage.ErrNotAdmin):
		return reasonNotAdmin
	case errors.Is(err, storage.ErrGroupFull):
		return reasonGroupFull
	case errors.Is(err, storage.ErrTooManyGroups):
		return reasonTooManyGroups
	}
	return reasonGroupUnavailable
}
