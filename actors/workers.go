package actors

import (
	"sync/atomic"
	"time"
)

// Workers runs functions on goroutines that it keeps for a while after
// each function returns, instead of a new goroutine for each.
//
// proto.actor starts a new goroutine for every run of a mailbox, and the
// gateway one for every read of a ready connection. A new goroutine starts
// with a small stack that grows, by copying, as deep as an actor's
// handler goes, and under load that copying took an eighth of the server's
// CPU. A kept goroutine has its stack grown already.
//
// Go does not wait for a worker: when none is idle, the function gets a new
// goroutine, which stays as a worker afterwards. A function that blocks,
// such as a supervisor waiting for its child to start, therefore never
// holds up another, and the pool can neither deadlock nor queue work.
//
// An idle worker waits on the task channel alone. With a timer per wait, to
// end the worker after linger, every hand-off was a select with a timer
// reset, which took about 8% of the server's CPU at 20,000 messages/s.
// Instead one trimmer goroutine, running while workers are idle, samples the
// idle count and ends as many workers as stayed idle for a whole linger.
type Workers struct {
	tasks    chan func() // unbuffered: a send succeeds only into an idle worker; nil ends it
	idle     atomic.Int32
	maxIdle  int32
	linger   time.Duration
	trimming atomic.Bool // a trimmer goroutine runs
}

// trimSamples is how many idle counts the trimmer takes per linger.
const trimSamples = 4

// NewWorkers returns a pool that keeps at most maxIdle idle workers, each
// for about linger.
func NewWorkers(maxIdle int, linger time.Duration) *Workers {
	return &Workers{tasks: make(chan func()), maxIdle: int32(maxIdle), linger: linger}
}

// Go runs fn on an idle worker, or on a new goroutine when none is idle.
func (w *Workers) Go(fn func()) {
	select {
	case w.tasks <- fn:
	default:
		go w.work(fn)
	}
}

func (w *Workers) work(fn func()) {
	for {
		fn()
		if w.idle.Add(1) > w.maxIdle {
			w.idle.Add(-1)
			return
		}
		if !w.trimming.Load() && w.trimming.CompareAndSwap(false, true) {
			go w.trim()
		}
		fn = <-w.tasks
		w.idle.Add(-1)
		if fn == nil {
			return
		}
	}
}

// trim ends workers that stay idle. It samples the idle count trimSamples
// times per linger, and the lowest of those samples is how many workers were
// idle all that time, so that many get a nil task. It returns when no worker
// is idle, and the next worker to become idle starts it again.
func (w *Workers) trim() {
	tick := time.NewTicker(w.linger / trimSamples)
	defer tick.Stop()
	var lowest int32
	samples := 0
	for range tick.C {
		idle := w.idle.Load()
		if samples == 0 || idle < lowest {
			lowest = idle
		}
		samples++
		if samples == trimSamples {
			w.end(lowest)
			samples = 0
		}

		if w.idle.Load() > 0 {
			continue
		}
		w.trimming.Store(false)
		// A worker that became idle just before the store saw a trimmer running
		// and started none, so look once more.
		if w.idle.Load() == 0 || !w.trimming.CompareAndSwap(false, true) {
			return
		}
	}
}

// end sends a nil task to up to n idle workers, which makes them end.
func (w *Workers) end(n int32) {
	for range n {
		select {
		case w.tasks <- nil:
		default:
			return // the rest took work meanwhile
		}
	}
}

// Dispatcher returns a proto.actor dispatcher that runs mailboxes on w,
// handling up to throughput messages per run.
func (w *Workers) Dispatcher(throughput int) *WorkerDispatcher {
	return &WorkerDispatcher{workers: w, throughput: throughput}
}

// WorkerDispatcher is a proto.actor dispatcher (actor.Dispatcher) on Workers.
type WorkerDispatcher struct {
	workers    *Workers
	throughput int
}

// Schedule runs fn, one run of a mailbox, on a worker.
func (d *WorkerDispatcher) Schedule(fn func()) { d.workers.Go(fn) }

// Throughput returns how many messages a mailbox handles per run.
func (d *WorkerDispatcher) Throughput() int { return d.throughput }

// HotWorkers runs the mailboxes of the actors that handle every message
// (sessions, routers, shards, groups) and the gateway's reads. 256 idle
// workers of a few kilobytes each are little next to a node's sessions.
var HotWorkers = NewWorkers(256, 10*time.Second)

// hotDispatcher runs the mailboxes of the kinds in ActorKinds.
var hotDispatcher = HotWorkers.Dispatcher(300)
