package replica

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/iris-im/iris/gateway/tlstest"
)

// tlsConfig returns the TLS configuration of a node whose certificate ca issues and which
// trusts the CAs in trusted.
func tlsConfig(t *testing.T, ca *tlstest.CA, name string, trusted *x509.CertPool) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{ca.NodeCert(t, name, net.IPv4(127, 0, 0, 1))},
		RootCAs:      trusted,
		ClientCAs:    trusted,
	}
}

func TestTLSClusterReplicates(t *testing.T) {
	ca := tlstest.NewCA(t, "iris cluster CA")
	nodes := startCluster(t, 3, func(i int) *tls.Config {
		return tlsConfig(t, ca, "core", ca.Pool())
	}, nil)
	leader := waitLeader(t, nodes, 5*time.Second)

	_, index := mustApply(t, leader, appendOps("nina", "m", 4))
	waitApplied(t, nodes, index)
	want := inboxBodies(t, leader, "nina")
	for _, n := range nodes {
		if got := inboxBodies(t, n, "nina"); !slices.Equal(got, want) {
			t.Errorf("%s: inbox = %q, want %q", n.id, got, want)
		}
		if got := n.replica.stream.rejected.Load(); got != 0 {
			t.Errorf("%s: %d connections rejected inside the cluster, want 0", n.id, got)
		}
	}
}

func TestTLSRejectsPeerFromOtherCA(t *testing.T) {
	ca := tlstest.NewCA(t, "iris cluster CA")
	nodes := startCluster(t, 3, func(i int) *tls.Config {
		return tlsConfig(t, ca, "core", ca.Pool())
	}, nil)
	leader := waitLeader(t, nodes, 5*time.Second)
	termBefore := leader.replica.Stats().Term

	// The intruder trusts the cluster CA, so only its own certificate gives it away.
	other := tlstest.NewCA(t, "other CA")
	intruderTLS, err := serverTLSConfig(tlsConfig(t, other, "intruder", ca.Pool()))
	if err != nil {
		t.Fatal(err)
	}
	stream, err := newStreamLayer("127.0.0.1:0", nil, intruderTLS, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	transport := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: stream, MaxPool: 1, Timeout: 2 * time.Second, Logger: newHCLogAdapter(testLogger(t), "intruder"),
	})
	defer transport.Close()

	// A vote request with a huge term would depose the leader if it got through.
	var voteResp raft.RequestVoteResponse
	voteReq := &raft.RequestVoteRequest{
		RPCHeader:          raft.RPCHeader{ID: []byte("intruder"), Addr: []byte(stream.Addr().String())},
		Term:               termBefore + 100,
		LastLogIndex:       1 << 40,
		LastLogTerm:        termBefore + 100,
		LeadershipTransfer: true,
	}
	err = transport.RequestVote(raft.ServerID(leader.id), raft.ServerAddress(leader.addr), voteReq, &voteResp)
	if err == nil {
		t.Fatal("RequestVote from a peer with a foreign certificate succeeded")
	}
	waitFor(t, 5*time.Second, "the leader to count the rejected connection", func() bool {
		return leader.replica.stream.rejected.Load() > 0
	})

	if got := leader.replica.Stats(); got.Term != termBefore || got.State != "Leader" {
		t.Errorf("after the intruder's vote request: term %d state %s, want term %d and still Leader", got.Term, got.State, termBefore)
	}
	_, index := mustApply(t, leader, appendOps("olga", "m", 1))
	waitApplied(t, nodes, index)
}

func TestTLSForeignNodeCannotJoin(t *testing.T) {
	ca := tlstest.NewCA(t, "iris cluster CA")
	nodes := startCluster(t, 3, func(i int) *tls.Config {
		return tlsConfig(t, ca, "core", ca.Pool())
	}, nil)
	leader := waitLeader(t, nodes, 5*time.Second)

	other := tlstest.NewCA(t, "other CA")
	intruder := newTestNode(t, "intruder", tlsConfig(t, other, "intruder", other.Pool()))
	intruder.start()

	// The leader accepts the configuration change (three of four voters are a majority) but
	// cannot open a connection to the intruder, which rejects the leader's certificate.
	if err := leader.replica.AddVoter(intruder.id, intruder.addr); err != nil {
		t.Fatalf("AddVoter: %v", err)
	}
	_, index := mustApply(t, leader, appendOps("paul", "m", 3))
	waitApplied(t, nodes, index)
	waitFor(t, 5*time.Second, "the intruder to reject the leader's connection", func() bool {
		return intruder.replica.stream.rejected.Load() > 0
	})

	if got := intruder.replica.AppliedIndex(); got != 0 {
		t.Errorf("intruder applied index = %d, want 0", got)
	}
	if got := inboxBodies(t, intruder, "paul"); len(got) != 0 {
		t.Errorf("intruder's inbox = %q, want empty", got)
	}
	if err := leader.replica.RemoveServer(intruder.id); err != nil {
		t.Errorf("RemoveServer(intruder): %v", err)
	}
}

func TestServerTLSConfigRequiresCAs(t *testing.T) {
	ca := tlstest.NewCA(t, "ca")
	cert := ca.NodeCert(t, "n", net.IPv4(127, 0, 0, 1))
	tests := []struct {
		name string
		cfg  *tls.Config
	}{
		{"no certificate", &tls.Config{RootCAs: ca.Pool(), ClientCAs: ca.Pool()}},
		{"no client CAs", &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: ca.Pool()}},
		{"no root CAs", &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: ca.Pool()}},
	}
	for _, tt := range tests {
		if _, err := serverTLSConfig(tt.cfg); err == nil {
			t.Errorf("%s: serverTLSConfig accepted it", tt.name)
		}
	}
	got, err := serverTLSConfig(&tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: ca.Pool(), ClientCAs: ca.Pool()})
	if err != nil {
		t.Fatal(err)
	}
	if got.ClientAuth != tls.RequireAndVerifyClientCert {
		t.Errorf("ClientAuth = %v, want RequireAndVerifyClientCert", got.ClientAuth)
	}
}
