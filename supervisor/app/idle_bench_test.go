package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/iris-im/iris/config"
	"github.com/iris-im/iris/gateway/client"
)

// idleBenchConns is how many clients BenchmarkIdleSession holds at once.
// Each costs two file descriptors in this process, client and server side.
const idleBenchConns = 1000

// BenchmarkIdleSession measures the memory of an idle logged-in TCP
// client: idleBenchConns clients connect to a node over loopback, log in
// with LOGIN2 and go quiet, and the heap and the goroutine stacks are read
// after a garbage collection. Both figures include the clients' own
// sockets, which live in this process too: a few hundred heap bytes each
// and no goroutine.
func BenchmarkIdleSession(b *testing.B) {
	cfg := config.Default()
	cfg.Node.DataDir = b.TempDir()
	cfg.Edge.TCPAddr = "127.0.0.1:0"
	cfg.Edge.WSAddr = "127.0.0.1:0"
	cfg.Admin.Addr = "127.0.0.1:0"
	// Every client comes from 127.0.0.1, which the per-address limits
	// would stop after a few hundred.
	cfg.Limits.ConnRate, cfg.Limits.ConnBurst = 0, 0
	cfg.Limits.MaxConnectionsPerIP = 0
	n, err := Start(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatalf("start node: %v", err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := n.Stop(ctx); err != nil {
			b.Errorf("stop node: %v", err)
		}
	})
	addr := n.TCPAddr().String()

	var heap, stack float64
	for b.Loop() {
		before := readMemory()
		conns := loginIdleClients(b, addr, idleBenchConns)
		after := readMemory()
		for _, c := range conns {
			_ = c.Close()
		}
		heap += float64(after.HeapAlloc) - float64(before.HeapAlloc)
		stack += float64(after.StackInuse) - float64(before.StackInuse)
	}
	total := float64(b.N * idleBenchConns)
	b.ReportMetric(heap/total, "heap-B/conn")
	b.ReportMetric(stack/total, "stack-B/conn")
}

// readMemory collects garbage twice, so that what sync.Pool dropped in
// the first cycle is freed too, and reads the memory statistics.
func readMemory() runtime.MemStats {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m
}

// loginIdleClients connects count clients to addr and logs each in, as a
// distinct user, waiting for its LOGIN_OK.
func loginIdleClients(b *testing.B, addr string, count int) []net.Conn {
	b.Helper()
	conns := make([]net.Conn, 0, count)
	for i := range count {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatalf("connect client %d: %v", i, err)
		}
		conns = append(conns, c)
		login, err := client.AppendLogin2(nil, fmt.Sprintf("idle-%d", i), "")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Write(login); err != nil {
			b.Fatalf("client %d: write LOGIN2: %v", i, err)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		var reply [1]byte
		if _, err := c.Read(reply[:]); err != nil {
			b.Fatalf("client %d: read LOGIN_OK: %v", i, err)
		}
		if client.Op(reply[0]) != client.OpLoginOK {
			b.Fatalf("client %d: got opcode 0x%02x, expected LOGIN_OK", i, reply[0])
		}
		_ = c.SetReadDeadline(time.Time{})
	}
	return conns
}
