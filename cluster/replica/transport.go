package replica

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// handshakeTimeout bounds the TLS handshake of an incoming raft connection.
const handshakeTimeout = 5 * time.Second

// rejectLogInterval is the minimum time between two log lines about rejected connections.
const rejectLogInterval = 10 * time.Second

// streamLayer is raft's StreamLayer over TCP, with mutual TLS when tlsConfig is set.
//
// With TLS, a background loop accepts TCP connections and runs each handshake in its own
// goroutine, so that a peer that stalls its handshake cannot block raft's accept loop. Only
// connections whose client certificate verifies against the configured ClientCAs reach
// Accept; the rest are closed and counted.
type streamLayer struct {
	ln        net.Listener
	advertise net.Addr
	tlsConfig *tls.Config // nil for plain TCP
	logger    *slog.Logger

	accepted chan net.Conn
	closed   chan struct{}
	closeMu  sync.Once
	wg       sync.WaitGroup

	// conns lists the open connections in both directions. Raft's NetworkTransport (v1.7.2)
	// closes neither its pooled connections nor the inbound ones when it shuts down. Close
	// closes them, because otherwise a stopped replica would keep its peers' handlers blocked.
	connsMu sync.Mutex
	conns   map[*trackedConn]struct{}

	rejected      atomic.Uint64 // incoming connections that failed the TLS handshake
	lastRejectLog atomic.Int64  // unix nanoseconds of the last log line about a rejection
}

var _ raft.StreamLayer = (*streamLayer)(nil)

// newStreamLayer listens on bindAddr. advertise is the address peers dial; nil means the
// listener's address.
func newStreamLayer(bindAddr string, advertise net.Addr, tlsConfig *tls.Config, logger *slog.Logger) (*streamLayer, error) {
	ln, err := net.Listen("tcp", bindAddr)
	if err != nil {
		return nil, fmt.Errorf("replica: listen for raft traffic on %s: %w", bindAddr, err)
	}
	if advertise == nil {
		advertise = ln.Addr()
	}
	l := &streamLayer{
		ln:        ln,
		advertise: advertise,
		tlsConfig: tlsConfig,
		logger:    logger,
		accepted:  make(chan net.Conn),
		closed:    make(chan struct{}),
		conns:     make(map[*trackedConn]struct{}),
	}
	if tlsConfig != nil {
		l.wg.Add(1)
		go l.acceptTLS()
	}
	return l, nil
}

// Accept returns the next incoming connection, after a successful handshake when TLS is on.
func (l *streamLayer) Accept() (net.Conn, error) {
	if l.tlsConfig == nil {
		conn, err := l.ln.Accept()
		if err != nil {
			return nil, err
		}
		return l.track(conn)
	}
	select {
	case conn := <-l.accepted:
		return l.track(conn)
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// trackedConn is a connection that the stream layer closes at Close.
type trackedConn struct {
	net.Conn
	layer *streamLayer
	once  sync.Once
}

func (c *trackedConn) Close() error {
	var err error
	c.once.Do(func() {
		c.layer.connsMu.Lock()
		delete(c.layer.conns, c)
		c.layer.connsMu.Unlock()
		err = c.Conn.Close()
	})
	return err
}

// track registers conn for closing at Close, or closes it when Close has already run.
func (l *streamLayer) track(conn net.Conn) (net.Conn, error) {
	l.connsMu.Lock()
	defer l.connsMu.Unlock()
	select {
	case <-l.closed:
		_ = conn.Close()
		return nil, net.ErrClosed
	default:
	}
	tc := &trackedConn{Conn: conn, layer: l}
	l.conns[tc] = struct{}{}
	return tc, nil
}

// acceptTLS accepts TCP connections until Close and hands each to a handshake goroutine.
func (l *streamLayer) acceptTLS() {
	defer l.wg.Done()
	delay := 5 * time.Millisecond
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			select {
			case <-l.closed:
				return
			default:
			}
			// A temporary failure such as running out of file descriptors: back off.
			l.logger.Warn("replica: accepting a raft connection failed; retrying", "err", err, "retry_in", delay)
			select {
			case <-l.closed:
				return
			case <-time.After(delay):
			}
			delay = min(2*delay, time.Second)
			continue
		}
		delay = 5 * time.Millisecond
		l.wg.Add(1)
		go l.handshake(conn)
	}
}

func (l *streamLayer) handshake(raw net.Conn) {
	defer l.wg.Done()
	conn := tls.Server(raw, l.tlsConfig)
	ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
	defer cancel()
	// Close aborts handshakes in progress.
	go func() {
		select {
		case <-l.closed:
			cancel()
		case <-ctx.Done():
		}
	}()

	if err := conn.HandshakeContext(ctx); err != nil {
		_ = conn.Close()
		l.noteRejected(raw.RemoteAddr(), err)
		return
	}
	select {
	case l.accepted <- conn:
	case <-l.closed:
		_ = conn.Close()
	}
}

// noteRejected counts a failed handshake and logs it, at most once per rejectLogInterval.
func (l *streamLayer) noteRejected(remote net.Addr, err error) {
	n := l.rejected.Add(1)
	now := time.Now().UnixNano()
	last := l.lastRejectLog.Load()
	if now-last < int64(rejectLogInterval) || !l.lastRejectLog.CompareAndSwap(last, now) {
		return
	}
	l.logger.Warn("replica: rejected a raft connection: TLS handshake failed (is the peer's certificate from the cluster CA?)",
		"remote", remote.String(), "err", err, "rejected_total", n)
}

// Close stops accepting connections and closes every open connection in both directions.
func (l *streamLayer) Close() error {
	var err error
	l.closeMu.Do(func() {
		l.connsMu.Lock()
		close(l.closed)
		open := make([]*trackedConn, 0, len(l.conns))
		for c := range l.conns {
			open = append(open, c)
		}
		l.connsMu.Unlock()

		err = l.ln.Close()
		l.wg.Wait()
		for _, c := range open {
			_ = c.Close()
		}
	})
	return err
}

// Addr returns the address peers dial.
func (l *streamLayer) Addr() net.Addr {
	return l.advertise
}

// Dial connects to a peer's raft address. With TLS it completes the handshake within timeout
// and presents this node's certificate; the peer's certificate must verify against RootCAs.
func (l *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	dialer := &net.Dialer{Timeout: timeout}
	if l.tlsConfig == nil {
		conn, err := dialer.Dial("tcp", string(address))
		if err != nil {
			return nil, err
		}
		return l.track(conn)
	}
	conn, err := tls.DialWithDialer(dialer, "tcp", string(address), l.tlsConfig)
	if err != nil {
		return nil, fmt.Errorf("replica: TLS dial of raft peer %s: %w", address, err)
	}
	return l.track(conn)
}

// serverTLSConfig returns a copy of cfg that raft connections use in both directions. Each
// node presents cfg.Certificates as server and as client; incoming connections must present a
// client certificate that verifies against cfg.ClientCAs.
func serverTLSConfig(cfg *tls.Config) (*tls.Config, error) {
	if len(cfg.Certificates) == 0 && cfg.GetCertificate == nil {
		return nil, errors.New("replica: Config.TLS has no certificate; set Certificates to this node's certificate from the cluster CA")
	}
	if cfg.ClientCAs == nil {
		return nil, errors.New("replica: Config.TLS.ClientCAs is nil; set it to the cluster CA so peers' client certificates can be verified")
	}
	if cfg.RootCAs == nil {
		return nil, errors.New("replica: Config.TLS.RootCAs is nil; set it to the cluster CA so peers' server certificates can be verified")
	}
	out := cfg.Clone()
	out.ClientAuth = tls.RequireAndVerifyClientCert
	out.MinVersion = max(out.MinVersion, tls.VersionTLS12)
	return out, nil
}
