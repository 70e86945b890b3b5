package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

// Report is the result of one Run.
type Report struct {
	Mode      Mode      `json:"mode"`
	Transport string    `json:"transport"`
	Protocol  int       `json:"protocol"`
	Addrs     []string  `json:"addrs"`
	Conns     int       `json:"conns"`
	Started   time.Time `json:"started"`

	// Setup is the connect and login of every client.
	Setup  ConnectStats `json:"setup"`
	Steady *SteadyStats `json:"steady,omitempty"`
	Idle   *IdleStats   `json:"idle,omitempty"`
	// Errors counts failures by kind, such as "rate_limited",
	// "rejected:inbox_full" or "login_timeout".
	Errors map[string]uint64 `json:"errors"`
}

// ErrDeliveryFault is wrapped by the error of Report.Failed.
var ErrDeliveryFault = errors.New("delivery fault")

// Failed returns an error when a steady run lost or reordered messages. A
// message is lost when, after the drain, it is not delivered and the
// server accepted it: in v2 it got ACCEPTED, and in v1 the sender got no
// RATE_LIMITED or ERROR frame for it. It also returns an error when some
// clients failed to log in, when v2 sends got neither ACCEPTED nor
// REJECTED, and when the server sent frames that fit no message of the run.
func (r *Report) Failed() error {
	var faults []string
	if r.Setup.Failed > 0 {
		faults = append(faults, fmt.Sprintf("%d clients failed to connect and log in", r.Setup.Failed))
	}
	if st := r.Steady; st != nil {
		if st.Lost > 0 {
			faults = append(faults, fmt.Sprintf("%d accepted messages never delivered", st.Lost))
		}
		if st.OutOfOrder > 0 {
			faults = append(faults, fmt.Sprintf("%d messages delivered out of order", st.OutOfOrder))
		}
		if st.Unanswered > 0 {
			faults = append(faults, fmt.Sprintf("%d v2 sends got neither ACCEPTED nor REJECTED", st.Unanswered))
		}
	}
	for _, kind := range slices.Sorted(maps.Keys(r.Errors)) {
		if isProtocolFault(kind) {
			faults = append(faults, fmt.Sprintf("%d times %s", r.Errors[kind], kind))
		}
	}
	if len(faults) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrDeliveryFault, strings.Join(faults, "; "))
}

// isProtocolFault reports whether an error kind means the server broke the
// protocol or a connection during the run. Such kinds are a frame that no
// client of the run expects or can decode, a frame about a message the run
// never sent, and a connection that ended before the run did.
func isProtocolFault(kind string) bool {
	switch kind {
	case "sender_unknown_cid", "foreign_message", "sender_closed", "receiver_closed",
		"send_write_failed", "ack_write_failed":
		return true
	}
	return strings.HasPrefix(kind, "sender_unexpected_frame:") ||
		strings.HasPrefix(kind, "receiver_unexpected_frame:")
}

// Run performs one load run described by cfg and returns its report. It
// returns an error when the run could not be carried out: an invalid
// configuration, an unreachable admin endpoint, clients that failed to log
// in for steady mode, or a cancelled ctx. Report.Failed reports delivery
// faults.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	errs := &errorCounts{}
	rep := &Report{
		Mode:      cfg.Mode,
		Transport: cfg.Transport,
		Protocol:  cfg.Protocol,
		Addrs:     cfg.Addrs,
		Conns:     cfg.Conns,
		Started:   time.Now(),
	}

	var err error
	switch cfg.Mode {
	case ModeSteady:
		rep.Steady, rep.Setup, err = runSteady(ctx, cfg, errs)
	case ModeLoginStorm:
		rep.Setup = runLoginStorm(ctx, cfg, errs)
		err = ctx.Err()
	case ModeIdle:
		rep.Idle, rep.Setup, err = runIdle(ctx, cfg, errs)
	}
	rep.Errors = errs.snapshot()
	return rep, err
}

// WriteText writes the report for people, one figure per line.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }

	line("mode %s, transport %s, protocol v%d, %d connections to %s", r.Mode, r.Transport, r.Protocol, r.Conns, strings.Join(r.Addrs, ","))
	s := r.Setup
	line("connect+login: %d of %d in %.3fs (%.0f/s, %d at once), latency %s",
		s.LoggedIn, s.Clients, s.Seconds, s.PerSecond, s.Concurrency, formatPercentiles(s.Latency))

	if st := r.Steady; st != nil {
		rate := "unpaced"
		if st.Rate > 0 {
			rate = fmt.Sprintf("%.0f msgs/s", st.Rate)
		}
		line("load: %s, %d senders, %d receivers, %d-byte messages, inflight %d, %s, window %.1fs",
			st.Pairing, st.Senders, st.Receivers, st.Size, st.Inflight, rate, st.WindowSeconds)
		if r.Protocol == 2 {
			line("accepted/s: %.0f", st.AcceptedPS)
		}
		line("delivered/s: %.0f", st.DeliveredPS)
		line("latency: %s", formatPercentiles(st.Latency))
		line("cpu cores used: generator %.2f, server %.2f (0 without --admin)", st.GeneratorCores, st.ServerCores)
		line("sent %d, accepted %d, rejected %d, dropped %d, unanswered %d, delivered %d, duplicates %d, stalled %d",
			st.Sent, st.Accepted, st.Rejected, st.Dropped, st.Unanswered, st.Delivered, st.Duplicates, st.Stalled)
		line("out of order: %d", st.OutOfOrder)
		line("accepted but never delivered: %d", st.Lost)
	}
	if id := r.Idle; id != nil {
		line("idle: %d server sessions", id.Sessions)
		line("heap: %d → %d bytes, %.0f bytes per connection", id.BaselineHeapBytes, id.HeapBytes, id.HeapPerConn)
		if id.RSSMissing {
			line("rss: not available (no process_resident_memory_bytes in /metrics)")
		} else {
			line("rss: %d → %d bytes, %.0f bytes per connection", id.BaselineRSSBytes, id.RSSBytes, id.RSSPerConn)
		}
	}

	if len(r.Errors) == 0 {
		line("errors: none")
	} else {
		line("errors:")
		for _, kind := range slices.Sorted(maps.Keys(r.Errors)) {
			line("  %s: %d", kind, r.Errors[kind])
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func formatPercentiles(p Percentiles) string {
	if p.Count == 0 {
		return "no samples"
	}
	return fmt.Sprintf("p50 %.3fms p90 %.3fms p99 %.3fms p99.9 %.3fms max %.3fms (%d samples)",
		p.P50, p.P90, p.P99, p.P999, p.Max, p.Count)
}
