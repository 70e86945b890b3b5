package storage

import (
	"time"
)

// queuedOp is an op waiting for the next group commit. done is nil for ops without a caller
// waiting (acks, last-seen, sweeps).
type queuedOp struct {
	op   Op
	done func(Result, error)
}

// sweepInterval returns how often the commit loop queues an OpSweepDedup: half the dedup
// window, between one second and one minute. Expired records are ignored on lookup anyway, so
// the sweep only reclaims space.
func sweepInterval(window time.Duration) time.Duration {
	return min(max(window/2, time.Second), time.Minute)
}

// enqueue adds q to the queue and wakes the commit loop. It returns false after Close.
//
// TODO: the queue has no bound, so a caller that appends faster than the disk commits grows
// memory without limit. Callers are expected to wait for done before sending more.
func (s *Store) enqueue(q queuedOp) bool {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return false
	}
	s.queue = append(s.queue, q)
	s.mu.Unlock()
	s.signal()
	return true
}

func (s *Store) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// takeQueued moves up to MaxBatch queued ops into buf. It also reports whether Close has
// been called.
func (s *Store) takeQueued(buf []queuedOp) ([]queuedOp, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()

	n := min(len(s.queue), s.opts.MaxBatch)
	if n == len(s.queue) {
		// Swap the slices instead of copying, so neither grows past the peak queue length.
		buf, s.queue = s.queue, buf[:0]
		return buf, s.closing
	}
	buf = append(buf, s.queue[:n]...)
	rest := copy(s.queue, s.queue[n:])
	clear(s.queue[rest:])
	s.queue = s.queue[:rest]
	return buf, s.closing
}

// runCommitLoop is the store's only writer. Each round takes the queued ops, applies them
// through ApplyOps (one fsync) and then runs their done callbacks in queue order.
func (s *Store) runCommitLoop() {
	defer close(s.loopEnd)

	sweepTicker := time.NewTicker(sweepInterval(s.opts.DedupWindow))
	defer sweepTicker.Stop()
	if s.opts.Replicated {
		// A sweep stamped with this replica's clock would delete different records than the
		// other replicas do, so a replicated store only sweeps when the leader proposes it.
		sweepTicker.Stop()
	}
	retryTimer := time.NewTimer(time.Hour)
	retryTimer.Stop()
	defer retryTimer.Stop()

	var items []queuedOp
	var ops []Op
	for {
		var closing bool
		items, closing = s.takeQueued(items[:0])
		if len(items) > 0 {
			ops = s.commitQueued(items, ops[:0])
			clear(items) // release bodies and callbacks
			clear(ops)
			continue
		}
		if closing {
			return
		}

		if s.broken.Load() {
			retryTimer.Reset(s.currentReopenDelay())
		}
		select {
		case <-s.wake:
		case <-sweepTicker.C:
			s.enqueue(queuedOp{op: Op{Kind: OpSweepDedup, TimeMS: uint64(time.Now().UnixMilli())}})
		case <-retryTimer.C:
			s.retryReopen()
		}
		retryTimer.Stop()
	}
}

// commitQueued applies items as one batch and runs their callbacks. It returns ops for reuse.
func (s *Store) commitQueued(items []queuedOp, ops []Op) []Op {
	for i := range items {
		ops = append(ops, items[i].op)
	}
	results, err := s.ApplyOps(ops)
	for i := range items {
		if err == nil && items[i].op.Kind == OpSweepDedup && results[i].More {
			// A busy store expires more records per interval than one sweep deletes.
			s.enqueue(queuedOp{op: Op{Kind: OpSweepDedup, TimeMS: items[i].op.TimeMS}})
		}
		done := items[i].done
		if done == nil {
			continue
		}
		if err != nil {
			done(Result{}, err)
			continue
		}
		done(results[i], results[i].Err)
	}
	return ops
}
