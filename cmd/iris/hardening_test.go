package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/iris-im/iris/gateway/client"
)

// rssBytes returns the resident set size of process pid.
func rssBytes(t *testing.T, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("VmRSS not found")
	return 0
}

// counter reads one counter from the server's /stats.
func counter(t *testing.T, s *testServer, name string) uint64 {
	t.Helper()
	resp, err := http.Get("http://" + s.adminAddr + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var stats struct {
		Counters map[string]uint64 `json:"counters"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&stats); err != nil {
		t.Fatal(err)
	}
	return stats.Counters[name]
}

func TestSlowReaderBoundedAndDisconnected(t *testing.T) {
	s := startServer(t, append(highSendRate, "IRIS_EDGE_SLOW_TIMEOUT=2s", "IRIS_EDGE_WINDOW_BYTES=1048576")...)
	const total = 10_000

	// slowpoke logs in and then never reads.
	slow, err := net.Dial("tcp", s.addr(tcp))
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	_ = slow.(*net.TCPConn).SetReadBuffer(4096)
	if _, err := slow.Write([]byte("\x01slowpoke")); err != nil {
		t.Fatal(err)
	}
	loginOK := make([]byte, 9)
	_ = slow.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := slow.Read(loginOK); err != nil || loginOK[0] != 0x03 {
		t.Fatalf("slowpoke login: %x, %v", loginOK, err)
	}

	before := rssBytes(t, s.cmd.Process.Pid)
	sender := s.login2(t, tcp, "sender")
	ctx := testCtx(t, 60*time.Second)
	body := strings.Repeat("x", 200)
	accepted := 0
	for sent := 0; sent < total || accepted < total; {
		for sent < total && sent-accepted < 256 {
			sent++
			if err := sender.Send2(uint64(sent), "slowpoke", []byte(body)); err != nil {
				t.Fatal(err)
			}
		}
		f, err := sender.Next(ctx)
		if err != nil {
			t.Fatalf("waiting for ACCEPTED (%d of %d): %v", accepted, total, err)
		}
		if f.Op == client.OpAccepted {
			accepted++
		}
	}

	deadline := time.Now().Add(15 * time.Second)
	for counter(t, s, "slow_consumers") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the reader that never reads was not disconnected")
		}
		time.Sleep(100 * time.Millisecond)
	}
	after := rssBytes(t, s.cmd.Process.Pid)
	t.Logf("server RSS %d MB before, %d MB after %d messages to a reader that never reads", before>>20, after>>20, total)
	if grown := after - before; grown > 50<<20 {
		t.Errorf("server RSS grew by %d MB, want less than 50 MB", grown>>20)
	}

	// A fresh login gets all of them, in order.
	again := s.login2(t, tcp, "slowpoke")
	for seq := uint64(1); seq <= total; seq++ {
		f, err := again.Expect(ctx, client.OpDeliver)
		if err != nil {
			t.Fatalf("waiting for delivery %d of %d: %v", seq, total, err)
		}
		if f.Seq != seq {
			t.Fatalf("delivery seq %d, want %d", f.Seq, seq)
		}
		if seq%100 == 0 {
			if err := again.Ack2(seq); err != nil {
				t.Fatal(err)
			}
		}
	}
}
