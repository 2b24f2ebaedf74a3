package tests

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"

	"github.com/llm-proxy/llm-proxy/tests/envoytest"
	"github.com/llm-proxy/llm-proxy/tests/testenv"
)

// TestMonitoringContent: the Grafana dashboard and the Prometheus alert
// rules in deploy/monitoring parse as PromQL, and every series they read is
// on /metrics — the sidecar's and the dispatcher's — after a run with
// traffic of each kind: forwarded, cached, rate limited, refused for want
// of buffer memory, events written and dispatched.
func TestMonitoringContent(t *testing.T) {
	exprs := monitoringExprs(t)
	names := map[string][]string{} // series name → where it is used
	p := parser.NewParser(parser.Options{})
	for where, expr := range exprs {
		e, err := p.ParseExpr(expr)
		if err != nil {
			t.Errorf("%s: %v\n%s", where, err, expr)
			continue
		}
		parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
			if vs, ok := n.(*parser.VectorSelector); ok {
				names[vs.Name] = append(names[vs.Name], where)
			}
			return nil
		})
	}
	if len(names) == 0 {
		t.Fatal("no series named")
	}

	prefix := "t:" + t.Name() + ":"
	s := startStack(t, stackOptions{env: map[string]string{
		"LLM_PROXY_REDIS_URL":     testenv.Redis(t),
		"LLM_PROXY_REDIS_PREFIX":  prefix,
		"LLM_PROXY_CACHE":         "redis",
		"LLM_PROXY_EVENTS_SINKS":  "redis",
		"LLM_PROXY_EVENTS_STREAM": prefix + "events",
		// The smallest budget, for a refused request body.
		"LLM_PROXY_MAX_BUFFERED_BYTES": "1048576",
	}})
	// A budget, so that the budget-use gauge has a project to report.
	var p1 project
	s.mustManage("POST", "/manage/projects", map[string]any{"name": "monitoring", "openai_api_key": realKey, "monthly_budget_usd": 1}, 201, &p1)
	tok := s.createToken(map[string]any{"project_id": p1.ID, "limits": map[string]any{"requests_per_minute": 4}})
	chat := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}]}`
	for i, want := range []int{200, 200, 503, 200, 429} {
		var r reply
		switch i {
		case 2: // larger than the buffer budget: refused, retryable
			big := fmt.Sprintf(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":%q}]}`, strings.Repeat("a", 1100_000))
			r = call(t, s, "POST", "/v1/chat/completions", tok.Token, big, nil)
		default: // the same cacheable request: a miss, then hits
			r = call(t, s, "POST", "/v1/chat/completions", tok.Token, chat, map[string]string{"Cache-Control": optIn})
		}
		if r.status != want {
			t.Fatalf("request %d: %d, want %d: %s", i, r.status, want, r.body)
		}
	}
	drained(t, s)
	budgetUse := "\nllm_proxy_budget_used_ratio{project_id=\"" + p1.ID + "\"} "
	waitFor(t, "the project's budget use on /metrics once its spend is flushed", func() bool {
		page := scrape(s.manageURL + "/metrics")
		return strings.Contains(page, budgetUse) && !strings.Contains(page, budgetUse+"0\n")
	})
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", envoytest.FreePort(t))
	runDispatch(t, map[string]string{
		"LLM_PROXY_REDIS_URL":             testenv.Redis(t),
		"LLM_PROXY_EVENTS_STREAM":         prefix + "events",
		"LLM_PROXY_DISPATCH_TARGETS":      "file",
		"LLM_PROXY_DISPATCH_FILE":         filepath.Join(t.TempDir(), "events.jsonl"),
		"LLM_PROXY_DISPATCH_METRICS_ADDR": metricsAddr,
	}, "monitoring")
	var dispatcher string
	waitFor(t, "the dispatcher's /metrics with every event delivered", func() bool {
		dispatcher = scrape("http://" + metricsAddr + "/metrics")
		return strings.Contains(dispatcher, "\nllm_proxy_dispatch_delivered_total ") &&
			!strings.Contains(dispatcher, "\nllm_proxy_dispatch_delivered_total 0\n")
	})
	exposed := scrape(s.manageURL+"/metrics") + dispatcher
	for name, where := range names {
		if !strings.Contains(exposed, "\n"+name+"{") && !strings.Contains(exposed, "\n"+name+" ") {
			t.Errorf("%s, read by %s, is not on /metrics", name, strings.Join(where, ", "))
		}
	}
}

// monitoringExprs returns every PromQL expression of the dashboard and the
// alert rules, by where it is.
func monitoringExprs(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	b, err := os.ReadFile("../deploy/monitoring/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Alert       string            `json:"alert"`
				Expr        string            `json:"expr"`
				For         string            `json:"for"`
				Labels      map[string]string `json:"labels"`
				Annotations map[string]string `json:"annotations"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.UnmarshalStrict(b, &rules); err != nil {
		t.Fatalf("alerts.yaml: %v", err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || r.Annotations["summary"] == "" {
				t.Errorf("alerts.yaml: a rule without a name or summary: %+v", r)
			}
			out["alert "+r.Alert] = r.Expr
		}
	}
	b, err = os.ReadFile("../deploy/monitoring/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				RefID string `json:"refId"`
				Expr  string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			out["panel "+p.Title+" "+tg.RefID] = tg.Expr
		}
	}
	return out
}

// scrape returns a /metrics page after a newline, so that every series
// starts with one; "" while it cannot be read.
func scrape(url string) string {
	b, err := body(url)
	if err != nil {
		return ""
	}
	return "\n" + b
}
