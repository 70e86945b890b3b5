// Package client is a Go client for the Iris wire protocol over TCP and
// WebSocket, plain or with TLS (WithTLS). It is written from the protocol description alone, without the
// server's codec, so that a framing mistake on either side shows up when the
// two meet in tests. The server's end-to-end tests and the load generator
// use it.
//
// A Conn has one reader goroutine that decodes every server-to-client frame
// into a Frame. Callers take frames with Next or Expect. The calls that wait
// for a reply (Login, GetStatus, FetchPrekeys, ...) set aside the unrelated
// frames they meet, and Next hands those out first, so no delivery is lost
// while waiting.
package client

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// Transport names accepted by Dial.
const (
	TransportTCP       = "tcp"
	TransportWebSocket = "ws"
)

// ErrClosed is returned by Next and the waiting calls once the connection is
// closed, by the server or by Close. It wraps the transport error, if any.
var ErrClosed = errors.New("connection closed")

// Option changes a Dial default.
type Option func(*options)

type options struct {
	tlsConfig    *tls.Config
	wsPath       string
	writeTimeout time.Duration
	maxFrameSize int
	frameBuffer  int
}

// WithTLS makes Dial use TLS (wss:// for WebSocket) with cfg.
func WithTLS(cfg *tls.Config) Option { return func(o *options) { o.tlsConfig = cfg } }

// WithPath sets the WebSocket URL path. The default is "/ws".
func WithPath(path string) Option { return func(o *options) { o.wsPath = path } }

// WithWriteTimeout bounds each write. The default is 10 s.
func WithWriteTimeout(d time.Duration) Option { return func(o *options) { o.writeTimeout = d } }

// WithMaxFrameSize sets the largest server frame, and over WebSocket the
// largest message, that the reader accepts. The default is 8 MiB. A larger
// frame ends the connection with ErrMalformedFrame.
func WithMaxFrameSize(n int) Option { return func(o *options) { o.maxFrameSize = n } }

// WithFrameBuffer sets how many decoded frames may wait for Next before the
// reader stops reading from the socket. The default is 4096.
func WithFrameBuffer(n int) Option { return func(o *options) { o.frameBuffer = n } }

// transport is the byte-level side of a Conn.
type transport interface {
	// write sends b as one TCP write or one binary WebSocket message.
	write(deadline time.Time, b []byte) error
	// readFrames decodes frames and passes each to emit until the stream
	// fails or emit returns false.
	readFrames(maxFrameSize int, emit func(Frame) bool) error
	close() error
}

// Conn is one client connection. Writes may come from several goroutines.
// Next, Expect and the calls that wait for a reply take turns, so a second
// caller waits for the first.
type Conn struct {
	tr   transport
	opts options

	writeMu sync.Mutex

	frames    chan Frame
	readDone  chan struct{} // closed when the reader goroutine returns
	readErr   error         // written before readDone is closed
	closing   chan struct{}
	closeOnce sync.Once
	closeErr  error

	// recvTurn is a one-slot semaphore, so that waiting for a turn can be
	// cancelled by a context, which a sync.Mutex cannot do.
	recvTurn chan struct{}
	stash    []Frame // frames set aside by waiting calls; guarded by recvTurn

	userMu sync.Mutex
	user   string
}

// Dial connects to addr ("host:port") over transport "tcp" or "ws" and
// starts the reader goroutine. Close must be called to stop it.
func Dial(ctx context.Context, transportName, addr string, opts ...Option) (*Conn, error) {
	o := options{wsPath: "/ws", writeTimeout: 10 * time.Second, maxFrameSize: defaultMaxFrameSize, frameBuffer: 4096}
	for _, opt := range opts {
		opt(&o)
	}

	var tr transport
	var err error
	switch transportName {
	case TransportTCP:
		tr, err = dialTCP(ctx, addr, o)
	case TransportWebSocket:
		tr, err = dialWebSocket(ctx, addr, o)
	default:
		return nil, fmt.Errorf("client: unknown transport %q, expected %q or %q", transportName, TransportTCP, TransportWebSocket)
	}
	if err != nil {
		return nil, err
	}

	c := &Conn{
		tr:       tr,
		opts:     o,
		frames:   make(chan Frame, o.frameBuffer),
		readDone: make(chan struct{}),
		closing:  make(chan struct{}),
		recvTurn: make(chan struct{}, 1),
	}
	go c.readLoop()
	return c, nil
}

func (c *Conn) readLoop() {
	defer close(c.readDone)
	err := c.tr.readFrames(c.opts.maxFrameSize, func(f Frame) bool {
		select {
		case c.frames <- f:
			return true
		case <-c.closing:
			return false
		}
	})

	// After a read error or a malformed frame the stream cannot be
	// resynchronized, so the socket is closed now rather than at Close. This
	// lets the server detect the disconnect at once.
	select {
	case <-c.closing:
	default:
		_ = c.tr.close()
	}

	if !errors.Is(err, ErrMalformedFrame) {
		err = fmt.Errorf("%w: %w", ErrClosed, err)
	}
	c.readErr = err
}

// Close closes the connection and waits for the reader goroutine to return.
// Frames already decoded stay available to Next. Calling Close again returns
// the first result.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		close(c.closing)
		c.closeErr = c.tr.close()
		<-c.readDone
	})
	return c.closeErr
}

// Done returns a channel that is closed once the reader stops, because the
// server closed the connection, a frame failed to decode, or Close was called.
func (c *Conn) Done() <-chan struct{} { return c.readDone }

// User returns the name of the last successful login on this connection.
func (c *Conn) User() string {
	c.userMu.Lock()
	defer c.userMu.Unlock()
	return c.user
}

// WriteRaw sends b unchanged as one TCP write or one WebSocket message. It
// serves tests that need arbitrary bytes or several frames in one write.
func (c *Conn) WriteRaw(b []byte) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if err := c.tr.write(time.Now().Add(c.opts.writeTimeout), b); err != nil {
		return fmt.Errorf("client: write of %d bytes failed: %w", len(b), err)
	}
	return nil
}

// writeFrame sends a frame built by an Append function.
func (c *Conn) writeFrame(b []byte, err error) error {
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	return c.WriteRaw(b)
}

func (c *Conn) takeTurn(ctx context.Context) error {
	select {
	case c.recvTurn <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *Conn) endTurn() { <-c.recvTurn }

// receive returns the next frame from the reader. The caller holds the turn.
func (c *Conn) receive(ctx context.Context) (Frame, error) {
	select {
	case f := <-c.frames:
		return f, nil
	case <-c.readDone:
		// A frame may have been queued just before the reader stopped.
		select {
		case f := <-c.frames:
			return f, nil
		default:
			return Frame{}, c.readErr
		}
	case <-ctx.Done():
		return Frame{}, ctx.Err()
	}
}

// Next returns the next frame from the server, oldest first. After the
// connection ends and every frame has been taken, it returns an error
// wrapping ErrClosed or ErrMalformedFrame.
func (c *Conn) Next(ctx context.Context) (Frame, error) {
	if err := c.takeTurn(ctx); err != nil {
		return Frame{}, err
	}
	defer c.endTurn()

	if len(c.stash) > 0 {
		f := c.stash[0]
		c.stash = c.stash[1:]
		return f, nil
	}
	return c.receive(ctx)
}

// Expect returns the next frame and an error if its opcode is not op. The
// error shows the frame that arrived instead.
func (c *Conn) Expect(ctx context.Context, op Op) (Frame, error) {
	f, err := c.Next(ctx)
	if err != nil {
		return f, fmt.Errorf("waiting for %v: %w", op, err)
	}
	if f.Op != op {
		return f, fmt.Errorf("expected %v, got %v", op, f)
	}
	return f, nil
}

// ExpectClosed waits until the server closes the connection. Frames that
// arrive before the close are returned, so a caller can check them.
func (c *Conn) ExpectClosed(ctx context.Context) ([]Frame, error) {
	var extra []Frame
	for {
		f, err := c.Next(ctx)
		if errors.Is(err, ErrClosed) {
			return extra, nil
		}
		if err != nil {
			return extra, err
		}
		extra = append(extra, f)
	}
}

// waitFor writes request, then returns the first new frame for which match
// is true. An OpError frame ends the wait as a *ServerError, because the
// server replies to a rejected request with one. Other frames are set aside for
// Next.
func (c *Conn) waitFor(ctx context.Context, request []byte, match func(Frame) bool) (Frame, error) {
	if err := c.takeTurn(ctx); err != nil {
		return Frame{}, err
	}
	defer c.endTurn()

	if err := c.WriteRaw(request); err != nil {
		return Frame{}, err
	}
	for {
		f, err := c.receive(ctx)
		if err != nil {
			return Frame{}, err
		}
		if match(f) {
			return f, nil
		}
		if f.Op == OpError {
			return f, &ServerError{Reason: f.Reason}
		}
		c.stash = append(c.stash, f)
	}
}

// tcpTransport frames a plain or TLS TCP stream.
type tcpTransport struct {
	conn net.Conn
}

func dialTCP(ctx context.Context, addr string, o options) (*tcpTransport, error) {
	var conn net.Conn
	var err error
	if o.tlsConfig != nil {
		d := &tls.Dialer{Config: o.tlsConfig}
		conn, err = d.DialContext(ctx, "tcp", addr)
	} else {
		var d net.Dialer
		conn, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("client: dial tcp %s failed: %w", addr, err)
	}
	return &tcpTransport{conn: conn}, nil
}

func (t *tcpTransport) write(deadline time.Time, b []byte) error {
	if err := t.conn.SetWriteDeadline(deadline); err != nil {
		return err
	}
	_, err := t.conn.Write(b)
	return err
}

// readFrames uses a buffered reader because the stream may split a frame at
// any byte, or carry several frames in one read.
func (t *tcpTransport) readFrames(maxFrameSize int, emit func(Frame) bool) error {
	r := bufio.NewReaderSize(t.conn, 64<<10)
	for {
		f, err := decodeFrame(r, maxFrameSize)
		if err != nil {
			return err
		}
		if !emit(f) {
			return net.ErrClosed
		}
	}
}

func (t *tcpTransport) close() error {
	err := t.conn.Close()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// wsTransport sends each write as one binary WebSocket message.
type wsTransport struct {
	conn       *websocket.Conn
	readCtx    context.Context
	stopReader context.CancelFunc
}

func dialWebSocket(ctx context.Context, addr string, o options) (*wsTransport, error) {
	url := "ws://" + addr + o.wsPath
	dialOpts := &websocket.DialOptions{}
	if o.tlsConfig != nil {
		url = "wss://" + addr + o.wsPath
		dialOpts.HTTPClient = &http.Client{Transport: &http.Transport{TLSClientConfig: o.tlsConfig}}
	}
	conn, resp, err := websocket.Dial(ctx, url, dialOpts)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("client: dial %s failed: %w", url, err)
	}
	conn.SetReadLimit(int64(o.maxFrameSize))

	readCtx, stop := context.WithCancel(context.Background())
	return &wsTransport{conn: conn, readCtx: readCtx, stopReader: stop}, nil
}

func (t *wsTransport) write(deadline time.Time, b []byte) error {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	return t.conn.Write(ctx, websocket.MessageBinary, b)
}

// readFrames decodes each message on its own, because the protocol puts
// whole frames in a message: a frame cut off at the end of a message is a
// server fault, not a frame to be completed by the next message.
func (t *wsTransport) readFrames(maxFrameSize int, emit func(Frame) bool) error {
	for {
		typ, msg, err := t.conn.Read(t.readCtx)
		if err != nil {
			return err
		}
		if typ != websocket.MessageBinary {
			return fmt.Errorf("%w: text WebSocket message %q, expected binary", ErrMalformedFrame, msg)
		}
		r := bytes.NewReader(msg)
		for r.Len() > 0 {
			f, err := decodeFrame(r, maxFrameSize)
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("frame crosses the end of a %d-byte WebSocket message: %w", len(msg), err)
			}
			if err != nil {
				return err
			}
			if !emit(f) {
				return net.ErrClosed
			}
		}
	}
}

// close performs the WebSocket close handshake, which coder/websocket bounds
// by 5 s for the close frame and 5 s for the reply. Its error is dropped
// because it only shows whether the server took part in the handshake, and
// the connection is closed either way.
func (t *wsTransport) close() error {
	_ = t.conn.Close(websocket.StatusNormalClosure, "")
	t.stopReader()
	return nil
}
