package replica

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"
)

// Key tags of the raft log database.
const (
	tagLog    = 'l' // 'l' index(8): one raft log entry, see encodeLog
	tagStable = 's' // 's' key: one value of the raft StableStore
)

// logFormatVersion is the first byte of every encoded log entry.
const logFormatVersion = 1

// LogStore is raft's LogStore and StableStore on its own Pebble instance. Every write is
// fsync'd before it returns, because raft counts an entry as persisted on this server once
// StoreLogs returns, and a vote or term once Set returns. All methods are safe for concurrent
// use.
//
// The first and last index are cached in memory, because raft reads them often and a Pebble
// scan past the range tombstones of compacted entries would cost more.
type LogStore struct {
	db     *pebble.DB
	logger *slog.Logger

	mu          sync.Mutex // guards first and last
	first, last uint64     // zero when the log is empty
}

var (
	_ raft.LogStore    = (*LogStore)(nil)
	_ raft.StableStore = (*LogStore)(nil)
)

// OpenLogStore opens or creates the raft log database in dir.
func OpenLogStore(dir string, logger *slog.Logger) (*LogStore, error) {
	if logger == nil {
		logger = slog.Default()
	}
	logger = logger.With("dir", dir)
	db, err := pebble.Open(dir, &pebble.Options{Logger: pebbleLogger{logger: logger}})
	if err != nil {
		return nil, fmt.Errorf("replica: open raft log in %s: %w", dir, err)
	}
	s := &LogStore{db: db, logger: logger}
	if err := s.loadBounds(); err != nil {
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the Pebble instance. Raft must be shut down first.
func (s *LogStore) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("replica: close raft log: %w", err)
	}
	return nil
}

func logKey(index uint64) []byte {
	key := make([]byte, 9)
	key[0] = tagLog
	binary.BigEndian.PutUint64(key[1:], index)
	return key
}

func stableKey(key []byte) []byte {
	return append([]byte{tagStable}, key...)
}

// loadBounds reads the first and last log index from Pebble.
func (s *LogStore) loadBounds() error {
	iter, err := s.db.NewIter(&pebble.IterOptions{
		LowerBound: []byte{tagLog},
		UpperBound: []byte{tagLog + 1},
	})
	if err != nil {
		return fmt.Errorf("replica: scan raft log: %w", err)
	}
	defer iter.Close()

	var first, last uint64
	if iter.First() {
		first = binary.BigEndian.Uint64(iter.Key()[1:])
		if !iter.Last() {
			return fmt.Errorf("replica: scan raft log: last entry vanished: %w", iter.Error())
		}
		last = binary.BigEndian.Uint64(iter.Key()[1:])
	}
	if err := iter.Error(); err != nil {
		return fmt.Errorf("replica: scan raft log: %w", err)
	}

	s.mu.Lock()
	s.first, s.last = first, last
	s.mu.Unlock()
	return nil
}

// FirstIndex returns the index of the oldest stored entry, or zero for an empty log.
func (s *LogStore) FirstIndex() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.first, nil
}

// LastIndex returns the index of the newest stored entry, or zero for an empty log.
func (s *LogStore) LastIndex() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last, nil
}

// GetLog reads entry index into log. It returns raft.ErrLogNotFound for an index that was
// never stored or has been deleted.
func (s *LogStore) GetLog(index uint64, log *raft.Log) error {
	v, closer, err := s.db.Get(logKey(index))
	if errors.Is(err, pebble.ErrNotFound) {
		return raft.ErrLogNotFound
	}
	if err != nil {
		return fmt.Errorf("replica: read raft log entry %d: %w", index, err)
	}
	defer closer.Close()
	if err := decodeLog(v, index, log); err != nil {
		return fmt.Errorf("replica: raft log entry %d: %w", index, err)
	}
	return nil
}

// StoreLog stores one entry durably.
func (s *LogStore) StoreLog(log *raft.Log) error {
	return s.StoreLogs([]*raft.Log{log})
}

// StoreLogs stores entries in one fsync'd batch. An entry at an existing index replaces it.
func (s *LogStore) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	batch := s.db.NewBatch()
	defer batch.Close()

	var buf []byte
	minIndex, maxIndex := uint64(math.MaxUint64), uint64(0)
	for _, l := range logs {
		buf = encodeLog(buf[:0], l)
		if err := batch.Set(logKey(l.Index), buf, nil); err != nil {
			return fmt.Errorf("replica: add raft log entry %d to batch: %w", l.Index, err)
		}
		minIndex = min(minIndex, l.Index)
		maxIndex = max(maxIndex, l.Index)
	}
	if err := batch.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("replica: write raft log entries %d-%d: %w", minIndex, maxIndex, err)
	}

	s.mu.Lock()
	if s.first == 0 || minIndex < s.first {
		s.first = minIndex
	}
	s.last = max(s.last, maxIndex)
	s.mu.Unlock()
	return nil
}

// DeleteRange deletes the entries from minIndex to maxIndex, both included. Raft calls it to
// drop a compacted prefix or a conflicting suffix.
func (s *LogStore) DeleteRange(minIndex, maxIndex uint64) error {
	if minIndex > maxIndex {
		return nil
	}
	end := []byte{tagLog + 1}
	if maxIndex < math.MaxUint64 {
		end = logKey(maxIndex + 1)
	}
	if err := s.db.DeleteRange(logKey(minIndex), end, pebble.Sync); err != nil {
		return fmt.Errorf("replica: delete raft log entries %d-%d: %w", minIndex, maxIndex, err)
	}
	return s.loadBounds()
}

// Set stores val under key durably.
func (s *LogStore) Set(key, val []byte) error {
	if err := s.db.Set(stableKey(key), val, pebble.Sync); err != nil {
		return fmt.Errorf("replica: write raft state %q: %w", key, err)
	}
	return nil
}

// Get returns the value stored under key, or nil and no error when there is none.
func (s *LogStore) Get(key []byte) ([]byte, error) {
	v, closer, err := s.db.Get(stableKey(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("replica: read raft state %q: %w", key, err)
	}
	defer closer.Close()
	return append([]byte{}, v...), nil
}

// SetUint64 stores val under key durably as 8 bytes big-endian.
func (s *LogStore) SetUint64(key []byte, val uint64) error {
	return s.Set(key, binary.BigEndian.AppendUint64(nil, val))
}

// GetUint64 returns the value stored under key by SetUint64, or zero when there is none.
func (s *LogStore) GetUint64(key []byte) (uint64, error) {
	v, err := s.Get(key)
	if err != nil || v == nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("replica: raft state %q has %d bytes, expected 8", key, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// encodeLog appends the encoding of l, without its index (the key holds it):
// version(1) term(8) type(1) appendedAtUnixNano(8) uvarint(len data) data uvarint(len ext) ext.
// A zero AppendedAt is stored as 0.
func encodeLog(buf []byte, l *raft.Log) []byte {
	buf = append(buf, logFormatVersion)
	buf = binary.BigEndian.AppendUint64(buf, l.Term)
	buf = append(buf, byte(l.Type))
	var appendedAt int64
	if !l.AppendedAt.IsZero() {
		appendedAt = l.AppendedAt.UnixNano()
	}
	buf = binary.BigEndian.AppendUint64(buf, uint64(appendedAt))
	buf = binary.AppendUvarint(buf, uint64(len(l.Data)))
	buf = append(buf, l.Data...)
	buf = binary.AppendUvarint(buf, uint64(len(l.Extensions)))
	buf = append(buf, l.Extensions...)
	return buf
}

// decodeLog fills l from v, copying the byte slices because v belongs to Pebble.
func decodeLog(v []byte, index uint64, l *raft.Log) error {
	const fixed = 1 + 8 + 1 + 8
	if len(v) < fixed {
		return fmt.Errorf("entry of %d bytes is shorter than its %d-byte header", len(v), fixed)
	}
	if v[0] != logFormatVersion {
		return fmt.Errorf("unknown entry format version %d", v[0])
	}
	term := binary.BigEndian.Uint64(v[1:9])
	typ := raft.LogType(v[9])
	appendedAt := int64(binary.BigEndian.Uint64(v[10:18]))
	rest := v[fixed:]

	data, rest, err := readBytes(rest)
	if err != nil {
		return fmt.Errorf("data: %w", err)
	}
	ext, rest, err := readBytes(rest)
	if err != nil {
		return fmt.Errorf("extensions: %w", err)
	}
	if len(rest) != 0 {
		return fmt.Errorf("%d trailing bytes", len(rest))
	}

	*l = raft.Log{Index: index, Term: term, Type: typ, Data: data, Extensions: ext}
	if appendedAt != 0 {
		l.AppendedAt = time.Unix(0, appendedAt)
	}
	return nil
}

// readBytes reads a uvarint length and that many bytes, returning a copy (nil when empty).
func readBytes(b []byte) (value, rest []byte, err error) {
	n, size := binary.Uvarint(b)
	if size <= 0 {
		return nil, nil, errors.New("invalid length")
	}
	b = b[size:]
	if n > uint64(len(b)) {
		return nil, nil, fmt.Errorf("length %d exceeds the %d bytes left", n, len(b))
	}
	if n > 0 {
		value = append([]byte{}, b[:n]...)
	}
	return value, b[n:], nil
}

// pebbleLogger routes Pebble's logs into slog. Pebble calls Fatalf when the raft log can no
// longer be written; raft cannot continue without its log, so Fatalf logs and panics.
type pebbleLogger struct {
	logger *slog.Logger
}

func (l pebbleLogger) Infof(format string, args ...any) {
	l.logger.Debug("replica: pebble: " + fmt.Sprintf(format, args...))
}

func (l pebbleLogger) Errorf(format string, args ...any) {
	l.logger.Error("replica: pebble: " + fmt.Sprintf(format, args...))
}

func (l pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.logger.Error("replica: pebble: fatal error in the raft log: " + msg)
	panic("replica: raft log: " + msg)
}
