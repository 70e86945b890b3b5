package storage

import (
	"log/slog"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// The crash test re-executes this binary as the process to be killed.
	if dir := os.Getenv(crashChildDirEnv); dir != "" {
		os.Exit(runCrashChild(dir))
	}
	goleak.VerifyTestMain(m)
}

// testLogger writes the store's logs to the test output, shown for failed or verbose runs.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// openTestStore opens a store in a new temporary directory and closes it at cleanup. Zero
// fields of opts get test defaults.
func openTestStore(t testing.TB, opts Options) *Store {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	s, err := Open(opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", opts.Dir, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil && err != ErrClosed {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// waitFor polls cond until it returns true, failing the test after 10 seconds.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after 10s waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// mustAppend appends a plain message to user and fails the test on error.
func mustAppend(t testing.TB, s *Store, user, body string) AppendResult {
	t.Helper()
	r, err := s.AppendSync(AppendRequest{User: user, Kind: 0x02, Sender: "sender", TimeMS: 1000, Body: []byte(body)})
	if err != nil {
		t.Fatalf("append %q to %s: %v", body, user, err)
	}
	return r
}

// barrier waits until every op queued before it is committed. The commit loop applies ops in
// queue order and runs done only after the commit, so one synchronous append is enough.
func barrier(t testing.TB, s *Store) {
	t.Helper()
	mustAppend(t, s, "barrier", "")
}

func inboxSeqs(t testing.TB, s *Store, user string) []uint64 {
	t.Helper()
	entries, err := s.Inbox(user, 0, 0)
	if err != nil {
		t.Fatalf("Inbox(%s): %v", user, err)
	}
	seqs := make([]uint64, len(entries))
	for i, e := range entries {
		seqs[i] = e.Seq
	}
	return seqs
}

func inboxLen(t testing.TB, s *Store, user string) int {
	t.Helper()
	n, err := s.InboxLen(user)
	if err != nil {
		t.Fatalf("InboxLen(%s): %v", user, err)
	}
	return n
}
