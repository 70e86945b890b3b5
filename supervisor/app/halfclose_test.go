package app

import (
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/iris-im/iris/config"
)

// A client that closes its side of the connection right after a burst of
// SEND2 may still read, so it must get an ACCEPTED for every send before
// the server closes the connection.
func TestHalfClosedClientGetsEverySendAnswered(t *testing.T) {
	n := startNode(t, func(c *config.Config) {
		c.Limits.SendRate = 1000000
		c.Limits.SendBurst = 1000000
	})
	conn, err := net.Dial("tcp", n.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	const sends = 100
	frames := []byte{0x08, 0, 5}
	frames = append(frames, "alice"...)
	frames = append(frames, 0, 0) // no token
	for cid := uint64(1); cid <= sends; cid++ {
		frames = append(frames, 0x09)
		frames = binary.BigEndian.AppendUint64(frames, cid)
		frames = append(frames, 0, 3)
		frames = append(frames, "bob"...)
		frames = binary.BigEndian.AppendUint32(frames, 5)
		frames = append(frames, "hello"...)
	}
	if _, err := conn.Write(frames); err != nil {
		t.Fatal(err)
	}
	if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}

	_ = conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	received, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("reading until the server closed: %v (got %d bytes)", err, len(received))
	}
	const loginOK = 9
	if len(received) < loginOK || string(received[:loginOK]) != "\x03LOGIN_OK" {
		t.Fatalf("reply starts %q, want LOGIN_OK", received[:min(len(received), loginOK)])
	}
	accepted := map[uint64]bool{}
	for rest := received[loginOK:]; len(rest) > 0; rest = rest[17:] {
		if rest[0] != 0x0B || len(rest) < 17 {
			t.Fatalf("unexpected frame % x after %d ACCEPTED", rest[:min(len(rest), 17)], len(accepted))
		}
		accepted[binary.BigEndian.Uint64(rest[1:9])] = true
	}
	if len(accepted) != sends {
		t.Errorf("got ACCEPTED for %d of %d sends before the server closed the connection", len(accepted), sends)
	}
}
