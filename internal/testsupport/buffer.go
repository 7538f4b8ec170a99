package testsupport

import (
	"bytes"
	"sync"
)

// Buffer collects output written from several goroutines (a logger, a
// child process's stderr). Safe for concurrent use. With Max set it keeps
// only the last Max bytes written.
type Buffer struct {
	Max int // 0: keep everything

	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p (and, with Max set, drops what is older than the last
// Max bytes).
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, err := b.buf.Write(p)
	if over := b.buf.Len() - b.Max; b.Max > 0 && over > 0 {
		b.buf.Next(over)
	}
	return n, err
}

// String returns everything kept so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
