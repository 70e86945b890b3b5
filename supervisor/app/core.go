package app

import (
	"crypto/tls"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	protocluster "github.com/asynkron/protoactor-go/cluster"

	"github.com/iris-im/iris/actors"
	"github.com/iris-im/iris/cluster"
	"github.com/iris-im/iris/cluster/replica"
	"github.com/iris-im/iris/cluster/replicated"
	"github.com/iris-im/iris/gateway/admin"
	"github.com/iris-im/iris/storage"
	"github.com/iris-im/iris/supervisor"
)

// writerName is the PID id of the writer actor on every core: the child
// "writer" of the node's tree.
const writerName = "node/writer"

// replicatedStoreSpec is the store child of a core: this core's copy of the
// store, its raft replica and the replicated front the grains write through.
func (n *Node) replicatedStoreSpec(clusterTLS *tls.Config) supervisor.ChildSpec {
	cfg := n.cfg
	r := cfg.Cluster.Raft
	dir := r.Dir
	if dir == "" {
		dir = filepath.Join(cfg.Node.DataDir, "raft")
	}
	id := r.ID
	if id == "" {
		id = cfg.Node.Name
	}
	var peers []replica.Peer
	for _, entry := range r.Bootstrap {
		peerID, addr, _ := strings.Cut(entry, "=")
		peers = append(peers, replica.Peer{ID: peerID, Addr: addr})
	}
	a := &coreStoreActor{
		ref:  n.store,
		raft: &n.raft,
		storeOpts: storage.Options{
			Dir:          filepath.Join(cfg.Node.DataDir, "store"),
			DedupWindow:  cfg.Store.DedupWindow,
			MaxInbox:     cfg.Limits.Inbox,
			MaxBatch:     cfg.Store.GroupCommitMax,
			MaxGroupSize: cfg.Limits.GroupSize,
			Replicated:   true,
			Logger:       n.logger.With("component", "store"),
		},
		replicaCfg: replica.Config{
			ID:                 id,
			BindAddr:           r.Bind,
			AdvertiseAddr:      r.Advertise,
			Dir:                dir,
			Bootstrap:          peers,
			TLS:                clusterTLS,
			HeartbeatTimeout:   r.HeartbeatTimeout,
			ElectionTimeout:    r.ElectionTimeout,
			LeaderLeaseTimeout: r.LeaderLeaseTimeout,
			SnapshotInterval:   r.SnapshotInterval,
			SnapshotThreshold:  uint64(r.SnapshotThreshold),
			TrailingLogs:       uint64(r.TrailingLogs),
			Logger:             n.logger.With("component", "raft"),
		},
		frontCfg: replicated.Config{
			Cores: func() []string {
				if m := n.member.p.Load(); m != nil {
					return m.MembersOf(cluster.ShardKind)
				}
				return nil
			},
			WriterName: writerName,
			MaxBatch:   cfg.Store.GroupCommitMax,
			Logger:     n.logger.With("component", "replicated"),
		},
	}
	return supervisor.ChildSpec{
		ID:       "store",
		Start:    supervisor.StartActor(func(any) actor.Actor { return a }),
		Shutdown: 30 * time.Second,
	}
}

// coreStoreActor owns a core's store: it opens this core's copy, starts the
// raft replica and the replicated front when it starts, and stops them in
// reverse order, the copy last, when it stops. The front is published
// through a storeRef, so the grains and the writer pick up a restarted
// store.
//
// Handles: actors.Crash.
type coreStoreActor struct {
	ref        *storeRef
	raft       *atomic.Pointer[replica.Replica]
	storeOpts  storage.Options
	replicaCfg replica.Config
	frontCfg   replicated.Config

	local   *storage.Store
	replica *replica.Replica
	batcher *replica.Batcher
	front   *replicated.Store
}

func (a *coreStoreActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		if err := a.open(ctx.ActorSystem()); err != nil {
			a.close(ctx)
			panic(err)
		}
	case *actor.Stopping, *actor.Restarting:
		a.close(ctx)
	case *actors.Crash:
		panic(msg.Reason)
	}
}

func (a *coreStoreActor) open(system *actor.ActorSystem) error {
	local, err := storage.Open(a.storeOpts)
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	a.local = local

	rc := a.replicaCfg
	rc.Store = local
	rep, err := replica.Start(rc)
	if err != nil {
		return fmt.Errorf("start raft replica %s on %s: %w", rc.ID, rc.BindAddr, err)
	}
	a.replica = rep
	a.batcher = replica.NewBatcher(rep, a.storeOpts.MaxBatch)

	fc := a.frontCfg
	fc.Local, fc.Replica, fc.Batcher, fc.System = local, rep, a.batcher, system
	a.front = replicated.New(fc)
	a.ref.set(a.front, local)
	a.raft.Store(rep)
	return nil
}

// frontCloseWait bounds how long a stopping core waits for its writes in
// flight before it shuts raft down. Without a majority of cores a write never
// commits, and only the raft shutdown ends its wait.
const frontCloseWait = 2 * time.Second

func (a *coreStoreActor) close(ctx actor.Context) {
	a.ref.set(nil, nil)
	a.raft.Store(nil)
	frontClosed := make(chan struct{})
	if a.front != nil {
		go func(front *replicated.Store) {
			front.Close()
			close(frontClosed)
		}(a.front)
		select {
		case <-frontClosed:
		case <-time.After(frontCloseWait):
			ctx.Logger().Warn("writes still in flight after a wait; shutting raft down, which fails them", "wait", frontCloseWait)
		}
	} else {
		close(frontClosed)
	}
	if a.replica != nil {
		if err := a.replica.Shutdown(); err != nil {
			ctx.Logger().Error("raft replica shutdown failed", "err", err)
		}
		a.replica = nil
	}
	<-frontClosed
	a.front = nil
	if a.batcher != nil {
		a.batcher.Close()
		a.batcher = nil
	}
	if a.local != nil {
		if err := a.local.Close(); err != nil {
			ctx.Logger().Error("store close failed", "err", err)
		}
		a.local = nil
	}
}

// raftStatus returns the raft state of a core for /stats, or nil while its
// store is closed.
func (n *Node) raftStatus() *admin.RaftStatus {
	rep := n.raft.Load()
	if rep == nil {
		return nil
	}
	st := rep.Stats()
	return &admin.RaftStatus{
		ID:           rep.ID(),
		State:        st.State,
		Term:         st.Term,
		Leader:       st.Leader,
		LeaderAddr:   st.LeaderAddr,
		LastLogIndex: st.LastLogIndex,
		CommitIndex:  st.CommitIndex,
		AppliedIndex: st.AppliedIndex,
		Lag:          st.CommitIndex - min(st.AppliedIndex, st.CommitIndex),
		Voters:       st.Voters,
	}
}

// raftSummary returns a core's raft state for its member record, or nil while its store
// is closed.
func (n *Node) raftSummary() *cluster.RaftSummary {
	rep := n.raft.Load()
	if rep == nil {
		return nil
	}
	st := rep.Stats()
	return &cluster.RaftSummary{
		ID:           rep.ID(),
		State:        st.State,
		Leader:       st.Leader,
		Term:         st.Term,
		LastLogIndex: st.LastLogIndex,
		CommitIndex:  st.CommitIndex,
		AppliedIndex: st.AppliedIndex,
	}
}

// members returns the cluster members for /stats. With the automanaged provider, which
// keeps the members' records, each member also gets its raft state and the record's age.
func (n *Node) members() []admin.Member {
	m := n.member.p.Load()
	if m == nil {
		return nil
	}
	return joinMembers(m.Cluster.MemberList.Members().Members(), m.Records(), n.system.ID, time.Now())
}

// joinMembers matches the member list with the seed records by member ID. A member with a
// stale record is unreachable. A member that has a record but has left the list, for
// example a core whose process was killed, stays in the result as unreachable, so that it
// does not vanish from the dashboard. The members are sorted by address.
//
// Each core's lag is the highest commit index among the records minus that core's applied
// index, so every node reports the same lag for a core, give or take one refresh.
func joinMembers(listed []*protocluster.Member, records []cluster.MemberRecord, self string, now time.Time) []admin.Member {
	byID := make(map[string]cluster.MemberRecord, len(records))
	var maxCommit uint64
	for _, r := range records {
		byID[r.ID] = r
		if r.Raft != nil {
			maxCommit = max(maxCommit, r.Raft.CommitIndex)
		}
	}

	out := make([]admin.Member, 0, len(listed))
	inList := make(map[string]bool, len(listed))
	for _, lm := range listed {
		inList[lm.Id] = true
		member := admin.Member{ID: lm.Id, Address: lm.Address(), Kinds: lm.Kinds, Self: lm.Id == self, Reachable: true}
		if r, ok := byID[lm.Id]; ok {
			addRecord(&member, r, maxCommit, now)
		}
		out = append(out, member)
	}
	for _, r := range records {
		if inList[r.ID] {
			continue
		}
		member := admin.Member{ID: r.ID, Address: net.JoinHostPort(r.Host, strconv.Itoa(r.Port)), Kinds: r.Kinds, Self: r.ID == self}
		addRecord(&member, r, maxCommit, now)
		member.Reachable = false // the cluster routes nothing to a member outside the list
		out = append(out, member)
	}

	slices.SortStableFunc(out, func(a, b admin.Member) int { return strings.Compare(a.Address, b.Address) })
	return out
}

// addRecord sets the fields of member that come from its record r.
func addRecord(member *admin.Member, r cluster.MemberRecord, maxCommit uint64, now time.Time) {
	member.Reachable = !r.Stale
	age := now.Sub(r.ReadAt).Milliseconds()
	member.RecordAgeMS = &age
	if r.Raft == nil {
		return
	}
	member.Raft = &admin.RaftStatus{
		ID:           r.Raft.ID,
		State:        r.Raft.State,
		Term:         r.Raft.Term,
		Leader:       r.Raft.Leader,
		LastLogIndex: r.Raft.LastLogIndex,
		CommitIndex:  r.Raft.CommitIndex,
		AppliedIndex: r.Raft.AppliedIndex,
		Lag:          maxCommit - min(r.Raft.AppliedIndex, maxCommit),
	}
}

// replicatedStore returns a core's open replicated store, or nil.
func (n *Node) replicatedStore() *replicated.Store {
	s, err := n.store.get()
	if err != nil {
		return nil
	}
	rs, _ := s.(*replicated.Store)
	return rs
}
