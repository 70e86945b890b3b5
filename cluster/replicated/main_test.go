package replicated

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/iris-im/iris/cluster/replica"
	"github.com/iris-im/iris/internal/testaddr"
	"github.com/iris-im/iris/storage"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(poolRun{m},
		// NOTE: proto.actor's endpoint writer (remote/endpoint_writer.go at v0.0.0-20240822202345)
		// dials a peer up to five times and closes only the last gRPC connection, so
		// each attempt to reach a dead core leaks four connections that keep
		// reconnecting. These are their goroutines.
		goleak.IgnoreTopFunction("google.golang.org/grpc.(*addrConn).resetTransport"),
		goleak.IgnoreTopFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
	)
}

// remotesPerRun is the number of started remotes one run of every test takes: three cores
// for each of the seven tests that call startCores.
const remotesPerRun = 21

// poolRun starts the remotes of every test before the first test runs and stops the ones
// left unused after the last.
//
// NB: remote.Start replaces gRPC's global logger with no lock, and every gRPC goroutine,
// including those that a previous test's connections leave finishing, reads it. The race
// detector flags a Start after any of them unless the two are ordered, so no remote starts
// once gRPC traffic has begun.
type poolRun struct{ m *testing.M }

func (r poolRun) Run() int {
	flag.Parse()
	count := 1
	if f := flag.Lookup("test.count"); f != nil {
		if n, err := strconv.Atoi(f.Value.String()); err == nil && n > 1 {
			count = n
		}
	}
	for range remotesPerRun * count {
		node, err := startRemoteNode()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			stopUnusedRemotes()
			return 1
		}
		remotePool.nodes = append(remotePool.nodes, node)
	}
	code := r.m.Run()
	stopUnusedRemotes()
	return code
}

// remotePool holds the started remotes that no test has taken yet.
var remotePool struct {
	mu    sync.Mutex
	nodes []*remoteNode
}

// remoteNode is an actor system with remoting started on 127.0.0.1.
type remoteNode struct {
	system *actor.ActorSystem
	remote *remote.Remote
	addr   string
}

func startRemoteNode() (*remoteNode, error) {
	quiet := slog.New(slog.DiscardHandler)
	system := actor.NewActorSystem(
		actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return quiet }),
		actor.WithDeadLetterThrottleInterval(time.Millisecond),
	)
	serving := &servingSignal{TransportCredentials: insecure.NewCredentials(), handshake: make(chan struct{})}
	r := remote.NewRemote(system, remote.Configure("127.0.0.1", 0, remote.WithServerOptions(grpc.Creds(serving))))
	r.Start()
	node := &remoteNode{system: system, remote: r, addr: system.Address()}
	if err := serving.wait(node.addr); err != nil {
		node.stop()
		return nil, err
	}
	return node, nil
}

// stop shuts the remote and the actor system down. It does not call the graceful
// remote.Shutdown(true), which writes fields that the gRPC stream goroutines read without a
// lock.
func (n *remoteNode) stop() {
	n.remote.Shutdown(false)
	n.system.Shutdown()
}

// takeRemote returns a started remote from the pool.
func takeRemote(t testing.TB) *remoteNode {
	t.Helper()
	remotePool.mu.Lock()
	defer remotePool.mu.Unlock()
	if len(remotePool.nodes) == 0 {
		t.Fatalf("no started remote is left; raise remotesPerRun to the number of cores the tests start")
	}
	node := remotePool.nodes[0]
	remotePool.nodes = remotePool.nodes[1:]
	return node
}

func stopUnusedRemotes() {
	remotePool.mu.Lock()
	defer remotePool.mu.Unlock()
	for _, node := range remotePool.nodes {
		node.stop()
	}
	remotePool.nodes = nil
}

// Raft timeouts of the test cores: shorter than the defaults so that elections finish
// quickly, long enough for a loaded machine running the race detector.
const (
	testHeartbeat = 200 * time.Millisecond
	testElection  = 200 * time.Millisecond
	testLease     = 200 * time.Millisecond
)

// testWriterName is the PID id of the writer actor on every test core.
const testWriterName = "writer"

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// waitFor polls cond every 5 ms until it returns true, failing the test after timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// freeAddr returns a loopback host:port that was free a moment ago and that no other
// test of this process got.
func freeAddr(t testing.TB) string {
	t.Helper()
	return testaddr.Free(t, "127.0.0.1")
}

// testCore is one core of an in-process cluster: an actor system with remoting and a writer
// actor, and a store made of a local copy, a raft replica, a batcher and the replicated
// front. The store can be stopped and started again on the same directories.
type testCore struct {
	t        *testing.T
	id       string // raft ID
	raftAddr string
	storeDir string
	raftDir  string
	peers    []replica.Peer
	cores    func() []string
	tweak    func(*Config)

	system *actor.ActorSystem
	remote *remote.Remote
	addr   string // remoting address

	local   *storage.Store
	replica *replica.Replica
	batcher *replica.Batcher
	front   atomic.Pointer[Store] // read by the writer actor
	killed  bool                  // killRaft shut the replica down
}

// startCores starts three cores that bootstrap one raft group and waits for a leader.
// tweak, if not nil, changes each core's Config before New.
func startCores(t *testing.T, tweak func(*Config)) []*testCore {
	t.Helper()
	cores := make([]*testCore, 3)
	var peers []replica.Peer
	var addrs []string
	for i := range cores {
		c := &testCore{t: t, id: fmt.Sprintf("c%d", i+1), raftAddr: freeAddr(t), tweak: tweak}
		base := t.TempDir()
		c.storeDir = filepath.Join(base, "store")
		c.raftDir = filepath.Join(base, "raft")
		c.startRemote()
		cores[i] = c
		peers = append(peers, replica.Peer{ID: c.id, Addr: c.raftAddr})
		addrs = append(addrs, c.addr)
	}
	for _, c := range cores {
		c.peers = peers
		c.cores = func() []string { return addrs }
		c.startStore()
	}
	waitLeader(t, cores)
	return cores
}

// startRemote takes a started remote for the core and spawns the core's writer on it.
func (c *testCore) startRemote() {
	c.t.Helper()
	node := takeRemote(c.t)
	c.system, c.remote, c.addr = node.system, node.remote, node.addr
	props := actor.PropsFromProducer(func() actor.Actor { return NewWriter(c.front.Load) })
	if _, err := c.system.Root.SpawnNamed(props, testWriterName); err != nil {
		c.t.Fatalf("%s: spawn writer: %v", c.id, err)
	}
	c.t.Cleanup(node.stop)
}

// stopRemote stops the core's remoting server, so that other cores can no longer reach
// its actors. The cleanup stops the rest of the remote.
func (c *testCore) stopRemote() {
	c.remote.Shutdown(false)
}

// servingSignal is the plain-text transport of a test remote. The first connection it
// accepts is the probe of wait: it reports it and takes it away from gRPC, which then logs
// nothing about it.
//
// The handshake runs on a goroutine that the serving goroutine starts after its one read
// of gRPC's global logger, so waiting for it orders that read before the next
// remote.Start, which writes the logger.
type servingSignal struct {
	credentials.TransportCredentials
	once      sync.Once
	handshake chan struct{}
}

func (s *servingSignal) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	probe := false
	s.once.Do(func() { probe = true })
	if probe {
		conn.Close()
		close(s.handshake)
		return nil, nil, credentials.ErrConnDispatched
	}
	return s.TransportCredentials.ServerHandshake(conn)
}

// wait connects to addr and waits for the server to take the connection. Call it before
// anyone else learns addr.
func (s *servingSignal) wait(addr string) error {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return fmt.Errorf("connect to remote %s: %w", addr, err)
	}
	defer conn.Close()
	select {
	case <-s.handshake:
		return nil
	case <-time.After(5 * time.Second):
		return fmt.Errorf("remote %s took no connection within 5s", addr)
	}
}

// startStore opens the core's local copy, starts its replica and batcher and publishes a
// new replicated Store to the writer.
func (c *testCore) startStore() {
	c.t.Helper()
	if err := os.MkdirAll(filepath.Dir(c.storeDir), 0o755); err != nil {
		c.t.Fatal(err)
	}
	local, err := storage.Open(storage.Options{Dir: c.storeDir, Replicated: true, Logger: testLogger(c.t)})
	if err != nil {
		c.t.Fatalf("%s: open store: %v", c.id, err)
	}

	rep, err := replica.Start(replica.Config{
		ID:                 c.id,
		BindAddr:           c.raftAddr,
		Dir:                c.raftDir,
		Store:              local,
		Bootstrap:          c.peers,
		HeartbeatTimeout:   testHeartbeat,
		ElectionTimeout:    testElection,
		LeaderLeaseTimeout: testLease,
		SweepInterval:      -1,
		Logger:             testLogger(c.t).With("test_core", c.id),
	})
	if err != nil {
		_ = local.Close()
		c.t.Fatalf("%s: start replica: %v", c.id, err)
	}

	c.local, c.replica, c.killed = local, rep, false
	c.batcher = replica.NewBatcher(rep, 0)
	cfg := Config{
		Local:      local,
		Replica:    rep,
		Batcher:    c.batcher,
		System:     c.system,
		Cores:      c.cores,
		WriterName: testWriterName,
		Logger:     testLogger(c.t).With("test_core", c.id),
	}
	if c.tweak != nil {
		c.tweak(&cfg)
	}
	c.front.Store(New(cfg))
	c.t.Cleanup(c.stopStore)
}

// frontCloseWait bounds the wait for the writes in flight when a store stops. Without a
// majority a write never commits, and only the raft shutdown ends its wait.
const frontCloseWait = 2 * time.Second

// stopStore stops the store in the order a core does: the front, then raft, the batcher
// and the local copy. Stopping a stopped store does nothing.
func (c *testCore) stopStore() {
	front := c.front.Swap(nil)
	if front == nil && c.replica == nil {
		return
	}
	closed := make(chan struct{})
	go func() {
		if front != nil {
			front.Close()
		}
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(frontCloseWait):
	}
	if err := c.replica.Shutdown(); err != nil {
		c.t.Errorf("%s: replica shutdown: %v", c.id, err)
	}
	<-closed
	c.batcher.Close()
	if err := c.local.Close(); err != nil && !errors.Is(err, storage.ErrClosed) {
		c.t.Errorf("%s: close store: %v", c.id, err)
	}
	c.replica, c.batcher, c.local = nil, nil, nil
}

// killRaft shuts the core's raft replica down, as a crash would look to the other cores'
// replicas. The front stays open until cleanup.
func (c *testCore) killRaft() {
	c.killed = true
	if err := c.replica.Shutdown(); err != nil {
		c.t.Errorf("%s: replica shutdown: %v", c.id, err)
	}
}

func (c *testCore) running() bool { return c.replica != nil && !c.killed }

// store returns the core's replicated front, failing the test while it is stopped.
func (c *testCore) store() *Store {
	c.t.Helper()
	s := c.front.Load()
	if s == nil {
		c.t.Fatalf("%s: store is stopped", c.id)
	}
	return s
}

// waitLeader waits until one running core leads and every running core names it.
func waitLeader(t testing.TB, cores []*testCore) *testCore {
	t.Helper()
	var leader *testCore
	waitFor(t, 10*time.Second, "a leader known to every running core", func() bool {
		leader = nil
		for _, c := range cores {
			if c.running() && c.replica.IsLeader() {
				leader = c
			}
		}
		if leader == nil {
			return false
		}
		for _, c := range cores {
			if !c.running() {
				continue
			}
			if id, _ := c.replica.Leader(); id != leader.id {
				return false
			}
		}
		return true
	})
	return leader
}

// followers returns the cores other than leader, in order.
func followers(cores []*testCore, leader *testCore) []*testCore {
	var out []*testCore
	for _, c := range cores {
		if c != leader {
			out = append(out, c)
		}
	}
	return out
}

// appendOutcome is what the done callback of one Append reported.
type appendOutcome struct {
	index int // position of the request in submission order
	req   storage.AppendRequest
	res   storage.AppendResult
	err   error
	// visible reports whether the entry was in the local inbox of the submitting core
	// when done ran.
	visible bool
}

// appendRecorder submits appends and records their outcomes in callback order.
type appendRecorder struct {
	mu       sync.Mutex
	outcomes []appendOutcome
}

func (r *appendRecorder) submit(c *testCore, index int, req storage.AppendRequest) {
	local := c.local
	c.store().Append(req, func(res storage.AppendResult, err error) {
		o := appendOutcome{index: index, req: req, res: res, err: err}
		if err == nil && res.Seq > 0 {
			entries, readErr := local.Inbox(req.User, res.Seq-1, 1)
			o.visible = readErr == nil && len(entries) == 1 && entries[0].Seq == res.Seq &&
				bytes.Equal(entries[0].Body, req.Body)
		}
		r.mu.Lock()
		r.outcomes = append(r.outcomes, o)
		r.mu.Unlock()
	})
}

// wait waits until count callbacks have run and returns their outcomes in callback order.
func (r *appendRecorder) wait(t testing.TB, count int, timeout time.Duration) []appendOutcome {
	t.Helper()
	waitFor(t, timeout, fmt.Sprintf("%d append callbacks", count), func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.outcomes) >= count
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]appendOutcome(nil), r.outcomes...)
}

// plainAppend returns an append of body to user without dedup or order keys.
func plainAppend(user, body string) storage.AppendRequest {
	return storage.AppendRequest{User: user, Kind: 0x02, Sender: "sender", Body: []byte(body)}
}

// inboxBodies returns the bodies of user's inbox in c's local copy, in seq order.
func inboxBodies(t testing.TB, c *testCore, user string) []string {
	t.Helper()
	entries, err := c.local.Inbox(user, 0, 0)
	if err != nil {
		t.Fatalf("%s: Inbox(%s): %v", c.id, user, err)
	}
	bodies := make([]string, len(entries))
	for i, e := range entries {
		bodies[i] = string(e.Body)
	}
	return bodies
}

// doSync runs op through s.Do and waits for its outcome.
func doSync(t testing.TB, s *Store, op storage.Op) (storage.Result, error) {
	t.Helper()
	type outcome struct {
		res storage.Result
		err error
	}
	ch := make(chan outcome, 1)
	s.Do(op, func(res storage.Result, err error) { ch <- outcome{res, err} })
	select {
	case o := <-ch:
		return o.res, o.err
	case <-time.After(15 * time.Second):
		t.Fatalf("Do(%s) did not finish within 15s", op.Kind)
		return storage.Result{}, nil
	}
}

// appendSync runs req through s.Append and waits for its outcome.
func appendSync(t testing.TB, s *Store, req storage.AppendRequest) (storage.AppendResult, error) {
	t.Helper()
	type outcome struct {
		res storage.AppendResult
		err error
	}
	ch := make(chan outcome, 1)
	s.Append(req, func(res storage.AppendResult, err error) { ch <- outcome{res, err} })
	select {
	case o := <-ch:
		return o.res, o.err
	case <-time.After(15 * time.Second):
		t.Fatalf("Append to %s did not finish within 15s", req.User)
		return storage.AppendResult{}, nil
	}
}
