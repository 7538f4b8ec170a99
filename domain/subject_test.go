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

func TestValidSubject(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"a", "a.b.c", "orders.UPDATE", "x-y_z.1", strings.Repeat("a", 1024)} {
		if err := ValidSubject(ok); err != nil {
			t.Errorf("ValidSubject(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a..b", ".a", "a.", "a.*", "a.>", "a b", "a\tb", strings.Repeat("a", 1025)} {
		if err := ValidSubject(bad); err == nil {
			t.Errorf("ValidSubject(%q) accepted", bad)
		}
	}
}
