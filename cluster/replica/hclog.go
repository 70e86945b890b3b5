package replica

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// hclogAdapter routes hashicorp/raft's logs, written to an hclog.Logger, into slog. Raft's
// Trace and Debug lines become slog Debug; the other levels map one to one. hclog levels set
// with SetLevel are ignored because the slog handler filters.
//
// Warnings and errors repeat at raft's retry rate while a peer is down, several lines a
// second, so each distinct message is written at most once per repeatEvery. The line that
// follows a quiet period carries the number of lines left out.
type hclogAdapter struct {
	logger *slog.Logger
	name   string
	args   []any
	limit  *repeatLimiter // shared by the loggers made with With and Named
}

func newHCLogAdapter(logger *slog.Logger, name string) hclog.Logger {
	return &hclogAdapter{logger: logger, name: name, limit: &repeatLimiter{last: make(map[string]*repeatState)}}
}

// repeatEvery is how often one warning or error message of raft is written at most.
const repeatEvery = 10 * time.Second

// repeatLimiter counts the warnings and errors written per message.
type repeatLimiter struct {
	mu   sync.Mutex
	last map[string]*repeatState
}

type repeatState struct {
	at      time.Time
	skipped int
}

// allow reports whether msg may be written now, and how many lines of it were left out
// since it was last written.
func (l *repeatLimiter) allow(msg string, now time.Time) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.last[msg]
	if st == nil {
		if len(l.last) > 1024 { // raft's messages are fixed strings; this only bounds surprises
			clear(l.last)
		}
		l.last[msg] = &repeatState{at: now}
		return true, 0
	}
	if now.Sub(st.at) < repeatEvery {
		st.skipped++
		return false, 0
	}
	skipped := st.skipped
	st.at, st.skipped = now, 0
	return true, skipped
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
	text := a.name + ": " + msg
	skipped := 0
	if level >= slog.LevelWarn {
		ok, n := a.limit.allow(text, time.Now())
		if !ok {
			return
		}
		skipped = n
	}
	all := make([]any, 0, len(a.args)+len(args)+2)
	all = append(all, a.args...)
	for _, arg := range args {
		// Raft passes some values as hclog.Fmt, a format and its operands
		// that hclog would format; slog would print the slice as it is.
		if f, ok := arg.(hclog.Format); ok && len(f) > 0 {
			if format, ok := f[0].(string); ok {
				arg = fmt.Sprintf(format, f[1:]...)
			}
		}
		all = append(all, arg)
	}
	if skipped > 0 {
		all = append(all, "repeats_not_logged", skipped)
	}
	a.logger.Log(ctx, level, text, all...)
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
	return &hclogAdapter{logger: a.logger, name: a.name, args: merged, limit: a.limit}
}

func (a *hclogAdapter) Name() string { return a.name }

func (a *hclogAdapter) Named(name string) hclog.Logger {
	full := name
	if a.name != "" {
		full = a.name + "." + name
	}
	return &hclogAdapter{logger: a.logger, name: full, args: a.args, limit: a.limit}
}

func (a *hclogAdapter) ResetNamed(name string) hclog.Logger {
	return &hclogAdapter{logger: a.logger, name: name, args: a.args, limit: a.limit}
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
