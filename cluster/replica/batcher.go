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
// up to maxOps, proposes them as one raft entry through Replica.Apply and waits for it. The
// ops submitted meanwhile form the next entry, so under load one raft round trip and one log
// fsync on each replica carry many ops.
//
// Only the leader's Batcher gets anything committed; on a follower every op fails with an
// error wrapping ErrNotLeader.
type Batcher struct {
	replica *Replica
	maxOps  int

	mu     sync.Mutex // guards queue and closed
	queue  []submission
	closed bool
	wake   chan struct{} // capacity 1; a value means the queue may have work
	end    chan struct{} // closed when the loop returns

	entries atomic.Uint64
	ops     atomic.Uint64
}

type submission struct {
	op   storage.Op
	done func(storage.Result, uint64, error)
}

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
		replica: r,
		maxOps:  maxOps,
		wake:    make(chan struct{}, 1),
		end:     make(chan struct{}),
	}
	go b.run()
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

func (b *Batcher) run() {
	defer close(b.end)
	var batch []submission
	var ops []storage.Op
	for {
		var closed bool
		batch, closed = b.take(batch[:0])
		if len(batch) > 0 {
			ops = b.propose(batch, ops[:0])
			clear(batch) // release bodies and callbacks
			clear(ops)
			continue
		}
		if closed {
			return
		}
		<-b.wake
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

// propose applies batch as one raft entry and runs its callbacks in order. It returns ops
// for reuse.
func (b *Batcher) propose(batch []submission, ops []storage.Op) []storage.Op {
	for i := range batch {
		ops = append(ops, batch[i].op)
	}
	results, index, err := b.replica.Apply(ops, DefaultBatchApplyTimeout)
	b.entries.Add(1)
	b.ops.Add(uint64(len(ops)))

	for i := range batch {
		done := batch[i].done
		if done == nil {
			continue
		}
		if err != nil {
			done(storage.Result{}, index, err)
			continue
		}
		done(results[i], index, results[i].Err)
	}
	return ops
}
