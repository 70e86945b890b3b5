package gateway

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/goleak"

	"github.com/iris-im/iris/actors"
	"github.com/iris-im/iris/gateway/wire"
)

var (
	ipA = netip.MustParseAddr("192.0.2.1")
	ipB = netip.MustParseAddr("192.0.2.2")
	ipC = netip.MustParseAddr("192.0.2.3")
)

func TestIPLimiterBurstThenRate(t *testing.T) {
	l := NewIPLimiter(10, 3, 0)
	for i := range 3 {
		if _, ok := l.takeAt(ipA, 0); !ok {
			t.Fatalf("connection %d of a burst of 3 rejected", i+1)
		}
	}

	wait, ok := l.takeAt(ipA, 0)
	if ok {
		t.Fatal("connection past the burst allowed")
	}
	if wait != 100*time.Millisecond {
		t.Errorf("retry after %s, want 100ms (one token at 10/s)", wait)
	}

	if _, ok := l.takeAt(ipA, 50*time.Millisecond); ok {
		t.Error("connection allowed after half a token refilled")
	}
	if _, ok := l.takeAt(ipA, 100*time.Millisecond); !ok {
		t.Error("connection rejected after a token refilled")
	}
	if _, ok := l.takeAt(ipA, 100*time.Millisecond); ok {
		t.Error("second connection allowed on one refilled token")
	}
}

func TestIPLimiterDisabled(t *testing.T) {
	cases := []struct {
		name    string
		limiter *IPLimiter
	}{
		{"nil", nil},
		{"rate 0", NewIPLimiter(0, 200, 10)},
		{"burst 0", NewIPLimiter(50, 0, 10)},
		{"negative rate", NewIPLimiter(-1, 200, 10)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for i := range 1000 {
				if !tc.limiter.Allow(ipA) {
					t.Fatalf("connection %d rejected by a disabled limiter", i+1)
				}
			}
			if n := tc.limiter.Tracked(); n != 0 {
				t.Errorf("disabled limiter tracks %d addresses", n)
			}
		})
	}
}

func TestIPLimiterKeys(t *testing.T) {
	cases := []struct {
		name   string
		first  string
		second string
		shared bool
	}{
		{"different IPv4 addresses", "192.0.2.1", "192.0.2.2", false},
		{"IPv4-mapped IPv6 is IPv4", "192.0.2.1", "::ffff:192.0.2.1", true},
		{"same IPv6 /64", "2001:db8:1:2::1", "2001:db8:1:2:ffff::9", true},
		{"different IPv6 /64", "2001:db8:1:2::1", "2001:db8:1:3::1", false},
		{"zone ignored", "fe80::1%eth0", "fe80::1%eth1", true},
		{"loopback limited", "127.0.0.1", "127.0.0.1", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := NewIPLimiter(1, 1, 0)
			if _, ok := l.takeAt(netip.MustParseAddr(tc.first), 0); !ok {
				t.Fatal("first connection rejected")
			}
			_, ok := l.takeAt(netip.MustParseAddr(tc.second), 0)
			if tc.shared && ok {
				t.Error("second address has its own bucket, want it to share the first's")
			}
			if !tc.shared && !ok {
				t.Error("second address shares the first's bucket, want its own")
			}
		})
	}
}

func TestIPLimiterCapAllowsUntracked(t *testing.T) {
	l := NewIPLimiter(1, 1, 2)
	l.takeAt(ipA, 0)
	l.takeAt(ipB, 0)

	for i := range 3 {
		if _, ok := l.takeAt(ipC, 0); !ok {
			t.Fatalf("untracked connection %d rejected", i+1)
		}
	}
	if got := l.Untracked(); got != 3 {
		t.Errorf("Untracked() = %d, want 3", got)
	}
	if got := l.Tracked(); got != 2 {
		t.Errorf("Tracked() = %d, want the cap of 2", got)
	}
	if _, ok := l.takeAt(ipA, 0); ok {
		t.Error("tracked address allowed past its burst while the map is full")
	}
}

func TestIPLimiterSweepDropsRefilledBuckets(t *testing.T) {
	l := NewIPLimiter(10, 1, 0) // refills in 100ms; sweeps at most once a second
	l.takeAt(ipA, 0)
	l.takeAt(ipB, 950*time.Millisecond)
	if got := l.Tracked(); got != 2 {
		t.Fatalf("Tracked() = %d before the sweep, want 2", got)
	}

	l.takeAt(ipC, time.Second)

	l.mu.Lock()
	_, keptA := l.buckets[ipA]
	_, keptB := l.buckets[ipB]
	_, keptC := l.buckets[ipC]
	l.mu.Unlock()
	if keptA {
		t.Error("sweep kept a bucket idle for 1s, which had refilled")
	}
	if !keptB {
		t.Error("sweep dropped a bucket used 50ms before, which had not refilled")
	}
	if !keptC {
		t.Error("bucket of the connection that triggered the sweep is missing")
	}
}

func TestIPLimiterSweepFreesCap(t *testing.T) {
	l := NewIPLimiter(10, 1, 1)
	l.takeAt(ipA, 0)
	l.takeAt(ipB, 0)
	if got := l.Untracked(); got != 1 {
		t.Fatalf("Untracked() = %d, want 1 while the map is full", got)
	}

	// After the sweep interval, the refilled bucket of ipA makes room for ipB.
	l.takeAt(ipB, time.Second)
	if _, ok := l.takeAt(ipB, time.Second); ok {
		t.Error("ipB allowed past its burst, so it got no bucket after the sweep")
	}
	if got := l.Untracked(); got != 1 {
		t.Errorf("Untracked() = %d after the sweep, want still 1", got)
	}
}

func TestIPLimiterConcurrentAllow(t *testing.T) {
	const burst = 100
	l := NewIPLimiter(0.001, burst, 0) // refills one token in 1000s, so none during the test
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		ip := ipA
		if g%2 == 1 {
			ip = ipB
		}
		wg.Go(func() {
			for range 100 {
				if l.Allow(ip) {
					allowed.Add(1)
				}
			}
		})
	}
	wg.Wait()

	if got := allowed.Load(); got != 2*burst {
		t.Errorf("allowed %d connections from 2 addresses, want exactly 2 × %d", got, burst)
	}
}

func TestRemoteIP(t *testing.T) {
	cases := []struct {
		name string
		addr net.Addr
		want string
		ok   bool
	}{
		{"TCP IPv4", &net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 4000}, "192.0.2.1", true},
		{"TCP IPv6", &net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 4000}, "2001:db8::1", true},
		{"other IP address", &net.UDPAddr{IP: net.ParseIP("192.0.2.9"), Port: 53}, "192.0.2.9", true},
		{"unix socket", &net.UnixAddr{Name: "/tmp/iris.sock", Net: "unix"}, "", false},
		{"nil", nil, "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ip, ok := remoteIP(tc.addr)
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v", ok, tc.ok)
			}
			if ok && ip.Unmap().String() != tc.want {
				t.Errorf("ip = %s, want %s", ip, tc.want)
			}
		})
	}
}

// rejectCounter records the reasons passed to ListenerConfig.OnReject.
type rejectCounter struct {
	mu      sync.Mutex
	reasons []string
}

func (r *rejectCounter) record(reason string) {
	r.mu.Lock()
	r.reasons = append(r.reasons, reason)
	r.mu.Unlock()
}

func (r *rejectCounter) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.reasons...)
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestTCPAcceptRejectsOverLimit(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{}, 4)
	var rejects rejectCounter
	cfg := &ListenerConfig{
		Transport: "tcp",
		IPLimit:   NewIPLimiter(0.001, 1, 0),
		OnReject:  rejects.record,
		Logger:    discardLogger(),
		Start: func(actors.Conn) (*actor.PID, error) {
			started <- struct{}{}
			return nil, errors.New("sessions are not part of this test")
		},
	}
	stop := make(chan struct{})
	acceptDone := make(chan error, 1)
	go func() { acceptDone <- acceptTCP(cfg, ln, stop) }()
	defer func() {
		close(stop)
		_ = ln.Close()
		if err := <-acceptDone; err != nil {
			t.Errorf("accept loop: %v", err)
		}
	}()

	first := dialLoopback(t, ln.Addr().String())
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("first connection did not reach the session starter")
	}
	_ = first.Close()

	// The client sends a login before reading, as real clients do, so the
	// server must drain it and not reset the connection before the frame.
	second := dialLoopback(t, ln.Addr().String())
	defer second.Close()
	if _, err := second.Write([]byte{0x01, 'a', 'l', 'i', 'c', 'e'}); err != nil {
		t.Fatalf("write login: %v", err)
	}
	if err := second.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(second)
	if err != nil {
		t.Fatalf("read rejection: %v", err)
	}

	want := append([]byte{0xFE, 0x00, 0x14}, "too_many_connections"...)
	if !bytes.Equal(got, want) {
		t.Errorf("rejected client read % x, want % x", got, want)
	}
	if !bytes.Equal(want, wire.AppendError(nil, ReasonTooManyConnections)) {
		t.Error("expected frame differs from wire.AppendError")
	}
	if reasons := rejects.list(); len(reasons) != 1 || reasons[0] != ReasonTooManyConnections {
		t.Errorf("OnReject reasons = %q, want one %q", reasons, ReasonTooManyConnections)
	}
	if len(started) != 0 {
		t.Error("rejected connection reached the session starter")
	}
}

func dialLoopback(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	return c
}

func TestWSUpgradeRejectsOverLimit(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var rejects rejectCounter
	cfg := &ListenerConfig{
		Transport:    "ws",
		WSPath:       "/ws",
		ReadBuffer:   4096,
		MaxWSMessage: 4096,
		IPLimit:      NewIPLimiter(0.5, 1, 0), // one token every 2s
		OnReject:     rejects.record,
		Logger:       discardLogger(),
	}
	server := newWSServer(cfg)
	serveDone := make(chan error, 1)
	go func() { serveDone <- server.Serve(ln) }()
	defer func() {
		_ = server.Close()
		if err := <-serveDone; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	}()

	client := &http.Client{Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	url := "http://" + ln.Addr().String() + "/ws"

	// A request without upgrade headers takes a token and fails the
	// handshake, so no session is needed.
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("first request: %v", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode == http.StatusTooManyRequests {
		t.Fatal("first request rejected with 429")
	}

	resp, err = client.Get(url)
	if err != nil {
		t.Fatalf("second request: %v", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("status = %d, want 429", resp.StatusCode)
	}
	if got := resp.Header.Get("Retry-After"); got != "2" {
		t.Errorf("Retry-After = %q, want 2 (seconds until a token at 0.5/s)", got)
	}
	if !resp.Close {
		t.Error("429 response keeps the connection open")
	}
	if reasons := rejects.list(); len(reasons) != 1 || reasons[0] != ReasonTooManyConnections {
		t.Errorf("OnReject reasons = %q, want one %q", reasons, ReasonTooManyConnections)
	}
}

func TestRejectLogIsRateLimited(t *testing.T) {
	var logged bytes.Buffer
	cfg := &ListenerConfig{Transport: "tcp", Logger: slog.New(slog.NewTextHandler(&logged, nil))}
	for range 50 {
		cfg.reportReject(ipA, ReasonTooManyConnections)
	}

	lines := bytes.Count(logged.Bytes(), []byte("\n"))
	if lines != 1 {
		t.Errorf("50 rejections within %s wrote %d log lines, want 1:\n%s", rejectLogInterval, lines, logged.String())
	}
	cfg.rejects.mu.Lock()
	pending := cfg.rejects.dropped
	cfg.rejects.mu.Unlock()
	if pending != 49 {
		t.Errorf("%d rejections counted for the next line, want 49", pending)
	}
}

func BenchmarkIPLimiterAllow(b *testing.B) {
	l := NewIPLimiter(1e9, 1<<30, 0) // never empty, so every call takes a token
	b.ReportAllocs()
	for b.Loop() {
		l.Allow(ipA)
	}
}
