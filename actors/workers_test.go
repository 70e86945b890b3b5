package actors

import (
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

func TestWorkersNeverWaitForBusyOne(t *testing.T) {
	w := NewWorkers(4, time.Minute)
	release := make(chan struct{})
	blocked := make(chan struct{})
	w.Go(func() {
		close(blocked)
		<-release // like a supervisor waiting for a child that needs a worker
	})
	<-blocked

	ran := make(chan struct{})
	w.Go(func() { close(ran) })
	select {
	case <-ran:
	case <-time.After(5 * time.Second):
		t.Fatal("a function waited for a worker busy with another one")
	}
	close(release)
}

func TestWorkersReuseIdleWorker(t *testing.T) {
	w := NewWorkers(4, time.Minute)
	done := make(chan struct{})
	w.Go(func() { done <- struct{}{} })
	<-done
	waitFor(t, "the worker to become idle", func() bool { return w.idle.Load() == 1 })

	before := runtime.NumGoroutine()
	var ran atomic.Int32
	for range 100 {
		w.Go(func() { ran.Add(1); done <- struct{}{} })
		<-done
		waitFor(t, "the worker to become idle again", func() bool { return w.idle.Load() == 1 })
	}
	if ran.Load() != 100 {
		t.Fatalf("ran %d functions, want 100", ran.Load())
	}
	if after := runtime.NumGoroutine(); after > before {
		t.Errorf("goroutines grew from %d to %d running 100 functions one at a time, want one worker reused", before, after)
	}
}

func TestWorkersKeepAtMostMaxIdleForLinger(t *testing.T) {
	before := runtime.NumGoroutine()
	w := NewWorkers(2, 50*time.Millisecond)
	release := make(chan struct{})
	for range 5 {
		w.Go(func() { <-release })
	}
	close(release)
	waitFor(t, "at most 2 idle workers", func() bool { return runtime.NumGoroutine() <= before+2 })
	waitFor(t, "idle workers to end after their linger", func() bool { return runtime.NumGoroutine() <= before })
}
