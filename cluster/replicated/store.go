// Package replicated is the store that shard and group grains use on a core
// of a cluster. Writes go through the raft group of the cores
// (cluster/replica). On the leader they enter its group commit directly. On
// any other core they are forwarded, many ops per message, to the leader's
// writer actor over proto.actor remoting. A write is reported done only
// after its raft entry has committed on a majority and has been applied to
// this core's own copy, so that the reads that follow, which are local, see
// it.
//
// While there is no leader (an election after a core died), writes wait and
// are retried in their original order for up to Config.RetryFor. An op that
// was never proposed is always safe to retry. An op whose entry may or may
// not have committed (the leader died with it in flight) is retried only
// when applying it twice changes nothing: appends with a dedup or order key,
// acks and last-seen times. Other ops fail with storage.ErrUnavailable and
// the caller reports store_unavailable.
package replicated

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/iris-im/iris/cluster/replica"
	"github.com/iris-im/iris/storage"
)

// Defaults for zero Config fields.
const (
	DefaultForwardTimeout = 2 * time.Second
	DefaultRetryFor       = 5 * time.Second
	firstRetryDelay       = 20 * time.Millisecond
	maxRetryDelay         = 320 * time.Millisecond
	lookupTimeout         = 500 * time.Millisecond
	applyWaitTimeout      = 5 * time.Second
)

// Config configures New.
type Config struct {
	// Local is this core's copy of the store, opened with storage.Options.Replicated.
	Local   *storage.Store
	Replica *replica.Replica
	// Batcher is the group commit in front of Replica; only the leader's gets ops.
	Batcher *replica.Batcher
	System  *actor.ActorSystem
	// Cores returns the remoting addresses of the cores in the cluster, this one included.
	Cores func() []string
	// WriterName is the PID id of the writer actor (see NewWriter) on every core.
	WriterName string
	// MaxBatch is the maximum number of ops forwarded in one message. Zero means
	// storage.DefaultMaxBatch.
	MaxBatch int
	// ForwardTimeout bounds the wait for the leader's reply to one forwarded batch. Zero
	// means DefaultForwardTimeout.
	ForwardTimeout time.Duration
	// RetryFor is how long a write waits for a leader before it fails with
	// storage.ErrUnavailable. Zero means DefaultRetryFor.
	RetryFor time.Duration
	Logger   *slog.Logger
}

// Stats counts a Store's work since New.
type Stats struct {
	Batches   uint64 // batches written, locally on the leader or forwarded
	Forwarded uint64 // ops forwarded to another core
	Retries   uint64 // ops sent again after a leader change
	Failed    uint64 // ops failed with storage.ErrUnavailable after RetryFor
}

// Store is the replicated store of a core. It is safe for concurrent use.
type Store struct {
	cfg    Config
	logger *slog.Logger

	mu     sync.Mutex // guards queue and closed
	queue  []pendingOp
	closed bool
	wake   chan struct{} // capacity 1
	end    chan struct{} // closed when the write loop returns

	writersMu sync.Mutex
	writers   map[string]*actor.PID // raft ID → writer actor of that core

	lagging                               atomic.Bool // a wait for this core's copy timed out; see waitApplied
	nextRef                               atomic.Uint64
	batches, forwarded, retries, failures atomic.Uint64
}

// pendingOp is a write waiting for its outcome.
type pendingOp struct {
	op    storage.Op
	done  func(storage.Result, error) // may be nil
	first time.Time                   // when the op was first queued
	// unknown is set once an attempt may have committed without this core
	// hearing of it, so a Duplicate result may be the op's own first attempt.
	unknown bool
	// barrier marks the op of Barrier, which fails when this core's copy has not
	// applied it, because local visibility is all it is for.
	barrier bool
}

// outcome is the fate of one op of a written batch.
type outcome int

const (
	outcomeDone        outcome = iota // applied, or rejected by the store: report it
	outcomeNotProposed                // never proposed: safe to send again
	outcomeUnknown                    // may or may not have committed
)

// New starts the write loop of a replicated store.
func New(cfg Config) *Store {
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = storage.DefaultMaxBatch
	}
	if cfg.ForwardTimeout <= 0 {
		cfg.ForwardTimeout = DefaultForwardTimeout
	}
	if cfg.RetryFor <= 0 {
		cfg.RetryFor = DefaultRetryFor
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Store{
		cfg:     cfg,
		logger:  cfg.Logger,
		wake:    make(chan struct{}, 1),
		end:     make(chan struct{}),
		writers: make(map[string]*actor.PID),
	}
	go s.run()
	return s
}

// Append stores req in its user's inbox and calls done once the entry is committed and
// applied here, or has failed. For one user, done calls come in seq order.
func (s *Store) Append(req storage.AppendRequest, done func(storage.AppendResult, error)) {
	op := s.cfg.Local.AppendOp(req)
	s.enqueue(op, func(r storage.Result, err error) {
		if done == nil {
			return
		}
		if err != nil {
			done(storage.AppendResult{}, err)
			return
		}
		done(storage.AppendResult{Seq: r.Seq, Tag: r.Tag, Duplicate: r.Duplicate}, nil)
	})
}

// Submit writes an ack or last-seen op; done, if not nil, runs once it is applied here or
// has failed.
func (s *Store) Submit(op storage.Op, done func(error)) {
	s.enqueue(op, func(_ storage.Result, err error) {
		if done != nil {
			done(err)
		}
	})
}

// Do writes a key or group op and reports its result, as storage.Store.Do does.
func (s *Store) Do(op storage.Op, done func(storage.Result, error)) {
	if op.Kind == storage.OpAppend {
		if done != nil {
			done(storage.Result{}, fmt.Errorf("%w: Do takes no %s ops; use Append", storage.ErrInvalidRequest, op.Kind))
		}
		return
	}
	if op.Kind == storage.OpGroupCreate && op.TimeMS == 0 {
		op.TimeMS = uint64(time.Now().UnixMilli())
	}
	s.enqueue(op, done)
}

// Barrier returns once every write committed before the call has been applied to this
// core's copy, so that local reads show them. A grain calls it when it activates, because
// its previous activation may have run on another core. It returns an error after timeout,
// or after applyWaitTimeout (5 s) when this core's copy lags behind the leader's.
func (s *Store) Barrier(timeout time.Duration) error {
	ch := make(chan error, 1)
	// An OpSweepDedup at time 0 deletes nothing; it only travels through raft.
	s.add(pendingOp{
		op:      storage.Op{Kind: storage.OpSweepDedup},
		done:    func(_ storage.Result, err error) { ch <- err },
		barrier: true,
	})
	select {
	case err := <-ch:
		return err
	case <-time.After(timeout):
		return fmt.Errorf("replicated: barrier timed out after %s", timeout)
	}
}

// Inbox reads user's inbox from this core's copy.
func (s *Store) Inbox(user string, afterSeq uint64, limit int) ([]storage.Entry, error) {
	return s.cfg.Local.Inbox(user, afterSeq, limit)
}

// LastSeen reads user's last-seen time from this core's copy.
func (s *Store) LastSeen(user string) (uint64, bool, error) {
	return s.cfg.Local.LastSeen(user)
}

// Group reads a group from this core's copy.
func (s *Store) Group(id string) (*storage.Group, error) {
	return s.cfg.Local.Group(id)
}

// Stats returns the Store's counters.
func (s *Store) Stats() Stats {
	return Stats{
		Batches:   s.batches.Load(),
		Forwarded: s.forwarded.Load(),
		Retries:   s.retries.Load(),
		Failed:    s.failures.Load(),
	}
}

// Close fails the queued writes with storage.ErrClosed, waits for the batch in flight and
// stops the write loop. It closes neither the replica nor the local store.
func (s *Store) Close() {
	s.mu.Lock()
	already := s.closed
	s.closed = true
	queued := s.queue
	s.queue = nil
	s.mu.Unlock()
	if already {
		<-s.end
		return
	}
	for _, p := range queued {
		if p.done != nil {
			p.done(storage.Result{}, storage.ErrClosed)
		}
	}
	s.signal()
	<-s.end
}

func (s *Store) enqueue(op storage.Op, done func(storage.Result, error)) {
	s.add(pendingOp{op: op, done: done})
}

func (s *Store) add(p pendingOp) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		if p.done != nil {
			p.done(storage.Result{}, storage.ErrClosed)
		}
		return
	}
	p.first = time.Now()
	s.queue = append(s.queue, p)
	s.mu.Unlock()
	s.signal()
}

func (s *Store) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// run writes one batch at a time, so that the ops queued while a batch is in flight travel
// together in the next one, and the outcomes of one core's writes come back in queue order.
func (s *Store) run() {
	defer close(s.end)
	for {
		batch, closed := s.take()
		if len(batch) > 0 {
			s.write(batch)
			continue
		}
		if closed {
			return
		}
		<-s.wake
	}
}

func (s *Store) take() ([]pendingOp, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := min(len(s.queue), s.cfg.MaxBatch)
	batch := slices.Clone(s.queue[:n])
	rest := copy(s.queue, s.queue[n:])
	clear(s.queue[rest:])
	s.queue = s.queue[:rest]
	return batch, s.closed
}

// write sends batch to the leader until every op has an outcome to report, retrying the
// ops that can be retried, in order, while no leader replies.
func (s *Store) write(batch []pendingOp) {
	delay := firstRetryDelay
	for len(batch) > 0 {
		s.batches.Add(1)
		results, outcomes, err := s.send(batch)

		var again []pendingOp
		for i, p := range batch {
			o := outcomes[i]
			if o == outcomeUnknown && !idempotent(p.op) {
				s.finish(p, storage.Result{}, fmt.Errorf("%w: the raft leader was lost while the write was in flight, so it may or may not have been applied: %v", storage.ErrUnavailable, err))
				continue
			}
			if o == outcomeDone {
				s.finish(p, s.resolveDuplicate(p, results[i]), results[i].Err)
				continue
			}
			if o == outcomeUnknown {
				p.unknown = true
			}
			if time.Since(p.first) >= s.cfg.RetryFor {
				s.failures.Add(1)
				s.finish(p, storage.Result{}, fmt.Errorf("%w: no raft leader accepted the write within %s: %v", storage.ErrUnavailable, s.cfg.RetryFor, err))
				continue
			}
			again = append(again, p)
		}
		if len(again) == 0 {
			return
		}

		s.retries.Add(uint64(len(again)))
		if s.isClosed() {
			for _, p := range again {
				s.finish(p, storage.Result{}, storage.ErrClosed)
			}
			return
		}
		time.Sleep(delay)
		delay = min(2*delay, maxRetryDelay)
		batch = again
	}
}

// resolveDuplicate turns the Duplicate result of a retried append into the
// result of its first attempt when that attempt committed unseen: the entry
// carries the op's own tag. The shard then pushes the entry to the live
// sessions of the recipient, as it would have after the first attempt;
// otherwise the entry would wait in the inbox until the next login.
func (s *Store) resolveDuplicate(p pendingOp, r storage.Result) storage.Result {
	if !p.unknown || !r.Duplicate || p.op.Kind != storage.OpAppend || r.Err != nil {
		return r
	}
	if r.Seq != 0 {
		// A dedup hit names the entry it repeats.
		if r.Tag == p.op.Tag {
			return storage.Result{Seq: r.Seq, Tag: r.Tag}
		}
		return r
	}
	// An order-gate duplicate names no entry: find it by its tag. This runs
	// only after a leader change, and an inbox holds at most its unacked
	// entries.
	var after uint64
	for {
		entries, err := s.cfg.Local.Inbox(p.op.User, after, 512)
		if err != nil || len(entries) == 0 {
			return r
		}
		for _, e := range entries {
			if e.Tag == p.op.Tag {
				return storage.Result{Seq: e.Seq, Tag: e.Tag}
			}
		}
		after = entries[len(entries)-1].Seq
	}
}

func (s *Store) finish(p pendingOp, r storage.Result, err error) {
	if p.done != nil {
		p.done(r, err)
	}
}

func (s *Store) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// idempotent reports whether applying op twice leaves the store as applying it once, so
// that it may be sent again when its first entry's fate is unknown.
func idempotent(op storage.Op) bool {
	switch op.Kind {
	case storage.OpAppend:
		return op.Dedup != nil || op.Order != nil
	case storage.OpAck, storage.OpAckUpTo, storage.OpSetLastSeen, storage.OpSweepDedup, storage.OpGroupAdd:
		return true
	}
	return false
}

// send writes batch once: through this core's batcher when it leads, to the leader's
// writer otherwise. err describes the failure behind any outcome other than outcomeDone.
func (s *Store) send(batch []pendingOp) ([]storage.Result, []outcome, error) {
	ops := make([]storage.Op, len(batch))
	for i := range batch {
		ops[i] = batch[i].op
	}

	leaderID, _ := s.cfg.Replica.Leader()
	switch {
	case leaderID == "":
		return nil, fill(len(ops), outcomeNotProposed), errors.New("no raft leader is known")
	case leaderID == s.cfg.Replica.ID():
		results, outcomes, _ := s.proposeLocal(ops)
		return results, outcomes, errors.New("this core lost the leadership")
	}

	s.forwarded.Add(uint64(len(ops)))
	results, outcomes, index, err := s.forward(leaderID, ops)
	if err != nil {
		return results, outcomes, err
	}
	hasBarrier := slices.ContainsFunc(batch, func(p pendingOp) bool { return p.barrier })
	if err := s.waitApplied(index, hasBarrier); err != nil {
		for i := range batch {
			if batch[i].barrier && outcomes[i] == outcomeDone && results[i].Err == nil {
				results[i].Err = err
			}
		}
	}
	return results, outcomes, errors.New("the leader lost the leadership")
}

// proposeLocal submits ops to this core's batcher and waits for all of their outcomes. It
// returns the highest raft index among the entries that carried them.
func (s *Store) proposeLocal(ops []storage.Op) ([]storage.Result, []outcome, uint64) {
	results := make([]storage.Result, len(ops))
	outcomes := make([]outcome, len(ops))
	var index uint64
	var wg sync.WaitGroup
	wg.Add(len(ops))
	for i, op := range ops {
		// Callbacks run one at a time on the batcher's goroutine.
		s.cfg.Batcher.Submit(op, func(r storage.Result, idx uint64, err error) {
			defer wg.Done()
			index = max(index, idx)
			switch {
			case errors.Is(err, replica.ErrNotLeader):
				outcomes[i] = outcomeNotProposed
			case errors.Is(err, storage.ErrCommitFailed), errors.Is(err, replica.ErrShutdown):
				// raft also reports a shutdown for entries that the other voters
				// already have, even committed ones.
				outcomes[i] = outcomeUnknown
			default:
				r.Err = err
				results[i] = r
			}
		})
	}
	wg.Wait()
	return results, outcomes, index
}

func fill(n int, o outcome) []outcome {
	out := make([]outcome, n)
	for i := range out {
		out[i] = o
	}
	return out
}
