package redis

import (
	"context"
	"errors"
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
	err := r.c.batch.do(ctx, goredis.NewStringCmd(ctx, "get", r.key(key)))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, goredis.Nil):
		return false, nil
	}
	return false, r.c.wrap(ctx, "get result "+key, err)
}

// Put stores a success for key for ttl, replacing an earlier one.
func (r *ResultCache) Put(ctx context.Context, key string, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("redis: put result %s: ttl %v is not positive", key, ttl)
	}
	if err := r.c.batch.do(ctx, goredis.NewStatusCmd(ctx, "set", r.key(key), "1", "px", millis(ttl))); err != nil {
		return r.c.wrap(ctx, "put result "+key, err)
	}
	return nil
}
