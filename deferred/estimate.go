package deferred

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"

	"github.com/llm-proxy/llm-proxy/usage"
)

// promptCounter counts a request body's prompt (usage.Tokenizer).
type promptCounter interface {
	CountPrompt(model string, body []byte) int64
}

// EstimateBatch reads a batch input file (JSONL lines {"custom_id",
// "method", "url", "body"}) and returns an upper bound of what running it may
// cost, for the budget reservation made when the batch is created: each
// line's prompt counted with tiktoken plus its largest output (max_tokens or
// the like, else defaultMax; none for embeddings) times n, at the Batch API's
// price. A line longer than maxLine, or one that is not a request, is an
// error: OpenAI would refuse the file too. check, when not nil, sees each
// line's number (from 1), URL and request before it is counted; its error
// ends the estimate and is returned as it is.
func EstimateBatch(r io.Reader, maxLine int, tok promptCounter, prices *usage.Prices, defaultMax int64,
	check func(line int, url string, req usage.Request) error) (cost int64, lines int, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, min(64<<10, maxLine)), maxLine) // the larger of the two bounds a line
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 {
			continue
		}
		lines++
		var item struct {
			URL  string          `json:"url"`
			Body json.RawMessage `json:"body"`
		}
		if err := json.Unmarshal(line, &item); err != nil || len(item.Body) == 0 {
			return 0, lines, fmt.Errorf("batch input line %d: not a batch request", lines)
		}
		req, err := usage.ParseRequest(item.Body)
		if err != nil {
			return 0, lines, fmt.Errorf("batch input line %d: %w", lines, err)
		}
		if check != nil {
			if err := check(lines, item.URL, req); err != nil {
				return 0, lines, err
			}
		}
		out := int64(0)
		if item.URL != "/v1/embeddings" {
			out = req.MaxOutputTokens
			if out <= 0 {
				out = defaultMax
			}
			out *= max(req.N, 1)
		}
		c, _ := prices.BatchCost(req.Model, usage.Usage{PromptTokens: tok.CountPrompt(req.Model, item.Body), CompletionTokens: out})
		cost += c
	}
	if err := sc.Err(); err != nil {
		return 0, lines, fmt.Errorf("batch input line %d: %w", lines+1, err)
	}
	return cost, lines, nil
}
