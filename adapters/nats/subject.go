package nats

import (
	"strings"
	"unicode"

	"github.com/fraiseql/fraiseql-observer/domain"
)

// Subject is the subject an event is published to:
// {prefix}.{source}.{entity_type}.{event_type}. An empty source is
// "default". In each of the three tokens '.', '*', '>', white space and
// control characters become '_', and an empty token becomes "_", so every
// event maps to exactly three tokens after the prefix and consumers can
// filter with wildcards (prefix.*.Order.>).
func Subject(prefix string, ev *domain.Event) string {
	source := ev.Source
	if source == "" {
		source = "default"
	}
	var b strings.Builder
	b.Grow(len(prefix) + len(source) + len(ev.EntityType) + len(ev.EventType) + 3)
	b.WriteString(prefix)
	for _, tok := range [...]string{source, ev.EntityType, string(ev.EventType)} {
		b.WriteByte('.')
		writeToken(&b, tok)
	}
	return b.String()
}

func writeToken(b *strings.Builder, tok string) {
	if tok == "" {
		b.WriteByte('_')
		return
	}
	for _, r := range tok {
		if r == '.' || r == '*' || r == '>' || unicode.IsSpace(r) || unicode.IsControl(r) {
			b.WriteByte('_')
			continue
		}
		b.WriteRune(r)
	}
}
