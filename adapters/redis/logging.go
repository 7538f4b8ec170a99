package redis

import (
	"context"
	"fmt"
	"log/slog"

	goredis "github.com/redis/go-redis/v9"
)

// slogLogger routes go-redis' internal messages (dial failures, pool
// notices) to slog at debug level instead of the standard logger's stderr.
type slogLogger struct{ logger *slog.Logger }

func (l slogLogger) Printf(ctx context.Context, format string, v ...any) {
	l.logger.DebugContext(ctx, fmt.Sprintf(format, v...), slog.String("component", "go-redis"))
}

// SetLogger sends go-redis' internal log lines to logger (process-wide:
// go-redis keeps one logger for all clients). Outages are reported by this
// service's own fail-open warnings; go-redis' lines are detail.
func SetLogger(logger *slog.Logger) { goredis.SetLogger(slogLogger{logger: logger}) }
