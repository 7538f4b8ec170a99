package postgres

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestRedact(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		conn    string
		secrets []string // must not appear
		keep    []string // must still appear
	}{
		{
			name:    "userinfo password",
			conn:    "postgres://app:S3cr3tPW@db.internal:5432/orders?sslmode=require",
			secrets: []string{"S3cr3tPW"},
			keep:    []string{"app:xxxxx@db.internal:5432/orders", "sslmode=require"},
		},
		{
			name:    "password query parameters",
			conn:    "postgres://app@db.internal/orders?password=PlantedPW1&sslpassword=PlantedPW2&sslmode=verify-full",
			secrets: []string{"PlantedPW1", "PlantedPW2"},
			keep:    []string{"app@db.internal/orders", "password=xxxxx", "sslpassword=xxxxx", "sslmode=verify-full"},
		},
		{
			name:    "any key holding password secret or token, any case",
			conn:    "postgresql://db.internal/orders?PassWord=PlantedA&client_secret=PlantedB&auth_token=PlantedC&application_name=observer",
			secrets: []string{"PlantedA", "PlantedB", "PlantedC"},
			keep:    []string{"application_name=observer", "PassWord=xxxxx"},
		},
		{
			name:    "percent-encoded key and value",
			conn:    "postgres://db.internal/orders?pass%77ord=Planted%2FD%40x&sslmode=disable",
			secrets: []string{"Planted%2FD%40x", "Planted/D@x"},
			keep:    []string{"pass%77ord=xxxxx", "sslmode=disable"},
		},
		{
			name:    "userinfo and query together",
			conn:    "postgres://u:PlantedE@h1:5432/db?sslpassword=PlantedF",
			secrets: []string{"PlantedE", "PlantedF"},
			keep:    []string{"u:xxxxx@h1:5432/db"},
		},
		{
			name:    "keyword value form",
			conn:    "host=db.internal port=5432 user=app password=PlantedG dbname=orders sslpassword = PlantedH",
			secrets: []string{"PlantedG", "PlantedH"},
			keep:    []string{"host=db.internal", "user=app", "password=xxxxx", "dbname=orders", "sslpassword = xxxxx"},
		},
		{
			name:    "keyword value quoted with escapes",
			conn:    `host=db password='Planted I\'s \\ spaced' dbname=orders`,
			secrets: []string{"Planted", "spaced"},
			keep:    []string{"host=db", "password=xxxxx", "dbname=orders"},
		},
		{
			name:    "keyword value backslash-escaped space",
			conn:    `host=db password=Planted\ J user=x`,
			secrets: []string{"Planted", " J"},
			keep:    []string{"host=db", "password=xxxxx", "user=x"},
		},
		{
			name:    "unparsable url is replaced whole",
			conn:    "postgres://u:PlantedK@h1:bad port/db?password=PlantedL",
			secrets: []string{"PlantedK", "PlantedL"},
		},
		{
			name:    "unterminated quote is replaced whole",
			conn:    "host=db password='PlantedM",
			secrets: []string{"PlantedM"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := Redact(tt.conn)
			for _, s := range tt.secrets {
				if strings.Contains(got, s) {
					t.Errorf("Redact(%q) = %q: still holds %q", tt.conn, got, s)
				}
			}
			for _, k := range tt.keep {
				if !strings.Contains(got, k) {
					t.Errorf("Redact(%q) = %q: lost %q", tt.conn, got, k)
				}
			}
			if scrubbed := scrub("dial "+tt.conn+" failed", tt.conn); !strings.HasPrefix(tt.name, "unterminated") {
				for _, s := range tt.secrets {
					if strings.Contains(scrubbed, s) {
						t.Errorf("scrub left %q in %q", s, scrubbed)
					}
				}
			}
		})
	}
}

// TestOpenLogsNoSecrets plants secrets in every place a connection string
// can hold one and checks the "database unreachable" log lines and the
// error Open returns when it gives up.
func TestOpenLogsNoSecrets(t *testing.T) {
	t.Parallel()
	const (
		pw    = "PlantedUserinfoPW"
		qpw   = "PlantedQueryPW"
		sslpw = "PlantedSSLPW"
		tok   = "PlantedToken"
	)
	tests := []struct {
		name, conn string
	}{
		{"url", "postgres://app:" + pw + "@127.0.0.1:1/db?sslmode=disable&password=" + qpw + "&sslpassword=" + sslpw + "&connect_token=" + tok},
		{"keyword value", "host=127.0.0.1 port=1 dbname=db sslmode=disable user=app password='" + qpw + "' sslpassword=" + sslpw},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var logs bytes.Buffer
			logger := slog.New(slog.NewJSONHandler(&logs, nil))
			ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
			defer cancel()
			_, err := Open(ctx, PoolConfig{URL: tt.conn, ConnectTimeout: 200 * time.Millisecond}, logger)
			if err == nil {
				t.Fatal("Open succeeded against a closed port")
			}
			if !strings.Contains(logs.String(), "database unreachable") {
				t.Fatalf("no unreachable log line:\n%s", logs.String())
			}
			for _, s := range []string{pw, qpw, sslpw, tok} {
				if strings.Contains(logs.String(), s) {
					t.Errorf("log holds %q:\n%s", s, logs.String())
				}
				if strings.Contains(err.Error(), s) {
					t.Errorf("error holds %q: %v", s, err)
				}
			}
		})
	}

	t.Run("bad url", func(t *testing.T) {
		t.Parallel()
		_, err := Open(t.Context(), PoolConfig{URL: "postgres://app:" + pw + "@127.0.0.1:1/db?sslmode=nonsense&password=" + qpw}, slog.New(slog.DiscardHandler))
		var bad *ErrBadURL
		if !errors.As(err, &bad) {
			t.Fatalf("Open = %v, want *ErrBadURL", err)
		}
		for _, s := range []string{pw, qpw} {
			if strings.Contains(err.Error(), s) {
				t.Errorf("error holds %q: %v", s, err)
			}
		}
	})
}
