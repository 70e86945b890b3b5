package storage

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Defaults for zero Options fields.
const (
	DefaultDedupWindow = 10 * time.Minute
	DefaultMaxInbox    = 10000
	DefaultMaxBatch    = 2048

	DefaultMaxPrekeys       = 1000
	DefaultMaxGroupSize     = 256
	DefaultMaxGroupsPerUser = 500
)

// Options configures Open.
type Options struct {
	Dir string // Pebble directory; created if missing, but its parent must exist

	// DedupWindow is how long a (sender, scope, id) dedup record matches repeats, measured
	// from the first append's TimeMS. Zero means DefaultDedupWindow.
	DedupWindow time.Duration
	// MaxInbox is the maximum number of unacked entries per user. An append beyond it fails
	// with ErrInboxFull. Zero means DefaultMaxInbox.
	MaxInbox int
	// MaxBatch is the maximum number of ops per group commit. Zero means DefaultMaxBatch.
	MaxBatch int
	// MaxPrekeys is the maximum number of one-time prekeys in a user's pool. An upload beyond
	// it fails with ErrPoolFull. Zero means DefaultMaxPrekeys.
	MaxPrekeys int
	// MaxGroupSize is the maximum number of members of a group, admins included. An addition
	// beyond it fails with ErrGroupFull. Zero means DefaultMaxGroupSize.
	MaxGroupSize int
	// MaxGroupsPerUser is the maximum number of groups a user is a member of. Creating or
	// joining one more fails with ErrTooManyGroups. Zero means DefaultMaxGroupsPerUser.
	MaxGroupsPerUser int
	// Logger receives the store's and Pebble's logs. Nil means slog.Default().
	Logger *slog.Logger
	// Replicated marks a store that is one replica of a raft group. Its state may change only
	// through ApplyReplicated, so ApplyOps and the queued writes (Append, Do, Ack, ...) fail
	// with ErrInvalidRequest, and the commit loop does not sweep dedup records on the local
	// clock: the raft leader proposes OpSweepDedup instead. False means a standalone store.
	Replicated bool
	// FS is the file system Pebble uses. Nil means the operating system's (vfs.Default).
	// Tests pass a wrapper that injects errors.
	FS vfs.FS
}

func (o *Options) setDefaults() {
	if o.DedupWindow <= 0 {
		o.DedupWindow = DefaultDedupWindow
	}
	if o.MaxInbox <= 0 {
		o.MaxInbox = DefaultMaxInbox
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = DefaultMaxBatch
	}
	if o.MaxPrekeys <= 0 {
		o.MaxPrekeys = DefaultMaxPrekeys
	}
	if o.MaxGroupSize <= 0 {
		o.MaxGroupSize = DefaultMaxGroupSize
	}
	if o.MaxGroupsPerUser <= 0 {
		o.MaxGroupsPerUser = DefaultMaxGroupsPerUser
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.FS == nil {
		o.FS = vfs.Default
	}
}

// Entry is one message in a user's inbox.
type Entry struct {
	Seq    uint64 // position in the user's inbox, 1, 2, 3, ... assigned at append, never reused
	Tag    uint64 // random per entry; a v1 message id is Seq (8 bytes BE) followed by Tag (8 bytes BE)
	Kind   uint8  // content type, opaque to the store (0x02 plain, 0x10 CBOR, 0x24, 0x34, 0x36)
	Sender string
	TimeMS uint64 // accept time, ms since the epoch, stamped by the proposer
	Body   []byte
}

// AppendRequest describes one entry to add to User's inbox.
type AppendRequest struct {
	User   string // recipient inbox
	Kind   uint8
	Sender string
	TimeMS uint64 // accept time, ms since the epoch; zero means the store's clock at Append
	Body   []byte // kept by the store until done runs, so the caller must not change it

	// Dedup is nil for no dedup. Otherwise a repeat of the same key within
	// Options.DedupWindow returns the first append's result with Duplicate set and stores
	// nothing.
	Dedup *DedupKey

	// Order is nil for no ordering gate. Otherwise the append is applied only in the order
	// of Order.N within its stream; see OrderKey.
	Order *OrderKey
}

// OrderKey keeps the appends of one sender stream to one recipient in the order they were
// sent, even when some are lost on the way and resent: N is the append's position among the
// stream's appends to this recipient, counting from 1, and Base is the lowest N of the stream
// to this recipient still awaiting its result (Base <= N; every append below Base has had
// one). The store expects N = max(last applied N, Base-1) + 1. A lower N is a repeat of an
// applied append: it stores nothing and reports Duplicate (without a seq unless a dedup key
// also matched). A higher N fails with ErrOutOfOrder and stores nothing. An append rejected
// with ErrInboxFull still counts as applied, because its result is final. Order records
// expire after Options.DedupWindow.
type OrderKey struct {
	Stream uint64 // identifies the sending stream, such as one client connection
	N      uint64
	Base   uint64
}

// DedupKey identifies a message as its sender numbered it.
type DedupKey struct {
	Sender string
	Scope  string // the sender's numbering space, for example the recipient or group
	ID     uint64
}

// AppendResult is the outcome of a successful append.
type AppendResult struct {
	Seq, Tag  uint64
	Duplicate bool
}

// Stats counts the work of a store since Open.
type Stats struct {
	Commits       uint64 // successful Pebble commits, one fsync each
	Ops           uint64 // ops in those commits
	Appends       uint64 // entries stored, without duplicates and rejections
	FailedCommits uint64
	Backlog       int64 // unacked entries in all inboxes
}

// Store is a durable set of inboxes. All methods are safe for concurrent use.
type Store struct {
	opts   Options
	dir    string
	logger *slog.Logger

	mu      sync.Mutex // guards queue and closing
	queue   []queuedOp
	closing bool
	wake    chan struct{} // capacity 1; a value means the queue may have work
	loopEnd chan struct{} // closed when the commit loop returns

	// applyMu serializes ApplyOps and guards the fields below it.
	applyMu     sync.Mutex
	cache       map[string]*userMeta
	orders      map[string]orderRecord // order records by stream id, as committed or in the batch being applied
	dedup       dedupIDs               // which dedup keys surely have no record
	closed      bool
	failure     error         // cause of the last failed commit or reopen
	reopenAt    time.Time     // earliest next reopen attempt
	reopenDelay time.Duration // backoff between reopen attempts
	broken      atomic.Bool   // db is nil because of a failure; read without applyMu by the loop

	// dbMu guards db and dbErr. Readers hold it shared while they use db. Only ApplyOps,
	// reopening and Close swap db, all under applyMu too.
	dbMu  sync.RWMutex
	db    *pebble.DB
	dbErr error // the error readers get while db is nil

	// visibleSeq limits what readers see of an inbox to its committed entries. A user that is
	// missing has no uncommitted entries.
	visMu      sync.RWMutex
	visibleSeq map[string]uint64

	// inFlightKeys lists the key-bundle and group keys, and the user-to-group index prefixes,
	// written by the batch whose commit is in flight. inFlightDone is closed when that commit
	// ends. Both are nil between commits.
	inFlightMu   sync.Mutex
	inFlightKeys map[string]bool
	inFlightDone chan struct{}
	waitedReads  atomic.Uint64 // reads that waited for a commit, for tests

	stats struct {
		commits, ops, appends, failedCommits atomic.Uint64
		backlog                              atomic.Int64
	}
}

// Open opens or creates the store in opts.Dir and starts its commit loop. The error names the
// check that failed: a missing parent directory, a Dir that is not a directory, a Dir that is
// not writable, or data that Pebble reports as corrupted (wrapping ErrCorrupted).
func Open(opts Options) (*Store, error) {
	opts.setDefaults()
	if opts.Dir == "" {
		return nil, errors.New("storage: Options.Dir is empty; set it to the Pebble directory")
	}
	dir := filepath.Clean(opts.Dir)
	if err := prepareDir(opts.FS, dir); err != nil {
		return nil, err
	}

	s := &Store{
		opts:        opts,
		dir:         dir,
		logger:      opts.Logger.With("dir", dir),
		wake:        make(chan struct{}, 1),
		loopEnd:     make(chan struct{}),
		cache:       make(map[string]*userMeta),
		orders:      make(map[string]orderRecord),
		visibleSeq:  make(map[string]uint64),
		reopenDelay: minReopenDelay,
	}
	db, err := s.openPebble()
	if err != nil {
		return nil, err
	}
	s.db = db

	go s.runCommitLoop()
	s.logger.Info("storage: opened", "max_inbox", opts.MaxInbox, "max_batch", opts.MaxBatch,
		"dedup_window", opts.DedupWindow, "max_prekeys", opts.MaxPrekeys,
		"max_group_size", opts.MaxGroupSize, "max_groups_per_user", opts.MaxGroupsPerUser)
	return s, nil
}

// prepareDir creates dir if missing and checks that it is a writable directory.
func prepareDir(fsys vfs.FS, dir string) error {
	parent := filepath.Dir(dir)
	info, err := fsys.Stat(parent)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("storage: open %s: parent directory %s does not exist; create it first: %w", dir, parent, err)
	case err != nil:
		return fmt.Errorf("storage: open %s: stat parent directory: %w", dir, err)
	case !info.IsDir():
		return fmt.Errorf("storage: open %s: parent %s is not a directory", dir, parent)
	}

	info, err = fsys.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := fsys.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("storage: create directory %s: %w", dir, err)
		}
	case err != nil:
		return fmt.Errorf("storage: open %s: %w", dir, err)
	case !info.IsDir():
		return fmt.Errorf("storage: open %s: not a directory", dir)
	}

	if err := probeWritable(fsys, dir); err != nil {
		return fmt.Errorf("storage: directory %s is not writable (read-only file system or missing permission?): %w", dir, err)
	}
	return nil
}

// Close runs every queued op, then closes Pebble. Calls after the first return ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return ErrClosed
	}
	s.closing = true
	s.mu.Unlock()
	s.signal()
	<-s.loopEnd

	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	s.closed = true
	s.dbMu.Lock()
	db := s.db
	s.db, s.dbErr = nil, ErrClosed
	s.dbMu.Unlock()

	if db == nil {
		s.logger.Info("storage: closed; Pebble was already closed after a write failure")
		return nil
	}
	if err := closePebble(db); err != nil {
		return fmt.Errorf("storage: close %s: %w", s.dir, err)
	}
	s.logger.Info("storage: closed")
	return nil
}

// AppendOp returns the OpAppend that stores req: it stamps a random tag, the accept time when
// req has none, and the expiry of its dedup and order records from Options.DedupWindow. A
// replicated store proposes this op, so that every replica applies the same values.
func (s *Store) AppendOp(req AppendRequest) Op {
	op := Op{
		Kind:      OpAppend,
		User:      req.User,
		Tag:       rand.Uint64(),
		EntryKind: req.Kind,
		Sender:    req.Sender,
		TimeMS:    req.TimeMS,
		Body:      req.Body,
	}
	if op.TimeMS == 0 {
		op.TimeMS = uint64(time.Now().UnixMilli())
	}
	if req.Dedup != nil {
		key := *req.Dedup
		op.Dedup = &key
	}
	if req.Order != nil {
		key := *req.Order
		op.Order = &key
	}
	if op.Dedup != nil || op.Order != nil {
		op.DedupUntilMS = dedupUntil(op.TimeMS, s.opts.DedupWindow)
	}
	return op
}

// Append queues req for the next group commit and calls done exactly once, from the store's
// commit goroutine, after the batch holding it is fsync'd or has failed. done must not block.
// For appends to the same user, done calls happen in seq order. After Close, done runs at
// once on the calling goroutine with ErrClosed. done may be nil.
func (s *Store) Append(req AppendRequest, done func(AppendResult, error)) {
	op := s.AppendOp(req)
	q := queuedOp{op: op}
	if done != nil {
		q.done = func(r Result, err error) {
			if err != nil {
				done(AppendResult{}, err)
				return
			}
			done(AppendResult{Seq: r.Seq, Tag: r.Tag, Duplicate: r.Duplicate}, nil)
		}
	}
	if !s.enqueue(q) && done != nil {
		done(AppendResult{}, ErrClosed)
	}
}

// AppendSync appends req and waits until it is on disk or has failed.
func (s *Store) AppendSync(req AppendRequest) (AppendResult, error) {
	type outcome struct {
		result AppendResult
		err    error
	}
	ch := make(chan outcome, 1)
	s.Append(req, func(r AppendResult, err error) { ch <- outcome{r, err} })
	o := <-ch
	return o.result, o.err
}

// Ack queues the deletion of entry seq of user's inbox if its tag matches (a v1 ACK). It does
// not wait for the commit, and an ack lost to a failed commit only causes a redelivery.
// Acks after Close are dropped.
func (s *Store) Ack(user string, seq, tag uint64) {
	s.enqueue(queuedOp{op: Op{Kind: OpAck, User: user, Seq: seq, Tag: tag}})
}

// AckUpTo queues the deletion of every entry of user's inbox with Seq <= seq (a v2 cumulative
// ACK2). Like Ack, it does not wait for the commit.
func (s *Store) AckUpTo(user string, seq uint64) {
	s.enqueue(queuedOp{op: Op{Kind: OpAckUpTo, User: user, Seq: seq}})
}

// Submit queues op (an OpAck, OpAckUpTo or OpSetLastSeen) for the next group commit and
// calls done, if it is not nil, once the batch holding it is committed or has failed. done
// runs on the store's commit goroutine and must not block. Appends go through Append, which
// also stamps their tag and dedup expiry.
func (s *Store) Submit(op Op, done func(error)) {
	q := queuedOp{op: op}
	if done != nil {
		q.done = func(_ Result, err error) { done(err) }
	}
	if !s.enqueue(q) && done != nil {
		done(ErrClosed)
	}
}

// Do queues op for the next group commit and calls done, if it is not nil, once the batch
// holding it is committed or has failed. done runs on the store's commit goroutine and must
// not block. It gets the op's Result and, as err, either Result.Err or the failure of the
// whole batch (see ApplyOps). After Close, done runs at once with ErrClosed. Do rejects OpAppend
// with ErrInvalidRequest because Append stamps an append's tag and dedup expiry. It stamps
// the store's clock into an OpGroupCreate whose TimeMS is zero.
//
// Results and op-local errors of the key-bundle and group kinds:
//
//   - OpKeyUpload: Count is the pool size after the upload. A non-nil Bundle replaces the
//     user's keys and keeps the pool. ErrNotFound when Bundle is nil and the user has no
//     bundle; ErrPoolFull when the pool would exceed Options.MaxPrekeys (Count is then the
//     unchanged pool size); ErrInvalidRequest for an empty prekey or a key over 8 KiB.
//     A rejected upload changes nothing.
//   - OpKeyFetch: Bundle, the oldest one-time prekey as Prekey (removed from the pool, nil
//     when the pool is empty) and Count, the prekeys left. ErrNotFound when the user has no
//     bundle.
//   - OpGroupCreate: Group. ErrExists when GroupID is taken; ErrTooManyGroups when the
//     creator is already in Options.MaxGroupsPerUser groups.
//   - OpGroupAdd: Group after the addition, or with Duplicate set and unchanged when User is
//     already a member. ErrNotFound, ErrNotAdmin (By is not an admin, or not a member at all),
//     ErrGroupFull (Options.MaxGroupSize) and ErrTooManyGroups (for User), checked in this
//     order.
//   - OpGroupLeave: Group after the departure, nil when the last member left and the group
//     was deleted. ErrNotFound, ErrNotMember.
//
// Op, including Bundle and Prekeys, must not be changed until done runs.
func (s *Store) Do(op Op, done func(Result, error)) {
	if op.Kind == OpAppend {
		if done != nil {
			done(Result{}, fmt.Errorf("%w: Do takes no %s ops; use Append, which stamps the tag and dedup expiry", ErrInvalidRequest, op.Kind))
		}
		return
	}
	if op.Kind == OpGroupCreate && op.TimeMS == 0 {
		op.TimeMS = uint64(time.Now().UnixMilli())
	}
	if !s.enqueue(queuedOp{op: op, done: done}) && done != nil {
		done(Result{}, ErrClosed)
	}
}

// DoSync runs op through Do and waits until it is committed or has failed.
func (s *Store) DoSync(op Op) (Result, error) {
	type outcome struct {
		result Result
		err    error
	}
	ch := make(chan outcome, 1)
	s.Do(op, func(r Result, err error) { ch <- outcome{r, err} })
	o := <-ch
	return o.result, o.err
}

// SetLastSeen queues storing unixSec as user's last-seen time. It does not wait for the
// commit.
func (s *Store) SetLastSeen(user string, unixSec uint64) {
	s.enqueue(queuedOp{op: Op{Kind: OpSetLastSeen, User: user, LastSeenSec: unixSec}})
}

// Stats returns counters of the work done since Open. Ops/Commits is the mean group-commit
// size.
func (s *Store) Stats() Stats {
	return Stats{
		Commits:       s.stats.commits.Load(),
		Ops:           s.stats.ops.Load(),
		Appends:       s.stats.appends.Load(),
		FailedCommits: s.stats.failedCommits.Load(),
		Backlog:       s.stats.backlog.Load(),
	}
}

// countBacklog sets the backlog count from the inbox metadata in db, one
// record per user that ever had an inbox.
func (s *Store) countBacklog(db *pebble.DB) error {
	iter, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{tagMeta}, UpperBound: []byte{tagMeta + 1}})
	if err != nil {
		return fmt.Errorf("storage: count unacked entries: %w", err)
	}
	defer iter.Close()
	var total int64
	for iter.First(); iter.Valid(); iter.Next() {
		meta, err := decodeMeta(iter.Value())
		if err != nil {
			return fmt.Errorf("storage: count unacked entries of %q: %w", iter.Key()[1:], err)
		}
		total += int64(meta.unacked)
	}
	if err := iter.Error(); err != nil {
		return fmt.Errorf("storage: count unacked entries: %w", err)
	}
	s.stats.backlog.Store(total)
	return nil
}

// resetCaches drops the cached inbox metadata and order records, after a
// batch that failed or a change of the whole Pebble contents: they may hold
// state that never reached Pebble. The caller holds applyMu.
func (s *Store) resetCaches() {
	s.cache = make(map[string]*userMeta)
	s.orders = make(map[string]orderRecord)
	s.dedup = dedupIDs{}
}
