package adminapi

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/llm-proxy/llm-proxy/store"
)

// usageReader is what GET /manage/projects/{id}/usage needs of the store:
// the project, to answer only for live ones, and its usage.
type usageReader interface {
	GetProject(ctx context.Context, id string) (store.Project, error)
	ProjectUsage(ctx context.Context, projectID, fromDay, toDay string) ([]store.UsageRecord, error)
}

var _ usageReader = (*store.Store)(nil)

// maxUsageDays bounds a usage query: a leap year, both ends included.
const maxUsageDays = 366

// UsageReport is a project's usage report.
type UsageReport struct {
	Object    string     `json:"object"`
	ProjectID string     `json:"project_id"`
	From      string     `json:"from"`
	To        string     `json:"to"`
	Data      []UsageRow `json:"data"`
	Total     UsageTotal `json:"total"`
}

// UsageRow is one day's use of one model at one price-table version.
// Requests are those that went upstream (or were served from the cache);
// Errors those whose client got an error status, refused by the proxy (not
// in Requests) or failed upstream (in Requests), as [store.UsageRecord] says.
type UsageRow struct {
	Date             string `json:"date"`
	Model            string `json:"model"`
	PriceVersion     string `json:"price_version"`
	Requests         int64  `json:"requests"`
	Errors           int64  `json:"errors"`
	PromptTokens     int64  `json:"prompt_tokens"`
	CompletionTokens int64  `json:"completion_tokens"`
	CachedTokens     int64  `json:"cached_tokens"`
	ReasoningTokens  int64  `json:"reasoning_tokens"`
	TotalTokens      int64  `json:"total_tokens"`
	CostUSD          USD    `json:"cost_usd"`
}

// UsageTotal is the sum of a report's rows.
type UsageTotal struct {
	Requests         int64 `json:"requests"`
	Errors           int64 `json:"errors"`
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
	TotalTokens      int64 `json:"total_tokens"`
	CostUSD          USD   `json:"cost_usd"`
}

func usageView(projectID, from, to string, records []store.UsageRecord) UsageReport {
	out := UsageReport{Object: "list", ProjectID: projectID, From: from, To: to, Data: make([]UsageRow, 0, len(records))}
	for _, u := range records {
		total := u.PromptTokens + u.CompletionTokens
		out.Data = append(out.Data, UsageRow{
			Date:             u.Day,
			Model:            u.Model,
			PriceVersion:     u.PriceVersion,
			Requests:         u.Requests,
			Errors:           u.Errors,
			PromptTokens:     u.PromptTokens,
			CompletionTokens: u.CompletionTokens,
			CachedTokens:     u.CachedTokens,
			ReasoningTokens:  u.ReasoningTokens,
			TotalTokens:      total,
			CostUSD:          USD(u.CostMicroUSD),
		})
		out.Total.Requests += u.Requests
		out.Total.Errors += u.Errors
		out.Total.PromptTokens += u.PromptTokens
		out.Total.CompletionTokens += u.CompletionTokens
		out.Total.TotalTokens += total
		out.Total.CostUSD += USD(u.CostMicroUSD)
	}
	return out
}

// projectUsage answers GET /manage/projects/{id}/usage?from=&to=.
func (s *Server) projectUsage(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, "project")
	if !ok {
		return
	}
	from, to, err := usageRange(r, s.now().UTC())
	if err != nil {
		writeError(w, r, err)
		return
	}
	// The store keeps usage of deleted projects; the API shows only live ones.
	if _, err := s.usage.GetProject(r.Context(), id); err != nil {
		writeError(w, r, projectError(id, "get project", err))
		return
	}
	records, err := s.usage.ProjectUsage(r.Context(), id, from, to)
	if err != nil {
		writeError(w, r, fmt.Errorf("usage of project %s: %w", id, err))
		return
	}
	writeJSON(w, http.StatusOK, usageView(id, from, to, records))
}

// usageRange reads the from and to query parameters (UTC dates, both
// included; present means it must be a date, even empty). to defaults to today (now is in UTC); from to the first day of
// to's month.
func usageRange(r *http.Request, now time.Time) (from, to string, err error) {
	q := r.URL.Query()
	toDay := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	if q.Has("to") {
		if toDay, err = parseDay("to", q.Get("to")); err != nil {
			return "", "", err
		}
	}
	fromDay := time.Date(toDay.Year(), toDay.Month(), 1, 0, 0, 0, 0, time.UTC)
	if q.Has("from") {
		if fromDay, err = parseDay("from", q.Get("from")); err != nil {
			return "", "", err
		}
	}
	from, to = fromDay.Format(store.DayLayout), toDay.Format(store.DayLayout)
	switch days := int(toDay.Sub(fromDay)/(24*time.Hour)) + 1; {
	case days < 1:
		return "", "", invalid(codeInvalidValue, "from", "from (%s) must not be after to (%s).", from, to)
	case days > maxUsageDays:
		return "", "", invalid(codeInvalidValue, "to", "The range from %s to %s spans %d days; at most %d are allowed.", from, to, days, maxUsageDays)
	}
	return from, to, nil
}

// parseDay reads a query parameter holding a date, YYYY-MM-DD.
func parseDay(param, v string) (time.Time, error) {
	t, err := time.Parse(store.DayLayout, v)
	if err != nil || t.Format(store.DayLayout) != v {
		return time.Time{}, invalid(codeInvalidValue, param, "%s must be a date in the form YYYY-MM-DD, e.g. 2025-03-31.", param)
	}
	return t, nil
}
