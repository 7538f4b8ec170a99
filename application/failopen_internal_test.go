package application

import (
	"testing"
	"time"
)

func TestLogLimiterLetsOneThroughPerInterval(t *testing.T) {
	t.Parallel()
	l := logLimiter{interval: time.Hour}
	if ok, n := l.allow(); !ok || n != 0 {
		t.Fatalf("first call: allow = %v, %d; want true, 0", ok, n)
	}
	for range 5 {
		if ok, _ := l.allow(); ok {
			t.Fatal("a second warning within the interval was let through")
		}
	}
	l.mu.Lock()
	l.last = l.last.Add(-2 * time.Hour) // the interval has passed
	l.mu.Unlock()
	if ok, n := l.allow(); !ok || n != 5 {
		t.Fatalf("after the interval: allow = %v, %d; want true and the 5 held back", ok, n)
	}
}
