package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/iris-im/iris/gateway/client"
)

// hostileOutcome is what one connection that sent random bytes saw.
type hostileOutcome struct {
	frames    []client.Frame
	err       error // why the reading ended: ErrClosed wraps the transport error
	bytesSent int
}

// zeroTail is sent after the random bytes while the connection is still open.
// 0x00 is an opcode no client may send, so once the frame in progress is
// complete the server must reject the stream. The tail is longer than the
// largest frame body the default limits let the server buffer (a 1 MiB batch
// blob). A frame whose declared length is over a limit is instead discarded
// as its bytes arrive, up to 4 GiB, and its connection stays open.
var zeroTail = make([]byte, 1<<20+64<<10)

// fatalReasons are the ERROR reasons after which the server closes the
// connection.
var fatalReasons = map[string]bool{
	"unknown_opcode": true, "buffer_overflow": true, "invalid_user_name": true, "token_too_long": true,
	"auth_failed": true, "login_timeout": true, "invalid_frame": true,
}

// sendGarbage writes up to maxBytes random bytes to c in random chunks,
// optionally after a valid login, then the zero tail, and collects every
// frame until the server closes the connection or grace has passed since the
// last write.
func sendGarbage(ctx context.Context, c *client.Conn, rng *rand.Rand, login []byte, maxBytes int, grace time.Duration) hostileOutcome {
	var out hostileOutcome
	if login != nil {
		if err := c.WriteRaw(login); err != nil {
			out.err = err
			return out
		}
	}

	garbage := make([]byte, 1+rng.IntN(maxBytes))
	for i := range garbage {
		garbage[i] = byte(rng.Uint32())
	}
	writeAll := func(b []byte, maxChunk int) bool {
		for len(b) > 0 {
			select {
			case <-c.Done():
				return false
			default:
			}
			n := min(len(b), 1+rng.IntN(maxChunk))
			if err := c.WriteRaw(b[:n]); err != nil {
				return false
			}
			out.bytesSent += n
			b = b[n:]
		}
		return true
	}
	if writeAll(garbage, 4096) {
		writeAll(zeroTail, 64<<10)
	}

	ctx, cancel := context.WithTimeout(ctx, grace)
	defer cancel()
	for {
		f, err := c.Next(ctx)
		if err != nil {
			out.err = err
			return out
		}
		out.frames = append(out.frames, f)
	}
}

func TestHostileTrafficContained(t *testing.T) {
	const (
		hostileConns = 200
		pairs        = 100
		perDirection = 10
		maxGarbage   = 64 << 10
		closeGrace   = 5 * time.Second
	)
	s := startServer(t, append(highSendRate,
		"IRIS_LIMITS_CONN_RATE=100000", "IRIS_LIMITS_CONN_BURST=100000")...)
	started := time.Now()
	ctx := testCtx(t, 90*time.Second)
	seed := uint64(time.Now().UnixNano())
	t.Logf("random bytes from seed %d", seed)

	// The valid clients log in before the hostile ones start, so that each
	// pair's messages cross the server while it handles the garbage.
	type pair struct{ v1, v2 *client.Conn }
	clients := make([]pair, pairs)
	for i := range clients {
		transport := tcp
		if i%2 == 1 {
			transport = ws
		}
		clients[i] = pair{
			v1: s.login(t, transport, fmt.Sprintf("valid-%d-v1", i)),
			v2: s.login2(t, transport, fmt.Sprintf("valid-%d-v2", i)),
		}
	}

	outcomes := make([]hostileOutcome, hostileConns)
	var hostile sync.WaitGroup
	for i := range hostileConns {
		hostile.Add(1)
		go func() {
			defer hostile.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(i)))
			c, err := client.Dial(ctx, tcp, s.tcpAddr)
			if err != nil {
				outcomes[i].err = err
				return
			}
			defer c.Close()
			var login []byte
			switch i % 4 {
			case 1:
				login = client.AppendLogin(nil, fmt.Sprintf("hostile-%d", i))
			case 2:
				login, _ = client.AppendLogin2(nil, fmt.Sprintf("hostile-%d", i), "")
			}
			outcomes[i] = sendGarbage(ctx, c, rng, login, maxGarbage, closeGrace)
		}()
	}

	// Each pair exchanges plain messages both ways: SEND from the v1 user
	// arrives as DELIVER, SEND2 from the v2 user arrives as RELIABLE.
	var valid sync.WaitGroup
	var delivered atomic.Int64
	validErrs := make(chan error, pairs)
	for i, p := range clients {
		valid.Add(1)
		go func() {
			defer valid.Done()
			validErrs <- exchangeBothWays(ctx, p.v1, p.v2, i, perDirection, &delivered)
		}()
	}

	valid.Wait()
	close(validErrs)
	for err := range validErrs {
		if err != nil {
			t.Error(err)
		}
	}
	hostile.Wait()

	closedWithError, stillSkipping, resets, sent := 0, 0, 0, 0
	for i, out := range outcomes {
		sent += out.bytesSent
		if errors.Is(out.err, client.ErrMalformedFrame) {
			t.Errorf("hostile connection %d: the server sent a malformed frame: %v", i, out.err)
			continue
		}
		errorFrames := 0
		for _, f := range out.frames {
			if f.Op == client.OpError {
				errorFrames++
			}
		}
		if errors.Is(out.err, context.DeadlineExceeded) {
			// Open after the grace period: only a frame whose declared
			// length is over a limit, rejected with a non-fatal ERROR
			// (such as invalid_target or key_bundle_too_large), or a SEND2
			// rejected with REJECTED for the same reasons, may hold it open
			// while the server discards its body.
			last := client.Frame{}
			if len(out.frames) > 0 {
				last = out.frames[len(out.frames)-1]
			}
			nonFatal := last.Op == client.OpRejected || (last.Op == client.OpError && !fatalReasons[last.Reason])
			if !nonFatal {
				t.Errorf("hostile connection %d: open %v after %d bytes, without a non-fatal ERROR last; frames %v",
					i, closeGrace, out.bytesSent, out.frames)
			}
			stillSkipping++
			continue
		}
		if !errors.Is(out.err, client.ErrClosed) {
			t.Errorf("hostile connection %d: reading failed: %v", i, out.err)
			continue
		}
		if errors.Is(out.err, syscall.ECONNRESET) {
			resets++
		}
		if errorFrames == 0 || out.frames[len(out.frames)-1].Op != client.OpError {
			t.Errorf("hostile connection %d: closed after %d bytes without an ERROR frame last; frames %v", i, out.bytesSent, out.frames)
			continue
		}
		closedWithError++
	}

	select {
	case <-s.exited:
		t.Fatalf("the server exited during the hostile traffic: %v", s.cmd.ProcessState)
	default:
	}
	logText, err := os.ReadFile(s.logPath)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(strings.ToLower(string(logText)), "panic") {
		t.Errorf("the server log mentions a panic")
	}

	t.Logf("hostile traffic: %d connections sent %d KiB, %d closed with ERROR (%d of them then reset), "+
		"%d left open discarding an oversized frame, %d of %d valid messages delivered, %v",
		hostileConns, sent>>10, closedWithError, resets, stillSkipping, delivered.Load(), 2*pairs*perDirection, time.Since(started).Round(time.Millisecond))
	if want := int64(2 * pairs * perDirection); delivered.Load() != want {
		t.Errorf("valid clients: %d messages delivered, want %d", delivered.Load(), want)
	}
}

// exchangeBothWays sends count v1 SEND frames from v1 to v2 and count SEND2
// frames back, then checks that every SEND2 is ACCEPTED and that each side
// receives the other's messages in order, as DELIVER and as RELIABLE.
func exchangeBothWays(ctx context.Context, v1, v2 *client.Conn, pair, count int, delivered *atomic.Int64) error {
	for k := range count {
		if err := v1.Send(v2.User(), []byte(fmt.Sprintf("v1-%d-%d", pair, k))); err != nil {
			return fmt.Errorf("pair %d: SEND %d: %w", pair, k, err)
		}
		if err := v2.Send2(uint64(k+1), v1.User(), []byte(fmt.Sprintf("v2-%d-%d", pair, k))); err != nil {
			return fmt.Errorf("pair %d: SEND2 %d: %w", pair, k, err)
		}
	}

	accepted, deliveries := 0, 0
	for accepted < count || deliveries < count {
		f, err := v2.Next(ctx)
		if err != nil {
			return fmt.Errorf("pair %d: %s after %d ACCEPTED and %d DELIVER: %w", pair, v2.User(), accepted, deliveries, err)
		}
		switch f.Op {
		case client.OpAccepted:
			accepted++
		case client.OpDeliver:
			if want := fmt.Sprintf("v1-%d-%d", pair, deliveries); string(f.Msg) != want || f.Sender != v1.User() {
				return fmt.Errorf("pair %d: %s got %v, want %q from %s", pair, v2.User(), f, want, v1.User())
			}
			if err := v2.Ack2(f.Seq); err != nil {
				return err
			}
			deliveries++
			delivered.Add(1)
		default:
			return fmt.Errorf("pair %d: %s got an unexpected frame: %v", pair, v2.User(), f)
		}
	}

	for k := range count {
		f, err := v1.Expect(ctx, client.OpReliable)
		if err != nil {
			return fmt.Errorf("pair %d: %s waiting for message %d: %w", pair, v1.User(), k, err)
		}
		if want := fmt.Sprintf("v2-%d-%d", pair, k); string(f.Msg) != want {
			return fmt.Errorf("pair %d: %s got %v, want %q", pair, v1.User(), f, want)
		}
		if err := v1.Ack(f.ID); err != nil {
			return err
		}
		delivered.Add(1)
	}
	return nil
}
