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
	logger := slog.New(newLimitedHandler(slog.NewTextHandler(&out, nil), 2, time.Minute))
	for i := range 5 {
		logger.With("conn", i).WithGroup("g").Info("bad frame")
	}
	if n := strings.Count(out.String(), "bad frame"); n != 2 {
		t.Errorf("5 records from derived loggers wrote %d lines, want 2", n)
	}
}
