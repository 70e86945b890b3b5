package app

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/iris-im/iris/config"
	"github.com/iris-im/iris/gateway/client"
)

// Users of the session fuzzer. The fuzzed connection may log in as any of
// them, or under an invalid name, and send to any of them.
const (
	fuzzUser     = "fuzz-user"
	fuzzSender   = "fuzz-sender"
	fuzzReceiver = "fuzz-receiver"
)

var fuzzNames = []string{
	fuzzUser, fuzzSender, fuzzReceiver, "", "bad:name", "ctl\x01name", strings.Repeat("n", 300), "\xff\xfe",
}

// fuzzInput turns fuzz bytes into client frames. Reads past the end return
// zeros, so every input decodes to some sequence.
type fuzzInput struct{ b []byte }

func (in *fuzzInput) empty() bool { return len(in.b) == 0 }

func (in *fuzzInput) u8() byte {
	if len(in.b) == 0 {
		return 0
	}
	v := in.b[0]
	in.b = in.b[1:]
	return v
}

// bytes takes up to maxLen bytes, the count chosen by the next input byte.
func (in *fuzzInput) bytes(maxLen int) []byte {
	n := min(int(in.u8())%(maxLen+1), len(in.b))
	v := in.b[:n]
	in.b = in.b[n:]
	return v
}

// name picks a known, invalid or fuzzed user name.
func (in *fuzzInput) name() string {
	k := int(in.u8())
	if k < 2*len(fuzzNames) {
		return fuzzNames[k%len(fuzzNames)]
	}
	return string(in.bytes(32))
}

// frame returns the next client frame: a well-formed frame of one of the
// client opcodes with fuzzed fields, or raw fuzzed bytes.
func (in *fuzzInput) frame() []byte {
	var b []byte
	var err error
	switch in.u8() % 22 {
	case 0:
		b = client.AppendLogin(nil, in.name())
	case 1:
		b, err = client.AppendLogin2(nil, in.name(), string(in.bytes(16)))
	case 2:
		b, err = client.AppendSend(nil, in.name(), in.bytes(64))
	case 3:
		b, err = client.AppendSend2(nil, uint64(in.u8()), in.name(), in.bytes(64))
	case 4:
		b, err = client.AppendSendSeq(nil, in.name(), uint64(in.u8()), in.bytes(64))
	case 5:
		b, err = client.AppendBatchSend(nil, in.name(), [][]byte{in.bytes(16), in.bytes(16)})
	case 6:
		id := make([]byte, client.MessageIDLen)
		copy(id, in.bytes(client.MessageIDLen))
		b = client.AppendAck(nil, id)
	case 7:
		b = client.AppendAck2(nil, uint64(in.u8()))
	case 8:
		b, err = client.AppendGetStatus(nil, in.name())
	case 9:
		b, err = client.AppendCBORMessage(nil, in.name(), in.bytes(32))
	case 10:
		b, err = client.AppendPrekeyUpload(nil, in.bytes(64))
	case 11:
		b, err = client.AppendPrekeyFetch(nil, in.name())
	case 12:
		b, err = client.AppendE2EESend(nil, in.name(), in.bytes(16), in.bytes(32))
	case 13:
		b, err = client.AppendGroupCreate(nil, string(in.bytes(16)))
	case 14:
		b, err = client.AppendGroupAddMember(nil, string(in.bytes(16)), in.name())
	case 15:
		b, err = client.AppendGroupSend(nil, string(in.bytes(16)), in.bytes(8), in.bytes(32))
	case 16:
		b, err = client.AppendGroupLeave(nil, string(in.bytes(16)))
	case 17:
		b, err = client.AppendGroupRosterGet(nil, string(in.bytes(16)))
	case 18:
		b, err = client.AppendGroupSenderKey(nil, string(in.bytes(16)), in.bytes(32))
	case 19:
		b, err = client.AppendTyping(nil, in.name(), in.u8()%2 == 0)
	case 20:
		b, err = client.AppendReadReceipt(nil, in.bytes(16), in.name())
	default:
		return in.bytes(64)
	}
	if err != nil {
		// A field too long for its length prefix: send the raw bytes instead.
		return in.bytes(64)
	}
	return b
}

// fuzzServerFrameLen returns the length of the server-to-client frame at the
// start of b from the layouts in docs/protocol.md, or false if b is empty,
// cut short or starts with an opcode the server never sends.
func fuzzServerFrameLen(b []byte) (int, bool) {
	pos := 1
	fixed := func(n int) bool {
		pos += n
		return pos <= len(b)
	}
	prefixed := func(width int) bool {
		if pos+width > len(b) {
			return false
		}
		var n int
		if width == 2 {
			n = int(binary.BigEndian.Uint16(b[pos:]))
		} else {
			n = int(binary.BigEndian.Uint32(b[pos:]))
		}
		pos += width
		return fixed(n)
	}
	if len(b) == 0 {
		return 0, false
	}
	var ok bool
	switch client.Op(b[0]) {
	case client.OpLoginOK:
		ok = fixed(8)
	case client.OpStatus:
		ok = prefixed(2) && fixed(9)
	case client.OpAccepted:
		ok = fixed(16)
	case client.OpRejected:
		ok = fixed(8) && prefixed(2)
	case client.OpReliable:
		ok = prefixed(2) && prefixed(4)
	case client.OpDeliver:
		ok = fixed(9) && prefixed(2) && fixed(8) && prefixed(4)
	case client.OpPrekeyReply:
		ok = prefixed(4)
	case client.OpGroupMember:
		ok = prefixed(2) && prefixed(2)
	case client.OpGroupOK:
		ok = fixed(2)
	case client.OpGroupRoster:
		ok = prefixed(2) && prefixed(4)
	case client.OpTyping:
		ok = prefixed(2) && fixed(1)
	case client.OpReceiptNotice:
		ok = prefixed(2) && prefixed(2) && fixed(8)
	case client.OpError:
		ok = prefixed(2)
	case client.OpRateLimited:
		ok = fixed(4)
	}
	return pos, ok
}

// startFuzzNode starts one node for the whole fuzz process. The limits that
// would turn long fuzzing into rate-limit replies are lifted.
func startFuzzNode(f *testing.F) *Node {
	cfg := config.Default()
	cfg.Node.DataDir = f.TempDir()
	cfg.Edge.TCPAddr = "127.0.0.1:0"
	cfg.Edge.WSAddr = "127.0.0.1:0"
	cfg.Admin.Addr = "127.0.0.1:0"
	cfg.Limits.SendRate = 1_000_000
	cfg.Limits.SendBurst = 1_000_000
	cfg.Limits.ConnRate = 0
	cfg.Limits.ConnBurst = 0
	n, err := Start(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		f.Fatalf("start node: %v", err)
	}
	f.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := n.Stop(ctx); err != nil {
			f.Errorf("stop node: %v", err)
		}
	})
	return n
}

// deliverKnownMessage sends one SEND2 from fuzzSender to fuzzReceiver on
// fresh connections and waits for its DELIVER. Both acknowledge whatever
// else they receive, so that inboxes do not fill up over a long run.
func deliverKnownMessage(addr string, cid uint64) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var conns [2]*client.Conn
	for i, user := range []string{fuzzSender, fuzzReceiver} {
		c, err := client.Dial(ctx, client.TransportTCP, addr)
		if err != nil {
			return fmt.Errorf("dial as %s: %w", user, err)
		}
		defer c.Close()
		if err := c.Login2(ctx, user, ""); err != nil {
			return fmt.Errorf("login2 as %s: %w", user, err)
		}
		conns[i] = c
	}
	sender, receiver := conns[0], conns[1]

	body := fmt.Sprintf("known message %d", cid)
	if err := sender.Send2(cid, fuzzReceiver, []byte(body)); err != nil {
		return err
	}
	for {
		f, err := sender.Next(ctx)
		if err != nil {
			return fmt.Errorf("%s waiting for ACCEPTED of cid %d: %w", fuzzSender, cid, err)
		}
		if f.Op == client.OpDeliver {
			_ = sender.Ack2(f.Seq)
		}
		if f.Op == client.OpRejected && f.CID == cid {
			return fmt.Errorf("the known message was rejected: %v", f)
		}
		if f.Op == client.OpAccepted && f.CID == cid {
			break
		}
	}
	for {
		f, err := receiver.Next(ctx)
		if err != nil {
			return fmt.Errorf("%s waiting for %q: %w", fuzzReceiver, body, err)
		}
		if f.Op != client.OpDeliver {
			continue
		}
		if err := receiver.Ack2(f.Seq); err != nil {
			return err
		}
		if f.Sender == fuzzSender && string(f.Msg) == body {
			return nil
		}
	}
}

// exchangeFuzzFrames writes frames on a new TCP connection, one write each,
// closes the write side and returns every byte the server sent until it
// closed the connection.
func exchangeFuzzFrames(addr string, frames [][]byte) ([]byte, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return nil, err
	}

	readDone := make(chan struct{})
	var received []byte
	var readErr error
	go func() {
		defer close(readDone)
		received, readErr = io.ReadAll(conn)
	}()
	for _, frame := range frames {
		if _, err := conn.Write(frame); err != nil {
			break // the server closed the connection after a fatal error
		}
	}
	_ = conn.(*net.TCPConn).CloseWrite()
	<-readDone

	if errors.Is(readErr, syscall.ECONNRESET) {
		readErr = nil // the data that came before the reset has been read
	}
	return received, readErr
}

// FuzzSession sends a fuzzed sequence of client frames as one user while
// another user sends a known message to a third. Every byte the server
// sends back must decode as server frames, the node must keep running, and
// the known message must arrive.
func FuzzSession(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 0, 3, 0, 4, 'h', 'e', 'l', 'o'})
	f.Add([]byte{1, 0, 0, 3, 7, 2, 4, 'p', 'i', 'n', 'g', 7, 1})
	f.Add([]byte{0, 0, 13, 4, 't', 'e', 'a', 'm', 19, 2, 0, 21, 3, 0xfe, 0x00, 0x01})
	f.Add([]byte{0, 3, 21, 5, 0x09, 0, 0, 0, 0, 21, 8, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})

	n := startFuzzNode(f)
	addr := n.TCPAddr().String()
	var knownCID atomic.Uint64

	f.Fuzz(func(t *testing.T, data []byte) {
		in := &fuzzInput{b: data}
		var frames [][]byte
		for !in.empty() && len(frames) < 64 {
			frames = append(frames, in.frame())
		}

		known := make(chan error, 1)
		go func() { known <- deliverKnownMessage(addr, knownCID.Add(1)) }()

		received, err := exchangeFuzzFrames(addr, frames)
		if err != nil {
			t.Fatalf("reading the server's answers to %d frames: %v", len(frames), err)
		}
		for rest := received; len(rest) > 0; {
			size, ok := fuzzServerFrameLen(rest)
			if !ok {
				t.Fatalf("server bytes do not split into frames at offset %d: % x", len(received)-len(rest), rest[:min(len(rest), 64)])
			}
			frame, err := client.ParseFrame(rest[:size])
			if err != nil {
				t.Fatalf("server frame does not decode: %v", err)
			}
			if !bytes.Equal(frame.Raw, rest[:size]) {
				t.Fatalf("decoded frame %v does not cover the bytes % x", frame, rest[:size])
			}
			rest = rest[size:]
		}

		if err := <-known; err != nil {
			t.Fatalf("well-behaved exchange beside the fuzzed session: %v", err)
		}
		select {
		case <-n.Done():
			t.Fatalf("the node stopped: %v", n.Err())
		default:
		}
	})
}
