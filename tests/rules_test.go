package tests

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// Through the real Envoy and the SDK: a token whose rules narrow its
// project's to one model family sees only those models listed (the body
// rewritten on its way out, its length with it), is refused another model
// in OpenAI's error shape before OpenAI hears of it, and has its max_tokens
// clamped on the wire.
func TestRulesThroughEnvoy(t *testing.T) {
	s := startStack(t, stackOptions{})
	s.upstream.SetModels("gpt-4o", "gpt-4o-mini", "gpt-4.1-mini", "o3-mini")
	p := s.createProject("ruled", "sk-proj-rules-0123456789abcdef")
	s.mustManage("PATCH", "/manage/projects/"+p.ID, map[string]any{"rules": map[string]any{"models": []string{"gpt-4*"}}}, 200, nil)
	tok := s.createToken(map[string]any{"project_id": p.ID, "name": "narrow",
		"rules": map[string]any{"models": []string{"gpt-4o*", "o3-mini"}, "max_output_tokens": 50, "over_max": "clamp"}})
	c := s.client(tok.Token)
	ctx := context.Background()

	list, err := c.Models.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range list.Data {
		ids = append(ids, m.ID)
	}
	if !slices.Equal(ids, []string{"gpt-4o", "gpt-4o-mini"}) {
		t.Errorf("listed models %v, want the ones both rules allow", ids)
	}

	s.upstream.Reset()
	_, err = c.Chat.Completions.New(ctx, chatParams("hi")) // gpt-4.1-mini: the project allows it, the token does not
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 403 || apiErr.Code != "model_not_allowed" || apiErr.Param != "model" {
		t.Fatalf("a model outside the token's rules: %v", err)
	}
	if n := s.upstream.Count(); n != 0 {
		t.Errorf("the refused request reached the upstream (%d requests)", n)
	}

	params := chatParams("hi")
	params.Model = "gpt-4o-mini"
	params.MaxCompletionTokens = openai.Int(500)
	if _, err := c.Chat.Completions.New(ctx, params, option.WithMaxRetries(0)); err != nil {
		t.Fatal(err)
	}
	reqs := s.upstream.Requests()
	if len(reqs) != 1 || !jsonHas(t, reqs[0].Body, "max_completion_tokens", 50.0) {
		t.Errorf("upstream body %s, want max_completion_tokens clamped to 50", reqs[len(reqs)-1].Body)
	}
}

// jsonHas reports whether the JSON object body has member name equal to want
// (numbers decode as float64).
func jsonHas(t *testing.T, body []byte, name string, want any) bool {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("body %s: %v", body, err)
	}
	return m[name] == want
}
