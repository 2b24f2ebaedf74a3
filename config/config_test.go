package config

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func env(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }

func TestLoadDefaults(t *testing.T) {
	c, err := Load(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.GRPCAddr != "127.0.0.1:9002" || c.HTTPAddr != "127.0.0.1:8081" || !c.Embedded() ||
		c.DatabaseURL != filepath.Join("data", "llm-proxy.db") || c.AuthCacheTTL != 10*time.Second || !c.AutoMigrate {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestLoadNamesEveryBadVariable(t *testing.T) {
	_, err := Load(env(map[string]string{
		"LLM_PROXY_GRPC_ADDR":           "nope",
		"LLM_PROXY_ENCRYPTION_KEY":      "c2hvcnQ=",
		"LLM_PROXY_AUTO_MIGRATE":        "maybe",
		"LLM_PROXY_AUTH_CACHE_TTL":      "soon",
		"LLM_PROXY_REDIS_URL":           "http://x",
		"LLM_PROXY_LOG_LEVEL":           "loud",
		"LLM_PROXY_GRPC_MAX_RECV_BYTES": "12",
		"LLM_PROXY_MANAGEMENT_TOKEN":    "short",
		"LLM_PROXY_LIMIT_FAILURE_MODES": "requests=maybe",
		"LLM_PROXY_DEFAULT_MAX_TOKENS":  "0",
	}))
	if err == nil {
		t.Fatal("want an error")
	}
	for _, name := range []string{"LLM_PROXY_GRPC_ADDR", "LLM_PROXY_ENCRYPTION_KEY", "LLM_PROXY_AUTO_MIGRATE",
		"LLM_PROXY_AUTH_CACHE_TTL", "LLM_PROXY_REDIS_URL", "LLM_PROXY_LOG_LEVEL", "LLM_PROXY_GRPC_MAX_RECV_BYTES", "LLM_PROXY_MANAGEMENT_TOKEN",
		"LLM_PROXY_LIMIT_FAILURE_MODES", "LLM_PROXY_DEFAULT_MAX_TOKENS"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s:\n%v", name, err)
		}
	}
	if strings.Contains(err.Error(), "c2hvcnQ") {
		t.Error("a secret's value appears in the error")
	}
}

func TestTracing(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want bool
	}{
		{nil, false},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_SDK_DISABLED": "TRUE"}, false},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "LLM_PROXY_TRACING": "off"}, false},
		{map[string]string{"LLM_PROXY_TRACING": "on"}, true},
	} {
		c, err := Load(env(tc.env))
		if err != nil {
			t.Fatal(err)
		}
		if c.Tracing != tc.want {
			t.Errorf("%v: Tracing = %t, want %t", tc.env, c.Tracing, tc.want)
		}
	}
	if _, err := Load(env(map[string]string{"LLM_PROXY_TRACING": "sometimes"})); err == nil || !strings.Contains(err.Error(), "LLM_PROXY_TRACING") {
		t.Errorf("LLM_PROXY_TRACING=sometimes: %v", err)
	}
}

func TestPostgresRequiresSecrets(t *testing.T) {
	_, err := Load(env(map[string]string{"LLM_PROXY_DATABASE_URL": "postgres://u@h/db"}))
	for _, name := range []string{"LLM_PROXY_MANAGEMENT_TOKEN", "LLM_PROXY_ENCRYPTION_KEY", "LLM_PROXY_TOKEN_HASH_KEY"} {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("postgres without %s: %v", name, err)
		}
	}
	key := base64.StdEncoding.EncodeToString(make([]byte, 32))
	c, err := Load(env(map[string]string{"LLM_PROXY_DATABASE_URL": "postgres://u@h/db", "LLM_PROXY_MANAGEMENT_TOKEN": "0123456789abcdef",
		"LLM_PROXY_ENCRYPTION_KEY": key, "LLM_PROXY_TOKEN_HASH_KEY": key}))
	if err != nil || c.Embedded() {
		t.Fatalf("complete postgres config: %v", err)
	}
}

func TestEnsureSecretsGeneratesOnceWithMode0600(t *testing.T) {
	dir := t.TempDir()
	c := Config{DataDir: filepath.Join(dir, "data")}
	created, err := EnsureSecrets(&c)
	if err != nil || len(created) != 3 || len(c.EncryptionKey) != 32 || len(c.TokenHashKey) != 32 || c.ManagementToken == "" {
		t.Fatalf("first start: %v %d", err, len(created))
	}
	for _, s := range created {
		fi, err := os.Stat(s.Path)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v mode %v", s.Path, err, fi.Mode())
		}
	}
	again := Config{DataDir: c.DataDir}
	created, err = EnsureSecrets(&again)
	if err != nil || len(created) != 0 || string(again.EncryptionKey) != string(c.EncryptionKey) || again.ManagementToken != c.ManagementToken {
		t.Fatalf("second start must reuse the secrets: %v %d", err, len(created))
	}
}

func TestRoutes(t *testing.T) {
	routes, err := LoadRoutes("")
	if err != nil || len(routes) < 10 {
		t.Fatalf("defaults: %v", err)
	}
	for _, tc := range []struct{ doc, want string }{
		{`{"routes":[{"method":"FETCH","path":"/v1/x","charge":"free"}]}`, "routes[0].method"},
		{`{"routes":[{"method":"GET","path":"v1/x","charge":"free"}]}`, "routes[0].path"},
		{`{"routes":[{"method":"GET","path":"/v1/x","body":"xml","charge":"free"}]}`, "routes[0].body"},
		{`{"routes":[{"method":"GET","path":"/v1/x","extra":1}]}`, "unknown field"},
		{`{"routes":[{"method":"GET","path":"/v1/x"}]}`, "routes[0].charge: missing for GET /v1/x"},
		{`{"routes":[{"method":"GET","path":"/v1/x","charge":"maybe"}]}`, `routes[0].charge: "maybe" must be one of`},
		{`{"routes":[]}`, "no routes"},
	} {
		if _, err := ParseRoutes([]byte(tc.doc)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.doc, err, tc.want)
		}
	}
}

// TestREADMEChargingTable keeps the README's charging table and the built-in
// routes in step: one row per route, with its rule's description.
func TestREADMEChargingTable(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	routes, err := LoadRoutes("")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, r := range routes {
		want = append(want, fmt.Sprintf("| `%s %s` | %s |", r.Method, r.Path, Charges[r.Charge]))
	}
	var got []string
	for _, l := range strings.Split(string(readme), "\n") {
		if tableRoute.MatchString(l) {
			got = append(got, l)
		}
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("README's charging table is not the routes' (config/routes.json); want these rows:\n%s", strings.Join(want, "\n"))
	}
}

// TestREADMETablesRender: every row of the README's tables has as many
// cells as its header, so each renders (a stray row once ended the settings
// table with three variable names for cells).
func TestREADMETablesRender(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	cells := func(l string) int { return strings.Count(strings.ReplaceAll(l, "\\|", ""), "|") - 1 }
	want := 0
	seen := map[string]bool{}
	for i, l := range strings.Split(string(readme), "\n") {
		switch {
		case !strings.HasPrefix(l, "|"):
			want, seen = 0, map[string]bool{}
		case want == 0:
			want = cells(l) // a header row
		case strings.HasPrefix(l, "|---"), strings.HasPrefix(l, "| ---"):
		case cells(l) != want:
			t.Errorf("README line %d has %d cells, its table %d: %s", i+1, cells(l), want, l)
		}
		if name, ok := strings.CutPrefix(l, "| `LLM_PROXY_"); ok {
			name, _, _ = strings.Cut(name, "`")
			if seen[name] {
				t.Errorf("README line %d: a second row for LLM_PROXY_%s: %s", i+1, name, l)
			}
			seen[name] = true
		}
	}
}

// TestREADMELayoutListsEveryPackage: the README's Layout names every
// top-level folder that holds Go code.
func TestREADMELayoutListsEveryPackage(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, layout, _ := strings.Cut(string(readme), "## Layout")
	entries, err := os.ReadDir("..")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		goFiles, _ := filepath.Glob(filepath.Join("..", e.Name(), "*.go"))
		sub, _ := filepath.Glob(filepath.Join("..", e.Name(), "*", "*.go"))
		if len(goFiles)+len(sub) == 0 {
			continue
		}
		if !strings.Contains(layout, "\n"+e.Name()+"/") && !strings.Contains(layout, "\n"+e.Name()+" ") {
			t.Errorf("README's Layout does not list %s/", e.Name())
		}
	}
}

// TestREADMEListsEverySetting keeps the README's table and Vars in step.
func TestREADMEListsEverySetting(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range append(append([]Var(nil), Vars...), DispatchVars...) {
		if !strings.Contains(string(readme), "| `"+v.Name+"` |") {
			t.Errorf("README lacks %s", v.Name)
		}
	}
	src, _ := os.ReadFile("config.go")
	dsrc, _ := os.ReadFile("dispatch.go")
	src = append(src, dsrc...)
	for _, name := range strings.Fields(strings.NewReplacer("\"", " ", "(", " ", ")", " ", ",", " ").Replace(string(src))) {
		if strings.HasPrefix(name, "LLM_PROXY_") && !strings.Contains(string(readme), name) {
			t.Errorf("config.go reads %s, which the README does not document", name)
		}
	}
}

func TestFailureModes(t *testing.T) {
	c, err := Load(env(map[string]string{"LLM_PROXY_LIMIT_FAILURE_MODES": "requests=open, budget=closed"}))
	if err != nil || c.LimitFailureModes["requests"] != "open" || c.LimitFailureModes["budget"] != "closed" || len(c.LimitFailureModes) != 2 {
		t.Fatalf("%v %v", c.LimitFailureModes, err)
	}
	if _, err := Load(env(map[string]string{"LLM_PROXY_LIMIT_FAILURE_MODES": "speed=open"})); err == nil {
		t.Fatal("unknown kind must be refused")
	}
}

func TestPprofAddrLoopbackOnly(t *testing.T) {
	for addr, ok := range map[string]bool{"127.0.0.1:6060": true, "[::1]:6060": true, "localhost:6060": true,
		"0.0.0.0:6060": false, "10.0.0.1:6060": false, "example.com:6060": false, "6060": false} {
		c, err := Load(env(map[string]string{"LLM_PROXY_PPROF_ADDR": addr}))
		if (err == nil) != ok || (ok && c.PprofAddr != addr) {
			t.Errorf("%s: %v (PprofAddr %q), want accepted=%v", addr, err, c.PprofAddr, ok)
		}
	}
	if c, err := Load(env(nil)); err != nil || c.PprofAddr != "" {
		t.Errorf("default: %q, %v; want off", c.PprofAddr, err)
	}
}

func TestRedisURLForms(t *testing.T) {
	for u, ok := range map[string]bool{
		"redis://h:6379/0":                               true,
		"rediss://h:6380":                                true,
		"redis://h1:7000?addr=h2:7001&addr=h3:7002":      true,
		"redis://h1:7000?cluster=true":                   true,
		"redis://s1:26379/0?master_name=m&addr=s2:26379": true,
		"redis://h1:7000?addr=h2":                        false,
		"redis://h:6379?nonsense=1":                      false,
		"http://h:6379":                                  false,
		"redis://:secretpw@h:notaport":                   false,
	} {
		c, err := Load(env(map[string]string{"LLM_PROXY_REDIS_URL": u}))
		if (err == nil) != ok || (ok && c.RedisURL != u) {
			t.Errorf("%s: %v, want accepted=%v", u, err, ok)
		}
		if err != nil && strings.Contains(err.Error(), "secretpw") {
			t.Errorf("%s: the password appears in the error: %v", u, err)
		}
	}
}

func TestRedisPrefixWithoutBraces(t *testing.T) {
	for prefix, ok := range map[string]bool{"llmproxy:": true, "team-a:": true, "{x}:": false, "a{": false, "b}": false} {
		c, err := Load(env(map[string]string{"LLM_PROXY_REDIS_PREFIX": prefix}))
		if (err == nil) != ok || (ok && c.RedisPrefix != prefix) {
			t.Errorf("%q: %v, want accepted=%v", prefix, err, ok)
		}
	}
}

func TestGRPCAddrUnixSocket(t *testing.T) {
	for addr, want := range map[string]string{
		"unix:/run/llm-proxy/extproc.sock":   "/run/llm-proxy/extproc.sock",
		"unix:///run/llm-proxy/extproc.sock": "/run/llm-proxy/extproc.sock",
	} {
		cfg, err := Load(env(map[string]string{"LLM_PROXY_GRPC_ADDR": addr}))
		if err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
		if network, path := ListenNetwork(cfg.GRPCAddr); network != "unix" || path != want {
			t.Errorf("%s: %s %s", addr, network, path)
		}
	}
	if network, addr := ListenNetwork("127.0.0.1:9002"); network != "tcp" || addr != "127.0.0.1:9002" {
		t.Errorf("host:port: %s %s", network, addr)
	}
	for _, bad := range []string{"unix:extproc.sock", "unix:", "9002"} {
		if _, err := Load(env(map[string]string{"LLM_PROXY_GRPC_ADDR": bad})); err == nil || !strings.Contains(err.Error(), "LLM_PROXY_GRPC_ADDR") {
			t.Errorf("%q accepted (%v)", bad, err)
		}
	}
}
