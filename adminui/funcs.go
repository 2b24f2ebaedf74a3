package adminui

import (
	"html/template"
	"net/url"
	"strconv"
	"time"

	"github.com/llm-proxy/llm-proxy/adminapi"
)

// funcs are the templates' helpers; each turns an API value into text.
var funcs = template.FuncMap{
	"opt": func(p *int64) string {
		if p == nil {
			return "—"
		}
		return grouped(*p)
	},
	"optStr": func(p *string) string {
		if p == nil || *p == "" {
			return "—"
		}
		return *p
	},
	"when":       when,
	"whenPtr":    func(p *string) string { return whenPtr(p) },
	"num":        grouped,
	"dollars":    dollars,
	"usd":        func(n adminapi.USD) string { return dollars(int64(n)) },
	"limitsData": func(prefix string, f url.Values) limitsData { return limitsData{Prefix: prefix, Form: f} },
	"rulesData": func(id, kind string, forProject bool, csrf string, f url.Values) rulesData {
		return rulesData{ID: id, Kind: kind, ForProject: forProject, CSRF: csrf, Form: f}
	},
	"budget": func(p *adminapi.USD) string {
		if p == nil {
			return "none"
		}
		return "$" + p.String()
	},
}

// when shows an RFC 3339 time from the API as "2025-03-31 12:00 UTC".
func when(s string) string {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return s
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

func whenPtr(p *string) string {
	if p == nil {
		return "—"
	}
	return when(*p)
}

// grouped writes n with thousands separators.
func grouped(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := n < 0
	if neg {
		s = s[1:]
	}
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

// rulesData is what the "rules" card template gets: whose rules (a project
// or a token, by id and URL kind), the form's CSRF token and values.
type rulesData struct {
	ID, Kind   string
	ForProject bool
	CSRF       string
	Form       url.Values
}

// limitsData is what the "limits" fieldset template gets: its inputs' id
// prefix (unique in the page) and the form values.
type limitsData struct {
	Prefix string
	Form   url.Values
}
