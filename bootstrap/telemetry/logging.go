// Package telemetry is the part of the composition root that sets up
// what the service tells about itself: the process logger (NewLogger),
// the tracer of [tracing] (OpenTracer) and the gauges that need a query
// (Gauges: backlog per reader, dead letters, the oldest open transaction,
// parked retries). Metrics themselves are adapters/prometheus.
package telemetry

import (
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/lmittmann/tint"
	"github.com/mattn/go-isatty"
)

// NewLogger builds the process logger: text for a person, JSON for
// machines. format "auto" picks text when w is a terminal, JSON otherwise.
// Text is coloured only on a terminal and only while NO_COLOR is unset or
// empty (https://no-color.org): a pipe or a file gets plain text. In JSON,
// durations are strings ("1.5s"), as in the configuration.
func NewLogger(w io.Writer, level, format string) *slog.Logger {
	return newLogger(w, level, format, isTerminal(w), os.Getenv("NO_COLOR"))
}

// newLogger is NewLogger with the terminal test and NO_COLOR given.
func newLogger(w io.Writer, level, format string, terminal bool, noColor string) *slog.Logger {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		lvl = slog.LevelInfo
	}
	if format == "auto" {
		format = "json"
		if terminal {
			format = "text"
		}
	}
	if format == "text" {
		return slog.New(tint.NewTextHandler(w, &tint.Options{
			Level: lvl, TimeFormat: time.TimeOnly, NoColor: !terminal || noColor != "",
		}))
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lvl, ReplaceAttr: durationString}))
}

// durationString writes durations as Go duration strings ("1.5s") instead
// of integer nanoseconds.
func durationString(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		return slog.String(a.Key, a.Value.Duration().String())
	}
	return a
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}
