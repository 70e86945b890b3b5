package replica

import (
	"bytes"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func openTestLogStore(t *testing.T, dir string) *LogStore {
	t.Helper()
	s, err := OpenLogStore(dir, testLogger(t))
	if err != nil {
		t.Fatalf("OpenLogStore: %v", err)
	}
	return s
}

func testLog(index uint64) *raft.Log {
	return &raft.Log{
		Index:      index,
		Term:       index/10 + 1,
		Type:       raft.LogCommand,
		Data:       []byte{byte(index), 0xAB},
		AppendedAt: time.Unix(1_700_000_000, int64(index)),
	}
}

func storeRange(t *testing.T, s *LogStore, first, last uint64) {
	t.Helper()
	var logs []*raft.Log
	for i := first; i <= last; i++ {
		logs = append(logs, testLog(i))
	}
	if err := s.StoreLogs(logs); err != nil {
		t.Fatalf("StoreLogs(%d-%d): %v", first, last, err)
	}
}

func checkBounds(t *testing.T, s *LogStore, wantFirst, wantLast uint64) {
	t.Helper()
	first, err := s.FirstIndex()
	if err != nil {
		t.Fatalf("FirstIndex: %v", err)
	}
	last, err := s.LastIndex()
	if err != nil {
		t.Fatalf("LastIndex: %v", err)
	}
	if first != wantFirst || last != wantLast {
		t.Errorf("bounds = [%d, %d], want [%d, %d]", first, last, wantFirst, wantLast)
	}
}

func TestLogStoreBoundsAfterOperations(t *testing.T) {
	tests := []struct {
		name      string
		run       func(t *testing.T, s *LogStore)
		wantFirst uint64
		wantLast  uint64
	}{
		{"empty", func(*testing.T, *LogStore) {}, 0, 0},
		{"one entry", func(t *testing.T, s *LogStore) {
			if err := s.StoreLog(testLog(1)); err != nil {
				t.Fatal(err)
			}
		}, 1, 1},
		{"batch starting after a snapshot", func(t *testing.T, s *LogStore) { storeRange(t, s, 100, 120) }, 100, 120},
		{"delete prefix", func(t *testing.T, s *LogStore) {
			storeRange(t, s, 1, 10)
			if err := s.DeleteRange(1, 4); err != nil {
				t.Fatal(err)
			}
		}, 5, 10},
		{"delete suffix", func(t *testing.T, s *LogStore) {
			storeRange(t, s, 1, 10)
			if err := s.DeleteRange(7, 10); err != nil {
				t.Fatal(err)
			}
		}, 1, 6},
		{"delete everything", func(t *testing.T, s *LogStore) {
			storeRange(t, s, 1, 10)
			if err := s.DeleteRange(1, 10); err != nil {
				t.Fatal(err)
			}
		}, 0, 0},
		{"delete beyond the ends", func(t *testing.T, s *LogStore) {
			storeRange(t, s, 5, 10)
			if err := s.DeleteRange(0, 6); err != nil {
				t.Fatal(err)
			}
			if err := s.DeleteRange(9, ^uint64(0)); err != nil {
				t.Fatal(err)
			}
		}, 7, 8},
		{"empty range is a no-op", func(t *testing.T, s *LogStore) {
			storeRange(t, s, 1, 3)
			if err := s.DeleteRange(3, 2); err != nil {
				t.Fatal(err)
			}
		}, 1, 3},
		{"store after deleting all", func(t *testing.T, s *LogStore) {
			storeRange(t, s, 1, 3)
			if err := s.DeleteRange(1, 3); err != nil {
				t.Fatal(err)
			}
			storeRange(t, s, 50, 51)
		}, 50, 51},
		{"overwrite a conflicting suffix", func(t *testing.T, s *LogStore) {
			storeRange(t, s, 1, 10)
			if err := s.DeleteRange(6, 10); err != nil {
				t.Fatal(err)
			}
			storeRange(t, s, 6, 8)
		}, 1, 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openTestLogStore(t, dir)
			tt.run(t, s)
			checkBounds(t, s, tt.wantFirst, tt.wantLast)

			// The bounds are rebuilt from disk on open.
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = openTestLogStore(t, dir)
			defer s.Close()
			checkBounds(t, s, tt.wantFirst, tt.wantLast)
		})
	}
}

func TestLogStoreGetLog(t *testing.T) {
	s := openTestLogStore(t, t.TempDir())
	defer s.Close()
	storeRange(t, s, 1, 10)
	if err := s.DeleteRange(1, 3); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		index   uint64
		wantErr error
	}{
		{0, raft.ErrLogNotFound},
		{2, raft.ErrLogNotFound},
		{3, raft.ErrLogNotFound},
		{4, nil},
		{10, nil},
		{11, raft.ErrLogNotFound},
	}
	for _, tt := range tests {
		var got raft.Log
		err := s.GetLog(tt.index, &got)
		if !errors.Is(err, tt.wantErr) {
			t.Errorf("GetLog(%d) error = %v, want %v", tt.index, err, tt.wantErr)
			continue
		}
		if err != nil {
			continue
		}
		want := testLog(tt.index)
		if got.Index != want.Index || got.Term != want.Term || got.Type != want.Type {
			t.Errorf("GetLog(%d) = index %d term %d type %v, want %d %d %v", tt.index, got.Index, got.Term, got.Type, want.Index, want.Term, want.Type)
		}
		if !bytes.Equal(got.Data, want.Data) {
			t.Errorf("GetLog(%d) data = %x, want %x", tt.index, got.Data, want.Data)
		}
		if !got.AppendedAt.Equal(want.AppendedAt) {
			t.Errorf("GetLog(%d) AppendedAt = %v, want %v", tt.index, got.AppendedAt, want.AppendedAt)
		}
	}
}

func TestLogEncodingRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		log  raft.Log
	}{
		{"zero values", raft.Log{Index: 1}},
		{"command", raft.Log{Index: 2, Term: 3, Type: raft.LogCommand, Data: []byte("ops")}},
		{"configuration with extensions", raft.Log{Index: 3, Term: 9, Type: raft.LogConfiguration, Data: []byte{1, 2}, Extensions: []byte("ext")}},
		{"appended at", raft.Log{Index: 4, Term: 1, Type: raft.LogNoop, AppendedAt: time.Unix(1_700_000_000, 123)}},
		{"large data", raft.Log{Index: 5, Term: 1, Type: raft.LogCommand, Data: bytes.Repeat([]byte{7}, 1<<20)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got raft.Log
			if err := decodeLog(encodeLog(nil, &tt.log), tt.log.Index, &got); err != nil {
				t.Fatalf("decodeLog: %v", err)
			}
			if got.Index != tt.log.Index || got.Term != tt.log.Term || got.Type != tt.log.Type {
				t.Errorf("header = %d/%d/%v, want %d/%d/%v", got.Index, got.Term, got.Type, tt.log.Index, tt.log.Term, tt.log.Type)
			}
			if !bytes.Equal(got.Data, tt.log.Data) || !bytes.Equal(got.Extensions, tt.log.Extensions) {
				t.Error("data or extensions differ after the round trip")
			}
			if !got.AppendedAt.Equal(tt.log.AppendedAt) {
				t.Errorf("AppendedAt = %v, want %v", got.AppendedAt, tt.log.AppendedAt)
			}
		})
	}
}

func TestDecodeLogRejectsDamage(t *testing.T) {
	valid := encodeLog(nil, &raft.Log{Index: 1, Term: 2, Type: raft.LogCommand, Data: []byte("abc")})
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"short header", valid[:10]},
		{"unknown version", append([]byte{99}, valid[1:]...)},
		{"truncated data", valid[:len(valid)-3]},
		{"trailing bytes", append(append([]byte{}, valid...), 0)},
	}
	for _, tt := range tests {
		var l raft.Log
		if err := decodeLog(tt.data, 1, &l); err == nil {
			t.Errorf("%s: decodeLog succeeded, want an error", tt.name)
		}
	}
}

func TestStableStore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "log")
	s := openTestLogStore(t, dir)

	if v, err := s.Get([]byte("missing")); err != nil || v != nil {
		t.Errorf("Get(missing) = %q, %v; want nil, nil", v, err)
	}
	if v, err := s.GetUint64([]byte("missing")); err != nil || v != 0 {
		t.Errorf("GetUint64(missing) = %d, %v; want 0, nil", v, err)
	}
	if err := s.Set([]byte("LastVoteCand"), []byte("n2")); err != nil {
		t.Fatal(err)
	}
	if err := s.SetUint64([]byte("CurrentTerm"), 42); err != nil {
		t.Fatal(err)
	}
	// Stable keys must not appear as log entries.
	checkBounds(t, s, 0, 0)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openTestLogStore(t, dir)
	defer s.Close()
	if v, err := s.Get([]byte("LastVoteCand")); err != nil || string(v) != "n2" {
		t.Errorf("Get(LastVoteCand) after reopen = %q, %v; want n2", v, err)
	}
	if v, err := s.GetUint64([]byte("CurrentTerm")); err != nil || v != 42 {
		t.Errorf("GetUint64(CurrentTerm) after reopen = %d, %v; want 42", v, err)
	}
	if err := s.Set([]byte("short"), []byte{1, 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetUint64([]byte("short")); err == nil {
		t.Error("GetUint64 of a 2-byte value succeeded, want an error")
	}
}
