package domain

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// hugeNumber is the largest number jsonb accepts: 131,072 integer digits
// and 16,383 fraction digits (about 147 kB of text), ending in last.
func hugeNumber(last byte) string {
	var b strings.Builder
	b.Grow(131072 + 1 + 16383)
	b.WriteByte('9')
	b.WriteString(strings.Repeat("8", 131071))
	b.WriteByte('.')
	b.WriteString(strings.Repeat("7", 16382))
	b.WriteByte(last)
	return b.String()
}

// hostileRows are UPDATE rows whose content is the most a change-log row
// can hold of one kind; each costs the reader its decoding and diff.
func hostileRows(b *testing.B) map[string][2]string {
	b.Helper()
	deep := func(depth int, leaf string) string {
		return `{"v":` + strings.Repeat("[", depth) + leaf + strings.Repeat("]", depth) + `}`
	}
	manyKeys := func(n int, v string) string {
		var s strings.Builder
		s.WriteByte('{')
		for i := range n {
			if i > 0 {
				s.WriteByte(',')
			}
			fmt.Fprintf(&s, `"k%d":%s`, i, v)
		}
		s.WriteByte('}')
		return s.String()
	}
	str := func(n int, last string) string { return `{"s":"` + strings.Repeat("x", n) + last + `"}` }
	return map[string][2]string{
		"huge-number-147kB":    {`{"n":` + hugeNumber('1') + `}`, `{"n":` + hugeNumber('2') + `}`},
		"many-numbers-1000x":   {manyKeys(1000, "1"+strings.Repeat("0", 150)+".5"), manyKeys(1000, "1"+strings.Repeat("0", 150)+".50")}, // equal: every pair is compared in full
		"deep-nesting-2500":    {deep(2500, "1"), deep(2500, "2")},
		"deep-nesting-10000":   {deep(9999, "1"), deep(9999, "2")},
		"string-1MB":           {str(1<<20, "a"), str(1<<20, "b")},
		"string-4MB":           {str(4<<20, "a"), str(4<<20, "b")},
		"keys-25000":           {manyKeys(25000, "1"), manyKeys(25000, "2")},
		"keys-100000":          {manyKeys(100000, "1"), manyKeys(100000, "2")},
		"escaped-string-1MB":   {`{"s":"` + strings.Repeat(`\u00e9`, 1<<18) + `"}`, `{"s":"` + strings.Repeat(`\u00e8`, 1<<18) + `"}`},
		"small-order-baseline": {`{"status":"new","total":12.50}`, `{"status":"shipped","total":12.5}`},
	}
}

// BenchmarkNewEventFromChangeHostile measures what the reader goroutine
// spends on one hostile UPDATE row (decode both images and diff them).
// Per-byte cost should stay flat as the content grows.
func BenchmarkNewEventFromChangeHostile(b *testing.B) {
	rows := hostileRows(b)
	names := make([]string, 0, len(rows))
	for n := range rows {
		names = append(names, n)
	}
	for _, name := range names {
		row := rows[name]
		b.Run(name, func(b *testing.B) {
			raw := RawChange{
				ID: "e1", CreatedAt: time.Unix(0, 0), ObjectType: "Order", ModificationType: "UPDATE",
				ObjectID: "o1", ObjectDataBefore: []byte(row[0]), ObjectData: []byte(row[1]),
			}
			b.SetBytes(int64(len(row[0]) + len(row[1])))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := NewEventFromChange(raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCompareHugeNumbers compares two 147 kB numbers that differ in
// their last digit, the case that took seconds with exact fractions.
func BenchmarkCompareHugeNumbers(b *testing.B) {
	x, y := hugeNumber('1'), hugeNumber('2')
	b.SetBytes(int64(len(x) + len(y)))
	for b.Loop() {
		if c, ok := CompareNumbers(num(x), num(y)); !ok || c != -1 {
			b.Fatal("wrong order: " + strconv.Itoa(c))
		}
	}
}
