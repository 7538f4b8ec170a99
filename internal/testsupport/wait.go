package testsupport

import (
	"testing"
	"time"
)

// WaitUntil polls cond every tick until it holds, failing the test with
// what was awaited once limit has passed: a correctness timeout, never a
// speed assertion.
func WaitUntil(t testing.TB, limit, tick time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(tick)
	}
}
