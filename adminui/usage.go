package adminui

import (
	"encoding/csv"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/llm-proxy/llm-proxy/adminapi"
	"github.com/llm-proxy/llm-proxy/store"
)

type usageView struct {
	Projects  []adminapi.Project
	ProjectID string
	From, To  string
	Report    *adminapi.UsageReport
	Requests  chart
	Cost      chart
	TotalCost string
	CSV       string // the CSV export's URL
}

// usageQuery is the usage page's selection: a project and the API's own
// from/to parameters, passed on as they are.
func (u *UI) usageQuery(r *http.Request, projects []adminapi.Project) (pid, path string) {
	q := r.URL.Query()
	pid = q.Get("project_id")
	if pid == "" && len(projects) > 0 {
		pid = projects[0].ID
	}
	params := url.Values{}
	for _, k := range []string{"from", "to"} {
		if q.Get(k) != "" {
			params.Set(k, q.Get(k))
		}
	}
	path = "/manage/projects/" + pathEscape(pid) + "/usage"
	if len(params) > 0 {
		path += "?" + params.Encode()
	}
	return pid, path
}

// usagePage charts and tables one project's usage by day and model.
func (u *UI) usagePage(w http.ResponseWriter, r *http.Request, sess *session) {
	projects, err := u.projects(r)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	v := usageView{Projects: projects, From: r.URL.Query().Get("from"), To: r.URL.Query().Get("to")}
	var msg string
	status := http.StatusOK
	if len(projects) > 0 {
		var path string
		v.ProjectID, path = u.usageQuery(r, projects)
		var rep adminapi.UsageReport
		err := u.call(r, apiCall{method: "GET", path: path}, &rep)
		if s, m, ok := refusal(err); ok {
			status, msg = s, m
		} else if err != nil {
			u.fail(w, r, err)
			return
		} else {
			v.Report = &rep
			v.From, v.To = rep.From, rep.To
			v.Requests, v.Cost = dailyCharts(rep.From, rep.To, rep.Data)
			v.TotalCost = dollars(int64(rep.Total.CostUSD))
			v.CSV = "/admin/usage.csv?" + url.Values{"project_id": {v.ProjectID}, "from": {rep.From}, "to": {rep.To}}.Encode()
		}
	}
	u.render(w, r, sess, status, "usage", view{Title: "Usage", Nav: "usage", Error: msg, Data: v})
}

// dailyCharts sums rows per day over [from, to] (days without rows are 0).
func dailyCharts(from, to string, rows []adminapi.UsageRow) (requests, cost chart) {
	start, err1 := time.Parse(store.DayLayout, from)
	end, err2 := time.Parse(store.DayLayout, to)
	if err1 != nil || err2 != nil {
		return chart{}, chart{}
	}
	reqs := map[string]int64{}
	costs := map[string]int64{}
	for _, row := range rows {
		reqs[row.Date] += row.Requests
		costs[row.Date] += int64(row.CostUSD)
	}
	requests = chart{Title: "Requests per day", Unit: "requests"}
	cost = chart{Title: "Spend per day", Unit: "USD", Money: true}
	for d := start; !d.After(end); d = d.AddDate(0, 0, 1) {
		day := d.Format(store.DayLayout)
		requests.Points = append(requests.Points, point{Label: day, Value: reqs[day]})
		cost.Points = append(cost.Points, point{Label: day, Value: costs[day]})
	}
	return requests, cost
}

// usageCSV exports the usage page's table.
func (u *UI) usageCSV(w http.ResponseWriter, r *http.Request, sess *session) {
	projects, err := u.projects(r)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	pid, path := u.usageQuery(r, projects)
	var rep adminapi.UsageReport
	if err := u.call(r, apiCall{method: "GET", path: path}, &rep); err != nil {
		u.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="usage-`+pid+`-`+rep.From+`-`+rep.To+`.csv"`)
	cw := csv.NewWriter(w)
	cw.Write([]string{"date", "model", "price_version", "requests", "errors", "prompt_tokens", "completion_tokens",
		"cached_tokens", "reasoning_tokens", "total_tokens", "cost_usd"})
	for _, row := range rep.Data {
		cw.Write([]string{row.Date, cell(row.Model), cell(row.PriceVersion), itoa(row.Requests), itoa(row.Errors), itoa(row.PromptTokens),
			itoa(row.CompletionTokens), itoa(row.CachedTokens), itoa(row.ReasoningTokens), itoa(row.TotalTokens),
			row.CostUSD.String()})
	}
	cw.Flush()
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// cell keeps a text a client chose (a model name) from being read as a
// formula by a spreadsheet that opens the export.
func cell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}
