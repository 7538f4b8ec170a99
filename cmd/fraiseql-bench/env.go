package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/fraiseql/fraiseql-observer/internal/ddlturn"
)

// cleanupTimeout bounds each tear-down step but a database's drop, which
// ddlturn.Timeout bounds: the harness's CREATE and DROP DATABASE take the
// turn the test suites take (ddlturn), so that run beside them (its own
// test in CI) they hold the suites' change-log readers back no longer
// than one of theirs does.
const cleanupTimeout = 30 * time.Second

// services are the addresses of the machine's PostgreSQL (a superuser
// URL), Redis and NATS.
type services struct {
	DatabaseURL string
	RedisURL    string
	NATSURL     string
}

func randomName(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// database is a database of the harness's own: created empty, dropped at
// the end.
type database struct {
	admin string // the server's URL the database was created through
	name  string
	URL   string
	Pool  *pgxpool.Pool
}

// createDatabase creates bench_<random> on the server of adminURL.
func createDatabase(ctx context.Context, adminURL string, conns int32) (*database, error) {
	name := randomName("bench_")
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", redactURL(adminURL), err)
	}
	defer func() { _ = conn.Close(ctx) }()
	if err := ddlturn.Run(ctx, conn, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return nil, fmt.Errorf("create database %s: %w", name, err)
	}
	u, err := url.Parse(adminURL)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	u.Path = "/" + name
	db := &database{admin: adminURL, name: name, URL: u.String()}
	pcfg, err := pgxpool.ParseConfig(db.URL)
	if err != nil {
		_ = db.drop()
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	pcfg.MaxConns = conns
	if db.Pool, err = pgxpool.NewWithConfig(ctx, pcfg); err != nil {
		_ = db.drop()
		return nil, fmt.Errorf("open pool on %s: %w", name, err)
	}
	return db, nil
}

// drop closes the pool and drops the database (the service is stopped by
// then; WITH (FORCE) ends any connection left).
func (d *database) drop() error {
	if d.Pool != nil {
		d.Pool.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), ddlturn.Timeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, d.admin)
	if err != nil {
		return fmt.Errorf("drop database %s: %w", d.name, err)
	}
	defer func() { _ = conn.Close(ctx) }()
	if err := ddlturn.Run(ctx, conn, "DROP DATABASE IF EXISTS "+pgx.Identifier{d.name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", d.name, err)
	}
	return nil
}

// serverVersion is PostgreSQL's server_version.
func serverVersion(ctx context.Context, adminURL string) (string, error) {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return "", fmt.Errorf("connect to %s: %w", redactURL(adminURL), err)
	}
	defer func() { _ = conn.Close(ctx) }()
	var v string
	if err := conn.QueryRow(ctx, "SHOW server_version").Scan(&v); err != nil {
		return "", fmt.Errorf("server version: %w", err)
	}
	return v, nil
}

// dropRedisKeys deletes every key under prefix.
func dropRedisKeys(redisURL, prefix string) error {
	if prefix == "" {
		return errors.New("drop redis keys: empty prefix")
	}
	opts, err := redis.ParseURL(redisURL)
	if err != nil {
		return fmt.Errorf("parse redis url: %w", err)
	}
	c := redis.NewClient(opts)
	defer func() { _ = c.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	var cursor uint64
	for {
		keys, next, err := c.Scan(ctx, cursor, prefix+"*", 1000).Result()
		if err != nil {
			return fmt.Errorf("scan redis keys %s*: %w", prefix, err)
		}
		if len(keys) > 0 {
			if err := c.Del(ctx, keys...).Err(); err != nil {
				return fmt.Errorf("delete redis keys %s*: %w", prefix, err)
			}
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}

// deleteStream deletes a JetStream stream (and its consumers).
func deleteStream(natsURL, stream string) error {
	nc, err := nats.Connect(natsURL, nats.Timeout(5*time.Second))
	if err != nil {
		return fmt.Errorf("connect to nats: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	if err := js.DeleteStream(ctx, stream); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("delete stream %s: %w", stream, err)
	}
	return nil
}

// redactURL drops a URL's password for messages.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable url)"
	}
	return u.Redacted()
}
