package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// OpKind selects what an Op does.
type OpKind uint8

// Op kinds. Their numeric values are part of the MarshalOps encoding and must not change.
const (
	// OpAppend adds an entry to User's inbox, or returns the earlier result for a repeated
	// dedup key.
	OpAppend OpKind = 1
	// OpAck deletes entry Seq of User's inbox if its tag equals Tag.
	OpAck OpKind = 2
	// OpAckUpTo deletes every entry of User's inbox with a seq up to Seq.
	OpAckUpTo OpKind = 3
	// OpSetLastSeen stores LastSeenSec as User's last-seen time.
	OpSetLastSeen OpKind = 4
	// OpSweepDedup deletes dedup records that expired at or before TimeMS.
	OpSweepDedup OpKind = 5
	// OpKeyUpload stores Bundle as User's key bundle and appends Prekeys to User's one-time
	// prekey pool. See Store.Do for the results and errors of this and the later kinds.
	OpKeyUpload OpKind = 6
	// OpKeyFetch returns User's key bundle and removes the oldest one-time prekey from the pool.
	OpKeyFetch OpKind = 7
	// OpGroupCreate creates group GroupID named Name with User as its first member and admin.
	OpGroupCreate OpKind = 8
	// OpGroupAdd adds User to group GroupID on behalf of admin By.
	OpGroupAdd OpKind = 9
	// OpGroupLeave removes User from group GroupID.
	OpGroupLeave OpKind = 10
)

func (k OpKind) String() string {
	switch k {
	case OpAppend:
		return "append"
	case OpAck:
		return "ack"
	case OpAckUpTo:
		return "ack-up-to"
	case OpSetLastSeen:
		return "set-last-seen"
	case OpSweepDedup:
		return "sweep-dedup"
	case OpKeyUpload:
		return "key-upload"
	case OpKeyFetch:
		return "key-fetch"
	case OpGroupCreate:
		return "group-create"
	case OpGroupAdd:
		return "group-add"
	case OpGroupLeave:
		return "group-leave"
	}
	return fmt.Sprintf("OpKind(%d)", uint8(k))
}

// Op is one state change of the store. Every input that the outcome depends on is a field,
// including time and the entry tag, so replaying the same ops on the same state gives the same
// result on every replica. Fields that a kind does not use must be zero.
type Op struct {
	Kind OpKind
	// User is the inbox owner, the owner of the key bundle, the group creator, the member to
	// add or the member who leaves. OpSweepDedup leaves it empty.
	User string

	Seq uint64 // OpAck: the entry to delete; OpAckUpTo: the highest seq to delete
	Tag uint64 // OpAppend: the new entry's tag, chosen by the proposer; OpAck: the tag to match

	EntryKind uint8  // OpAppend: Entry.Kind
	Sender    string // OpAppend: Entry.Sender
	// TimeMS is the accept time of OpAppend, the current time of OpSweepDedup and the creation
	// time of OpGroupCreate, in ms since the epoch.
	TimeMS uint64
	Body   []byte // OpAppend: Entry.Body

	Dedup        *DedupKey // OpAppend: nil for no dedup
	Order        *OrderKey // OpAppend: nil for no ordering gate
	DedupUntilMS uint64    // OpAppend: the dedup and order records written expire at this time

	LastSeenSec uint64 // OpSetLastSeen: unix seconds

	// Bundle is the key bundle of OpKeyUpload, or nil to add Prekeys to the stored bundle. The
	// store keeps it and Prekeys until the op is applied, so the caller must not change them.
	Bundle  *KeyBundle
	Prekeys [][]byte // OpKeyUpload: one-time prekeys, appended to the pool in this order

	GroupID string // group ops: the group, chosen by the proposer of OpGroupCreate
	Name    string // OpGroupCreate: the group's name
	By      string // OpGroupAdd: the member who requests the addition, who must be an admin
}

// Result is the outcome of one Op. Each field is set only by the kinds named in its comment.
type Result struct {
	Seq uint64 // OpAppend
	Tag uint64 // OpAppend
	// Duplicate reports an append that repeated a live dedup key or order position and stored
	// nothing, or an OpGroupAdd of a user who is already a member.
	Duplicate bool
	// Err is a rejection of this op alone, such as ErrInboxFull, ErrInvalidRequest or one of
	// the key-bundle and group errors listed at Store.Do.
	Err error

	// More reports an OpSweepDedup that reached sweepLimit and left expired records for the
	// next sweep. MarshalResults does not carry it: sweeps are never forwarded.
	More bool

	Count  int        // OpKeyUpload, OpKeyFetch: one-time prekeys in the pool after the op
	Bundle *KeyBundle // OpKeyFetch: the user's key bundle
	Prekey []byte     // OpKeyFetch: the removed one-time prekey, nil when the pool was empty
	Group  *Group     // group ops: the group after the op, nil once the last member has left
}

// maxCachedUsers bounds the metadata cache. When a batch starts with more users cached, the
// cache is dropped and refilled from Pebble on demand, which costs one read per user.
const maxCachedUsers = 1 << 17

// sweepLimit bounds the dedup records one OpSweepDedup deletes, so a sweep never makes a huge
// batch. A sweep that reaches it reports More, and the commit loop or the raft leader that
// queued it sweeps again at once.
const sweepLimit = 4096

// ApplyOps applies ops in order as one Pebble batch, commits it with an fsync and returns one
// Result per op. Rejections of single ops (a full inbox, an invalid user name) are reported in
// Result.Err and do not affect the other ops. A non-nil error means that the whole batch
// failed. It wraps ErrCommitFailed when the ops may or may not be on disk. Otherwise nothing
// was applied, and it wraps ErrUnavailable, ErrClosed, ErrCorrupted or a Pebble read error.
//
// ApplyOps is safe to call concurrently with the store's own commit loop, which uses it too.
// A store opened with Options.Replicated rejects it with ErrInvalidRequest, because its writes
// go through ApplyReplicated.
// The outcome depends only on ops, the prior state and the limits of Options: MaxInbox,
// MaxPrekeys, MaxGroupSize and MaxGroupsPerUser.
func (s *Store) ApplyOps(ops []Op) ([]Result, error) {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()

	if s.opts.Replicated {
		return nil, fmt.Errorf("%w: the store is replicated, so local writes would make replicas diverge; write through the raft leader", ErrInvalidRequest)
	}
	db, err := s.writableDB()
	if err != nil {
		return nil, err
	}
	return s.applyBatch(db, ops, nil, pebble.Sync)
}

// applyBatch applies ops as one batch of db, plus the keys that extra writes, and commits it
// with opts. The caller holds applyMu.
func (s *Store) applyBatch(db *pebble.DB, ops []Op, extra func(*pebble.Batch) error, opts *pebble.WriteOptions) ([]Result, error) {
	s.trimCaches()
	if err := s.dedup.prepare(db); err != nil {
		return nil, fmt.Errorf("storage: read the dedup expiry index: %w", err)
	}

	a := applier{store: s, batch: db.NewIndexedBatch()}
	defer a.batch.Close()

	results := make([]Result, len(ops))
	var err error
	for i := range ops {
		results[i], err = a.apply(&ops[i])
		if err != nil {
			// The caches may already hold changes of earlier ops in this batch.
			s.resetCaches()
			return nil, fmt.Errorf("storage: apply op %d (%s, user %q): %w", i, ops[i].Kind, ops[i].User, err)
		}
	}
	if err := a.writeMeta(); err != nil {
		s.resetCaches()
		return nil, fmt.Errorf("storage: write inbox metadata: %w", err)
	}
	if extra != nil {
		if err := extra(a.batch); err != nil {
			s.resetCaches()
			return nil, fmt.Errorf("storage: add to batch: %w", err)
		}
	}

	if a.batch.Empty() {
		return results, nil
	}
	s.hideUncommitted(a.appended)
	s.holdReaders(a.written)
	if err := commitBatch(a.batch, opts); err != nil {
		s.failCommit(err)
		s.releaseReaders()
		return nil, fmt.Errorf("%w: %w", ErrCommitFailed, err)
	}
	s.revealCommitted(a.appended)
	s.releaseReaders()

	s.stats.commits.Add(1)
	s.stats.ops.Add(uint64(len(ops)))
	s.stats.appends.Add(uint64(a.appendCount))
	s.stats.backlog.Add(a.backlog)
	return results, nil
}

// commitBatch commits b with opts, an fsync unless opts is pebble.NoSync. Pebble reports a
// failed WAL write or fsync through Logger.Fatalf, which pebbleLogger turns into a
// *pebbleFatal panic that is recovered here. Any other panic is not ours to handle and
// propagates.
func commitBatch(b *pebble.Batch, opts *pebble.WriteOptions) (err error) {
	defer func() {
		if r := recover(); r != nil {
			fatal, ok := r.(*pebbleFatal)
			if !ok {
				panic(r)
			}
			err = fatal
		}
	}()
	return b.Commit(opts)
}

// appendedUser records, for one batch, the lastSeq a user's inbox had before the batch.
type appendedUser struct {
	user         string
	committedSeq uint64
}

// applier applies ops to one indexed batch. Reads go through the batch, so every op reads the
// writes of the ops before it.
type applier struct {
	store       *Store
	batch       *pebble.Batch
	dirty       []string // users whose metadata changed, in first-change order
	dirtySet    map[string]bool
	appended    []appendedUser
	appendedSet map[string]bool
	appendCount int
	backlog     int64           // change of the unacked entries of all inboxes
	written     map[string]bool // key-bundle and group keys that readers must not see before the commit
}

func (a *applier) apply(op *Op) (Result, error) {
	if op.Kind != OpSweepDedup {
		if err := validateUser(op.User); err != nil {
			return Result{Err: fmt.Errorf("%s: %w", op.Kind, err)}, nil
		}
	}
	switch op.Kind {
	case OpAppend:
		return a.appendEntry(op)
	case OpAck:
		return Result{}, a.ack(op.User, op.Seq, op.Tag)
	case OpAckUpTo:
		return Result{}, a.ackUpTo(op.User, op.Seq)
	case OpSetLastSeen:
		return Result{}, a.batch.Set(lastSeenKey(op.User), beUint64(op.LastSeenSec), nil)
	case OpSweepDedup:
		return a.sweepDedup(op.TimeMS)
	case OpKeyUpload:
		return a.uploadKeys(op)
	case OpKeyFetch:
		return a.fetchKeys(op.User)
	case OpGroupCreate:
		return a.createGroup(op)
	case OpGroupAdd:
		return a.addToGroup(op)
	case OpGroupLeave:
		return a.leaveGroup(op)
	}
	return Result{Err: fmt.Errorf("%w: unknown op kind %d", ErrInvalidRequest, uint8(op.Kind))}, nil
}

func (a *applier) appendEntry(op *Op) (Result, error) {
	var id []byte
	var old dedupRecord
	var oldFound bool
	if op.Dedup != nil {
		id = dedupID(op.Dedup)
		if !a.store.dedup.absent(op.Dedup) {
			var err error
			old, oldFound, err = a.getDedup(id)
			if err != nil {
				return Result{}, err
			}
		}
		if oldFound && op.TimeMS < old.untilMS {
			return Result{Seq: old.seq, Tag: old.tag, Duplicate: true}, nil
		}
	}

	if op.Order != nil {
		res, proceed, err := a.checkOrder(op)
		if err != nil || !proceed {
			return res, err
		}
	}

	meta, err := a.meta(op.User)
	if err != nil {
		return Result{}, err
	}
	if meta.unacked >= uint64(a.store.opts.MaxInbox) {
		return Result{Err: fmt.Errorf("%w: user %q has %d unacked entries", ErrInboxFull, op.User, meta.unacked)}, nil
	}
	a.noteAppend(op.User, meta)

	meta.lastSeq++
	meta.unacked++
	a.backlog++
	a.markDirty(op.User)
	if err := a.batch.Set(inboxKey(op.User, meta.lastSeq), encodeEntry(op), nil); err != nil {
		return Result{}, err
	}

	if id != nil {
		if oldFound {
			// The old record has expired: drop its index key so the sweep never deletes the
			// record written below.
			if err := a.batch.Delete(dedupExpiryKey(old.untilMS, id), nil); err != nil {
				return Result{}, err
			}
		}
		rec := dedupRecord{untilMS: op.DedupUntilMS, seq: meta.lastSeq, tag: op.Tag}
		if err := a.batch.Set(dedupKey(id), rec.encode(), nil); err != nil {
			return Result{}, err
		}
		if err := a.batch.Set(dedupExpiryKey(op.DedupUntilMS, id), nil, nil); err != nil {
			return Result{}, err
		}
		a.store.dedup.wrote(op.Dedup, op.DedupUntilMS)
	}
	a.appendCount++
	return Result{Seq: meta.lastSeq, Tag: op.Tag}, nil
}

// checkOrder applies the ordering gate of an append (see OrderKey). When the append is next in
// its stream it records its N and reports proceed; the record is written before the inbox
// check, so an append rejected as ErrInboxFull counts as applied.
func (a *applier) checkOrder(op *Op) (res Result, proceed bool, err error) {
	id := orderID(op.User, op.Sender, op.Order.Stream)
	rec, stored, err := a.getOrder(id)
	if err != nil {
		return Result{}, false, err
	}
	found := stored && op.TimeMS < rec.untilMS

	var last uint64
	if found {
		last = rec.lastN
	}
	if op.Order.Base > 0 {
		last = max(last, op.Order.Base-1)
	}
	switch {
	case op.Order.N <= last:
		return Result{Duplicate: true}, false, nil
	case op.Order.N > last+1:
		return Result{Err: fmt.Errorf("%w: stream %x to %q expects %d, got %d", ErrOutOfOrder, op.Order.Stream, op.User, last+1, op.Order.N)}, false, nil
	}

	if rec.untilMS != 0 && rec.untilMS != op.DedupUntilMS {
		if err := a.batch.Delete(orderExpiryKey(rec.untilMS, id), nil); err != nil {
			return Result{}, false, err
		}
	}
	next := orderRecord{untilMS: op.DedupUntilMS, lastN: op.Order.N}
	if err := a.batch.Set(orderKey(id), next.encode(), nil); err != nil {
		return Result{}, false, err
	}
	a.store.orders[string(id)] = next
	if err := a.batch.Set(orderExpiryKey(op.DedupUntilMS, id), nil, nil); err != nil {
		return Result{}, false, err
	}
	return Result{}, true, nil
}

func (a *applier) ack(user string, seq, tag uint64) error {
	key := inboxKey(user, seq)
	value, closer, err := a.batch.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	storedTag, err := tagOfEntry(value)
	closer.Close()
	if err != nil {
		return err
	}
	if storedTag != tag {
		return nil
	}

	meta, err := a.meta(user)
	if err != nil {
		return err
	}
	if meta.unacked == 0 {
		return fmt.Errorf("%w: user %q has entry %d but an unacked count of 0", ErrCorrupted, user, seq)
	}
	meta.unacked--
	a.backlog--
	if seq == meta.ackedThrough+1 {
		meta.ackedThrough = seq
	}
	a.markDirty(user)
	return a.batch.Delete(key, nil)
}

func (a *applier) ackUpTo(user string, upTo uint64) error {
	meta, err := a.meta(user)
	if err != nil {
		return err
	}
	// Never move ackedThrough past lastSeq: readers skip seqs at or below it, so later
	// appends would be hidden.
	upTo = min(upTo, meta.lastSeq)
	if upTo <= meta.ackedThrough {
		return nil
	}
	if meta.unacked == meta.lastSeq-meta.ackedThrough {
		return a.ackRange(user, meta, upTo)
	}

	iter, err := a.batch.NewIter(&pebble.IterOptions{
		LowerBound: inboxKey(user, meta.ackedThrough+1),
		UpperBound: inboxKey(user, upTo+1),
	})
	if err != nil {
		return err
	}
	var keys [][]byte
	for iter.First(); iter.Valid(); iter.Next() {
		keys = append(keys, append([]byte(nil), iter.Key()...))
	}
	if err := errors.Join(iter.Error(), iter.Close()); err != nil {
		return err
	}

	if uint64(len(keys)) > meta.unacked {
		return fmt.Errorf("%w: user %q has %d entries up to seq %d but an unacked count of %d",
			ErrCorrupted, user, len(keys), upTo, meta.unacked)
	}
	for _, key := range keys {
		if err := a.batch.Delete(key, nil); err != nil {
			return err
		}
	}
	meta.unacked -= uint64(len(keys))
	a.backlog -= int64(len(keys))
	meta.ackedThrough = upTo
	a.markDirty(user)
	return nil
}

// ackRange deletes the entries of user's inbox from ackedThrough+1 to upTo. The caller has
// checked that the inbox has no holes, so every seq above ackedThrough still has its entry
// and the keys are known without an iterator, which cost more than the rest of an ACK2.
// Holes come only from v1 acks of entries after the oldest one.
func (a *applier) ackRange(user string, meta *userMeta, upTo uint64) error {
	for seq := meta.ackedThrough + 1; seq <= upTo; seq++ {
		if err := a.batch.Delete(inboxKey(user, seq), nil); err != nil {
			return err
		}
	}
	n := upTo - meta.ackedThrough
	meta.unacked -= n
	a.backlog -= int64(n)
	meta.ackedThrough = upTo
	a.markDirty(user)
	return nil
}

func (a *applier) sweepDedup(nowMS uint64) (Result, error) {
	moreDedup, err := a.sweepIndex(tagDedupByTS, tagDedup, nowMS)
	if err != nil {
		return Result{}, err
	}
	if !moreDedup {
		a.store.dedup.swept(nowMS)
	}
	moreOrder, err := a.sweepIndex(tagOrderByTS, tagOrder, nowMS)
	if err != nil {
		return Result{}, err
	}
	return Result{More: moreDedup || moreOrder}, nil
}

// sweepIndex deletes up to sweepLimit records of table recordTag whose expiry index entries,
// in table indexTag, are at or before nowMS.
func (a *applier) sweepIndex(indexTag, recordTag byte, nowMS uint64) (more bool, err error) {
	lower := []byte{indexTag}
	upper := []byte{indexTag + 1}
	if nowMS < math.MaxUint64 {
		upper = binary.BigEndian.AppendUint64([]byte{indexTag}, nowMS+1)
	}
	iter, err := a.batch.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return false, err
	}
	var keys [][]byte
	for iter.First(); iter.Valid() && len(keys) < sweepLimit; iter.Next() {
		keys = append(keys, append([]byte(nil), iter.Key()...))
	}
	more = iter.Valid()
	if err := errors.Join(iter.Error(), iter.Close()); err != nil {
		return false, err
	}

	for _, key := range keys {
		record := append([]byte{recordTag}, key[1+8:]...)
		if err := a.batch.Delete(record, nil); err != nil {
			return false, err
		}
		if err := a.batch.Delete(key, nil); err != nil {
			return false, err
		}
	}
	return more, nil
}

// getOrder returns the order record of stream id, from the cache of records
// this store has written or read since its caches were last reset, else from
// Pebble. Every append of a session reads its stream's record, and the cache
// saves that read for all but the stream's first append.
func (a *applier) getOrder(id []byte) (orderRecord, bool, error) {
	if rec, ok := a.store.orders[string(id)]; ok {
		return rec, true, nil
	}
	value, closer, err := a.batch.Get(orderKey(id))
	if errors.Is(err, pebble.ErrNotFound) {
		return orderRecord{}, false, nil
	}
	if err != nil {
		return orderRecord{}, false, err
	}
	rec, err := decodeOrder(value)
	closer.Close()
	if err != nil {
		return orderRecord{}, false, err
	}
	a.store.orders[string(id)] = rec
	return rec, true, nil
}

func (a *applier) getDedup(id []byte) (dedupRecord, bool, error) {
	value, closer, err := a.batch.Get(dedupKey(id))
	if errors.Is(err, pebble.ErrNotFound) {
		return dedupRecord{}, false, nil
	}
	if err != nil {
		return dedupRecord{}, false, err
	}
	defer closer.Close()
	rec, err := decodeDedup(value)
	return rec, err == nil, err
}

// meta returns the cached metadata of user's inbox, loading it on a miss. Callers change it
// in place and call markDirty.
func (a *applier) meta(user string) (*userMeta, error) {
	if m, ok := a.store.cache[user]; ok {
		return m, nil
	}
	m := &userMeta{}
	value, closer, err := a.batch.Get(metaKey(user))
	switch {
	case errors.Is(err, pebble.ErrNotFound):
	case err != nil:
		return nil, err
	default:
		*m, err = decodeMeta(value)
		closer.Close()
		if err != nil {
			return nil, fmt.Errorf("user %q: %w", user, err)
		}
	}
	a.store.cache[user] = m
	return m, nil
}

func (a *applier) markDirty(user string) {
	if a.dirtySet == nil {
		a.dirtySet = make(map[string]bool)
	}
	if !a.dirtySet[user] {
		a.dirtySet[user] = true
		a.dirty = append(a.dirty, user)
	}
}

// noteAppend remembers the committed lastSeq of user before the batch's first append to it.
func (a *applier) noteAppend(user string, meta *userMeta) {
	if a.appendedSet == nil {
		a.appendedSet = make(map[string]bool)
	}
	if a.appendedSet[user] {
		return
	}
	a.appendedSet[user] = true
	a.appended = append(a.appended, appendedUser{user: user, committedSeq: meta.lastSeq})
}

// writeMeta stores the metadata of every changed inbox once per batch, in first-change order.
func (a *applier) writeMeta() error {
	for _, user := range a.dirty {
		if err := a.batch.Set(metaKey(user), a.store.cache[user].encode(), nil); err != nil {
			return err
		}
	}
	return nil
}

// hideUncommitted limits readers to each appended inbox's committed entries. Pebble makes a
// batch readable before its fsync returns, and a batch whose commit fails may vanish on
// reopen, so without this limit a reader could deliver a seq that is later reused.
func (s *Store) hideUncommitted(appended []appendedUser) {
	if len(appended) == 0 {
		return
	}
	s.visMu.Lock()
	defer s.visMu.Unlock()
	for _, u := range appended {
		if _, ok := s.visibleSeq[u.user]; !ok {
			s.visibleSeq[u.user] = u.committedSeq
		}
	}
}

// revealCommitted lets readers see the entries of a batch that is now on disk. The caller
// holds applyMu, so the cache contains the batch's metadata.
func (s *Store) revealCommitted(appended []appendedUser) {
	if len(appended) == 0 {
		return
	}
	s.visMu.Lock()
	defer s.visMu.Unlock()
	for _, u := range appended {
		s.visibleSeq[u.user] = s.cache[u.user].lastSeq
	}
}

// trimCaches drops the metadata cache and the reader limits once they grow past
// maxCachedUsers. It runs between batches, when every limit equals the committed state, so
// dropping a limit hides nothing that should stay hidden.
func (s *Store) trimCaches() {
	if len(s.cache) > maxCachedUsers {
		s.cache = make(map[string]*userMeta)
	}
	if len(s.orders) > maxCachedUsers {
		s.orders = make(map[string]orderRecord)
	}
	s.visMu.Lock()
	if len(s.visibleSeq) > maxCachedUsers {
		s.visibleSeq = make(map[string]uint64)
	}
	s.visMu.Unlock()
}

func beUint64(v uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, v)
}

// dedupUntil returns the DedupUntilMS for an append accepted at timeMS, saturating instead
// of wrapping around.
// expiryStepMS is the step that dedup and order expiry times are rounded up
// to. Consecutive appends of one stream then share the expiry time of its
// order record, so an append rewrites the record alone instead of also
// deleting and writing its expiry index key. Records live up to one step
// longer than the dedup window.
const expiryStepMS = 10_000

func dedupUntil(timeMS uint64, window time.Duration) uint64 {
	w := uint64(window.Milliseconds())
	if timeMS > math.MaxUint64-w-expiryStepMS {
		return math.MaxUint64
	}
	until := timeMS + w
	return (until + expiryStepMS - 1) / expiryStepMS * expiryStepMS
}
