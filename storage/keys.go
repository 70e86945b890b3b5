package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// Table tags: the first byte of every key.
const (
	tagInbox     = 'i'
	tagMeta      = 'm'
	tagLastSeen  = 'l'
	tagDedup     = 'd'
	tagDedupByTS = 'x'
	tagOrder     = 'o'
	tagOrderByTS = 'y'
	tagBundle    = 'k'
	tagPrekey    = 'p'
	tagGroup     = 'g'
	tagUserGroup = 'u'
)

// maxUserLen bounds user names so that keys stay small; Pebble itself accepts far longer keys.
const maxUserLen = 255

// maxGroupIDLen bounds group ids for the same reason as maxUserLen.
const maxGroupIDLen = 255

// maxGroupNameLen bounds group names, because every membership change rewrites the whole
// group record, name included.
const maxGroupNameLen = 1024

// maxKeyLen bounds each key of a bundle and each one-time prekey. The store never looks
// inside them; the limit only keeps values small.
const maxKeyLen = 8 << 10

// validateUser returns an error wrapping ErrInvalidRequest unless user can be used in a key.
func validateUser(user string) error {
	switch {
	case user == "":
		return fmt.Errorf("%w: empty user name", ErrInvalidRequest)
	case len(user) > maxUserLen:
		return fmt.Errorf("%w: user name of %d bytes exceeds the maximum of %d", ErrInvalidRequest, len(user), maxUserLen)
	case strings.ContainsAny(user, "\x00:"):
		return fmt.Errorf("%w: user name %q contains 0x00 or ':'", ErrInvalidRequest, user)
	}
	return nil
}

func validateGroupID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: empty group id", ErrInvalidRequest)
	case len(id) > maxGroupIDLen:
		return fmt.Errorf("%w: group id of %d bytes exceeds the maximum of %d", ErrInvalidRequest, len(id), maxGroupIDLen)
	}
	return nil
}

// inboxPrefix returns 'i' user 0x00, the prefix shared by all of user's entries.
func inboxPrefix(user string) []byte {
	key := make([]byte, 0, len(user)+2+8)
	key = append(key, tagInbox)
	key = append(key, user...)
	return append(key, 0)
}

func inboxKey(user string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(inboxPrefix(user), seq)
}

// prefixEnd returns the smallest key greater than every key with the given prefix. The
// prefixes used here end in 0x00 or a table tag, never 0xff, so incrementing the last byte
// is enough.
func prefixEnd(prefix []byte) []byte {
	end := append([]byte(nil), prefix...)
	end[len(end)-1]++
	return end
}

// seqFromInboxKey returns the seq at the end of an inbox key.
func seqFromInboxKey(key []byte) uint64 {
	return binary.BigEndian.Uint64(key[len(key)-8:])
}

func metaKey(user string) []byte {
	return append([]byte{tagMeta}, user...)
}

func lastSeenKey(user string) []byte {
	return append([]byte{tagLastSeen}, user...)
}

// dedupID encodes a DedupKey with length prefixes, so senders and scopes may contain any byte.
func dedupID(k *DedupKey) []byte {
	id := make([]byte, 0, 2*binary.MaxVarintLen64+len(k.Sender)+len(k.Scope)+8)
	id = binary.AppendUvarint(id, uint64(len(k.Sender)))
	id = append(id, k.Sender...)
	id = binary.AppendUvarint(id, uint64(len(k.Scope)))
	id = append(id, k.Scope...)
	return binary.BigEndian.AppendUint64(id, k.ID)
}

func dedupKey(id []byte) []byte {
	return append([]byte{tagDedup}, id...)
}

func dedupExpiryKey(untilMS uint64, id []byte) []byte {
	key := make([]byte, 0, 1+8+len(id))
	key = append(key, tagDedupByTS)
	key = binary.BigEndian.AppendUint64(key, untilMS)
	return append(key, id...)
}

// orderID names the ordering record of one sender stream to one recipient.
func orderID(user, sender string, stream uint64) []byte {
	id := make([]byte, 0, 2*binary.MaxVarintLen64+len(user)+len(sender)+8)
	id = binary.AppendUvarint(id, uint64(len(user)))
	id = append(id, user...)
	id = binary.AppendUvarint(id, uint64(len(sender)))
	id = append(id, sender...)
	return binary.BigEndian.AppendUint64(id, stream)
}

func orderKey(id []byte) []byte {
	return append([]byte{tagOrder}, id...)
}

func orderExpiryKey(untilMS uint64, id []byte) []byte {
	key := make([]byte, 0, 1+8+len(id))
	key = append(key, tagOrderByTS)
	key = binary.BigEndian.AppendUint64(key, untilMS)
	return append(key, id...)
}

func bundleKey(user string) []byte {
	return append([]byte{tagBundle}, user...)
}

// prekeyPrefix returns 'p' user 0x00, the prefix of user's one-time prekeys.
func prekeyPrefix(user string) []byte {
	key := make([]byte, 0, len(user)+2+8)
	key = append(key, tagPrekey)
	key = append(key, user...)
	return append(key, 0)
}

func prekeyKey(user string, index uint64) []byte {
	return binary.BigEndian.AppendUint64(prekeyPrefix(user), index)
}

func groupKey(id string) []byte {
	return append([]byte{tagGroup}, id...)
}

// userGroupsPrefix returns 'u' user 0x00, the prefix of the index of user's groups.
func userGroupsPrefix(user string) []byte {
	key := make([]byte, 0, len(user)+2+maxGroupIDLen)
	key = append(key, tagUserGroup)
	key = append(key, user...)
	return append(key, 0)
}

func userGroupKey(user, groupID string) []byte {
	return append(userGroupsPrefix(user), groupID...)
}

// orderRecord is the value stored under 'o' orderID.
type orderRecord struct {
	untilMS uint64 // the record is forgotten by appends whose TimeMS is at or above this
	lastN   uint64 // the highest N of the stream applied (stored or rejected for good)
}

const orderValueLen = 16

func (r orderRecord) encode() []byte {
	v := make([]byte, 0, orderValueLen)
	v = binary.BigEndian.AppendUint64(v, r.untilMS)
	return binary.BigEndian.AppendUint64(v, r.lastN)
}

func decodeOrder(v []byte) (orderRecord, error) {
	if len(v) != orderValueLen {
		return orderRecord{}, fmt.Errorf("%w: order record of %d bytes, expected %d", ErrCorrupted, len(v), orderValueLen)
	}
	return orderRecord{untilMS: binary.BigEndian.Uint64(v[0:8]), lastN: binary.BigEndian.Uint64(v[8:16])}, nil
}

// userMeta is the per-inbox metadata stored under 'm' user.
type userMeta struct {
	lastSeq      uint64 // highest seq ever assigned
	unacked      uint64 // entries present in the inbox
	ackedThrough uint64 // every entry with seq <= ackedThrough is gone
}

const metaValueLen = 24

func (m userMeta) encode() []byte {
	v := make([]byte, 0, metaValueLen)
	v = binary.BigEndian.AppendUint64(v, m.lastSeq)
	v = binary.BigEndian.AppendUint64(v, m.unacked)
	return binary.BigEndian.AppendUint64(v, m.ackedThrough)
}

func decodeMeta(v []byte) (userMeta, error) {
	if len(v) != metaValueLen {
		return userMeta{}, fmt.Errorf("%w: inbox metadata of %d bytes, expected %d", ErrCorrupted, len(v), metaValueLen)
	}
	return userMeta{
		lastSeq:      binary.BigEndian.Uint64(v[0:8]),
		unacked:      binary.BigEndian.Uint64(v[8:16]),
		ackedThrough: binary.BigEndian.Uint64(v[16:24]),
	}, nil
}

// entryHeaderLen is the fixed part of an inbox value: tag, kind and time.
const entryHeaderLen = 8 + 1 + 8

func encodeEntry(op *Op) []byte {
	v := make([]byte, 0, entryHeaderLen+binary.MaxVarintLen64+len(op.Sender)+len(op.Body))
	v = binary.BigEndian.AppendUint64(v, op.Tag)
	v = append(v, op.EntryKind)
	v = binary.BigEndian.AppendUint64(v, op.TimeMS)
	v = binary.AppendUvarint(v, uint64(len(op.Sender)))
	v = append(v, op.Sender...)
	return append(v, op.Body...)
}

var errShortEntry = fmt.Errorf("%w: inbox entry value is truncated", ErrCorrupted)

// decodeEntry fills e from an inbox value. Body and Sender are copied, because Pebble reuses
// the value's memory once the iterator moves.
func decodeEntry(seq uint64, v []byte) (Entry, error) {
	if len(v) < entryHeaderLen {
		return Entry{}, errShortEntry
	}
	e := Entry{
		Seq:    seq,
		Tag:    binary.BigEndian.Uint64(v[0:8]),
		Kind:   v[8],
		TimeMS: binary.BigEndian.Uint64(v[9:17]),
	}
	rest := v[entryHeaderLen:]
	senderLen, n := binary.Uvarint(rest)
	if n <= 0 || senderLen > uint64(len(rest)-n) {
		return Entry{}, errShortEntry
	}
	rest = rest[n:]
	e.Sender = string(rest[:senderLen])
	e.Body = append([]byte{}, rest[senderLen:]...)
	return e, nil
}

// tagOfEntry returns the tag stored in an inbox value.
func tagOfEntry(v []byte) (uint64, error) {
	if len(v) < 8 {
		return 0, errShortEntry
	}
	return binary.BigEndian.Uint64(v[:8]), nil
}

// dedupRecord is the value stored under 'd' dedupID.
type dedupRecord struct {
	untilMS uint64 // the record matches repeats whose TimeMS is below this
	seq     uint64
	tag     uint64
}

const dedupValueLen = 24

func (r dedupRecord) encode() []byte {
	v := make([]byte, 0, dedupValueLen)
	v = binary.BigEndian.AppendUint64(v, r.untilMS)
	v = binary.BigEndian.AppendUint64(v, r.seq)
	return binary.BigEndian.AppendUint64(v, r.tag)
}

func decodeDedup(v []byte) (dedupRecord, error) {
	if len(v) != dedupValueLen {
		return dedupRecord{}, fmt.Errorf("%w: dedup record of %d bytes, expected %d", ErrCorrupted, len(v), dedupValueLen)
	}
	return dedupRecord{
		untilMS: binary.BigEndian.Uint64(v[0:8]),
		seq:     binary.BigEndian.Uint64(v[8:16]),
		tag:     binary.BigEndian.Uint64(v[16:24]),
	}, nil
}

func decodeLastSeen(v []byte) (uint64, error) {
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: last-seen value of %d bytes, expected 8", ErrCorrupted, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// Sentinel errors returned by the store. Errors are wrapped with context, so compare them
// with errors.Is.
var (
	// ErrClosed is returned by every call on a store after Close.
	ErrClosed = errors.New("storage: store is closed")
	// ErrInboxFull rejects an append to an inbox that holds Options.MaxInbox unacked entries.
	ErrInboxFull = errors.New("storage: inbox is full")
	// ErrOutOfOrder rejects an append whose OrderKey.N skips an earlier append of its stream
	// that the store has not applied yet. Nothing is stored; the sender resends the missing
	// appends and then this one.
	ErrOutOfOrder = errors.New("storage: append out of order")
	// ErrInvalidRequest rejects an op whose user name cannot be stored or whose kind is unknown.
	ErrInvalidRequest = errors.New("storage: invalid request")
	// ErrCommitFailed wraps the cause of a failed Pebble commit. The ops of that batch may or
	// may not be on disk, so a caller that retries an append should reuse its dedup key.
	ErrCommitFailed = errors.New("storage: commit failed")
	// ErrUnavailable is returned while the store reopens Pebble after a failed commit. Ops
	// rejected this way were not stored, and a later retry may succeed.
	ErrUnavailable = errors.New("storage: store is unavailable after a write failure")
	// ErrCorrupted reports data on disk that cannot be decoded.
	ErrCorrupted = errors.New("storage: data is corrupted")

	// ErrNotFound reports a missing key bundle or group.
	ErrNotFound = errors.New("storage: not found")
	// ErrPoolFull rejects a key upload that would grow a user's one-time prekey pool past
	// Options.MaxPrekeys. Nothing of that upload is stored.
	ErrPoolFull = errors.New("storage: one-time prekey pool is full")
	// ErrExists rejects the creation of a group whose id is taken.
	ErrExists = errors.New("storage: group already exists")
	// ErrTooManyGroups rejects creating or joining a group by a user who is already a member
	// of Options.MaxGroupsPerUser groups.
	ErrTooManyGroups = errors.New("storage: user is in too many groups")
	// ErrNotAdmin rejects a member addition requested by someone who is not a group admin.
	ErrNotAdmin = errors.New("storage: requester is not a group admin")
	// ErrGroupFull rejects adding a member to a group of Options.MaxGroupSize members.
	ErrGroupFull = errors.New("storage: group is full")
	// ErrNotMember rejects leaving a group that the user is not a member of.
	ErrNotMember = errors.New("storage: user is not a group member")
)
