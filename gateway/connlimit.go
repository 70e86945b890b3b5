package gateway

import (
	"net/netip"
	"sync"
)

// Reasons a connection is refused by the connection counts.
const (
	// ReasonServerFull refuses a connection past limits.max_connections.
	ReasonServerFull = "server_full"
	// ReasonTooManyFromAddress refuses a connection past
	// limits.max_connections_per_ip open connections from one address.
	ReasonTooManyFromAddress = "too_many_connections_from_address"
)

// ConnCounter limits the open client connections of a node, in all and
// per remote address (IPv6 per /64, as IPLimiter counts it). A limit of 0
// or less is no limit. A nil *ConnCounter allows everything. It is safe for
// concurrent use; both listeners of a node share one.
type ConnCounter struct {
	maxTotal, maxPerIP int

	mu    sync.Mutex
	total int
	perIP map[netip.Addr]int
}

// NewConnCounter returns a counter with the given limits.
func NewConnCounter(maxTotal, maxPerIP int) *ConnCounter {
	return &ConnCounter{maxTotal: maxTotal, maxPerIP: maxPerIP, perIP: make(map[netip.Addr]int)}
}

// Acquire counts a new connection from ip, or reports why it is refused.
// Every successful Acquire must be matched by one Release.
func (c *ConnCounter) Acquire(ip netip.Addr) (reason string, ok bool) {
	if c == nil {
		return "", true
	}
	key := limitKey(ip)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.maxTotal > 0 && c.total >= c.maxTotal {
		return ReasonServerFull, false
	}
	if c.maxPerIP > 0 && c.perIP[key] >= c.maxPerIP {
		return ReasonTooManyFromAddress, false
	}
	c.total++
	c.perIP[key]++
	return "", true
}

// Release counts a connection from ip as closed.
func (c *ConnCounter) Release(ip netip.Addr) {
	if c == nil {
		return
	}
	key := limitKey(ip)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total--
	if n := c.perIP[key] - 1; n > 0 {
		c.perIP[key] = n
	} else {
		delete(c.perIP, key)
	}
}

// Open returns the number of connections counted now.
func (c *ConnCounter) Open() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total
}
