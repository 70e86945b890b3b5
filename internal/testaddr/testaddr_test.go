package testaddr

import (
	"net"
	"strconv"
	"testing"
)

func TestFreeNeverRepeats(t *testing.T) {
	seen := map[string]bool{}
	for range 200 {
		addr := Free(t, "127.0.0.1")
		if seen[addr] {
			t.Fatalf("Free returned %s twice", addr)
		}
		seen[addr] = true

		_, portText, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatal(err)
		}
		port, _ := strconv.Atoi(portText)
		if port < lowestPort || port >= ephemeralStart() {
			t.Errorf("port %d outside [%d, %d)", port, lowestPort, ephemeralStart())
		}
	}
}

func TestFreeSkipsPortInUse(t *testing.T) {
	addr := Free(t, "127.0.0.1")
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("bind the address Free returned: %v", err)
	}
	defer ln.Close()

	// The next port in line is taken by this process; Free must skip it.
	mu.Lock()
	nextAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(next))
	mu.Unlock()
	if listener, err := net.Listen("tcp", nextAddr); err == nil { // else another process holds it
		defer listener.Close()
	}
	if got := Free(t, "127.0.0.1"); got == nextAddr {
		t.Errorf("Free returned %s, which is bound", got)
	}
}
