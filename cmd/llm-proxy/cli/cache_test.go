package cli

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/llm-proxy/llm-proxy/adminapi"
	"github.com/llm-proxy/llm-proxy/cachefilter"
	"github.com/llm-proxy/llm-proxy/tests/testenv"
)

// `cache purge --prefix` removes the entries under a path prefix of a
// serve's Redis cache, of one project or of all, prints how many went (JSON
// as in openapi.yaml), and each purge is in the audit log; mixing it with
// --all or --method/--path is a usage error, and a prefix the API refuses
// is a refusal with the API's message.
func TestCachePurgeByPrefixCommand(t *testing.T) {
	url := testenv.Redis(t)
	redisPrefix := fmt.Sprintf("cli-cache-test:%x:", rand.Uint64())
	_, env := startServeEnv(t, map[string]string{
		"LLM_PROXY_CACHE": "redis", "LLM_PROXY_REDIS_URL": url, "LLM_PROXY_REDIS_PREFIX": redisPrefix,
	})
	spec, err := openapi3.NewLoader().LoadFromData(adminapi.OpenAPI())
	if err != nil {
		t.Fatal(err)
	}
	o := &operator{t: t, env: env, spec: spec}

	// The serve's cache, as another replica sees it: the same Redis and prefix.
	cache := cachefilter.NewRedis(testenv.NewRedisClient(t, url), cachefilter.Options{Prefix: redisPrefix + "cache:", Timeout: 5 * time.Second})
	for _, e := range []struct{ project, key, path string }{
		{"proj_a", "1", "/v1/models"}, {"proj_a", "2", "/v1/models/gpt-4"}, {"proj_a", "3", "/v1/files"}, {"proj_b", "1", "/v1/models"},
	} {
		if err := cache.Set(context.Background(), e.project, e.key, &cachefilter.Entry{Status: 200, TTL: time.Hour, Path: e.path}); err != nil {
			t.Fatal(err)
		}
	}

	var purged struct{ Purged int }
	o.json("PurgeResult", &purged, "cache", "purge", "--prefix", "/v1/models", "--project", "proj_a")
	if purged.Purged != 2 {
		t.Errorf("--prefix /v1/models --project proj_a purged %d, want 2", purged.Purged)
	}
	if out := o.mustRun("cache", "purge", "--prefix", "/v1/"); out != "purged 2 cached responses\n" {
		t.Errorf("--prefix /v1/ printed %q", out)
	}

	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"cache", "purge", "--prefix", "/v1/", "--all"}, ExitUsage, "give --project or --prefix, or --all, not both"},
		{[]string{"cache", "purge", "--prefix", "/v1/", "--method", "GET", "--path", "/v1/models"}, ExitUsage, "give --prefix or --method and --path, not both"},
		{[]string{"cache", "purge", "--prefix", "v1/"}, ExitFailure, "prefix must be the start of an absolute path without query"},
	} {
		_, _, err := o.run(tc.args...)
		if got := ExitCode(err); got != tc.code || err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%v: exit %d, error %v; want exit %d and %q", tc.args, got, err, tc.code, tc.msg)
		}
	}

	var audit struct {
		Data []struct {
			ProjectID *string `json:"project_id"`
			TargetID  string  `json:"target_id"`
			Detail    string  `json:"detail"`
		} `json:"data"`
	}
	o.json("AuditList", &audit, "audit", "list", "--action", "cache.purge")
	var got []string
	for _, e := range audit.Data {
		project := "-"
		if e.ProjectID != nil && *e.ProjectID != "" {
			project = *e.ProjectID
		}
		got = append(got, project+" "+e.TargetID+" "+e.Detail)
	}
	slices.Sort(got) // events of one instant come in any order
	if want := []string{"- prefix /v1/ purged: 2", "proj_a prefix /v1/models purged: 2"}; !slices.Equal(got, want) {
		t.Errorf("audit events %q, want %q", got, want)
	}
}
