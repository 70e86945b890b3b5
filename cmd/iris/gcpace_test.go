package main

import (
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"testing"
	"time"
)

func TestGCPercentFor(t *testing.T) {
	cases := []struct {
		live uint64
		want int
	}{
		{0, gcMaxPercent},
		{1 << 20, gcMaxPercent},        // 64 MiB of headroom would be 6400%
		{8 << 20, 800},                 // a loaded node's few megabytes
		{10 << 20, 650},                // 640%, rounded up to a step
		{64 << 20, gcMinPercent},       // the headroom is the default already
		{1 << 30, gcMinPercent},        // many idle connections
		{100 << 20, gcMinPercent},      // 64%, never below the default
		{32<<20 + 1, gcMinPercent * 2}, // just under 200%, rounded up
	}
	for _, c := range cases {
		if got := gcPercentFor(c.live); got != c.want {
			t.Errorf("gcPercentFor(%d) = %d, want %d", c.live, got, c.want)
		}
	}
}

func TestPaceGCLeavesOperatorGOGC(t *testing.T) {
	t.Setenv("GOGC", "300")
	old := debug.SetGCPercent(300)
	defer debug.SetGCPercent(old)

	stop, returned := startPaceGC()
	defer stop()
	select {
	case <-returned:
	case <-time.After(5 * time.Second):
		t.Fatal("paceGC kept running although GOGC was set")
	}
	if got := currentGCPercent(); got != 300 {
		t.Errorf("GOGC changed to %d, want the operator's 300", got)
	}
}

func TestPaceGCRaisesGOGCForSmallHeap(t *testing.T) {
	old := debug.SetGCPercent(gcMinPercent)
	defer debug.SetGCPercent(old)

	stop, returned := startPaceGC()
	defer stop()
	// The test binary's live heap is far below the headroom.
	if !eventually(10*time.Second, func() bool { return currentGCPercent() > gcMinPercent }) {
		t.Fatalf("GOGC stayed at %d with a small live heap", currentGCPercent())
	}

	stop()
	<-returned
	if got := currentGCPercent(); got != gcMinPercent {
		t.Errorf("GOGC after stop = %d, want %d", got, gcMinPercent)
	}
}

// startPaceGC runs paceGC on a goroutine. stop ends it and may be called
// more than once; returned is closed when paceGC has returned.
func startPaceGC() (stop func(), returned <-chan struct{}) {
	done := make(chan struct{})
	ended := make(chan struct{})
	go func() {
		paceGC(done)
		close(ended)
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done) }) }, ended
}

// currentGCPercent reads GOGC as the runtime has it.
func currentGCPercent() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}
