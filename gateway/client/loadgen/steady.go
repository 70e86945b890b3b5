package loadgen

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/iris-im/iris/gateway/client"
)

// SteadyStats are the figures of a steady run. Rates and latency cover the
// measurement window, the part of the run after the warm-up. Counts cover
// the whole run.
type SteadyStats struct {
	Pairing   Pairing `json:"pairing"`
	Senders   int     `json:"senders"`
	Receivers int     `json:"receivers"`
	Size      int     `json:"size_bytes"`
	Rate      float64 `json:"rate"` // requested msgs/s, 0 = unpaced
	Inflight  int     `json:"inflight"`
	// WindowSeconds is the length of the measurement window.
	WindowSeconds float64 `json:"window_seconds"`

	Sent        uint64  `json:"sent"`
	Accepted    uint64  `json:"accepted"`     // v2 ACCEPTED frames
	Rejected    uint64  `json:"rejected"`     // v2 REJECTED frames
	Dropped     uint64  `json:"dropped"`      // v1 sends answered with RATE_LIMITED or ERROR
	Unanswered  uint64  `json:"unanswered"`   // v2 sends with neither ACCEPTED nor REJECTED after the drain
	Delivered   uint64  `json:"delivered"`    // distinct messages delivered
	Duplicates  uint64  `json:"duplicates"`   // deliveries of a message already delivered
	OutOfOrder  uint64  `json:"out_of_order"` // first deliveries older than one already seen from that sender
	Stalled     uint64  `json:"stalled"`      // window slots freed by StallTimeout
	Lost        uint64  `json:"lost"`         // see Report.Failed
	AcceptedPS  float64 `json:"accepted_per_second"`
	DeliveredPS float64 `json:"delivered_per_second"`
	// GeneratorCores and ServerCores are the CPU time used during the window
	// divided by its length, by this process and by the server. The server's
	// figure comes from process_cpu_seconds_total of its /metrics and is 0
	// without Config.Admin. Both share one machine when the server runs on
	// loopback, so their sum shows how much of it the run used.
	GeneratorCores float64 `json:"generator_cores"`
	ServerCores    float64 `json:"server_cores,omitempty"`
	// Latency runs from the scheduled send time (with a rate) or the actual
	// send time (unpaced) to the receiver's read of the delivery.
	Latency Percentiles `json:"latency"`
}

// steadySender is one sending connection and the fate of every message it
// sent. Its sequence numbers start at 1; in v2 the SEND2 cid equals the seq.
type steadySender struct {
	index     int
	conn      *client.Conn
	receivers []int // indexes of the receivers it sends to

	mu          sync.Mutex
	outstanding map[uint64]time.Duration // seq → send time, until delivered or answered with a failure
	sent        uint64
	accepted    bitset
	rejected    bitset
	delivered   bitset
	dropped     uint64
	stalled     uint64
	wake        chan struct{} // a window slot was freed
}

func (s *steadySender) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// sentSeq reports whether seq is one that s has sent. Numbers from the
// server are checked with it before they mark a bitset, whose size grows
// with the number.
func (s *steadySender) sentSeq(seq uint64) bool {
	return seq >= 1 && seq <= s.sent
}

// markDelivered records the first delivery of seq and reports whether it
// was the first. The caller has checked seq with sentSeq.
func (s *steadySender) markDelivered(seq uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.outstanding, seq)
	first := s.delivered.set(seq)
	s.signal()
	return first
}

// dropOldest frees the oldest outstanding message, for a v1 failure frame
// that does not say which send it answers.
func (s *steadySender) dropOldest() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropped++
	oldest := uint64(0)
	for seq := range s.outstanding {
		if oldest == 0 || seq < oldest {
			oldest = seq
		}
	}
	if oldest != 0 {
		delete(s.outstanding, oldest)
	}
	s.signal()
}

// settled reports whether every message sent has been delivered or has
// failed for a reason the server gave.
func (s *steadySender) settled(protocol int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if protocol == 2 {
		return s.delivered.count+s.rejected.count >= s.sent && s.accepted.count+s.rejected.count >= s.sent
	}
	return s.delivered.count+s.dropped >= s.sent
}

// readerTally is what one reader goroutine, of a receiver or a sender,
// counts. Only that goroutine writes it until the run ends.
type readerTally struct {
	latency     *Histogram
	inWindow    uint64
	duplicates  uint64
	outOfOrder  uint64
	lastSeq     []uint64 // per sender index
	acceptedWin uint64   // for a sender's reader: ACCEPTED frames in the window
}

// steadyRun is the state shared by the goroutines of one steady run.
type steadyRun struct {
	cfg     Config
	origin  time.Time
	window  [2]time.Duration // measurement window since origin: [start, end)
	senders []*steadySender
	recv    []*client.Conn
	errors  *errorCounts
}

func (r *steadyRun) now() time.Duration { return time.Since(r.origin) }

func (r *steadyRun) inWindow(t time.Duration) bool { return t >= r.window[0] && t < r.window[1] }

// runSteady connects the clients, sends for cfg.Duration, drains, and
// returns the figures.
func runSteady(ctx context.Context, cfg Config, errs *errorCounts) (*SteadyStats, ConnectStats, error) {
	nSenders, nReceivers := cfg.roles()
	runID := newRunID()
	users := make([]string, 0, nSenders+nReceivers)
	for i := range nSenders {
		users = append(users, fmt.Sprintf("%s-%s-s%d", cfg.UserPrefix, runID, i))
	}
	for i := range nReceivers {
		users = append(users, fmt.Sprintf("%s-%s-r%d", cfg.UserPrefix, runID, i))
	}

	d := &dialer{cfg: cfg, frameBuffer: 256, errors: errs}
	conns, setup := d.connectAll(ctx, users)
	defer closeAll(conns)
	if setup.Failed > 0 {
		return nil, setup, fmt.Errorf("%d of %d clients failed to connect and log in (see the errors)", setup.Failed, len(users))
	}
	if err := ctx.Err(); err != nil {
		return nil, setup, err
	}

	r := &steadyRun{cfg: cfg, recv: conns[nSenders:], errors: errs}
	for i := range nSenders {
		s := &steadySender{index: i, conn: conns[i], outstanding: make(map[uint64]time.Duration), wake: make(chan struct{}, 1)}
		switch cfg.Pairing {
		case PairingPairs:
			s.receivers = []int{i}
		case PairingFanIn:
			s.receivers = []int{0}
		case PairingRandom:
			s.receivers = make([]int, nReceivers)
			for j := range s.receivers {
				s.receivers[j] = j
			}
		}
		r.senders = append(r.senders, s)
	}
	st, err := r.run(ctx, users[nSenders:])
	return st, setup, err
}

func (r *steadyRun) run(ctx context.Context, receiverUsers []string) (*SteadyStats, error) {
	cfg := r.cfg
	readCtx, stopReading := context.WithCancel(ctx)
	defer stopReading()

	r.origin = time.Now()
	r.window = [2]time.Duration{cfg.Warmup, cfg.Duration}

	var readers sync.WaitGroup
	tallies := make([]*readerTally, len(r.recv))
	for i, c := range r.recv {
		tallies[i] = &readerTally{latency: NewHistogram(), lastSeq: make([]uint64, len(r.senders))}
		readers.Go(func() { r.receive(readCtx, c, tallies[i]) })
	}
	senderTallies := make([]*readerTally, len(r.senders))
	for i, s := range r.senders {
		senderTallies[i] = &readerTally{}
		readers.Go(func() { r.readSenderReplies(readCtx, s, senderTallies[i]) })
	}

	var senders sync.WaitGroup
	for _, s := range r.senders {
		senders.Go(func() { r.send(ctx, s, receiverUsers) })
	}
	var cpu cpuWindow
	senders.Go(func() { cpu = r.measureCPU(ctx) })
	senders.Wait()
	r.drain(ctx)
	stopReading()
	readers.Wait()

	st := r.collect(tallies, senderTallies)
	if st.WindowSeconds > 0 {
		st.GeneratorCores = cpu.generator.Seconds() / st.WindowSeconds
		st.ServerCores = cpu.server / st.WindowSeconds
	}
	return st, ctx.Err()
}

// cpuWindow is the CPU time used during the measurement window.
type cpuWindow struct {
	generator time.Duration
	server    float64 // seconds
}

// measureCPU reads this process's CPU time, and the server's when an admin
// address is set, at both ends of the window.
func (r *steadyRun) measureCPU(ctx context.Context) cpuWindow {
	var admin *adminReader
	if r.cfg.Admin != "" {
		admin = &adminReader{base: "http://" + r.cfg.Admin, http: &http.Client{Timeout: 2 * time.Second}}
	}
	read := func() (time.Duration, float64) {
		var server float64
		if admin != nil {
			v, ok, err := admin.metric(ctx, "process_cpu_seconds_total")
			if err != nil || !ok {
				r.errors.add("admin_cpu_unavailable")
			}
			server = v
		}
		return processCPU(), server
	}

	if !r.sleepUntil(ctx, r.window[0]) {
		return cpuWindow{}
	}
	gen0, srv0 := read()
	timer := time.NewTimer(r.window[1] - r.now())
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-ctx.Done():
		return cpuWindow{}
	}
	gen1, srv1 := read()
	return cpuWindow{generator: gen1 - gen0, server: srv1 - srv0}
}

// send runs one sender until the end of the run.
func (r *steadyRun) send(ctx context.Context, s *steadySender, receiverUsers []string) {
	cfg := r.cfg
	var interval time.Duration
	if cfg.Rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(len(r.senders)) / cfg.Rate)
	}
	// Senders start at staggered offsets within one interval, so a paced
	// load does not arrive in bursts of one message per sender.
	scheduled := time.Duration(0)
	if interval > 0 {
		scheduled = interval * time.Duration(s.index) / time.Duration(len(r.senders))
	}
	rng := rand.New(rand.NewPCG(uint64(s.index), 0x1415))
	body := make([]byte, 0, cfg.Size)
	stallCheck := time.NewTicker(max(cfg.StallTimeout/10, 10*time.Millisecond))
	defer stallCheck.Stop()

	for {
		if interval > 0 {
			if !r.sleepUntil(ctx, scheduled) {
				return
			}
		}
		if !r.waitForSlot(ctx, s, stallCheck.C) {
			return
		}
		sentAt := r.now()
		if interval > 0 {
			sentAt = scheduled
			scheduled += interval
		}
		if sentAt >= cfg.Duration || ctx.Err() != nil {
			return
		}

		s.mu.Lock()
		s.sent++
		seq := s.sent
		s.outstanding[seq] = sentAt
		s.mu.Unlock()

		target := s.receivers[0]
		if len(s.receivers) > 1 {
			target = s.receivers[rng.IntN(len(s.receivers))]
		}
		body = appendPayload(body, cfg.Size, payload{sender: s.index, seq: seq, sentAt: sentAt})
		var err error
		if cfg.Protocol == 2 {
			err = s.conn.Send2(seq, receiverUsers[target], body)
		} else {
			err = s.conn.Send(receiverUsers[target], body)
		}
		if err != nil {
			r.errors.add("send_write_failed")
			return
		}
	}
}

// sleepUntil waits until the run's clock reaches t, or returns false when
// the run ends first.
func (r *steadyRun) sleepUntil(ctx context.Context, t time.Duration) bool {
	if t >= r.cfg.Duration {
		return false
	}
	wait := t - r.now()
	if wait <= 0 {
		return true
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// waitForSlot waits until s has fewer than Inflight messages outstanding,
// freeing the slots of messages outstanding longer than StallTimeout. It
// returns false when the run ends first.
func (r *steadyRun) waitForSlot(ctx context.Context, s *steadySender, stallCheck <-chan time.Time) bool {
	for {
		now := r.now()
		if now >= r.cfg.Duration {
			return false
		}
		s.mu.Lock()
		for seq, sentAt := range s.outstanding {
			if now-sentAt > r.cfg.StallTimeout {
				delete(s.outstanding, seq)
				s.stalled++
			}
		}
		free := len(s.outstanding) < r.cfg.Inflight
		s.mu.Unlock()
		if free {
			return true
		}

		select {
		case <-s.wake:
		case <-stallCheck:
		case <-ctx.Done():
			return false
		}
	}
}

// receive reads the deliveries of one receiver, acknowledges each, and
// checks its order and latency.
func (r *steadyRun) receive(ctx context.Context, c *client.Conn, t *readerTally) {
	for {
		f, err := c.Next(ctx)
		if err != nil {
			if ctx.Err() == nil {
				r.errors.add("receiver_closed")
			}
			return
		}

		var body []byte
		switch f.Op {
		case client.OpReliable:
			body = f.Msg
			err = c.Ack(f.ID)
		case client.OpDeliver:
			body = f.Msg
			err = c.Ack2(f.Seq)
		case client.OpError:
			r.errors.add("receiver_error:" + f.Reason)
			continue
		default:
			r.errors.add("receiver_unexpected_frame:" + f.Op.String())
			continue
		}
		if err != nil {
			r.errors.add("ack_write_failed")
		}
		r.record(body, t)
	}
}

// record accounts for one delivered body.
func (r *steadyRun) record(body []byte, t *readerTally) {
	now := r.now()
	p, err := parsePayload(body)
	if err != nil || p.sender >= len(r.senders) {
		r.errors.add("foreign_message")
		return
	}
	s := r.senders[p.sender]
	s.mu.Lock()
	sent := s.sentSeq(p.seq)
	s.mu.Unlock()
	if !sent {
		r.errors.add("foreign_message")
		return
	}
	if !s.markDelivered(p.seq) {
		t.duplicates++
		return
	}
	if p.seq < t.lastSeq[p.sender] {
		t.outOfOrder++
	} else {
		t.lastSeq[p.sender] = p.seq
	}
	if r.inWindow(p.sentAt) {
		t.latency.Record(now - p.sentAt)
	}
	if r.inWindow(now) {
		t.inWindow++
	}
}

// readSenderReplies reads what the server answers a sender: ACCEPTED and
// REJECTED in v2, RATE_LIMITED and ERROR in v1.
func (r *steadyRun) readSenderReplies(ctx context.Context, s *steadySender, t *readerTally) {
	for {
		f, err := s.conn.Next(ctx)
		if err != nil {
			if ctx.Err() == nil {
				r.errors.add("sender_closed")
			}
			return
		}

		switch f.Op {
		case client.OpAccepted:
			s.mu.Lock()
			known := s.sentSeq(f.CID)
			if known {
				s.accepted.set(f.CID)
			}
			s.mu.Unlock()
			if !known {
				r.errors.add("sender_unknown_cid")
				continue
			}
			if r.inWindow(r.now()) {
				t.acceptedWin++
			}
		case client.OpRejected:
			s.mu.Lock()
			known := s.sentSeq(f.CID)
			if known {
				s.rejected.set(f.CID)
				delete(s.outstanding, f.CID)
				s.signal()
			}
			s.mu.Unlock()
			if !known {
				r.errors.add("sender_unknown_cid")
				continue
			}
			r.errors.add("rejected:" + f.Reason)
		case client.OpRateLimited:
			r.errors.add("rate_limited")
			s.dropOldest()
		case client.OpError:
			r.errors.add("sender_error:" + f.Reason)
			if r.cfg.Protocol == 1 {
				s.dropOldest()
			}
		default:
			r.errors.add("sender_unexpected_frame:" + f.Op.String())
		}
	}
}

// drain waits up to Drain for every sender to settle.
func (r *steadyRun) drain(ctx context.Context) {
	deadline := time.Now().Add(r.cfg.Drain)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		all := true
		for _, s := range r.senders {
			if !s.settled(r.cfg.Protocol) {
				all = false
				break
			}
		}
		if all {
			return
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
}

// collect sums the tallies into the run's figures.
func (r *steadyRun) collect(receivers, senderReaders []*readerTally) *SteadyStats {
	cfg := r.cfg
	st := &SteadyStats{
		Pairing:       cfg.Pairing,
		Senders:       len(r.senders),
		Receivers:     len(r.recv),
		Size:          cfg.Size,
		Rate:          cfg.Rate,
		Inflight:      cfg.Inflight,
		WindowSeconds: (r.window[1] - r.window[0]).Seconds(),
	}
	latency := NewHistogram()
	var deliveredWin, acceptedWin uint64
	for _, t := range receivers {
		latency.Merge(t.latency)
		deliveredWin += t.inWindow
		st.Duplicates += t.duplicates
		st.OutOfOrder += t.outOfOrder
	}
	for _, t := range senderReaders {
		acceptedWin += t.acceptedWin
	}

	for _, s := range r.senders {
		s.mu.Lock()
		st.Sent += s.sent
		st.Accepted += s.accepted.count
		st.Rejected += s.rejected.count
		st.Delivered += s.delivered.count
		st.Dropped += s.dropped
		st.Stalled += s.stalled
		if cfg.Protocol == 2 {
			for seq := uint64(1); seq <= s.sent; seq++ {
				accepted, delivered := s.accepted.has(seq), s.delivered.has(seq)
				if accepted && !delivered {
					st.Lost++
				}
				if !accepted && !s.rejected.has(seq) {
					st.Unanswered++
				}
			}
		} else if undelivered := s.sent - min(s.sent, s.delivered.count+s.dropped); undelivered > 0 {
			st.Lost += undelivered
		}
		s.mu.Unlock()
	}

	st.Latency = latency.Summary()
	if st.WindowSeconds > 0 {
		st.DeliveredPS = float64(deliveredWin) / st.WindowSeconds
		st.AcceptedPS = float64(acceptedWin) / st.WindowSeconds
	}
	return st
}
