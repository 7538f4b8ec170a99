package redis

import (
	"testing"

	"github.com/fraiseql/fraiseql-observer/domain"
)

func TestPreviewer(t *testing.T) {
	t.Parallel()
	pv := Previewer
	ev := &domain.Event{ID: "e1", EventType: domain.EventUpdate, EntityType: "Order", EntityID: "o-1",
		Data: map[string]any{"sku": "A*1", "empty": ""}}
	cases := []struct {
		pattern, want, mode string
		missing, problem    bool
	}{
		{"order:{{ sku }}:*", `app:order:A\*1:*`, "SCAN MATCH + UNLINK", false, false},
		{"order:{{ sku }}", `app:order:A\*1`, "UNLINK app:order:A*1", false, false},
		{"order:{{ nope }}:*", "app:order::*", "SCAN MATCH + UNLINK", true, true},
		{"order:{{ empty }}*", "app:order:*", "SCAN MATCH + UNLINK", false, true},
	}
	for _, c := range cases {
		act := &domain.Action{Type: domain.ActionCache, Cache: &domain.CacheAction{KeyPattern: domain.MustCompileTemplate(c.pattern), KeyPrefix: "app:"}}
		p := pv.Preview(ev, nil, act)
		inv, ok := p.Details.(InvalidationPreview)
		if !ok || inv.Pattern != c.want || inv.Mode != c.mode || (len(p.Missing) > 0) != c.missing || (p.Problem != "") != c.problem {
			t.Errorf("%s: preview = %+v (details %+v)", c.pattern, p, p.Details)
		}
		if len(p.Lines) != 1 || p.Lines[0] != "invalidate "+c.want+" ("+c.mode+")" {
			t.Errorf("%s: lines = %q", c.pattern, p.Lines)
		}
	}
}
