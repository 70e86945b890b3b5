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
type Workers struct {
	tasks   chan func() // unbuffered: a send succeeds only into an idle worker
	idle    atomic.Int32
	maxIdle int32
	linger  time.Duration
}

// NewWorkers returns a pool that keeps at most maxIdle idle workers, each
// for at most linger.
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
	var timer *time.Timer
	for {
		fn()
		if w.idle.Add(1) > w.maxIdle {
			w.idle.Add(-1)
			return
		}
		if timer == nil {
			timer = time.NewTimer(w.linger)
		} else {
			timer.Reset(w.linger)
		}
		select {
		case fn = <-w.tasks:
			w.idle.Add(-1)
			timer.Stop()
		case <-timer.C:
			w.idle.Add(-1)
			return
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
