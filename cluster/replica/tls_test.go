package replica

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// nodeCert issues a certificate for 127.0.0.1 usable as server and as client.
func (ca *testCA) nodeCert(t *testing.T, name string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// tlsConfig returns the TLS configuration of a node whose certificate ca issues and which
// trusts the CAs in trusted.
func tlsConfig(t *testing.T, ca *testCA, name string, trusted *x509.CertPool) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{ca.nodeCert(t, name)},
		RootCAs:      trusted,
		ClientCAs:    trusted,
	}
}

func TestTLSClusterReplicates(t *testing.T) {
	ca := newTestCA(t, "iris cluster CA")
	nodes := startCluster(t, 3, func(i int) *tls.Config {
		return tlsConfig(t, ca, "core", ca.pool)
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
	ca := newTestCA(t, "iris cluster CA")
	nodes := startCluster(t, 3, func(i int) *tls.Config {
		return tlsConfig(t, ca, "core", ca.pool)
	}, nil)
	leader := waitLeader(t, nodes, 5*time.Second)
	termBefore := leader.replica.Stats().Term

	// The intruder trusts the cluster CA, so only its own certificate gives it away.
	other := newTestCA(t, "other CA")
	intruderTLS, err := serverTLSConfig(tlsConfig(t, other, "intruder", ca.pool))
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
	ca := newTestCA(t, "iris cluster CA")
	nodes := startCluster(t, 3, func(i int) *tls.Config {
		return tlsConfig(t, ca, "core", ca.pool)
	}, nil)
	leader := waitLeader(t, nodes, 5*time.Second)

	other := newTestCA(t, "other CA")
	intruder := newTestNode(t, "intruder", tlsConfig(t, other, "intruder", other.pool))
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
	ca := newTestCA(t, "ca")
	cert := ca.nodeCert(t, "n")
	tests := []struct {
		name string
		cfg  *tls.Config
	}{
		{"no certificate", &tls.Config{RootCAs: ca.pool, ClientCAs: ca.pool}},
		{"no client CAs", &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: ca.pool}},
		{"no root CAs", &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: ca.pool}},
	}
	for _, tt := range tests {
		if _, err := serverTLSConfig(tt.cfg); err == nil {
			t.Errorf("%s: serverTLSConfig accepted it", tt.name)
		}
	}
	got, err := serverTLSConfig(&tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: ca.pool, ClientCAs: ca.pool})
	if err != nil {
		t.Fatal(err)
	}
	if got.ClientAuth != tls.RequireAndVerifyClientCert {
		t.Errorf("ClientAuth = %v, want RequireAndVerifyClientCert", got.ClientAuth)
	}
}
