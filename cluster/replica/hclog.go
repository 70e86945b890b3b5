package replica

import (
	"context"
	"io"
	"log"
	"log/slog"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// hclogAdapter routes hashicorp/raft's logs, written to an hclog.Logger, into slog. Raft's
// Trace and Debug lines become slog Debug; the other levels map one to one. hclog levels set
// with SetLevel are ignored because the slog handler filters.
type hclogAdapter struct {
	logger *slog.Logger
	name   string
	args   []any
}

func newHCLogAdapter(logger *slog.Logger, name string) hclog.Logger {
	return &hclogAdapter{logger: logger, name: name}
}

func slogLevel(level hclog.Level) slog.Level {
	switch level {
	case hclog.Trace, hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

func (a *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.Off {
		return
	}
	a.log(slogLevel(level), msg, args)
}

func (a *hclogAdapter) log(level slog.Level, msg string, args []any) {
	ctx := context.Background()
	if !a.logger.Enabled(ctx, level) {
		return
	}
	all := make([]any, 0, len(a.args)+len(args))
	all = append(all, a.args...)
	all = append(all, args...)
	a.logger.Log(ctx, level, a.name+": "+msg, all...)
}

func (a *hclogAdapter) Trace(msg string, args ...any) { a.log(slog.LevelDebug, msg, args) }
func (a *hclogAdapter) Debug(msg string, args ...any) { a.log(slog.LevelDebug, msg, args) }
func (a *hclogAdapter) Info(msg string, args ...any)  { a.log(slog.LevelInfo, msg, args) }
func (a *hclogAdapter) Warn(msg string, args ...any)  { a.log(slog.LevelWarn, msg, args) }
func (a *hclogAdapter) Error(msg string, args ...any) { a.log(slog.LevelError, msg, args) }

func (a *hclogAdapter) enabled(level slog.Level) bool {
	return a.logger.Enabled(context.Background(), level)
}

func (a *hclogAdapter) IsTrace() bool { return a.enabled(slog.LevelDebug) }
func (a *hclogAdapter) IsDebug() bool { return a.enabled(slog.LevelDebug) }
func (a *hclogAdapter) IsInfo() bool  { return a.enabled(slog.LevelInfo) }
func (a *hclogAdapter) IsWarn() bool  { return a.enabled(slog.LevelWarn) }
func (a *hclogAdapter) IsError() bool { return a.enabled(slog.LevelError) }

func (a *hclogAdapter) ImpliedArgs() []any { return a.args }

func (a *hclogAdapter) With(args ...any) hclog.Logger {
	merged := make([]any, 0, len(a.args)+len(args))
	merged = append(merged, a.args...)
	merged = append(merged, args...)
	return &hclogAdapter{logger: a.logger, name: a.name, args: merged}
}

func (a *hclogAdapter) Name() string { return a.name }

func (a *hclogAdapter) Named(name string) hclog.Logger {
	full := name
	if a.name != "" {
		full = a.name + "." + name
	}
	return &hclogAdapter{logger: a.logger, name: full, args: a.args}
}

func (a *hclogAdapter) ResetNamed(name string) hclog.Logger {
	return &hclogAdapter{logger: a.logger, name: name, args: a.args}
}

func (a *hclogAdapter) SetLevel(hclog.Level) {}

func (a *hclogAdapter) GetLevel() hclog.Level {
	switch {
	case a.enabled(slog.LevelDebug):
		return hclog.Debug
	case a.enabled(slog.LevelInfo):
		return hclog.Info
	case a.enabled(slog.LevelWarn):
		return hclog.Warn
	default:
		return hclog.Error
	}
}

func (a *hclogAdapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(a.StandardWriter(opts), "", 0)
}

func (a *hclogAdapter) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return lineWriter{adapter: a}
}

// lineWriter logs each Write, one line of the standard library logger, at Info.
type lineWriter struct {
	adapter *hclogAdapter
}

func (w lineWriter) Write(p []byte) (int, error) {
	w.adapter.log(slog.LevelInfo, strings.TrimRight(string(p), "\n"), nil)
	return len(p), nil
}
