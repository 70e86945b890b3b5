package replica

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/iris-im/iris/storage"
)

func openFSMStore(t *testing.T) *storage.Store {
	t.Helper()
	store, err := storage.Open(storage.Options{Dir: filepath.Join(t.TempDir(), "store"), Replicated: true, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	return store
}

func commandLog(t *testing.T, index uint64, ops []storage.Op) *raft.Log {
	t.Helper()
	data, err := storage.MarshalOps(ops)
	if err != nil {
		t.Fatal(err)
	}
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data}
}

func TestFSMApplyReturnsResults(t *testing.T) {
	f := newFSM(openFSMStore(t), testLogger(t), make(chan struct{}))

	resp, ok := f.Apply(commandLog(t, 3, appendOps("kate", "m", 2))).(applyResponse)
	if !ok || resp.err != nil {
		t.Fatalf("Apply = %+v, want results", resp)
	}
	if len(resp.results) != 2 || resp.results[1].Seq != 2 {
		t.Errorf("results = %+v, want seqs 1 and 2", resp.results)
	}
	if got := f.applied.Load(); got != 3 {
		t.Errorf("applied = %d, want 3", got)
	}

	// A replayed entry changes nothing.
	resp = f.Apply(commandLog(t, 3, appendOps("kate", "m", 2))).(applyResponse)
	if resp.err != nil || resp.results != nil {
		t.Errorf("replayed Apply = %+v, want no results and no error", resp)
	}
	if n, err := f.store.InboxLen("kate"); err != nil || n != 2 {
		t.Errorf("InboxLen after replay = %d, %v; want 2", n, err)
	}
}

func TestFSMApplyRecordsUndecodableEntry(t *testing.T) {
	f := newFSM(openFSMStore(t), testLogger(t), make(chan struct{}))

	resp := f.Apply(&raft.Log{Index: 5, Term: 1, Type: raft.LogCommand, Data: []byte{0xFF, 0xFF}}).(applyResponse)
	if resp.err == nil {
		t.Fatal("Apply of undecodable data returned no error")
	}
	if got := f.store.AppliedIndex(); got != 5 {
		t.Errorf("store applied index = %d, want 5 so the entry is not replayed", got)
	}
}

func TestFSMStoreConfigurationAdvancesIndex(t *testing.T) {
	f := newFSM(openFSMStore(t), testLogger(t), make(chan struct{}))
	f.StoreConfiguration(9, raft.Configuration{})
	if got := f.store.AppliedIndex(); got != 9 {
		t.Errorf("store applied index = %d, want 9", got)
	}
}

func TestFSMSnapshotRestoreRoundTrip(t *testing.T) {
	source := newFSM(openFSMStore(t), testLogger(t), make(chan struct{}))
	source.Apply(commandLog(t, 4, appendOps("liam", "m", 3)))

	snap, err := source.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	var buf bytes.Buffer
	if err := tarDir(snap.(*checkpointSnapshot).dir, &buf); err != nil {
		t.Fatalf("tarDir: %v", err)
	}
	snap.Release()
	if _, err := os.Stat(snap.(*checkpointSnapshot).dir); !os.IsNotExist(err) {
		t.Errorf("checkpoint directory still exists after Release: %v", err)
	}

	target := newFSM(openFSMStore(t), testLogger(t), make(chan struct{}))
	target.Apply(commandLog(t, 1, appendOps("mona", "gone", 1)))
	if err := target.Restore(nopCloser{&buf}); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if got := target.applied.Load(); got != 4 {
		t.Errorf("applied after restore = %d, want 4", got)
	}
	if n, err := target.store.InboxLen("liam"); err != nil || n != 3 {
		t.Errorf("liam's inbox after restore = %d, %v; want 3", n, err)
	}
	if n, err := target.store.InboxLen("mona"); err != nil || n != 0 {
		t.Errorf("mona's inbox after restore = %d, %v; want 0", n, err)
	}
}

func TestUntarRejectsUnsafeEntries(t *testing.T) {
	tests := []struct {
		name string
		hdr  tar.Header
	}{
		{"parent path", tar.Header{Name: "../evil", Typeflag: tar.TypeReg, Mode: 0o644}},
		{"nested parent path", tar.Header{Name: "a/../../evil", Typeflag: tar.TypeReg, Mode: 0o644}},
		{"absolute path", tar.Header{Name: "/tmp/evil", Typeflag: tar.TypeReg, Mode: 0o644}},
		{"symlink", tar.Header{Name: "link", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			if err := tw.WriteHeader(&tt.hdr); err != nil {
				t.Fatal(err)
			}
			if err := tw.Close(); err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(t.TempDir(), "out")
			if err := untarDir(&buf, dir); err == nil {
				t.Fatalf("untarDir accepted %q", tt.hdr.Name)
			}
			if _, err := os.Lstat(filepath.Join(filepath.Dir(dir), "evil")); !os.IsNotExist(err) {
				t.Errorf("a file was written outside the target directory: %v", err)
			}
		})
	}
}

type nopCloser struct{ *bytes.Buffer }

func (nopCloser) Close() error { return nil }
