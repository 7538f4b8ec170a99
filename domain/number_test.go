package domain

import (
	"encoding/json"
	"fmt"
	"math/big"
	"math/rand/v2"
	"strings"
	"testing"
)

// ratCompare is the reference: exact rationals from math/big, usable only
// on small inputs (big.Rat refuses exponents beyond a million and is
// super-linear in the number of digits).
func ratCompare(t testing.TB, a, b string) (int, bool) {
	t.Helper()
	x, ok1 := new(big.Rat).SetString(a)
	y, ok2 := new(big.Rat).SetString(b)
	if !ok1 || !ok2 {
		return 0, false
	}
	return x.Cmp(y), true
}

func TestCompareDecimals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		a, b string
		want int
	}{
		{"100.00", "100", 0},
		{"0", "-0", 0},
		{"-0.0", "0e-7", 0},
		{"0.000", "0e10", 0},
		{"1e2", "100", 0},
		{"1E+2", "10000e-2", 0},
		{"0.1", "1e-1", 0},
		{"007", "7", 0},
		{"007.500", "75e-1", 0},
		{"1e0000002", "100", 0},
		{"1", "2", -1},
		{"-1", "-2", 1},
		{"-1", "1", -1},
		{"0", "0.0001", -1},
		{"-0.0001", "0", -1},
		{"100.0001", "100", 1},
		{"99.999", "100", -1},
		{"123456789012345678901234567890", "123456789012345678901234567891", -1},
		{"1.5", "1.25", 1},
		{"10", "9.99999999999999999999", 1},
		{"1e300", "1e299", 1},
		{"-1e300", "-1e299", -1},
		{"1e-300", "0", 1},
		{"12.340", "1234e-2", 0},
		{"9007199254740993", "9007199254740992", 1},
	}
	for _, tt := range tests {
		t.Run(tt.a+" vs "+tt.b, func(t *testing.T) {
			t.Parallel()
			if ref, ok := ratCompare(t, tt.a, tt.b); !ok || ref != tt.want {
				t.Fatalf("big.Rat says %d, %v; the expectation is wrong", ref, ok)
			}
			for _, c := range []struct {
				a, b string
				want int
			}{{tt.a, tt.b, tt.want}, {tt.b, tt.a, -tt.want}} {
				if got, ok := compareDecimals(c.a, c.b); !ok || got != c.want {
					t.Errorf("compareDecimals(%s, %s) = %d, %v; want %d", c.a, c.b, got, ok, c.want)
				}
				if got, ok := CompareNumbers(json.Number(c.a), json.Number(c.b)); !ok || got != c.want {
					t.Errorf("CompareNumbers(%s, %s) = %d, %v; want %d", c.a, c.b, got, ok, c.want)
				}
				if eq := ValuesEqual(json.Number(c.a), json.Number(c.b)); eq != (c.want == 0) {
					t.Errorf("ValuesEqual(%s, %s) = %v", c.a, c.b, eq)
				}
			}
		})
	}
	for _, bad := range []string{"", "-", "1.", ".5", "1e", "1e+", "+1", "1/2", "0x10", "1.5.5", "1e5e5", "--1", "1 ", " 1", "Infinity", "NaN"} {
		if _, ok := compareDecimals(bad, "1"); ok {
			t.Errorf("compareDecimals(%q, 1) accepted the input", bad)
		}
		if _, ok := compareDecimals("1", bad); ok {
			t.Errorf("compareDecimals(1, %q) accepted the input", bad)
		}
	}
}

// TestCompareDecimalsHugeExponents covers exponents beyond int64, where
// the point is kept as decimal digits: the comparison stays exact.
func TestCompareDecimalsHugeExponents(t *testing.T) {
	t.Parallel()
	e := "100000000000000000000000" // 10^23
	eMinus1 := "99999999999999999999999"
	tests := []struct {
		name, a, b string
		want       int
	}{
		{"same value different spelling", "1e" + e, "10e" + eMinus1, 0},
		{"leading zeros in exponent", "1e" + e, "1e000" + e, 0},
		{"fraction digits shift the point", "0.001e" + e, "1e99999999999999999999997", 0},
		{"one more power of ten", "1e" + e, "9e" + eMinus1, 1},
		{"digits decide at equal points", "1.5e" + e, "1.25e" + e, 1},
		{"huge negative exponent above zero", "1e-" + e, "0", 1},
		{"huge negative exponents", "1e-" + e, "1e-" + eMinus1, -1},
		{"negative numbers", "-1e" + e, "-1e" + eMinus1, -1},
		{"huge exponent against a small one", "1e" + e, "9e18", 1},
		{"offset carries across 10^18", "1e1000000000000000000", "0.0001e1000000000000000004", 0},
		{"offset borrows across 10^18", "1e1000000000000000000", "10000e999999999999999996", 0},
		{"at the small boundary", "1e999999999999999999", "0.1e1000000000000000000", 0},
		{"boundary neighbours", "1e999999999999999999", "1e1000000000000000000", -1},
		{"beyond int64", "1e99999999999999999999", "1e9223372036854775807", 1},
		{"negative boundary", "1e-999999999999999999", "10e-1000000000000000000", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got, ok := compareDecimals(tt.a, tt.b); !ok || got != tt.want {
				t.Errorf("compareDecimals(%s, %s) = %d, %v; want %d", tt.a, tt.b, got, ok, tt.want)
			}
			if got, ok := compareDecimals(tt.b, tt.a); !ok || got != -tt.want {
				t.Errorf("compareDecimals(%s, %s) = %d, %v; want %d", tt.b, tt.a, got, ok, -tt.want)
			}
		})
	}
}

// TestCompareDecimalsProperty checks random small numbers, each written in
// several spellings of the same value, against big.Rat.
func TestCompareDecimalsProperty(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(8, 6))
	random := func() string {
		var b strings.Builder
		if rng.IntN(3) == 0 {
			b.WriteByte('-')
		}
		for range 1 + rng.IntN(6) {
			b.WriteByte(byte('0' + rng.IntN(10)))
		}
		if rng.IntN(2) == 0 {
			b.WriteByte('.')
			for range 1 + rng.IntN(6) {
				b.WriteByte(byte('0' + rng.IntN(10)))
			}
		}
		if rng.IntN(2) == 0 {
			fmt.Fprintf(&b, "e%d", rng.IntN(21)-10)
		}
		return b.String()
	}
	// respell writes the value of s differently: zeros added around the
	// digits and the decimal point moved by k with the exponent moved back.
	respell := func(s string) string {
		r, _ := new(big.Rat).SetString(s)
		k := rng.IntN(9) - 4
		scaled := new(big.Rat).Mul(r, new(big.Rat).SetFrac(pow10(max(-k, 0)), pow10(max(k, 0))))
		return scaled.FloatString(40) + "0e" + fmt.Sprint(k)
	}
	for range 20000 {
		a, b := random(), random()
		if rng.IntN(4) == 0 {
			b = respell(a)
		}
		want, ok := ratCompare(t, a, b)
		if !ok {
			t.Fatalf("reference refused %q or %q", a, b)
		}
		if got, ok := compareDecimals(a, b); !ok || got != want {
			t.Fatalf("compareDecimals(%s, %s) = %d, %v; big.Rat says %d", a, b, got, ok, want)
		}
	}
}

func pow10(n int) *big.Int { return new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(n)), nil) }

// FuzzCompareDecimals checks the comparison against big.Rat on any pair
// of inputs big.Rat parses in little time, and that inputs which are not
// JSON numbers are refused.
func FuzzCompareDecimals(f *testing.F) {
	for _, s := range [][2]string{{"100.00", "100"}, {"-0", "0"}, {"1e3", "999.9"}, {"-1.5e-3", "-0.0015"}, {"007", "7.0"}, {"1E+02", "100"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		if len(a) > 64 || len(b) > 64 {
			return
		}
		got, ok := compareDecimals(a, b)
		if !ok {
			return
		}
		if !validNumber(a) || !validNumber(b) {
			return // exponents beyond the reference's reach
		}
		want, wantOK := ratCompare(t, a, b)
		if !wantOK || got != want {
			t.Fatalf("compareDecimals(%q, %q) = %d; big.Rat = %d, %v", a, b, got, want, wantOK)
		}
	})
}

// TestCompareNumbersLinear makes sure the comparison of the largest
// numbers jsonb holds does not convert them: the allocation count stays
// constant whatever the length. Not parallel: AllocsPerRun refuses.
func TestCompareNumbersLinear(t *testing.T) {
	x, y := num(hugeNumber('1')), num(hugeNumber('2'))
	allocs := testing.AllocsPerRun(5, func() {
		if c, ok := CompareNumbers(x, y); !ok || c != -1 {
			t.Fatalf("CompareNumbers = %d, %v; want -1", c, ok)
		}
		if ValuesEqual(x, y) {
			t.Fatal("ValuesEqual of different numbers")
		}
	})
	if allocs != 0 {
		t.Errorf("comparing two %d-character numbers allocates %.0f times; want none", len(x), allocs)
	}
}
