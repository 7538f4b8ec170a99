package domain

import (
	"fmt"
	"testing"
)

func BenchmarkConditionEval(b *testing.B) {
	ev := condUpdateEvent(b)
	benches := []struct {
		name string
		cond string
	}{
		{"string_eq", `status == 'shipped'`},
		{"number_and_string", `total > 99.5 && status != 'cancelled'`},
		{"field_changed_to", `field_changed_to('status', 'shipped')`},
		{"nested_path", `customer.tier == 'gold' && customer.address.country == 'FR'`},
		{"in_list", `status in ['paid', 'packed', 'shipped']`},
		{"event_meta", `event.entity_type == 'Order' && event.tenant_id != null`},
		{"changes", `changes.status.old == 'pending'`},
		{"combined", `(status == 'shipped' || status == 'delivered') && field_changed('status') && !archived && total >= 100`},
	}
	for _, bb := range benches {
		c := mustCompileCondition(b, bb.cond)
		if !c.Eval(ev) {
			b.Fatalf("%q is false on the benchmark event; the benchmark would measure a short cut", bb.cond)
		}
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c.Eval(ev)
			}
		})
	}
}

// BenchmarkMatch100Observers measures the per-event routing cost: 100
// observers over 10 entity types, matched by entity and kind, then each
// match's condition evaluated.
func BenchmarkMatch100Observers(b *testing.B) {
	conds := []string{
		`status == 'shipped'`,
		`total > 100 && status != 'cancelled'`,
		`field_changed('status')`,
		`field_changed_to('status', 'shipped')`,
		`customer.tier in ['gold', 'platinum']`,
		`event.tenant_id == 't-1' && is_active`,
		`has_field('email') && !archived`,
		`before.status == 'pending' && qty >= 3`,
		`changes.status.new == 'shipped'`,
		`!(status in ['cancelled', 'refunded']) || total <= 10`,
	}
	kinds := [][]EventType{{EventUpdate}, {EventInsert, EventUpdate}, {EventUpdate, EventDelete}, {EventInsert}}
	obs := make([]Observer, 100)
	for i := range obs {
		obs[i] = Observer{
			Name:      fmt.Sprintf("observer-%d", i),
			Entity:    fmt.Sprintf("Entity%d", i%10),
			Events:    kinds[i%len(kinds)],
			Condition: mustCompileCondition(b, conds[(i/10)%len(conds)]),
		}
	}
	m := NewMatcher(obs)
	events := make([]*Event, 10)
	for i := range events {
		ev := condUpdateEvent(b)
		ev.EntityType = fmt.Sprintf("Entity%d", i)
		events[i] = ev
	}
	matched, fired := 0, 0
	for _, ev := range events {
		for _, o := range m.Match(ev) {
			matched++
			if o.Condition.Eval(ev) {
				fired++
			}
		}
	}
	if matched == 0 || fired == 0 || fired == matched {
		b.Fatalf("matched %d, fired %d: the setup does not exercise both outcomes", matched, fired)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		ev := events[i%len(events)]
		i++
		for _, o := range m.Match(ev) {
			o.Condition.Eval(ev)
		}
	}
}
