package storage

import (
	"errors"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestMarshalOpsRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		ops  []Op
	}{
		{"no ops", []Op{}},
		{"append without dedup", []Op{{Kind: OpAppend, User: "alice", Tag: math.MaxUint64, EntryKind: 0x10, Sender: "bob", TimeMS: 1, Body: []byte{0, 1, 2}}}},
		{"append with dedup", []Op{{Kind: OpAppend, User: "alice", Tag: 7, Sender: "bob", TimeMS: 1000,
			Dedup: &DedupKey{Sender: "bob\x00", Scope: "g:1", ID: math.MaxUint64}, DedupUntilMS: math.MaxUint64}}},
		{"append with empty body", []Op{{Kind: OpAppend, User: "alice"}}},
		{"ack", []Op{{Kind: OpAck, User: "alice", Seq: 3, Tag: 99}}},
		{"ack up to", []Op{{Kind: OpAckUpTo, User: "alice", Seq: math.MaxUint64}}},
		{"set last seen", []Op{{Kind: OpSetLastSeen, User: "alice", LastSeenSec: 1_700_000_000}}},
		{"sweep", []Op{{Kind: OpSweepDedup, TimeMS: 12345}}},
		{"key upload with bundle", []Op{{Kind: OpKeyUpload, User: "alice", Bundle: &KeyBundle{
			IdentityKey: []byte{1, 2}, SignedPrekey: []byte{3}, SignedPrekeySignature: []byte{4, 5, 6},
			SignedPrekeyTimestamp: math.MaxUint64, HasTimestamp: true,
		}, Prekeys: [][]byte{{7}, {8, 9}}}}},
		{"key upload without timestamp", []Op{{Kind: OpKeyUpload, User: "alice", Bundle: &KeyBundle{IdentityKey: []byte{1}}}}},
		{"key upload of prekeys only", []Op{{Kind: OpKeyUpload, User: "alice", Prekeys: [][]byte{{1}}}}},
		{"key upload of nothing", []Op{{Kind: OpKeyUpload, User: "alice"}}},
		{"key fetch", []Op{{Kind: OpKeyFetch, User: "alice"}}},
		{"group create", []Op{{Kind: OpGroupCreate, GroupID: "g\x00:1", Name: "friends", User: "alice", TimeMS: 1_700_000_000_000}}},
		{"group add", []Op{{Kind: OpGroupAdd, GroupID: "g1", User: "bob", By: "alice"}}},
		{"group leave", []Op{{Kind: OpGroupLeave, GroupID: "g1", User: "bob"}}},
		{"mixed", []Op{
			{Kind: OpAppend, User: "a", Tag: 1, Body: []byte("x")},
			{Kind: OpAck, User: "a", Seq: 1, Tag: 1},
			{Kind: OpSweepDedup, TimeMS: 5},
			{Kind: OpGroupAdd, GroupID: "g", User: "b", By: "a"},
			{Kind: OpKeyFetch, User: "a"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, err := MarshalOps(tt.ops)
			if err != nil {
				t.Fatalf("MarshalOps: %v", err)
			}
			got, err := UnmarshalOps(data)
			if err != nil {
				t.Fatalf("UnmarshalOps: %v", err)
			}
			if !reflect.DeepEqual(got, tt.ops) {
				t.Errorf("round trip = %+v, want %+v", got, tt.ops)
			}
		})
	}
}

func TestMarshalOpsRejectsUnknownKind(t *testing.T) {
	_, err := MarshalOps([]Op{{Kind: OpKind(0)}})
	if !errors.Is(err, ErrInvalidRequest) {
		t.Errorf("MarshalOps of kind 0: err = %v, want ErrInvalidRequest", err)
	}
}

func TestUnmarshalOpsRejectsBadInput(t *testing.T) {
	valid, err := MarshalOps([]Op{
		{Kind: OpAppend, User: "alice", Tag: 7, Sender: "bob", TimeMS: 1000, Body: []byte("hello"),
			Dedup: &DedupKey{Sender: "bob", Scope: "alice", ID: 1}, DedupUntilMS: 2000},
		{Kind: OpAck, User: "alice", Seq: 1, Tag: 7},
		{Kind: OpKeyUpload, User: "alice", Bundle: &KeyBundle{IdentityKey: []byte{1}, HasTimestamp: true}, Prekeys: [][]byte{{2}, {3}}},
		{Kind: OpKeyFetch, User: "alice"},
		{Kind: OpGroupCreate, GroupID: "g", Name: "n", User: "alice", TimeMS: 9},
		{Kind: OpGroupAdd, GroupID: "g", User: "bob", By: "alice"},
		{Kind: OpGroupLeave, GroupID: "g", User: "bob"},
	})
	if err != nil {
		t.Fatal(err)
	}
	// Every strict prefix of a valid encoding is truncated and must be rejected.
	for n := range len(valid) {
		if _, err := UnmarshalOps(valid[:n]); !errors.Is(err, ErrBadOps) {
			t.Errorf("prefix of %d of %d bytes: err = %v, want ErrBadOps", n, len(valid), err)
		}
	}

	appendOp := []byte{opsFormatVersion, 1, byte(OpAppend),
		1, 'a', // user
		0,                      // entry kind
		0,                      // sender
		0,                      // time
		0, 0, 0, 0, 0, 0, 0, 0, // tag
		0, // body
	}
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"wrong version", []byte{2, 0}, "format version 2"},
		{"count beyond data", []byte{opsFormatVersion, 200, 1}, "count 200"},
		{"unknown kind", []byte{opsFormatVersion, 1, 77}, "unknown op kind 77"},
		{"unknown append flag", append(slices.Clone(appendOp), 4), "append flags 0x4"},
		{"trailing bytes", append(slices.Clone(valid), 0), "1 trailing bytes"},
		{"string longer than data", []byte{opsFormatVersion, 1, byte(OpAckUpTo), 50, 'a'}, "length 50"},
		{"unknown key upload flag", []byte{opsFormatVersion, 1, byte(OpKeyUpload), 1, 'a', 4, 0}, "key upload flags 0x4"},
		{"timestamp flag without bundle", []byte{opsFormatVersion, 1, byte(OpKeyUpload), 1, 'a', 2, 0}, "key upload flags 0x2"},
		{"prekey count beyond data", []byte{opsFormatVersion, 1, byte(OpKeyUpload), 1, 'a', 0, 9, 1}, "prekey count 9"},
		{"prekey longer than data", []byte{opsFormatVersion, 1, byte(OpKeyUpload), 1, 'a', 0, 1, 5, 1}, "length 5"},
		{"group id longer than data", []byte{opsFormatVersion, 1, byte(OpGroupLeave), 9, 'g'}, "length 9"},
		{"group create without time", []byte{opsFormatVersion, 1, byte(OpGroupCreate), 1, 'g', 0, 1, 'a'}, "truncated or overlong uvarint"},
		{"group add without requester", []byte{opsFormatVersion, 1, byte(OpGroupAdd), 1, 'g', 1, 'b'}, "truncated or overlong uvarint"},
	}
	if _, err := UnmarshalOps(append(slices.Clone(appendOp), 0)); err != nil {
		t.Fatalf("the base of the dedup flag case does not decode: %v", err)
	}
	// The key upload cases differ from this valid op in one byte.
	if _, err := UnmarshalOps([]byte{opsFormatVersion, 1, byte(OpKeyUpload), 1, 'a', 0, 0}); err != nil {
		t.Fatalf("the base of the key upload cases does not decode: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := UnmarshalOps(tt.data)
			if !errors.Is(err, ErrBadOps) {
				t.Fatalf("UnmarshalOps(%x): err = %v, want ErrBadOps", tt.data, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("UnmarshalOps(%x): error %q does not mention %q", tt.data, err, tt.want)
			}
		})
	}
}

func FuzzUnmarshalOps(f *testing.F) {
	seed, err := MarshalOps([]Op{
		{Kind: OpAppend, User: "alice", Tag: 7, Body: []byte("x"), Dedup: &DedupKey{Sender: "b", Scope: "s", ID: 1}},
		{Kind: OpAckUpTo, User: "alice", Seq: 3},
		{Kind: OpKeyUpload, User: "alice", Bundle: &KeyBundle{IdentityKey: []byte{1}}, Prekeys: [][]byte{{2}}},
		{Kind: OpGroupCreate, GroupID: "g", Name: "n", User: "alice", TimeMS: 9},
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte{opsFormatVersion, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		ops, err := UnmarshalOps(data)
		if err != nil {
			if !errors.Is(err, ErrBadOps) {
				t.Fatalf("error %v does not wrap ErrBadOps", err)
			}
			return
		}
		// Whatever decodes must encode and decode to the same ops.
		again, err := MarshalOps(ops)
		if err != nil {
			t.Fatalf("MarshalOps of decoded ops: %v", err)
		}
		back, err := UnmarshalOps(again)
		if err != nil {
			t.Fatalf("UnmarshalOps of re-encoded ops: %v", err)
		}
		if !reflect.DeepEqual(back, ops) {
			t.Fatalf("re-encoded ops differ: %+v vs %+v", back, ops)
		}
	})
}
