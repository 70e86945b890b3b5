// Package testaddr hands out loopback addresses to tests that must name a port before the
// server that binds it starts, such as the members of a raft group, which all need every
// address at once.
package testaddr

import (
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Ports come from below the kernel's ephemeral range, so that no socket bound to port 0 and
// no outgoing connection can take one between Free and the server's bind. Picking by binding
// port 0 and closing could hand out the same port twice in a row, and a raft group then got
// two members at one address.
const (
	lowestPort       = 20000
	defaultEphemeral = 32768 // Linux's default start of the ephemeral range
)

var (
	mu      sync.Mutex
	low     int // first port handed out, inclusive
	high    int // end of the ports handed out, exclusive
	next    int // next port to try
	started bool
)

// Free returns host:port, where host is a loopback address such as 127.0.0.1, for a port
// that was free a moment ago and that no earlier call in this process returned. Every
// process starts at a random port, so test binaries running in parallel rarely try the same
// ones, and a port another process holds fails the probe.
func Free(t testing.TB, host string) string {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if !started {
		low, high = lowestPort, ephemeralStart()
		next = low + rand.IntN(high-low)
		started = true
	}

	for range high - low {
		port := next
		next++
		if next == high {
			next = low
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			continue // taken by another process
		}
		addr := ln.Addr().String()
		if err := ln.Close(); err != nil {
			t.Fatalf("testaddr: close probe listener on %s: %v", addr, err)
		}
		return addr
	}
	t.Fatalf("testaddr: no free port on %s between %d and %d", host, low, high)
	return ""
}

// ephemeralStart returns the first port of the kernel's ephemeral range, or Linux's default
// where the range cannot be read.
func ephemeralStart() int {
	data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return defaultEphemeral
	}
	fields := strings.Fields(string(data))
	if len(fields) == 0 {
		return defaultEphemeral
	}
	start, err := strconv.Atoi(fields[0])
	if err != nil || start <= lowestPort+1000 {
		return defaultEphemeral
	}
	return start
}
