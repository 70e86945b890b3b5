package cluster

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	protocluster "github.com/asynkron/protoactor-go/cluster"
	"go.uber.org/goleak"

	"github.com/iris-im/iris/config"
	"github.com/iris-im/iris/gateway/tlstest"
	"github.com/iris-im/iris/internal/testaddr"
)

// recordingHandler keeps every log record, so that a test can count them.
type recordingHandler struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *recordingHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *recordingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.records = append(h.records, r.Clone())
	h.mu.Unlock()
	return nil
}

func (h *recordingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordingHandler) WithGroup(string) slog.Handler      { return h }

// count returns the number of records with level and message msg whose "seed" attribute
// is seed.
func (h *recordingHandler) count(level slog.Level, msg, seed string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, r := range h.records {
		if r.Level != level || r.Message != msg {
			continue
		}
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "seed" && a.Value.String() == seed {
				n++
				return false
			}
			return true
		})
	}
	return n
}

// verifyNoLeaks checks, after the test's other cleanups, that every goroutine the test
// started has ended.
func verifyNoLeaks(t *testing.T) {
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
}

func quietLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// freeAddr returns a loopback host:port that was free a moment ago and that no other
// test of this process got.
func freeAddr(t testing.TB) string {
	t.Helper()
	return testaddr.Free(t, "127.0.0.1")
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

// recordPort is the remoting port in the records of test members.
const recordPort = 7001

// startSeedMember serves the record of member id of cluster on addr, as StartMember does
// once the member's remoting address is set.
func startSeedMember(t testing.TB, cluster, id, addr string, tlsConfig *tls.Config) *seedProvider {
	t.Helper()
	p := newSeedProvider(Options{DiscoveryAddr: addr, TLS: tlsConfig, Logger: quietLogger(t)})
	p.self = memberRecord{Cluster: cluster, ID: id, Host: "127.0.0.1", Port: recordPort, Kinds: []string{ShardKind, GroupKind}}
	if err := p.serve(); err != nil {
		t.Fatalf("member %s: serve on %s: %v", id, addr, err)
	}
	t.Cleanup(func() { stopProvider(t, p) })
	return p
}

func stopProvider(t testing.TB, p *seedProvider) {
	t.Helper()
	if err := p.Shutdown(false); err != nil {
		t.Errorf("provider shutdown: %v", err)
	}
}

// newSeedClient returns a provider that polls seeds and serves nothing.
func newSeedClient(t testing.TB, seeds []string, tlsConfig *tls.Config, logger *slog.Logger) *seedProvider {
	t.Helper()
	if logger == nil {
		logger = quietLogger(t)
	}
	p := newSeedProvider(Options{Seeds: seeds, TLS: tlsConfig, Logger: logger, Refresh: 100 * time.Millisecond})
	t.Cleanup(func() { stopProvider(t, p) })
	return p
}

func memberIDs(members protocluster.Members) []string {
	ids := make([]string, len(members))
	for i, m := range members {
		ids[i] = m.Id
	}
	return ids
}

func TestSeedServesMemberRecord(t *testing.T) {
	verifyNoLeaks(t)
	addr := freeAddr(t)
	member := startSeedMember(t, "iris", "core-a", addr, nil)
	client := &http.Client{}
	defer client.CloseIdleConnections()

	resp, err := client.Get("http://" + addr + memberPath)
	if err != nil {
		t.Fatalf("GET %s: %v", memberPath, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %s, want 200", memberPath, resp.Status)
	}
	if got := resp.Header.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", got)
	}
	var got memberRecord
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("decode %q: %v", body, err)
	}
	want := member.self
	if got.Cluster != want.Cluster || got.ID != want.ID || got.Host != want.Host || got.Port != want.Port || !slices.Equal(got.Kinds, want.Kinds) {
		t.Errorf("record = %+v, want %+v", got, want)
	}

	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/", http.StatusNotFound},
		{http.MethodPost, memberPath, http.StatusMethodNotAllowed},
	} {
		req, err := http.NewRequest(tc.method, "http://"+addr+tc.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", tc.method, tc.path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s: status %d, want %d", tc.method, tc.path, resp.StatusCode, tc.want)
		}
	}
}

func TestSeedMemberNeedsDiscoveryAddress(t *testing.T) {
	p := newSeedProvider(Options{Logger: quietLogger(t)})
	if err := p.serve(); err == nil {
		stopProvider(t, p)
		t.Fatal("serve without a discovery address succeeded, want an error")
	}
}

func TestSeedPollSeesOwnClusterOnly(t *testing.T) {
	verifyNoLeaks(t)
	a, b, foreign, dead := freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)
	startSeedMember(t, "iris", "core-a", a, nil)
	startSeedMember(t, "iris", "core-b", b, nil)
	startSeedMember(t, "other", "core-x", foreign, nil)

	// A seed listed twice gives one member.
	client := newSeedClient(t, []string{a, b, foreign, dead, a}, nil, nil)
	members := client.poll("iris")
	if got := memberIDs(members); !slices.Equal(got, []string{"core-a", "core-b"}) {
		t.Fatalf("members = %v, want [core-a core-b]", got)
	}
	for _, m := range members {
		if m.Host != "127.0.0.1" || m.Port != recordPort || !slices.Equal(m.Kinds, []string{ShardKind, GroupKind}) {
			t.Errorf("member %s = %s:%d kinds %v, want the fields of its record", m.Id, m.Host, m.Port, m.Kinds)
		}
	}
	if got := memberIDs(client.poll("other")); !slices.Equal(got, []string{"core-x"}) {
		t.Errorf("members of cluster other = %v, want [core-x]", got)
	}

	// A member lists itself first, even when no seed names it.
	self := startSeedMember(t, "iris", "core-c", freeAddr(t), nil)
	self.seeds = []string{b}
	if got := memberIDs(self.poll("iris")); !slices.Equal(got, []string{"core-c", "core-b"}) {
		t.Errorf("members seen by core-c = %v, want [core-c core-b]", got)
	}
}

// publishedMembers records each member list a provider publishes.
type publishedMembers struct {
	mu     sync.Mutex
	latest []string
}

func (p *publishedMembers) publish(members protocluster.Members) {
	ids := memberIDs(members)
	p.mu.Lock()
	p.latest = ids
	p.mu.Unlock()
}

func (p *publishedMembers) ids() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.latest
}

func (p *publishedMembers) has(id string) bool {
	return slices.Contains(p.ids(), id)
}

func TestSeedDownLeavesMemberList(t *testing.T) {
	verifyNoLeaks(t)
	a, b := freeAddr(t), freeAddr(t)
	startSeedMember(t, "iris", "core-a", a, nil)
	memberB := startSeedMember(t, "iris", "core-b", b, nil)

	client := newSeedClient(t, []string{a, b}, nil, nil)
	published := &publishedMembers{}
	client.start("iris", published.publish)
	if !published.has("core-a") || !published.has("core-b") {
		t.Fatalf("first published list = %v, want core-a and core-b", published.ids())
	}

	stopProvider(t, memberB)
	stopped := time.Now()
	waitFor(t, 5*time.Second, "core-b to leave the published list", func() bool { return !published.has("core-b") })
	if elapsed, limit := time.Since(stopped), 2*client.refresh+seedTimeout; elapsed > limit {
		t.Errorf("core-b left the list %s after it stopped, want within %s (two refresh periods and one seed timeout)", elapsed, limit)
	}
	if !published.has("core-a") {
		t.Errorf("published list = %v after core-b stopped, want core-a in it", published.ids())
	}

	startSeedMember(t, "iris", "core-b", b, nil)
	restarted := time.Now()
	waitFor(t, 5*time.Second, "core-b to come back", func() bool { return published.has("core-b") })
	if elapsed, limit := time.Since(restarted), 2*client.refresh+seedTimeout; elapsed > limit {
		t.Errorf("core-b came back %s after it restarted, want within %s", elapsed, limit)
	}
}

// loadTLS returns the cluster TLS configuration of a node with the CA in caFile and the
// certificate in certFile, as config.LoadClusterTLS builds it.
func loadTLS(t testing.TB, caFile, certFile, keyFile string) *tls.Config {
	t.Helper()
	cfg, err := config.LoadClusterTLS(config.ClusterTLS{CAFile: caFile, CertFile: certFile, KeyFile: keyFile})
	if err != nil {
		t.Fatalf("load cluster TLS: %v", err)
	}
	return cfg
}

func TestSeedTLSRejectsOtherCA(t *testing.T) {
	verifyNoLeaks(t)
	dir := t.TempDir()
	clusterCA, otherCA := tlstest.NewCA(t, "iris cluster CA"), tlstest.NewCA(t, "other CA")
	clusterCAFile := clusterCA.WriteCACert(t, dir)
	otherDir := filepath.Join(dir, "other")
	if err := os.MkdirAll(otherDir, 0o755); err != nil {
		t.Fatal(err)
	}
	otherCAFile := otherCA.WriteCACert(t, otherDir)
	loopback := net.IPv4(127, 0, 0, 1)
	memberCert, memberKey := clusterCA.WriteNodeCert(t, dir, "core-a", loopback)
	peerCert, peerKey := clusterCA.WriteNodeCert(t, dir, "edge-1", loopback)
	strangerCert, strangerKey := otherCA.WriteNodeCert(t, otherDir, "stranger", loopback)

	addr := freeAddr(t)
	startSeedMember(t, "iris", "core-a", addr, loadTLS(t, clusterCAFile, memberCert, memberKey))

	peer := newSeedClient(t, []string{addr}, loadTLS(t, clusterCAFile, peerCert, peerKey), nil)
	if got := memberIDs(peer.poll("iris")); !slices.Equal(got, []string{"core-a"}) {
		t.Fatalf("a poller with a cluster certificate sees %v, want [core-a]", got)
	}

	// config.LoadClusterTLS rejects a certificate its CA did not issue, so this one is built
	// by hand: the stranger's own certificate with the cluster CA as its trust root.
	strangerTrustingCluster := loadTLS(t, clusterCAFile, peerCert, peerKey)
	stranger, err := tls.LoadX509KeyPair(strangerCert, strangerKey)
	if err != nil {
		t.Fatal(err)
	}
	strangerTrustingCluster.Certificates = []tls.Certificate{stranger}
	// Go's client sends a certificate only when the server names its issuer, and the
	// member names the cluster CA, so the callback sends the stranger's anyway.
	strangerTrustingCluster.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return &stranger, nil
	}
	noClientCert := loadTLS(t, clusterCAFile, peerCert, peerKey)
	noClientCert.Certificates = nil
	for _, tc := range []struct {
		name string
		tls  *tls.Config
	}{
		// It trusts the member's certificate, so only the member's check of the client
		// certificate stops it.
		{"certificate of another CA", strangerTrustingCluster},
		{"no client certificate", noClientCert},
		{"another cluster's TLS", loadTLS(t, otherCAFile, strangerCert, strangerKey)},
		{"plain HTTP", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			poller := newSeedClient(t, []string{addr}, tc.tls, nil)
			if record, err := poller.fetch(addr); err == nil {
				t.Errorf("fetch returned %+v, want an error", record)
			}
			if got := poller.poll("iris"); len(got) != 0 {
				t.Errorf("poll returned %v, want no member", memberIDs(got))
			}
		})
	}
}

func TestSeedLogsReachabilityChangesOnce(t *testing.T) {
	verifyNoLeaks(t)
	const (
		unreachable = "cluster: seed unreachable"
		reachable   = "cluster: seed reachable again"
	)
	addr, up := freeAddr(t), freeAddr(t)
	startSeedMember(t, "iris", "core-up", up, nil)
	logs := &recordingHandler{}
	client := newSeedClient(t, []string{addr, up}, nil, slog.New(logs))

	for range 5 {
		client.poll("iris")
	}
	if got := logs.count(slog.LevelWarn, unreachable, addr); got != 1 {
		t.Errorf("%d %q warnings after 5 polls of a down seed, want 1", got, unreachable)
	}
	if got := logs.count(slog.LevelWarn, unreachable, up); got != 0 {
		t.Errorf("%d %q warnings for a seed that replies, want 0", got, unreachable)
	}

	member := startSeedMember(t, "iris", "core-late", addr, nil)
	for range 3 {
		client.poll("iris")
	}
	if got := logs.count(slog.LevelInfo, reachable, addr); got != 1 {
		t.Errorf("%d %q records after the seed came up, want 1", got, reachable)
	}
	if got := logs.count(slog.LevelInfo, reachable, up); got != 0 {
		t.Errorf("%d %q records for a seed that never went down, want 0", got, reachable)
	}

	stopProvider(t, member)
	for range 3 {
		client.poll("iris")
	}
	if got := logs.count(slog.LevelWarn, unreachable, addr); got != 2 {
		t.Errorf("%d %q warnings after the seed went down a second time, want 2", got, unreachable)
	}
}

func TestSeedRunStopsAtShutdown(t *testing.T) {
	verifyNoLeaks(t)
	addr := freeAddr(t)
	startSeedMember(t, "iris", "core-a", addr, nil)
	client := newSeedProvider(Options{Seeds: []string{addr}, Logger: quietLogger(t), Refresh: 20 * time.Millisecond})

	var mu sync.Mutex
	publishes := 0
	client.start("iris", func(protocluster.Members) {
		mu.Lock()
		publishes++
		mu.Unlock()
	})
	waitFor(t, 5*time.Second, "a few refreshes", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return publishes >= 3
	})

	// Shutdown waits for the polling goroutine to end, and goleak checks that it has.
	stopProvider(t, client)
	stopProvider(t, client) // a second Shutdown returns at once
}

// A member whose seed stops responding in time stays in the list for
// unresponsiveGrace, because proto.actor never lets a member that left come
// back; a seed that refuses connections leaves at once.
func TestSlowSeedKeptRefusedSeedDropped(t *testing.T) {
	verifyNoLeaks(t)
	slowAddr, goneAddr := freeAddr(t), freeAddr(t)
	slow := startSeedMember(t, "iris", "core-slow", slowAddr, nil)
	gone := startSeedMember(t, "iris", "core-gone", goneAddr, nil)
	client := newSeedClient(t, []string{slowAddr, goneAddr}, nil, nil)
	if got := memberIDs(client.poll("iris")); !slices.Equal(got, []string{"core-slow", "core-gone"}) {
		t.Fatalf("members = %v, want both", got)
	}

	// core-slow's server stops responding: a listener that accepts and never
	// replies takes its place, as a frozen process would.
	stopProvider(t, slow)
	ln, err := net.Listen("tcp", slowAddr)
	if err != nil {
		t.Fatalf("listen on %s in place of the slow member: %v", slowAddr, err)
	}
	var held []net.Conn
	var heldMu sync.Mutex
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			heldMu.Lock()
			held = append(held, conn)
			heldMu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		heldMu.Lock()
		for _, c := range held {
			c.Close()
		}
		heldMu.Unlock()
	})
	stopProvider(t, gone)

	if got := memberIDs(client.poll("iris")); !slices.Equal(got, []string{"core-slow"}) {
		t.Fatalf("members after one slow and one refused poll = %v, want [core-slow]", got)
	}
	// Once the grace has passed, the slow member leaves too.
	for seed, last := range client.last {
		last.at = last.at.Add(-unresponsiveGrace)
		client.last[seed] = last
	}
	if got := memberIDs(client.poll("iris")); len(got) != 0 {
		t.Fatalf("members after the grace = %v, want none", got)
	}
}
