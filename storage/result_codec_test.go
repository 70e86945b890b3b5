package storage

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// allSentinels lists every storage sentinel that MarshalResults gives a code.
var allSentinels = []error{
	ErrClosed, ErrInboxFull, ErrOutOfOrder, ErrInvalidRequest, ErrCommitFailed, ErrUnavailable,
	ErrCorrupted, ErrNotFound, ErrPoolFull, ErrExists, ErrTooManyGroups, ErrNotAdmin,
	ErrGroupFull, ErrNotMember,
}

// roundTripResults encodes and decodes results and fails the test on any error.
func roundTripResults(t *testing.T, results []Result) []Result {
	t.Helper()
	data, err := MarshalResults(results)
	if err != nil {
		t.Fatalf("MarshalResults: %v", err)
	}
	got, err := UnmarshalResults(data)
	if err != nil {
		t.Fatalf("UnmarshalResults(%x): %v", data, err)
	}
	return got
}

// checkSameErr checks that got, an error decoded by UnmarshalResults, has the message of the
// encoded error want and wraps the same storage sentinels. When want wraps none of them, got
// must wrap ErrRemote.
func checkSameErr(t *testing.T, label string, got, want error) {
	t.Helper()
	if (got == nil) != (want == nil) {
		t.Errorf("%s: Err = %v, want %v", label, got, want)
		return
	}
	if got == nil {
		return
	}
	if got.Error() != want.Error() {
		t.Errorf("%s: Err message = %q, want %q", label, got.Error(), want.Error())
	}
	wantRemote := true
	for _, sentinel := range allSentinels {
		if errors.Is(want, sentinel) {
			wantRemote = false
		}
		if errors.Is(got, sentinel) != errors.Is(want, sentinel) {
			t.Errorf("%s: errors.Is(%q, %q) = %t, want %t", label, got, sentinel, errors.Is(got, sentinel), errors.Is(want, sentinel))
		}
	}
	if errors.Is(got, ErrRemote) != wantRemote {
		t.Errorf("%s: errors.Is(%q, ErrRemote) = %t, want %t", label, got, errors.Is(got, ErrRemote), wantRemote)
	}
}

// checkSameResults compares Err with checkSameErr and every other field with reflect.DeepEqual,
// which distinguishes nil and empty slices.
func checkSameResults(t *testing.T, got, want []Result) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("decoded %d results, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		checkSameErr(t, fmt.Sprintf("result %d", i), g.Err, w.Err)
		g.Err, w.Err = nil, nil
		if !reflect.DeepEqual(g, w) {
			t.Errorf("result %d = %s, want %s", i, describeResult(g), describeResult(w))
		}
	}
}

// describeResult formats r with the pointed-to bundle and group and with nil slices marked.
func describeResult(r Result) string {
	return fmt.Sprintf("{Seq:%d Tag:%d Duplicate:%t Count:%d Bundle:%s Prekey:%s Group:%s Err:%v}",
		r.Seq, r.Tag, r.Duplicate, r.Count, describeBundle(r.Bundle), describeBytes(r.Prekey), describeGroup(r.Group), r.Err)
}

func describeBundle(b *KeyBundle) string {
	if b == nil {
		return "nil"
	}
	return fmt.Sprintf("&{IdentityKey:%s SignedPrekey:%s SignedPrekeySignature:%s SignedPrekeyTimestamp:%d HasTimestamp:%t}",
		describeBytes(b.IdentityKey), describeBytes(b.SignedPrekey), describeBytes(b.SignedPrekeySignature), b.SignedPrekeyTimestamp, b.HasTimestamp)
}

func describeGroup(g *Group) string {
	if g == nil {
		return "nil"
	}
	return fmt.Sprintf("&{ID:%q Name:%q Admins:%s Members:%s CreatedMS:%d}", g.ID, g.Name, describeStrings(g.Admins), describeStrings(g.Members), g.CreatedMS)
}

func describeBytes(b []byte) string {
	if b == nil {
		return "nil"
	}
	return fmt.Sprintf("%x(len %d)", b, len(b))
}

func describeStrings(list []string) string {
	if list == nil {
		return "nil"
	}
	return fmt.Sprintf("%q", list)
}

func TestMarshalResultsRoundTrip(t *testing.T) {
	fullBundle := &KeyBundle{
		IdentityKey: []byte{1, 2}, SignedPrekey: []byte{3}, SignedPrekeySignature: []byte{4, 5, 6},
		SignedPrekeyTimestamp: math.MaxUint64, HasTimestamp: true,
	}
	fullGroup := &Group{ID: "g\x00:1", Name: "friends", Admins: []string{"alice", "bob"},
		Members: []string{"alice", "bob", "carol"}, CreatedMS: 1_700_000_000_000}

	tests := []struct {
		name    string
		results []Result
		// want is the decoded form when it differs from results because of a documented
		// normalisation; nil means results itself.
		want []Result
	}{
		{name: "no results", results: []Result{}},
		{name: "zero result", results: []Result{{}}},
		{name: "append", results: []Result{{Seq: 42, Tag: math.MaxUint64}}},
		{name: "seq without tag", results: []Result{{Seq: math.MaxUint64}}},
		{name: "tag without seq", results: []Result{{Tag: 1}}},
		{name: "duplicate append", results: []Result{{Seq: 3, Tag: 9, Duplicate: true}}},
		{name: "duplicate alone", results: []Result{{Duplicate: true}}},
		{name: "count", results: []Result{{Count: 7}}},
		{name: "max count", results: []Result{{Count: math.MaxInt}}},
		{name: "min count", results: []Result{{Count: math.MinInt}}},
		{name: "negative count", results: []Result{{Count: -1}}},
		{name: "bundle with timestamp", results: []Result{{Count: 2, Bundle: fullBundle}}},
		{name: "bundle without timestamp", results: []Result{{Bundle: &KeyBundle{IdentityKey: []byte{1}, SignedPrekey: []byte{2}, SignedPrekeySignature: []byte{3}}}}},
		{name: "bundle with unused timestamp", results: []Result{{Bundle: &KeyBundle{IdentityKey: []byte{1}, SignedPrekeyTimestamp: 77}}}},
		{name: "bundle with timestamp zero", results: []Result{{Bundle: &KeyBundle{IdentityKey: []byte{1}, HasTimestamp: true}}}},
		{name: "bundle of nil keys", results: []Result{{Bundle: &KeyBundle{}}}},
		{
			name:    "bundle of empty keys",
			results: []Result{{Bundle: &KeyBundle{IdentityKey: []byte{}, SignedPrekey: []byte{}, SignedPrekeySignature: []byte{}}}},
			want:    []Result{{Bundle: &KeyBundle{}}},
		},
		{name: "nil prekey", results: []Result{{Count: 0, Bundle: fullBundle, Prekey: nil}}},
		{name: "empty prekey", results: []Result{{Prekey: []byte{}}}},
		{name: "prekey", results: []Result{{Count: 4, Bundle: fullBundle, Prekey: []byte{0, 9, 8}}}},
		{name: "prekey without bundle", results: []Result{{Prekey: []byte{1}}}},
		{name: "group", results: []Result{{Group: fullGroup}}},
		{name: "group of nil lists", results: []Result{{Group: &Group{ID: "g", CreatedMS: 1}}}},
		{
			name:    "group of empty lists",
			results: []Result{{Group: &Group{ID: "g", Name: "n", Admins: []string{}, Members: []string{}}}},
			want:    []Result{{Group: &Group{ID: "g", Name: "n"}}},
		},
		{name: "group with empty names", results: []Result{{Group: &Group{Admins: []string{""}, Members: []string{"", "x"}}}}},
		{name: "duplicate group add", results: []Result{{Duplicate: true, Group: fullGroup}}},
		{name: "sentinel error", results: []Result{{Err: ErrInboxFull}}},
		{name: "wrapped sentinel error", results: []Result{{Err: fmt.Errorf("%w: user %q", ErrInvalidRequest, "a\x00b")}}},
		{name: "two sentinels", results: []Result{{Err: fmt.Errorf("%w: %w", ErrUnavailable, ErrCorrupted)}}},
		{name: "joined sentinels", results: []Result{{Err: errors.Join(ErrNotAdmin, ErrGroupFull)}}},
		{name: "unknown error", results: []Result{{Err: errors.New("disk on fire")}}},
		{name: "empty error message", results: []Result{{Err: errors.New("")}}},
		{name: "error with other fields", results: []Result{{Seq: 1, Tag: 2, Duplicate: true, Count: 3, Bundle: fullBundle, Prekey: []byte{4}, Group: fullGroup, Err: ErrNotMember}}},
		{name: "mixed", results: []Result{
			{Seq: 1, Tag: 11},
			{Seq: 1, Tag: 11, Duplicate: true},
			{Err: fmt.Errorf("op 2: %w", ErrOutOfOrder)},
			{Count: 5},
			{Count: 4, Bundle: fullBundle, Prekey: []byte{7}},
			{Group: fullGroup},
			{},
			{Err: errors.New("pebble: boom")},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := tt.want
			if want == nil {
				want = tt.results
			}
			checkSameResults(t, roundTripResults(t, tt.results), want)
		})
	}
}

func TestMarshalResultsNilSlice(t *testing.T) {
	got := roundTripResults(t, nil)
	if got == nil || len(got) != 0 {
		t.Errorf("round trip of nil results = %#v, want an empty non-nil slice", got)
	}
}

func TestMarshalResultsSentinels(t *testing.T) {
	for _, sentinel := range allSentinels {
		t.Run(sentinel.Error(), func(t *testing.T) {
			wrapped := fmt.Errorf("op 3 of user %q: %w", "alice", sentinel)
			got := roundTripResults(t, []Result{{Err: sentinel}, {Err: wrapped}})

			if got[0].Err != sentinel {
				t.Errorf("bare sentinel decodes as %#v, want the sentinel itself", got[0].Err)
			}
			checkSameErr(t, "bare sentinel", got[0].Err, sentinel)
			checkSameErr(t, "wrapped sentinel", got[1].Err, wrapped)
			if !errors.Is(got[1].Err, sentinel) {
				t.Errorf("errors.Is(%q, %q) = false after the round trip", got[1].Err, sentinel)
			}
			if errors.Is(got[1].Err, ErrRemote) {
				t.Errorf("decoded %q wraps ErrRemote, want only %q", got[1].Err, sentinel)
			}
		})
	}
}

// TestResultErrorCodesAreFixed pins the wire codes, which must not change between versions.
func TestResultErrorCodesAreFixed(t *testing.T) {
	want := map[error]uint64{
		ErrClosed: 1, ErrInboxFull: 2, ErrOutOfOrder: 3, ErrInvalidRequest: 4, ErrCommitFailed: 5,
		ErrUnavailable: 6, ErrCorrupted: 7, ErrNotFound: 8, ErrPoolFull: 9, ErrExists: 10,
		ErrTooManyGroups: 11, ErrNotAdmin: 12, ErrGroupFull: 13, ErrNotMember: 14,
	}
	if len(sentinelCodes) != len(want) {
		t.Errorf("sentinelCodes has %d entries, want %d", len(sentinelCodes), len(want))
	}
	seen := map[uint64]bool{}
	for _, sc := range sentinelCodes {
		if seen[sc.code] {
			t.Errorf("code %d is used twice", sc.code)
		}
		seen[sc.code] = true
		if code, ok := want[sc.sentinel]; !ok || code != sc.code {
			t.Errorf("%q has code %d, want %d", sc.sentinel, sc.code, code)
		}
	}

	// The encoding of one result with a wrapped ErrNotMember, byte by byte.
	data, err := MarshalResults([]Result{{Err: fmt.Errorf("x: %w", ErrNotMember)}})
	if err != nil {
		t.Fatal(err)
	}
	message := "x: " + ErrNotMember.Error()
	golden := append([]byte{resultsFormatVersion, 1, resultHasErr, 0, 1, 14, byte(len(message))}, message...)
	if !slices.Equal(data, golden) {
		t.Errorf("encoding = %x, want %x", data, golden)
	}
}

func TestUnmarshalResultsUnknownError(t *testing.T) {
	original := fmt.Errorf("apply: %w", errors.New("pebble: disk full"))
	got := roundTripResults(t, []Result{{Err: original}})
	err := got[0].Err
	if !errors.Is(err, ErrRemote) {
		t.Errorf("errors.Is(%q, ErrRemote) = false", err)
	}
	if err.Error() != original.Error() {
		t.Errorf("message = %q, want %q", err.Error(), original.Error())
	}
	for _, sentinel := range allSentinels {
		if errors.Is(err, sentinel) {
			t.Errorf("decoded unknown error wraps %q", sentinel)
		}
	}

	// A decoded ErrRemote error that is sent on again stays ErrRemote.
	again := roundTripResults(t, got)
	checkSameErr(t, "second round trip", again[0].Err, err)
}

func TestUnmarshalResultsUnknownCode(t *testing.T) {
	// Code 999 may be a sentinel of a newer version. Alone it decodes as ErrRemote. Beside a
	// known code it is dropped.
	only := []byte{resultsFormatVersion, 1, resultHasErr, 0, 1, 0xe7, 0x07, 3, 'n', 'e', 'w'}
	results, err := UnmarshalResults(only)
	if err != nil {
		t.Fatalf("UnmarshalResults of an unknown code: %v", err)
	}
	if got := results[0].Err; !errors.Is(got, ErrRemote) || got.Error() != "new" {
		t.Errorf("unknown code decodes as %q (ErrRemote %t), want %q wrapping ErrRemote", got, errors.Is(got, ErrRemote), "new")
	}

	mixed := []byte{resultsFormatVersion, 1, resultHasErr, 0, 2, 0xe7, 0x07, errCodeNotFound, 3, 'n', 'e', 'w'}
	results, err = UnmarshalResults(mixed)
	if err != nil {
		t.Fatalf("UnmarshalResults of an unknown and a known code: %v", err)
	}
	if got := results[0].Err; !errors.Is(got, ErrNotFound) || errors.Is(got, ErrRemote) {
		t.Errorf("unknown code beside ErrNotFound decodes as %q, want it to wrap ErrNotFound and not ErrRemote", got)
	}
}

func TestUnmarshalResultsRejectsBadInput(t *testing.T) {
	valid, err := MarshalResults([]Result{
		{Seq: 1, Tag: 2, Duplicate: true, Count: -3},
		{Count: 4, Bundle: &KeyBundle{IdentityKey: []byte{1}, SignedPrekey: []byte{2}, SignedPrekeySignature: []byte{3}, SignedPrekeyTimestamp: 300, HasTimestamp: true}, Prekey: []byte{}},
		{Prekey: []byte{5, 6}},
		{Group: &Group{ID: "g", Name: "n", Admins: []string{"a"}, Members: []string{"a", "b"}, CreatedMS: 1000}},
		{Err: fmt.Errorf("%w: %w", ErrUnavailable, ErrCorrupted)},
		{Err: errors.New("other")},
	})
	if err != nil {
		t.Fatal(err)
	}
	// Every strict prefix of a valid encoding is truncated and must be rejected.
	for n := range len(valid) {
		if _, err := UnmarshalResults(valid[:n]); !errors.Is(err, ErrBadResults) {
			t.Errorf("prefix of %d of %d bytes: err = %v, want ErrBadResults", n, len(valid), err)
		}
	}

	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "unexpected end of data"},
		{"wrong version", []byte{2, 0}, "format version 2"},
		{"count beyond data", []byte{resultsFormatVersion, 2, 0, 0, 0}, "result count 2"},
		{"huge count", []byte{resultsFormatVersion, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, "result count"},
		{"overlong count", []byte{resultsFormatVersion, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, "truncated or overlong uvarint"},
		{"unknown flag", []byte{resultsFormatVersion, 1, 0x80, 0}, "result flags 0x80"},
		{"timestamp flag without bundle", []byte{resultsFormatVersion, 1, resultHasTimestamp, 0}, "result flags 0x8"},
		{"overlong result count", []byte{resultsFormatVersion, 1, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, "truncated or overlong varint"},
		{"tag cut short", []byte{resultsFormatVersion, 1, resultHasSeqTag, 1, 0, 0, 0, 0, 0, 0, 0}, "unexpected end of data"},
		{"prekey longer than data", []byte{resultsFormatVersion, 1, resultHasPrekey, 0, 5, 1}, "length 5"},
		{"identity key longer than data", []byte{resultsFormatVersion, 1, resultHasBundle, 0, 9, 1, 0, 0, 0}, "length 9"},
		{"group id longer than data", []byte{resultsFormatVersion, 1, resultHasGroup, 0, 7, 'g', 0, 0, 0, 0}, "length 7"},
		{"admin count beyond data", []byte{resultsFormatVersion, 1, resultHasGroup, 0, 0, 0, 0, 9, 0, 0}, "admin count 9"},
		{"member count beyond data", []byte{resultsFormatVersion, 1, resultHasGroup, 0, 0, 0, 0, 0, 9, 0}, "member count 9"},
		{"error code count beyond data", []byte{resultsFormatVersion, 1, resultHasErr, 0, 3, 1, 0}, "error code count 3"},
		{"error message longer than data", []byte{resultsFormatVersion, 1, resultHasErr, 0, 0, 4, 'x'}, "length 4"},
		{"trailing bytes", append(slices.Clone(valid), 0), "1 trailing bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := UnmarshalResults(tt.data)
			if !errors.Is(err, ErrBadResults) {
				t.Fatalf("UnmarshalResults(%x): err = %v, want ErrBadResults", tt.data, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("UnmarshalResults(%x): error %q does not mention %q", tt.data, err, tt.want)
			}
		})
	}
}

func FuzzUnmarshalResults(f *testing.F) {
	seed, err := MarshalResults([]Result{
		{Seq: 1, Tag: 2, Duplicate: true},
		{Count: 3, Bundle: &KeyBundle{IdentityKey: []byte{1}, HasTimestamp: true, SignedPrekeyTimestamp: 4}, Prekey: []byte{}},
		{Group: &Group{ID: "g", Name: "n", Admins: []string{"a"}, Members: []string{"a", "b"}, CreatedMS: 9}},
		{Err: fmt.Errorf("%w: %w", ErrUnavailable, ErrCorrupted)},
		{Err: errors.New("other")},
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte{resultsFormatVersion, 0})
	f.Add([]byte{resultsFormatVersion, 1, resultHasErr, 0, 1, 0xe7, 0x07, 1, 'x'})
	f.Fuzz(func(t *testing.T, data []byte) {
		results, err := UnmarshalResults(data)
		if err != nil {
			if !errors.Is(err, ErrBadResults) {
				t.Fatalf("error %v does not wrap ErrBadResults", err)
			}
			return
		}
		// Whatever decodes must encode and decode to the same results.
		again, err := MarshalResults(results)
		if err != nil {
			t.Fatalf("MarshalResults of decoded results: %v", err)
		}
		back, err := UnmarshalResults(again)
		if err != nil {
			t.Fatalf("UnmarshalResults of re-encoded results: %v", err)
		}
		checkSameResults(t, back, results)
	})
}
