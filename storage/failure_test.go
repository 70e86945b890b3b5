package storage

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// failingFS returns a file system over the OS one that fails the operations inject selects
// while the returned toggle is on.
func failingFS(inject func(errorfs.Op) bool) (vfs.FS, *errorfs.Toggle) {
	toggle := &errorfs.Toggle{Injector: errorfs.InjectorFunc(func(op errorfs.Op) error {
		if inject(op) {
			return errorfs.ErrInjected
		}
		return nil
	})}
	return errorfs.Wrap(vfs.Default, toggle), toggle
}

func isWrite(op errorfs.Op) bool {
	return op.Kind.ReadOrWrite() == errorfs.OpIsWrite
}

func isWALSync(op errorfs.Op) bool {
	switch op.Kind {
	case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
		return strings.HasSuffix(op.Path, ".log")
	}
	return false
}

// TestFailedWriteRecovers fails every write to the directory, as a full or read-only disk
// would, then lets the disk recover.
func TestFailedWriteRecovers(t *testing.T) {
	fsys, toggle := failingFS(isWrite)
	s := openTestStore(t, Options{FS: fsys})
	for range 3 {
		mustAppend(t, s, "alice", "before")
	}

	toggle.On()
	_, err := s.AppendSync(AppendRequest{User: "alice", Body: []byte("lost")})
	if !errors.Is(err, ErrCommitFailed) || !errors.Is(err, errorfs.ErrInjected) {
		t.Fatalf("append during the failure: err = %v, want ErrCommitFailed wrapping the injected error", err)
	}
	_, err = s.AppendSync(AppendRequest{User: "alice", Body: []byte("rejected")})
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("append while the disk still fails: err = %v, want ErrUnavailable", err)
	}
	if _, err := s.Inbox("alice", 0, 0); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Inbox while the disk still fails: err = %v, want ErrUnavailable", err)
	}

	toggle.Off()
	waitFor(t, "reads to work again without any write", func() bool {
		_, err := s.Inbox("alice", 0, 0)
		return err == nil
	})
	r := mustAppend(t, s, "alice", "after")
	// The failed write never reached the WAL, so its seq is assigned again: no gap.
	if r.Seq != 4 {
		t.Errorf("first append after recovery: seq = %d, want 4", r.Seq)
	}
	if seqs := inboxSeqs(t, s, "alice"); !slices.Equal(seqs, []uint64{1, 2, 3, 4}) {
		t.Errorf("seqs after recovery = %v, want [1 2 3 4]", seqs)
	}
	if n := inboxLen(t, s, "alice"); n != 4 {
		t.Errorf("InboxLen after recovery = %d, want 4", n)
	}
	if st := s.Stats(); st.FailedCommits != 1 {
		t.Errorf("Stats.FailedCommits = %d, want 1", st.FailedCommits)
	}
}

// TestFailedSyncRecovers fails only the WAL fsync. The batch reached the file, so after the
// reopen it may be present even though its append reported an error, and counts must agree.
func TestFailedSyncRecovers(t *testing.T) {
	fsys, toggle := failingFS(isWALSync)
	s := openTestStore(t, Options{FS: fsys})
	for range 3 {
		mustAppend(t, s, "alice", "before")
	}

	toggle.On()
	_, err := s.AppendSync(AppendRequest{
		User: "alice", Body: []byte("unsure"), TimeMS: 1000, Dedup: &DedupKey{Sender: "bob", Scope: "alice", ID: 7},
	})
	toggle.Off()
	if !errors.Is(err, ErrCommitFailed) {
		t.Fatalf("append during the failed fsync: err = %v, want ErrCommitFailed", err)
	}

	// The retry of the failed append with the same dedup key must not store a second copy.
	var retry AppendResult
	waitFor(t, "the retried append to succeed", func() bool {
		retry, err = s.AppendSync(AppendRequest{
			User: "alice", Body: []byte("unsure"), TimeMS: 1001, Dedup: &DedupKey{Sender: "bob", Scope: "alice", ID: 7},
		})
		return err == nil
	})
	if retry.Seq != 4 {
		t.Errorf("retried append: seq = %d, want 4", retry.Seq)
	}
	if !retry.Duplicate {
		t.Logf("the failed batch was not on disk after the reopen, so the retry stored it")
	}

	next := mustAppend(t, s, "alice", "after")
	if next.Seq != 5 {
		t.Errorf("append after the retry: seq = %d, want 5", next.Seq)
	}
	if seqs := inboxSeqs(t, s, "alice"); !slices.Equal(seqs, []uint64{1, 2, 3, 4, 5}) {
		t.Errorf("seqs after recovery = %v, want [1 2 3 4 5]", seqs)
	}
	if n := inboxLen(t, s, "alice"); n != 5 {
		t.Errorf("InboxLen after recovery = %d, want 5", n)
	}
}

func TestOpenReportsDirectoryProblems(t *testing.T) {
	base := t.TempDir()
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"empty dir option", Options{}, "Options.Dir is empty"},
		{"missing parent", Options{Dir: filepath.Join(base, "no", "such")}, "parent directory"},
		{"parent is a file", Options{Dir: filepath.Join(file, "db")}, "is not a directory"},
		{"dir is a file", Options{Dir: file}, "not a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Logger = testLogger(t)
			s, err := Open(tt.opts)
			if err == nil {
				s.Close()
				t.Fatalf("Open succeeded, want an error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Open error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestOpenReadOnlyDirectory(t *testing.T) {
	dir := t.TempDir()
	// Root ignores permission bits, so a read-only mount is simulated by failing writes.
	roFS := errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if isWrite(op) {
			return &os.PathError{Op: "write", Path: op.Path, Err: syscall.EROFS}
		}
		return nil
	}))
	_, err := Open(Options{Dir: dir, FS: roFS, Logger: testLogger(t)})
	if !errors.Is(err, syscall.EROFS) {
		t.Fatalf("Open on a read-only directory: err = %v, want it to wrap EROFS", err)
	}
	if !strings.Contains(err.Error(), "not writable") {
		t.Errorf("Open error %q does not say the directory is not writable", err)
	}
}

func TestOpenReportsCorruption(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, "alice", "x")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	manifests, err := filepath.Glob(filepath.Join(dir, "MANIFEST-*"))
	if err != nil || len(manifests) == 0 {
		t.Fatalf("no MANIFEST file in %s (err %v)", dir, err)
	}
	for _, m := range manifests {
		if err := os.WriteFile(m, []byte(strings.Repeat("garbage!", 512)), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	_, err = Open(Options{Dir: dir, Logger: testLogger(t)})
	if !errors.Is(err, ErrCorrupted) {
		t.Fatalf("Open with a garbled MANIFEST: err = %v, want ErrCorrupted", err)
	}
}

// walSyncGate blocks the first WAL fsync after arm until release sends its result.
type walSyncGate struct {
	armed   atomic.Bool
	blocked chan struct{}
	release chan error
}

func (g *walSyncGate) MaybeError(op errorfs.Op) error {
	if !isWALSync(op) || !g.armed.CompareAndSwap(true, false) {
		return nil
	}
	g.blocked <- struct{}{}
	return <-g.release
}

func (g *walSyncGate) String() string { return "walSyncGate" }

func TestInboxHidesEntriesBeforeFsync(t *testing.T) {
	gate := &walSyncGate{blocked: make(chan struct{}), release: make(chan error)}
	s := openTestStore(t, Options{FS: errorfs.Wrap(vfs.Default, gate)})

	// alice already has a synced entry, while bob's first entry is the one in flight.
	cases := []struct {
		user   string
		synced int
	}{{"alice", 1}, {"bob", 0}}
	for _, tc := range cases {
		user := tc.user
		for range tc.synced {
			mustAppend(t, s, user, "synced")
		}
		inFlight := uint64(tc.synced + 1)

		gate.armed.Store(true)
		done := make(chan error, 1)
		s.Append(AppendRequest{User: user, Body: []byte("in flight")}, func(_ AppendResult, err error) { done <- err })
		<-gate.blocked

		// Pebble makes the batch readable before its fsync finishes.
		waitFor(t, "Pebble to make the in-flight entry readable", func() bool {
			return hasKey(t, s, inboxKey(user, inFlight))
		})
		if seqs := inboxSeqs(t, s, user); slices.Contains(seqs, inFlight) {
			t.Errorf("%s: Inbox during the fsync = %v, want it without seq %d", user, seqs, inFlight)
		}

		gate.release <- nil
		if err := <-done; err != nil {
			t.Fatalf("%s: append after the fsync: %v", user, err)
		}
		if seqs := inboxSeqs(t, s, user); !slices.Contains(seqs, inFlight) {
			t.Errorf("%s: Inbox after the fsync = %v, want it to contain seq %d", user, seqs, inFlight)
		}
	}
}

func TestOpenReportsDirectoryInUse(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	first := openTestStore(t, Options{Dir: dir})
	_ = first

	_, err := Open(Options{Dir: dir})
	if err == nil || !strings.Contains(err.Error(), "in use by another process") {
		t.Fatalf("second Open of a store in use = %v, want an error saying it is in use", err)
	}
}
