package email_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/mail"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/adapters/email"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/internal/smtptest"
	"github.com/fraiseql/fraiseql-observer/internal/testsupport"
	"github.com/fraiseql/fraiseql-observer/ports/porttest"
)

// TestExecutorConformance runs the action suite against the in-process
// SMTP server: STARTTLS and AUTH on every target, so the password is the
// planted secret no error may carry.
func TestExecutorConformance(t *testing.T) {
	t.Parallel()
	// executor sends to host:port with STARTTLS, AUTH as "mailer" and the
	// test password; timeout 0 keeps the default.
	executor := func(t *testing.T, host string, port int, ca *smtptest.Server, timeout time.Duration) *email.Executor {
		t.Helper()
		cfg := email.Config{
			Host: host, Port: port, From: "Orders <orders@example.com>",
			TLS: email.TLSStartTLS, Username: "mailer", Password: testPassword, Timeout: timeout,
		}
		if ca != nil {
			cfg.TLSConfig = ca.ClientTLS()
		}
		exec, err := email.NewExecutor(cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatalf("NewExecutor: %v", err)
		}
		t.Cleanup(exec.Close)
		return exec
	}
	action := func(edit func(*domain.EmailAction)) *domain.Action {
		return newAction(func(e *domain.EmailAction) {
			e.SubjectTemplate, e.Subject = domain.MustCompileTemplate("{{ event.entity_type }} {{ event.id }}"), ""
			if edit != nil {
				edit(e)
			}
		})
	}
	// server starts a server that answers cmd with code (0: never).
	server := func(t *testing.T, cmd string, code int, password string) *smtptest.Server {
		t.Helper()
		return smtptest.Start(t, smtptest.Config{StartTLS: true, Username: "mailer", Password: password,
			Reply: func(c, _ string) error {
				if c == cmd {
					return smtptest.Reply(code, "test reply")
				}
				return nil
			}})
	}
	replying := func(cmd string, code int) func(t *testing.T) porttest.ActionTarget {
		return func(t *testing.T) porttest.ActionTarget {
			ts := server(t, cmd, code, testPassword)
			return porttest.ActionTarget{Executor: executor(t, ts.Host, ts.Port, ts, 0), Action: action(nil)}
		}
	}
	porttest.RunActionExecutor(t, porttest.ActionHarness{
		Features: porttest.ActionFeatures{TransientFailures: true, PermanentFailures: true, Blocks: true},
		Success: func(t *testing.T) porttest.ActionTarget {
			ts := server(t, "", 0, testPassword)
			return porttest.ActionTarget{
				Executor: executor(t, ts.Host, ts.Port, ts, 0),
				Action:   action(nil),
				Took: func(_ context.Context, ev *domain.Event) (bool, error) {
					for _, m := range ts.Messages() {
						msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
						if err == nil && msg.Header.Get(email.EventIDHeader) == ev.ID && m.AuthUser == "mailer" && m.TLS {
							return true, nil
						}
					}
					return false, nil
				},
			}
		},
		Transient: map[string]func(t *testing.T) porttest.ActionTarget{
			"421 at MAIL": replying("MAIL", 421),
			"450 at RCPT": replying("RCPT", 450),
			"451 at DATA": replying("DATA", 451),
			"connection refused": func(t *testing.T) porttest.ActionTarget {
				return porttest.ActionTarget{Executor: executor(t, "127.0.0.1", testsupport.FreePort(t), nil, 0), Action: action(nil)}
			},
			"no answer within the timeout": func(t *testing.T) porttest.ActionTarget {
				host, port, _ := quietServer(t)
				return porttest.ActionTarget{Executor: executor(t, host, port, nil, 200*time.Millisecond), Action: action(nil)}
			},
		},
		Permanent: map[string]func(t *testing.T) porttest.ActionTarget{
			"550 at RCPT": replying("RCPT", 550),
			"554 at DATA": replying("DATA", 554),
			"AUTH refused": func(t *testing.T) porttest.ActionTarget {
				ts := server(t, "", 0, "another-password")
				return porttest.ActionTarget{Executor: executor(t, ts.Host, ts.Port, ts, 0), Action: action(nil)}
			},
			"rendered recipient is not an address": func(t *testing.T) porttest.ActionTarget {
				ts := server(t, "", 0, testPassword)
				return porttest.ActionTarget{Executor: executor(t, ts.Host, ts.Port, ts, 0), Action: action(func(e *domain.EmailAction) {
					e.ToTemplate = domain.MustCompileTemplate("{{ event.entity_type }}")
				})}
			},
		},
		Blocking: func(t *testing.T) porttest.ActionTarget {
			host, port, accepted := quietServer(t)
			return porttest.ActionTarget{
				Executor: executor(t, host, port, nil, 2*time.Minute),
				Action:   action(nil),
				Reached:  porttest.ReachedWhen(accepted),
			}
		},
		Secrets: []string{testPassword},
	})
}

// quietServer accepts connections and never writes a byte (no greeting);
// accepted is closed at the first connection.
func quietServer(t *testing.T) (host string, port int, accepted <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	first := make(chan struct{})
	var once sync.Once
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			once.Do(func() { close(first) })
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	_, p, _ := net.SplitHostPort(ln.Addr().String())
	port, _ = strconv.Atoi(p)
	return "127.0.0.1", port, first
}
