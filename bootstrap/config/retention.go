package config

import (
	"fmt"
	"time"
)

// RetentionConfig is [retention]: what the service (and the prune command)
// deletes, and how often. An age of 0 keeps that table forever, which is
// the default: applications may read the change log themselves.
type RetentionConfig struct {
	// ChangeLog is how long change-log rows are kept once every reader
	// and bridge of their database (every stored checkpoint) has passed
	// them.
	ChangeLog time.Duration `koanf:"change_log"`
	// DeadLetters is how long a dead letter is kept after it was parked
	// or last retried.
	DeadLetters time.Duration `koanf:"dead_letters"`
	// Interval is the time between two passes of the service.
	Interval time.Duration `koanf:"interval"`
	// BatchSize bounds the rows one statement deletes.
	BatchSize int `koanf:"batch_size"`
	// The delivery log's age is delivery.log_retention: with delivery.log
	// on, retention prunes it too (Config.Prunes).
}

// Enabled reports whether [retention] sets an age for any table.
func (r RetentionConfig) Enabled() bool { return r.ChangeLog > 0 || r.DeadLetters > 0 }

// Prunes reports whether retention has anything to prune in a database:
// an age in [retention], or the delivery log (delivery.log on, kept for
// delivery.log_retention).
func (c Config) Prunes() bool { return c.Retention.Enabled() || c.Delivery.Log != DeliveryLogOff }

func (r RetentionConfig) validate(t Topology) error {
	for key, v := range map[string]time.Duration{"retention.change_log": r.ChangeLog, "retention.dead_letters": r.DeadLetters} {
		if v < 0 {
			return &ConfigError{Key: key, Msg: "must not be negative (0 keeps everything)"}
		}
	}
	if r.Interval <= 0 {
		return &ConfigError{Key: "retention.interval", Msg: "must be positive"}
	}
	if r.BatchSize < 1 || r.BatchSize > 100_000 {
		return &ConfigError{Key: "retention.batch_size", Msg: fmt.Sprintf("%d is not between 1 and 100000", r.BatchSize)}
	}
	if t == TopologyMemory && r.Enabled() {
		key := "retention.change_log"
		if r.ChangeLog == 0 {
			key = "retention.dead_letters"
		}
		return &ConfigError{Key: key, Msg: "the memory topology keeps nothing across restarts: there is nothing to prune"}
	}
	return nil
}
