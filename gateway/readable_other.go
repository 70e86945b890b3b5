//go:build !unix

package gateway

import "net"

// readWaiter would wait for a readable socket without a buffer. Outside
// Unix there is none, so a reader holds its buffer while it blocks.
type readWaiter struct{}

func newReadWaiter(net.Conn) *readWaiter { return nil }

func (w *readWaiter) wait() error { return nil }
