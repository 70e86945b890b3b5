package app

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestLimitedHandlerWritesBurstThenCountsDropped(t *testing.T) {
	var out bytes.Buffer
	h := newLimitedHandler(slog.NewTextHandler(&out, nil), 3, 10*time.Second)
	h.state.after = func(time.Duration, func()) {} // the period-end report has a test of its own
	start := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	log := func(at time.Duration, msg string) {
		if err := h.Handle(context.Background(), slog.NewRecord(start.Add(at), slog.LevelInfo, msg, 0)); err != nil {
			t.Fatal(err)
		}
	}

	for i := range 8 {
		log(time.Duration(i)*time.Millisecond, "login rejected")
	}
	log(9*time.Millisecond, "closing slow consumer")
	if n := strings.Count(out.String(), "login rejected"); n != 3 {
		t.Errorf("8 records within the period wrote %d lines, want the burst of 3:\n%s", n, out.String())
	}
	if !strings.Contains(out.String(), "closing slow consumer") {
		t.Error("another message was dropped with the repeated one")
	}

	out.Reset()
	log(11*time.Second, "login rejected")
	if got := out.String(); !strings.Contains(got, "login rejected") || !strings.Contains(got, "suppressed=5") {
		t.Errorf("first record of the next period = %q, want it written with suppressed=5", got)
	}

	out.Reset()
	log(12*time.Second, "login rejected")
	if strings.Contains(out.String(), "suppressed") {
		t.Errorf("second record of the period = %q, want no suppressed count", out.String())
	}
}

func TestLimitedHandlerSharesCountsAcrossWith(t *testing.T) {
	var out bytes.Buffer
	h := newLimitedHandler(slog.NewTextHandler(&out, nil), 2, time.Minute)
	h.state.after = func(time.Duration, func()) {}
	logger := slog.New(h)
	for i := range 5 {
		logger.With("conn", i).WithGroup("g").Info("bad frame")
	}
	if n := strings.Count(out.String(), "bad frame"); n != 2 {
		t.Errorf("5 records from derived loggers wrote %d lines, want 2", n)
	}
}

func TestLimitedHandlerReportsDropsWhenPeriodEnds(t *testing.T) {
	var out bytes.Buffer
	h := newLimitedHandler(slog.NewTextHandler(&out, nil), 2, 10*time.Second)
	var timers []func()
	var delays []time.Duration
	h.state.after = func(d time.Duration, f func()) {
		delays = append(delays, d)
		timers = append(timers, f)
	}
	start := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	for i := range 6 {
		r := slog.NewRecord(start.Add(time.Duration(i)*time.Second), slog.LevelWarn, "group change failed", 0)
		r.AddAttrs(slog.Int("attempt", i))
		if err := h.Handle(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	if len(timers) != 1 {
		t.Fatalf("%d reports scheduled for one period with drops, want 1", len(timers))
	}
	if delays[0] != 8*time.Second {
		t.Errorf("report scheduled after %v, want 8s: the end of the period that began with the first record", delays[0])
	}

	out.Reset()
	timers[0]()
	got := out.String()
	if !strings.Contains(got, "group change failed") || !strings.Contains(got, "suppressed=4") || !strings.Contains(got, "attempt=2") {
		t.Errorf("report at the end of the period = %q, want the first dropped record (attempt=2) with suppressed=4", got)
	}

	// The drops are reported once: the next record does not repeat them.
	out.Reset()
	if err := h.Handle(context.Background(), slog.NewRecord(start.Add(11*time.Second), slog.LevelWarn, "group change failed", 0)); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "suppressed") {
		t.Errorf("record after the report = %q, want no suppressed count", out.String())
	}
}
