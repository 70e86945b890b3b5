package storage

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
)

func testBundle(n int) *KeyBundle {
	return &KeyBundle{
		IdentityKey:           bytes.Repeat([]byte{byte(n)}, 32),
		SignedPrekey:          bytes.Repeat([]byte{byte(n + 1)}, 32),
		SignedPrekeySignature: bytes.Repeat([]byte{byte(n + 2)}, 64),
		SignedPrekeyTimestamp: uint64(1_700_000_000 + n),
		HasTimestamp:          true,
	}
}

// prekeys returns count distinct prekeys named after prefix.
func prekeys(prefix string, count int) [][]byte {
	keys := make([][]byte, count)
	for i := range keys {
		keys[i] = []byte(fmt.Sprintf("%s-%03d", prefix, i))
	}
	return keys
}

func mustDo(t testing.TB, s *Store, op Op) Result {
	t.Helper()
	r, err := s.DoSync(op)
	if err != nil {
		t.Fatalf("%s (user %q, group %q): %v", op.Kind, op.User, op.GroupID, err)
	}
	return r
}

func TestKeyUploadAndFetch(t *testing.T) {
	s := openTestStore(t, Options{})
	bundle := testBundle(1)

	r := mustDo(t, s, Op{Kind: OpKeyUpload, User: "alice", Bundle: bundle, Prekeys: prekeys("a", 3)})
	if r.Count != 3 {
		t.Errorf("upload: Count = %d, want 3", r.Count)
	}
	got, count, err := s.KeyBundle("alice")
	if err != nil {
		t.Fatalf("KeyBundle: %v", err)
	}
	if !reflect.DeepEqual(got, bundle) {
		t.Errorf("KeyBundle = %+v, want %+v", got, bundle)
	}
	if count != 3 {
		t.Errorf("KeyBundle pool size = %d, want 3", count)
	}

	for i, want := range prekeys("a", 3) {
		r := mustDo(t, s, Op{Kind: OpKeyFetch, User: "alice"})
		if !bytes.Equal(r.Prekey, want) {
			t.Errorf("fetch %d: Prekey = %q, want the oldest %q", i, r.Prekey, want)
		}
		if r.Count != 2-i {
			t.Errorf("fetch %d: Count = %d, want %d", i, r.Count, 2-i)
		}
		if !reflect.DeepEqual(r.Bundle, bundle) {
			t.Errorf("fetch %d: Bundle = %+v, want %+v", i, r.Bundle, bundle)
		}
	}

	r = mustDo(t, s, Op{Kind: OpKeyFetch, User: "alice"})
	if r.Prekey != nil || r.Count != 0 {
		t.Errorf("fetch from an empty pool: Prekey = %q, Count = %d, want nil and 0", r.Prekey, r.Count)
	}
	if !reflect.DeepEqual(r.Bundle, bundle) {
		t.Errorf("fetch from an empty pool: Bundle = %+v, want %+v", r.Bundle, bundle)
	}
}

func TestKeyUploadPrekeysOnlyAppends(t *testing.T) {
	s := openTestStore(t, Options{})
	mustDo(t, s, Op{Kind: OpKeyUpload, User: "alice", Bundle: testBundle(1), Prekeys: prekeys("old", 2)})

	r := mustDo(t, s, Op{Kind: OpKeyUpload, User: "alice", Prekeys: prekeys("new", 2)})
	if r.Count != 4 {
		t.Errorf("prekeys-only upload: Count = %d, want 4", r.Count)
	}
	want := append(prekeys("old", 2), prekeys("new", 2)...)
	for i, w := range want {
		r := mustDo(t, s, Op{Kind: OpKeyFetch, User: "alice"})
		if !bytes.Equal(r.Prekey, w) {
			t.Errorf("fetch %d: Prekey = %q, want %q", i, r.Prekey, w)
		}
	}
}

func TestKeyUploadNewBundleKeepsPool(t *testing.T) {
	s := openTestStore(t, Options{})
	mustDo(t, s, Op{Kind: OpKeyUpload, User: "alice", Bundle: testBundle(1), Prekeys: prekeys("a", 2)})
	mustDo(t, s, Op{Kind: OpKeyFetch, User: "alice"})

	replacement := testBundle(7)
	replacement.HasTimestamp = false
	replacement.SignedPrekeyTimestamp = 0
	r := mustDo(t, s, Op{Kind: OpKeyUpload, User: "alice", Bundle: replacement})
	if r.Count != 1 {
		t.Errorf("bundle-only upload: Count = %d, want the 1 prekey left", r.Count)
	}

	r = mustDo(t, s, Op{Kind: OpKeyFetch, User: "alice"})
	if !reflect.DeepEqual(r.Bundle, replacement) {
		t.Errorf("fetch after replacement: Bundle = %+v, want %+v", r.Bundle, replacement)
	}
	if want := prekeys("a", 2)[1]; !bytes.Equal(r.Prekey, want) {
		t.Errorf("fetch after replacement: Prekey = %q, want the kept %q", r.Prekey, want)
	}
}

func TestKeyOpsWithoutBundle(t *testing.T) {
	s := openTestStore(t, Options{})

	_, err := s.DoSync(Op{Kind: OpKeyUpload, User: "alice", Prekeys: prekeys("a", 1)})
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("prekeys-only upload without a bundle: err = %v, want ErrNotFound", err)
	}
	_, err = s.DoSync(Op{Kind: OpKeyFetch, User: "alice"})
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("fetch without a bundle: err = %v, want ErrNotFound", err)
	}
	_, _, err = s.KeyBundle("alice")
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("KeyBundle without a bundle: err = %v, want ErrNotFound", err)
	}
	if hasKey(t, s, prekeyKey("alice", 0)) {
		t.Errorf("the rejected upload stored a prekey")
	}
}

func TestKeyUploadPoolFull(t *testing.T) {
	s := openTestStore(t, Options{MaxPrekeys: 5})
	first := testBundle(1)
	mustDo(t, s, Op{Kind: OpKeyUpload, User: "alice", Bundle: first, Prekeys: prekeys("a", 4)})

	r, err := s.DoSync(Op{Kind: OpKeyUpload, User: "alice", Bundle: testBundle(2), Prekeys: prekeys("b", 2)})
	if !errors.Is(err, ErrPoolFull) {
		t.Fatalf("upload past the limit: err = %v, want ErrPoolFull", err)
	}
	if r.Count != 4 {
		t.Errorf("rejected upload: Count = %d, want the unchanged 4", r.Count)
	}
	got, count, err := s.KeyBundle("alice")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, first) || count != 4 {
		t.Errorf("after the rejected upload: bundle %+v with %d prekeys, want the first bundle with 4", got, count)
	}

	r = mustDo(t, s, Op{Kind: OpKeyUpload, User: "alice", Prekeys: prekeys("c", 1)})
	if r.Count != 5 {
		t.Errorf("upload up to the limit: Count = %d, want 5", r.Count)
	}
}

func TestKeyUploadRejectsInvalidKeys(t *testing.T) {
	s := openTestStore(t, Options{})
	huge := make([]byte, maxKeyLen+1)
	tests := []struct {
		name string
		op   Op
	}{
		{"empty prekey", Op{Kind: OpKeyUpload, User: "alice", Bundle: testBundle(1), Prekeys: [][]byte{[]byte("x"), {}}}},
		{"prekey too long", Op{Kind: OpKeyUpload, User: "alice", Bundle: testBundle(1), Prekeys: [][]byte{huge}}},
		{"identity key too long", Op{Kind: OpKeyUpload, User: "alice", Bundle: &KeyBundle{IdentityKey: huge}}},
		{"invalid user", Op{Kind: OpKeyUpload, User: "a:b", Bundle: testBundle(1)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s.DoSync(tt.op); !errors.Is(err, ErrInvalidRequest) {
				t.Errorf("err = %v, want ErrInvalidRequest", err)
			}
		})
	}
	if _, _, err := s.KeyBundle("alice"); !errors.Is(err, ErrNotFound) {
		t.Errorf("KeyBundle after rejected uploads: err = %v, want ErrNotFound", err)
	}
}

func TestKeyFetchInOneBatch(t *testing.T) {
	s := openTestStore(t, Options{})
	mustDo(t, s, Op{Kind: OpKeyUpload, User: "alice", Bundle: testBundle(1), Prekeys: prekeys("a", 2)})

	results := mustApply(t, s,
		Op{Kind: OpKeyFetch, User: "alice"},
		Op{Kind: OpKeyFetch, User: "alice"},
		Op{Kind: OpKeyFetch, User: "alice"},
	)
	want := prekeys("a", 2)
	for i := range want {
		if !bytes.Equal(results[i].Prekey, want[i]) {
			t.Errorf("fetch %d: Prekey = %q, want %q", i, results[i].Prekey, want[i])
		}
	}
	if results[2].Prekey != nil || results[2].Count != 0 {
		t.Errorf("third fetch: Prekey = %q, Count = %d, want nil and 0", results[2].Prekey, results[2].Count)
	}
}

// TestKeyFetchConcurrent runs more fetches than the pool holds, concurrently, and expects each
// prekey to be handed out exactly once.
func TestKeyFetchConcurrent(t *testing.T) {
	const poolSize, fetches = 60, 100
	s := openTestStore(t, Options{})
	mustDo(t, s, Op{Kind: OpKeyUpload, User: "alice", Bundle: testBundle(1), Prekeys: prekeys("a", poolSize)})

	results := make([]Result, fetches)
	errs := make([]error, fetches)
	var wg sync.WaitGroup
	for i := range fetches {
		wg.Go(func() {
			results[i], errs[i] = s.DoSync(Op{Kind: OpKeyFetch, User: "alice"})
		})
	}
	wg.Wait()

	seen := map[string]bool{}
	empty := 0
	for i, r := range results {
		if errs[i] != nil {
			t.Fatalf("fetch %d: %v", i, errs[i])
		}
		if r.Prekey == nil {
			empty++
			continue
		}
		if seen[string(r.Prekey)] {
			t.Errorf("prekey %q handed out twice", r.Prekey)
		}
		seen[string(r.Prekey)] = true
	}
	if len(seen) != poolSize {
		t.Errorf("%d distinct prekeys handed out, want %d", len(seen), poolSize)
	}
	if empty != fetches-poolSize {
		t.Errorf("%d fetches found the pool empty, want %d", empty, fetches-poolSize)
	}
	if _, count, err := s.KeyBundle("alice"); err != nil || count != 0 {
		t.Errorf("KeyBundle after the fetches: count %d, err %v, want 0 and nil", count, err)
	}
}

func TestKeyBundleSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, Options{Dir: dir})
	bundle := testBundle(3)
	mustDo(t, s, Op{Kind: OpKeyUpload, User: "alice", Bundle: bundle, Prekeys: prekeys("a", 3)})
	mustDo(t, s, Op{Kind: OpKeyFetch, User: "alice"})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openTestStore(t, Options{Dir: dir})
	got, count, err := s.KeyBundle("alice")
	if err != nil {
		t.Fatalf("KeyBundle after reopen: %v", err)
	}
	if !reflect.DeepEqual(got, bundle) || count != 2 {
		t.Errorf("after reopen: bundle %+v with %d prekeys, want %+v with 2", got, count, bundle)
	}
	r := mustDo(t, s, Op{Kind: OpKeyFetch, User: "alice"})
	if want := prekeys("a", 3)[1]; !bytes.Equal(r.Prekey, want) {
		t.Errorf("fetch after reopen: Prekey = %q, want %q", r.Prekey, want)
	}
}

func TestDoRejectsAppend(t *testing.T) {
	s := openTestStore(t, Options{})
	_, err := s.DoSync(Op{Kind: OpAppend, User: "alice", Body: []byte("x")})
	if !errors.Is(err, ErrInvalidRequest) {
		t.Errorf("DoSync(OpAppend): err = %v, want ErrInvalidRequest", err)
	}
	if n := inboxLen(t, s, "alice"); n != 0 {
		t.Errorf("InboxLen after the rejected append = %d, want 0", n)
	}
}

func TestDoAfterClose(t *testing.T) {
	s := openTestStore(t, Options{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DoSync(Op{Kind: OpKeyFetch, User: "alice"}); !errors.Is(err, ErrClosed) {
		t.Errorf("DoSync after Close: err = %v, want ErrClosed", err)
	}
}
