package gateway

import (
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iris-im/iris/gateway/wire"
)

// ReasonTooManyConnections is the ERROR reason sent to a TCP client, and the
// reason passed to ListenerConfig.OnReject, when the per-IP connection rate
// limit rejects a connection.
const ReasonTooManyConnections = "too_many_connections"

// DefaultMaxTrackedIPs is the cap on the addresses an IPLimiter tracks at
// once when NewIPLimiter is given none. A tracked address took 63 bytes of
// heap (measured with 100,000 entries, Go 1.26 on linux/amd64), so the
// default cap bounds the map near 6 MB.
const DefaultMaxTrackedIPs = 100_000

// rejectWriteTimeout bounds the time spent sending the reason to a rejected TCP client,
// so that a client that does not read cannot hold the goroutine.
const rejectWriteTimeout = time.Second

// IPLimiter limits how often each remote address may open a connection,
// with one token bucket per address. IPv4 addresses (also IPv4-mapped IPv6)
// are limited one by one. IPv6 addresses are limited per /64 prefix, because
// a single host usually controls a whole /64 and could otherwise pick a new
// address for every connection. Loopback is limited like any other address.
//
// Memory is bounded in two ways. A bucket that has been idle long enough to
// refill is dropped, because a new bucket would start in the same state. At
// most maxTracked buckets exist at once: past the cap, connections from
// addresses without a bucket are allowed, and Untracked counts them, so that
// a flood of distinct addresses cannot grow the map or lock out new clients.
//
// NOTE: the limit applies to the address of the TCP peer. Behind a reverse
// proxy or load balancer, all clients share its address and its limit, and
// X-Forwarded-For is not read because clients can forge it.
//
// A nil *IPLimiter allows every connection. IPLimiter is safe for concurrent
// use.
type IPLimiter struct {
	rate       float64 // tokens added per second, 0 when disabled
	burst      float64 // bucket capacity
	maxTracked int

	// refill is how long an empty bucket takes to fill up, which is how
	// long a bucket must be idle before a sweep drops it. Sweeps run at most
	// once per sweepInterval, because each one scans the whole map.
	refill        time.Duration
	sweepInterval time.Duration

	start     time.Time // origin of the monotonic offsets in ipBucket
	untracked atomic.Uint64

	mu        sync.Mutex
	buckets   map[netip.Addr]ipBucket
	lastSweep time.Duration // offset from start
}

// ipBucket is the token bucket of one address or IPv6 /64 prefix.
type ipBucket struct {
	tokens float64
	last   time.Duration // offset from IPLimiter.start of the last refill
}

// NewIPLimiter returns a limiter that allows each address ratePerSec new
// connections per second in steady state, with bursts of up to burst. A
// ratePerSec or burst of 0 or less disables the limit. maxTracked caps the
// number of addresses tracked at once, and 0 or less selects
// DefaultMaxTrackedIPs.
func NewIPLimiter(ratePerSec float64, burst int, maxTracked int) *IPLimiter {
	if maxTracked <= 0 {
		maxTracked = DefaultMaxTrackedIPs
	}
	l := &IPLimiter{maxTracked: maxTracked, start: time.Now(), buckets: make(map[netip.Addr]ipBucket)}
	if ratePerSec <= 0 || burst <= 0 || math.IsNaN(ratePerSec) || math.IsInf(ratePerSec, 0) {
		return l
	}
	l.rate = ratePerSec
	l.burst = float64(burst)
	l.refill = time.Duration(l.burst / l.rate * float64(time.Second))
	l.sweepInterval = max(l.refill, time.Second)
	return l
}

// Allow takes one token from the bucket of ip and reports whether the
// connection may proceed.
func (l *IPLimiter) Allow(ip netip.Addr) bool {
	_, ok := l.Take(ip)
	return ok
}

// Take takes one token from the bucket of ip. When the bucket is empty, it
// takes none and returns how long until a token is available.
func (l *IPLimiter) Take(ip netip.Addr) (retryAfter time.Duration, ok bool) {
	if l == nil || l.rate == 0 {
		return 0, true
	}
	return l.takeAt(ip, time.Since(l.start))
}

// Untracked returns how many connections were allowed without a bucket
// because maxTracked addresses were already tracked.
func (l *IPLimiter) Untracked() uint64 {
	if l == nil {
		return 0
	}
	return l.untracked.Load()
}

// Tracked returns the number of addresses that currently have a bucket.
func (l *IPLimiter) Tracked() int {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

// takeAt is Take at the time now, given as an offset from l.start, so tests
// can move the clock.
func (l *IPLimiter) takeAt(ip netip.Addr, now time.Duration) (time.Duration, bool) {
	key := limitKey(ip)

	l.mu.Lock()
	defer l.mu.Unlock()

	if now-l.lastSweep >= l.sweepInterval {
		l.sweep(now)
	}

	b, found := l.buckets[key]
	if !found {
		if len(l.buckets) >= l.maxTracked {
			l.untracked.Add(1)
			return 0, true
		}
		b = ipBucket{tokens: l.burst, last: now}
	}

	if elapsed := now - b.last; elapsed > 0 {
		b.tokens = min(l.burst, b.tokens+elapsed.Seconds()*l.rate)
		b.last = now
	}
	if b.tokens < 1 {
		l.buckets[key] = b
		wait := time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
		return max(wait, time.Nanosecond), false
	}
	b.tokens--
	l.buckets[key] = b
	return 0, true
}

// sweep drops the buckets that have refilled since their last use. The
// caller holds l.mu.
func (l *IPLimiter) sweep(now time.Duration) {
	l.lastSweep = now
	for key, b := range l.buckets {
		if now-b.last >= l.refill {
			delete(l.buckets, key)
		}
	}
}

// limitKey returns the key of the bucket that limits ip: the IPv4 address,
// or the /64 prefix of an IPv6 address.
func limitKey(ip netip.Addr) netip.Addr {
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		prefix, err := ip.Prefix(64)
		if err == nil {
			return prefix.Addr()
		}
	}
	return ip
}

// remoteIP returns the IP address of a connection's remote end, or false
// when the address is not an IP address.
func remoteIP(addr net.Addr) (netip.Addr, bool) {
	if tcp, ok := addr.(*net.TCPAddr); ok {
		return tcp.AddrPort().Addr(), true
	}
	if addr == nil {
		return netip.Addr{}, false
	}
	addrPort, err := netip.ParseAddrPort(addr.String())
	if err != nil {
		return netip.Addr{}, false
	}
	return addrPort.Addr(), true
}

// admitTCP reports whether the per-IP limit allows the accepted connection.
// When it does not, admitTCP reports the rejection and sends the client the reason
// in a goroutine, so a slow client cannot stall the accept loop.
func admitTCP(cfg *ListenerConfig, c net.Conn) bool {
	ip, ok := remoteIP(c.RemoteAddr())
	if !ok {
		return true
	}
	if !cfg.IPLimit.Allow(ip) {
		cfg.reportReject(ip, ReasonTooManyConnections)
		go rejectTCP(c, ReasonTooManyConnections)
		return false
	}
	if reason, ok := cfg.Conns.Acquire(ip); !ok {
		cfg.reportReject(ip, reason)
		go rejectTCP(c, reason)
		return false
	}
	return true
}

// rejectTCP sends the too_many_connections ERROR frame and closes c. It
// half-closes and drains what the client sent before the full close,
// because closing a socket with unread input sends a TCP reset, which can
// discard the frame before the client reads it.
func rejectTCP(c net.Conn, reason string) {
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(rejectWriteTimeout)); err != nil {
		return
	}
	if _, err := c.Write(wire.AppendError(nil, reason)); err != nil {
		return
	}
	if half, ok := c.(interface{ CloseWrite() error }); ok {
		if half.CloseWrite() == nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(c, 64<<10))
		}
	}
}

// admitWS reports whether the per-IP limit allows a WebSocket upgrade
// request. When it does not, admitWS responds with 429 Too Many Requests with a
// Retry-After header in whole seconds, and closes the HTTP connection.
func admitWS(cfg *ListenerConfig, w http.ResponseWriter, r *http.Request) bool {
	addrPort, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return true
	}
	ip := addrPort.Addr()
	wait, ok := cfg.IPLimit.Take(ip)
	if ok {
		if reason, ok := cfg.Conns.Acquire(ip); !ok {
			cfg.reportReject(ip, reason)
			w.Header().Set("Connection", "close")
			http.Error(w, reason, http.StatusServiceUnavailable)
			return false
		}
		return true
	}
	cfg.reportReject(ip, ReasonTooManyConnections)

	seconds := max(1, int64(math.Ceil(wait.Seconds())))
	w.Header().Set("Retry-After", strconv.FormatInt(seconds, 10))
	w.Header().Set("Connection", "close")
	http.Error(w, "too many connections from this address, retry later", http.StatusTooManyRequests)
	return false
}

// rejectLogInterval is the minimum time between two log lines about
// rejected connections on one listener.
const rejectLogInterval = 10 * time.Second

// rejectLog counts rejected connections between log lines, so that a flood
// produces one line per rejectLogInterval instead of one per connection.
type rejectLog struct {
	mu      sync.Mutex
	last    time.Time
	dropped int // rejections since the last line
}

// reportReject calls OnReject and logs the rejection, at most once per
// rejectLogInterval with the number of rejections since the previous line.
func (c *ListenerConfig) reportReject(ip netip.Addr, reason string) {
	if c.OnReject != nil {
		c.OnReject(reason)
	}

	c.rejects.mu.Lock()
	c.rejects.dropped++
	now := time.Now()
	if now.Sub(c.rejects.last) < rejectLogInterval {
		c.rejects.mu.Unlock()
		return
	}
	count := c.rejects.dropped
	c.rejects.dropped = 0
	c.rejects.last = now
	c.rejects.mu.Unlock()

	if c.Logger != nil {
		c.Logger.Warn("connections rejected by connection limits",
			slog.String("transport", c.Transport), slog.String("last_ip", ip.String()),
			slog.String("last_reason", reason), slog.Int("rejected", count))
	}
}
