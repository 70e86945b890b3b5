package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/iris-im/iris/config"
)

func TestLoggerText(t *testing.T) {
	var out strings.Builder
	logger, err := newLogger(config.Log{Level: "info", Format: "text"}, &out)
	if err != nil {
		t.Fatal(err)
	}
	logger.Debug("hidden")
	logger.Info("shown", "user", "alice")

	text := out.String()
	if strings.Contains(text, "hidden") {
		t.Errorf("debug record written at level info:\n%s", text)
	}
	if !strings.Contains(text, "level=INFO") || !strings.Contains(text, "msg=shown") || !strings.Contains(text, "user=alice") {
		t.Errorf("text record missing fields:\n%s", text)
	}
}

func TestLoggerJSON(t *testing.T) {
	var out strings.Builder
	logger, err := newLogger(config.Log{Level: "warn", Format: "json"}, &out)
	if err != nil {
		t.Fatal(err)
	}
	logger.Info("hidden")
	logger.Warn("shown", "shard", 17)

	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("got %d lines, want 1:\n%s", len(lines), out.String())
	}
	var record map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &record); err != nil {
		t.Fatalf("line %q is not JSON: %v", lines[0], err)
	}
	if record["level"] != "WARN" || record["msg"] != "shown" || record["shard"] != float64(17) {
		t.Errorf("record = %v, want level WARN, msg shown, shard 17", record)
	}
}

func TestLoggerDebugLevel(t *testing.T) {
	var out strings.Builder
	logger, err := newLogger(config.Log{Level: "debug", Format: "text"}, &out)
	if err != nil {
		t.Fatal(err)
	}
	logger.Debug("detail")
	if !strings.Contains(out.String(), "level=DEBUG") {
		t.Errorf("debug record missing at level debug:\n%s", out.String())
	}
}

func TestLoggerRejectsBadSettings(t *testing.T) {
	cases := []struct {
		cfg  config.Log
		want string
	}{
		{config.Log{Level: "loud", Format: "text"}, "log.level"},
		{config.Log{Level: "info", Format: "xml"}, "log.format"},
	}
	for _, c := range cases {
		_, err := newLogger(c.cfg, &strings.Builder{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("newLogger(%+v) error = %v, want one naming %s", c.cfg, err, c.want)
		}
	}
}
