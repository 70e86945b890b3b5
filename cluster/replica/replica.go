package replica

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/iris-im/iris/storage"
)

// Defaults for zero Config fields. The timeouts give a leader failover well under a second on
// a LAN, because followers start an election 300-600 ms after the last heartbeat. The lease
// equals the heartbeat timeout rather than raft's usual half, because a 100 ms lease made the
// leader step down in BenchmarkBatcherAppends (three replicas in one process on 2 cores).
const (
	DefaultHeartbeatTimeout   = 300 * time.Millisecond
	DefaultElectionTimeout    = 300 * time.Millisecond
	DefaultLeaderLeaseTimeout = 300 * time.Millisecond
	DefaultSnapshotInterval   = 2 * time.Minute
	DefaultSnapshotThreshold  = 8192
	DefaultTrailingLogs       = 10240
	DefaultSweepInterval      = time.Minute
)

// commitTimeout is raft's CommitTimeout; see Start.
const commitTimeout = 5 * time.Millisecond

// membershipTimeout bounds how long AddVoter and RemoveServer wait to enqueue the change.
const membershipTimeout = 10 * time.Second

// retainedSnapshots is how many snapshots raft keeps in <Dir>/snapshots.
const retainedSnapshots = 2

// ErrNotLeader is wrapped by the error of a write sent to a replica that is not the leader.
// errors.As with *NotLeaderError gives the leader to retry on.
var ErrNotLeader = errors.New("replica: not the raft leader")

// ErrShutdown is returned by calls made after Shutdown.
var ErrShutdown = errors.New("replica: shut down")

// NotLeaderError names the current leader as recorded by this replica. Both fields are empty
// while no leader is known, for example during an election.
type NotLeaderError struct {
	LeaderID   string
	LeaderAddr string
}

func (e *NotLeaderError) Error() string {
	if e.LeaderID == "" {
		return "replica: not the raft leader, and no leader is known yet; retry after the election"
	}
	return fmt.Sprintf("replica: not the raft leader; the leader is %s at %s", e.LeaderID, e.LeaderAddr)
}

// Unwrap returns ErrNotLeader.
func (e *NotLeaderError) Unwrap() error { return ErrNotLeader }

// Peer is one voter of the initial raft configuration.
type Peer struct {
	ID   string
	Addr string // host:port that the other replicas dial
}

// Config configures Start.
type Config struct {
	// ID identifies this replica in the raft group. It must be unique and never reused by a
	// different node, because raft records votes by ID.
	ID string
	// BindAddr is the host:port the raft listener binds, for example "10.0.0.5:7400".
	BindAddr string
	// AdvertiseAddr is the host:port other replicas dial. Empty means the listener's address,
	// which is only right when BindAddr names a routable address.
	AdvertiseAddr string
	// Dir holds the raft log database (Dir/raft-log) and snapshots (Dir/snapshots). It is
	// created if missing.
	Dir string
	// Store is the replicated store. It must be opened with storage.Options.Replicated, and
	// the caller closes it after Shutdown.
	Store *storage.Store
	// Bootstrap is the initial set of voters, usually every core including this one, listed
	// the same way on each. It is used only when Dir holds no raft state yet, so a restarted
	// replica rejoins from its log. Empty means this replica waits to be added by the leader
	// with AddVoter.
	Bootstrap []Peer
	// TLS, when set, turns on mutual TLS for raft traffic. Certificates is this node's
	// certificate, presented as server and as client; RootCAs and ClientCAs are the cluster
	// CA. A peer whose certificate does not verify against them cannot connect. Nil means
	// plain TCP.
	TLS *tls.Config

	// Zero timeouts mean the Default constants. ElectionTimeout must be at least
	// HeartbeatTimeout, and LeaderLeaseTimeout at most HeartbeatTimeout.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	// SnapshotInterval is how often raft checks whether SnapshotThreshold entries have been
	// applied since the last snapshot and, if so, snapshots the store. Zero means
	// DefaultSnapshotInterval.
	SnapshotInterval time.Duration
	// SnapshotThreshold is the number of entries since the last snapshot that makes raft take
	// another one. Zero means DefaultSnapshotThreshold.
	SnapshotThreshold uint64
	// TrailingLogs is the number of entries kept in the log after a snapshot, so a follower
	// that lags by less can catch up without a snapshot. Zero means DefaultTrailingLogs.
	TrailingLogs uint64
	// SweepInterval is how often the leader proposes an OpSweepDedup stamped with its clock.
	// Zero means DefaultSweepInterval; negative turns sweeps off.
	SweepInterval time.Duration
	// Logger receives the replica's and raft's logs. Nil means slog.Default().
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.HeartbeatTimeout <= 0 {
		c.HeartbeatTimeout = DefaultHeartbeatTimeout
	}
	if c.ElectionTimeout <= 0 {
		c.ElectionTimeout = DefaultElectionTimeout
	}
	if c.LeaderLeaseTimeout <= 0 {
		c.LeaderLeaseTimeout = min(DefaultLeaderLeaseTimeout, c.HeartbeatTimeout)
	}
	if c.SnapshotInterval <= 0 {
		c.SnapshotInterval = DefaultSnapshotInterval
	}
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = DefaultSnapshotThreshold
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = DefaultTrailingLogs
	}
	if c.SweepInterval == 0 {
		c.SweepInterval = DefaultSweepInterval
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

func (c *Config) validate() error {
	switch {
	case c.ID == "":
		return errors.New("replica: Config.ID is empty; set it to this node's unique raft ID")
	case c.BindAddr == "":
		return errors.New("replica: Config.BindAddr is empty; set it to the host:port for raft traffic")
	case c.Dir == "":
		return errors.New("replica: Config.Dir is empty; set it to the directory for the raft log and snapshots")
	case c.Store == nil:
		return errors.New("replica: Config.Store is nil; open a storage.Store with Options.Replicated")
	}
	for _, p := range c.Bootstrap {
		if p.ID == "" || p.Addr == "" {
			return fmt.Errorf("replica: Config.Bootstrap entry %+v needs both ID and Addr", p)
		}
	}
	return nil
}

// Replica is one member of the raft group that replicates a storage.Store. Writes go through
// the leader's Apply and are acknowledged after a majority has the entry in its log. Every
// replica applies committed entries to its own store, so reads are local.
type Replica struct {
	id     string
	addr   string
	store  *storage.Store
	logger *slog.Logger

	raft      *raft.Raft
	fsm       *fsm
	logStore  *LogStore
	transport *raft.NetworkTransport
	stream    *streamLayer
	observer  *raft.Observer

	stop         chan struct{} // closed by Shutdown
	wg           sync.WaitGroup
	shutdownOnce sync.Once
	shutdownErr  error
}

// Start opens the raft log in cfg.Dir, starts the raft listener and joins or bootstraps the
// group. It returns once the replica runs; it does not wait for a leader.
func Start(cfg Config) (*Replica, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	logger := cfg.Logger.With("node", cfg.ID)
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("replica: create directory %s: %w", cfg.Dir, err)
	}
	removeStaleCheckpoints(cfg.Store.Dir(), logger)

	r := &Replica{id: cfg.ID, store: cfg.Store, logger: logger, stop: make(chan struct{})}
	ok := false
	defer func() {
		if !ok {
			r.closeResources()
		}
	}()

	var err error
	if r.logStore, err = OpenLogStore(filepath.Join(cfg.Dir, "raft-log"), logger); err != nil {
		return nil, err
	}
	hclogger := newHCLogAdapter(logger, "raft")
	snapshots, err := raft.NewFileSnapshotStoreWithLogger(cfg.Dir, retainedSnapshots, hclogger)
	if err != nil {
		return nil, fmt.Errorf("replica: open snapshot store in %s: %w", cfg.Dir, err)
	}
	if err := r.startTransport(&cfg, hclogger); err != nil {
		return nil, err
	}

	r.fsm = newFSM(cfg.Store, logger, r.stop)
	if err := r.restoreNewerSnapshot(snapshots); err != nil {
		return nil, err
	}

	conf := raft.DefaultConfig()
	conf.LocalID = raft.ServerID(cfg.ID)
	conf.HeartbeatTimeout = cfg.HeartbeatTimeout
	conf.ElectionTimeout = cfg.ElectionTimeout
	// Followers learn that an entry committed from the leader's next AppendEntries. Raft
	// sends one after CommitTimeout without new entries (default 50 ms), and a core that
	// forwarded a write waits for its own copy to apply it, so the default added up to 50 ms
	// to every forwarded write.
	conf.CommitTimeout = commitTimeout
	conf.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	conf.SnapshotInterval = cfg.SnapshotInterval
	conf.SnapshotThreshold = cfg.SnapshotThreshold
	conf.TrailingLogs = cfg.TrailingLogs
	// BatchApplyCh stays off: with it, raft (v1.7.2) buffers its apply channel, and an Apply
	// racing with Shutdown can enqueue a future that is never answered. The leader loop still
	// gathers concurrent Apply calls into one log write.
	conf.BatchApplyCh = false
	// The store keeps its own state and applied index on disk, so a start replays only the
	// log entries above the snapshot instead of reloading the whole snapshot.
	conf.NoSnapshotRestoreOnStart = true
	conf.Logger = hclogger

	logs, err := raft.NewLogCache(512, r.logStore)
	if err != nil {
		return nil, fmt.Errorf("replica: create raft log cache: %w", err)
	}
	if err := r.bootstrapIfNew(conf, logs, snapshots, cfg.Bootstrap); err != nil {
		return nil, err
	}
	if r.raft, err = raft.NewRaft(conf, r.fsm, logs, r.logStore, snapshots, r.transport); err != nil {
		return nil, fmt.Errorf("replica: start raft: %w", err)
	}

	r.startBackground(cfg.SweepInterval)
	ok = true
	logger.Info("replica: started", "addr", r.addr, "tls", cfg.TLS != nil, "dir", cfg.Dir,
		"applied_index", r.fsm.applied.Load(), "heartbeat_timeout", cfg.HeartbeatTimeout,
		"election_timeout", cfg.ElectionTimeout)
	return r, nil
}

func (r *Replica) startTransport(cfg *Config, hclogger hclog.Logger) error {
	var advertise net.Addr
	if cfg.AdvertiseAddr != "" {
		addr, err := net.ResolveTCPAddr("tcp", cfg.AdvertiseAddr)
		if err != nil {
			return fmt.Errorf("replica: invalid Config.AdvertiseAddr %q: %w", cfg.AdvertiseAddr, err)
		}
		advertise = addr
	}
	var tlsConfig *tls.Config
	if cfg.TLS != nil {
		var err error
		if tlsConfig, err = serverTLSConfig(cfg.TLS); err != nil {
			return err
		}
	}
	stream, err := newStreamLayer(cfg.BindAddr, advertise, tlsConfig, r.logger)
	if err != nil {
		return err
	}
	if tcp, ok := stream.Addr().(*net.TCPAddr); ok && tcp.IP.IsUnspecified() {
		_ = stream.Close()
		return fmt.Errorf("replica: raft listener address %s is not routable; set Config.AdvertiseAddr", tcp)
	}
	r.stream = stream
	r.addr = stream.Addr().String()
	r.transport = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  stream,
		MaxPool: 3,
		Timeout: 10 * time.Second,
		Logger:  hclogger,
	})
	return nil
}

// restoreNewerSnapshot loads the latest local snapshot into the store when the store is
// behind it. That happens after a crash in the middle of a snapshot install, or when the
// store's directory was lost, and raft would otherwise replay only the entries after the
// snapshot onto an incomplete store.
func (r *Replica) restoreNewerSnapshot(snapshots raft.SnapshotStore) error {
	list, err := snapshots.List()
	if err != nil {
		return fmt.Errorf("replica: list snapshots: %w", err)
	}
	applied := r.store.AppliedIndex()
	if len(list) == 0 || list[0].Index <= applied {
		return nil
	}
	meta := list[0]
	r.logger.Warn("replica: store is behind the latest snapshot; restoring it", "applied_index", applied, "snapshot_index", meta.Index, "snapshot", meta.ID)
	_, rc, err := snapshots.Open(meta.ID)
	if err != nil {
		return fmt.Errorf("replica: open snapshot %s: %w", meta.ID, err)
	}
	return r.fsm.Restore(rc)
}

// bootstrapIfNew writes the initial configuration when this replica has no raft state.
func (r *Replica) bootstrapIfNew(conf *raft.Config, logs raft.LogStore, snapshots raft.SnapshotStore, peers []Peer) error {
	if len(peers) == 0 {
		return nil
	}
	existing, err := raft.HasExistingState(logs, r.logStore, snapshots)
	if err != nil {
		return fmt.Errorf("replica: check for existing raft state: %w", err)
	}
	if existing {
		r.logger.Info("replica: raft state found; rejoining without bootstrap")
		return nil
	}
	// NOTE: a core whose disk was wiped has no raft state either, and with Bootstrap set it
	// bootstraps again. Alone it only waits for the leader, which still lists it, but two
	// such cores form a majority of three and start a second history. Operators remove the
	// bootstrap list after the first start (docs/deployment.md); nothing here asks the other
	// cores whether a group already exists.
	var configuration raft.Configuration
	for _, p := range peers {
		configuration.Servers = append(configuration.Servers, raft.Server{
			Suffrage: raft.Voter,
			ID:       raft.ServerID(p.ID),
			Address:  raft.ServerAddress(p.Addr),
		})
	}
	if err := raft.BootstrapCluster(conf, logs, r.logStore, snapshots, r.transport, configuration); err != nil {
		return fmt.Errorf("replica: bootstrap raft group: %w", err)
	}
	r.logger.Info("replica: bootstrapped a new raft group", "voters", len(peers))
	return nil
}

// startBackground starts the leader-change logger and the sweep proposer.
func (r *Replica) startBackground(sweepInterval time.Duration) {
	observations := make(chan raft.Observation, 16)
	r.observer = raft.NewObserver(observations, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	r.raft.RegisterObserver(r.observer)
	r.wg.Add(1)
	go r.logLeaderChanges(observations)

	if sweepInterval > 0 {
		r.wg.Add(1)
		go r.proposeSweeps(sweepInterval)
	}
}

func (r *Replica) logLeaderChanges(observations <-chan raft.Observation) {
	defer r.wg.Done()
	for {
		select {
		case <-r.stop:
			return
		case o := <-observations:
			leader := o.Data.(raft.LeaderObservation)
			r.logger.Info("replica: leader changed", "leader", string(leader.LeaderID), "leader_addr", string(leader.LeaderAddr))
		}
	}
}

// proposeSweeps proposes an OpSweepDedup every interval while this replica leads, stamped
// with the leader's clock so that every replica deletes the same records.
func (r *Replica) proposeSweeps(interval time.Duration) {
	defer r.wg.Done()
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-ticker.C:
		}
		if r.IsLeader() {
			r.sweep(interval)
		}
	}
}

// sweep proposes one OpSweepDedup stamped with this replica's clock, and another with the same
// stamp for as long as the last one reports that it left expired records.
func (r *Replica) sweep(timeout time.Duration) {
	op := storage.Op{Kind: storage.OpSweepDedup, TimeMS: uint64(time.Now().UnixMilli())}
	for {
		results, _, err := r.Apply([]storage.Op{op}, timeout)
		if err != nil {
			if !errors.Is(err, ErrNotLeader) && !errors.Is(err, ErrShutdown) {
				r.logger.Warn("replica: proposing a dedup sweep failed; retrying at the next interval", "err", err)
			}
			return
		}
		if len(results) == 0 || !results[0].More {
			return
		}
		select {
		case <-r.stop:
			return
		default:
		}
	}
}

// Apply proposes ops as one raft entry and waits until it is committed and applied to this
// replica's store. It returns one storage.Result per op and the entry's index, which
// WaitApplied on another replica takes for read-your-writes. timeout bounds the wait for the
// entry to be enqueued, not the commit, which ends when a majority has the entry or this
// replica loses leadership.
//
// On a follower it returns an error wrapping ErrNotLeader, a *NotLeaderError. When leadership
// is lost while the entry is in flight, the entry may or may not commit, and the error wraps
// storage.ErrCommitFailed. Rejections of single ops are in Result.Err, as with
// storage.Store.ApplyOps.
func (r *Replica) Apply(ops []storage.Op, timeout time.Duration) ([]storage.Result, uint64, error) {
	return r.propose(ops, timeout).wait()
}

// proposal is a raft entry proposed by propose and not waited for yet.
type proposal struct {
	r      *Replica
	future raft.ApplyFuture
	err    error // set when the ops could not be encoded
}

// propose hands ops to raft as one entry and returns without waiting for the commit, so that
// a caller can propose the next entry while this one replicates. Raft commits and applies
// entries in proposal order.
func (r *Replica) propose(ops []storage.Op, timeout time.Duration) *proposal {
	data, err := storage.MarshalOps(ops)
	if err != nil {
		return &proposal{r: r, err: fmt.Errorf("replica: encode ops: %w", err)}
	}
	return &proposal{r: r, future: r.raft.Apply(data, timeout)}
}

// wait returns what Apply returns for the proposed entry.
func (p *proposal) wait() ([]storage.Result, uint64, error) {
	if p.err != nil {
		return nil, 0, p.err
	}
	r, future := p.r, p.future
	if err := future.Error(); err != nil {
		return nil, 0, r.raftError(err)
	}
	resp, ok := future.Response().(applyResponse)
	if !ok {
		return nil, 0, fmt.Errorf("replica: unexpected raft response %T for entry %d", future.Response(), future.Index())
	}
	if resp.err != nil {
		return nil, future.Index(), resp.err
	}
	return resp.results, future.Index(), nil
}

// raftError maps an error of a raft future to this package's errors.
func (r *Replica) raftError(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		addr, id := r.raft.LeaderWithID()
		if string(id) == r.id {
			// Raft has not noticed the step-down yet; no other leader is known.
			addr, id = "", ""
		}
		return fmt.Errorf("%w (%w)", &NotLeaderError{LeaderID: string(id), LeaderAddr: string(addr)}, err)
	case errors.Is(err, raft.ErrLeadershipLost):
		return fmt.Errorf("replica: leadership lost while the entry was in flight, so it may or may not commit: %w: %w", storage.ErrCommitFailed, err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrShutdown
	}
	return fmt.Errorf("replica: raft: %w", err)
}

// Leader returns the ID and address of the current leader as recorded by this replica, both
// empty when no leader is known.
func (r *Replica) Leader() (id, addr string) {
	a, i := r.raft.LeaderWithID()
	return string(i), string(a)
}

// IsLeader reports whether this replica is the leader.
func (r *Replica) IsLeader() bool {
	return r.raft.State() == raft.Leader
}

// ID returns the replica's raft ID.
func (r *Replica) ID() string { return r.id }

// Addr returns the address other replicas dial, the advertised address.
func (r *Replica) Addr() string { return r.addr }

// AppliedIndex returns the index of the last raft entry applied to this replica's store.
// Leader no-op entries are never applied, so it can stay below raft's own applied index.
func (r *Replica) AppliedIndex() uint64 {
	return r.fsm.applied.Load()
}

// WaitApplied waits until this replica's store has applied the entry at index, as returned
// by Apply, or ctx ends, or the replica shuts down.
func (r *Replica) WaitApplied(ctx context.Context, index uint64) error {
	for {
		changed := r.fsm.appliedChanged()
		if r.fsm.applied.Load() >= index {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("replica: wait for entry %d (applied %d): %w", index, r.fsm.applied.Load(), ctx.Err())
		case <-r.stop:
			return ErrShutdown
		}
	}
}

// Stats is a view of a replica's raft state for monitoring.
type Stats struct {
	State        string // "Leader", "Follower", "Candidate" or "Shutdown"
	Term         uint64
	LastLogIndex uint64
	CommitIndex  uint64
	// AppliedIndex is the last entry this replica has applied. Raft's own
	// count is taken when it is higher: it includes the leader's no-op
	// entries, which change nothing in the store, so an idle replica shows
	// the commit index instead of one below it.
	AppliedIndex uint64
	Leader       string // leader ID, empty when none is known
	LeaderAddr   string
	Voters       []string // IDs of the voters in the latest configuration, sorted
}

// Stats returns the replica's current raft state.
func (r *Replica) Stats() Stats {
	id, addr := r.Leader()
	s := Stats{
		State:        r.raft.State().String(),
		Term:         r.raft.CurrentTerm(),
		LastLogIndex: r.raft.LastIndex(),
		CommitIndex:  r.raft.CommitIndex(),
		AppliedIndex: max(r.AppliedIndex(), r.raft.AppliedIndex()),
		Leader:       id,
		LeaderAddr:   addr,
	}
	future := r.raft.GetConfiguration()
	if err := future.Error(); err == nil {
		for _, srv := range future.Configuration().Servers {
			if srv.Suffrage == raft.Voter {
				s.Voters = append(s.Voters, string(srv.ID))
			}
		}
		slices.Sort(s.Voters)
	}
	return s
}

// Snapshot makes raft snapshot the store now and compact its log, instead of waiting for
// SnapshotThreshold. Raft rejects it when nothing was applied since the last snapshot.
func (r *Replica) Snapshot() error {
	if err := r.raft.Snapshot().Error(); err != nil {
		return fmt.Errorf("replica: snapshot: %w", err)
	}
	return nil
}

// AddVoter adds a voter to the group, or updates the address of an existing one. It runs on
// the leader only; elsewhere it returns an error wrapping ErrNotLeader. It returns once the
// configuration change is committed; the new voter then catches up from the log or a
// snapshot.
func (r *Replica) AddVoter(id, addr string) error {
	err := r.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, membershipTimeout).Error()
	if err != nil {
		return fmt.Errorf("replica: add voter %s at %s: %w", id, addr, r.raftError(err))
	}
	r.logger.Info("replica: added voter", "voter", id, "voter_addr", addr)
	return nil
}

// RemoveServer removes a server from the group. It runs on the leader only; elsewhere it
// returns an error wrapping ErrNotLeader.
func (r *Replica) RemoveServer(id string) error {
	if err := r.raft.RemoveServer(raft.ServerID(id), 0, membershipTimeout).Error(); err != nil {
		return fmt.Errorf("replica: remove server %s: %w", id, r.raftError(err))
	}
	r.logger.Info("replica: removed server", "server", id)
	return nil
}

// Shutdown stops raft, closes the listener and the raft log. It does not close the store.
// Calls after the first return the first call's result.
func (r *Replica) Shutdown() error {
	r.shutdownOnce.Do(func() {
		close(r.stop)
		r.wg.Wait()
		if r.observer != nil {
			r.raft.DeregisterObserver(r.observer)
		}
		var errs []error
		if err := r.raft.Shutdown().Error(); err != nil {
			errs = append(errs, fmt.Errorf("replica: shut down raft: %w", err))
		}
		errs = append(errs, r.closeResources())
		r.shutdownErr = errors.Join(errs...)
		r.logger.Info("replica: shut down")
	})
	return r.shutdownErr
}

// closeResources closes the transport and the raft log, whichever were opened.
func (r *Replica) closeResources() error {
	var errs []error
	if r.transport != nil {
		if err := r.transport.Close(); err != nil {
			errs = append(errs, fmt.Errorf("replica: close raft transport: %w", err))
		}
	} else if r.stream != nil {
		errs = append(errs, r.stream.Close())
	}
	if r.logStore != nil {
		errs = append(errs, r.logStore.Close())
	}
	return errors.Join(errs...)
}

// removeStaleCheckpoints deletes checkpoint and restore directories that a crash left next to
// the store's directory.
func removeStaleCheckpoints(storeDir string, logger *slog.Logger) {
	stale, _ := filepath.Glob(storeDir + ".snapshot-*")
	stale = append(stale, storeDir+".restore")
	for _, dir := range stale {
		if _, err := os.Stat(dir); err != nil {
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			logger.Warn("replica: removing a stale checkpoint directory failed", "dir", dir, "err", err)
			continue
		}
		logger.Info("replica: removed a stale checkpoint directory", "dir", dir)
	}
}
