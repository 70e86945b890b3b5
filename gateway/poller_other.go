//go:build !linux

package gateway

import (
	"errors"
	"log/slog"

	"github.com/asynkron/protoactor-go/actor"
)

// readPoller would wait for input on idle connections without a goroutine
// each. It needs epoll, so outside Linux every connection has a reader
// goroutine.
type readPoller struct{}

// polledConn is a connection registered with a readPoller.
type polledConn struct{}

func tcpPoller(*slog.Logger) *readPoller { return nil }

func (p *readPoller) add(*ListenerConfig, *tcpConn, *actor.PID, func()) error {
	return errors.New("read poller: not available on this system")
}

func (c *polledConn) finish() {}
