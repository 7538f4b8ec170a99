package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/fraiseql/fraiseql-observer/ports"
)

// Claim results returned by claimScript.
const (
	scriptAcquired = 1
	scriptDone     = 2
	scriptBusy     = 3
)

// doneValue marks a processed event; a claim is stored as claimPrefix+token
// so no token can pass for a done mark.
const (
	doneValue   = "done"
	claimPrefix = "claim:"
)

// claimScript takes a free key, extends the caller's own claim, or reports
// done or busy, atomically. KEYS[1] the event key; ARGV[1] the claim value,
// ARGV[2] the lease in milliseconds.
var claimScript = goredis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if v == 'done' then
  return 2
end
return 3
`)

// releaseScript deletes the key only while it holds the caller's claim.
var releaseScript = goredis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// Deduplicator is the ports.Deduplicator on Redis, shared by every process
// using the same server and key prefix. Safe for concurrent use.
type Deduplicator struct {
	c *Client
	// scriptOnly is set once the server refused SET with both NX and GET
	// (Redis before 7.0): every claim then runs claimScript.
	scriptOnly atomic.Bool
}

var _ ports.Deduplicator = (*Deduplicator)(nil)

// NewDeduplicator returns a deduplicator keyed {prefix}dedup:v1:event:{id}.
func NewDeduplicator(c *Client) *Deduplicator { return &Deduplicator{c: c} }

func (d *Deduplicator) key(eventID string) string { return d.c.prefix + "dedup:v1:event:" + eventID }

// Claim takes eventID for token for lease, extends token's own claim, or
// reports the event done or busy: atomically, by SET NX GET (Redis 7.0 and
// later), with claimScript for the extension (and on older servers).
func (d *Deduplicator) Claim(ctx context.Context, eventID, token string, lease time.Duration) (ports.ClaimResult, error) {
	switch {
	case eventID == "":
		return 0, fmt.Errorf("redis: claim: empty event id")
	case token == "":
		return 0, fmt.Errorf("redis: claim %s: empty token", eventID)
	case lease <= 0:
		return 0, fmt.Errorf("redis: claim %s: lease %v is not positive", eventID, lease)
	}
	key, value := d.key(eventID), claimPrefix+token
	if !d.scriptOnly.Load() {
		// The common case in one native command, no script: SET NX takes a
		// free key and GET returns what held it otherwise.
		cmd := goredis.NewStringCmd(ctx, "set", key, value, "nx", "get", "px", millis(lease))
		err := d.c.batch.do(ctx, cmd)
		switch {
		case errors.Is(err, goredis.Nil): // the key was free: taken
			return ports.ClaimAcquired, nil
		case err == nil && cmd.Val() == doneValue:
			return ports.ClaimDone, nil
		case err == nil && cmd.Val() != value && strings.HasPrefix(cmd.Val(), claimPrefix):
			return ports.ClaimBusy, nil
		case err == nil: // the caller's own claim (extended by the script), or a reply no claim explains
		case isSyntaxError(err):
			d.scriptOnly.Store(true)
		default:
			return 0, d.c.wrap(ctx, "claim "+eventID, err)
		}
	}
	res, err := d.c.batch.evalScript(ctx, claimScript, []string{key}, value, millis(lease)).Int()
	if err != nil {
		return 0, d.c.wrap(ctx, "claim "+eventID, err)
	}
	switch res {
	case scriptAcquired:
		return ports.ClaimAcquired, nil
	case scriptDone:
		return ports.ClaimDone, nil
	case scriptBusy:
		return ports.ClaimBusy, nil
	}
	return 0, fmt.Errorf("redis: claim %s: unexpected script result %d", eventID, res)
}

// MarkDone records eventID as processed for window, replacing any claim.
func (d *Deduplicator) MarkDone(ctx context.Context, eventID string, window time.Duration) error {
	if window <= 0 {
		return fmt.Errorf("redis: mark done %s: window %v is not positive", eventID, window)
	}
	cmd := goredis.NewStatusCmd(ctx, "set", d.key(eventID), doneValue, "px", millis(window))
	if err := d.c.batch.do(ctx, cmd); err != nil {
		return d.c.wrap(ctx, "mark done "+eventID, err)
	}
	return nil
}

// Release deletes token's claim on eventID (compare-and-delete), leaving
// another holder's claim and a done mark in place.
func (d *Deduplicator) Release(ctx context.Context, eventID, token string) error {
	if err := d.c.batch.evalScript(ctx, releaseScript, []string{d.key(eventID)}, claimPrefix+token).Err(); err != nil {
		return d.c.wrap(ctx, "release "+eventID, err)
	}
	return nil
}

// isSyntaxError reports whether Redis refused a command's form (as Redis
// before 7.0 refuses SET with both NX and GET).
func isSyntaxError(err error) bool {
	return err != nil && strings.Contains(err.Error(), "syntax error")
}

// millis converts a positive duration to whole milliseconds, at least 1.
func millis(d time.Duration) int64 { return max(1, d.Milliseconds()) }
