package app

import (
	"fmt"
	"testing"
	"time"

	"github.com/iris-im/iris/gateway/client"
)

// Sessions share pooled decoders between reads. This test interleaves two
// senders that write their SEND2 frames one byte at a time, so each session
// holds an unfinished frame while the other's reads come and go, and every
// message must still arrive whole.
func TestSplitFramesFromTwoSenders(t *testing.T) {
	n := startNode(t, nil)
	senders := []string{"sam", "sue"}
	conns := map[string]*client.Conn{}
	for _, user := range senders {
		conns[user] = login2(t, n, user)
	}
	rita := login2(t, n, "rita")

	const perSender = 3
	frames := map[string][]byte{}
	for _, user := range senders {
		for i := range perSender {
			f, err := client.AppendSend2(nil, uint64(i+1), "rita", fmt.Appendf(nil, "%s message %d", user, i))
			if err != nil {
				t.Fatal(err)
			}
			frames[user] = append(frames[user], f...)
		}
	}
	for i := range max(len(frames["sam"]), len(frames["sue"])) {
		for _, user := range senders {
			if i >= len(frames[user]) {
				continue
			}
			if err := conns[user].WriteRaw(frames[user][i : i+1]); err != nil {
				t.Fatalf("%s: write byte %d: %v", user, i, err)
			}
		}
		time.Sleep(time.Millisecond) // one read per byte, most of the time
	}

	for _, user := range senders {
		for range perSender {
			expect(t, conns[user], client.OpAccepted)
		}
	}
	got := map[string]bool{}
	for range len(senders) * perSender {
		f := expect(t, rita, client.OpDeliver)
		got[string(f.Msg)] = true
		if err := rita.Ack2(f.Seq); err != nil {
			t.Fatal(err)
		}
	}
	for _, user := range senders {
		for i := range perSender {
			if want := fmt.Sprintf("%s message %d", user, i); !got[want] {
				t.Errorf("rita did not receive %q; received %v", want, got)
			}
		}
	}
}
