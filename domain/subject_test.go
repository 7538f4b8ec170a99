package domain

import (
	"strings"
	"testing"
)

func TestValidSubjectTemplate(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"orders", "orders.{{ event.entity_type }}.{{ id }}", "{{ a }}.{{ b }}", "x-{{ id }}_y"} {
		if err := ValidSubjectTemplate(MustCompileTemplate(ok)); err != nil {
			t.Errorf("ValidSubjectTemplate(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "orders.*", "orders.>", "a b.{{ id }}", "orders..{{ id }}", ".{{ id }}", "{{ id }}.", strings.Repeat("a", MaxSubjectBytes+1)} {
		if err := ValidSubjectTemplate(MustCompileTemplate(bad)); err == nil {
			t.Errorf("ValidSubjectTemplate(%q) accepted", bad)
		}
	}
}
