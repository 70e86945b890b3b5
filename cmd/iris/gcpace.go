package main

import (
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// GC pacing. Go's default, GOGC=100, starts a collection when the heap has
// doubled since the last one. A node under load keeps a live heap of only
// a few megabytes, so it collected about ten times a second. Each
// collection took one of the two cores for 4 ms, so for a few percent of
// the time the node ran on half its CPU, which showed as a latency tail.
// Keeping the next collection at least gcHeadroom above the live heap makes
// collections rare while the heap is small. With a large live heap, such as
// many idle connections, GOGC stays at 100 and memory per connection is
// unchanged.
const (
	gcHeadroom     = 64 << 20 // bytes of growth allowed between collections, at least
	gcMinPercent   = 100
	gcMaxPercent   = 1000
	gcPercentStep  = 50 // GOGC moves in steps, so small changes of the live heap keep it
	gcPaceInterval = time.Second
)

// paceGC adjusts GOGC to the live heap every gcPaceInterval until done is
// closed. It does nothing when the operator set GOGC.
func paceGC(done <-chan struct{}) {
	if _, set := os.LookupEnv("GOGC"); set {
		return
	}
	live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	ticker := time.NewTicker(gcPaceInterval)
	defer ticker.Stop()
	current := gcMinPercent
	for {
		select {
		case <-done:
			debug.SetGCPercent(gcMinPercent)
			return
		case <-ticker.C:
		}
		metrics.Read(live)
		if live[0].Value.Kind() != metrics.KindUint64 {
			return // not reported by this Go release
		}
		if want := gcPercentFor(live[0].Value.Uint64()); want != current {
			debug.SetGCPercent(want)
			current = want
		}
	}
}

// gcPercentFor returns the GOGC that puts the next collection gcHeadroom
// above a live heap of live bytes, between gcMinPercent and gcMaxPercent.
func gcPercentFor(live uint64) int {
	if live == 0 {
		return gcMaxPercent
	}
	percent := min(gcHeadroom*100/live, gcMaxPercent)
	percent = (percent + gcPercentStep - 1) / gcPercentStep * gcPercentStep
	return int(max(percent, gcMinPercent))
}
