package application

import (
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/internal/testsupport"
)

func TestLogLimiterLetsOneThroughPerInterval(t *testing.T) {
	t.Parallel()
	clock := testsupport.NewClock(time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC))
	l := logLimiter{interval: time.Hour, now: clock.Now}
	if ok, n := l.allow(); !ok || n != 0 {
		t.Fatalf("first call: allow = %v, %d; want true, 0", ok, n)
	}
	for range 5 {
		if ok, _ := l.allow(); ok {
			t.Fatal("a second warning within the interval was let through")
		}
	}
	clock.Advance(time.Hour - time.Nanosecond)
	if ok, _ := l.allow(); ok {
		t.Fatal("a warning just inside the interval was let through")
	}
	clock.Advance(time.Nanosecond) // the interval has passed
	if ok, n := l.allow(); !ok || n != 6 {
		t.Fatalf("after the interval: allow = %v, %d; want true and the 6 held back", ok, n)
	}
	if ok, _ := l.allow(); ok {
		t.Fatal("the interval did not restart at the warning let through")
	}
}
