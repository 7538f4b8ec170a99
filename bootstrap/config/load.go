package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/parsers/toml/v2"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/rawbytes"
	"github.com/knadh/koanf/providers/structs"
	"github.com/knadh/koanf/v2"
	gotoml "github.com/pelletier/go-toml/v2"
)

// EnvPrefix starts every environment override.
const EnvPrefix = "FRAISEQL_"

// ConfigError is a configuration problem; Key names the offending key.
type ConfigError struct {
	File string
	Key  string
	Msg  string
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File + ": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Load reads defaults, then path (when not empty), then the environment
// (environ, usually os.Environ()), and validates the result. Every error is
// a *ConfigError or wraps one, naming the file and key.
func Load(path string, environ []string) (Config, error) {
	k := koanf.New(".")
	if err := k.Load(structs.Provider(Defaults(), "koanf"), nil); err != nil {
		return Config{}, fmt.Errorf("load defaults: %w", err)
	}
	known := map[string]reflect.Kind{}
	collectKeys(reflect.TypeOf(Config{}), "", known)

	var fileKeys []string
	if path != "" {
		raw, err := os.ReadFile(path)
		if err != nil {
			return Config{}, &ConfigError{File: path, Msg: err.Error()}
		}
		var probe map[string]any
		if err := gotoml.Unmarshal(raw, &probe); err != nil {
			return Config{}, tomlError(path, raw, err)
		}
		if err := checkArrayTables(path, probe); err != nil {
			return Config{}, err
		}
		kf := koanf.New(".")
		if err := kf.Load(rawbytes.Provider(raw), toml.Parser()); err != nil {
			return Config{}, &ConfigError{File: path, Msg: err.Error()}
		}
		for _, key := range kf.Keys() {
			if _, ok := known[key]; !ok && !underKnownMap(key, known) {
				return Config{}, &ConfigError{File: path, Key: key, Msg: "unknown key" + suggest(key, known)}
			}
		}
		fileKeys = kf.Keys()
		if err := k.Merge(kf); err != nil {
			return Config{}, &ConfigError{File: path, Msg: err.Error()}
		}
	}

	var envErrs []error
	envKeys := map[string]string{}
	for key := range known {
		envKeys[EnvPrefix+strings.ToUpper(strings.ReplaceAll(key, ".", "_"))] = key
	}
	err := k.Load(env.Provider(".", env.Opt{
		Prefix:      EnvPrefix,
		EnvironFunc: func() []string { return environ },
		TransformFunc: func(name, value string) (string, any) {
			key, ok := envKeys[name]
			if !ok || known[key] == reflect.Array {
				return "", nil // another program's FRAISEQL_* variable, or a secret named by *_env
			}
			v, err := parseEnvValue(known[key], value)
			if err != nil {
				envErrs = append(envErrs, &ConfigError{Key: key, Msg: fmt.Sprintf("environment variable %s: %v", name, err)})
				return "", nil
			}
			return key, v
		},
	}), nil)
	if err != nil {
		return Config{}, fmt.Errorf("load environment: %w", err)
	}
	if len(envErrs) > 0 {
		return Config{}, errors.Join(envErrs...)
	}

	var cfg Config
	dc := &mapstructure.DecoderConfig{
		DecodeHook:  decodeHook(),
		ErrorUnused: true,
		TagName:     "koanf",
		Result:      &cfg,
	}
	dec, err := mapstructure.NewDecoder(dc)
	if err != nil {
		return Config{}, err
	}
	if err := dec.Decode(k.Raw()); err != nil {
		return Config{}, decodeError(path, err, k.Get)
	}
	cfg.File = path
	cfg.explicit = explicitKeys(fileKeys, environ, envKeys)
	cfg.applyTopologyDefaults()
	if err := cfg.Validate(); err != nil {
		var ce *ConfigError
		if errors.As(err, &ce) && ce.File == "" {
			ce.File = path
		}
		return Config{}, err
	}
	return cfg, nil
}

// collectKeys records every leaf key path of t with its kind.
func collectKeys(t reflect.Type, prefix string, out map[string]reflect.Kind) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("koanf")
		if tag == "" || tag == "-" {
			continue
		}
		key := tag
		if prefix != "" {
			key = prefix + "." + tag
		}
		ft := f.Type
		if ft.Kind() == reflect.Struct && ft != reflect.TypeOf(time.Duration(0)) {
			collectKeys(ft, key, out)
			continue
		}
		kind := ft.Kind()
		switch {
		case ft == reflect.TypeOf(time.Duration(0)):
			kind = reflect.Interface // marks durations
		case kind == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			kind = reflect.Array // marks tables ([[observers]], [[databases]]): not settable from the environment
		}
		out[key] = kind
	}
}

func underKnownMap(key string, known map[string]reflect.Kind) bool {
	for k, kind := range known {
		if kind == reflect.Map && strings.HasPrefix(key, k+".") {
			return true
		}
	}
	return false
}

func suggest(key string, known map[string]reflect.Kind) string {
	last := key[strings.LastIndex(key, ".")+1:]
	var cands []string
	for k := range known {
		if strings.HasSuffix(k, "."+last) || k == last {
			cands = append(cands, k)
		}
	}
	sort.Strings(cands)
	if len(cands) > 0 {
		return " (did you mean " + strings.Join(cands, " or ") + "?)"
	}
	return ""
}

func parseEnvValue(kind reflect.Kind, v string) (any, error) {
	switch kind {
	case reflect.Bool:
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, fmt.Errorf("%q is not a boolean", v)
		}
		return b, nil
	case reflect.Int64:
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not an integer (a whole number such as 3)", v)
		}
		return n, nil
	case reflect.Int:
		n, err := strconv.Atoi(v)
		if err != nil {
			return nil, fmt.Errorf("%q is not an integer (a whole number such as 3)", v)
		}
		return n, nil
	case reflect.Float64:
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not a number", v)
		}
		return f, nil
	case reflect.Interface: // duration
		d, err := time.ParseDuration(v)
		if err != nil {
			return nil, fmt.Errorf("%q is not a duration: write a duration string such as \"5s\" (units ns, us, ms, s, m, h)", v)
		}
		return d, nil
	case reflect.Map: // NAME=VALUE pairs, comma-separated
		out := map[string]any{}
		for p := range strings.SplitSeq(v, ",") {
			if p = strings.TrimSpace(p); p == "" {
				continue
			}
			k, val, ok := strings.Cut(p, "=")
			if k, val = strings.TrimSpace(k), strings.TrimSpace(val); !ok || k == "" || val == "" {
				return nil, fmt.Errorf("%q is not a list of NAME=VALUE pairs separated by commas", p)
			}
			out[k] = val
		}
		return out, nil
	case reflect.Slice:
		var out []string
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
		return out, nil
	default:
		return v, nil
	}
}

// tomlError names the line and column of a syntax error.
func tomlError(path string, raw []byte, err error) error {
	var de *gotoml.DecodeError
	if errors.As(err, &de) {
		row, col := de.Position()
		return &ConfigError{File: fmt.Sprintf("%s:%d:%d", path, row, col), Msg: strings.TrimPrefix(de.Error(), "toml: ")}
	}
	if line, msg := structureError(raw, err.Error()); line > 0 {
		return &ConfigError{File: fmt.Sprintf("%s:%d", path, line), Msg: msg}
	}
	return &ConfigError{File: path, Msg: err.Error()}
}

// The TOML parser's errors of a file's structure, which carry no position.
var (
	keyTwice      = regexp.MustCompile(`^toml: key (\S+) is already defined$`)
	tableTwice    = regexp.MustCompile(`^toml: table (\S+) already exists$`)
	tableForArray = regexp.MustCompile(`^toml: key (\S+) should be a table, not a array table$`)
	arrayForTable = regexp.MustCompile(`^toml: key table already exists as a (\S+),\s+but should be an array table$`)
)

// structureError finds the line of raw a TOML structure error (msg)
// points at, and says what is wrong in the file's terms; 0 when msg is
// not one of them or the line is not found.
func structureError(raw []byte, msg string) (int, string) {
	lines := strings.Split(string(raw), "\n")
	nth := func(re *regexp.Regexp, n int) int { // the line of re's n-th match, from 1
		for i, l := range lines {
			if re.MatchString(l) {
				if n--; n == 0 {
					return i + 1
				}
			}
		}
		return 0
	}
	last := func(name string) string { // a dotted name's last part, as a line writes it
		return regexp.QuoteMeta(name[strings.LastIndex(name, ".")+1:])
	}
	whole := func(name string) string { return strings.ReplaceAll(regexp.QuoteMeta(name), `\.`, `\s*\.\s*`) }
	if m := keyTwice.FindStringSubmatch(msg); m != nil {
		return nth(regexp.MustCompile(`^\s*"?`+last(m[1])+`"?\s*=`), 2), "key " + m[1] + " is set a second time here"
	}
	if m := tableTwice.FindStringSubmatch(msg); m != nil {
		return nth(regexp.MustCompile(`^\s*\[\s*`+whole(m[1])+`\s*\]`), 2), "[" + m[1] + "] a second time here: write its keys under the first"
	}
	if m := tableForArray.FindStringSubmatch(msg); m != nil {
		return nth(regexp.MustCompile(`^\s*\[\s*`+whole(m[1])+`\s*\]`), 1), "[" + m[1] + "] after [[" + m[1] + "]]: write [[" + m[1] + "]]"
	}
	if m := arrayForTable.FindStringSubmatch(msg); m != nil {
		return nth(regexp.MustCompile(`^\s*\[\[\s*`+whole(m[1])+`\s*\]\]`), 1), "[[" + m[1] + "]] after [" + m[1] + "]: " + m[1] + " is one table, write [" + m[1] + "]"
	}
	return 0, ""
}

var decodeLine = regexp.MustCompile(`^'([^']*)' (.*)$`)

// decodeError turns mapstructure's first message into a ConfigError naming
// the key: unknown keys and values of the wrong type or format.
func decodeError(path string, err error, value func(key string) any) error {
	for _, l := range strings.Split(err.Error(), "\n") {
		l = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "*"))
		m := decodeLine.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		key, msg := m[1], m[2]
		if rest, ok := strings.CutPrefix(msg, "has invalid keys: "); ok {
			if key == "" {
				return &ConfigError{File: path, Key: rest, Msg: "unknown key"}
			}
			return &ConfigError{File: path, Key: key + "." + rest, Msg: "unknown key"}
		}
		if strings.Contains(msg, "time: ") {
			msg = "not a duration (use e.g. \"500ms\", \"5s\", \"5m\"): " + msg[strings.Index(msg, "time: ")+6:]
			if v, ok := value(key).(string); ok {
				msg = fmt.Sprintf("%q is %s", v, msg)
				if strings.HasSuffix(strings.TrimSpace(v), "d") || strings.HasSuffix(strings.TrimSpace(v), "w") {
					msg += " (the largest unit is h: write 24h for a day, 168h for a week)"
				}
			}
		}
		return &ConfigError{File: path, Key: key, Msg: msg}
	}
	return &ConfigError{File: path, Msg: err.Error()}
}

// checkArrayTables refuses a single table where the configuration takes
// an array of tables ([observers] for [[observers]], [observers.actions]
// for [[observers.actions]], [databases] for [[databases]]), which the
// decoder would otherwise report as unknown keys or a type mismatch.
func checkArrayTables(path string, probe map[string]any) error {
	single := func(key string, v any) error {
		if _, ok := v.(map[string]any); ok {
			return &ConfigError{File: path, Key: key, Msg: "write [[" + key + "]] (double brackets: each one a table of a list), not [" + key + "]"}
		}
		return nil
	}
	for _, key := range []string{"observers", "databases"} {
		if err := single(key, probe[key]); err != nil {
			return err
		}
	}
	var obs []map[string]any
	switch v := probe["observers"].(type) {
	case []map[string]any:
		obs = v
	case []any:
		for _, o := range v {
			m, _ := o.(map[string]any)
			obs = append(obs, m)
		}
	}
	for i, o := range obs {
		if _, ok := o["actions"].(map[string]any); ok {
			return &ConfigError{File: path, Key: fmt.Sprintf("observers[%d].actions", i),
				Msg: "write [[observers.actions]] (double brackets: each action a table of a list), not [observers.actions]"}
		}
	}
	return nil
}
