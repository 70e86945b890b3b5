package main

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/iris-im/iris/config"
)

// newLogger returns a logger that writes records at cfg.Level and above to
// w, as key=value text lines or, when cfg.Format is json, as one JSON object
// per line.
func newLogger(cfg config.Log, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.Level)); err != nil {
		return nil, fmt.Errorf("log.level: invalid value %q: expected debug, info, warn or error", cfg.Level)
	}
	options := &slog.HandlerOptions{Level: level}

	switch cfg.Format {
	case "text":
		return slog.New(slog.NewTextHandler(w, options)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, options)), nil
	default:
		return nil, fmt.Errorf("log.format: invalid value %q: expected text or json", cfg.Format)
	}
}
