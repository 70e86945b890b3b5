package storage

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

func createGroup(t testing.TB, s *Store, id, creator string) *Group {
	t.Helper()
	return mustDo(t, s, Op{Kind: OpGroupCreate, GroupID: id, Name: "name of " + id, User: creator, TimeMS: 5000}).Group
}

func addMember(t testing.TB, s *Store, id, user, by string) *Group {
	t.Helper()
	return mustDo(t, s, Op{Kind: OpGroupAdd, GroupID: id, User: user, By: by}).Group
}

func userGroups(t testing.TB, s *Store, user string) []string {
	t.Helper()
	ids, err := s.UserGroups(user)
	if err != nil {
		t.Fatalf("UserGroups(%s): %v", user, err)
	}
	return ids
}

func TestGroupCreate(t *testing.T) {
	s := openTestStore(t, Options{})
	got := createGroup(t, s, "g1", "alice")
	want := &Group{ID: "g1", Name: "name of g1", Admins: []string{"alice"}, Members: []string{"alice"}, CreatedMS: 5000}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("create: Group = %+v, want %+v", got, want)
	}
	read, err := s.Group("g1")
	if err != nil {
		t.Fatalf("Group: %v", err)
	}
	if !reflect.DeepEqual(read, want) {
		t.Errorf("Group = %+v, want %+v", read, want)
	}
	if ids := userGroups(t, s, "alice"); !slices.Equal(ids, []string{"g1"}) {
		t.Errorf("UserGroups(alice) = %v, want [g1]", ids)
	}

	_, err = s.DoSync(Op{Kind: OpGroupCreate, GroupID: "g1", Name: "other", User: "bob", TimeMS: 6000})
	if !errors.Is(err, ErrExists) {
		t.Errorf("create with a taken id: err = %v, want ErrExists", err)
	}
	if ids := userGroups(t, s, "bob"); len(ids) != 0 {
		t.Errorf("UserGroups(bob) after the rejected create = %v, want none", ids)
	}
}

func TestGroupCreateStampsTime(t *testing.T) {
	s := openTestStore(t, Options{})
	r := mustDo(t, s, Op{Kind: OpGroupCreate, GroupID: "g1", User: "alice"})
	if r.Group.CreatedMS == 0 {
		t.Errorf("create without TimeMS through Do: CreatedMS = 0, want the store's clock")
	}
}

func TestGroupOpsRejectInvalidInput(t *testing.T) {
	s := openTestStore(t, Options{})
	createGroup(t, s, "g1", "alice")
	tests := []struct {
		name string
		op   Op
	}{
		{"create with empty id", Op{Kind: OpGroupCreate, User: "alice"}},
		{"create with long id", Op{Kind: OpGroupCreate, GroupID: strings.Repeat("g", maxGroupIDLen+1), User: "alice"}},
		{"create with long name", Op{Kind: OpGroupCreate, GroupID: "g2", Name: strings.Repeat("n", maxGroupNameLen+1), User: "alice"}},
		{"create by invalid user", Op{Kind: OpGroupCreate, GroupID: "g2", User: "a\x00b"}},
		{"add with invalid requester", Op{Kind: OpGroupAdd, GroupID: "g1", User: "bob", By: ""}},
		{"add of invalid user", Op{Kind: OpGroupAdd, GroupID: "g1", User: "", By: "alice"}},
		{"leave with empty id", Op{Kind: OpGroupLeave, User: "alice"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s.DoSync(tt.op); !errors.Is(err, ErrInvalidRequest) {
				t.Errorf("err = %v, want ErrInvalidRequest", err)
			}
		})
	}
	if _, err := s.Group("g2"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Group(g2) after rejected creates: err = %v, want ErrNotFound", err)
	}
	if _, err := s.Group(""); !errors.Is(err, ErrInvalidRequest) {
		t.Errorf(`Group(""): err = %v, want ErrInvalidRequest`, err)
	}
}

func TestGroupAdd(t *testing.T) {
	s := openTestStore(t, Options{})
	createGroup(t, s, "g1", "alice")

	got := addMember(t, s, "g1", "bob", "alice")
	if want := []string{"alice", "bob"}; !slices.Equal(got.Members, want) {
		t.Errorf("after adding bob: Members = %v, want %v", got.Members, want)
	}
	if want := []string{"alice"}; !slices.Equal(got.Admins, want) {
		t.Errorf("after adding bob: Admins = %v, want %v", got.Admins, want)
	}
	if ids := userGroups(t, s, "bob"); !slices.Equal(ids, []string{"g1"}) {
		t.Errorf("UserGroups(bob) = %v, want [g1]", ids)
	}

	r := mustDo(t, s, Op{Kind: OpGroupAdd, GroupID: "g1", User: "bob", By: "alice"})
	if !r.Duplicate {
		t.Errorf("adding bob again: Duplicate = false, want true")
	}
	if !slices.Equal(r.Group.Members, []string{"alice", "bob"}) {
		t.Errorf("adding bob again: Members = %v, want them unchanged", r.Group.Members)
	}

	_, err := s.DoSync(Op{Kind: OpGroupAdd, GroupID: "g1", User: "carol", By: "bob"})
	if !errors.Is(err, ErrNotAdmin) {
		t.Errorf("add by a member who is not an admin: err = %v, want ErrNotAdmin", err)
	}
	_, err = s.DoSync(Op{Kind: OpGroupAdd, GroupID: "g1", User: "carol", By: "mallory"})
	if !errors.Is(err, ErrNotAdmin) {
		t.Errorf("add by a non-member: err = %v, want ErrNotAdmin", err)
	}
	_, err = s.DoSync(Op{Kind: OpGroupAdd, GroupID: "nope", User: "carol", By: "alice"})
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("add to a missing group: err = %v, want ErrNotFound", err)
	}
	if ids := userGroups(t, s, "carol"); len(ids) != 0 {
		t.Errorf("UserGroups(carol) after rejected adds = %v, want none", ids)
	}
}

func TestGroupFull(t *testing.T) {
	s := openTestStore(t, Options{MaxGroupSize: 3})
	createGroup(t, s, "g1", "alice")
	addMember(t, s, "g1", "bob", "alice")
	addMember(t, s, "g1", "carol", "alice")

	_, err := s.DoSync(Op{Kind: OpGroupAdd, GroupID: "g1", User: "dave", By: "alice"})
	if !errors.Is(err, ErrGroupFull) {
		t.Errorf("add to a full group: err = %v, want ErrGroupFull", err)
	}
	r := mustDo(t, s, Op{Kind: OpGroupAdd, GroupID: "g1", User: "carol", By: "alice"})
	if !r.Duplicate {
		t.Errorf("re-adding a member of a full group: Duplicate = false, want true")
	}

	mustDo(t, s, Op{Kind: OpGroupLeave, GroupID: "g1", User: "bob"})
	got := addMember(t, s, "g1", "dave", "alice")
	if want := []string{"alice", "carol", "dave"}; !slices.Equal(got.Members, want) {
		t.Errorf("add after a member left: Members = %v, want %v", got.Members, want)
	}
}

func TestGroupsPerUserLimit(t *testing.T) {
	s := openTestStore(t, Options{MaxGroupsPerUser: 2})
	createGroup(t, s, "g1", "alice")
	createGroup(t, s, "g2", "alice")

	_, err := s.DoSync(Op{Kind: OpGroupCreate, GroupID: "g3", User: "alice", TimeMS: 1})
	if !errors.Is(err, ErrTooManyGroups) {
		t.Errorf("create past the limit: err = %v, want ErrTooManyGroups", err)
	}
	if _, err := s.Group("g3"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Group(g3) after the rejected create: err = %v, want ErrNotFound", err)
	}

	createGroup(t, s, "b1", "bob")
	_, err = s.DoSync(Op{Kind: OpGroupAdd, GroupID: "b1", User: "alice", By: "bob"})
	if !errors.Is(err, ErrTooManyGroups) {
		t.Errorf("add a user at the limit: err = %v, want ErrTooManyGroups", err)
	}

	mustDo(t, s, Op{Kind: OpGroupLeave, GroupID: "g1", User: "alice"})
	addMember(t, s, "b1", "alice", "bob")
	if ids := userGroups(t, s, "alice"); !slices.Equal(ids, []string{"b1", "g2"}) {
		t.Errorf("UserGroups(alice) = %v, want [b1 g2]", ids)
	}
}

func TestGroupLeave(t *testing.T) {
	s := openTestStore(t, Options{})
	createGroup(t, s, "g1", "alice")
	addMember(t, s, "g1", "bob", "alice")

	r := mustDo(t, s, Op{Kind: OpGroupLeave, GroupID: "g1", User: "bob"})
	if r.Group == nil || !slices.Equal(r.Group.Members, []string{"alice"}) {
		t.Errorf("bob leaves: Group = %+v, want alice as the only member", r.Group)
	}
	if ids := userGroups(t, s, "bob"); len(ids) != 0 {
		t.Errorf("UserGroups(bob) after leaving = %v, want none", ids)
	}

	_, err := s.DoSync(Op{Kind: OpGroupLeave, GroupID: "g1", User: "bob"})
	if !errors.Is(err, ErrNotMember) {
		t.Errorf("leave by a non-member: err = %v, want ErrNotMember", err)
	}
	_, err = s.DoSync(Op{Kind: OpGroupLeave, GroupID: "nope", User: "bob"})
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("leave a missing group: err = %v, want ErrNotFound", err)
	}
}

func TestGroupLastMemberDeletes(t *testing.T) {
	s := openTestStore(t, Options{})
	createGroup(t, s, "g1", "alice")

	r := mustDo(t, s, Op{Kind: OpGroupLeave, GroupID: "g1", User: "alice"})
	if r.Group != nil {
		t.Errorf("last member leaves: Group = %+v, want nil", r.Group)
	}
	if _, err := s.Group("g1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Group after the last member left: err = %v, want ErrNotFound", err)
	}
	if ids := userGroups(t, s, "alice"); len(ids) != 0 {
		t.Errorf("UserGroups(alice) = %v, want none", ids)
	}
	if hasKey(t, s, groupKey("g1")) {
		t.Errorf("the group record is still stored")
	}

	// The id is free again.
	got := createGroup(t, s, "g1", "bob")
	if !slices.Equal(got.Members, []string{"bob"}) {
		t.Errorf("re-created group: Members = %v, want [bob]", got.Members)
	}
}

func TestGroupAdminHandOver(t *testing.T) {
	s := openTestStore(t, Options{})
	createGroup(t, s, "g1", "alice")
	addMember(t, s, "g1", "bob", "alice")
	addMember(t, s, "g1", "carol", "alice")

	r := mustDo(t, s, Op{Kind: OpGroupLeave, GroupID: "g1", User: "alice"})
	want := &Group{ID: "g1", Name: "name of g1", Admins: []string{"bob"}, Members: []string{"bob", "carol"}, CreatedMS: 5000}
	if !reflect.DeepEqual(r.Group, want) {
		t.Errorf("last admin leaves: Group = %+v, want %+v", r.Group, want)
	}

	// The new admin may add members; the other member still may not.
	addMember(t, s, "g1", "dave", "bob")
	if _, err := s.DoSync(Op{Kind: OpGroupAdd, GroupID: "g1", User: "erin", By: "carol"}); !errors.Is(err, ErrNotAdmin) {
		t.Errorf("add by carol: err = %v, want ErrNotAdmin", err)
	}
}

func TestGroupNonAdminLeaveKeepsAdmins(t *testing.T) {
	s := openTestStore(t, Options{})
	createGroup(t, s, "g1", "alice")
	addMember(t, s, "g1", "bob", "alice")
	addMember(t, s, "g1", "carol", "alice")

	r := mustDo(t, s, Op{Kind: OpGroupLeave, GroupID: "g1", User: "bob"})
	if !slices.Equal(r.Group.Admins, []string{"alice"}) {
		t.Errorf("a non-admin leaves: Admins = %v, want [alice]", r.Group.Admins)
	}
}

func TestGroupsSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, Options{Dir: dir})
	createGroup(t, s, "g1", "alice")
	addMember(t, s, "g1", "bob", "alice")
	createGroup(t, s, "g2", "bob")
	mustDo(t, s, Op{Kind: OpGroupLeave, GroupID: "g1", User: "alice"})
	before, err := s.Group("g1")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openTestStore(t, Options{Dir: dir})
	after, err := s.Group("g1")
	if err != nil {
		t.Fatalf("Group after reopen: %v", err)
	}
	if !reflect.DeepEqual(after, before) {
		t.Errorf("Group after reopen = %+v, want %+v", after, before)
	}
	if ids := userGroups(t, s, "bob"); !slices.Equal(ids, []string{"g1", "g2"}) {
		t.Errorf("UserGroups(bob) after reopen = %v, want [g1 g2]", ids)
	}
	if ids := userGroups(t, s, "alice"); len(ids) != 0 {
		t.Errorf("UserGroups(alice) after reopen = %v, want none", ids)
	}
}

// TestGroupIDWithAnyBytes checks that ids containing 0x00 and ':' keep their index keys apart.
func TestGroupIDWithAnyBytes(t *testing.T) {
	s := openTestStore(t, Options{})
	ids := []string{"a", "a\x00b", "a:b", "\xff"}
	for _, id := range ids {
		createGroup(t, s, id, "alice")
	}
	got := userGroups(t, s, "alice")
	want := slices.Clone(ids)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("UserGroups(alice) = %q, want %q", got, want)
	}
	if ids := userGroups(t, s, "alice\x01"); ids != nil {
		t.Errorf("UserGroups of a longer name = %q, want none", ids)
	}
	for _, id := range ids {
		g, err := s.Group(id)
		if err != nil || g.ID != id {
			t.Errorf("Group(%q) = %+v, %v", id, g, err)
		}
	}
}

func TestGroupRecordRejectsCorruption(t *testing.T) {
	rec := groupRecord{name: "n", createdMS: 1, members: []groupMember{{user: "alice", admin: true}, {user: "bob"}}}
	valid := rec.encode()
	back, err := decodeGroup(valid)
	if err != nil || !reflect.DeepEqual(back, rec) {
		t.Fatalf("decodeGroup(encode) = %+v, %v, want %+v", back, err, rec)
	}
	for n := range len(valid) {
		if _, err := decodeGroup(valid[:n]); !errors.Is(err, ErrCorrupted) {
			t.Errorf("prefix of %d of %d bytes: err = %v, want ErrCorrupted", n, len(valid), err)
		}
	}
	if _, err := decodeGroup(append(valid, 0)); !errors.Is(err, ErrCorrupted) {
		t.Errorf("trailing byte: err = %v, want ErrCorrupted", err)
	}
}

func TestBundleRecordRejectsCorruption(t *testing.T) {
	rec := bundleRecord{bundle: *testBundle(1), firstPrekey: 3, nextPrekey: 9}
	valid := rec.encode()
	back, err := decodeBundle(valid)
	if err != nil || !reflect.DeepEqual(back, rec) {
		t.Fatalf("decodeBundle(encode) = %+v, %v, want %+v", back, err, rec)
	}
	for n := range len(valid) {
		if _, err := decodeBundle(valid[:n]); !errors.Is(err, ErrCorrupted) {
			t.Errorf("prefix of %d of %d bytes: err = %v, want ErrCorrupted", n, len(valid), err)
		}
	}
	backwards := bundleRecord{bundle: *testBundle(1), firstPrekey: 9, nextPrekey: 3}
	if _, err := decodeBundle(backwards.encode()); !errors.Is(err, ErrCorrupted) {
		t.Errorf("first prekey after next: err = %v, want ErrCorrupted", err)
	}
}

func TestGroupManyMembers(t *testing.T) {
	s := openTestStore(t, Options{})
	createGroup(t, s, "big", "admin")
	var ops []Op
	for i := range DefaultMaxGroupSize {
		ops = append(ops, Op{Kind: OpGroupAdd, GroupID: "big", User: fmt.Sprintf("user%03d", i), By: "admin"})
	}
	results, err := s.ApplyOps(ops)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range results[:DefaultMaxGroupSize-1] {
		if r.Err != nil {
			t.Fatalf("add %d: %v", i, r.Err)
		}
	}
	if last := results[DefaultMaxGroupSize-1]; !errors.Is(last.Err, ErrGroupFull) {
		t.Errorf("add of member %d: err = %v, want ErrGroupFull", DefaultMaxGroupSize+1, last.Err)
	}
	g, err := s.Group("big")
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Members) != DefaultMaxGroupSize || g.Members[0] != "admin" || g.Members[1] != "user000" {
		t.Errorf("Group(big): %d members starting %v, want %d starting [admin user000]", len(g.Members), g.Members[:2], DefaultMaxGroupSize)
	}
}

// TestReaderWaitsForGroupCommit fails the WAL write of a group creation after Pebble has
// made the batch visible, and expects a concurrent Group read to wait for the commit and then
// not return the lost group.
func TestReaderWaitsForGroupCommit(t *testing.T) {
	var s *Store
	var armed atomic.Bool
	type readResult struct {
		group *Group
		err   error
	}
	read := make(chan readResult, 1)
	fsys, toggle := failingFS(func(op errorfs.Op) bool {
		if !isWrite(op) || !strings.HasSuffix(op.Path, ".log") || !armed.CompareAndSwap(true, false) {
			return false
		}
		// This runs on Pebble's WAL goroutine, while the commit waits for it.
		if poll(func() bool { return hasRawKey(s, groupKey("g1")) }) {
			go func() {
				g, err := s.Group("g1")
				read <- readResult{g, err}
			}()
			poll(func() bool { return s.waitedReads.Load() > 0 || len(read) > 0 })
		}
		return true
	})
	s = openTestStore(t, Options{FS: fsys})
	toggle.On()
	armed.Store(true)

	_, err := s.DoSync(Op{Kind: OpGroupCreate, GroupID: "g1", User: "alice", TimeMS: 1})
	if !errors.Is(err, ErrCommitFailed) {
		t.Fatalf("create during the failed WAL write: err = %v, want ErrCommitFailed", err)
	}
	if s.waitedReads.Load() == 0 {
		t.Errorf("the reader did not wait for the commit")
	}
	r := <-read
	if r.group != nil || r.err == nil {
		t.Errorf("Group read during the failed commit = %+v, %v, want no group and an error", r.group, r.err)
	}
	if !errors.Is(r.err, ErrUnavailable) && !errors.Is(r.err, ErrNotFound) {
		t.Errorf("Group read during the failed commit: err = %v, want ErrUnavailable or ErrNotFound", r.err)
	}
}

// poll calls cond until it returns true or 10 seconds pass, and reports whether it returned
// true. Unlike waitFor it may run outside the test goroutine.
func poll(cond func() bool) bool {
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

// hasRawKey reports whether Pebble shows key to readers, bypassing the store's wait for
// in-flight commits.
func hasRawKey(s *Store, key []byte) bool {
	db, release, err := s.readDB()
	if err != nil {
		return false
	}
	defer release()
	_, closer, err := db.Get(key)
	if err != nil {
		return false
	}
	closer.Close()
	return true
}
