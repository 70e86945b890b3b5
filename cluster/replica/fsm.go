package replica

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/iris-im/iris/storage"
)

// applyResponse is the result of fsm.Apply, which raft hands to the proposer through
// ApplyFuture.Response.
type applyResponse struct {
	results []storage.Result
	err     error
}

// Backoff between attempts to apply an entry while the store fails.
const (
	minApplyRetry = 10 * time.Millisecond
	maxApplyRetry = time.Second
)

// fsm applies committed raft entries to a storage.Store. Each entry's data is a MarshalOps
// encoding. raft calls Apply, Snapshot and Restore from one goroutine.
type fsm struct {
	store  *storage.Store
	logger *slog.Logger
	stop   <-chan struct{} // closed at shutdown; ends the retry loop of Apply

	mu      sync.Mutex    // guards changed
	changed chan struct{} // closed and replaced whenever applied changes
	applied atomic.Uint64 // the store's applied index

	snapshotSeq atomic.Uint64 // makes checkpoint directory names unique within the process
}

func newFSM(store *storage.Store, logger *slog.Logger, stop <-chan struct{}) *fsm {
	f := &fsm{store: store, logger: logger, stop: stop, changed: make(chan struct{})}
	f.applied.Store(store.AppliedIndex())
	return f
}

// setApplied publishes index as the applied index and wakes WaitApplied callers.
func (f *fsm) setApplied(index uint64) {
	f.applied.Store(index)
	f.mu.Lock()
	close(f.changed)
	f.changed = make(chan struct{})
	f.mu.Unlock()
}

// appliedChanged returns a channel that is closed at the next change of the applied index.
func (f *fsm) appliedChanged() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed
}

// Apply applies one committed command entry and returns an applyResponse.
//
// An entry that does not decode fails the same way on every replica, so its index is recorded
// with no ops and the proposer gets the error.
func (f *fsm) Apply(l *raft.Log) any {
	ops, decodeErr := storage.UnmarshalOps(l.Data)
	if decodeErr != nil {
		f.logger.Error("replica: raft entry does not decode as store ops; recording it as empty", "index", l.Index, "err", decodeErr)
		ops = nil
	}
	results, err := f.applyEntry(l.Index, ops)
	if err == nil && decodeErr != nil {
		err = fmt.Errorf("replica: decode ops of entry %d: %w", l.Index, decodeErr)
	}
	return applyResponse{results: results, err: err}
}

// StoreConfiguration records the index of a committed membership change as applied, so that
// the store's applied index matches the index raft gives a snapshot taken right after it.
func (f *fsm) StoreConfiguration(index uint64, _ raft.Configuration) {
	_, _ = f.applyEntry(index, nil)
}

// applyEntry applies ops as entry index. A failure of the store is retried until the store
// recovers or the replica shuts down, because skipping the entry would make this replica
// diverge. The retries are safe because the store records the applied index in the same batch
// as the ops.
func (f *fsm) applyEntry(index uint64, ops []storage.Op) ([]storage.Result, error) {
	delay := minApplyRetry
	for attempt := 1; ; attempt++ {
		results, err := f.store.ApplyReplicated(index, ops)
		if err == nil {
			f.setApplied(max(index, f.applied.Load()))
			return results, nil
		}
		if errors.Is(err, storage.ErrClosed) {
			f.logger.Error("replica: store is closed; this replica stops applying raft entries", "index", index)
			return nil, err
		}
		if attempt == 1 || delay == maxApplyRetry {
			f.logger.Error("replica: applying raft entry to the store failed; retrying", "index", index, "attempt", attempt, "err", err)
		}
		select {
		case <-f.stop:
			return nil, fmt.Errorf("replica: shut down before entry %d was applied: %w", index, err)
		case <-time.After(delay):
		}
		delay = min(2*delay, maxApplyRetry)
	}
}

// Snapshot takes a Pebble checkpoint of the store. Raft calls it between two Apply calls, so
// the checkpoint contains exactly the entries up to the index raft records for the snapshot.
// Persist writes it out.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	dir := fmt.Sprintf("%s.snapshot-%d-%d", f.store.Dir(), os.Getpid(), f.snapshotSeq.Add(1))
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("replica: remove stale checkpoint %s: %w", dir, err)
	}
	if err := f.store.Checkpoint(dir); err != nil {
		return nil, fmt.Errorf("replica: snapshot: %w", err)
	}
	return &checkpointSnapshot{dir: dir, logger: f.logger}, nil
}

// Restore replaces the store's contents with a snapshot written by checkpointSnapshot.Persist.
// It unpacks the tar next to the store's directory, so the final move is a rename.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()

	staging := f.store.Dir() + ".restore"
	if err := os.RemoveAll(staging); err != nil {
		return fmt.Errorf("replica: remove stale restore directory %s: %w", staging, err)
	}
	if err := untarDir(rc, staging); err != nil {
		_ = os.RemoveAll(staging)
		return fmt.Errorf("replica: unpack snapshot into %s: %w", staging, err)
	}
	if err := f.store.RestoreCheckpoint(staging); err != nil {
		_ = os.RemoveAll(staging)
		return fmt.Errorf("replica: restore snapshot: %w", err)
	}
	index := f.store.AppliedIndex()
	f.setApplied(index)
	f.logger.Info("replica: restored the store from a snapshot", "applied_index", index)
	return nil
}

// checkpointSnapshot is a store checkpoint waiting to be streamed to raft's snapshot store.
type checkpointSnapshot struct {
	dir    string
	logger *slog.Logger
}

// Persist writes the checkpoint directory to sink as a tar stream.
func (s *checkpointSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := tarDir(s.dir, sink); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("replica: write snapshot %s: %w", sink.ID(), err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("replica: close snapshot %s: %w", sink.ID(), err)
	}
	return nil
}

// Release deletes the checkpoint directory.
func (s *checkpointSnapshot) Release() {
	if err := os.RemoveAll(s.dir); err != nil {
		s.logger.Warn("replica: removing a checkpoint directory failed; delete it by hand", "dir", s.dir, "err", err)
	}
}

// tarDir writes the regular files and directories under dir to w as a tar stream with paths
// relative to dir.
func tarDir(dir string, w io.Writer) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if !info.Mode().IsRegular() && !info.IsDir() {
			return fmt.Errorf("%s is neither a file nor a directory", p)
		}
		hdr, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if info.IsDir() {
			return nil
		}
		return copyFileTo(tw, p)
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

func copyFileTo(w io.Writer, name string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}

// untarDir unpacks a stream written by tarDir into dir, which must not exist, and fsyncs every
// file and directory, so the store can be switched over to it right away. Only regular files
// and directories with relative paths inside dir are accepted.
func untarDir(r io.Reader, dir string) error {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	dirs := []string{dir}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		name := path.Clean(hdr.Name)
		if path.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") || name == "." {
			return fmt.Errorf("entry %q points outside the snapshot", hdr.Name)
		}
		target := filepath.Join(dir, filepath.FromSlash(name))
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
			dirs = append(dirs, target)
		case tar.TypeReg:
			if err := writeSyncedFile(target, tr); err != nil {
				return err
			}
		default:
			return fmt.Errorf("entry %q has unsupported type %q", hdr.Name, hdr.Typeflag)
		}
	}
	for _, d := range dirs {
		if err := syncPath(d); err != nil {
			return err
		}
	}
	return nil
}

func writeSyncedFile(name string, r io.Reader) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, copyErr := io.Copy(f, r)
	syncErr := f.Sync()
	closeErr := f.Close()
	return errors.Join(copyErr, syncErr, closeErr)
}

func syncPath(name string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	syncErr := f.Sync()
	return errors.Join(syncErr, f.Close())
}
