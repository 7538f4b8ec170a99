package telemetry

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Colour codes only reach a terminal, and not even that with NO_COLOR;
// JSON carries durations as strings.
func TestLoggerFormats(t *testing.T) {
	t.Parallel()
	const esc = "\x1b["
	cases := []struct {
		name      string
		format    string
		terminal  bool
		noColor   string
		wantColor bool
		wantJSON  bool
	}{
		{"text on a pipe", "text", false, "", false, false},
		{"text on a terminal", "text", true, "", true, false},
		{"text on a terminal with NO_COLOR", "text", true, "1", false, false},
		{"auto on a terminal", "auto", true, "", true, false},
		{"auto on a terminal with NO_COLOR", "auto", true, "yes", false, false},
		{"auto on a pipe", "auto", false, "", false, true},
		{"json on a terminal", "json", true, "", false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			log := newLogger(&buf, "info", c.format, c.terminal, c.noColor)
			log.Warn("retry scheduled", slog.Duration("retry_in", 1500*time.Millisecond), slog.String("observer", "o"))
			out := buf.String()
			if got := strings.Contains(out, esc); got != c.wantColor {
				t.Errorf("colour codes = %v, want %v: %q", got, c.wantColor, out)
			}
			if !c.wantJSON {
				if !strings.Contains(stripANSI(out), "retry_in=1.5s") {
					t.Errorf("text output lacks the duration as text: %q", out)
				}
				return
			}
			var rec map[string]any
			if err := json.Unmarshal([]byte(out), &rec); err != nil {
				t.Fatalf("not one JSON record: %v: %q", err, out)
			}
			if rec["retry_in"] != "1.5s" {
				t.Errorf("retry_in = %#v, want \"1.5s\"", rec["retry_in"])
			}
		})
	}
}

// A file is not a terminal: NewLogger writes plain text to it even when
// asked for text.
func TestNewLoggerFileIsPlain(t *testing.T) {
	t.Parallel()
	f, err := os.Create(filepath.Join(t.TempDir(), "log.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	NewLogger(f, "info", "text").Info("hello", slog.Int("n", 1))
	raw, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), "\x1b[") || !strings.Contains(string(raw), "hello n=1") {
		t.Errorf("file log = %q, want plain text", raw)
	}
}

// stripANSI drops SGR escape sequences.
func stripANSI(s string) string {
	var b strings.Builder
	for {
		i := strings.Index(s, "\x1b[")
		if i < 0 {
			return b.String() + s
		}
		b.WriteString(s[:i])
		s = s[i:]
		j := strings.IndexByte(s, 'm')
		if j < 0 {
			return b.String()
		}
		s = s[j+1:]
	}
}
