//go:build unix

package gateway

import (
	"net"
	"syscall"
)

// readWaiter waits until a TCP connection has bytes to read, without a read
// buffer. A reader that waits here before it takes a buffer holds no buffer
// while its client is idle.
type readWaiter struct {
	raw   syscall.RawConn
	peek  [1]byte
	ready func(fd uintptr) bool // made once, so that a wait allocates nothing
}

// newReadWaiter returns a waiter for c, or nil when c is not a plain TCP
// connection. A TLS connection keeps decrypted bytes in its own buffers, so
// its socket can be quiet while a read would return data at once.
func newReadWaiter(c net.Conn) *readWaiter {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	w := &readWaiter{raw: raw}
	w.ready = w.peekOne
	return w
}

// wait returns when a read would not block: bytes arrived, the client
// closed its side, or the socket failed. It returns an error only when the
// connection was closed locally.
func (w *readWaiter) wait() error {
	return w.raw.Read(w.ready)
}

// peekOne reports whether the socket has a byte, an end of stream or an
// error to return. Returning false makes the runtime poller park the
// goroutine until the socket becomes readable and then ask again.
func (w *readWaiter) peekOne(fd uintptr) bool {
	for {
		_, _, err := syscall.Recvfrom(int(fd), w.peek[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch err {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		return true
	}
}
