package loadgen

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iris-im/iris/gateway/client"
)

// ConnectStats describes how a set of clients connected and logged in.
type ConnectStats struct {
	Clients     int     `json:"clients"`
	LoggedIn    int     `json:"logged_in"`
	Failed      int     `json:"failed"`
	Concurrency int     `json:"concurrency"`
	Seconds     float64 `json:"seconds"` // from the first dial until the last login ended
	PerSecond   float64 `json:"logins_per_second"`
	// Latency is the time of one dial plus login, per client.
	Latency Percentiles `json:"latency"`
}

// errorCounts counts errors by kind from many goroutines.
type errorCounts struct {
	mu     sync.Mutex
	counts map[string]uint64
}

func (e *errorCounts) add(kind string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.counts == nil {
		e.counts = make(map[string]uint64)
	}
	e.counts[kind]++
}

func (e *errorCounts) snapshot() map[string]uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[string]uint64, len(e.counts))
	for k, v := range e.counts {
		out[k] = v
	}
	return out
}

// newRunID returns a short random id that makes this run's user names
// unique, so a run never finds another run's messages in its inboxes.
func newRunID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// dialer connects and logs in the clients of one run.
type dialer struct {
	cfg         Config
	frameBuffer int
	errors      *errorCounts
}

// connectAll connects and logs in one client per user name, Concurrency at
// a time, and returns the connections in the order of users. A client that
// failed has a nil entry and its error is counted.
func (d *dialer) connectAll(ctx context.Context, users []string) ([]*client.Conn, ConnectStats) {
	conns := make([]*client.Conn, len(users))
	workers := min(d.cfg.Concurrency, len(users))
	histograms := make([]*Histogram, workers)
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup

	start := time.Now()
	for w := range workers {
		histograms[w] = NewHistogram()
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(users) || ctx.Err() != nil {
					return
				}
				began := time.Now()
				c, err := d.connect(ctx, i, users[i])
				if err != nil {
					failed.Add(1)
					d.errors.add(connectErrorKind(err))
					continue
				}
				histograms[w].Record(time.Since(began))
				conns[i] = c
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)

	total := NewHistogram()
	for _, h := range histograms {
		total.Merge(h)
	}
	stats := ConnectStats{
		Clients:     len(users),
		LoggedIn:    int(total.Count()),
		Failed:      int(failed.Load()),
		Concurrency: workers,
		Seconds:     elapsed.Seconds(),
		Latency:     total.Summary(),
	}
	if elapsed > 0 {
		stats.PerSecond = float64(stats.LoggedIn) / elapsed.Seconds()
	}
	return conns, stats
}

// connect dials the address of client i and logs user in.
func (d *dialer) connect(ctx context.Context, i int, user string) (*client.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.ConnectTimeout)
	defer cancel()

	addr := d.cfg.Addrs[i%len(d.cfg.Addrs)]
	c, err := client.Dial(ctx, d.cfg.Transport, addr,
		client.WithPath(d.cfg.WSPath), client.WithFrameBuffer(d.frameBuffer))
	if err != nil {
		return nil, &connectError{stage: "dial", err: err}
	}
	if d.cfg.Protocol == 2 {
		err = c.Login2(ctx, user, "")
	} else {
		err = c.Login(ctx, user)
	}
	if err != nil {
		_ = c.Close()
		return nil, &connectError{stage: "login", err: err}
	}
	return c, nil
}

// connectError names the step of a connect that failed.
type connectError struct {
	stage string // "dial" or "login"
	err   error
}

func (e *connectError) Error() string { return e.stage + ": " + e.err.Error() }
func (e *connectError) Unwrap() error { return e.err }

// connectErrorKind returns the error kind under which a failed connect is
// counted, such as "login_timeout" or "login_rejected:too_many_connections".
func connectErrorKind(err error) string {
	stage := "connect"
	var ce *connectError
	if errors.As(err, &ce) {
		stage = ce.stage
	}
	var se *client.ServerError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("%s_rejected:%s", stage, se.Reason)
	case errors.Is(err, context.DeadlineExceeded):
		return stage + "_timeout"
	case errors.Is(err, client.ErrClosed):
		return stage + "_closed"
	}
	return stage + "_failed"
}

// closeAll closes every non-nil connection in parallel, because a
// WebSocket close waits for the server's reply.
func closeAll(conns []*client.Conn) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 256)
	for _, c := range conns {
		if c == nil {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			_ = c.Close()
		})
	}
	wg.Wait()
}
