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
	res, err := d.ClaimMany(ctx, []string{eventID}, token, lease)
	if err != nil {
		return 0, err
	}
	return res[0], nil
}

// ClaimMany claims every id as Claim would, the SET NX GET of all of them
// in one pipeline; the few that need claimScript (the caller's own claims,
// older servers) run it afterwards.
func (d *Deduplicator) ClaimMany(ctx context.Context, eventIDs []string, token string, lease time.Duration) ([]ports.ClaimResult, error) {
	if err := checkClaims(eventIDs, token, lease); err != nil {
		return nil, err
	}
	var cmds []goredis.Cmder
	if !d.scriptOnly.Load() {
		cmds = d.claimCmds(ctx, eventIDs, token, lease)
		if err := d.c.batch.doAll(ctx, cmds); err != nil {
			return nil, d.claimsFailed(ctx, eventIDs, err)
		}
	}
	return d.claimReplies(ctx, eventIDs, token, lease, cmds)
}

// ClaimManyLookUp is ClaimMany and cache's GetMany in one pipeline, when
// cache is a ResultCache over d's client (see ports.ClaimLookUp); on
// servers that need claimScript it declines (ok false).
func (d *Deduplicator) ClaimManyLookUp(ctx context.Context, eventIDs []string, token string, lease time.Duration, cache ports.ResultCache, keys []string) (ports.ClaimLookUpResult, bool) {
	rc, ok := cache.(*ResultCache)
	if !ok || rc.c != d.c || d.scriptOnly.Load() || checkClaims(eventIDs, token, lease) != nil {
		return ports.ClaimLookUpResult{}, false
	}
	claims := d.claimCmds(ctx, eventIDs, token, lease)
	lookups := rc.existsCmds(ctx, keys)
	var res ports.ClaimLookUpResult
	if err := d.c.batch.doAll(ctx, append(claims[:len(claims):len(claims)], lookups...)); err != nil {
		res.ClaimErr, res.LookUpErr = d.claimsFailed(ctx, eventIDs, err), rc.lookupsFailed(ctx, keys, err)
		return res, true
	}
	res.Hits, res.LookUpErr = rc.existsReplies(ctx, keys, lookups)
	res.Claims, res.ClaimErr = d.claimReplies(ctx, eventIDs, token, lease, claims)
	return res, true
}

// claimsFailed is the error of claims of eventIDs whose round trip failed.
func (d *Deduplicator) claimsFailed(ctx context.Context, eventIDs []string, err error) error {
	return d.c.wrap(ctx, batchOp(eventIDs, "claim", "claim %d events"), err)
}

// checkClaims refuses a claim that cannot be taken: an empty id or token,
// a lease that is not positive.
func checkClaims(eventIDs []string, token string, lease time.Duration) error {
	for _, id := range eventIDs {
		switch {
		case id == "":
			return fmt.Errorf("redis: claim: empty event id")
		case token == "":
			return fmt.Errorf("redis: claim %s: empty token", id)
		case lease <= 0:
			return fmt.Errorf("redis: claim %s: lease %v is not positive", id, lease)
		}
	}
	return nil
}

// claimCmds are the SET NX GET commands that claim eventIDs for token:
// SET NX takes a free key and GET returns what held it otherwise.
func (d *Deduplicator) claimCmds(ctx context.Context, eventIDs []string, token string, lease time.Duration) []goredis.Cmder {
	cmds := make([]goredis.Cmder, len(eventIDs))
	val, px := any(claimPrefix+token), any(millis(lease)) // boxed once for every command
	for i, id := range eventIDs {
		cmds[i] = goredis.NewStringCmd(ctx, "set", d.key(id), val, "nx", "get", "px", px)
	}
	return cmds
}

// claimReplies reads the answers of claimCmds (nil: none were sent, on
// servers before 7.0); the ids they leave open (the caller's own claims,
// replies no claim explains, older servers) are claimed with claimScript.
func (d *Deduplicator) claimReplies(ctx context.Context, eventIDs []string, token string, lease time.Duration, cmds []goredis.Cmder) ([]ports.ClaimResult, error) {
	res := make([]ports.ClaimResult, len(eventIDs))
	value := claimPrefix + token
	for i, c := range cmds {
		cmd := c.(*goredis.StringCmd)
		err := cmd.Err()
		switch {
		case errors.Is(err, goredis.Nil): // the key was free: taken
			res[i] = ports.ClaimAcquired
		case err == nil && cmd.Val() == doneValue:
			res[i] = ports.ClaimDone
		case err == nil && cmd.Val() != value && strings.HasPrefix(cmd.Val(), claimPrefix):
			res[i] = ports.ClaimBusy
		case err == nil: // the caller's own claim (extended by the script), or a reply no claim explains
		case isSyntaxError(err):
			d.scriptOnly.Store(true)
		default:
			return nil, d.c.wrap(ctx, "claim "+eventIDs[i], err)
		}
	}
	for i, id := range eventIDs {
		if res[i] != 0 {
			continue
		}
		r, err := d.claimByScript(ctx, id, value, lease)
		if err != nil {
			return nil, err
		}
		res[i] = r
	}
	return res, nil
}

// claimByScript claims eventID with claimScript.
func (d *Deduplicator) claimByScript(ctx context.Context, eventID, value string, lease time.Duration) (ports.ClaimResult, error) {
	res, err := d.c.batch.evalScript(ctx, claimScript, []string{d.key(eventID)}, value, millis(lease)).Int()
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
	return d.MarkDoneMany(ctx, []string{eventID}, window)
}

// MarkDoneMany marks every id done as MarkDone would, in one pipeline.
func (d *Deduplicator) MarkDoneMany(ctx context.Context, eventIDs []string, window time.Duration) error {
	if window <= 0 && len(eventIDs) > 0 {
		return fmt.Errorf("redis: mark done %s: window %v is not positive", eventIDs[0], window)
	}
	cmds := make([]goredis.Cmder, len(eventIDs))
	px := any(millis(window)) // boxed once for every command
	for i, id := range eventIDs {
		cmds[i] = goredis.NewStatusCmd(ctx, "set", d.key(id), doneValue, "px", px)
	}
	return d.c.setAll(ctx, cmds, eventIDs, "mark done", "mark %d events done")
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
