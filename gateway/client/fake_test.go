package client

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// fakePeer is the server side of one connection in a fake server. write
// sends b as one TCP write or one WebSocket message.
type fakePeer interface {
	write(b []byte) error
	// readN returns the next n bytes the client sent, across writes or
	// messages.
	readN(n int) ([]byte, error)
	// readMessage returns the next WebSocket message, or over TCP whatever
	// the next read returns.
	readMessage() ([]byte, error)
	// drain reads until the client closes the connection.
	drain()
	close()
}

type tcpPeer struct{ conn net.Conn }

func (p *tcpPeer) write(b []byte) error { _, err := p.conn.Write(b); return err }

func (p *tcpPeer) readN(n int) ([]byte, error) {
	b := make([]byte, n)
	_, err := io.ReadFull(p.conn, b)
	return b, err
}

func (p *tcpPeer) readMessage() ([]byte, error) {
	b := make([]byte, 64<<10)
	n, err := p.conn.Read(b)
	return b[:n], err
}

func (p *tcpPeer) drain() { _, _ = io.Copy(io.Discard, p.conn) }
func (p *tcpPeer) close() { _ = p.conn.Close() }

type wsPeer struct {
	conn    *websocket.Conn
	pending []byte
}

func (p *wsPeer) write(b []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return p.conn.Write(ctx, websocket.MessageBinary, b)
}

func (p *wsPeer) readMessage() ([]byte, error) {
	_, b, err := p.conn.Read(context.Background())
	return b, err
}

func (p *wsPeer) readN(n int) ([]byte, error) {
	for len(p.pending) < n {
		b, err := p.readMessage()
		if err != nil {
			return nil, err
		}
		p.pending = append(p.pending, b...)
	}
	out := p.pending[:n]
	p.pending = p.pending[n:]
	return out, nil
}

func (p *wsPeer) drain() {
	for {
		if _, err := p.readMessage(); err != nil {
			return
		}
	}
}

func (p *wsPeer) close() { _ = p.conn.CloseNow() }

// startFake starts a fake server on 127.0.0.1 for the transport and runs
// handle for each accepted connection. It returns the address to dial. The
// test's cleanup stops the server and waits for every handler to return.
func startFake(t *testing.T, transportName string, handle func(p fakePeer)) string {
	t.Helper()
	var handlers sync.WaitGroup

	switch transportName {
	case TransportTCP:
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		handlers.Add(1)
		go func() {
			defer handlers.Done()
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				handlers.Add(1)
				go func() {
					defer handlers.Done()
					p := &tcpPeer{conn: conn}
					defer p.close()
					handle(p)
				}()
			}
		}()
		t.Cleanup(func() {
			ln.Close()
			handlers.Wait()
		})
		return ln.Addr().String()

	case TransportWebSocket:
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// Add before Accept: srv.Close stops waiting for a request once
			// it is hijacked, so the handler must already be counted.
			handlers.Add(1)
			defer handlers.Done()
			if r.URL.Path != "/ws" {
				http.NotFound(w, r)
				return
			}
			conn, err := websocket.Accept(w, r, nil)
			if err != nil {
				t.Errorf("fake server: accept failed: %v", err)
				return
			}
			conn.SetReadLimit(-1)
			p := &wsPeer{conn: conn}
			defer p.close()
			handle(p)
		}))
		srv.Start()
		t.Cleanup(func() {
			srv.Close()
			handlers.Wait()
		})
		return strings.TrimPrefix(srv.URL, "http://")
	}
	t.Fatalf("unknown transport %q", transportName)
	return ""
}

// expectBytes reads len(want) bytes from the client and reports a mismatch.
func expectBytes(t *testing.T, p fakePeer, label string, want []byte) bool {
	t.Helper()
	got, err := p.readN(len(want))
	if err != nil {
		t.Errorf("fake server: reading %s: %v", label, err)
		return false
	}
	if string(got) != string(want) {
		t.Errorf("fake server: %s = % x, want % x", label, got, want)
		return false
	}
	return true
}

func dialFake(t *testing.T, transportName, addr string, opts ...Option) *Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, transportName, addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// forEachTransport runs body once over TCP and once over WebSocket.
func forEachTransport(t *testing.T, body func(t *testing.T, transportName string)) {
	for _, name := range []string{TransportTCP, TransportWebSocket} {
		t.Run(name, func(t *testing.T) { body(t, name) })
	}
}

// chunks splits b at uneven points so frame headers land across writes.
func chunks(b []byte) [][]byte {
	sizes := []int{1, 2, 3, 5, 7, 11, 13}
	var out [][]byte
	for i := 0; len(b) > 0; i++ {
		n := min(sizes[i%len(sizes)], len(b))
		out = append(out, b[:n])
		b = b[n:]
	}
	return out
}
