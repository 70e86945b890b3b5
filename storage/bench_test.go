package storage

import (
	"fmt"
	"log/slog"
	"runtime"
	"sync/atomic"
	"testing"
)

// BenchmarkAppendGroupCommit measures durable appends of 200-byte bodies to 1000 users from
// several goroutines per GOMAXPROCS, each waiting for its fsync as a sender's session would.
// It reports appends/s and appends/fsync, the mean number of appends one group commit carried.
func BenchmarkAppendGroupCommit(b *testing.B) {
	for _, perProc := range []int{1, 8, 64} {
		name := fmt.Sprintf("goroutines=%d", perProc*runtime.GOMAXPROCS(0))
		b.Run(name, func(b *testing.B) { benchmarkAppends(b, perProc) })
	}
}

func benchmarkAppends(b *testing.B, perProc int) {
	s, err := Open(Options{Dir: b.TempDir(), MaxInbox: 1 << 30, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	body := make([]byte, 200)
	var goroutines atomic.Uint64
	before := s.Stats()

	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	b.SetParallelism(perProc)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		user := fmt.Sprintf("user%d", goroutines.Add(1)%1000)
		for pb.Next() {
			_, err := s.AppendSync(AppendRequest{User: user, Kind: 0x02, Sender: "bench", TimeMS: 1, Body: body})
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()

	after := s.Stats()
	appends := after.Appends - before.Appends
	commits := after.Commits - before.Commits
	b.ReportMetric(float64(appends)/b.Elapsed().Seconds(), "appends/s")
	if commits > 0 {
		b.ReportMetric(float64(appends)/float64(commits), "appends/fsync")
	}
}

// BenchmarkKeyFetch measures durable one-time prekey hand-outs from 64 goroutines per
// GOMAXPROCS, each fetching for its own user and waiting for the fsync, as a gateway serving
// fetches would. A user's client refills its pool with 1000 prekeys when it runs empty, so
// about one op in 1000 is an upload.
func BenchmarkKeyFetch(b *testing.B) {
	const refill = 1000
	s, err := Open(Options{Dir: b.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	upload := func(user string, bundle *KeyBundle) error {
		op := Op{Kind: OpKeyUpload, User: user, Bundle: bundle, Prekeys: make([][]byte, refill)}
		for i := range op.Prekeys {
			op.Prekeys[i] = make([]byte, 32)
		}
		_, err := s.DoSync(op)
		return err
	}
	var goroutines atomic.Uint64
	before := s.Stats()

	b.ReportAllocs()
	b.SetParallelism(64)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		user := fmt.Sprintf("user%d", goroutines.Add(1))
		bundle := &KeyBundle{IdentityKey: make([]byte, 32), SignedPrekey: make([]byte, 32), SignedPrekeySignature: make([]byte, 64)}
		if err := upload(user, bundle); err != nil {
			b.Error(err)
			return
		}
		for pb.Next() {
			r, err := s.DoSync(Op{Kind: OpKeyFetch, User: user})
			if err != nil || r.Prekey == nil {
				b.Errorf("fetch for %s: prekey %x, err %v", user, r.Prekey, err)
				return
			}
			if r.Count == 0 {
				if err := upload(user, nil); err != nil {
					b.Error(err)
					return
				}
			}
		}
	})
	b.StopTimer()

	after := s.Stats()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "fetches/s")
	if commits := after.Commits - before.Commits; commits > 0 {
		b.ReportMetric(float64(after.Ops-before.Ops)/float64(commits), "ops/fsync")
	}
}

// BenchmarkGroupAddLeave measures membership changes in a group of 255 members, where each
// change rewrites the whole group record. Each batch adds and removes 100 guests, so the
// fsync is shared by 200 changes as in a busy group commit.
func BenchmarkGroupAddLeave(b *testing.B) {
	const guests = 100
	s, err := Open(Options{Dir: b.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ops := []Op{{Kind: OpGroupCreate, GroupID: "big", User: "admin", TimeMS: 1}}
	for i := range DefaultMaxGroupSize - 2 {
		ops = append(ops, Op{Kind: OpGroupAdd, GroupID: "big", User: fmt.Sprintf("member%03d", i), By: "admin"})
	}
	if _, err := s.ApplyOps(ops); err != nil {
		b.Fatal(err)
	}

	var batch []Op
	for i := range guests {
		guest := fmt.Sprintf("guest%03d", i)
		batch = append(batch,
			Op{Kind: OpGroupAdd, GroupID: "big", User: guest, By: "admin"},
			Op{Kind: OpGroupLeave, GroupID: "big", User: guest})
	}
	b.ReportAllocs()
	for b.Loop() {
		results, err := s.ApplyOps(batch)
		if err != nil {
			b.Fatal(err)
		}
		for i, r := range results {
			if r.Err != nil {
				b.Fatalf("op %d (%s): %v", i, batch[i].Kind, r.Err)
			}
		}
	}
	b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "changes/s")
}
