package config

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/parsers/toml/v2"
	"github.com/knadh/koanf/providers/rawbytes"
	"github.com/knadh/koanf/v2"
	gotoml "github.com/pelletier/go-toml/v2"

	"github.com/fraiseql/fraiseql-observer/domain"
)

// observersFile is the shape of observers_file: only [[observers]].
type observersFile struct {
	Observers []ObserverConfig `koanf:"observers"`
}

// LoadObserverConfigs returns the observers of cfg: those in the main
// file followed by those in observers_file (when set). Errors name the
// file, line or key.
func LoadObserverConfigs(cfg Config) ([]ObserverConfig, error) {
	fromFile, err := loadObserversFile(cfg)
	if err != nil {
		return nil, err
	}
	return append(append([]ObserverConfig(nil), cfg.Observers...), fromFile...), nil
}

// loadObserversFile reads the [[observers]] of observers_file (none when
// it is not set).
func loadObserversFile(cfg Config) ([]ObserverConfig, error) {
	if cfg.ObserversFile == "" {
		return nil, nil
	}
	path := cfg.ObserversFile
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, &ConfigError{File: cfg.File, Key: "observers_file", Msg: err.Error() + relativeHint(path)}
	}
	var probe map[string]any
	if err := gotoml.Unmarshal(raw, &probe); err != nil {
		return nil, tomlError(path, raw, err)
	}
	if err := checkArrayTables(path, probe); err != nil {
		return nil, err
	}
	for key := range probe {
		if key != "observers" {
			return nil, &ConfigError{File: path, Key: key, Msg: "unknown key (an observers file holds only [[observers]])"}
		}
	}
	k := koanf.New(".")
	if err := k.Load(rawbytes.Provider(raw), toml.Parser()); err != nil {
		return nil, &ConfigError{File: path, Msg: err.Error()}
	}
	var f observersFile
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		DecodeHook:  decodeHook(),
		ErrorUnused: true,
		TagName:     "koanf",
		Result:      &f,
	})
	if err != nil {
		return nil, err
	}
	if err := dec.Decode(k.Raw()); err != nil {
		return nil, decodeError(path, err, k.Get)
	}
	return f.Observers, nil
}

// LoadObservers loads and compiles every observer of cfg: the main file's
// [[observers]], then observers_file's, running checks on the actions'
// values (see Checks). An error names the file the observer is in and its
// index within that file.
func LoadObservers(cfg Config, lookupEnv func(string) (string, bool), checks Checks) ([]domain.Observer, error) {
	fromFile, err := loadObserversFile(cfg)
	if err != nil {
		return nil, err
	}
	type origin struct {
		file  string
		index int
	}
	var (
		obs   []domain.Observer
		where []origin
	)
	for _, part := range []struct {
		file string
		cfgs []ObserverConfig
	}{{cfg.File, cfg.Observers}, {cfg.ObserversFile, fromFile}} {
		for i, oc := range part.cfgs {
			key := observerKey(i, oc.Name)
			o, err := buildObserver(oc, cfg.Retry.Policy(), lookupEnv, checks)
			if err == nil {
				err = checkAvailable(cfg, o)
			}
			if err != nil {
				return nil, &ConfigError{File: part.file, Key: key, Msg: err.Error()}
			}
			for j, prev := range obs {
				if prev.Name == o.Name {
					return nil, &ConfigError{File: part.file, Key: key, Msg: fmt.Sprintf(
						"name %q is already used by observers[%d] of %s", o.Name, where[j].index, cmp.Or(where[j].file, "the configuration"))}
				}
			}
			obs = append(obs, o)
			where = append(where, origin{part.file, i})
		}
	}
	if err := domain.ValidateObservers(obs); err != nil {
		return nil, &ConfigError{File: cfg.File, Key: "observers", Msg: err.Error()}
	}
	return obs, nil
}

// observerKey names the i-th observer of a file, with its name when set.
func observerKey(i int, name string) string {
	key := fmt.Sprintf("observers[%d]", i)
	if name != "" {
		key += fmt.Sprintf(" (%q)", name)
	}
	return key
}

// checkAvailable refuses actions the configuration gives nothing to run
// on: a cache action without Redis, a database action without a database,
// an email action without an SMTP server.
func checkAvailable(cfg Config, o domain.Observer) error {
	for i, act := range o.Actions {
		var missing string
		switch {
		case act.Type == domain.ActionCache && !cfg.Redis.Configured():
			missing = "Redis (set redis.url)"
		case act.Type == domain.ActionDatabase && cfg.Topology == TopologyMemory:
			missing = "a database (the memory topology has none)"
		case act.Type == domain.ActionEmail && !cfg.Email.Configured():
			missing = "an SMTP server (set email.host, and email.from)"
		case act.Type == domain.ActionNATS && !cfg.Topology.Distributed():
			missing = "a NATS connection (topology nats-distributed or multi-database)"
		}
		if missing != "" {
			return fmt.Errorf("actions[%d]: action type %s needs %s", i, act.Type, missing)
		}
		if domain.BatchingOf(&act) != nil && !cfg.Performance.EnableConcurrent {
			return fmt.Errorf("actions[%d].batch: needs performance.enable_concurrent = true (a batch forms from events processed at the same time)", i)
		}
	}
	return nil
}

// relativeHint says, for a relative path that could not be opened, which
// directory it was taken from: the working directory, not the
// configuration file's.
func relativeHint(path string) string {
	if filepath.IsAbs(path) {
		return ""
	}
	wd, err := os.Getwd()
	if err != nil {
		return " (a relative path is taken from the working directory, not from the configuration file's)"
	}
	return " (a relative path is taken from the working directory, " + wd + ", not from the configuration file's)"
}
