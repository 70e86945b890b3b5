package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iris-im/iris/gateway/client"
)

// loadPair is one v2 sender and its recipient under a steady send load. The
// sender sends SEND2 at a fixed rate without waiting for replies; readers
// record every ACCEPTED, REJECTED and delivery with their times.
type loadPair struct {
	sender, target string
	from, to       *client.Conn

	mu        sync.Mutex
	nextCID   uint64
	accepted  map[uint64]time.Time // cid → time of its ACCEPTED
	rejected  map[string]int       // reason → count
	delivered []uint64             // cids in delivery order, duplicates included
}

// steadyLoad runs pairs until stop is called.
type steadyLoad struct {
	pairs []*loadPair
	stop  chan struct{}
	wg    sync.WaitGroup
}

// startSteadyLoad logs in n pairs, senders on edge from and recipients on
// edge to, and starts each sender at one message per interval.
func startSteadyLoad(t *testing.T, ctx context.Context, from, to *clusterNode, prefix string, n int, interval time.Duration) *steadyLoad {
	t.Helper()
	l := &steadyLoad{stop: make(chan struct{})}
	for i := range n {
		p := &loadPair{
			sender:   fmt.Sprintf("%s-sender-%d", prefix, i),
			target:   fmt.Sprintf("%s-recipient-%d", prefix, i),
			accepted: make(map[uint64]time.Time),
			rejected: make(map[string]int),
		}
		p.to = to.login2(t, tcp, p.target)
		p.from = from.login2(t, tcp, p.sender)
		l.pairs = append(l.pairs, p)
	}
	for _, p := range l.pairs {
		l.wg.Go(func() { p.send(l.stop, interval) })
		go p.readReplies(ctx)
		go p.readDeliveries(ctx)
	}
	return l
}

// stopSending stops the senders; the readers keep reading.
func (l *steadyLoad) stopSending() {
	close(l.stop)
	l.wg.Wait()
}

func (p *loadPair) send(stop <-chan struct{}, interval time.Duration) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-stop:
			return
		case <-ticker.C:
		}
		p.mu.Lock()
		p.nextCID++
		cid := p.nextCID
		p.mu.Unlock()
		if err := p.from.Send2(cid, p.target, []byte(strconv.FormatUint(cid, 10))); err != nil {
			return
		}
	}
}

func (p *loadPair) readReplies(ctx context.Context) {
	for {
		f, err := p.from.Next(ctx)
		if err != nil {
			return
		}
		p.mu.Lock()
		switch f.Op {
		case client.OpAccepted:
			if _, dup := p.accepted[f.CID]; !dup {
				p.accepted[f.CID] = time.Now()
			}
		case client.OpRejected:
			p.rejected[f.Reason]++
		}
		p.mu.Unlock()
	}
}

func (p *loadPair) readDeliveries(ctx context.Context) {
	for {
		f, err := p.to.Next(ctx)
		if err != nil {
			return
		}
		if f.Op != client.OpDeliver {
			continue
		}
		cid, err := strconv.ParseUint(string(f.Msg), 10, 64)
		if err != nil {
			continue
		}
		p.mu.Lock()
		p.delivered = append(p.delivered, cid)
		p.mu.Unlock()
		_ = p.to.Ack2(f.Seq)
	}
}

// missing returns the accepted cids not delivered yet.
func (p *loadPair) missing() []uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	got := make(map[uint64]bool, len(p.delivered))
	for _, cid := range p.delivered {
		got[cid] = true
	}
	var out []uint64
	for cid := range p.accepted {
		if !got[cid] {
			out = append(out, cid)
		}
	}
	slices.Sort(out)
	return out
}

// loadReport sums up a run of a steady load.
type loadReport struct {
	accepted, delivered, duplicates int
	rejected                        map[string]int
	missing                         map[string][]uint64 // pair → accepted cids never delivered
	outOfOrder                      []string            // one line per cid delivered before an earlier one
	maxGap                          time.Duration       // longest wait between two ACCEPTED of one sender, after since
	maxGapPair                      string
}

// waitDelivered waits up to timeout for every accepted message to be
// delivered, then checks order and measures the gaps in acceptance after
// since.
func (l *steadyLoad) waitDelivered(timeout time.Duration, since time.Time) loadReport {
	eventually(timeout, func() bool {
		for _, p := range l.pairs {
			if len(p.missing()) > 0 {
				return false
			}
		}
		return true
	})
	r := loadReport{rejected: make(map[string]int), missing: make(map[string][]uint64)}
	for _, p := range l.pairs {
		if m := p.missing(); len(m) > 0 {
			r.missing[p.sender] = m
		}
		p.mu.Lock()
		r.accepted += len(p.accepted)
		for reason, n := range p.rejected {
			r.rejected[reason] += n
		}
		seen := make(map[uint64]bool)
		var last uint64
		for _, cid := range p.delivered {
			if seen[cid] {
				r.duplicates++
				continue
			}
			seen[cid] = true
			r.delivered++
			if cid < last {
				r.outOfOrder = append(r.outOfOrder, fmt.Sprintf("%s: cid %d after %d", p.sender, cid, last))
			}
			last = cid
		}
		type accept struct {
			cid uint64
			at  time.Time
		}
		var accepts []accept
		for cid, at := range p.accepted {
			accepts = append(accepts, accept{cid, at})
		}
		p.mu.Unlock()

		slices.SortFunc(accepts, func(a, b accept) int { return a.at.Compare(b.at) })
		prev := since
		for _, a := range accepts {
			if a.at.Before(since) {
				continue
			}
			if gap := a.at.Sub(prev); gap > r.maxGap {
				r.maxGap = gap
				r.maxGapPair = fmt.Sprintf("%s, until cid %d at %s", p.sender, a.cid, a.at.Format("15:04:05.000"))
			}
			prev = a.at
		}
	}
	return r
}

func (r loadReport) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "accepted %d, delivered %d (+%d duplicates), rejected %v, longest pause in acceptance %s (%s)",
		r.accepted, r.delivered, r.duplicates, r.rejected, r.maxGap.Round(time.Millisecond), r.maxGapPair)
	return b.String()
}

// check fails t when an accepted message was lost or delivered out of order.
func (r loadReport) check(t *testing.T) {
	t.Helper()
	for sender, cids := range r.missing {
		t.Errorf("%s: %d accepted messages never delivered, first cids %v", sender, len(cids), cids[:min(10, len(cids))])
	}
	for _, line := range r.outOfOrder[:min(10, len(r.outOfOrder))] {
		t.Errorf("delivered out of order: %s", line)
	}
	if r.accepted == 0 {
		t.Error("no message was accepted")
	}
}
