package redis

import (
	"context"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/fraiseql/fraiseql-observer/ports"
)

// ResultCache is the ports.ResultCache on Redis, shared by every process
// using the same server and key prefix. Safe for concurrent use.
type ResultCache struct {
	c *Client
}

var _ ports.ResultCache = (*ResultCache)(nil)

// NewResultCache returns a cache keyed {prefix}cache:v1:result:{key}.
func NewResultCache(c *Client) *ResultCache { return &ResultCache{c: c} }

func (r *ResultCache) key(key string) string { return r.c.prefix + "cache:v1:result:" + key }

// Get reports whether key holds a stored success.
func (r *ResultCache) Get(ctx context.Context, key string) (bool, error) {
	hits, err := r.GetMany(ctx, []string{key})
	if err != nil {
		return false, err
	}
	return hits[0], nil
}

// GetMany answers Get for every key in one pipeline, an EXISTS per key
// (an integer reply: a GET's nil reply for a miss, the common case, cost
// the client an error value per key).
func (r *ResultCache) GetMany(ctx context.Context, keys []string) ([]bool, error) {
	cmds := r.existsCmds(ctx, keys)
	if err := r.c.batch.doAll(ctx, cmds); err != nil {
		return nil, r.lookupsFailed(ctx, keys, err)
	}
	return r.existsReplies(ctx, keys, cmds)
}

// lookupsFailed is the error of lookups of keys whose round trip failed.
func (r *ResultCache) lookupsFailed(ctx context.Context, keys []string, err error) error {
	return r.c.wrap(ctx, batchOp(keys, "get result", "get %d results"), err)
}

// existsCmds are GetMany's commands.
func (r *ResultCache) existsCmds(ctx context.Context, keys []string) []goredis.Cmder {
	cmds := make([]goredis.Cmder, len(keys))
	for i, key := range keys {
		cmds[i] = goredis.NewIntCmd(ctx, "exists", r.key(key))
	}
	return cmds
}

// existsReplies reads the answers of existsCmds.
func (r *ResultCache) existsReplies(ctx context.Context, keys []string, cmds []goredis.Cmder) ([]bool, error) {
	hits := make([]bool, len(keys))
	for i, c := range cmds {
		n, err := c.(*goredis.IntCmd).Result()
		if err != nil {
			return nil, r.c.wrap(ctx, "get result "+keys[i], err)
		}
		hits[i] = n > 0
	}
	return hits, nil
}

// Put stores a success for key for ttl, replacing an earlier one.
func (r *ResultCache) Put(ctx context.Context, key string, ttl time.Duration) error {
	return r.PutMany(ctx, []string{key}, ttl)
}

// PutMany stores every key as Put would, in one pipeline.
func (r *ResultCache) PutMany(ctx context.Context, keys []string, ttl time.Duration) error {
	if ttl <= 0 && len(keys) > 0 {
		return fmt.Errorf("redis: put result %s: ttl %v is not positive", keys[0], ttl)
	}
	cmds := make([]goredis.Cmder, len(keys))
	px := any(millis(ttl)) // boxed once for every command
	for i, key := range keys {
		cmds[i] = goredis.NewStatusCmd(ctx, "set", r.key(key), "1", "px", px)
	}
	return r.c.setAll(ctx, cmds, keys, "put result", "put %d results")
}
