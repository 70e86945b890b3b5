package replica

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iris-im/iris/storage"
)

// batchedAppend returns an append op to user with a distinct tag.
func batchedAppend(user string, n int) storage.Op {
	return storage.Op{
		Kind:      storage.OpAppend,
		User:      user,
		Tag:       uint64(n + 1),
		EntryKind: 0x02,
		Sender:    "sender",
		TimeMS:    1_700_000_000_000,
		Body:      fmt.Appendf(nil, "msg-%d", n),
	}
}

type submitOutcome struct {
	result storage.Result
	index  uint64
	err    error
}

// submitSync submits op and waits for its outcome.
func submitSync(b *Batcher, op storage.Op) submitOutcome {
	ch := make(chan submitOutcome, 1)
	b.Submit(op, func(r storage.Result, index uint64, err error) { ch <- submitOutcome{r, index, err} })
	return <-ch
}

func TestBatcherSharesEntries(t *testing.T) {
	nodes := startCluster(t, 3, nil, nil)
	leader := waitLeader(t, nodes, 5*time.Second)
	b := NewBatcher(leader.replica, 512)
	defer b.Close()

	const writers, perWriter = 64, 40
	var wg sync.WaitGroup
	var failures atomic.Int64
	var maxIndex atomic.Uint64
	seqs := make([][]uint64, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			user := fmt.Sprintf("user%d", w)
			for i := range perWriter {
				out := submitSync(b, batchedAppend(user, i))
				if out.err != nil {
					failures.Add(1)
					t.Errorf("%s append %d: %v", user, i, out.err)
					return
				}
				seqs[w] = append(seqs[w], out.result.Seq)
				for {
					old := maxIndex.Load()
					if out.index <= old || maxIndex.CompareAndSwap(old, out.index) {
						break
					}
				}
			}
		}()
	}
	wg.Wait()
	if failures.Load() > 0 {
		t.FailNow()
	}

	stats := b.Stats()
	if stats.Ops != writers*perWriter {
		t.Errorf("Ops = %d, want %d", stats.Ops, writers*perWriter)
	}
	perEntry := float64(stats.Ops) / float64(stats.Entries)
	t.Logf("%d ops in %d raft entries: %.1f ops per entry", stats.Ops, stats.Entries, perEntry)
	if perEntry < 4 {
		t.Errorf("%.1f ops per raft entry with %d concurrent writers, want at least 4", perEntry, writers)
	}

	// Each writer's appends got consecutive seqs in submit order.
	for w, got := range seqs {
		for i, seq := range got {
			if seq != uint64(i+1) {
				t.Fatalf("user%d append %d got seq %d, want %d", w, i, seq, i+1)
			}
		}
	}
	waitApplied(t, nodes, maxIndex.Load())
	for _, n := range nodes {
		for w := range writers {
			if got, err := n.store.InboxLen(fmt.Sprintf("user%d", w)); err != nil || got != perWriter {
				t.Fatalf("%s: user%d inbox length = %d, %v; want %d", n.id, w, got, err, perWriter)
			}
		}
	}
}

func TestBatcherReportsOpRejection(t *testing.T) {
	nodes := startCluster(t, 1, nil, nil)
	b := NewBatcher(nodes[0].replica, 0)
	defer b.Close()

	ok := submitSync(b, batchedAppend("quinn", 0))
	bad := submitSync(b, batchedAppend("bad:user", 0))
	if ok.err != nil || ok.result.Seq != 1 {
		t.Errorf("valid append = %+v, want seq 1", ok)
	}
	if !errors.Is(bad.err, storage.ErrInvalidRequest) {
		t.Errorf("append to an invalid user: error = %v, want ErrInvalidRequest", bad.err)
	}
}

func TestBatcherOnFollowerFails(t *testing.T) {
	nodes := startCluster(t, 3, nil, nil)
	leader := waitLeader(t, nodes, 5*time.Second)
	var follower *testNode
	for _, n := range nodes {
		if n != leader {
			follower = n
			break
		}
	}
	b := NewBatcher(follower.replica, 16)
	defer b.Close()

	out := submitSync(b, batchedAppend("rita", 0))
	if !errors.Is(out.err, ErrNotLeader) {
		t.Errorf("submit on a follower: error = %v, want ErrNotLeader", out.err)
	}
}

func TestBatcherCloseRunsQueuedOps(t *testing.T) {
	nodes := startCluster(t, 1, nil, nil)
	b := NewBatcher(nodes[0].replica, 4)

	var done atomic.Int64
	for i := range 20 {
		b.Submit(batchedAppend("sam", i), func(_ storage.Result, _ uint64, err error) {
			if err != nil {
				t.Errorf("queued append failed: %v", err)
			}
			done.Add(1)
		})
	}
	b.Close()
	if got := done.Load(); got != 20 {
		t.Errorf("%d of 20 queued ops completed by Close, want all", got)
	}
	if got := b.Stats().Entries; got < 5 {
		t.Errorf("%d entries for 20 ops with maxOps 4, want at least 5", got)
	}

	after := submitSync(b, batchedAppend("sam", 99))
	if !errors.Is(after.err, ErrBatcherClosed) {
		t.Errorf("Submit after Close: error = %v, want ErrBatcherClosed", after.err)
	}
}

func BenchmarkBatcherAppends(b *testing.B) {
	// The default timeouts, not the shorter test ones: three replicas in one process saturate
	// the CPU, and this benchmark measures throughput, not failover.
	nodes := startCluster(b, 3, nil, func(c *Config) {
		c.HeartbeatTimeout = DefaultHeartbeatTimeout
		c.ElectionTimeout = DefaultElectionTimeout
		c.LeaderLeaseTimeout = DefaultLeaderLeaseTimeout
	})
	leader := waitLeader(b, nodes, 5*time.Second)
	batcher := NewBatcher(leader.replica, 2048)
	defer batcher.Close()
	body := make([]byte, 200)

	const inFlight = 512
	sem := make(chan struct{}, inFlight)
	var wg sync.WaitGroup
	var failed atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		sem <- struct{}{}
		wg.Add(1)
		op := storage.Op{
			Kind: storage.OpAppend, User: fmt.Sprintf("u%d", i%1000), Tag: uint64(i), EntryKind: 0x02,
			Sender: "bench", TimeMS: 1_700_000_000_000, Body: body,
		}
		batcher.Submit(op, func(_ storage.Result, _ uint64, err error) {
			if err != nil {
				failed.Add(1)
			}
			<-sem
			wg.Done()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()

	if n := failed.Load(); n > 0 {
		b.Fatalf("%d appends failed", n)
	}
	stats := batcher.Stats()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "appends/s")
	b.ReportMetric(float64(stats.Ops)/float64(stats.Entries), "ops/entry")
}
