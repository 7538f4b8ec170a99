package config

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// EnvReference is one *_env key of a configuration: a key whose value names
// the environment variable holding the real value (a secret, a URL).
type EnvReference struct {
	File     string // the file the key is in
	Key      string // e.g. "databases[1].url_env", "observers[0].actions[2].signing_secret_env"
	Variable string // the variable it names
	Set      bool   // the variable is set and not empty
	// Required is false for a reference the service runs without (it
	// then behaves as documented, e.g. http.admin_token_env unset: the
	// admin API answers 403) or that this process does not read (the
	// sources of multi-database in a worker).
	Required bool
	// Effect says what happens when a reference that is not required is
	// unset.
	Effect string
}

// EnvReferences lists every *_env key of cfg that names a variable, with
// whether lookupEnv finds it: the sections, the [[databases]] entries,
// and the observers of the main file and of observers_file. A key added
// to the configuration later is found by its name (the walk is over the
// struct tags), so no reference escapes the check.
func EnvReferences(cfg Config, lookupEnv func(string) (string, bool)) ([]EnvReference, error) {
	fromFile, err := loadObserversFile(cfg)
	if err != nil {
		return nil, err
	}
	var refs []EnvReference
	add := func(file, key, name string) {
		v, ok := lookupEnv(name)
		ref := EnvReference{File: file, Key: key, Variable: name, Set: ok && v != "", Required: true}
		switch {
		case key == "http.admin_token_env":
			ref.Required = false
			ref.Effect = "the admin API answers 403"
			if cfg.HTTP.Listen == "" {
				ref.Effect = "unused: http.listen is empty"
			}
		case key == "http.metrics_token_env" && cfg.HTTP.Listen == "":
			ref.Required = false
			ref.Effect = "unused: http.listen is empty"
		case strings.HasPrefix(key, "tracing.headers_env.") && !cfg.TracingOn(lookupEnv):
			ref.Required = false
			ref.Effect = "unused: " + TracingOff
		case strings.HasPrefix(key, "databases[") && !cfg.Role.RunsBridge():
			ref.Required = false
			ref.Effect = "unused: role " + string(cfg.Role) + " reads no source database"
		}
		refs = append(refs, ref)
	}
	walkEnvKeys(reflect.ValueOf(cfg), "", func(key, name string) { add(cfg.File, key, name) })
	for i, oc := range fromFile {
		walkEnvKeys(reflect.ValueOf(oc), fmt.Sprintf("observers[%d]", i), func(key, name string) { add(cfg.ObserversFile, key, name) })
	}
	return refs, nil
}

// CheckEnv returns an error naming every required *_env reference of cfg
// whose variable is unset or empty (each a *ConfigError, joined), and the
// references that are not required but unset, for a warning.
func CheckEnv(cfg Config, lookupEnv func(string) (string, bool)) (unsetOptional []EnvReference, err error) {
	refs, err := EnvReferences(cfg, lookupEnv)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, r := range refs {
		switch {
		case r.Set:
		case r.Required:
			errs = append(errs, &ConfigError{File: r.File, Key: r.Key, Msg: "environment variable " + r.Variable + " is not set"})
		default:
			unsetOptional = append(unsetOptional, r)
		}
	}
	return unsetOptional, errors.Join(errs...)
}

// walkEnvKeys calls f for every non-empty string field of v whose koanf
// key ends in "_env", with its full key.
func walkEnvKeys(v reflect.Value, prefix string, f func(key, name string)) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			walkEnvKeys(v.Elem(), prefix, f)
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			walkEnvKeys(v.Index(i), fmt.Sprintf("%s[%d]", prefix, i), f)
		}
	case reflect.Struct:
		t := v.Type()
		for i := range t.NumField() {
			tag := t.Field(i).Tag.Get("koanf")
			if tag == "" || tag == "-" || !t.Field(i).IsExported() {
				continue
			}
			key := tag
			if prefix != "" {
				key = prefix + "." + tag
			}
			if strings.HasSuffix(tag, "_env") {
				if !directSet(v, strings.TrimSuffix(tag, "_env")) {
					envNames(v.Field(i), key, f)
				} // else both are set: the build refuses them (set only one), whatever the variable
				continue
			}
			walkEnvKeys(v.Field(i), key, f)
		}
	}
}

// directSet reports whether struct v's string field with koanf tag is
// set (the direct value beside an *_env key).
func directSet(v reflect.Value, tag string) bool {
	t := v.Type()
	for i := range t.NumField() {
		if t.Field(i).Tag.Get("koanf") == tag && t.Field(i).Type.Kind() == reflect.String {
			return v.Field(i).String() != ""
		}
	}
	return false
}

// envNames calls f for every variable name an *_env key holds: a string,
// a list of strings or a map of strings (e.g. header name to variable).
func envNames(v reflect.Value, key string, f func(key, name string)) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			envNames(v.Elem(), key, f)
		}
	case reflect.String:
		if v.String() != "" {
			f(key, v.String())
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			envNames(v.Index(i), fmt.Sprintf("%s[%d]", key, i), f)
		}
	case reflect.Map:
		keys := v.MapKeys()
		slices.SortFunc(keys, func(a, b reflect.Value) int { return strings.Compare(fmt.Sprint(a), fmt.Sprint(b)) })
		for _, k := range keys {
			envNames(v.MapIndex(k), fmt.Sprintf("%s.%v", key, k), f)
		}
	}
}

// EnvConfigFile is the variable naming the configuration file when
// --config is not given.
const EnvConfigFile = EnvPrefix + "CONFIG"

// EnvVariables maps every FRAISEQL_* variable that sets a key to that key
// (FRAISEQL_DATABASE_URL to database.url). Tables ([[observers]],
// [[databases]]) have none.
func EnvVariables() map[string]string {
	known := map[string]reflect.Kind{}
	collectKeys(reflect.TypeOf(Config{}), "", known)
	out := make(map[string]string, len(known))
	for key, kind := range known {
		if kind != reflect.Array {
			out[EnvPrefix+strings.ToUpper(strings.ReplaceAll(key, ".", "_"))] = key
		}
	}
	return out
}

// TestEnvPrefix starts the variables that give the test suites their
// services (FRAISEQL_TEST_DATABASE_URL, ...): set in a developer's shell,
// they are not a misspelt key.
const TestEnvPrefix = EnvPrefix + "TEST_"

// UnknownEnv lists the FRAISEQL_* variables of environ that configure
// nothing: not a key, not FRAISEQL_CONFIG, not a variable a *_env key of
// cfg names, not a test suite's (TestEnvPrefix). Load ignores them (they
// may belong to another program), so a misspelt name would otherwise go
// unnoticed.
func UnknownEnv(cfg Config, environ []string) []string {
	keys := EnvVariables()
	named := map[string]bool{EnvConfigFile: true}
	if refs, err := EnvReferences(cfg, func(string) (string, bool) { return "", false }); err == nil {
		for _, r := range refs {
			named[r.Variable] = true
		}
	}
	var out []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, EnvPrefix) || strings.HasPrefix(name, TestEnvPrefix) || named[name] {
			continue
		}
		if _, ok := keys[name]; !ok {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}
