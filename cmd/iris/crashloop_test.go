package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iris-im/iris/gateway/client"
)

// acceptedSend is one SEND2 that the server confirmed with ACCEPTED.
type acceptedSend struct {
	sender    string
	cid       uint64
	recipient string
	seq       uint64
}

// crashLoad is the state of the senders across all rounds of the crash loop.
// Each sender's cids increase across rounds, so the cid order is the order in
// which the sender sent.
type crashLoad struct {
	mu       sync.Mutex
	accepted []acceptedSend
	rejected map[string]int // REJECTED reason -> count
	nextCID  map[string]uint64
}

// crashLoopBody is the message text of cid from sender, so that a delivery
// names its own origin.
func crashLoopBody(sender string, cid uint64) string {
	return sender + "/" + strconv.FormatUint(cid, 10)
}

// parseCrashLoopBody is the inverse of crashLoopBody.
func parseCrashLoopBody(body []byte) (sender string, cid uint64, err error) {
	name, num, ok := strings.Cut(string(body), "/")
	if !ok {
		return "", 0, fmt.Errorf("message %q has no sender/cid form", body)
	}
	cid, err = strconv.ParseUint(num, 10, 64)
	if err != nil {
		return "", 0, fmt.Errorf("message %q: invalid cid: %w", body, err)
	}
	return name, cid, nil
}

// sendUntilKilled pipelines up to window SEND2 frames from sender to the
// recipients in turn, at most limit of them, and records every ACCEPTED. It
// returns when the server closes the connection or every frame is answered,
// and reports whether the close came first.
func (l *crashLoad) sendUntilKilled(conn *client.Conn, sender string, recipients []string, window, limit int) (cut bool, err error) {
	l.mu.Lock()
	firstCID := l.nextCID[sender]
	l.nextCID[sender] = firstCID + uint64(limit)
	l.mu.Unlock()

	recipientOf := func(cid uint64) string { return recipients[int(cid)%len(recipients)] }
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	sent, answered := 0, 0
	for answered < limit {
		for sent < limit && sent-answered < window {
			cid := firstCID + uint64(sent)
			if err := conn.Send2(cid, recipientOf(cid), []byte(crashLoopBody(sender, cid))); err != nil {
				return true, nil // the server is gone; the unanswered frames may or may not be stored
			}
			sent++
		}
		f, err := conn.Next(ctx)
		if errors.Is(err, client.ErrClosed) {
			return true, nil
		}
		if err != nil {
			return false, fmt.Errorf("%s after %d answers: %w", sender, answered, err)
		}
		switch f.Op {
		case client.OpAccepted:
			l.mu.Lock()
			l.accepted = append(l.accepted, acceptedSend{sender: sender, cid: f.CID, recipient: recipientOf(f.CID), seq: f.Seq})
			l.mu.Unlock()
		case client.OpRejected:
			l.mu.Lock()
			l.rejected[f.Reason]++
			l.mu.Unlock()
		default:
			return false, fmt.Errorf("%s: unexpected frame while sending: %v", sender, f)
		}
		answered++
	}
	return false, nil
}

// receivedCopy is one DELIVER frame seen by a recipient.
type receivedCopy struct {
	sender string
	cid    uint64
	seq    uint64
}

// drainInbox logs recipient in and reads DELIVER frames until every seq in
// want has arrived. It acknowledges with ACK2 every 100 deliveries, because
// the server disconnects a session with 1000 unacknowledged deliveries.
func drainInbox(t *testing.T, s *testServer, recipient string, want map[uint64]bool, deadline time.Duration) []receivedCopy {
	t.Helper()
	conn := s.login2(t, tcp, recipient)
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()

	var copies []receivedCopy
	missing := len(want)
	seen := make(map[uint64]bool)
	for missing > 0 {
		f, err := conn.Next(ctx)
		if err != nil {
			t.Fatalf("%s: %d accepted messages still missing after %d deliveries: %v", recipient, missing, len(copies), err)
		}
		if f.Op != client.OpDeliver {
			t.Fatalf("%s: unexpected frame in the inbox backlog: %v", recipient, f)
		}
		sender, cid, err := parseCrashLoopBody(f.Msg)
		if err != nil {
			t.Fatalf("%s: %v", recipient, err)
		}
		if sender != f.Sender {
			t.Fatalf("%s: DELIVER seq %d from %q carries a message of %q", recipient, f.Seq, f.Sender, sender)
		}
		copies = append(copies, receivedCopy{sender: sender, cid: cid, seq: f.Seq})
		if want[f.Seq] && !seen[f.Seq] {
			missing--
		}
		seen[f.Seq] = true
		if len(copies)%100 == 0 {
			if err := conn.Ack2(f.Seq); err != nil {
				t.Fatalf("%s: ACK2 %d: %v", recipient, f.Seq, err)
			}
		}
	}
	return copies
}

func TestCrashLoopKeepsAcceptedInOrder(t *testing.T) {
	const (
		rounds          = 10
		window          = 64
		perSenderRound  = 20000
		minLoad         = 100 * time.Millisecond
		maxLoad         = 700 * time.Millisecond
		overallDeadline = 90 * time.Second
	)
	started := time.Now()
	senders := []string{"crash-s1", "crash-s2", "crash-s3"}
	recipients := []string{"crash-r1", "crash-r2", "crash-r3"}
	s := startServer(t, append(highSendRate, "IRIS_LIMITS_INBOX=1000000")...)
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 0))
	t.Logf("kill delays from seed %d", seed)

	load := &crashLoad{rejected: make(map[string]int), nextCID: make(map[string]uint64)}
	for _, sender := range senders {
		load.nextCID[sender] = 1
	}

	killsUnderLoad := 0
	for round := 1; round <= rounds; round++ {
		conns := make([]*client.Conn, len(senders))
		for i, sender := range senders {
			conns[i] = s.login2(t, tcp, sender)
		}

		errs := make(chan error, len(senders))
		var wg sync.WaitGroup
		var cutSenders atomic.Int32
		for i, sender := range senders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cut, err := load.sendUntilKilled(conns[i], sender, recipients, window, perSenderRound)
				if cut {
					cutSenders.Add(1)
				}
				errs <- err
			}()
		}

		delay := minLoad + time.Duration(rng.Int64N(int64(maxLoad-minLoad)))
		time.Sleep(delay) // the random kill moment is the point of this wait
		s.kill()
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		for _, c := range conns {
			c.Close()
		}

		load.mu.Lock()
		total := len(load.accepted)
		load.mu.Unlock()
		t.Logf("round %d: SIGKILL after %v cut %d of %d senders, %d accepted so far",
			round, delay.Round(time.Millisecond), cutSenders.Load(), len(senders), total)
		if cutSenders.Load() > 0 {
			killsUnderLoad++
		}
		s.start()
	}

	// Group the accepted sends by recipient and check that the server never
	// gave two accepted messages the same inbox seq.
	wantSeqs := make(map[string]map[uint64]bool)
	acceptedAt := make(map[string]map[uint64]acceptedSend)
	for _, r := range recipients {
		wantSeqs[r] = make(map[uint64]bool)
		acceptedAt[r] = make(map[uint64]acceptedSend)
	}
	for _, a := range load.accepted {
		if prev, dup := acceptedAt[a.recipient][a.seq]; dup {
			t.Fatalf("seq %d of %s was ACCEPTED twice: %+v and %+v", a.seq, a.recipient, prev, a)
		}
		acceptedAt[a.recipient][a.seq] = a
		wantSeqs[a.recipient][a.seq] = true
	}
	if len(load.accepted) == 0 {
		t.Fatal("no SEND2 was accepted in any round")
	}

	delivered, duplicates := 0, 0
	for _, r := range recipients {
		remaining := overallDeadline - time.Since(started)
		copies := drainInbox(t, s, r, wantSeqs[r], max(remaining, 10*time.Second))

		// Each accepted seq must hold exactly the message that was accepted.
		firstCopy := make(map[uint64]receivedCopy)
		for _, c := range copies {
			if prev, ok := firstCopy[c.seq]; ok {
				duplicates++
				if prev != c {
					t.Fatalf("%s: seq %d delivered as %+v and later as %+v", r, c.seq, prev, c)
				}
				continue
			}
			firstCopy[c.seq] = c
		}
		for seq, a := range acceptedAt[r] {
			got := firstCopy[seq]
			if got.sender != a.sender || got.cid != a.cid {
				t.Errorf("%s: seq %d holds %s/%d, but ACCEPTED reported %s/%d", r, seq, got.sender, got.cid, a.sender, a.cid)
			}
		}

		// In seq order, each sender's cids must increase. A cid that was
		// stored twice appears again and counts as a duplicate.
		seqs := make([]uint64, 0, len(firstCopy))
		for seq := range firstCopy {
			seqs = append(seqs, seq)
		}
		slices.Sort(seqs)
		lastCID := make(map[string]uint64)
		for _, seq := range seqs {
			c := firstCopy[seq]
			switch last := lastCID[c.sender]; {
			case c.cid == last:
				duplicates++
			case c.cid < last:
				t.Errorf("%s: seq %d holds cid %d from %s after cid %d", r, seq, c.cid, c.sender, last)
			}
			lastCID[c.sender] = max(lastCID[c.sender], c.cid)
		}
		delivered += len(firstCopy)
	}

	if killsUnderLoad == 0 {
		t.Errorf("no SIGKILL of %d landed while a sender was waiting for answers", rounds)
	}
	t.Logf("crash loop: %d rounds (%d killed under load), %d accepted, %d delivered (unacknowledged sends included), %d duplicates, rejected %v, %v in total",
		rounds, killsUnderLoad, len(load.accepted), delivered, duplicates, load.rejected, time.Since(started).Round(time.Millisecond))
	if elapsed := time.Since(started); elapsed > overallDeadline {
		t.Errorf("crash loop took %v, want under %v", elapsed, overallDeadline)
	}
}
