package storage

import (
	"errors"
	"fmt"
	"math"

	"github.com/cockroachdb/pebble/v2"
)

// readDB returns the DB with dbMu held shared. The caller must call release when done.
func (s *Store) readDB() (db *pebble.DB, release func(), err error) {
	s.dbMu.RLock()
	if s.db == nil {
		err := s.dbErr
		s.dbMu.RUnlock()
		return nil, nil, err
	}
	return s.db, s.dbMu.RUnlock, nil
}

// Inbox returns up to limit entries of user's inbox with Seq > afterSeq, ascending by seq.
// limit <= 0 means no limit. Entries whose batch has not finished its fsync are left out.
func (s *Store) Inbox(user string, afterSeq uint64, limit int) ([]Entry, error) {
	if err := validateUser(user); err != nil {
		return nil, err
	}
	if afterSeq == math.MaxUint64 {
		return nil, nil
	}
	db, release, err := s.readDB()
	if err != nil {
		return nil, err
	}
	defer release()

	meta, err := readMeta(db, user)
	if err != nil {
		return nil, err
	}
	start := max(afterSeq, meta.ackedThrough) + 1
	iter, err := db.NewIter(&pebble.IterOptions{
		LowerBound: inboxKey(user, start),
		UpperBound: prefixEnd(inboxPrefix(user)),
	})
	if err != nil {
		return nil, fmt.Errorf("storage: read inbox of %q: %w", user, err)
	}
	// Read the limit after creating the iterator: an iterator that contains an uncommitted
	// batch was created after ApplyOps set the limit for it.
	visible, limited := s.visibleLimit(user)

	var entries []Entry
	for iter.First(); iter.Valid(); iter.Next() {
		seq := seqFromInboxKey(iter.Key())
		if limited && seq > visible {
			break
		}
		e, err := decodeEntry(seq, iter.Value())
		if err != nil {
			iter.Close()
			return nil, fmt.Errorf("storage: read inbox of %q, seq %d: %w", user, seq, err)
		}
		entries = append(entries, e)
		if limit > 0 && len(entries) == limit {
			break
		}
	}
	if err := errors.Join(iter.Error(), iter.Close()); err != nil {
		return nil, fmt.Errorf("storage: read inbox of %q: %w", user, err)
	}
	return entries, nil
}

func (s *Store) visibleLimit(user string) (uint64, bool) {
	s.visMu.RLock()
	defer s.visMu.RUnlock()
	seq, ok := s.visibleSeq[user]
	return seq, ok
}

// InboxLen returns the number of unacked entries in user's inbox.
//
// NOTE: the count includes appends whose batch is still being fsync'd, which Inbox leaves
// out, so the two can briefly disagree under concurrent appends.
func (s *Store) InboxLen(user string) (int, error) {
	if err := validateUser(user); err != nil {
		return 0, err
	}
	db, release, err := s.readDB()
	if err != nil {
		return 0, err
	}
	defer release()

	meta, err := readMeta(db, user)
	if err != nil {
		return 0, err
	}
	return int(meta.unacked), nil
}

// LastSeen returns user's last-seen time in unix seconds, and ok=false if none is stored.
func (s *Store) LastSeen(user string) (sec uint64, ok bool, err error) {
	if err := validateUser(user); err != nil {
		return 0, false, err
	}
	db, release, err := s.readDB()
	if err != nil {
		return 0, false, err
	}
	defer release()

	value, closer, err := db.Get(lastSeenKey(user))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("storage: read last-seen time of %q: %w", user, err)
	}
	defer closer.Close()
	sec, err = decodeLastSeen(value)
	if err != nil {
		return 0, false, fmt.Errorf("storage: user %q: %w", user, err)
	}
	return sec, true, nil
}

func readMeta(db *pebble.DB, user string) (userMeta, error) {
	value, closer, err := db.Get(metaKey(user))
	if errors.Is(err, pebble.ErrNotFound) {
		return userMeta{}, nil
	}
	if err != nil {
		return userMeta{}, fmt.Errorf("storage: read inbox metadata of %q: %w", user, err)
	}
	defer closer.Close()
	meta, err := decodeMeta(value)
	if err != nil {
		return userMeta{}, fmt.Errorf("storage: user %q: %w", user, err)
	}
	return meta, nil
}

// readCommitted calls read with the DB and returns its error, unless the batch whose commit
// is in flight marked key as written (see applier.markWritten). Then it waits for that commit
// to end and calls read again. Pebble v2.1 publishes a batch to readers before its WAL fsync
// returns (commitPipeline.publish), and a batch whose commit fails may be gone after the
// reopen, so without the wait a reader could return data that is later lost.
func (s *Store) readCommitted(key []byte, read func(db *pebble.DB) error) error {
	for {
		db, release, err := s.readDB()
		if err != nil {
			return err
		}
		err = read(db)
		// Check after the read and before release. failCommit takes dbMu before the keys of
		// a failed batch are released, so a read of that batch always finds its key in flight.
		wait := s.inFlightWait(key)
		release()
		if wait == nil {
			return err
		}
		s.waitedReads.Add(1)
		<-wait
	}
}

// holdReaders makes readCommitted wait for the end of the current commit before it returns
// any of the given keys. The caller holds applyMu and calls releaseReaders after the commit.
func (s *Store) holdReaders(keys map[string]bool) {
	if len(keys) == 0 {
		return
	}
	s.inFlightMu.Lock()
	defer s.inFlightMu.Unlock()
	s.inFlightKeys = keys
	s.inFlightDone = make(chan struct{})
}

// releaseReaders ends the hold of holdReaders and wakes the readers waiting for it.
func (s *Store) releaseReaders() {
	s.inFlightMu.Lock()
	defer s.inFlightMu.Unlock()
	if s.inFlightDone != nil {
		close(s.inFlightDone)
	}
	s.inFlightKeys, s.inFlightDone = nil, nil
}

// inFlightWait returns a channel that is closed when the commit that writes key ends, or nil
// if no commit in flight writes key.
func (s *Store) inFlightWait(key []byte) <-chan struct{} {
	s.inFlightMu.Lock()
	defer s.inFlightMu.Unlock()
	if s.inFlightKeys[string(key)] {
		return s.inFlightDone
	}
	return nil
}
