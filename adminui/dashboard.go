package adminui

import (
	"cmp"
	"net/http"
	"slices"

	"github.com/llm-proxy/llm-proxy/adminapi"
	"github.com/llm-proxy/llm-proxy/store"
)

// dashboardDays is how far back the dashboard looks.
const dashboardDays = 30

type period struct {
	Name     string
	Requests int64
	Errors   int64 // refused by the gateway or failed upstream (store.UsageRecord.Errors)
	Tokens   int64
	Cost     int64 // micro-USD
}

type ranked struct {
	Name     string
	ID       string // a project's id, for its link; "" for a model
	Requests int64
	Tokens   int64
	Cost     int64
}

type dashboardView struct {
	Projects    int
	Periods     []period // today, 7 days, 30 days
	Requests    chart
	Cost        chart
	TopProjects []ranked
	TopModels   []ranked
	Health      *health
}

// dashboard sums every project's usage of the last 30 days, read through
// the API's usage report per project, and the process's health metrics.
func (u *UI) dashboard(w http.ResponseWriter, r *http.Request, sess *session) {
	projects, err := u.projects(r)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	today := u.now().UTC()
	to := today.Format(store.DayLayout)
	from := today.AddDate(0, 0, -(dashboardDays - 1)).Format(store.DayLayout)
	weekStart := today.AddDate(0, 0, -6).Format(store.DayLayout)

	v := dashboardView{Projects: len(projects), Periods: []period{{Name: "Today"}, {Name: "Last 7 days"}, {Name: "Last 30 days"}}}
	var rows []adminapi.UsageRow
	models := map[string]*ranked{}
	for _, p := range projects {
		var rep adminapi.UsageReport
		if err := u.call(r, apiCall{method: "GET", path: "/manage/projects/" + pathEscape(p.ID) + "/usage?from=" + from + "&to=" + to}, &rep); err != nil {
			u.fail(w, r, err)
			return
		}
		pr := ranked{Name: p.Name, ID: p.ID}
		for _, row := range rep.Data {
			c := int64(row.CostUSD)
			pr.Requests, pr.Tokens, pr.Cost = pr.Requests+row.Requests, pr.Tokens+row.TotalTokens, pr.Cost+c
			m := models[row.Model]
			if m == nil {
				m = &ranked{Name: row.Model}
				models[row.Model] = m
			}
			m.Requests, m.Tokens, m.Cost = m.Requests+row.Requests, m.Tokens+row.TotalTokens, m.Cost+c
			for i, start := range []string{to, weekStart, from} {
				if row.Date >= start {
					per := &v.Periods[i]
					per.Requests, per.Tokens, per.Cost = per.Requests+row.Requests, per.Tokens+row.TotalTokens, per.Cost+c
					per.Errors += row.Errors
				}
			}
		}
		rows = append(rows, rep.Data...)
		if pr.Requests > 0 {
			v.TopProjects = append(v.TopProjects, pr)
		}
	}
	for _, m := range models {
		if m.Requests > 0 { // not a model only refused requests named
			v.TopModels = append(v.TopModels, *m)
		}
	}
	v.TopProjects, v.TopModels = top(v.TopProjects), top(v.TopModels)
	v.Requests, v.Cost = dailyCharts(from, to, rows)
	v.Health = u.health(r.Context())
	u.render(w, r, sess, http.StatusOK, "dashboard", view{Title: "Dashboard", Nav: "dashboard", Data: v})
}

// top orders by spend, then requests, then name, and keeps the first five.
func top(rs []ranked) []ranked {
	slices.SortFunc(rs, func(a, b ranked) int {
		return cmp.Or(cmp.Compare(b.Cost, a.Cost), cmp.Compare(b.Requests, a.Requests), cmp.Compare(a.Name, b.Name))
	})
	return rs[:min(len(rs), 5)]
}
