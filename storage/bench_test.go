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
