package replica

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iris-im/iris/storage"
)

// DefaultBatchApplyTimeout bounds how long a Batcher waits to enqueue one raft entry.
const DefaultBatchApplyTimeout = 5 * time.Second

// maxEntryBodyBytes bounds the summed op bodies of one raft entry, so that a burst of large
// messages does not build an entry that takes seconds to replicate. A single larger op still
// gets an entry of its own.
const maxEntryBodyBytes = 4 << 20

// ErrBatcherClosed is passed to the done callback of a Submit after Close.
var ErrBatcherClosed = errors.New("replica: batcher closed")

// Batcher is the group commit of the replicated store. One goroutine takes every queued op,
// up to maxOps, and proposes them as one raft entry; while at most maxInflight entries
// replicate, the ops submitted meanwhile form the next ones, so under load one raft round
// trip and one log fsync on each replica carry many ops. A second goroutine waits for the
// entries in proposal order and runs their callbacks, so callbacks keep the submission order.
//
// Several entries in flight keep the followers' disks and the leader's FSM busy at the same
// time: with one, each entry waited for the previous one's apply before it was even sent.
//
// Only the leader's Batcher gets anything committed; on a follower every op fails with an
// error wrapping ErrNotLeader.
type Batcher struct {
	replica *Replica
	maxOps  int

	mu       sync.Mutex // guards queue and closed
	queue    []submission
	closed   bool
	wake     chan struct{}    // capacity 1; a value means the queue may have work
	inflight chan *entryBatch // proposed entries, in order; its capacity bounds them
	end      chan struct{}    // closed when both goroutines return

	entries atomic.Uint64
	ops     atomic.Uint64
}

type submission struct {
	op   storage.Op
	done func(storage.Result, uint64, error)
}

// entryBatch is one proposed entry and the submissions it carries.
type entryBatch struct {
	proposal *proposal
	batch    []submission
}

// maxInflight bounds the entries a Batcher has proposed and not yet seen applied.
const maxInflight = 4

// BatcherStats counts a Batcher's work since NewBatcher. Ops/Entries is the mean number of
// ops per raft entry.
type BatcherStats struct {
	Entries uint64 // raft entries proposed, failed ones included
	Ops     uint64 // ops in those entries
}

// NewBatcher starts a Batcher that proposes through r, at most maxOps ops per raft entry.
// maxOps <= 0 means storage.DefaultMaxBatch.
func NewBatcher(r *Replica, maxOps int) *Batcher {
	if maxOps <= 0 {
		maxOps = storage.DefaultMaxBatch
	}
	b := &Batcher{
		replica:  r,
		maxOps:   maxOps,
		wake:     make(chan struct{}, 1),
		inflight: make(chan *entryBatch, maxInflight-2),
		end:      make(chan struct{}),
	}
	done := make(chan struct{})
	go b.run()
	go func() {
		b.complete()
		close(done)
	}()
	go func() {
		<-done
		close(b.end)
	}()
	return b
}

// Submit queues op for the next raft entry. done, if not nil, runs once on the Batcher's
// goroutine after the entry is applied on this replica or has failed, with the op's result,
// the entry's index and either the op's own rejection (Result.Err) or the entry's error. done
// must not block. After Close, done runs at once with ErrBatcherClosed.
//
// The op is proposed as given: appends must carry their tag, TimeMS and DedupUntilMS, chosen
// by the caller, because every replica must apply the same values.
func (b *Batcher) Submit(op storage.Op, done func(storage.Result, uint64, error)) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		if done != nil {
			done(storage.Result{}, 0, ErrBatcherClosed)
		}
		return
	}
	b.queue = append(b.queue, submission{op: op, done: done})
	b.mu.Unlock()

	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// Close proposes the ops already queued, waits for them and stops the goroutine. Later
// Submits fail with ErrBatcherClosed.
func (b *Batcher) Close() {
	b.mu.Lock()
	already := b.closed
	b.closed = true
	b.mu.Unlock()
	if !already {
		select {
		case b.wake <- struct{}{}:
		default:
		}
	}
	<-b.end
}

// Stats returns the Batcher's counters.
func (b *Batcher) Stats() BatcherStats {
	return BatcherStats{Entries: b.entries.Load(), Ops: b.ops.Load()}
}

// run proposes entries until Close; the channel send blocks while maxInflight entries are
// in flight.
func (b *Batcher) run() {
	defer close(b.inflight)
	for {
		batch, closed := b.take(nil)
		if len(batch) > 0 {
			ops := make([]storage.Op, len(batch))
			for i := range batch {
				ops[i] = batch[i].op
			}
			b.inflight <- &entryBatch{proposal: b.replica.propose(ops, DefaultBatchApplyTimeout), batch: batch}
			b.entries.Add(1)
			b.ops.Add(uint64(len(ops)))
			continue
		}
		if closed {
			return
		}
		<-b.wake
	}
}

// complete waits for each proposed entry in order and runs its callbacks.
func (b *Batcher) complete() {
	for e := range b.inflight {
		results, index, err := e.proposal.wait()
		for i := range e.batch {
			done := e.batch[i].done
			if done == nil {
				continue
			}
			if err != nil {
				done(storage.Result{}, index, err)
				continue
			}
			done(results[i], index, results[i].Err)
		}
	}
}

// take moves the ops of the next entry from the queue into buf and reports whether Close was
// called.
func (b *Batcher) take(buf []submission) ([]submission, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()

	n, bodyBytes := 0, 0
	for n < len(b.queue) && n < b.maxOps {
		size := len(b.queue[n].op.Body)
		if n > 0 && bodyBytes+size > maxEntryBodyBytes {
			break
		}
		bodyBytes += size
		n++
	}
	buf = append(buf, b.queue[:n]...)
	rest := copy(b.queue, b.queue[n:])
	clear(b.queue[rest:])
	b.queue = b.queue[:rest]
	return buf, b.closed
}
