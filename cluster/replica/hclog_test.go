package replica

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

func TestRepeatedRaftErrorsLoggedOnce(t *testing.T) {
	var out bytes.Buffer
	logger := newHCLogAdapter(slog.New(slog.NewTextHandler(&out, nil)), "raft")
	for range 5 {
		logger.Error("failed to heartbeat to", "peer", "10.0.0.2:7400")
		logger.Named("transport").Error("failed to heartbeat to", "peer", "10.0.0.2:7400")
	}
	for range 3 {
		logger.Info("entering follower state")
	}

	text := out.String()
	if n := strings.Count(text, `msg="raft: failed to heartbeat to"`); n != 1 {
		t.Errorf("raft error written %d times, want once:\n%s", n, text)
	}
	if n := strings.Count(text, `msg="raft.transport: failed to heartbeat to"`); n != 1 {
		t.Errorf("named logger's error written %d times, want once:\n%s", n, text)
	}
	if n := strings.Count(text, "entering follower state"); n != 3 {
		t.Errorf("info line written %d times, want 3: info lines are not limited", n)
	}
}

func TestRepeatLimiterReportsSkippedLines(t *testing.T) {
	l := &repeatLimiter{last: make(map[string]*repeatState)}
	start := time.Unix(1000, 0)
	if ok, _ := l.allow("m", start); !ok {
		t.Fatal("first line not allowed")
	}
	for i := range 4 {
		if ok, _ := l.allow("m", start.Add(time.Duration(i+1)*time.Second)); ok {
			t.Fatalf("repeat %d within %s allowed", i+1, repeatEvery)
		}
	}
	ok, skipped := l.allow("m", start.Add(repeatEvery+time.Second))
	if !ok {
		t.Fatalf("line after %s not allowed", repeatEvery)
	}
	if skipped != 4 {
		t.Errorf("skipped = %d, want 4", skipped)
	}
	if ok, _ := l.allow("other", start.Add(time.Second)); !ok {
		t.Error("another message was limited by the first one's repeats")
	}
}

func TestRaftFormatArgumentsFormatted(t *testing.T) {
	var out bytes.Buffer
	logger := newHCLogAdapter(slog.New(slog.NewTextHandler(&out, nil)), "raft")
	logger.Info("initial configuration", "index", 1, "servers", hclog.Fmt("%+v", []string{"core1", "core2"}))
	if text := out.String(); !strings.Contains(text, `servers="[core1 core2]"`) {
		t.Errorf("hclog.Fmt argument not formatted: %s", text)
	}
}
