package redis

import (
	"context"
	"fmt"
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
}

var _ ports.Deduplicator = (*Deduplicator)(nil)

// NewDeduplicator returns a deduplicator keyed {prefix}dedup:v1:event:{id}.
func NewDeduplicator(c *Client) *Deduplicator { return &Deduplicator{c: c} }

func (d *Deduplicator) key(eventID string) string { return d.c.prefix + "dedup:v1:event:" + eventID }

// Claim takes eventID for token for lease, extends token's own claim, or
// reports the event done or busy, in one atomic script.
func (d *Deduplicator) Claim(ctx context.Context, eventID, token string, lease time.Duration) (ports.ClaimResult, error) {
	switch {
	case eventID == "":
		return 0, fmt.Errorf("redis: claim: empty event id")
	case token == "":
		return 0, fmt.Errorf("redis: claim %s: empty token", eventID)
	case lease <= 0:
		return 0, fmt.Errorf("redis: claim %s: lease %v is not positive", eventID, lease)
	}
	res, err := d.c.batch.evalScript(ctx, claimScript, []string{d.key(eventID)}, claimPrefix+token, millis(lease)).Int()
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

// millis converts a positive duration to whole milliseconds, at least 1.
func millis(d time.Duration) int64 { return max(1, d.Milliseconds()) }
