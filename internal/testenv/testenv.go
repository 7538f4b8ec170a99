// Package testenv hands tests the addresses of the real services they run
// against. An address comes from FRAISEQL_TEST_DATABASE_URL,
// FRAISEQL_TEST_REDIS_URL or FRAISEQL_TEST_NATS_URL; when unset, a
// Testcontainers container is started once per test binary. When neither
// works the test is skipped, except under CI=true where a missing service
// fails the test.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/testcontainers/testcontainers-go"
	tcnats "github.com/testcontainers/testcontainers-go/modules/nats"
	tcpostgres "github.com/testcontainers/testcontainers-go/modules/postgres"
	tcredis "github.com/testcontainers/testcontainers-go/modules/redis"

	"github.com/fraiseql/fraiseql-observer/internal/ddlturn"
)

type service struct {
	once sync.Once
	url  string
	err  error
}

var (
	pgSvc    service
	redisSvc service
	natsSvc  service
)

func (s *service) get(t testing.TB, envKey string, start func(ctx context.Context) (string, error)) string {
	t.Helper()
	s.once.Do(func() {
		if v := os.Getenv(envKey); v != "" {
			s.url = v
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		func() {
			defer func() {
				if r := recover(); r != nil { // testcontainers panics without a Docker engine
					s.err = fmt.Errorf("testcontainers: %v", r)
				}
			}()
			s.url, s.err = start(ctx)
		}()
	})
	if s.err != nil {
		msg := fmt.Sprintf("%s is unset and no container could be started: %v", envKey, s.err)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return s.url
}

// DatabaseURL is the address of a PostgreSQL server with superuser rights.
func DatabaseURL(t testing.TB) string {
	return pgSvc.get(t, "FRAISEQL_TEST_DATABASE_URL", func(ctx context.Context) (string, error) {
		c, err := tcpostgres.Run(ctx, "postgres:16-alpine",
			tcpostgres.WithDatabase("postgres"), tcpostgres.WithUsername("postgres"), tcpostgres.WithPassword("postgres"),
			tcpostgres.BasicWaitStrategies())
		if err != nil {
			return "", err
		}
		return c.ConnectionString(ctx, "sslmode=disable")
	})
}

// RedisURL is the address of a Redis server.
func RedisURL(t testing.TB) string {
	return redisSvc.get(t, "FRAISEQL_TEST_REDIS_URL", func(ctx context.Context) (string, error) {
		c, err := tcredis.Run(ctx, "redis:7-alpine")
		if err != nil {
			return "", err
		}
		return c.ConnectionString(ctx)
	})
}

// NATSURL is the address of a NATS server with JetStream.
func NATSURL(t testing.TB) string {
	return natsSvc.get(t, "FRAISEQL_TEST_NATS_URL", func(ctx context.Context) (string, error) {
		c, err := tcnats.Run(ctx, "nats:2.10-alpine")
		if err != nil {
			return "", err
		}
		return c.ConnectionString(ctx)
	})
}

var _ = testcontainers.GenericContainer // the modules above build on it

// Name returns a unique lower-case identifier with the given prefix, usable
// as a database, schema, key prefix or stream name.
func Name(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + "_" + hex.EncodeToString(b)
}

// NewDatabase creates a fresh database for the test, drops it when the test
// ends and returns its URL.
func NewDatabase(t testing.TB) string {
	t.Helper()
	base := DatabaseURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), ddlturn.Timeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		fatalOrSkip(t, fmt.Sprintf("connect to %s: %v", redact(base), err))
	}
	defer conn.Close(ctx)
	name := Name("fraiseql_test")
	if err := ddlturn.Run(ctx, conn, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), ddlturn.Timeout)
		defer cancel()
		c, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Logf("drop database %s: %v", name, err)
			return
		}
		defer c.Close(ctx)
		if err := ddlturn.Run(ctx, c, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("drop database %s: %v", name, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("parse database url: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

func fatalOrSkip(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

func redact(u string) string {
	if p, err := url.Parse(u); err == nil {
		return p.Redacted()
	}
	return strings.SplitN(u, "@", 2)[0]
}

// Exec runs sql (one or more statements) on the database at url, for
// tests whose package may not talk to PostgreSQL itself.
func Exec(t testing.TB, url, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect to %s: %v", redact(url), err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("exec: %v", err)
	}
}
