package config

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"time"

	"github.com/go-viper/mapstructure/v2"
)

var durationType = reflect.TypeOf(time.Duration(0))

// decodeHook turns the file's values into the struct's types, refusing
// what would be read wrongly: a bare number where a duration is expected
// (mapstructure would read `timeout = 5` as 5ns) and a fraction where an
// integer is expected (it would truncate 3.7 to 3). The error becomes a
// ConfigError naming the key (decodeError). A single string where a list
// of strings is expected is that one-element list (`to = "ops@x.com"`).
func decodeHook() mapstructure.DecodeHookFunc {
	return mapstructure.ComposeDecodeHookFunc(strictNumbers, oneStringList, mapstructure.StringToTimeDurationHookFunc())
}

var stringsType = reflect.TypeOf([]string(nil))

// oneStringList reads a string given for a list of strings as a list of
// one.
func oneStringList(from, to reflect.Type, data any) (any, error) {
	if to == stringsType && from.Kind() == reflect.String {
		return []string{data.(string)}, nil
	}
	return data, nil
}

func strictNumbers(from, to reflect.Type, data any) (any, error) {
	if to == durationType {
		if from != durationType && isNumberKind(from.Kind()) {
			return nil, fmt.Errorf("%v is a number, not a duration: write a duration string such as \"5s\" (units ns, us, ms, s, m, h)", data)
		}
		return data, nil
	}
	if isIntKind(to.Kind()) && (from.Kind() == reflect.Float32 || from.Kind() == reflect.Float64) {
		f := reflect.ValueOf(data).Float()
		if f != math.Trunc(f) || math.IsInf(f, 0) || math.IsNaN(f) {
			return nil, fmt.Errorf("%s is not a whole number: write an integer such as %s", strconv.FormatFloat(f, 'g', -1, 64), strconv.FormatFloat(math.Trunc(f), 'f', 0, 64))
		}
	}
	return data, nil
}

func isIntKind(k reflect.Kind) bool {
	switch k {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return true
	}
	return false
}

func isNumberKind(k reflect.Kind) bool {
	return isIntKind(k) || k == reflect.Float32 || k == reflect.Float64
}
