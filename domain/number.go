package domain

import (
	"cmp"
	"encoding/json"
	"math"
	"strconv"
	"strings"
)

// Numbers are compared exactly without converting them: a JSON number is
// read as sign × 0.d₁d₂…dₙ × 10^point, with the significant digits d
// stripped of leading and trailing zeros, and two numbers compare by sign,
// then point, then digits. Cost and memory are linear in the length of the
// text however long the number or its exponent, so a hostile event (jsonb
// allows 131,072 integer digits; a json column or a message allows any
// exponent) cannot stall the goroutine that compares it.

// decimal is a parsed JSON number.
type decimal struct {
	s        string
	neg      bool
	zero     bool
	i0       int // integer digits start at s[i0]
	intCount int // number of integer digits
	f0       int // fraction digits start at s[f0]
	lead, n  int // significant digits are digit(lead) … digit(lead+n-1)
	point    exponent
}

// exponent is a power of ten that may exceed int64: small holds it when
// big is "", else big holds the decimal digits of its magnitude (without
// leading zeros, at least 19 of them) and neg its sign.
type exponent struct {
	small int64
	big   string
	neg   bool
}

// smallExponentDigits is the most exponent digits read into an int64: any
// value below 10^18 plus an offset no longer than a string fits.
const smallExponentDigits = 18

func (d *decimal) digit(k int) byte {
	if k < d.intCount {
		return d.s[d.i0+k]
	}
	return d.s[d.f0+k-d.intCount]
}

// parseDecimal parses the JSON number grammar
// -?digits(.digits)?([eE][+-]?digits)? (leading zeros accepted); ok is
// false for anything else. It allocates only for exponents of more than
// 18 digits.
func parseDecimal(s string) (d decimal, ok bool) {
	if len(s) == 0 {
		return d, false
	}
	d.s = s
	i := 0
	if s[0] == '-' {
		d.neg = true
		i++
	}
	digits := func() (int, int) {
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		return start, i
	}
	i0, i1 := digits()
	if i0 == i1 {
		return d, false
	}
	f0, f1 := i, i
	if i < len(s) && s[i] == '.' {
		i++
		if f0, f1 = digits(); f0 == f1 {
			return d, false
		}
	}
	var (
		expNeg bool
		e0, e1 int
	)
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			expNeg = s[i] == '-'
			i++
		}
		if e0, e1 = digits(); e0 == e1 {
			return d, false
		}
	}
	if i != len(s) {
		return d, false
	}
	d.i0, d.intCount, d.f0 = i0, i1-i0, f0
	total := d.intCount + f1 - f0
	lead := 0
	for lead < total && d.digit(lead) == '0' {
		lead++
	}
	if lead == total {
		d.zero = true
		return d, true
	}
	trail := total
	for d.digit(trail-1) == '0' {
		trail--
	}
	d.lead, d.n = lead, trail-lead
	// point = exponent + (integer digits before the first significant one).
	offset := int64(d.intCount - lead)
	for e0 < e1-1 && s[e0] == '0' {
		e0++
	}
	if e1-e0 <= smallExponentDigits {
		var e int64
		for _, c := range s[e0:e1] {
			e = e*10 + int64(c-'0')
		}
		if expNeg {
			e = -e
		}
		d.point = exponent{small: e + offset}
		return d, true
	}
	// |exponent| ≥ 10^18 > |offset|: the sign is the exponent's and the
	// magnitude moves by the offset towards or away from zero.
	if expNeg {
		offset = -offset
	}
	d.point = exponent{big: addSmall(s[e0:e1], offset), neg: expNeg}
	return d, true
}

// addSmall returns the decimal digits of digits + delta, where digits
// (no leading zeros) is at least 10^18 and |delta| < 10^18, so the result
// is positive.
func addSmall(digits string, delta int64) string {
	hi, lo := digits[:len(digits)-smallExponentDigits], digits[len(digits)-smallExponentDigits:]
	low, _ := strconv.ParseInt(lo, 10, 64) // 18 digits always fit
	low += delta
	const base = 1_000_000_000_000_000_000 // 10^18
	b := []byte(hi)
	switch {
	case low >= base:
		low -= base
		b = incrementDigits(b)
	case low < 0:
		low += base
		b = decrementDigits(b)
	}
	out := strings.TrimLeft(string(b), "0")
	lowText := strconv.FormatInt(low, 10)
	if out == "" {
		return lowText
	}
	return out + strings.Repeat("0", smallExponentDigits-len(lowText)) + lowText
}

func incrementDigits(b []byte) []byte {
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] != '9' {
			b[i]++
			return b
		}
		b[i] = '0'
	}
	return append([]byte{'1'}, b...)
}

// decrementDigits subtracts one from a positive decimal.
func decrementDigits(b []byte) []byte {
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] != '0' {
			b[i]--
			return b
		}
		b[i] = '9'
	}
	return b
}

// compareExponents orders two exponents exactly.
func compareExponents(x, y exponent) int {
	if x.big == "" && y.big == "" {
		return cmp.Compare(x.small, y.small)
	}
	sx, mx := x.signed()
	sy, my := y.signed()
	if sx != sy {
		return cmp.Compare(sx, sy)
	}
	mag := cmp.Compare(len(mx), len(my))
	if mag == 0 {
		mag = strings.Compare(mx, my)
	}
	return sx * mag
}

// signed returns the sign (-1, 0, 1) and decimal magnitude of e.
func (e exponent) signed() (int, string) {
	if e.big != "" {
		if e.neg {
			return -1, e.big
		}
		return 1, e.big
	}
	switch {
	case e.small < 0:
		// -(MinInt64) overflows, but |small| < 10^18 + len(s) here.
		return -1, strconv.FormatInt(-e.small, 10)
	case e.small > 0:
		return 1, strconv.FormatInt(e.small, 10)
	}
	return 0, "0"
}

// compareParsed orders two parsed numbers exactly.
func compareParsed(x, y *decimal) int {
	sign := func(d *decimal) int {
		switch {
		case d.zero:
			return 0
		case d.neg:
			return -1
		}
		return 1
	}
	sx, sy := sign(x), sign(y)
	if sx != sy || sx == 0 {
		return cmp.Compare(sx, sy)
	}
	// Same sign, both non-zero: compare magnitudes, then apply the sign.
	mag := compareExponents(x.point, y.point)
	for k := 0; mag == 0 && k < min(x.n, y.n); k++ {
		mag = cmp.Compare(x.digit(x.lead+k), y.digit(y.lead+k))
	}
	if mag == 0 {
		mag = cmp.Compare(x.n, y.n)
	}
	return sx * mag
}

// compareDecimals compares two JSON numbers exactly; ok is false when
// either is not a JSON number.
func compareDecimals(a, b string) (int, bool) {
	x, ok := parseDecimal(a)
	if !ok {
		return 0, false
	}
	y, ok := parseDecimal(b)
	if !ok {
		return 0, false
	}
	return compareParsed(&x, &y), true
}

// numberOf reads a JSON number or a Go number as a decimal; ok is false
// for anything else (strings are not numbers) and for NaN and infinities.
func numberOf(v any) (decimal, bool) {
	switch n := v.(type) {
	case json.Number:
		return parseDecimal(string(n))
	case float64:
		// A float64 comes from decimal text (a config file, a literal): read
		// it as the shortest decimal that round-trips, so 0.1 equals the
		// JSON number 0.1 rather than its binary approximation.
		if math.IsNaN(n) || math.IsInf(n, 0) {
			return decimal{}, false
		}
		return parseDecimal(strconv.FormatFloat(n, 'g', -1, 64))
	case int:
		return parseDecimal(strconv.Itoa(n))
	case int64:
		return parseDecimal(strconv.FormatInt(n, 10))
	}
	return decimal{}, false
}
