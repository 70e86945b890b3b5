package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/cockroachdb/pebble/v2"
)

// Group is a named set of members. Only admins may add members. Every member may leave, and
// the group is deleted when the last member leaves. When the last admin leaves, the remaining
// member who joined first becomes admin, so a group always has an admin while it has members.
type Group struct {
	ID        string
	Name      string
	Admins    []string // in join order; every admin is also in Members
	Members   []string // in join order, admins included
	CreatedMS uint64   // creation time in ms since the epoch, stamped by the proposer
}

// groupMember is one member in a group record.
type groupMember struct {
	user  string
	admin bool
}

// groupRecord is the value stored under 'g' groupID. Every member also has an empty
// 'u' user 0x00 groupID index key.
type groupRecord struct {
	name      string
	createdMS uint64
	members   []groupMember // in join order
}

const memberIsAdmin = 1 << 0

// encode returns createdMS(8) uvarint(len name) name uvarint(count) followed by each member
// as flags(1) uvarint(len user) user, where flags bit 0 marks an admin.
func (r *groupRecord) encode() []byte {
	size := 8 + 2*binary.MaxVarintLen64 + len(r.name)
	for _, m := range r.members {
		size += 1 + binary.MaxVarintLen64 + len(m.user)
	}
	v := make([]byte, 0, size)
	v = binary.BigEndian.AppendUint64(v, r.createdMS)
	v = appendString(v, r.name)
	v = binary.AppendUvarint(v, uint64(len(r.members)))
	for _, m := range r.members {
		var flags byte
		if m.admin {
			flags |= memberIsAdmin
		}
		v = append(v, flags)
		v = appendString(v, m.user)
	}
	return v
}

func decodeGroup(v []byte) (groupRecord, error) {
	d := opsDecoder{data: v, errKind: ErrCorrupted}
	r := groupRecord{createdMS: d.uint64(), name: d.string()}
	count := d.uvarint()
	// Each member takes at least two bytes, which bounds the allocation.
	if d.err == nil && count > uint64(len(v)-d.off)/2 {
		return groupRecord{}, fmt.Errorf("%w: group record claims %d members in %d bytes", ErrCorrupted, count, len(v)-d.off)
	}
	r.members = make([]groupMember, 0, count)
	for range count {
		flags := d.byte()
		if d.err == nil && flags&^memberIsAdmin != 0 {
			return groupRecord{}, fmt.Errorf("%w: group member flags %#x", ErrCorrupted, flags)
		}
		r.members = append(r.members, groupMember{admin: flags&memberIsAdmin != 0, user: d.string()})
	}
	switch {
	case d.err != nil:
		return groupRecord{}, fmt.Errorf("group record: %w", d.err)
	case d.off != len(v):
		return groupRecord{}, fmt.Errorf("%w: group record has %d trailing bytes", ErrCorrupted, len(v)-d.off)
	}
	return r, nil
}

// group converts the record into the exported form, with fresh slices.
func (r *groupRecord) group(id string) *Group {
	g := &Group{ID: id, Name: r.name, CreatedMS: r.createdMS, Members: make([]string, 0, len(r.members))}
	for _, m := range r.members {
		g.Members = append(g.Members, m.user)
		if m.admin {
			g.Admins = append(g.Admins, m.user)
		}
	}
	return g
}

// memberIndex returns the position of user in the members, or -1.
func (r *groupRecord) memberIndex(user string) int {
	return slices.IndexFunc(r.members, func(m groupMember) bool { return m.user == user })
}

func (a *applier) getGroup(id string) (rec groupRecord, found bool, err error) {
	value, closer, err := a.batch.Get(groupKey(id))
	if errors.Is(err, pebble.ErrNotFound) {
		return groupRecord{}, false, nil
	}
	if err != nil {
		return groupRecord{}, false, err
	}
	defer closer.Close()
	rec, err = decodeGroup(value)
	if err != nil {
		return groupRecord{}, false, fmt.Errorf("group %q: %w", id, err)
	}
	return rec, true, nil
}

// countUserGroups counts the groups user is a member of, stopping at limit, which is all
// that the per-user check needs.
func (a *applier) countUserGroups(user string, limit int) (int, error) {
	prefix := userGroupsPrefix(user)
	iter, err := a.batch.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return 0, err
	}
	n := 0
	for iter.First(); iter.Valid() && n < limit; iter.Next() {
		n++
	}
	return n, errors.Join(iter.Error(), iter.Close())
}

// checkGroupLimit returns a rejection wrapping ErrTooManyGroups when user may not join
// another group.
func (a *applier) checkGroupLimit(user string) (rejection, err error) {
	limit := a.store.opts.MaxGroupsPerUser
	n, err := a.countUserGroups(user, limit)
	if err != nil {
		return nil, err
	}
	if n >= limit {
		return fmt.Errorf("%w: user %q is a member of %d groups, the maximum", ErrTooManyGroups, user, limit), nil
	}
	return nil, nil
}

// putGroup writes the group record and the index key of joined, the member just added.
func (a *applier) putGroup(id string, rec *groupRecord, joined string) error {
	if err := a.setWritten(groupKey(id), rec.encode()); err != nil {
		return err
	}
	a.markWritten(userGroupsPrefix(joined))
	return a.batch.Set(userGroupKey(joined, id), nil, nil)
}

func (a *applier) createGroup(op *Op) (Result, error) {
	if err := validateGroupID(op.GroupID); err != nil {
		return Result{Err: fmt.Errorf("%s: %w", op.Kind, err)}, nil
	}
	if len(op.Name) > maxGroupNameLen {
		return Result{Err: fmt.Errorf("%s %q: %w: name of %d bytes exceeds the maximum of %d",
			op.Kind, op.GroupID, ErrInvalidRequest, len(op.Name), maxGroupNameLen)}, nil
	}
	_, found, err := a.getGroup(op.GroupID)
	if err != nil {
		return Result{}, err
	}
	if found {
		return Result{Err: fmt.Errorf("%w: group %q", ErrExists, op.GroupID)}, nil
	}
	rejection, err := a.checkGroupLimit(op.User)
	if rejection != nil || err != nil {
		return Result{Err: rejection}, err
	}

	rec := groupRecord{name: op.Name, createdMS: op.TimeMS, members: []groupMember{{user: op.User, admin: true}}}
	if err := a.putGroup(op.GroupID, &rec, op.User); err != nil {
		return Result{}, err
	}
	return Result{Group: rec.group(op.GroupID)}, nil
}

// addToGroup applies OpGroupAdd. The checks run in the order of the errors at Store.Do, so a
// request that fails several of them gets the first.
func (a *applier) addToGroup(op *Op) (Result, error) {
	if err := validateGroupID(op.GroupID); err != nil {
		return Result{Err: fmt.Errorf("%s: %w", op.Kind, err)}, nil
	}
	if err := validateUser(op.By); err != nil {
		return Result{Err: fmt.Errorf("%s %q, requester: %w", op.Kind, op.GroupID, err)}, nil
	}
	rec, found, err := a.getGroup(op.GroupID)
	if err != nil {
		return Result{}, err
	}
	if !found {
		return Result{Err: fmt.Errorf("%w: group %q", ErrNotFound, op.GroupID)}, nil
	}
	if i := rec.memberIndex(op.By); i < 0 || !rec.members[i].admin {
		return Result{Err: fmt.Errorf("%w: %q may not add members to group %q", ErrNotAdmin, op.By, op.GroupID)}, nil
	}
	if rec.memberIndex(op.User) >= 0 {
		return Result{Group: rec.group(op.GroupID), Duplicate: true}, nil
	}
	if limit := a.store.opts.MaxGroupSize; len(rec.members) >= limit {
		return Result{Err: fmt.Errorf("%w: group %q has %d members, the maximum", ErrGroupFull, op.GroupID, limit)}, nil
	}
	rejection, err := a.checkGroupLimit(op.User)
	if rejection != nil || err != nil {
		return Result{Err: rejection}, err
	}

	rec.members = append(rec.members, groupMember{user: op.User})
	if err := a.putGroup(op.GroupID, &rec, op.User); err != nil {
		return Result{}, err
	}
	return Result{Group: rec.group(op.GroupID)}, nil
}

// leaveGroup applies OpGroupLeave, deleting the group with its last member and handing the
// admin role to the longest-standing member when the last admin leaves.
func (a *applier) leaveGroup(op *Op) (Result, error) {
	if err := validateGroupID(op.GroupID); err != nil {
		return Result{Err: fmt.Errorf("%s: %w", op.Kind, err)}, nil
	}
	rec, found, err := a.getGroup(op.GroupID)
	if err != nil {
		return Result{}, err
	}
	if !found {
		return Result{Err: fmt.Errorf("%w: group %q", ErrNotFound, op.GroupID)}, nil
	}
	i := rec.memberIndex(op.User)
	if i < 0 {
		return Result{Err: fmt.Errorf("%w: %q is not in group %q", ErrNotMember, op.User, op.GroupID)}, nil
	}

	rec.members = slices.Delete(rec.members, i, i+1)
	a.markWritten(userGroupsPrefix(op.User))
	if err := a.batch.Delete(userGroupKey(op.User, op.GroupID), nil); err != nil {
		return Result{}, err
	}
	if len(rec.members) == 0 {
		a.markWritten(groupKey(op.GroupID))
		return Result{}, a.batch.Delete(groupKey(op.GroupID), nil)
	}
	if !slices.ContainsFunc(rec.members, func(m groupMember) bool { return m.admin }) {
		rec.members[0].admin = true
	}
	if err := a.setWritten(groupKey(op.GroupID), rec.encode()); err != nil {
		return Result{}, err
	}
	return Result{Group: rec.group(op.GroupID)}, nil
}

// Group returns the group with the given id, or an error wrapping ErrNotFound.
func (s *Store) Group(id string) (*Group, error) {
	if err := validateGroupID(id); err != nil {
		return nil, err
	}
	key := groupKey(id)
	var rec groupRecord
	err := s.readCommitted(key, func(db *pebble.DB) error {
		value, closer, err := db.Get(key)
		if errors.Is(err, pebble.ErrNotFound) {
			return fmt.Errorf("%w: group %q", ErrNotFound, id)
		}
		if err != nil {
			return fmt.Errorf("storage: read group %q: %w", id, err)
		}
		defer closer.Close()
		rec, err = decodeGroup(value)
		if err != nil {
			return fmt.Errorf("storage: group %q: %w", id, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return rec.group(id), nil
}

// UserGroups returns the ids of the groups user is a member of, in byte order of the ids. A
// user in no group gets an empty list and no error.
func (s *Store) UserGroups(user string) ([]string, error) {
	if err := validateUser(user); err != nil {
		return nil, err
	}
	prefix := userGroupsPrefix(user)
	var ids []string
	err := s.readCommitted(prefix, func(db *pebble.DB) error {
		ids = ids[:0]
		iter, err := db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
		if err != nil {
			return fmt.Errorf("storage: read groups of %q: %w", user, err)
		}
		for iter.First(); iter.Valid(); iter.Next() {
			ids = append(ids, string(iter.Key()[len(prefix):]))
		}
		if err := errors.Join(iter.Error(), iter.Close()); err != nil {
			return fmt.Errorf("storage: read groups of %q: %w", user, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return ids, nil
}
