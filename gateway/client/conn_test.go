package client

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

func TestConnDecodesEveryServerFrame(t *testing.T) {
	forEachTransport(t, func(t *testing.T, transportName string) {
		cases := serverFrameCases(t)
		var stream []byte
		for _, tc := range cases {
			stream = append(stream, unhex(t, tc.hex)...)
		}

		addr := startFake(t, transportName, func(p fakePeer) {
			if transportName == TransportTCP {
				// Uneven writes put frame boundaries and headers across
				// TCP segments.
				for _, chunk := range chunks(stream) {
					if err := p.write(chunk); err != nil {
						t.Errorf("fake server: write failed: %v", err)
						return
					}
				}
			} else {
				// One, two, then three frames per WebSocket message.
				for i, per := 0, 1; i < len(cases); i, per = i+per, per%3+1 {
					var msg []byte
					for _, tc := range cases[i:min(i+per, len(cases))] {
						msg = append(msg, unhex(t, tc.hex)...)
					}
					if err := p.write(msg); err != nil {
						t.Errorf("fake server: write failed: %v", err)
						return
					}
				}
			}
			p.drain()
		})

		c := dialFake(t, transportName, addr)
		defer c.Close()
		ctx := testContext(t)
		for _, tc := range cases {
			got, err := c.Expect(ctx, tc.want.Op)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			checkFrame(t, tc.name, got, tc.want, unhex(t, tc.hex))
		}
	})
}

func TestLoginThenDeliveryAndAck(t *testing.T) {
	forEachTransport(t, func(t *testing.T, transportName string) {
		reliable := unhex(t, `10 00 10 `+testID+` 00 00 00 0a "Hello Bob!"`)
		addr := startFake(t, transportName, func(p fakePeer) {
			login, err := p.readMessage()
			if err != nil || string(login) != string(unhex(t, `01 "bob"`)) {
				t.Errorf("fake server: first read = % x (%v), want the login alone", login, err)
				return
			}
			_ = p.write(unhex(t, `03 "LOGIN_OK"`))
			_ = p.write(reliable)
			expectBytes(t, p, "ack", unhex(t, `03 `+testID))
			p.drain()
		})

		c := dialFake(t, transportName, addr)
		defer c.Close()
		ctx := testContext(t)

		if err := c.Login(ctx, "bob"); err != nil {
			t.Fatal(err)
		}
		if c.User() != "bob" {
			t.Fatalf("User() = %q, want bob", c.User())
		}
		f, err := c.Expect(ctx, OpReliable)
		if err != nil {
			t.Fatal(err)
		}
		if string(f.Msg) != "Hello Bob!" {
			t.Fatalf("message = %q, want %q", f.Msg, "Hello Bob!")
		}
		if err := c.Ack(f.ID); err != nil {
			t.Fatal(err)
		}
	})
}

func TestLoginRejected(t *testing.T) {
	forEachTransport(t, func(t *testing.T, transportName string) {
		addr := startFake(t, transportName, func(p fakePeer) {
			if _, err := p.readMessage(); err != nil {
				return
			}
			_ = p.write(unhex(t, `fe 00 0c "invalid_user"`))
		})

		c := dialFake(t, transportName, addr)
		defer c.Close()
		ctx := testContext(t)

		err := c.Login(ctx, "")
		var serverErr *ServerError
		if !errors.As(err, &serverErr) || serverErr.Reason != "invalid_user" {
			t.Fatalf("Login err = %v, want ServerError invalid_user", err)
		}
		if _, err := c.Next(ctx); !errors.Is(err, ErrClosed) {
			t.Fatalf("Next after the server closed: err = %v, want ErrClosed", err)
		}
		if c.User() != "" {
			t.Fatalf("User() = %q after a failed login, want empty", c.User())
		}
	})
}

func TestLogin2AndToken(t *testing.T) {
	forEachTransport(t, func(t *testing.T, transportName string) {
		addr := startFake(t, transportName, func(p fakePeer) {
			if !expectBytes(t, p, "login2", unhex(t, `08 00 05 "alice" 00 03 "jwt"`)) {
				return
			}
			_ = p.write(unhex(t, `03 "LOGIN_OK" 11 00 00 00 00 00 00 00 01 02 00 03 "bob" 00 00 00 00 00 00 00 05 00 00 00 01 "x"`))
			expectBytes(t, p, "ack2", unhex(t, `12 00 00 00 00 00 00 00 01`))
			p.drain()
		})

		c := dialFake(t, transportName, addr)
		defer c.Close()
		ctx := testContext(t)

		if err := c.Login2(ctx, "alice", "jwt"); err != nil {
			t.Fatal(err)
		}
		f, err := c.Expect(ctx, OpDeliver)
		if err != nil {
			t.Fatal(err)
		}
		if f.Seq != 1 || f.Sender != "bob" || string(f.Msg) != "x" {
			t.Fatalf("delivery = %v, want seq 1 from bob with x", f)
		}
		if err := c.Ack2(f.Seq); err != nil {
			t.Fatal(err)
		}
	})
}

func TestLoginTokenBody(t *testing.T) {
	addr := startFake(t, TransportTCP, func(p fakePeer) {
		if !expectBytes(t, p, "login", unhex(t, `01 "alice:h.p.s"`)) {
			return
		}
		_ = p.write(unhex(t, `03 "LOGIN_OK"`))
		p.drain()
	})
	c := dialFake(t, TransportTCP, addr)
	defer c.Close()
	if err := c.LoginToken(testContext(t), "alice", "h.p.s"); err != nil {
		t.Fatal(err)
	}
}

func TestGetStatusKeepsOtherFrames(t *testing.T) {
	forEachTransport(t, func(t *testing.T, transportName string) {
		addr := startFake(t, transportName, func(p fakePeer) {
			if !expectBytes(t, p, "get status", unhex(t, `05 00 05 "carol"`)) {
				return
			}
			// A delivery and another user's status arrive before the reply.
			_ = p.write(unhex(t, `10 00 10 `+testID+` 00 00 00 01 "a"`))
			_ = p.write(unhex(t, `06 00 03 "bob" 01 00 00 00 00 00 00 00 00`))
			_ = p.write(unhex(t, `06 00 05 "carol" 00 00 00 00 00 6b 13 13 3d`))
			p.drain()
		})

		c := dialFake(t, transportName, addr)
		defer c.Close()
		ctx := testContext(t)

		st, err := c.GetStatus(ctx, "carol")
		if err != nil {
			t.Fatal(err)
		}
		if st.State != 0 || st.Seen != 0x6b13133d {
			t.Fatalf("status = %+v, want offline, seen 0x6b13133d", st)
		}
		if f, err := c.Expect(ctx, OpReliable); err != nil || string(f.Msg) != "a" {
			t.Fatalf("first set-aside frame = %v (%v), want the delivery", f, err)
		}
		if f, err := c.Expect(ctx, OpStatus); err != nil || f.User != "bob" {
			t.Fatalf("second set-aside frame = %v (%v), want bob's status", f, err)
		}
	})
}

func TestRequestsWaitForReplies(t *testing.T) {
	forEachTransport(t, func(t *testing.T, transportName string) {
		addr := startFake(t, transportName, func(p fakePeer) {
			steps := []struct{ request, reply string }{
				{`01 "alice"`, `03 "LOGIN_OK"`},
				{`20 00 00 00 01 a0`, `22 00 00 00 01 a0`},
				{`21 00 03 "bob"`, `22 00 00 00 01 a1`},
				{`30 00 04 "team"`, `31 00 02 "g7" 00 05 "alice"`},
				{`35 00 02 "g7"`, `35 00 02 "g7" 00 00 00 01 80`},
				{`32 00 02 "g7"`, `32 "OK"`},
			}
			for _, s := range steps {
				if !expectBytes(t, p, "request", unhex(t, s.request)) {
					return
				}
				_ = p.write(unhex(t, s.reply))
			}
			p.drain()
		})

		c := dialFake(t, transportName, addr)
		defer c.Close()
		ctx := testContext(t)

		if err := c.Login(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
		if reply, err := c.UploadPrekeys(ctx, []byte{0xa0}); err != nil || !bytes.Equal(reply, []byte{0xa0}) {
			t.Fatalf("UploadPrekeys = % x, %v", reply, err)
		}
		if reply, err := c.FetchPrekeys(ctx, "bob"); err != nil || !bytes.Equal(reply, []byte{0xa1}) {
			t.Fatalf("FetchPrekeys = % x, %v", reply, err)
		}
		group, err := c.CreateGroup(ctx, "team")
		if err != nil || group != "g7" {
			t.Fatalf("CreateGroup = %q, %v, want g7", group, err)
		}
		if roster, err := c.GroupRoster(ctx, group); err != nil || !bytes.Equal(roster, []byte{0x80}) {
			t.Fatalf("GroupRoster = % x, %v", roster, err)
		}
		if err := c.LeaveGroup(ctx, group); err != nil {
			t.Fatal(err)
		}
	})
}

func TestRequestErrorReply(t *testing.T) {
	addr := startFake(t, TransportTCP, func(p fakePeer) {
		if !expectBytes(t, p, "leave", unhex(t, `32 00 02 "g1"`)) {
			return
		}
		_ = p.write(unhex(t, `fe 00 0a "not_member"`))
		p.drain()
	})
	c := dialFake(t, TransportTCP, addr)
	defer c.Close()

	err := c.LeaveGroup(testContext(t), "g1")
	var serverErr *ServerError
	if !errors.As(err, &serverErr) || serverErr.Reason != "not_member" {
		t.Fatalf("LeaveGroup err = %v, want ServerError not_member", err)
	}
}

func TestFireAndForgetWrites(t *testing.T) {
	forEachTransport(t, func(t *testing.T, transportName string) {
		id := unhex(t, testID)
		want := []string{
			`02 00 03 "bob" 00 02 "hi"`,
			`07 00 03 "bob" 00 00 00 00 00 00 00 03 00 01 "s"`,
			`04 00 03 "bob" 00 00 00 06 00 01 "a" 00 01 "b"`,
			`10 00 03 "bob" 00 00 00 01 a0`,
			`09 00 00 00 00 00 00 00 04 00 03 "bob" 00 00 00 01 "z"`,
			`23 00 03 "bob" 00 01 aa 00 00 00 01 bb`,
			`33 00 02 "g1" 00 01 aa 00 00 00 01 bb`,
			`36 00 02 "g1" 00 00 00 01 "k"`,
			`37 00 02 "g1" 00 03 "bob"`,
			`70 00 03 "bob"`,
			`71 00 03 "bob"`,
			`74 00 10 ` + testID + ` 00 03 "bob"`,
		}
		addr := startFake(t, transportName, func(p fakePeer) {
			for i, w := range want {
				if !expectBytes(t, p, fmt.Sprintf("frame %d", i), unhex(t, w)) {
					return
				}
			}
			_ = p.write(unhex(t, `32 "OK"`))
			p.drain()
		})

		c := dialFake(t, transportName, addr)
		defer c.Close()

		writes := []error{
			c.Send("bob", []byte("hi")),
			c.SendSeq("bob", 3, []byte("s")),
			c.BatchSend("bob", [][]byte{[]byte("a"), []byte("b")}),
			c.SendCBOR("bob", []byte{0xa0}),
			c.Send2(4, "bob", []byte("z")),
			c.SendE2EE("bob", []byte{0xaa}, []byte{0xbb}),
			c.SendGroup("g1", []byte{0xaa}, []byte{0xbb}),
			c.SendSenderKey("g1", []byte("k")),
			c.AddGroupMember("g1", "bob"),
			c.TypingStart("bob"),
			c.TypingStop("bob"),
			c.ReadReceipt(id, "bob"),
		}
		for i, err := range writes {
			if err != nil {
				t.Fatalf("write %d: %v", i, err)
			}
		}
		// The fake server replies only after it has checked every frame.
		if _, err := c.Expect(testContext(t), OpGroupOK); err != nil {
			t.Fatal(err)
		}
	})
}

func TestWriteFieldTooLong(t *testing.T) {
	addr := startFake(t, TransportTCP, func(p fakePeer) { p.drain() })
	c := dialFake(t, TransportTCP, addr)
	defer c.Close()

	if err := c.Send("bob", make([]byte, 1<<16)); !errors.Is(err, ErrFieldTooLong) {
		t.Fatalf("Send of 65536 bytes: err = %v, want ErrFieldTooLong", err)
	}
}

func TestMalformedServerBytes(t *testing.T) {
	cases := []struct {
		name      string
		transport string
		messages  []string
	}{
		{"unknown opcode over tcp", TransportTCP, []string{`03 "LOGIN_OK" 99`}},
		{"unknown opcode over ws", TransportWebSocket, []string{`03 "LOGIN_OK" 99`}},
		{"frame across ws messages", TransportWebSocket, []string{`03 "LOGIN_OK" 06 00`, `03 "bob" 01 00 00 00 00 00 00 00 00`}},
		{"text ws message", TransportWebSocket, []string{`"hello"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clientGone := make(chan struct{})
			addr := startFake(t, tc.transport, func(p fakePeer) {
				for _, m := range tc.messages {
					if tc.name == "text ws message" {
						_ = p.(*wsPeer).conn.Write(context.Background(), websocket.MessageText, unhex(t, m))
						continue
					}
					_ = p.write(unhex(t, m))
				}
				p.drain()
				close(clientGone)
			})
			c := dialFake(t, tc.transport, addr)
			defer c.Close()
			ctx := testContext(t)

			var err error
			for err == nil {
				_, err = c.Next(ctx)
			}
			if !errors.Is(err, ErrMalformedFrame) {
				t.Fatalf("err = %v, want ErrMalformedFrame", err)
			}
			select {
			case <-c.Done():
			default:
				t.Fatal("Done is open after a malformed frame")
			}
			// The client closes the socket itself, before any Close call.
			select {
			case <-clientGone:
			case <-ctx.Done():
				t.Fatal("the fake server still sees the connection open")
			}
		})
	}
}

func TestExpectClosedReturnsLastFrames(t *testing.T) {
	forEachTransport(t, func(t *testing.T, transportName string) {
		addr := startFake(t, transportName, func(p fakePeer) {
			_ = p.write(unhex(t, `fe 00 0e "unknown_opcode"`))
		})
		c := dialFake(t, transportName, addr)
		defer c.Close()

		frames, err := c.ExpectClosed(testContext(t))
		if err != nil {
			t.Fatal(err)
		}
		if len(frames) != 1 || frames[0].Op != OpError || frames[0].Reason != "unknown_opcode" {
			t.Fatalf("frames before close = %v, want one ERROR unknown_opcode", frames)
		}
	})
}

func TestCloseUnblocksNextAndFullReader(t *testing.T) {
	forEachTransport(t, func(t *testing.T, transportName string) {
		addr := startFake(t, transportName, func(p fakePeer) {
			// More frames than the one-slot buffer holds keep the reader
			// blocked on handing a frame over.
			for range 100 {
				if p.write(unhex(t, `32 "OK"`)) != nil {
					return
				}
			}
			p.drain()
		})
		c := dialFake(t, transportName, addr, WithFrameBuffer(1))
		if _, err := c.Expect(testContext(t), OpGroupOK); err != nil {
			t.Fatal(err)
		}

		done := make(chan error, 1)
		go func() {
			if err := c.Close(); err != nil {
				done <- err
				return
			}
			// Drain what was queued, then Next must report the close.
			var err error
			for err == nil {
				_, err = c.Next(context.Background())
			}
			done <- err
		}()
		select {
		case err := <-done:
			if !errors.Is(err, ErrClosed) {
				t.Fatalf("Next after Close: err = %v, want ErrClosed", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Close did not return within 10 s")
		}
		if err := c.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	})
}

func TestNextHonoursContext(t *testing.T) {
	addr := startFake(t, TransportTCP, func(p fakePeer) { p.drain() })
	c := dialFake(t, TransportTCP, addr)
	defer c.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
}

func TestConcurrentWritesStayWhole(t *testing.T) {
	forEachTransport(t, func(t *testing.T, transportName string) {
		const writers, perWriter = 4, 250
		frameLen := len(mustSend2(t, 0))
		addr := startFake(t, transportName, func(p fakePeer) {
			seen := make(map[uint64]bool)
			for range writers * perWriter {
				b, err := p.readN(frameLen)
				if err != nil {
					t.Errorf("fake server: %v", err)
					return
				}
				cid := binary.BigEndian.Uint64(b[1:9])
				if !bytes.Equal(b, mustSend2(t, cid)) {
					t.Errorf("fake server: frame % x is not the SEND2 of cid %d", b, cid)
					return
				}
				seen[cid] = true
			}
			if len(seen) != writers*perWriter {
				t.Errorf("fake server: %d distinct cids, want %d", len(seen), writers*perWriter)
			}
			_ = p.write(unhex(t, `32 "OK"`))
			p.drain()
		})

		c := dialFake(t, transportName, addr)
		defer c.Close()

		var wg sync.WaitGroup
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range perWriter {
					if err := c.Send2(uint64(w*perWriter+i), "bob", []byte("payload")); err != nil {
						t.Errorf("Send2: %v", err)
						return
					}
				}
			}()
		}
		wg.Wait()
		if _, err := c.Expect(testContext(t), OpGroupOK); err != nil {
			t.Fatal(err)
		}
	})
}

func mustSend2(t *testing.T, cid uint64) []byte {
	b, err := AppendSend2(nil, cid, "bob", []byte("payload"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDialErrors(t *testing.T) {
	ctx := testContext(t)
	if _, err := Dial(ctx, "udp", "127.0.0.1:1"); err == nil {
		t.Fatal("Dial with transport udp succeeded")
	}

	addr := startFake(t, TransportTCP, func(p fakePeer) {})
	if _, err := Dial(ctx, TransportWebSocket, addr, WithPath("/missing")); err == nil {
		t.Fatal("WebSocket dial to a plain TCP server succeeded")
	}
}
