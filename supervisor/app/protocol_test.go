package app

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/iris-im/iris/config"
	"github.com/iris-im/iris/gateway/auth"
	"github.com/iris-im/iris/gateway/client"
	"github.com/iris-im/iris/gateway/tlstest"
	"github.com/iris-im/iris/storage"
)

func TestSend2CIDReusedForAnotherTarget(t *testing.T) {
	n := startNode(t, nil)
	erin := login2(t, n, "erin")

	if err := erin.Send2(1, "frank", []byte("hi frank")); err != nil {
		t.Fatal(err)
	}
	toFrank := expect(t, erin, client.OpAccepted)
	if err := erin.Send2(1, "gina", []byte("hi gina")); err != nil {
		t.Fatal(err)
	}
	toGina := expect(t, erin, client.OpAccepted)
	if toFrank.Seq != 1 || toGina.Seq != 1 {
		t.Fatalf("seqs = %d (frank), %d (gina); want 1 in each inbox", toFrank.Seq, toGina.Seq)
	}

	gina := login2(t, n, "gina")
	f := expect(t, gina, client.OpDeliver)
	if string(f.Msg) != "hi gina" {
		t.Fatalf("gina got %q, want %q", f.Msg, "hi gina")
	}
}

func TestLogin2WithInvalidNameCloses(t *testing.T) {
	n := startNode(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, "tcp", n.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	if err := c.WriteRaw([]byte{0x08, 0, 0, 0, 0}); err != nil { // empty user, empty token
		t.Fatal(err)
	}
	frames, err := c.ExpectClosed(ctx)
	if err != nil {
		t.Fatalf("connection not closed after an invalid LOGIN2: %v", err)
	}
	if len(frames) == 0 || frames[0].Op != client.OpError || frames[0].Reason != "invalid_user_name" {
		t.Fatalf("frames before close = %v, want one error invalid_user_name", frames)
	}
}

func TestAckOnOneDeviceStopsRedeliveryOnOther(t *testing.T) {
	n := startNode(t, func(c *config.Config) { c.Edge.RedeliveryTimeout = 200 * time.Millisecond })
	phone := login(t, n, "tcp", "quinn")
	laptop := login(t, n, "ws", "quinn")
	sender := login(t, n, "tcp", "rita")

	if err := sender.Send("quinn", []byte("both")); err != nil {
		t.Fatal(err)
	}
	onPhone := expect(t, phone, client.OpReliable)
	expect(t, laptop, client.OpReliable)
	if err := phone.Ack(onPhone.ID); err != nil {
		t.Fatal(err)
	}

	// After several redelivery periods the laptop has seen no further copy.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for {
		f, err := laptop.Next(ctx)
		if err != nil {
			break // no frame within the second: nothing was redelivered
		}
		if f.Op == client.OpReliable {
			t.Fatalf("laptop got the entry acked on the phone again: id %x", f.ID)
		}
	}
}

func TestWebSocketErrorSendsCloseFrame(t *testing.T) {
	n := startNode(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+n.WSAddr().String()+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()

	if err := ws.Write(ctx, websocket.MessageBinary, []byte{0x99}); err != nil {
		t.Fatal(err)
	}
	_, data, err := ws.Read(ctx)
	if err != nil || len(data) == 0 || data[0] != 0xFE {
		t.Fatalf("first message = %x, %v; want an error frame", data, err)
	}
	_, _, err = ws.Read(ctx)
	var closeErr websocket.CloseError
	if !errors.As(err, &closeErr) || closeErr.Code != websocket.StatusNormalClosure {
		t.Fatalf("read after the error = %v, want a normal close frame", err)
	}
}

func TestOfflineStatusNeverShowsUnseen(t *testing.T) {
	n := startNode(t, nil)
	watcher := login(t, n, "tcp", "watcher")
	for i := range 20 {
		bob := login(t, n, "tcp", "bob")
		_ = bob.Close()
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			st, err := watcher.GetStatus(ctx, "bob")
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			if st.State == 1 {
				continue
			}
			if st.Seen == 0 {
				t.Fatalf("round %d: bob offline with last seen 0 right after disconnecting", i)
			}
			break
		}
	}
}

func TestAckedEntryNotReplayedAtOnce(t *testing.T) {
	n := startNode(t, nil)
	sender := login(t, n, "tcp", "sender")
	for i := range 20 {
		if err := sender.Send("dora", fmt.Appendf(nil, "m%d", i)); err != nil {
			t.Fatal(err)
		}
		dora := login(t, n, "tcp", "dora")
		f := expect(t, dora, client.OpReliable)
		if err := dora.Ack(f.ID); err != nil {
			t.Fatal(err)
		}
		// A round trip on the same connection: the ACK before it has been
		// handled. Without it the ACK may still be in flight on the closing
		// connection when the next one logs in, which at-least-once allows.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := dora.GetStatus(ctx, "dora")
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		_ = dora.Close()

		again := login(t, n, "tcp", "dora")
		quiet, cancelQuiet := context.WithTimeout(context.Background(), 100*time.Millisecond)
		g, err := again.Next(quiet)
		cancelQuiet()
		if err == nil && g.Op == client.OpReliable {
			t.Fatalf("round %d: acked %q replayed at the next login", i, g.Msg)
		}
		_ = again.Close()
	}
}

func TestShutdownTellsClients(t *testing.T) {
	n := startNode(t, nil)
	alice := login(t, n, "tcp", "alice")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	frames, err := alice.ExpectClosed(ctx)
	if err != nil || len(frames) != 1 || frames[0].Reason != "server_shutting_down" {
		t.Fatalf("frames before close = %v, %v; want one server_shutting_down error", frames, err)
	}
}

func TestAckThenReconnectNotReplayed(t *testing.T) {
	n := startNode(t, nil)
	sender := login(t, n, "tcp", "sender")
	for i := range 20 {
		if err := sender.Send("finn", fmt.Appendf(nil, "m%d", i)); err != nil {
			t.Fatal(err)
		}
		finn := login(t, n, "tcp", "finn")
		f := expect(t, finn, client.OpReliable)
		if err := finn.Ack(f.ID); err != nil {
			t.Fatal(err)
		}
		_ = finn.Close() // no round trip: the ACK may still be on its way

		again := login(t, n, "tcp", "finn")
		quiet, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		g, err := again.Next(quiet)
		cancel()
		if err == nil && g.Op == client.OpReliable {
			t.Fatalf("round %d: acked %q replayed at the next login", i, g.Msg)
		}
		_ = again.Close()
	}
}

func TestWindowHoldsDeliveriesUntilAcked(t *testing.T) {
	n := startNode(t, func(c *config.Config) { c.Edge.Window = 10 })
	alice := login2(t, n, "alice")
	bob := login2(t, n, "bob")
	accepted := sendAccepted(t, alice, "bob", 1, 25)
	if len(accepted) != 25 {
		t.Fatalf("%d of 25 accepted", len(accepted))
	}

	// Only a window's worth arrives before bob acknowledges anything.
	var got []client.Frame
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	for {
		f, err := bob.Next(ctx)
		if err != nil {
			break
		}
		if f.Op == client.OpDeliver {
			got = append(got, f)
		}
	}
	cancel()
	if len(got) != 10 {
		t.Fatalf("%d deliveries before any ack, want the window of 10", len(got))
	}

	// Acknowledging makes room; the rest follows in order.
	next := got[len(got)-1].Seq
	if err := bob.Ack2(next); err != nil {
		t.Fatal(err)
	}
	for next < 25 {
		f := expect(t, bob, client.OpDeliver)
		if f.Seq != next+1 {
			t.Fatalf("delivery seq %d after %d", f.Seq, next)
		}
		next = f.Seq
		if err := bob.Ack2(next); err != nil {
			t.Fatal(err)
		}
	}
}

func TestDuplicateLoginReplacesOlderSession(t *testing.T) {
	n := startNode(t, func(c *config.Config) { c.Edge.DuplicateLogin = "replace" })
	first := login(t, n, "tcp", "gus")
	second := login(t, n, "ws", "gus")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	frames, err := first.ExpectClosed(ctx)
	if err != nil || len(frames) != 1 || frames[0].Reason != "replaced_by_new_login" {
		t.Fatalf("older session got %v, %v; want replaced_by_new_login and a close", frames, err)
	}
	sender := login(t, n, "tcp", "hal")
	if err := sender.Send("gus", []byte("to the new one")); err != nil {
		t.Fatal(err)
	}
	if f := expect(t, second, client.OpReliable); string(f.Msg) != "to the new one" {
		t.Fatalf("newer session got %q", f.Msg)
	}
}

func TestConnectionCountLimits(t *testing.T) {
	n := startNode(t, func(c *config.Config) {
		c.Limits.MaxConnections = 3
		c.Limits.MaxConnectionsPerIP = 2
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	a := login(t, n, "tcp", "a")
	login(t, n, "ws", "b")

	third, err := client.Dial(ctx, "tcp", n.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	frames, err := third.ExpectClosed(ctx)
	if err != nil || len(frames) != 1 || frames[0].Reason != "too_many_connections_from_address" {
		t.Fatalf("third connection from one address got %v, %v", frames, err)
	}

	// A closed connection frees its place.
	_ = a.Close()
	eventually(t, 5*time.Second, "a's connection to be released", func() bool {
		c, err := client.Dial(ctx, "tcp", n.TCPAddr().String())
		if err != nil {
			return false
		}
		defer c.Close()
		return c.Login(ctx, "c") == nil
	})
	if n.Stats.ConnRejected.Load() == 0 {
		t.Error("conn_rejected counted no rejection")
	}
}

func TestLoginStormAllServedInTurn(t *testing.T) {
	n := startNode(t, func(c *config.Config) {
		c.Limits.LoginConcurrency = 4
		c.Limits.ConnBurst = 1000
	})
	var wg sync.WaitGroup
	errs := make(chan error, 300)
	for i := range 300 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c, err := client.Dial(ctx, "tcp", n.TCPAddr().String())
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			if err := c.Login(ctx, fmt.Sprintf("storm%d", i)); err != nil {
				errs <- fmt.Errorf("login storm%d: %w", i, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestFailedLoginsBlockOnlyTheirAddress(t *testing.T) {
	secret := "0123456789abcdef0123456789abcdef"
	n := startNode(t, func(c *config.Config) {
		c.Auth.Required = true
		c.Auth.JWTSecret = config.Secret(secret)
		c.Limits.LoginFailures = 2
	})
	good, err := auth.Sign([]byte(secret), "", "mallory", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// rawLogin logs mallory in from the given local address and returns
	// the server's first frame.
	rawLogin := func(from, token string) []byte {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", n.TCPAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte("\x01mallory:" + token)); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 64)
		k, _ := c.Read(buf)
		return buf[:k]
	}
	for range 2 {
		rawLogin("127.0.0.2", "bad")
	}
	if got := rawLogin("127.0.0.2", good); !bytes.Contains(got, []byte("too_many_login_failures")) {
		t.Fatalf("login from the failing address = %q, want too_many_login_failures", got)
	}
	if got := rawLogin("127.0.0.1", good); !bytes.HasPrefix(got, []byte("\x03LOGIN_OK")) {
		t.Fatalf("login from another address = %q, want LOGIN_OK", got)
	}
}

func TestTLSListenersRefusePlaintext(t *testing.T) {
	certFile, keyFile, roots := tlstest.WriteSelfSigned(t)
	n := startNode(t, func(c *config.Config) {
		c.Edge.TLS = config.EdgeTLS{CertFile: certFile, KeyFile: keyFile}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	clientTLS := &tls.Config{RootCAs: roots, ServerName: "localhost"}

	for _, tc := range []struct{ transport, addr string }{
		{"tcp", n.TCPAddr().String()},
		{"ws", n.WSAddr().String()},
	} {
		c, err := client.Dial(ctx, tc.transport, tc.addr, client.WithTLS(clientTLS))
		if err != nil {
			t.Fatalf("%s over TLS: %v", tc.transport, err)
		}
		if err := c.Login(ctx, "tls-"+tc.transport); err != nil {
			t.Fatalf("%s login over TLS: %v", tc.transport, err)
		}
		_ = c.Close()

		plain, err := client.Dial(ctx, tc.transport, tc.addr)
		if err == nil {
			if err := plain.Login(ctx, "plain-"+tc.transport); err == nil {
				t.Errorf("%s: a plaintext client logged in on a TLS listener", tc.transport)
			}
			_ = plain.Close()
		}
	}

	old := &tls.Config{RootCAs: roots, ServerName: "localhost", MaxVersion: tls.VersionTLS11}
	conn, err := tls.Dial("tcp", n.TCPAddr().String(), old)
	if err == nil {
		conn.Close()
		t.Error("a TLS 1.1 client completed a handshake")
	}
}

func TestBogusAcksCostNoStoreWork(t *testing.T) {
	n := startNode(t, nil)
	mallory := login(t, n, "tcp", "mallory")
	flood := make([]byte, 0, 17*10_000)
	for i := range 10_000 {
		flood = append(flood, 0x03)
		flood = binary.BigEndian.AppendUint64(flood, uint64(i))
		flood = binary.BigEndian.AppendUint64(flood, 42)
	}
	if err := mallory.WriteRaw(flood); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the acks to be read", func() bool { return n.Stats.AcksIgnored.Load() == 10_000 })
	if got := n.Stats.Acked.Load(); got != 0 {
		t.Errorf("%d made-up acks reached the store", got)
	}
}

func TestUnfinishedFrameTimesOut(t *testing.T) {
	n := startNode(t, func(c *config.Config) { c.Edge.FrameTimeout = 300 * time.Millisecond })
	c := login(t, n, "tcp", "slowpoke")
	if err := c.WriteRaw([]byte{0x02, 0x00, 0x03, 'b'}); err != nil { // a SEND cut short
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	frames, err := c.ExpectClosed(ctx)
	if err != nil || len(frames) != 1 || frames[0].Reason != "frame_timeout" {
		t.Fatalf("frames before close = %v, %v; want frame_timeout", frames, err)
	}
}

func TestPresenceHoldsPastSixtySeconds(t *testing.T) {
	n := startNode(t, nil)
	idle := login(t, n, "tcp", "idle")
	watcher := login(t, n, "ws", "watcher")

	// The first release expired presence 30 s after login; here a user is
	// online as long as a connection is open, however quiet.
	start := time.Now()
	for time.Since(start) < 65*time.Second {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := watcher.GetStatus(ctx, "idle")
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if st.State != 1 || st.Seen != 0 {
			t.Fatalf("%v after login: status %+v, want online with seen 0", time.Since(start).Round(time.Second), st)
		}
		time.Sleep(5 * time.Second)
	}

	_ = idle.Close()
	eventually(t, 5*time.Second, "idle to go offline with a last-seen time", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		st, err := watcher.GetStatus(ctx, "idle")
		return err == nil && st.State == 0 && st.Seen >= uint64(start.Unix())
	})
}

func TestSlowFrameWithProgressNotTimedOut(t *testing.T) {
	n := startNode(t, func(c *config.Config) { c.Edge.FrameTimeout = 300 * time.Millisecond })
	sender := login(t, n, "tcp", "trickle")
	frame := []byte{0x02, 0x00, 0x03, 'b', 'o', 'b', 0x00, 0x05, 'h', 'e', 'l', 'l', 'o'}
	// A byte every 150 ms: the frame takes about 2 s, but it never waits
	// a whole timeout for its next byte.
	for _, b := range frame {
		if err := sender.WriteRaw([]byte{b}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(150 * time.Millisecond)
	}
	bob := login(t, n, "tcp", "bob")
	if f := expect(t, bob, client.OpReliable); string(f.Msg) != "hello" {
		t.Fatalf("bob got %q, want hello", f.Msg)
	}
}

func TestIdleConnectionClosedOnlyWhenSet(t *testing.T) {
	n := startNode(t, func(c *config.Config) { c.Edge.IdleTimeout = 400 * time.Millisecond })
	quiet := login(t, n, "tcp", "quiet")
	chatty := login(t, n, "tcp", "chatty")

	// chatty sends something every 150 ms and stays; quiet sends nothing.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for range 8 {
		if err := chatty.Send("chatty", []byte("ping")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(150 * time.Millisecond)
	}
	frames, err := quiet.ExpectClosed(ctx)
	if err != nil || len(frames) != 1 || frames[0].Reason != "idle_timeout" {
		t.Fatalf("quiet connection got %v, %v; want idle_timeout and a close", frames, err)
	}
	select {
	case <-chatty.Done():
		t.Fatal("a connection that kept sending was closed as idle")
	default:
	}
}

// An entry stored without a push to the live session (its shard died with
// the push in flight) must reach the client before any later entry, or a
// cumulative ACK2 of the later one would delete it unseen.
func TestMissedPushDeliveredBeforeLaterEntry(t *testing.T) {
	n := startNode(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	bob := login2(t, n, "bob")
	alice := login2(t, n, "alice")
	if err := alice.Send2(1, "bob", []byte("first")); err != nil {
		t.Fatal(err)
	}
	expect(t, alice, client.OpAccepted)
	if f := expect(t, bob, client.OpDeliver); string(f.Msg) != "first" {
		t.Fatalf("bob got %q, want first", f.Msg)
	}

	// Stored straight into the store: the shard never pushes it.
	s, err := n.store.get()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	s.Append(storage.AppendRequest{User: "bob", Kind: 0x09, Sender: "alice", Body: []byte("missed")}, func(_ storage.AppendResult, err error) { done <- err })
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	if err := alice.Send2(2, "bob", []byte("third")); err != nil {
		t.Fatal(err)
	}
	expect(t, alice, client.OpAccepted)
	for _, want := range []string{"missed", "third"} {
		f, err := bob.Expect(ctx, client.OpDeliver)
		if err != nil {
			t.Fatalf("waiting for %q: %v", want, err)
		}
		if string(f.Msg) != want {
			t.Fatalf("bob got %q, want %q", f.Msg, want)
		}
	}
}

// A SEND2 repeated after its first attempt was stored without a push (the
// shard died with the reply and the push in flight) gets the stored entry
// pushed to the recipient, who is online and would otherwise see it only at
// the next login.
func TestRepeatedSendPushesStoredEntry(t *testing.T) {
	n := startNode(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	bob := login2(t, n, "bob")
	alice := login2(t, n, "alice")

	// The first attempt of alice's cid 7, stored as the session would have
	// stored it, but never pushed.
	s, err := n.store.get()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	s.Append(storage.AppendRequest{
		User: "bob", Kind: 0x02, Sender: "alice", Body: []byte("stored once"),
		Dedup: &storage.DedupKey{Sender: "alice", Scope: "send2:bob", ID: 7},
	}, func(_ storage.AppendResult, err error) { done <- err })
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	if err := alice.Send2(7, "bob", []byte("stored once")); err != nil {
		t.Fatal(err)
	}
	if f := expect(t, alice, client.OpAccepted); f.CID != 7 {
		t.Fatalf("ACCEPTED for cid %d, want 7", f.CID)
	}
	f, err := bob.Expect(ctx, client.OpDeliver)
	if err != nil {
		t.Fatalf("bob waiting for the stored entry: %v", err)
	}
	if string(f.Msg) != "stored once" || f.Sender != "alice" {
		t.Fatalf("bob got %q from %q, want %q from alice", f.Msg, f.Sender, "stored once")
	}
	if err := bob.Ack2(f.Seq); err != nil {
		t.Fatal(err)
	}
	quiet, stop := context.WithTimeout(ctx, 300*time.Millisecond)
	defer stop()
	if g, err := bob.Next(quiet); err == nil {
		t.Errorf("bob got a second frame %v, want the entry once", g)
	}
}
