package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/iris-im/iris/actors"
	"github.com/iris-im/iris/cluster"
	"github.com/iris-im/iris/config"
	"github.com/iris-im/iris/gateway/client"
	"github.com/iris-im/iris/supervisor"
)

func childIDs(n supervisor.Node) []string {
	ids := make([]string, len(n.Children))
	for i, c := range n.Children {
		ids[i] = c.ID
	}
	return ids
}

func findChild(t *testing.T, n supervisor.Node, id string) supervisor.Node {
	t.Helper()
	for _, c := range n.Children {
		if c.ID == id {
			return c
		}
	}
	t.Fatalf("%s has no child %q; children: %v", n.ID, id, childIDs(n))
	return supervisor.Node{}
}

func TestTreeMatchesDesign(t *testing.T) {
	n := startNode(t, func(c *config.Config) { c.Router.PoolSize = 3 })
	login(t, n, "tcp", "alice")

	tree, err := n.Tree()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("node tree:\n%s", tree)

	if tree.Strategy != supervisor.OneForOne {
		t.Errorf("node strategy = %v, want one_for_one", tree.Strategy)
	}
	want := []string{"store", "cluster", "shards", "routers", "gateway", "admin"}
	if got := childIDs(tree); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("node children = %v, want %v", got, want)
	}

	routers := findChild(t, tree, "routers")
	if got := childIDs(routers); fmt.Sprint(got) != "[router-0 router-1 router-2]" {
		t.Errorf("routers children = %v, want router-0..router-2", got)
	}

	gw := findChild(t, tree, "gateway")
	if got := childIDs(gw); fmt.Sprint(got) != "[registrar sessions tcp ws]" {
		t.Errorf("gateway children = %v, want [registrar sessions tcp ws]", got)
	}
	sessions := findChild(t, gw, "sessions")
	if sessions.Strategy != supervisor.SimpleOneForOne {
		t.Errorf("sessions strategy = %v, want simple_one_for_one", sessions.Strategy)
	}
	if len(sessions.Children) != 1 || sessions.Children[0].Restart != supervisor.Temporary {
		t.Errorf("sessions children = %+v, want one temporary session", sessions.Children)
	}
}

// sendAccepted sends count SEND2 messages from sender to target and returns
// the cids that were ACCEPTED.
func sendAccepted(t *testing.T, sender *client.Conn, target string, firstCID uint64, count int) []uint64 {
	t.Helper()
	for i := range count {
		if err := sender.Send2(firstCID+uint64(i), target, fmt.Appendf(nil, "m%d", firstCID+uint64(i))); err != nil {
			t.Fatalf("send2: %v", err)
		}
	}
	var accepted []uint64
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for len(accepted) < count {
		f, err := sender.Next(ctx)
		if err != nil {
			t.Fatalf("waiting for ACCEPTED (%d of %d): %v", len(accepted), count, err)
		}
		if f.Op == client.OpAccepted {
			accepted = append(accepted, f.CID)
		}
	}
	return accepted
}

func TestCrashedChildrenComeBack(t *testing.T) {
	n := startNode(t, func(c *config.Config) { c.Router.PoolSize = 2 })
	alice := login2(t, n, "alice")
	bob := login2(t, n, "bob")
	var accepted int

	crash := func(pid *actor.PID, what string) {
		t.Helper()
		if pid == nil {
			t.Fatalf("%s has no PID", what)
		}
		before := n.Supervision.Snapshot().TotalRestarts()
		n.system.Root.Send(pid, &actors.Crash{Reason: "test: crash " + what})
		accepted += len(sendAccepted(t, alice, "bob", uint64(accepted)+1, 50))
		if what != "shard" { // grains are restarted by proto.actor's activator
			eventually(t, 5*time.Second, what+" restart counted", func() bool {
				return n.Supervision.Snapshot().TotalRestarts() > before
			})
		}
	}

	accepted += len(sendAccepted(t, alice, "bob", 1, 50))
	crash(n.RouterPool().For("bob"), "router")
	crash(n.member.cluster().Get(cluster.ShardIdentity("bob", n.cfg.Cluster.Shards), cluster.ShardKind), "shard")
	crash(actor.NewPID(n.system.Address(), "node/gateway/tcp"), "tcp listener")

	// The listener is back on the same port: a new client can connect.
	carol := login(t, n, "tcp", "carol")
	if err := carol.Send("bob", []byte("after the listener restart")); err != nil {
		t.Fatal(err)
	}

	// bob receives every accepted message in order, then carol's. Entries
	// he has not acked yet may come again (redelivery, or a read of the
	// inbox after a shard restart): a seq he has seen is a duplicate.
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	next := uint64(1)
	var lastSeq uint64
	for next <= uint64(accepted) {
		f, err := bob.Next(ctx)
		if err != nil {
			t.Fatalf("bob waiting for m%d of %d: %v", next, accepted, err)
		}
		if f.Op != client.OpDeliver || f.Sender != "alice" {
			continue
		}
		if f.Seq <= lastSeq {
			continue
		}
		lastSeq = f.Seq
		want := fmt.Sprintf("m%d", next)
		if string(f.Msg) != want {
			t.Fatalf("bob got %q, want %q", f.Msg, want)
		}
		if err := bob.Ack2(f.Seq); err != nil {
			t.Fatal(err)
		}
		next++
	}
	for {
		f, err := bob.Next(ctx)
		if err != nil {
			t.Fatalf("bob waiting for carol's message: %v", err)
		}
		if f.Op == client.OpDeliver && f.Sender == "carol" {
			break
		}
	}
}

// login2 dials the node over TCP and logs user in with LOGIN2.
func login2(t *testing.T, n *Node, user string) *client.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, "tcp", n.TCPAddr().String())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Login2(ctx, user, ""); err != nil {
		t.Fatalf("login2 %s: %v", user, err)
	}
	return c
}

func TestAdminShowsTreeAndRestarts(t *testing.T) {
	n := startNode(t, func(c *config.Config) { c.Router.PoolSize = 1 })
	n.system.Root.Send(actor.NewPID(n.system.Address(), "node/routers/router-0"), &actors.Crash{Reason: "test: crash the router"})
	eventually(t, 5*time.Second, "the router restart", func() bool {
		return n.Supervision.Snapshot().Restarts["node/routers/router-0"] == 1
	})

	metrics := httpGet(t, "http://"+n.AdminAddr().String()+"/metrics")
	if want := `iris_supervisor_restarts_total{child="node/routers/router-0"} 1`; !strings.Contains(metrics, want) {
		t.Errorf("/metrics lacks %q", want)
	}

	var stats struct {
		Tree        supervisor.Node  `json:"tree"`
		Supervision supervisor.Stats `json:"supervision"`
	}
	if err := json.Unmarshal([]byte(httpGet(t, "http://"+n.AdminAddr().String()+"/stats")), &stats); err != nil {
		t.Fatalf("decode /stats: %v", err)
	}
	if stats.Tree.ID != "node" || len(stats.Tree.Children) != 6 {
		t.Errorf("/stats tree = %s with %d children, want node with 6", stats.Tree.ID, len(stats.Tree.Children))
	}
	if stats.Supervision.Restarts["node/routers/router-0"] != 1 {
		t.Errorf("/stats supervision restarts = %v, want router-0 once", stats.Supervision.Restarts)
	}
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d, %v", url, resp.StatusCode, err)
	}
	return string(body)
}

func TestPprofOnlyWhenEnabled(t *testing.T) {
	for _, enabled := range []bool{false, true} {
		// One node at a time: each subtest stops its node before the next
		// starts, because two cluster members starting in one process race
		// on gRPC's process-wide logger.
		t.Run(fmt.Sprintf("pprof=%v", enabled), func(t *testing.T) {
			n := startNode(t, func(c *config.Config) { c.Admin.Pprof = enabled })
			resp, err := http.Get("http://" + n.AdminAddr().String() + "/debug/pprof/")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := resp.StatusCode == http.StatusOK; got != enabled {
				t.Errorf("admin.pprof %v: /debug/pprof/ status %d", enabled, resp.StatusCode)
			}
		})
	}
}
