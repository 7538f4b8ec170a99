package domain

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// stdDecodeObject is DecodeObject as it was: encoding/json's Decoder
// with UseNumber, one value, then EOF.
func stdDecodeObject(b []byte) (map[string]any, error) {
	if t := bytes.TrimSpace(b); len(t) == 0 || string(t) == "null" {
		return map[string]any{}, nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if err := expectEOF(dec); err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, ErrInvalidEvent
	}
	return m, nil
}

var decodeCases = []string{
	`{}`, ` { } `, `{"a":1}`, "\t{\"a\" : [1, -0, 0.5, 1e3, -2E-7, 10.25e+2]}\n\r",
	`{"s":"plain","e":"esc \" \\ \/ \b \f \n \r \t \u00e9 \ud83c\udf89 \ud800 \udc00x \u0000"}`,
	`{"utf8":"日本 é 🎉","bad":"a` + "\xff" + `b","ctl7f":"` + "\x7f" + `"}`,
	`{"n":null,"t":true,"f":false,"arr":[[],[{}],[null,true,"x"]],"obj":{"k":{"k":{"k":1}}}}`,
	`{"dup":1,"dup":2}`, `{"":""}`,
	// refused, or not objects: the fallback decides
	`[1]`, `"s"`, `1`, `true`, `{"a":01}`, `{"a":1.}`, `{"a":.5}`, `{"a":-}`, `{"a":1e}`, `{"a":+1}`,
	`{"a":"x` + "\n" + `"}`, `{"a":"\x"}`, `{"a":"\u12"}`, `{"a":1,}`, `{"a" 1}`, `{a:1}`, `{"a":1}x`, `{"a":1} {}`,
	`{"a":tru}`, `{"a":nul}`, `{"a":[1,]}`, `{"a":[1 2]}`, `{"a":1`, `{"a":"`, `{"a":"\`, `{`, `{"a":NaN}`,
	"\ufeff{}", `{"a":1}` + "\x00",
}

func TestDecodeObjectMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	deep := strings.Repeat(`{"a":`, maxJSONDepth+1) + "1" + strings.Repeat("}", maxJSONDepth+1)
	notDeep := strings.Repeat(`[`, maxJSONDepth-1) + strings.Repeat("]", maxJSONDepth-1)
	for _, in := range append(decodeCases, deep, `{"a":`+notDeep+`}`) {
		checkDecodeObject(t, []byte(in))
	}
}

func checkDecodeObject(t *testing.T, in []byte) {
	t.Helper()
	want, wantErr := stdDecodeObject(in)
	got, err := DecodeObject(in)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("DecodeObject(%.80q) error = %v, encoding/json: %v", in, err, wantErr)
	}
	if err == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("DecodeObject(%.80q) = %#v, encoding/json: %#v", in, got, want)
	}
	if fast, ok := decodeObjectFast(in); ok && (wantErr != nil || !reflect.DeepEqual(fast, want)) {
		t.Fatalf("decodeObjectFast(%.80q) accepted %#v, encoding/json: %#v, %v", in, fast, want, wantErr)
	}
}

// TestDecodeObjectFastTakesTheCommonCase: change-log rows (jsonb text) are
// parsed without the fallback.
func TestDecodeObjectFastTakesTheCommonCase(t *testing.T) {
	t.Parallel()
	for _, in := range []string{`{"n": 1, "status": "new"}`, `{"a": {"b": [1, 2.5, "x\"y", null, true]}, "c": "é"}`} {
		if _, ok := decodeObjectFast([]byte(in)); !ok {
			t.Errorf("decodeObjectFast(%q) fell back", in)
		}
	}
}

func FuzzDecodeObject(f *testing.F) {
	for _, s := range decodeCases {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		checkDecodeObject(t, []byte(in))
	})
}

func BenchmarkDecodeObject(b *testing.B) {
	in := []byte(`{"id": 12345, "status": "shipped", "total": 99.90, "customer": {"tier": "gold", "email": "a@example.com"}, "items": ["x", "y"]}`)
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := DecodeObject(in); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := stdDecodeObject(in); err != nil {
				b.Fatal(err)
			}
		}
	})
}
