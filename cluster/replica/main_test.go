package replica

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iris-im/iris/internal/testaddr"
	"github.com/iris-im/iris/storage"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Test timeouts: shorter than the defaults so that elections finish quickly, long enough for
// a loaded machine running the race detector.
const (
	testHeartbeat = 200 * time.Millisecond
	testElection  = 200 * time.Millisecond
	testLease     = 200 * time.Millisecond
)

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

// testNode is one replica with its own store and directories, restartable from them.
type testNode struct {
	t        testing.TB
	id       string
	addr     string
	storeDir string
	raftDir  string
	tls      *tls.Config
	peers    []Peer
	tweak    func(*Config)

	store   *storage.Store
	replica *Replica
}

var nodeSeq atomic.Uint64

func newTestNode(t testing.TB, id string, tlsConfig *tls.Config) *testNode {
	t.Helper()
	base := filepath.Join(t.TempDir(), fmt.Sprintf("%s-%d", id, nodeSeq.Add(1)))
	return &testNode{
		t:        t,
		id:       id,
		addr:     freeAddr(t),
		storeDir: filepath.Join(base, "store"),
		raftDir:  filepath.Join(base, "raft"),
		tls:      tlsConfig,
	}
}

// start opens the node's store and starts its replica. It registers a cleanup that stops
// both if the test has not.
func (n *testNode) start() {
	n.t.Helper()
	if err := os.MkdirAll(filepath.Dir(n.storeDir), 0o755); err != nil {
		n.t.Fatal(err)
	}
	store, err := storage.Open(storage.Options{Dir: n.storeDir, Replicated: true, Logger: testLogger(n.t)})
	if err != nil {
		n.t.Fatalf("%s: open store: %v", n.id, err)
	}
	cfg := Config{
		ID:                 n.id,
		BindAddr:           n.addr,
		Dir:                n.raftDir,
		Store:              store,
		Bootstrap:          n.peers,
		TLS:                n.tls,
		HeartbeatTimeout:   testHeartbeat,
		ElectionTimeout:    testElection,
		LeaderLeaseTimeout: testLease,
		SweepInterval:      -1,
		Logger:             testLogger(n.t).With("test_node", n.id),
	}
	if n.tweak != nil {
		n.tweak(&cfg)
	}
	r, err := Start(cfg)
	if err != nil {
		_ = store.Close()
		n.t.Fatalf("%s: start replica: %v", n.id, err)
	}
	n.store, n.replica = store, r
	n.t.Cleanup(n.stop)
}

// stop shuts the replica down and closes the store. Stopping a stopped node does nothing.
func (n *testNode) stop() {
	if n.replica != nil {
		if err := n.replica.Shutdown(); err != nil {
			n.t.Errorf("%s: shutdown: %v", n.id, err)
		}
		n.replica = nil
	}
	if n.store != nil {
		if err := n.store.Close(); err != nil {
			n.t.Errorf("%s: close store: %v", n.id, err)
		}
		n.store = nil
	}
}

// startCluster starts size replicas that bootstrap one group and waits for a leader.
func startCluster(t testing.TB, size int, tlsFor func(i int) *tls.Config, tweak func(*Config)) []*testNode {
	t.Helper()
	nodes := make([]*testNode, size)
	var peers []Peer
	for i := range nodes {
		var cfg *tls.Config
		if tlsFor != nil {
			cfg = tlsFor(i)
		}
		nodes[i] = newTestNode(t, fmt.Sprintf("n%d", i+1), cfg)
		nodes[i].tweak = tweak
		peers = append(peers, Peer{ID: nodes[i].id, Addr: nodes[i].addr})
	}
	for _, n := range nodes {
		n.peers = peers
		n.start()
	}
	waitLeader(t, nodes, 5*time.Second)
	return nodes
}

// waitLeader waits until one running node leads and every running node reports it as leader.
func waitLeader(t testing.TB, nodes []*testNode, timeout time.Duration) *testNode {
	t.Helper()
	var leader *testNode
	waitFor(t, timeout, "a leader known to every running node", func() bool {
		leader = nil
		for _, n := range nodes {
			if n.replica != nil && n.replica.IsLeader() {
				leader = n
			}
		}
		if leader == nil {
			return false
		}
		for _, n := range nodes {
			if n.replica == nil {
				continue
			}
			if id, _ := n.replica.Leader(); id != leader.id {
				return false
			}
		}
		return true
	})
	return leader
}

// appendOps returns count appends to user with bodies "<prefix>-<i>" and distinct tags.
func appendOps(user, prefix string, count int) []storage.Op {
	ops := make([]storage.Op, count)
	for i := range ops {
		ops[i] = storage.Op{
			Kind:      storage.OpAppend,
			User:      user,
			Tag:       uint64(i + 1),
			EntryKind: 0x02,
			Sender:    "sender",
			TimeMS:    1_700_000_000_000,
			Body:      fmt.Appendf(nil, "%s-%d", prefix, i),
		}
	}
	return ops
}

// mustApply applies ops through n, which must be the leader, and checks every op succeeded.
func mustApply(t testing.TB, n *testNode, ops []storage.Op) ([]storage.Result, uint64) {
	t.Helper()
	results, index, err := n.replica.Apply(ops, 5*time.Second)
	if err != nil {
		t.Fatalf("%s: Apply of %d ops: %v", n.id, len(ops), err)
	}
	for i, r := range results {
		if r.Err != nil {
			t.Fatalf("%s: op %d rejected: %v", n.id, i, r.Err)
		}
	}
	return results, index
}

// inboxBodies returns the bodies of user's inbox on n, in seq order.
func inboxBodies(t testing.TB, n *testNode, user string) []string {
	t.Helper()
	entries, err := n.store.Inbox(user, 0, 0)
	if err != nil {
		t.Fatalf("%s: Inbox(%s): %v", n.id, user, err)
	}
	bodies := make([]string, len(entries))
	for i, e := range entries {
		bodies[i] = string(e.Body)
	}
	return bodies
}

// waitApplied waits until every running node has applied index.
func waitApplied(t testing.TB, nodes []*testNode, index uint64) {
	t.Helper()
	for _, n := range nodes {
		if n.replica == nil {
			continue
		}
		waitFor(t, 10*time.Second, fmt.Sprintf("%s to apply entry %d", n.id, index), func() bool {
			return n.replica.AppliedIndex() >= index
		})
	}
}
