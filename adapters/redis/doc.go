// Package redis implements the networked deduplicator, the action-result
// cache and the `cache` action (key invalidation) on Redis, single node,
// Sentinel or Cluster. It is the only package that imports go-redis; it
// translates the driver's outage errors (refused or dropped connections,
// timeouts, an exhausted pool, a closed client) into ports.ErrUnavailable
// at the boundary.
//
// Keys, each preceded by Config.KeyPrefix:
//
//	dedup:v1:event:{id}    "claim:{token}" for the lease, then "done" for the window
//	cache:v1:result:{key}  "1" for the TTL
//
// The cache action's keys are the application's: Invalidator puts only the
// action's own key_prefix in front of the rendered pattern, never
// Config.KeyPrefix.
package redis
