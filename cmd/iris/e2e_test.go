package main

// End-to-end tests: each one starts the real iris binary on loopback ports
// and talks to it with gateway/client over TCP and WebSocket.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/iris-im/iris/gateway/client"
	"slices"
)

const (
	tcp = client.TransportTCP
	ws  = client.TransportWebSocket
)

// highSendRate lifts the per-user send rate limit (100/s with a burst of 500
// by default), which would otherwise reject most of a run of thousands of
// messages from one sender.
var highSendRate = []string{"IRIS_LIMITS_SEND_RATE=1000000", "IRIS_LIMITS_SEND_BURST=1000000"}

// expect returns the next frame on c and fails unless its opcode is op.
func expect(t *testing.T, c *client.Conn, op client.Op) client.Frame {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	f, err := c.Expect(ctx, op)
	if err != nil {
		t.Fatalf("%s: %v", c.User(), err)
	}
	return f
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// expectLoginRejected checks that a v1 login as user gets ERROR and that the
// server then closes the connection.
func expectLoginRejected(t *testing.T, c *client.Conn, user string) {
	t.Helper()
	ctx := testCtx(t, 10*time.Second)
	err := c.Login(ctx, user)
	var serverErr *client.ServerError
	if !errors.As(err, &serverErr) {
		t.Fatalf("login as a %d-byte name: err = %v, want an ERROR frame", len(user), err)
	}
	if frames, err := c.ExpectClosed(ctx); err != nil {
		t.Fatalf("connection still open 10 s after the rejected login (frames: %v): %v", frames, err)
	}
}

func TestMessageAcrossTransports(t *testing.T) {
	s := startServer(t)
	pairs := []struct{ from, to string }{{tcp, tcp}, {ws, ws}, {tcp, ws}, {ws, tcp}}
	for _, p := range pairs {
		t.Run(p.from+"-to-"+p.to, func(t *testing.T) {
			alice, bob := "alice-"+p.from+"-"+p.to, "bob-"+p.from+"-"+p.to
			bobConn := s.login(t, p.to, bob)
			aliceConn := s.login(t, p.from, alice)

			if err := aliceConn.Send(bob, []byte("Hello Bob!")); err != nil {
				t.Fatal(err)
			}
			f := expect(t, bobConn, client.OpReliable)
			if string(f.Msg) != "Hello Bob!" {
				t.Fatalf("bob got %q, want %q", f.Msg, "Hello Bob!")
			}
			if len(f.ID) != client.MessageIDLen {
				t.Fatalf("message id is %d bytes, want %d: %x", len(f.ID), client.MessageIDLen, f.ID)
			}
			want := append([]byte{0x10, 0x00, 0x10}, f.ID...)
			want = append(want, 0x00, 0x00, 0x00, 0x0a)
			want = append(want, "Hello Bob!"...)
			if !bytes.Equal(f.Raw, want) {
				t.Fatalf("frame bytes = %s, want %s", hexDump(f.Raw), hexDump(want))
			}
			if err := bobConn.Ack(f.ID); err != nil {
				t.Fatal(err)
			}
			// A v1 SEND has no reply, and the ACK has none either.
			expectNothing(t, aliceConn, 300*time.Millisecond)
			expectNothing(t, bobConn, 300*time.Millisecond)
		})
	}
}

func TestOfflineDelivery(t *testing.T) {
	s := startServer(t)
	ctx := testCtx(t, 60*time.Second)

	alice := s.login(t, tcp, "alice")
	if err := alice.Send("bob", []byte("while you were away")); err != nil {
		t.Fatal(err)
	}
	// The server replies in order, so after this reply it has read the SEND.
	if _, err := alice.GetStatus(ctx, "bob"); err != nil {
		t.Fatal(err)
	}

	first := s.login(t, tcp, "bob")
	f1 := expect(t, first, client.OpReliable)
	if string(f1.Msg) != "while you were away" {
		t.Fatalf("first login: got %q", f1.Msg)
	}
	first.Close()

	// Without an ACK the next login brings the message again.
	second := s.login(t, tcp, "bob")
	f2 := expect(t, second, client.OpReliable)
	if string(f2.Msg) != "while you were away" {
		t.Fatalf("second login: got %q", f2.Msg)
	}
	if !bytes.Equal(f1.ID, f2.ID) {
		t.Logf("redelivery has a new id: %x, first was %x", f2.ID, f1.ID)
	}
	if err := second.Ack(f2.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := second.GetStatus(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	second.Close()

	// After the ACK the next login brings nothing.
	third := s.login(t, tcp, "bob")
	wait, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if f3, err := third.Next(wait); err == nil {
		t.Fatalf("login after the ACK of id %x brought %v", f2.ID, f3)
	} else if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("login after the ACK: %v", err)
	}
}

// sendAll sends count SEND2 frames with cids 1..count and returns the seq of
// each cid from the ACCEPTED replies. It fails on REJECTED or any other
// frame, and unless seqs are distinct and increase in send order.
func sendAll(t *testing.T, ctx context.Context, sender *client.Conn, target string, count int) map[uint64]uint64 {
	t.Helper()
	for cid := uint64(1); cid <= uint64(count); cid++ {
		if err := sender.Send2(cid, target, []byte(fmt.Sprintf("msg-%05d", cid))); err != nil {
			t.Fatal(err)
		}
	}

	seqByCID := make(map[uint64]uint64, count)
	var lastSeq uint64
	for len(seqByCID) < count {
		f, err := sender.Next(ctx)
		if err != nil {
			t.Fatalf("after %d ACCEPTED of %d: %v", len(seqByCID), count, err)
		}
		if f.Op != client.OpAccepted {
			t.Fatalf("after %d ACCEPTED of %d: got %v", len(seqByCID), count, f)
		}
		if _, dup := seqByCID[f.CID]; dup {
			t.Fatalf("second ACCEPTED for cid %d: %v", f.CID, f)
		}
		if f.Seq <= lastSeq {
			t.Fatalf("ACCEPTED seq %d for cid %d is not above the previous seq %d", f.Seq, f.CID, lastSeq)
		}
		lastSeq = f.Seq
		seqByCID[f.CID] = f.Seq
	}
	for cid := uint64(2); cid <= uint64(count); cid++ {
		if seqByCID[cid] <= seqByCID[cid-1] {
			t.Fatalf("seq of cid %d is %d, not above seq %d of cid %d", cid, seqByCID[cid], seqByCID[cid-1], cid-1)
		}
	}
	return seqByCID
}

// receiveAll reads count DELIVER frames from sender and checks that they come
// in send order with the seqs that ACCEPTED reported. It returns the last seq.
func receiveAll(t *testing.T, ctx context.Context, recipient *client.Conn, sender string, seqByCID map[uint64]uint64, count int) uint64 {
	t.Helper()
	var last uint64
	for cid := uint64(1); cid <= uint64(count); cid++ {
		f, err := recipient.Next(ctx)
		if err != nil {
			t.Fatalf("after %d DELIVER of %d: %v", cid-1, count, err)
		}
		if f.Op != client.OpDeliver {
			t.Fatalf("after %d DELIVER of %d: got %v", cid-1, count, f)
		}
		want := fmt.Sprintf("msg-%05d", cid)
		if string(f.Msg) != want || f.Sender != sender || f.Kind != client.OpSend {
			t.Fatalf("DELIVER %d = %v, want kind 0x02 from %s with %q", cid, f, sender, want)
		}
		if f.Seq != seqByCID[cid] {
			t.Fatalf("DELIVER of cid %d has seq %d, ACCEPTED reported %d", cid, f.Seq, seqByCID[cid])
		}
		last = f.Seq
	}
	return last
}

func TestSend2ThousandInOrder(t *testing.T) {
	const count = 1000
	s := startServer(t, highSendRate...)
	ctx := testCtx(t, 90*time.Second)

	bob := s.login2(t, tcp, "bob")
	alice := s.login2(t, tcp, "alice")

	seqByCID := sendAll(t, ctx, alice, "bob", count)
	last := receiveAll(t, ctx, bob, "alice", seqByCID, count)
	if err := bob.Ack2(last); err != nil {
		t.Fatal(err)
	}

	// Repeated cids get the first ACCEPTED again and are not stored twice.
	for cid := uint64(491); cid <= 500; cid++ {
		if err := alice.Send2(cid, "bob", []byte(fmt.Sprintf("msg-%05d", cid))); err != nil {
			t.Fatal(err)
		}
	}
	for cid := uint64(491); cid <= 500; cid++ {
		f, err := alice.Expect(ctx, client.OpAccepted)
		if err != nil {
			t.Fatal(err)
		}
		if f.CID != cid || f.Seq != seqByCID[cid] {
			t.Fatalf("repeated cid %d: got %v, want seq %d", cid, f, seqByCID[cid])
		}
	}
	expectNothing(t, bob, time.Second)
}

func TestCrashKeepsAcceptedMessages(t *testing.T) {
	const count = 2000
	s := startServer(t, highSendRate...)
	ctx := testCtx(t, 120*time.Second)

	alice := s.login2(t, tcp, "alice")
	seqByCID := sendAll(t, ctx, alice, "bob", count)
	alice.Close()

	s.restart()

	bob := s.login2(t, tcp, "bob")
	receiveAll(t, ctx, bob, "alice", seqByCID, count)
}

// exchangeInBackground makes one user send to another every 20 ms, below the
// default rate limit, until stop is closed. It returns a function that
// reports how many round trips worked and the first error.
func exchangeInBackground(t *testing.T, s *testServer, stop <-chan struct{}) func() (int64, error) {
	carol := s.login(t, tcp, "carol")
	dave := s.login(t, tcp, "dave")

	var exchanged atomic.Int64
	var firstErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		pace := time.NewTicker(20 * time.Millisecond)
		defer pace.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-pace.C:
			}
			want := fmt.Sprintf("ping-%d", i)
			if err := carol.Send("dave", []byte(want)); err != nil {
				firstErr = err
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			f, err := dave.Expect(ctx, client.OpReliable)
			cancel()
			if err != nil {
				firstErr = fmt.Errorf("dave waiting for %q: %w", want, err)
				return
			}
			if string(f.Msg) != want {
				firstErr = fmt.Errorf("dave got %q, want %q", f.Msg, want)
				return
			}
			if err := dave.Ack(f.ID); err != nil {
				firstErr = err
				return
			}
			exchanged.Add(1)
		}
	}()
	return func() (int64, error) {
		wg.Wait()
		return exchanged.Load(), firstErr
	}
}

func TestBadInputIsContained(t *testing.T) {
	s := startServer(t)
	stop := make(chan struct{})
	result := exchangeInBackground(t, s, stop)

	// Each case is followed by a fresh login, to show that the server still
	// accepts connections.
	fresh := 0
	checkAccepting := func(t *testing.T) {
		fresh++
		s.login(t, tcp, fmt.Sprintf("fresh-%d", fresh))
	}

	for _, transport := range []string{tcp, ws} {
		t.Run("unknown opcode over "+transport, func(t *testing.T) {
			c := s.login(t, transport, "eve-"+transport)
			if err := c.WriteRaw([]byte{0x99, 0x00, 0x01}); err != nil {
				t.Fatal(err)
			}
			expectClosedWithError(t, c)
			checkAccepting(t)
		})
	}

	t.Run("user name of 10000 bytes", func(t *testing.T) {
		expectLoginRejected(t, s.dial(t, tcp), strings.Repeat("u", 10000))
		checkAccepting(t)
	})

	t.Run("empty user name", func(t *testing.T) {
		expectLoginRejected(t, s.dial(t, tcp), "")
		checkAccepting(t)
	})

	t.Run("send before login", func(t *testing.T) {
		c := s.dial(t, tcp)
		if err := c.Send("bob", []byte("too early")); err != nil {
			t.Fatal(err)
		}
		f := expect(t, c, client.OpError)
		t.Logf("reply to a SEND before login: %v", f)
		checkAccepting(t)
	})

	t.Run("send one byte per write", func(t *testing.T) {
		frank := s.login(t, tcp, "frank")
		erin := s.login(t, tcp, "erin")
		frame, err := client.AppendSend(nil, "frank", []byte("byte by byte"))
		if err != nil {
			t.Fatal(err)
		}
		// Pacing the writes makes the server see most bytes in separate reads.
		pace := time.NewTicker(2 * time.Millisecond)
		defer pace.Stop()
		for _, b := range frame {
			<-pace.C
			if err := erin.WriteRaw([]byte{b}); err != nil {
				t.Fatal(err)
			}
		}
		f := expect(t, frank, client.OpReliable)
		if string(f.Msg) != "byte by byte" {
			t.Fatalf("frank got %q", f.Msg)
		}
		if err := frank.Ack(f.ID); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("ack and send in one write", func(t *testing.T) {
		grace := s.login(t, tcp, "grace")
		heidi := s.login(t, tcp, "heidi")
		if err := heidi.Send("grace", []byte("first")); err != nil {
			t.Fatal(err)
		}
		f := expect(t, grace, client.OpReliable)

		both := client.AppendAck(nil, f.ID)
		both, err := client.AppendSend(both, "heidi", []byte("second"))
		if err != nil {
			t.Fatal(err)
		}
		if err := grace.WriteRaw(both); err != nil {
			t.Fatal(err)
		}
		reply := expect(t, heidi, client.OpReliable)
		if string(reply.Msg) != "second" {
			t.Fatalf("heidi got %q, want %q (write was %s)", reply.Msg, "second", hexDump(both))
		}
		grace.Close()

		// The ACK took effect: a new login of grace brings nothing back.
		again := s.login(t, tcp, "grace")
		expectNothing(t, again, time.Second)
	})

	close(stop)
	exchanged, err := result()
	if err != nil {
		t.Fatalf("background exchange failed after %d round trips: %v", exchanged, err)
	}
	if exchanged == 0 {
		t.Fatal("background exchange made no round trip")
	}
	t.Logf("background pair made %d round trips during the bad input", exchanged)
}

func TestPresence(t *testing.T) {
	s := startServer(t)
	observer := s.login(t, tcp, "observer")
	ctx := testCtx(t, 60*time.Second)

	for _, transport := range []string{tcp, ws} {
		t.Run(transport, func(t *testing.T) {
			user := "alice-" + transport
			alice := s.login(t, transport, user)

			// Online holds for the whole connection, not for a fixed time
			// after login.
			poll := time.NewTicker(400 * time.Millisecond)
			defer poll.Stop()
			for i := range 10 {
				<-poll.C
				st, err := observer.GetStatus(ctx, user)
				if err != nil {
					t.Fatal(err)
				}
				if st.State != 1 || st.Seen != 0 {
					t.Fatalf("poll %d while connected: state=%d seen=%d, want state=1 seen=0", i, st.State, st.Seen)
				}
			}

			closedAt := time.Now()
			alice.Close()
			var st client.Status
			offline := eventually(10*time.Second, func() bool {
				var err error
				st, err = observer.GetStatus(ctx, user)
				return err == nil && st.State == 0
			})
			if !offline {
				t.Fatalf("still state=%d seen=%d 10 s after disconnect", st.State, st.Seen)
			}
			low, high := uint64(closedAt.Unix()-2), uint64(time.Now().Unix()+1)
			if st.Seen < low || st.Seen > high {
				t.Fatalf("status after disconnect: state=%d seen=%d, want seen in [%d, %d] (Unix s)", st.State, st.Seen, low, high)
			}
		})
	}

	t.Run("never seen", func(t *testing.T) {
		st, err := observer.GetStatus(ctx, "nobody-ever")
		if err != nil {
			t.Fatal(err)
		}
		if st.State != 0 || st.Seen != 0 {
			t.Fatalf("state=%d seen=%d, want 0 and 0", st.State, st.Seen)
		}
	})
}

func TestJWTLogin(t *testing.T) {
	env := []string{
		"IRIS_AUTH_REQUIRED=true",
		"IRIS_AUTH_JWT_SECRET=e2e-test-secret-0123456789abcdef-0123456789",
	}
	s := startServer(t, env...)
	ctx := testCtx(t, 60*time.Second)

	token := func(user string) string {
		t.Helper()
		cmd := exec.Command(irisBinary, "token", "--user", user)
		cmd.Env = append(os.Environ(), env...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("iris token --user %s failed: %v\n%s", user, err, stderr.String())
		}
		fields := strings.Fields(string(out))
		if len(fields) == 0 {
			t.Fatalf("iris token --user %s printed nothing", user)
		}
		jwt := fields[len(fields)-1]
		if strings.Count(jwt, ".") != 2 {
			t.Fatalf("iris token --user %s printed %q, expected a JWT", user, out)
		}
		return jwt
	}
	aliceToken, bobToken := token("alice"), token("bob")

	t.Run("no token", func(t *testing.T) {
		expectLoginRejected(t, s.dial(t, tcp), "alice")
	})

	t.Run("own token", func(t *testing.T) {
		for _, transport := range []string{tcp, ws} {
			c := s.dial(t, transport)
			if err := c.LoginToken(ctx, "alice", aliceToken); err != nil {
				t.Fatalf("%s: %v", transport, err)
			}
		}
	})

	t.Run("own token over login2", func(t *testing.T) {
		c := s.dial(t, tcp)
		if err := c.Login2(ctx, "alice", aliceToken); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("token of another user", func(t *testing.T) {
		c := s.dial(t, tcp)
		err := c.LoginToken(ctx, "alice", bobToken)
		var serverErr *client.ServerError
		if !errors.As(err, &serverErr) {
			t.Fatalf("login as alice with bob's token: err = %v, want an ERROR frame", err)
		}
	})

	t.Run("login2 without token", func(t *testing.T) {
		c := s.dial(t, tcp)
		err := c.Login2(ctx, "alice", "")
		var serverErr *client.ServerError
		if !errors.As(err, &serverErr) {
			t.Fatalf("login2 without token: err = %v, want an ERROR frame", err)
		}
	})
}

func TestBatchAndSeqSendOrder(t *testing.T) {
	s := startServer(t)
	bob := s.login(t, tcp, "bob")
	alice := s.login(t, tcp, "alice")

	batch := [][]byte{[]byte("b1"), []byte("b2"), []byte("b3")}
	if err := alice.BatchSend("bob", batch); err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= 2; seq++ {
		if err := alice.SendSeq("bob", seq, []byte(fmt.Sprintf("s%d", seq))); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []string{"b1", "b2", "b3", "s1", "s2"} {
		f := expect(t, bob, client.OpReliable)
		if string(f.Msg) != want {
			t.Fatalf("bob got %q, want %q", f.Msg, want)
		}
		if err := bob.Ack(f.ID); err != nil {
			t.Fatal(err)
		}
	}
}

func TestV1AndV2Interwork(t *testing.T) {
	s := startServer(t)
	v1 := s.login(t, tcp, "alice")
	v2 := s.login2(t, ws, "bob")

	if err := v1.Send("bob", []byte("from v1")); err != nil {
		t.Fatal(err)
	}
	f := expect(t, v2, client.OpDeliver)
	if f.Kind != client.OpSend || f.Sender != "alice" || string(f.Msg) != "from v1" {
		t.Fatalf("v2 session got %v, want kind 0x02 from alice with \"from v1\"", f)
	}
	if err := v2.Ack2(f.Seq); err != nil {
		t.Fatal(err)
	}

	if err := v2.Send2(1, "alice", []byte("from v2")); err != nil {
		t.Fatal(err)
	}
	expect(t, v2, client.OpAccepted)
	g := expect(t, v1, client.OpReliable)
	if string(g.Msg) != "from v2" {
		t.Fatalf("v1 session got %q, want %q", g.Msg, "from v2")
	}
}

func TestE2EERelayedUnchanged(t *testing.T) {
	s := startServer(t)
	bob := s.login(t, tcp, "bob")
	alice := s.login(t, tcp, "alice")

	header := []byte{0xa1, 0x61, 'n', 0x01}
	cipher := []byte{0x00, 0xff, 0x10, 0x03, 0xfe}
	if err := alice.SendE2EE("bob", header, cipher); err != nil {
		t.Fatal(err)
	}
	// A v1 session gets the live 0x24 frame inside a 0x10 delivery.
	outer := expectRelayed(t, bob, alice, client.OpReliable)
	inner, err := client.ParseFrame(outer.Msg)
	if err != nil {
		t.Fatalf("payload of the 0x10 delivery (%s): %v", hexDump(outer.Msg), err)
	}
	if inner.Op != client.OpE2EEDeliver || inner.Sender != "alice" {
		t.Fatalf("inner frame = %v, want E2EE from alice", inner)
	}
	if !bytes.Equal(inner.Header, header) || !bytes.Equal(inner.Cipher, cipher) {
		t.Fatalf("header %x cipher %x, want %x and %x", inner.Header, inner.Cipher, header, cipher)
	}
}

func TestTypingAndReadReceipt(t *testing.T) {
	s := startServer(t)
	bob := s.login(t, tcp, "bob")
	alice := s.login(t, ws, "alice")

	if err := alice.TypingStart("bob"); err != nil {
		t.Fatal(err)
	}
	started := expectRelayed(t, bob, alice, client.OpTyping)
	if err := alice.TypingStop("bob"); err != nil {
		t.Fatal(err)
	}
	stopped := expectRelayed(t, bob, alice, client.OpTyping)
	if started.Sender != "alice" || stopped.Sender != "alice" || started.State == stopped.State {
		t.Fatalf("typing frames %v then %v, want two states from alice", started, stopped)
	}

	if err := alice.Send("bob", []byte("read me")); err != nil {
		t.Fatal(err)
	}
	f := expect(t, bob, client.OpReliable)
	if err := bob.ReadReceipt(f.ID, "alice"); err != nil {
		t.Fatal(err)
	}
	r := expectRelayed(t, alice, bob, client.OpReceiptNotice)
	now := uint64(time.Now().UnixMilli())
	if !bytes.Equal(r.ID, f.ID) || r.User != "bob" || r.TimestampMs+10_000 < now || r.TimestampMs > now+1000 {
		t.Fatalf("receipt %v, want id %x read by bob near %d ms", r, f.ID, now)
	}
}

func TestGroupLifecycle(t *testing.T) {
	s := startServer(t)
	ctx := testCtx(t, 30*time.Second)
	alice := s.login(t, tcp, "alice")
	bob := s.login(t, tcp, "bob")

	group, err := alice.CreateGroup(ctx, "team")
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.AddGroupMember(group, "bob"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client.Conn{alice, bob} {
		if f := expect(t, c, client.OpGroupMember); f.Group != group || f.User != "bob" {
			t.Fatalf("%s got %v, want bob added to %q", c.User(), f, group)
		}
	}

	if err := alice.SendGroup(group, []byte{0x01}, []byte{0x02, 0x03}); err != nil {
		t.Fatal(err)
	}
	outer := expectRelayed(t, bob, alice, client.OpReliable)
	inner, err := client.ParseFrame(outer.Msg)
	if err != nil {
		t.Fatalf("payload of the 0x10 delivery (%s): %v", hexDump(outer.Msg), err)
	}
	if inner.Op != client.OpGroupDeliver || inner.Group != group || inner.Sender != "alice" ||
		!bytes.Equal(inner.Cipher, []byte{0x02, 0x03}) {
		t.Fatalf("inner frame = %v, want the group message from alice", inner)
	}

	raw, err := bob.GroupRoster(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	var members []string
	if err := cbor.Unmarshal(raw, &members); err != nil {
		t.Fatalf("roster %s is not a CBOR array of names: %v", hexDump(raw), err)
	}
	slices.Sort(members)
	if !slices.Equal(members, []string{"alice", "bob"}) {
		t.Fatalf("roster = %q, want alice and bob", members)
	}

	if err := bob.LeaveGroup(ctx, group); err != nil {
		t.Fatal(err)
	}
}

func TestPrekeysHandedOutOnce(t *testing.T) {
	s := startServer(t)
	ctx := testCtx(t, 30*time.Second)
	alice := s.login(t, tcp, "alice")
	bob := s.login(t, tcp, "bob")

	key := func(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }
	bundle, err := cbor.Marshal(map[string]any{
		"identity_key":            key(1, 32),
		"signed_prekey":           key(2, 32),
		"signed_prekey_signature": key(3, 64),
		"one_time_prekeys":        [][]byte{key(4, 32), key(5, 32)},
	})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := alice.UploadPrekeys(ctx, bundle)
	if err != nil {
		t.Fatal(err)
	}
	var upload struct {
		Status string `cbor:"status"`
		Pool   int    `cbor:"one_time_prekeys"`
	}
	if err := cbor.Unmarshal(raw, &upload); err != nil || upload.Status != "ok" || upload.Pool != 2 {
		t.Fatalf("upload reply %s = %+v (%v), want status ok and a pool of 2", hexDump(raw), upload, err)
	}

	seen := map[string]bool{}
	for i := range 3 {
		raw, err := bob.FetchPrekeys(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		var fetch struct {
			Status   string `cbor:"status"`
			Identity []byte `cbor:"identity_key"`
			OneTime  []byte `cbor:"one_time_prekey"`
		}
		if err := cbor.Unmarshal(raw, &fetch); err != nil || fetch.Status != "ok" || !bytes.Equal(fetch.Identity, key(1, 32)) {
			t.Fatalf("fetch %d reply %s = %+v (%v)", i, hexDump(raw), fetch, err)
		}
		if i == 2 && fetch.OneTime != nil {
			t.Fatalf("third fetch got one-time prekey %x from a pool of 2", fetch.OneTime)
		}
		if i < 2 && (len(fetch.OneTime) != 32 || seen[string(fetch.OneTime)]) {
			t.Fatalf("fetch %d one-time prekey %x, want a new 32-byte key", i, fetch.OneTime)
		}
		seen[string(fetch.OneTime)] = true
	}
}

// expectRelayed waits for a frame with op on receiver. When none comes, the
// failure lists what sender received meanwhile, which is usually the error
// frame that explains it.
func expectRelayed(t *testing.T, receiver, sender *client.Conn, op client.Op) client.Frame {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	f, err := receiver.Expect(ctx, op)
	if err == nil {
		return f
	}
	var meanwhile []string
	for {
		peek, cancelPeek := context.WithTimeout(context.Background(), 100*time.Millisecond)
		g, perr := sender.Next(peek)
		cancelPeek()
		if perr != nil {
			break
		}
		meanwhile = append(meanwhile, g.String())
	}
	t.Fatalf("%s: waiting for %v: %v; meanwhile %s received %v", receiver.User(), op, err, sender.User(), meanwhile)
	return client.Frame{}
}
