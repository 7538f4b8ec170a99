package config

import (
	"errors"
	"fmt"
	"os"

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
	out := append([]ObserverConfig(nil), cfg.Observers...)
	if cfg.ObserversFile == "" {
		return out, nil
	}
	path := cfg.ObserversFile
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, &ConfigError{File: cfg.File, Key: "observers_file", Msg: err.Error()}
	}
	var probe map[string]any
	if err := gotoml.Unmarshal(raw, &probe); err != nil {
		return nil, tomlError(path, err)
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
		DecodeHook:  mapstructure.StringToTimeDurationHookFunc(),
		ErrorUnused: true,
		TagName:     "koanf",
		Result:      &f,
	})
	if err != nil {
		return nil, err
	}
	if err := dec.Decode(k.Raw()); err != nil {
		return nil, decodeError(path, err)
	}
	return append(out, f.Observers...), nil
}

// LoadObservers loads and compiles every observer of cfg.
func LoadObservers(cfg Config, lookupEnv func(string) (string, bool)) ([]domain.Observer, error) {
	cfgs, err := LoadObserverConfigs(cfg)
	if err != nil {
		return nil, err
	}
	obs, err := buildObservers(cfgs, cfg.Retry.Policy(), lookupEnv)
	if err == nil {
		err = checkAvailable(cfg, obs)
	}
	if err != nil {
		var ce *ConfigError
		if errors.As(err, &ce) && ce.File == "" {
			ce.File = cfg.File
			if cfg.ObserversFile != "" {
				ce.File = fmt.Sprintf("%s or %s", cfg.File, cfg.ObserversFile)
			}
		}
		return nil, err
	}
	return obs, nil
}

// checkAvailable refuses actions the configuration gives nothing to run
// on: a cache action without Redis, a database action without a database.
func checkAvailable(cfg Config, obs []domain.Observer) error {
	for _, o := range obs {
		for i, act := range o.Actions {
			var missing string
			switch {
			case act.Type == domain.ActionCache && !cfg.Redis.Configured():
				missing = "Redis (set redis.url)"
			case act.Type == domain.ActionDatabase && cfg.Topology == TopologyMemory:
				missing = "a database (the memory topology has none)"
			case act.Type == domain.ActionNATS && !cfg.Topology.Distributed():
				missing = "a NATS connection (topology nats-distributed or multi-database)"
			}
			if missing != "" {
				return &ConfigError{Key: fmt.Sprintf("observers (%q).actions[%d]", o.Name, i),
					Msg: fmt.Sprintf("action type %s needs %s", act.Type, missing)}
			}
		}
	}
	return nil
}
