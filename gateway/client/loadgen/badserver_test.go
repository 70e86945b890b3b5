package loadgen

import (
	"context"
	"encoding/binary"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// startBadServer accepts connections on a loopback port, replies to every
// login with LOGIN_OK and then writes reply to the connection. It returns
// the address. The listener and connections close when the test ends.
func startBadServer(t *testing.T, reply []byte) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				buf := make([]byte, 4096)
				if _, err := c.Read(buf); err != nil {
					return
				}
				_, _ = c.Write(append([]byte("\x03LOGIN_OK"), reply...))
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func badServerRun(t *testing.T, addr string) *Report {
	t.Helper()
	cfg := Config{
		Mode: ModeSteady, Transport: "tcp", Protocol: 2, Addrs: []string{addr}, Conns: 2,
		Pairing: PairingPairs, Size: 200, Inflight: 4, Duration: time.Second, Warmup: 200 * time.Millisecond,
		Drain: time.Second, StallTimeout: time.Second, ConnectTimeout: 5 * time.Second, Concurrency: 2,
		UserPrefix: "bad",
	}
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	return rep
}

func TestHugeCIDFromServerIsFault(t *testing.T) {
	accepted := []byte{0x0B}
	accepted = binary.BigEndian.AppendUint64(accepted, 1<<62) // a cid never sent
	accepted = binary.BigEndian.AppendUint64(accepted, 1)
	rep := badServerRun(t, startBadServer(t, accepted))

	if rep.Errors["sender_unknown_cid"] == 0 {
		t.Errorf("errors %v; want sender_unknown_cid counted", rep.Errors)
	}
	err := rep.Failed()
	if err == nil || !strings.Contains(err.Error(), "sender_unknown_cid") {
		t.Errorf("Failed() = %v; want a fault naming sender_unknown_cid", err)
	}
}

func TestUnansweredSendsAreFault(t *testing.T) {
	rep := badServerRun(t, startBadServer(t, nil))

	if rep.Steady.Unanswered == 0 {
		t.Fatalf("unanswered = 0 against a server that answers nothing")
	}
	err := rep.Failed()
	if err == nil || !strings.Contains(err.Error(), "neither ACCEPTED nor REJECTED") {
		t.Errorf("Failed() = %v; want a fault for the unanswered sends", err)
	}
}

func TestUnexpectedServerFrameIsFault(t *testing.T) {
	rep := badServerRun(t, startBadServer(t, []byte{0x99, 0x99, 0x99}))

	if err := rep.Failed(); err == nil {
		t.Errorf("Failed() = nil (errors %v); want a fault for the frame no client can read", rep.Errors)
	}
}
