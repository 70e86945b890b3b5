package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/iris-im/iris/gateway/client"
	"github.com/iris-im/iris/gateway/tlstest"
)

// TestCrossEdgeMessages has alice on edge 1 and bob on edge 2 exchange v1
// and v2 messages both ways through three cores, and checks that edge 1
// sees bob online.
func TestCrossEdgeMessages(t *testing.T) {
	c := startCluster(t, 3, 2, clusterOptions{})
	edge1, edge2 := c.edges[0], c.edges[1]
	ctx := testCtx(t, 60*time.Second)

	t.Run("v1", func(t *testing.T) {
		alice := edge1.login(t, tcp, "alice")
		bob := edge2.login(t, ws, "bob")

		status, err := alice.GetStatus(ctx, "bob")
		if err != nil {
			t.Fatal(err)
		}
		if status.State != 1 {
			t.Errorf("edge 1 sees bob offline, want online: %+v", status)
		}

		for i, p := range []struct {
			from, to *client.Conn
			target   string
		}{{alice, bob, "bob"}, {bob, alice, "alice"}} {
			msg := fmt.Sprintf("v1 message %d", i)
			if err := p.from.Send(p.target, []byte(msg)); err != nil {
				t.Fatal(err)
			}
			f := expect(t, p.to, client.OpReliable)
			if string(f.Msg) != msg {
				t.Fatalf("%s got %q, want %q", p.target, f.Msg, msg)
			}
			if err := p.to.Ack(f.ID); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("v2", func(t *testing.T) {
		alice := edge1.login2(t, ws, "alice2")
		bob := edge2.login2(t, tcp, "bob2")
		for i, p := range []struct {
			from, to *client.Conn
			target   string
		}{{alice, bob, "bob2"}, {bob, alice, "alice2"}} {
			msg := fmt.Sprintf("v2 message %d", i)
			cid := uint64(100 + i)
			if err := p.from.Send2(cid, p.target, []byte(msg)); err != nil {
				t.Fatal(err)
			}
			accepted := expect(t, p.from, client.OpAccepted)
			if accepted.CID != cid {
				t.Errorf("ACCEPTED for cid %d, want %d", accepted.CID, cid)
			}
			f := expect(t, p.to, client.OpDeliver)
			if string(f.Msg) != msg {
				t.Fatalf("%s got %q, want %q", p.target, f.Msg, msg)
			}
			if err := p.to.Ack2(f.Seq); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// leader returns the core that /stats reports as raft leader, waiting for an
// election if needed.
func (c *testCluster) leader(timeout time.Duration) *clusterNode {
	c.t.Helper()
	var found *clusterNode
	eventually(timeout, func() bool {
		for _, n := range c.cores {
			if n.cmd == nil {
				continue
			}
			st, err := n.stats()
			if err != nil {
				continue
			}
			if raft, ok := st["raft"].(map[string]any); ok && raft["state"] == "Leader" {
				found = n
				return true
			}
		}
		return false
	})
	if found == nil {
		c.t.Fatalf("no core reported itself raft leader within %s", timeout)
	}
	return found
}

// TestLeaderCoreKilledUnderLoad kills the raft leader while v2 senders on
// both edges send a few hundred messages per second. Every message that was
// ACCEPTED, before, during or after the kill, must reach its recipient in
// order; duplicates are allowed and reported. Acceptance must resume within
// 2 s of the kill.
func TestLeaderCoreKilledUnderLoad(t *testing.T) {
	c := startCluster(t, 3, 2, clusterOptions{})
	ctx := testCtx(t, 3*time.Minute)

	load1 := startSteadyLoad(t, ctx, c.edges[0], c.edges[1], "east", 6, 25*time.Millisecond)
	load2 := startSteadyLoad(t, ctx, c.edges[1], c.edges[0], "west", 6, 25*time.Millisecond)
	time.Sleep(3 * time.Second)

	observer := c.edges[0].login(t, tcp, "observer")
	var recipients []string
	for _, l := range []*steadyLoad{load1, load2} {
		for _, p := range l.pairs {
			recipients = append(recipients, p.target)
		}
	}

	leader := c.leader(10 * time.Second)
	killedAt := time.Now()
	leader.kill()
	t.Logf("killed the raft leader %s (pid SIGKILL) under load", leader.name)

	// The shards of the killed core come back on the others, and the edges'
	// registrations make every recipient online there again.
	allOnline := eventually(10*time.Second, func() bool {
		for _, user := range recipients {
			// The server replies to every query within a few seconds, with
			// an error when no shard replies. One lost query therefore
			// costs seconds, not the whole wait.
			qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			st, err := observer.GetStatus(qctx, user)
			cancel()
			if err != nil || st.State != 1 {
				return false
			}
		}
		return true
	})
	if !allOnline {
		t.Fatal("some recipients still looked offline 10 s after the kill")
	}
	t.Logf("presence of all %d recipients rebuilt %s after the kill", len(recipients), time.Since(killedAt).Round(time.Millisecond))
	if d := time.Since(killedAt); d > 3*time.Second {
		t.Errorf("presence took %s to come back, want at most 3 s", d.Round(time.Millisecond))
	}

	time.Sleep(6 * time.Second)
	load1.stopSending()
	load2.stopSending()

	for _, l := range []*steadyLoad{load1, load2} {
		r := l.waitDelivered(30*time.Second, killedAt)
		t.Logf("after the leader was killed: %s", r)
		r.check(t)
		if r.maxGap > 2*time.Second {
			t.Errorf("acceptance paused for %s after the kill, want at most 2 s", r.maxGap.Round(time.Millisecond))
		}
	}
}

// TestEdgeKilledUsersMoveToOtherEdge kills an edge while its user has
// unacknowledged deliveries; the user logs in on the other edge and gets
// every accepted message, including the ones sent while it was offline.
func TestEdgeKilledUsersMoveToOtherEdge(t *testing.T) {
	c := startCluster(t, 3, 2, clusterOptions{})
	edge1, edge2 := c.edges[0], c.edges[1]
	ctx := testCtx(t, 2*time.Minute)

	alice := edge1.login2(t, tcp, "alice")
	bob := edge2.login2(t, ws, "bob")
	const before, after = 40, 10
	for cid := uint64(1); cid <= before; cid++ {
		if err := alice.Send2(cid, "bob", []byte(fmt.Sprintf("m%03d", cid))); err != nil {
			t.Fatal(err)
		}
		expect(t, alice, client.OpAccepted)
	}
	// bob reads every delivery and acknowledges none of them.
	for range before {
		expect(t, bob, client.OpDeliver)
	}

	edge2.kill()
	for cid := uint64(before + 1); cid <= before+after; cid++ {
		if err := alice.Send2(cid, "bob", []byte(fmt.Sprintf("m%03d", cid))); err != nil {
			t.Fatal(err)
		}
		expect(t, alice, client.OpAccepted)
	}

	bobAgain := edge1.login2(t, tcp, "bob")
	for cid := uint64(1); cid <= before+after; cid++ {
		f, err := bobAgain.Expect(ctx, client.OpDeliver)
		if err != nil {
			t.Fatalf("bob on edge 1, message %d: %v", cid, err)
		}
		if want := fmt.Sprintf("m%03d", cid); string(f.Msg) != want {
			t.Fatalf("bob on edge 1 got %q, want %q", f.Msg, want)
		}
		if err := bobAgain.Ack2(f.Seq); err != nil {
			t.Fatal(err)
		}
	}
}

// raftState returns a core's raft section of /stats.
func (n *clusterNode) raftState() (map[string]any, bool) {
	st, err := n.stats()
	if err != nil {
		return nil, false
	}
	raft, ok := st["raft"].(map[string]any)
	return raft, ok
}

// TestCoreRestartCatchesUp kills a follower core, keeps sending while it is
// down, restarts it on its data dir and waits until it has applied as much
// as the others. Then the whole cluster is killed and started again, and
// every accepted message is still delivered.
func TestCoreRestartCatchesUp(t *testing.T) {
	c := startCluster(t, 3, 2, clusterOptions{})
	edge1, edge2 := c.edges[0], c.edges[1]
	ctx := testCtx(t, 3*time.Minute)

	alice := edge1.login2(t, tcp, "alice")
	sent := uint64(0)
	send := func(n int) {
		t.Helper()
		for range n {
			sent++
			if err := alice.Send2(sent, "carol", []byte(fmt.Sprintf("m%04d", sent))); err != nil {
				t.Fatal(err)
			}
			expect(t, alice, client.OpAccepted)
		}
	}
	send(100)

	leader := c.leader(10 * time.Second)
	var follower *clusterNode
	for _, n := range c.cores {
		if n != leader {
			follower = n
			break
		}
	}
	follower.kill()
	send(300) // the other two cores are a majority

	follower.start()
	caughtUp := eventually(30*time.Second, func() bool {
		var indexes []float64
		for _, n := range c.cores {
			raft, ok := n.raftState()
			if !ok {
				return false
			}
			indexes = append(indexes, raft["applied_index"].(float64))
		}
		return indexes[0] > 0 && indexes[0] == indexes[1] && indexes[1] == indexes[2]
	})
	if !caughtUp {
		for _, n := range c.cores {
			raft, _ := n.raftState()
			t.Logf("%s: %v", n.name, raft)
		}
		t.Fatalf("restarted %s did not reach the applied index of the others within 30 s", follower.name)
	}
	raft, _ := follower.raftState()
	t.Logf("restarted %s caught up at applied index %v", follower.name, raft["applied_index"])
	send(100)

	// The whole cluster dies at once and comes back from its data dirs.
	for _, n := range c.all() {
		n.kill()
	}
	for _, n := range c.cores {
		n.spawn()
	}
	for _, n := range c.cores {
		n.waitReady(60 * time.Second)
	}
	for _, n := range c.edges {
		n.start()
	}

	carol := edge2.login2(t, tcp, "carol")
	for cid := uint64(1); cid <= sent; cid++ {
		f, err := carol.Expect(ctx, client.OpDeliver)
		if err != nil {
			t.Fatalf("carol after the cluster restart, message %d of %d: %v", cid, sent, err)
		}
		if want := fmt.Sprintf("m%04d", cid); string(f.Msg) != want {
			t.Fatalf("carol got %q, want %q", f.Msg, want)
		}
		if cid%50 == 0 || cid == sent {
			if err := carol.Ack2(f.Seq); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestClusterTLSRefusesForeignCA runs a cluster with mutual TLS, checks that
// it carries messages, and that a node whose certificate comes from another
// CA can neither join nor talk to the cores' cluster, discovery or raft
// ports.
func TestClusterTLSRefusesForeignCA(t *testing.T) {
	c := startCluster(t, 3, 1, clusterOptions{tls: true})
	edge := c.edges[0]

	alice := edge.login2(t, tcp, "alice")
	bob := edge.login2(t, ws, "bob")
	if err := alice.Send2(1, "bob", []byte("over mTLS")); err != nil {
		t.Fatal(err)
	}
	expect(t, alice, client.OpAccepted)
	if f := expect(t, bob, client.OpDeliver); string(f.Msg) != "over mTLS" {
		t.Fatalf("bob got %q", f.Msg)
	}

	// A node with a certificate from a foreign CA, pointed at the same
	// seeds, never finds the cluster and exits.
	foreign := &testCluster{t: t, dir: t.TempDir(), cores: c.cores, ca: tlstest.NewCA(t, "foreign CA")}
	intruder := foreign.newNode("intruder", "edge", firstClusterHost+len(c.all()))
	foreign.writeConfig(intruder)
	cfg, err := os.ReadFile(intruder.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(intruder.cfgPath, append(cfg, "  join_timeout: 3s\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	intruder.spawn()
	select {
	case <-intruder.exited:
		if intruder.cmd.ProcessState.Success() {
			t.Error("the node with a foreign certificate exited with status 0, want a failure")
		}
	case <-time.After(30 * time.Second):
		intruder.stop()
		t.Fatal("the node with a foreign certificate still runs 30 s after it started, want it to give up joining")
	}
	intruder.cmd = nil

	// Every cluster port of a core refuses the foreign certificate.
	foreignCert, foreignKey := foreign.ca.WriteNodeCert(t, foreign.dir, "prober", net.ParseIP("127.0.0.1"))
	cert, err := tls.LoadX509KeyPair(foreignCert, foreignKey)
	if err != nil {
		t.Fatal(err)
	}
	core := c.cores[0]
	st, err := core.stats()
	if err != nil {
		t.Fatal(err)
	}
	ports := map[string]string{
		"discovery": fmt.Sprintf("%s:%d", core.host, core.discoveryPort),
		"raft":      core.raftAddr,
	}
	for _, m := range st["members"].([]any) {
		if addr := m.(map[string]any)["address"].(string); strings.HasPrefix(addr, core.host+":") {
			ports["remoting"] = addr
		}
	}
	if len(ports) != 3 {
		t.Fatalf("found the ports %v of %s, want discovery, raft and remoting", ports, core.name)
	}
	for name, addr := range ports {
		err := probeTLS(addr, cert)
		switch {
		case err == nil:
			t.Errorf("%s port %s of %s accepted a certificate from a foreign CA", name, addr, core.name)
		case !strings.Contains(err.Error(), "bad certificate") && !strings.Contains(err.Error(), "unknown certificate authority"):
			t.Errorf("%s port %s of %s: %v, want the certificate rejected", name, addr, core.name, err)
		default:
			t.Logf("%s port %s refused the foreign certificate: %v", name, addr, err)
		}
	}
	for _, n := range c.all() {
		st, err := n.stats()
		if err != nil {
			continue
		}
		for _, m := range st["members"].([]any) {
			if addr := m.(map[string]any)["address"].(string); strings.HasPrefix(addr, intruder.host+":") {
				t.Errorf("%s lists the foreign node %s as a member", n.name, addr)
			}
		}
	}
}

// probeTLS connects to addr with cert, which the server's CA did not issue,
// and returns the error that ends the exchange. With TLS 1.3 the server's
// rejection of a client certificate arrives after the client's handshake,
// so the probe also reads.
func probeTLS(addr string, cert tls.Certificate) error {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, &tls.Config{
		// NB: Go's client sends a certificate only when its issuer is among
		// the CAs the server names, so a plain Certificates field would
		// send none; the callback sends the foreign one anyway.
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil },
		InsecureSkipVerify:   true, // the probe checks the server's side only
	})
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		return err
	}
	buf := make([]byte, 1)
	_, err = conn.Read(buf)
	return err
}

// TestStatusOfCluster runs iris status against every node of a cluster: it
// lists the five nodes, the raft leader and the sessions, and once a core is
// killed it names that core and exits with status 1.
func TestStatusOfCluster(t *testing.T) {
	c := startCluster(t, 3, 2, clusterOptions{})
	c.edges[0].login(t, tcp, "alice")
	var addrs []string
	for _, n := range c.all() {
		addrs = append(addrs, n.adminAddr)
	}
	leader := c.leader(10 * time.Second)

	out, err := exec.Command(irisBinary, "status", "--admin-addr", strings.Join(addrs, ",")).CombinedOutput()
	if err != nil {
		t.Fatalf("iris status of a healthy cluster: %v\n%s", err, out)
	}
	for _, n := range c.all() {
		if !strings.Contains(string(out), fmt.Sprintf("(%s, role %s)", n.name, n.role)) {
			t.Errorf("output does not list %s:\n%s", n.name, out)
		}
	}
	for _, want := range []string{"raft leader " + leader.name, "5 nodes given, 0 unreachable; 3 cores, 2 edges", "sessions: 1 tcp", "routers: routed="} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	// An edge's /stats carries the raft state of every core, read from the cores' member
	// records.
	edge := c.edges[0]
	var cores []memberRaft
	if !eventually(5*time.Second, func() bool {
		cores = edge.coreMembers()
		return len(cores) == 3 && leadersAmong(cores) == 1
	}) {
		t.Fatalf("%s's /stats members = %+v, want 3 cores with raft state and one leader", edge.name, cores)
	}
	for _, m := range cores {
		if !m.Reachable {
			t.Errorf("%s shows core %s unreachable in a healthy cluster", edge.name, m.Raft.ID)
		}
		if m.Raft.State == "Leader" && m.Raft.ID != leader.name {
			t.Errorf("%s shows %s as leader, want %s", edge.name, m.Raft.ID, leader.name)
		}
		if m.Raft.Leader != leader.name || m.Raft.Term == 0 || m.Raft.CommitIndex == 0 {
			t.Errorf("%s shows core %+v, want leader %s, a term and a commit index", edge.name, *m.Raft, leader.name)
		}
	}

	var follower *clusterNode
	for _, n := range c.cores {
		if n != leader {
			follower = n
			break
		}
	}
	follower.kill()

	// The killed core stays in the edge's member list, marked unreachable.
	if !eventually(10*time.Second, func() bool {
		for _, m := range edge.coreMembers() {
			if m.Raft.ID == follower.name {
				return !m.Reachable
			}
		}
		return false
	}) {
		t.Errorf("%s's /stats members = %+v, want %s listed and unreachable", edge.name, edge.coreMembers(), follower.name)
	}

	out, err = exec.Command(irisBinary, "status", "--admin-addr", strings.Join(addrs, ","), "--timeout", "2s").CombinedOutput()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != 1 {
		t.Fatalf("iris status with %s killed = %v, want exit status 1\n%s", follower.name, err, out)
	}
	if !strings.Contains(string(out), fmt.Sprintf("node %s: unreachable", follower.adminAddr)) {
		t.Errorf("output does not name the killed core %s unreachable:\n%s", follower.name, out)
	}
	t.Logf("iris status with %s killed:\n%s", follower.name, out)
}

// memberRaft is a member with raft state in a node's /stats.
type memberRaft struct {
	ID        string `json:"id"`
	Reachable bool   `json:"reachable"`
	Raft      *struct {
		ID          string `json:"id"`
		State       string `json:"state"`
		Leader      string `json:"leader"`
		Term        uint64 `json:"term"`
		CommitIndex uint64 `json:"commit_index"`
	} `json:"raft"`
}

// coreMembers returns the members with raft state in n's /stats, or nil when n does not
// respond.
func (n *clusterNode) coreMembers() []memberRaft {
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Get("http://" + n.adminAddr + "/stats")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var st struct {
		Members []memberRaft `json:"members"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil
	}
	var out []memberRaft
	for _, m := range st.Members {
		if m.Raft != nil {
			out = append(out, m)
		}
	}
	return out
}

// leadersAmong counts the reachable members that report themselves raft leader.
func leadersAmong(members []memberRaft) int {
	leaders := 0
	for _, m := range members {
		if m.Reachable && m.Raft.State == "Leader" {
			leaders++
		}
	}
	return leaders
}

// readyzStatus returns the HTTP status of n's /readyz, or 0 when the admin
// server does not respond.
func (n *clusterNode) readyzStatus() int {
	resp, err := (&http.Client{Timeout: time.Second}).Get("http://" + n.adminAddr + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestReadyzBeforeClusterJoined starts an edge before any core: its admin
// server responds at once, /readyz is 503 while it waits for the cluster and
// 200 once the cores run.
func TestReadyzBeforeClusterJoined(t *testing.T) {
	c := &testCluster{t: t, dir: t.TempDir()}
	for i := range 3 {
		c.cores = append(c.cores, c.newNode(fmt.Sprintf("core%d", i+1), "core", firstClusterHost+i))
	}
	edge := c.newNode("edge1", "edge", firstClusterHost+3)
	c.edges = []*clusterNode{edge}
	for _, n := range c.all() {
		c.writeConfig(n)
	}
	t.Cleanup(func() {
		for _, n := range c.all() {
			n.stop()
		}
	})

	edge.spawn()
	if !eventually(15*time.Second, func() bool { return edge.readyzStatus() != 0 }) {
		edge.logTail(30)
		t.Fatal("the edge's admin server did not respond while the edge waited for the cores")
	}
	if got := edge.readyzStatus(); got != http.StatusServiceUnavailable {
		t.Fatalf("/readyz of an edge without cores = %d, want 503", got)
	}

	for _, n := range c.cores {
		n.spawn()
	}
	edge.waitReady(60 * time.Second)
	if got := edge.readyzStatus(); got != http.StatusOK {
		t.Errorf("/readyz after the cores started = %d, want 200", got)
	}
}
