package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// appliedIndexKey holds the raft index of the last entry applied through ApplyReplicated, as
// 8 bytes big-endian. Its tag 'r' is used by no other table.
var appliedIndexKey = []byte{'r'}

// Dir returns the store's Pebble directory, the Dir it was opened with after filepath.Clean.
func (s *Store) Dir() string {
	return s.dir
}

// ApplyReplicated applies ops, the command of raft entry index, and records index as the
// applied index in the same Pebble batch. It returns nil results and no error when index is
// at or below AppliedIndex, because raft replays its log from the last snapshot on every
// start and an entry must change the state once. Results and errors are those of ApplyOps.
// After ErrCommitFailed the caller may retry the same entry: the applied index shows
// whether the failed batch reached the disk.
//
// The batch is committed without an fsync. That is safe because the raft log already contains
// the entry durably. After a crash, the store comes back at an applied index at or below the
// one it had, and raft applies again every entry above the persisted applied index. Checkpoint
// syncs the WAL, so the store is durable up to every snapshot that lets raft drop log entries.
func (s *Store) ApplyReplicated(index uint64, ops []Op) ([]Result, error) {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()

	db, err := s.writableDB()
	if err != nil {
		return nil, err
	}
	applied, err := readAppliedIndex(db)
	if err != nil {
		return nil, err
	}
	if index <= applied {
		return nil, nil
	}

	setIndex := func(b *pebble.Batch) error {
		return b.Set(appliedIndexKey, beUint64(index), nil)
	}
	return s.applyBatch(db, ops, setIndex, pebble.NoSync)
}

// AppliedIndex returns the raft index of the last entry applied through ApplyReplicated, or
// zero when there is none or Pebble is closed after a write failure.
func (s *Store) AppliedIndex() uint64 {
	db, release, err := s.readDB()
	if err != nil {
		return 0
	}
	defer release()

	index, err := readAppliedIndex(db)
	if err != nil {
		s.logger.Error("storage: read applied raft index failed", "err", err)
		return 0
	}
	return index
}

func readAppliedIndex(db *pebble.DB) (uint64, error) {
	v, closer, err := db.Get(appliedIndexKey)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("storage: read applied raft index: %w", err)
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: applied raft index has %d bytes, expected 8", ErrCorrupted, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// Checkpoint writes a consistent copy of the store into dir, which must not exist yet. It
// syncs the WAL first, so every batch applied before the call is durable in the store itself
// and in the copy. Pebble hard-links table files when dir is on the same file system.
// Writes wait while the checkpoint is taken.
func (s *Store) Checkpoint(dir string) error {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()

	db, err := s.writableDB()
	if err != nil {
		return err
	}
	if err := db.Checkpoint(dir, pebble.WithFlushedWAL()); err != nil {
		return fmt.Errorf("storage: checkpoint %s into %s: %w", s.dir, dir, err)
	}
	return nil
}

// RestoreCheckpoint replaces the whole contents of the store with the checkpoint in dir, as
// written by Checkpoint, and keeps serving from it. It moves dir into place, so dir must be on
// the same file system as Dir, for example a sibling of it, and is gone afterwards. Readers
// and writers wait while the directories are swapped. When the checkpoint cannot be opened,
// the old contents are put back and the error is returned.
//
// A crash during the swap can leave Dir missing or empty. A raft replica detects that at
// start, because AppliedIndex is then below its latest snapshot, and restores the snapshot
// again.
func (s *Store) RestoreCheckpoint(dir string) error {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	if s.closed {
		return ErrClosed
	}
	fsys := s.opts.FS
	info, err := fsys.Stat(dir)
	if err != nil {
		return fmt.Errorf("storage: restore checkpoint: %w", err)
	}
	if !info.IsDir() {
		return fmt.Errorf("storage: restore checkpoint: %s is not a directory", dir)
	}

	s.dbMu.Lock()
	defer s.dbMu.Unlock()
	if s.db != nil {
		if err := closePebble(s.db); err != nil {
			s.logger.Warn("storage: closing Pebble before restoring a checkpoint returned an error", "err", err)
		}
	}
	s.db, s.dbErr = nil, fmt.Errorf("%w: restoring a checkpoint", ErrUnavailable)
	s.resetCaches()
	s.visMu.Lock()
	clear(s.visibleSeq)
	s.visMu.Unlock()

	old := s.dir + ".replaced"
	if err := fsys.RemoveAll(old); err != nil {
		return s.reopenAfterRestore(fmt.Errorf("storage: remove %s: %w", old, err))
	}
	if err := fsys.Rename(s.dir, old); err != nil && !errors.Is(err, os.ErrNotExist) {
		return s.reopenAfterRestore(fmt.Errorf("storage: move %s aside: %w", s.dir, err))
	}
	if err := fsys.Rename(dir, s.dir); err != nil {
		if backErr := fsys.Rename(old, s.dir); backErr != nil {
			s.logger.Error("storage: moving the old store back failed", "err", backErr, "old", old)
		}
		return s.reopenAfterRestore(fmt.Errorf("storage: move checkpoint %s to %s: %w", dir, s.dir, err))
	}
	syncDir(fsys, s.dir)
	syncDir(fsys, filepath.Dir(s.dir))

	db, err := s.openPebble()
	if err != nil {
		// Put the old contents back so the store keeps its last good state.
		failed := s.dir + ".failed-restore"
		_ = fsys.RemoveAll(failed)
		if mvErr := errors.Join(fsys.Rename(s.dir, failed), fsys.Rename(old, s.dir)); mvErr != nil {
			s.logger.Error("storage: moving the old store back after a failed restore failed", "err", mvErr, "old", old)
		}
		return s.reopenAfterRestore(fmt.Errorf("storage: open restored checkpoint: %w", err))
	}
	s.db, s.dbErr = db, nil
	s.broken.Store(false)
	s.failure = nil
	if err := fsys.RemoveAll(old); err != nil {
		s.logger.Warn("storage: removing the replaced store failed; delete it by hand", "dir", old, "err", err)
	}
	s.logger.Info("storage: restored a checkpoint")
	return nil
}

// reopenAfterRestore opens Pebble on whatever Dir holds after a failed restore and returns
// cause. The caller holds applyMu and dbMu.
func (s *Store) reopenAfterRestore(cause error) error {
	db, err := s.openPebble()
	if err != nil {
		s.dbErr = fmt.Errorf("%w: %w", ErrUnavailable, errors.Join(cause, err))
		s.failure = s.dbErr
		s.broken.Store(true)
		return errors.Join(cause, err)
	}
	s.db, s.dbErr = db, nil
	s.broken.Store(false)
	return cause
}

// syncDir fsyncs the directory entry list of dir, so that a rename into it survives a crash.
// Errors are ignored: a missed sync only widens the window of the crash case that
// RestoreCheckpoint documents.
func syncDir(fsys vfs.FS, dir string) {
	d, err := fsys.OpenDir(dir)
	if err != nil {
		return
	}
	_ = d.Sync()
	_ = d.Close()
}
