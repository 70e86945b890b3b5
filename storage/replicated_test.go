package storage

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func appendOp(user, body string, tag uint64) Op {
	return Op{Kind: OpAppend, User: user, Tag: tag, EntryKind: 0x02, Sender: "sender", TimeMS: 1000, Body: []byte(body)}
}

func openReplicatedStore(t *testing.T, dir string) *Store {
	t.Helper()
	return openTestStore(t, Options{Dir: dir, Replicated: true})
}

func TestApplyReplicatedRecordsIndex(t *testing.T) {
	s := openReplicatedStore(t, "")
	if got := s.AppliedIndex(); got != 0 {
		t.Fatalf("AppliedIndex of a new store = %d, want 0", got)
	}

	results, err := s.ApplyReplicated(5, []Op{appendOp("alice", "a", 1), appendOp("alice", "b", 2)})
	if err != nil {
		t.Fatalf("ApplyReplicated(5): %v", err)
	}
	if len(results) != 2 || results[0].Seq != 1 || results[1].Seq != 2 {
		t.Fatalf("results = %+v, want seqs 1 and 2", results)
	}
	if got := s.AppliedIndex(); got != 5 {
		t.Fatalf("AppliedIndex = %d, want 5", got)
	}

	// An entry without ops still advances the index.
	if _, err := s.ApplyReplicated(6, nil); err != nil {
		t.Fatalf("ApplyReplicated(6, nil): %v", err)
	}
	if got := s.AppliedIndex(); got != 6 {
		t.Fatalf("AppliedIndex after an empty entry = %d, want 6", got)
	}
}

func TestApplyReplicatedSkipsOldIndexes(t *testing.T) {
	s := openReplicatedStore(t, "")
	if _, err := s.ApplyReplicated(10, []Op{appendOp("bob", "first", 1)}); err != nil {
		t.Fatalf("ApplyReplicated(10): %v", err)
	}

	for _, index := range []uint64{1, 9, 10} {
		results, err := s.ApplyReplicated(index, []Op{appendOp("bob", "replayed", 2)})
		if err != nil {
			t.Fatalf("ApplyReplicated(%d): %v", index, err)
		}
		if results != nil {
			t.Errorf("ApplyReplicated(%d) results = %+v, want nil for a replayed entry", index, results)
		}
	}
	if got := inboxBodies(t, s, "bob"); !slices.Equal(got, []string{"first"}) {
		t.Fatalf("inbox = %q, want only the first append", got)
	}
	if got := s.AppliedIndex(); got != 10 {
		t.Fatalf("AppliedIndex = %d, want 10", got)
	}
}

func TestAppliedIndexSurvivesReopen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	s, err := Open(Options{Dir: dir, Replicated: true, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if _, err := s.ApplyReplicated(3, []Op{appendOp("carol", "x", 1)}); err != nil {
		t.Fatalf("ApplyReplicated: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = openReplicatedStore(t, dir)
	if got := s.AppliedIndex(); got != 3 {
		t.Fatalf("AppliedIndex after reopen = %d, want 3", got)
	}
	results, err := s.ApplyReplicated(3, []Op{appendOp("carol", "x", 1)})
	if err != nil || results != nil {
		t.Fatalf("replay of index 3 after reopen = %+v, %v; want nil, nil", results, err)
	}
	if got := inboxLen(t, s, "carol"); got != 1 {
		t.Fatalf("inbox length after replay = %d, want 1", got)
	}
}

func TestReplicatedStoreRejectsLocalWrites(t *testing.T) {
	s := openReplicatedStore(t, "")

	if _, err := s.ApplyOps([]Op{appendOp("dave", "x", 1)}); !errors.Is(err, ErrInvalidRequest) {
		t.Errorf("ApplyOps error = %v, want ErrInvalidRequest", err)
	}
	_, err := s.AppendSync(AppendRequest{User: "dave", Body: []byte("x")})
	if !errors.Is(err, ErrInvalidRequest) {
		t.Errorf("AppendSync error = %v, want ErrInvalidRequest", err)
	}
	if got := inboxLen(t, s, "dave"); got != 0 {
		t.Errorf("inbox length = %d, want 0 after rejected local writes", got)
	}
}

func TestCheckpointRestoreReplacesContents(t *testing.T) {
	source := openReplicatedStore(t, "")
	if _, err := source.ApplyReplicated(7, []Op{appendOp("erin", "kept", 1)}); err != nil {
		t.Fatalf("ApplyReplicated: %v", err)
	}
	checkpoint := filepath.Join(t.TempDir(), "checkpoint")
	if err := source.Checkpoint(checkpoint); err != nil {
		t.Fatalf("Checkpoint: %v", err)
	}
	// Writes after the checkpoint must not appear in it.
	if _, err := source.ApplyReplicated(8, []Op{appendOp("erin", "later", 2)}); err != nil {
		t.Fatalf("ApplyReplicated: %v", err)
	}

	targetDir := filepath.Join(t.TempDir(), "store")
	target := openReplicatedStore(t, targetDir)
	if _, err := target.ApplyReplicated(20, []Op{appendOp("frank", "replaced", 1)}); err != nil {
		t.Fatalf("ApplyReplicated: %v", err)
	}

	staged := targetDir + ".restore"
	if err := os.Rename(checkpoint, staged); err != nil {
		t.Fatalf("stage checkpoint: %v", err)
	}
	if err := target.RestoreCheckpoint(staged); err != nil {
		t.Fatalf("RestoreCheckpoint: %v", err)
	}

	if got := target.AppliedIndex(); got != 7 {
		t.Errorf("AppliedIndex after restore = %d, want 7", got)
	}
	if got := inboxBodies(t, target, "erin"); !slices.Equal(got, []string{"kept"}) {
		t.Errorf("erin's inbox after restore = %q, want [kept]", got)
	}
	if got := inboxLen(t, target, "frank"); got != 0 {
		t.Errorf("frank's inbox after restore has %d entries, want 0", got)
	}
	if _, err := os.Stat(staged); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("staged checkpoint still exists after restore: %v", err)
	}

	// The restored store keeps applying, and seqs continue from the checkpoint.
	results, err := target.ApplyReplicated(8, []Op{appendOp("erin", "after", 3)})
	if err != nil {
		t.Fatalf("ApplyReplicated after restore: %v", err)
	}
	if len(results) != 1 || results[0].Seq != 2 {
		t.Fatalf("append after restore = %+v, want seq 2", results)
	}
}

func TestRestoreCheckpointMissingDirKeepsStore(t *testing.T) {
	s := openReplicatedStore(t, "")
	if _, err := s.ApplyReplicated(4, []Op{appendOp("gina", "x", 1)}); err != nil {
		t.Fatalf("ApplyReplicated: %v", err)
	}

	missing := filepath.Join(t.TempDir(), "missing")
	if err := s.RestoreCheckpoint(missing); err == nil {
		t.Fatal("RestoreCheckpoint of a missing directory returned no error")
	}
	if got := inboxBodies(t, s, "gina"); !slices.Equal(got, []string{"x"}) {
		t.Errorf("inbox after the failed restore = %q, want [x]", got)
	}
	if got := s.AppliedIndex(); got != 4 {
		t.Errorf("AppliedIndex after the failed restore = %d, want 4", got)
	}
}

func TestRestoreCheckpointInvalidDataRollsBack(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	s := openReplicatedStore(t, dir)
	if _, err := s.ApplyReplicated(4, []Op{appendOp("hank", "x", 1)}); err != nil {
		t.Fatalf("ApplyReplicated: %v", err)
	}

	// A directory that Pebble cannot open: a CURRENT marker pointing at a missing manifest.
	bad := dir + ".restore"
	if err := os.MkdirAll(bad, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bad, "CURRENT"), []byte("MANIFEST-000099\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.RestoreCheckpoint(bad); err == nil {
		t.Fatal("RestoreCheckpoint of an invalid checkpoint returned no error")
	}
	if got := inboxBodies(t, s, "hank"); !slices.Equal(got, []string{"x"}) {
		t.Errorf("inbox after the rolled-back restore = %q, want [x]", got)
	}
	if _, err := s.ApplyReplicated(5, []Op{appendOp("hank", "y", 2)}); err != nil {
		t.Errorf("ApplyReplicated after the rolled-back restore: %v", err)
	}
}
