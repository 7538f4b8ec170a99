package main

// The Docker Compose files in docker/ cannot be run here (no Docker
// engine), so this test checks them against the real CLI and
// configuration instead: every command, flag and healthcheck, every
// FRAISEQL_* variable, every mounted file, every address and port.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
	"github.com/fraiseql/fraiseql-observer/internal/testsupport"
)

const dockerDir = "../../docker"

// The image of the service itself; services built from the Dockerfile
// without a target, or using this image, run fraiseql-observer.
const productImage = "fraiseql-observer"

type composeFile struct {
	Name     string                     `yaml:"name"`
	Services map[string]*composeService `yaml:"services"`
	Volumes  map[string]any             `yaml:"volumes"`
}

// composeService holds the keys the compose files may use; decoding with
// KnownFields refuses any other (a misspelt key would be ignored by
// Compose).
type composeService struct {
	Image       string                       `yaml:"image"`
	Build       *composeBuild                `yaml:"build"`
	Command     []string                     `yaml:"command"`
	Entrypoint  []string                     `yaml:"entrypoint"`
	Environment map[string]string            `yaml:"environment"`
	Volumes     []string                     `yaml:"volumes"`
	Ports       []string                     `yaml:"ports"`
	DependsOn   map[string]composeDependency `yaml:"depends_on"`
	Healthcheck *composeHealthcheck          `yaml:"healthcheck"`
	Profiles    []string                     `yaml:"profiles"`
	// StopGracePeriod must outlast the service's drain on SIGTERM (up to
	// 30s): Docker's default, 10s, would kill in-flight actions.
	StopGracePeriod string `yaml:"stop_grace_period"`
}

type composeBuild struct {
	Context    string            `yaml:"context"`
	Dockerfile string            `yaml:"dockerfile"`
	Target     string            `yaml:"target"`
	Args       map[string]string `yaml:"args"`
}

type composeDependency struct {
	Condition string `yaml:"condition"`
}

type composeHealthcheck struct {
	Test        []string `yaml:"test"`
	Interval    string   `yaml:"interval"`
	Timeout     string   `yaml:"timeout"`
	Retries     int      `yaml:"retries"`
	StartPeriod string   `yaml:"start_period"`
}

// dockerfile is what the test reads of docker/Dockerfile.
type dockerfile struct {
	stages      []string          // "AS name" of every stage
	args        []string          // ARG names of every stage
	env         map[string]string // ENV of the final stage
	entrypoint  []string          // of the final stage
	cmd         []string          // of the final stage
	expose      []string          // of the final stage
	healthcheck []string          // CMD of the final stage's HEALTHCHECK
	text        string
}

func readDockerfile(t *testing.T, path string) dockerfile {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	d := dockerfile{env: map[string]string{}, text: string(raw)}
	var lines []string
	var cur strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(l, "#") {
			continue
		}
		if strings.HasSuffix(l, "\\") {
			cur.WriteString(strings.TrimSuffix(l, "\\") + " ")
			continue
		}
		cur.WriteString(l)
		if s := strings.TrimSpace(cur.String()); s != "" {
			lines = append(lines, s)
		}
		cur.Reset()
	}
	jsonArray := func(s string) []string {
		var out []string
		if err := json.Unmarshal([]byte(s), &out); err != nil {
			t.Fatalf("Dockerfile: %q is not the exec (JSON) form: %v", s, err)
		}
		return out
	}
	for _, l := range lines {
		instr, rest, _ := strings.Cut(l, " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToUpper(instr) {
		case "FROM":
			d.env, d.entrypoint, d.cmd, d.expose, d.healthcheck = map[string]string{}, nil, nil, nil, nil
			if f := strings.Fields(rest); len(f) == 3 && strings.EqualFold(f[1], "AS") {
				d.stages = append(d.stages, f[2])
			}
		case "ARG":
			name, _, _ := strings.Cut(rest, "=")
			d.args = append(d.args, name)
		case "ENV":
			for _, kv := range strings.Fields(rest) {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					t.Fatalf("Dockerfile: ENV %q: use the KEY=value form", rest)
				}
				d.env[k] = v
			}
		case "ENTRYPOINT":
			d.entrypoint = jsonArray(rest)
		case "CMD":
			d.cmd = jsonArray(rest)
		case "EXPOSE":
			d.expose = append(d.expose, strings.Fields(rest)...)
		case "HEALTHCHECK":
			_, c, ok := strings.Cut(rest, "CMD ")
			if !ok {
				t.Fatalf("Dockerfile: HEALTHCHECK without CMD: %q", rest)
			}
			d.healthcheck = jsonArray(strings.TrimSpace(c))
		}
	}
	return d
}

var interpolation = regexp.MustCompile(`\$\{([A-Z_][A-Z0-9_]*)(:-([^}]*))?\}`)

// interpolate resolves ${VAR:-default} as Compose does with VAR unset; a
// variable without a default is an error (the file would need a .env).
func interpolate(t reporter, where, s string) string {
	t.Helper()
	return interpolation.ReplaceAllStringFunc(s, func(m string) string {
		sub := interpolation.FindStringSubmatch(m)
		if sub[2] == "" {
			t.Errorf("%s: ${%s} has no default: give one (${%s:-...})", where, sub[1], sub[1])
		}
		return sub[3]
	})
}

// mount is a bind mount: host path (absolute) and container path.
type mount struct{ host, container string }

func TestComposeFiles(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(filepath.Join(dockerDir, "compose*.yml"))
	if err != nil {
		t.Fatal(err)
	}
	df := readDockerfile(t, filepath.Join(dockerDir, "Dockerfile"))
	checkDockerfile(t, df)
	topologies := map[string]string{}
	names := map[string]string{}
	for _, f := range files {
		name := filepath.Base(f)
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		dec.KnownFields(true)
		var c composeFile
		if err := dec.Decode(&c); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if c.Name == "" || names[c.Name] != "" {
			t.Errorf("%s: project name %q is empty or also used by %s", name, c.Name, names[c.Name])
		}
		names[c.Name] = name
		for _, top := range checkCompose(t, name, c, df) {
			if other, dup := topologies[top]; dup {
				t.Errorf("%s and %s both run topology %s", other, name, top)
			}
			topologies[top] = name
		}
	}
	for _, top := range []config.Topology{config.TopologyPostgresOnly, config.TopologyPostgresRedis, config.TopologyNATSDistributed, config.TopologyMultiDatabase} {
		if topologies[string(top)] == "" {
			t.Errorf("no compose file runs topology %s (found %v)", top, topologies)
		}
	}
}

// checkDockerfile checks what the compose files rely on in the image.
func checkDockerfile(t reporter, df dockerfile) {
	t.Helper()
	if !slices.Contains(df.args, "VERSION") || !strings.Contains(df.text, "-X main.version=${VERSION}") {
		t.Errorf("Dockerfile: the VERSION build argument does not reach main.version")
	}
	if len(df.entrypoint) != 1 || !strings.HasSuffix(df.entrypoint[0], "/fraiseql-observer") {
		t.Errorf("Dockerfile: ENTRYPOINT %q, want the fraiseql-observer binary", df.entrypoint)
	}
	checkObserverArgs(t, "Dockerfile CMD", df.cmd, "run")
	if len(df.healthcheck) < 2 || df.healthcheck[0] != df.entrypoint[0] {
		t.Errorf("Dockerfile: HEALTHCHECK %q does not run %s", df.healthcheck, df.entrypoint)
	} else {
		checkObserverArgs(t, "Dockerfile HEALTHCHECK", df.healthcheck[1:], "healthcheck")
	}
	// The embedded NATS store is under a directory the non-root user owns.
	store := df.env["FRAISEQL_NATS_STORE_DIR"]
	m := regexp.MustCompile(`COPY --from=build --chown=65532:65532 \S+ (\S+)`).FindStringSubmatch(df.text)
	if store == "" || m == nil || !strings.HasPrefix(store, m[1]+"/") {
		t.Errorf("Dockerfile: FRAISEQL_NATS_STORE_DIR %q is not under a directory owned by the non-root user (65532)", store)
	}
	_, port, err := net.SplitHostPort(df.env["FRAISEQL_HTTP_LISTEN"])
	if err != nil || !slices.Contains(df.expose, port) {
		t.Errorf("Dockerfile: FRAISEQL_HTTP_LISTEN %q is not on an EXPOSEd port %v", df.env["FRAISEQL_HTTP_LISTEN"], df.expose)
	}
	if port == "9090" {
		t.Errorf("Dockerfile: the admin port is 9090, Prometheus's own")
	}
	for k := range df.env {
		if strings.HasPrefix(k, config.EnvPrefix) && k != config.EnvConfigFile {
			if _, ok := config.EnvVariables()[k]; !ok {
				t.Errorf("Dockerfile: ENV %s sets no configuration key", k)
			}
		}
	}
	mk, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Errorf("read Makefile: %v", err)
	}
	if !regexp.MustCompile(`(?m)^image:[\s\S]*?docker build[^\n]*--build-arg VERSION=\$\(VERSION\)`).Match(mk) {
		t.Errorf("Makefile: make image does not pass --build-arg VERSION=$(VERSION)")
	}
}

// checkObserverArgs parses args with the real command line and wants
// command want without positional arguments.
func checkObserverArgs(t reporter, where string, args []string, want string) {
	t.Helper()
	inv, err := parseArgs(args, io.Discard, io.Discard)
	if err != nil {
		t.Errorf("%s: %q: %v", where, args, err)
		return
	}
	if inv.cmd.name != want || len(inv.positional) != 0 {
		t.Errorf("%s: %q runs %q with arguments %q, want %q without arguments", where, args, inv.cmd.name, inv.positional, want)
	}
}

// healthcheckTools are the executables the images of the other services
// have for their healthchecks.
var healthcheckTools = map[string][]string{
	"postgres:":        {"pg_isready"},
	"redis:":           {"redis-cli"},
	"nats:":            {"wget"}, // the -alpine images (busybox)
	"prom/prometheus:": {"wget"},
}

var forbiddenHostPorts = []string{"5432", "6379", "4222", "9090"}

// checkCompose checks one compose file and returns the topologies its
// observer services run.
func checkCompose(t reporter, name string, c composeFile, df dockerfile) []string {
	t.Helper()
	var topologies []string
	hostPorts := map[string]string{}
	for svcName, svc := range c.Services {
		where := name + ": service " + svcName
		if svc == nil {
			t.Errorf("%s: empty", where)
			continue
		}
		observer := svc.Image == productImage
		if svc.Build != nil {
			ctx := filepath.Join(dockerDir, svc.Build.Context)
			if _, err := os.Stat(filepath.Join(ctx, svc.Build.Dockerfile)); err != nil || filepath.Base(svc.Build.Dockerfile) != "Dockerfile" {
				t.Errorf("%s: build: %s in %s: %v", where, svc.Build.Dockerfile, svc.Build.Context, err)
			}
			if svc.Build.Target != "" && !slices.Contains(df.stages, svc.Build.Target) {
				t.Errorf("%s: build target %q is no stage of the Dockerfile (%v)", where, svc.Build.Target, df.stages)
			}
			observer = observer || svc.Build.Target == ""
			for arg := range svc.Build.Args {
				if !slices.Contains(df.args, arg) {
					t.Errorf("%s: build argument %s is no ARG of the Dockerfile", where, arg)
				}
			}
		}
		if observer && svc.Image != productImage {
			t.Errorf("%s: builds the product image but names it %q", where, svc.Image)
		}
		if observer {
			if d, err := time.ParseDuration(svc.StopGracePeriod); err != nil || d < 40*time.Second {
				t.Errorf("%s: stop_grace_period %q, want at least 40s (the service drains up to 30s on SIGTERM; Docker's default is 10s)", where, svc.StopGracePeriod)
			}
		}
		// Mounts: sources exist; named volumes are declared.
		var mounts []mount
		for _, v := range svc.Volumes {
			parts := strings.Split(v, ":")
			if len(parts) < 2 {
				t.Errorf("%s: volume %q: use source:target[:ro]", where, v)
				continue
			}
			src := parts[0]
			if !strings.HasPrefix(src, ".") && !strings.HasPrefix(src, "/") {
				if _, ok := c.Volumes[src]; !ok {
					t.Errorf("%s: named volume %q is not declared under volumes", where, src)
				}
				continue
			}
			host := src
			if !filepath.IsAbs(src) {
				host = filepath.Join(dockerDir, src)
			}
			if _, err := os.Stat(host); err != nil {
				t.Errorf("%s: mounted %s does not exist: %v", where, src, err)
			}
			mounts = append(mounts, mount{host: host, container: parts[1]})
		}
		// Ports: on loopback, unique, clear of the usual services.
		for _, p := range svc.Ports {
			parts := strings.Split(p, ":")
			if len(parts) != 3 || parts[0] != "127.0.0.1" {
				t.Errorf("%s: port %q: publish on loopback only (127.0.0.1:HOST:CONTAINER)", where, p)
				continue
			}
			if slices.Contains(forbiddenHostPorts, parts[1]) {
				t.Errorf("%s: host port %s collides with a service commonly running on the host", where, parts[1])
			}
			if other, dup := hostPorts[parts[1]]; dup {
				t.Errorf("%s: host port %s is also published by %s", where, parts[1], other)
			}
			hostPorts[parts[1]] = svcName
		}
		for dep, d := range svc.DependsOn {
			target, ok := c.Services[dep]
			switch {
			case !ok:
				t.Errorf("%s: depends on unknown service %s", where, dep)
			case d.Condition == "service_healthy" && target.Healthcheck == nil:
				t.Errorf("%s: waits for %s to be healthy, which has no healthcheck", where, dep)
			}
		}
		if !observer {
			for k := range svc.Environment {
				if strings.HasPrefix(k, config.EnvPrefix) {
					t.Errorf("%s: sets %s but does not run fraiseql-observer", where, k)
				}
			}
			if svc.Healthcheck != nil {
				checkToolHealthcheck(t, where, svc)
			}
			continue
		}
		if top := checkObserverService(t, where, svc, c, df, mounts); top != "" && !slices.Contains(topologies, top) {
			topologies = append(topologies, top)
		}
	}
	return topologies
}

func checkToolHealthcheck(t reporter, where string, svc *composeService) {
	t.Helper()
	test := svc.Healthcheck.Test
	if len(test) < 2 || test[0] != "CMD" {
		t.Errorf("%s: healthcheck %q: use [\"CMD\", executable, args...]", where, test)
		return
	}
	for prefix, tools := range healthcheckTools {
		if strings.HasPrefix(svc.Image, prefix) {
			if !slices.Contains(tools, test[1]) {
				t.Errorf("%s: healthcheck runs %s, which image %s does not have (has %v)", where, test[1], svc.Image, tools)
			}
			return
		}
	}
	t.Errorf("%s: no known healthcheck tools for image %q", where, svc.Image)
}

// checkObserverService checks a service running fraiseql-observer and
// returns its topology.
func checkObserverService(t reporter, where string, svc *composeService, c composeFile, df dockerfile, mounts []mount) string {
	t.Helper()
	if len(svc.Entrypoint) != 0 {
		t.Errorf("%s: overrides the entrypoint %q", where, svc.Entrypoint)
	}
	cmd := svc.Command
	if cmd == nil {
		cmd = df.cmd
	}
	checkObserverArgs(t, where+": command", cmd, "run")

	// The environment: the image's, then the service's.
	env := map[string]string{}
	for k, v := range df.env {
		env[k] = v
	}
	for k, v := range svc.Environment {
		env[k] = interpolate(t, where+": environment "+k, v)
	}
	// The configuration file, through its mount.
	file := env[config.EnvConfigFile]
	var host string
	for _, m := range mounts {
		if m.container == file {
			host = m.host
		}
	}
	if host == "" {
		t.Errorf("%s: %s=%s is not a mounted file (mounts %v)", where, config.EnvConfigFile, file, mounts)
		return ""
	}
	var environ []string
	for k, v := range env {
		environ = append(environ, k+"="+v)
	}
	slices.Sort(environ)
	var out, errOut bytes.Buffer
	if err := checkConfig(host, environ, false, false, &out, &errOut); err != nil {
		t.Errorf("%s: validate-config %s with the service's environment: %v", where, host, err)
		return ""
	}
	// A worker of multi-database does not read the sources: their
	// variables are unused there, which validate-config says.
	for l := range strings.Lines(errOut.String()) {
		if !strings.Contains(l, ": unused: ") {
			t.Errorf("%s: validate-config %s warns: %s", where, host, l)
		}
	}
	cfg, err := config.Load(host, environ)
	if err != nil {
		t.Errorf("%s: load %s: %v", where, host, err)
		return ""
	}
	if cfg.ObserversFile != "" || cfg.Memory.EventsFile != "" {
		t.Errorf("%s: files named inside the configuration are not checked here: mount and check them", where)
	}

	// Addresses are compose services, not this container.
	checkAddr := func(key, raw string) {
		if raw == "" {
			return
		}
		u, err := url.Parse(raw)
		if err != nil {
			t.Errorf("%s: %s: %v", where, key, err)
			return
		}
		if _, ok := c.Services[u.Hostname()]; !ok {
			t.Errorf("%s: %s points at %q, which is no service of this compose file", where, key, u.Hostname())
		}
	}
	if cfg.Topology != config.TopologyMultiDatabase || cfg.Role.RunsWorker() {
		checkAddr("database.url", cfg.Database.URL)
	}
	if cfg.Redis.Configured() {
		checkAddr("redis.url", cfg.Redis.URL)
	}
	if cfg.Topology.Distributed() {
		checkAddr("nats.url", cfg.NATS.URL)
	}
	lookup := lookupIn(environ)
	for i, d := range cfg.Databases {
		u := d.URL
		if d.URLEnv != "" {
			u, _ = lookup(d.URLEnv)
		}
		if cfg.Role.RunsBridge() {
			checkAddr(fmt.Sprintf("databases[%d]", i), u)
		}
	}
	for _, o := range cfg.Observers {
		for j, a := range o.Actions {
			checkAddr(fmt.Sprintf("observer %s action %d url", o.Name, j), a.URL)
		}
	}

	// The admin server: on every interface inside the container, on the
	// published container port, asked by the healthcheck.
	lhost, lport, err := net.SplitHostPort(cfg.HTTP.Listen)
	if err != nil || lport == "0" || (lhost != "0.0.0.0" && lhost != "" && lhost != "::") {
		t.Errorf("%s: http.listen %q: listen on 0.0.0.0 with a fixed port in a container", where, cfg.HTTP.Listen)
	}
	for _, p := range svc.Ports {
		if parts := strings.Split(p, ":"); len(parts) == 3 && parts[2] != lport {
			t.Errorf("%s: publishes container port %s, the admin server listens on %s", where, parts[2], lport)
		}
	}
	if svc.Healthcheck == nil {
		t.Errorf("%s: no healthcheck", where)
	} else if hc := svc.Healthcheck.Test; len(hc) < 3 || hc[0] != "CMD" || hc[1] != df.entrypoint[0] {
		t.Errorf("%s: healthcheck %q, want [\"CMD\", %q, \"healthcheck\"]", where, hc, df.entrypoint[0])
	} else {
		checkObserverArgs(t, where+": healthcheck", hc[2:], "healthcheck")
	}
	// A service meant to be scaled publishes no host port.
	if cfg.Topology.Distributed() && cfg.Role == config.RoleWorker && len(svc.Ports) != 0 {
		t.Errorf("%s: a worker publishes host ports %v: --scale would collide", where, svc.Ports)
	}
	if cfg.Topology.Distributed() {
		return string(cfg.Topology) + checkRoles(t, where, c, cfg)
	}
	return string(cfg.Topology)
}

// checkRoles wants a NATS topology's compose file to run a bridge and
// workers; it returns "" (the topology name is enough) and reports.
func checkRoles(t reporter, where string, c composeFile, cfg config.Config) string {
	t.Helper()
	var roles []string
	for _, svc := range c.Services {
		if r := svc.Environment["FRAISEQL_ROLE"]; r != "" {
			roles = append(roles, r)
		}
	}
	if !slices.Contains(roles, "bridge") || !slices.Contains(roles, "worker") {
		t.Errorf("%s: topology %s: want a bridge and a worker service (roles %v)", where, cfg.Topology, roles)
	}
	return ""
}

// A negative check of the checker itself: a compose service with a wrong
// flag, an unknown FRAISEQL_* variable, a config pointing at 127.0.0.1
// and a colliding port is reported.
func TestComposeCheckerCatchesMistakes(t *testing.T) {
	t.Parallel()
	df := readDockerfile(t, filepath.Join(dockerDir, "Dockerfile"))
	cfgFile := filepath.Join(t.TempDir(), "bad.toml")
	if err := os.WriteFile(cfgFile, []byte("[database]\nurl = \"postgres://postgres@127.0.0.1:5432/postgres\"\n[http]\nlisten = \"0.0.0.0:8079\"\n"+
		"[[observers]]\nname = \"o\"\nentity = \"Order\"\nevents = [\"INSERT\"]\n[[observers.actions]]\ntype = \"log\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := composeFile{Name: "bad", Services: map[string]*composeService{
		"observer": {
			Image:       productImage,
			Command:     []string{"run", "--topolgy", "postgres-only"},
			Environment: map[string]string{"FRAISEQL_CONFIG": "/etc/fraiseql-observer/config.toml", "FRAISEQL_DATABSE_URL": "x", "FRAISEQL_ADMIN_TOKEN": "t"},
			Volumes:     []string{cfgFile + ":/etc/fraiseql-observer/config.toml:ro"},
			Ports:       []string{"127.0.0.1:9090:8080"},
			Healthcheck: &composeHealthcheck{Test: []string{"CMD", "/usr/local/bin/fraiseql-observer", "healthz"}},
		},
	}}
	rec := &recorder{}
	checkCompose(rec, "bad.yml", c, df)
	for _, want := range []string{
		"flag provided but not defined: -topolgy",
		"FRAISEQL_DATABSE_URL configures nothing",
		"host port 9090 collides",
		"publishes container port 8080",
		`unknown command "healthz"`,
	} {
		if !strings.Contains(rec.String(), want) {
			t.Errorf("checker did not report %q; it reported:\n%s", want, rec.String())
		}
	}

	// With the typo gone, the configuration is checked: its address is
	// this container's loopback.
	c.Services["observer"].Environment = map[string]string{"FRAISEQL_CONFIG": "/etc/fraiseql-observer/config.toml", "FRAISEQL_ADMIN_TOKEN": "t"}
	rec = &recorder{}
	checkCompose(rec, "bad.yml", c, df)
	if want := `database.url points at "127.0.0.1"`; !strings.Contains(rec.String(), want) {
		t.Errorf("checker did not report %q; it reported:\n%s", want, rec.String())
	}
}

// reporter is what the checks report to: a *testing.T, or a recorder in
// the test of the checker.
type reporter interface {
	Helper()
	Errorf(format string, args ...any)
}

// recorder collects what the checks report.
type recorder struct{ bytes.Buffer }

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	fmt.Fprintf(&r.Buffer, format+"\n", args...)
}

// make run starts only the services the configuration's topology uses
// (it used to wait for Redis and NATS with postgres-only).
func TestMakeRunStartsOnlyWhatTheTopologyNeeds(t *testing.T) {
	t.Parallel()
	testsupport.Binary(t, "make") // under CI=true a missing make fails
	cases := []struct{ config, services string }{
		{"configs/postgres-only.toml", "./.ci/services postgres\n"},
		{"configs/postgres-redis.toml", "./.ci/services postgres redis\n"},
		{"configs/nats-distributed.toml", "./.ci/services postgres redis nats\n"},
		{"configs/multi-database.toml", "./.ci/services postgres redis nats\n"},
		{"configs/memory.toml", ""},
	}
	for _, c := range cases {
		t.Run(filepath.Base(c.config), func(t *testing.T) {
			t.Parallel()
			out, err := exec.CommandContext(t.Context(), "make", "-n", "-C", "../..", "--no-print-directory", "run", "CONFIG="+c.config).CombinedOutput()
			if err != nil {
				t.Fatalf("make -n run: %v\n%s", err, out)
			}
			var got strings.Builder
			for l := range strings.Lines(string(out)) {
				if strings.Contains(l, ".ci/services") {
					got.WriteString(l)
				}
			}
			if got.String() != c.services {
				t.Errorf("make run starts %q, want %q\n%s", got.String(), c.services, out)
			}
		})
	}
}
