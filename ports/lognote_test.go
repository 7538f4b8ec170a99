package ports

import (
	"testing"
	"time"
)

func TestNoteLimiter(t *testing.T) {
	t.Parallel()
	var l NoteLimiter
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if ok, n := l.Allow("a", t0); !ok || n != 0 {
		t.Fatalf("first note = %v, %d; want it out", ok, n)
	}
	for i := range 5 {
		if ok, _ := l.Allow("a", t0.Add(time.Duration(i+1)*time.Second)); ok {
			t.Fatalf("note %d within the minute went out", i+2)
		}
	}
	if ok, _ := l.Allow("b", t0.Add(time.Second)); !ok {
		t.Error("another key's first note was held back")
	}
	if ok, n := l.Allow("a", t0.Add(time.Minute)); !ok || n != 5 {
		t.Errorf("the note a minute later = %v, %d; want it out with 5 held back", ok, n)
	}
}
