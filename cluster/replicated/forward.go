package replicated

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/iris-im/iris/actors/irispb"
	"github.com/iris-im/iris/storage"
)

// forward sends ops to the writer of the leader leaderID and waits for its reply. On an
// error, outcomes tells which ops may be sent again.
func (s *Store) forward(leaderID string, ops []storage.Op) ([]storage.Result, []outcome, uint64, error) {
	pid := s.writerOf(leaderID)
	if pid == nil {
		return nil, fill(len(ops), outcomeNotProposed), 0, fmt.Errorf("the writer of leader %s is not reachable", leaderID)
	}
	data, err := storage.MarshalOps(ops)
	if err != nil {
		// Only an op of an unknown kind fails to encode, and sending it again cannot help,
		// so the batch fails, as Replica.Apply fails it on the leader.
		err = fmt.Errorf("replicated: encode ops: %w", err)
		results := make([]storage.Result, len(ops))
		for i := range results {
			results[i].Err = err
		}
		return results, fill(len(ops), outcomeDone), 0, err
	}

	ref := s.nextRef.Add(1)
	req := &irispb.Envelope{Version: 1, Body: &irispb.Envelope_StoreWrite{StoreWrite: &irispb.StoreWrite{Ref: ref, Ops: data}}}
	res, err := s.awaitReply(s.cfg.System.Root.RequestFuture(pid, req, s.cfg.ForwardTimeout), leaderID)
	if err != nil {
		s.forgetWriter(leaderID)
		return nil, fill(len(ops), outcomeUnknown), 0, fmt.Errorf("forward to leader %s at %s: %w", leaderID, pid.Address, err)
	}
	reply := res.(*irispb.Envelope).GetStoreWriteReply()
	if reply == nil || reply.Ref != ref {
		return nil, fill(len(ops), outcomeUnknown), 0, fmt.Errorf("leader %s sent an unexpected reply %T", leaderID, res)
	}
	if reply.NotLeader {
		return nil, fill(len(ops), outcomeNotProposed), 0, fmt.Errorf("%s is no longer the leader (it names %q)", leaderID, reply.LeaderId)
	}

	results, err := storage.UnmarshalResults(reply.Results)
	if err == nil && len(results) != len(ops) {
		err = fmt.Errorf("%d results for %d ops", len(results), len(ops))
	}
	if err != nil {
		return nil, fill(len(ops), outcomeUnknown), 0, fmt.Errorf("reply of leader %s: %w", leaderID, err)
	}
	outcomes := make([]outcome, len(ops))
	for i := range results {
		if errors.Is(results[i].Err, storage.ErrCommitFailed) {
			outcomes[i] = outcomeUnknown
		}
	}
	for _, i := range reply.NotProposed {
		if int(i) < len(outcomes) {
			outcomes[i] = outcomeNotProposed
		}
	}
	return results, outcomes, reply.Index, nil
}

// leaderPoll is how often a forwarded write checks, while it waits for the
// reply, whether raft has elected another leader.
const leaderPoll = 20 * time.Millisecond

// awaitReply waits for the reply of a forwarded write. It gives up early when
// this core learns of another leader: the old one is most likely dead, and
// waiting out ForwardTimeout would stall every write of this core.
func (s *Store) awaitReply(future *actor.Future, leaderID string) (any, error) {
	type reply struct {
		res any
		err error
	}
	ch := make(chan reply, 1)
	go func() {
		res, err := future.Result()
		ch <- reply{res, err}
	}()
	ticker := time.NewTicker(leaderPoll)
	defer ticker.Stop()
	for {
		select {
		case r := <-ch:
			return r.res, r.err
		case <-ticker.C:
			if now, _ := s.cfg.Replica.Leader(); now != leaderID {
				return nil, fmt.Errorf("raft leader changed from %s to %q while the write was in flight", leaderID, now)
			}
		}
	}
}

// waitApplied waits until this core's copy has applied index, so that reads after the
// write's callback see it. When the core stays behind longer than applyWaitTimeout, it logs
// and returns an error. The caller still reports a write, because it is committed and only
// reads on this core lag, but fails a barrier.
//
// Once a wait has timed out, later writes do not wait again until this core has applied
// what it waited for: a core that restarted can be left without entries for many seconds,
// because the leader retries a follower that was down with a growing delay, and a wait per
// batch would hold every write of this core for applyWaitTimeout. mustWait (a barrier)
// waits in any case.
func (s *Store) waitApplied(index uint64, mustWait bool) error {
	if index == 0 {
		return nil
	}
	if s.lagging.Load() && !mustWait {
		if s.cfg.Replica.AppliedIndex() >= index {
			s.lagging.Store(false)
			s.logger.Info("replicated: this core caught up with the raft leader", "index", index)
			return nil
		}
		return fmt.Errorf("replicated: this core has not applied raft entry %d yet", index)
	}
	ctx, cancel := context.WithTimeout(context.Background(), applyWaitTimeout)
	defer cancel()
	if err := s.cfg.Replica.WaitApplied(ctx, index); err != nil {
		if !s.lagging.Swap(true) {
			s.logger.Warn("replicated: this core lags behind the raft leader; local reads may miss recent writes", "index", index, "err", err)
		}
		return fmt.Errorf("replicated: this core has not applied raft entry %d within %s: %w", index, applyWaitTimeout, err)
	}
	s.lagging.Store(false)
	return nil
}

// writerOf returns the writer actor of the core whose raft ID is id, asking every core for
// its ID when id is not known yet.
func (s *Store) writerOf(id string) *actor.PID {
	s.writersMu.Lock()
	pid := s.writers[id]
	s.writersMu.Unlock()
	if pid != nil {
		return pid
	}

	found := s.lookupWriters(id)
	s.writersMu.Lock()
	defer s.writersMu.Unlock()
	for raftID, p := range found {
		s.writers[raftID] = p
	}
	return s.writers[id]
}

func (s *Store) forgetWriter(id string) {
	s.writersMu.Lock()
	delete(s.writers, id)
	s.writersMu.Unlock()
}

// lookupWriters queries the writer of every core for its raft ID, all at once.
// It returns when every core has answered or timed out, or as soon as the
// core with raft ID want has answered, with the answers so far.
func (s *Store) lookupWriters(want string) map[string]*actor.PID {
	type answer struct {
		raftID string
		pid    *actor.PID
	}
	cores := s.cfg.Cores()
	answers := make(chan answer, len(cores))
	query := &irispb.Envelope{Version: 1, Body: &irispb.Envelope_ReplicaQuery{ReplicaQuery: &irispb.ReplicaQuery{}}}
	for _, addr := range cores {
		pid := actor.NewPID(addr, s.cfg.WriterName)
		go func() {
			res, err := s.cfg.System.Root.RequestFuture(pid, query, lookupTimeout).Result()
			if err != nil {
				answers <- answer{}
				return
			}
			if info := res.(*irispb.Envelope).GetReplicaInfo(); info != nil && info.RaftId != "" {
				answers <- answer{raftID: info.RaftId, pid: pid}
				return
			}
			answers <- answer{}
		}()
	}
	found := make(map[string]*actor.PID)
	for range cores {
		a := <-answers
		if a.pid == nil {
			continue
		}
		found[a.raftID] = a.pid
		if a.raftID == want {
			break
		}
	}
	return found
}

// handleWrite proposes the ops of a StoreWrite from another core and sends the reply to
// requester once every op has an outcome. It runs on the leader; elsewhere it replies
// not_leader at once.
func (s *Store) handleWrite(w *irispb.StoreWrite, requester *actor.PID) {
	send := func(r *irispb.StoreWriteReply) {
		r.Ref = w.Ref
		s.cfg.System.Root.Send(requester, &irispb.Envelope{Version: 1, Body: &irispb.Envelope_StoreWriteReply{StoreWriteReply: r}})
	}
	if !s.cfg.Replica.IsLeader() {
		leader, _ := s.cfg.Replica.Leader()
		send(&irispb.StoreWriteReply{NotLeader: true, LeaderId: leader})
		return
	}
	ops, err := storage.UnmarshalOps(w.Ops)
	if err != nil {
		s.logger.Warn("replicated: invalid forwarded write dropped", "from", requester.Address, "err", err)
		return
	}

	// NB: the ops are proposed from a goroutine of their own, because proposeLocal waits
	// for the commit and the writer actor must keep taking requests meanwhile.
	go func() {
		results, outcomes, index := s.proposeLocal(ops)
		reply := &irispb.StoreWriteReply{Index: index}
		for i, o := range outcomes {
			switch o {
			case outcomeNotProposed:
				reply.NotProposed = append(reply.NotProposed, uint32(i))
			case outcomeUnknown:
				results[i].Err = fmt.Errorf("%w: leadership lost while the entry was in flight", storage.ErrCommitFailed)
			}
		}
		data, err := storage.MarshalResults(results)
		if err != nil {
			s.logger.Error("replicated: encode results failed", "err", err)
			return
		}
		reply.Results = data
		send(reply)
	}()
}

// NewWriter returns the writer actor of a core. It runs the writes that other cores forward
// to this one while it leads, and replies to their queries with its raft ID. store returns the core's store, or
// nil while it is closed.
//
// Handles: Envelope{StoreWrite, ReplicaQuery}.
func NewWriter(store func() *Store) actor.Actor {
	return &writer{store: store}
}

type writer struct {
	store func() *Store
}

func (w *writer) Receive(ctx actor.Context) {
	env, ok := ctx.Message().(*irispb.Envelope)
	if !ok {
		return
	}
	s := w.store()
	switch body := env.Body.(type) {
	case *irispb.Envelope_StoreWrite:
		if s == nil {
			ctx.Respond(&irispb.Envelope{Version: 1, Body: &irispb.Envelope_StoreWriteReply{StoreWriteReply: &irispb.StoreWriteReply{
				Ref: body.StoreWrite.Ref, NotLeader: true,
			}}})
			return
		}
		s.handleWrite(body.StoreWrite, ctx.Sender())
	case *irispb.Envelope_ReplicaQuery:
		info := &irispb.ReplicaInfo{}
		if s != nil {
			info.RaftId = s.cfg.Replica.ID()
			info.LeaderId, _ = s.cfg.Replica.Leader()
		}
		ctx.Respond(&irispb.Envelope{Version: 1, Body: &irispb.Envelope_ReplicaInfo{ReplicaInfo: info}})
	}
}
