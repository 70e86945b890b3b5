package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Backoff between attempts to reopen Pebble after a failed commit.
const (
	minReopenDelay = 50 * time.Millisecond
	maxReopenDelay = 2 * time.Second
)

// probeFileName is the file that probeWritable creates and removes in the store directory.
// Pebble ignores file names it cannot parse, so the probe never confuses it.
const probeFileName = "iris-write-probe"

// pebbleFatal is the panic value of pebbleLogger.Fatalf.
type pebbleFatal struct {
	msg   string
	cause error // the first error among Fatalf's arguments, if any
}

func (f *pebbleFatal) Error() string { return f.msg }
func (f *pebbleFatal) Unwrap() error { return f.cause }

// pebbleLogger routes Pebble's logs into slog. Pebble calls Fatalf when it considers the DB
// unusable and expects the process to exit. Fatalf panics with *pebbleFatal instead, so that
// the commit path can recover from a failed WAL write. A Fatalf on any of Pebble's own
// goroutines is not recovered and still ends the process.
type pebbleLogger struct {
	logger *slog.Logger
}

func (l pebbleLogger) Infof(format string, args ...any) {
	l.logger.Debug("pebble: " + fmt.Sprintf(format, args...))
}

func (l pebbleLogger) Errorf(format string, args ...any) {
	l.logger.Error("pebble: " + fmt.Sprintf(format, args...))
}

func (l pebbleLogger) Fatalf(format string, args ...any) {
	fatal := &pebbleFatal{msg: fmt.Sprintf(format, args...)}
	for _, arg := range args {
		if err, ok := arg.(error); ok {
			fatal.cause = err
			break
		}
	}
	l.logger.Error("pebble: fatal: " + fatal.msg)
	panic(fatal)
}

// blockCacheBytes is the size of Pebble's block cache. Pebble's default of
// 8 MiB made reads of dedup and order records go to the table files once the
// store had flushed a few memtables.
const blockCacheBytes = 128 << 20

// memTableBytes is the size of one memtable. Most inbox entries are deleted
// by their ack within seconds, and a larger memtable lets more of them meet
// their deletion before a flush writes both to a table file that compactions
// then rewrite: with Pebble's default of 4 MiB, compactions took about half
// of a core's CPU under a steady load.
const memTableBytes = 64 << 20

// bloomBitsPerKey sizes the Bloom filter of every table file. Most dedup
// lookups are for ids never seen, and without a filter each of them reads a
// block of every level that could hold the key; 10 bits per key rule out
// about 99% of them.
const bloomBitsPerKey = 10

func (s *Store) openPebble() (db *pebble.DB, err error) {
	cache := pebble.NewCache(blockCacheBytes)
	defer cache.Unref() // Open takes its own reference
	opts := &pebble.Options{
		FS:           s.opts.FS,
		Cache:        cache,
		MemTableSize: memTableBytes,
		Logger:       pebbleLogger{logger: s.logger},
		EventListener: &pebble.EventListener{
			BackgroundError: func(err error) {
				s.logger.Error("storage: Pebble background error", "err", err)
			},
		},
	}
	// Levels below L0 take the filter of the level above them.
	opts.Levels[0].FilterPolicy = bloom.FilterPolicy(bloomBitsPerKey)
	// Pebble may call Fatalf while opening, for example when it cannot write a new MANIFEST.
	defer func() {
		if r := recover(); r != nil {
			fatal, ok := r.(*pebbleFatal)
			if !ok {
				panic(r)
			}
			err = fmt.Errorf("storage: open Pebble in %s: %w", s.dir, fatal)
		}
	}()

	db, err = pebble.Open(s.dir, opts)
	switch {
	case err != nil && pebble.IsCorruptionError(err):
		// Pebble marks corruption with cockroachdb/errors, which errors.Is does not see.
		return nil, fmt.Errorf("storage: open Pebble in %s: %w: %w", s.dir, ErrCorrupted, err)
	case err != nil && (errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EWOULDBLOCK) || strings.Contains(err.Error(), "lock held by current process")):
		return nil, fmt.Errorf("storage: %s is in use by another process (its lock file is held); stop that process or choose another data dir: %w", s.dir, err)
	case err != nil:
		return nil, fmt.Errorf("storage: open Pebble in %s: %w", s.dir, err)
	}
	// Whatever Pebble holds now, after a restart, a failed commit or a
	// restored snapshot, is what the backlog count starts from.
	if err := s.countBacklog(db); err != nil {
		_ = closePebble(db)
		return nil, err
	}
	return db, nil
}

// closePebble closes db, turning a Fatalf panic into an error. Closing a DB whose WAL failed
// returns that failure again.
func closePebble(db *pebble.DB) (err error) {
	defer func() {
		if r := recover(); r != nil {
			fatal, ok := r.(*pebbleFatal)
			if !ok {
				panic(r)
			}
			err = fatal
		}
	}()
	return db.Close()
}

// probeWritable creates, syncs and removes a small file in dir, the cheapest proof that the
// directory accepts writes again.
func probeWritable(fsys vfs.FS, dir string) error {
	name := fsys.PathJoin(dir, probeFileName)
	f, err := fsys.Create(name, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	_, writeErr := f.Write([]byte{1})
	syncErr := f.Sync()
	closeErr := f.Close()
	if err := errors.Join(writeErr, syncErr, closeErr); err != nil {
		return err
	}
	return fsys.Remove(name)
}

// failCommit takes the DB out of service after a failed commit. Pebble has applied the failed
// batch to its memtable and keeps failing later writes, so the only way back is to close it
// and reopen the directory. The caller holds applyMu.
func (s *Store) failCommit(cause error) {
	s.stats.failedCommits.Add(1)
	s.logger.Error("storage: commit failed; closing Pebble and reopening it once the directory accepts writes", "err", cause)

	// Taking dbMu waits for readers, which may still see the failed batch.
	s.dbMu.Lock()
	db := s.db
	s.db, s.dbErr = nil, fmt.Errorf("%w: %w", ErrUnavailable, cause)
	s.visMu.Lock()
	clear(s.visibleSeq)
	s.visMu.Unlock()
	s.dbMu.Unlock()

	if err := closePebble(db); err != nil {
		s.logger.Warn("storage: closing Pebble after the failed commit returned an error", "err", err)
	}
	s.resetCaches()
	s.failure = cause
	s.reopenDelay = minReopenDelay
	s.reopenAt = time.Now()
	s.broken.Store(true)
}

// writableDB returns the DB for a batch, reopening it if an earlier commit failed and the
// backoff allows another attempt. The caller holds applyMu.
func (s *Store) writableDB() (*pebble.DB, error) {
	if s.closed {
		return nil, ErrClosed
	}
	if !s.broken.Load() {
		return s.db, nil
	}
	if time.Now().Before(s.reopenAt) {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, s.failure)
	}
	if err := s.reopen(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return s.db, nil
}

// reopen probes the directory and opens Pebble again. On failure it doubles the backoff. The
// caller holds applyMu.
func (s *Store) reopen() error {
	err := probeWritable(s.opts.FS, s.dir)
	var db *pebble.DB
	if err == nil {
		db, err = s.openPebble()
	}
	if err != nil {
		s.failure = err
		s.reopenAt = time.Now().Add(s.reopenDelay)
		s.logger.Log(context.Background(), reopenLogLevel(s.reopenDelay), "storage: reopening Pebble failed; will retry",
			"err", err, "retry_in", s.reopenDelay)
		s.reopenDelay = min(2*s.reopenDelay, maxReopenDelay)
		return err
	}

	s.dbMu.Lock()
	s.db, s.dbErr = db, nil
	s.dbMu.Unlock()
	s.broken.Store(false)
	s.failure = nil
	s.reopenDelay = minReopenDelay
	s.logger.Info("storage: reopened Pebble after a write failure")
	return nil
}

// reopenLogLevel returns Error for the first failed attempts and Warn once the backoff has
// reached maxReopenDelay, so a long outage logs one warning per maxReopenDelay.
func reopenLogLevel(delay time.Duration) slog.Level {
	if delay < maxReopenDelay {
		return slog.LevelError
	}
	return slog.LevelWarn
}

// retryReopen is called by the commit loop while the DB is out of service and no ops arrive,
// so that readers recover without waiting for a write.
func (s *Store) retryReopen() {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	if s.closed || !s.broken.Load() || time.Now().Before(s.reopenAt) {
		return
	}
	_ = s.reopen()
}

// currentReopenDelay returns how long the commit loop waits before its next reopen attempt.
func (s *Store) currentReopenDelay() time.Duration {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	return max(time.Until(s.reopenAt), time.Millisecond)
}
