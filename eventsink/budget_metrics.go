package eventsink

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/llm-proxy/llm-proxy/metric"
	"github.com/llm-proxy/llm-proxy/store"
)

// budgetStore is where [BudgetMetrics] reads budgets and the roll-up's spend.
type budgetStore interface {
	BudgetUses(ctx context.Context, fromDay, toDay string) ([]store.BudgetUse, error)
}

// budgetScrapeTimeout bounds the one store query of a scrape: a slow
// database costs a scrape this series, never the whole page.
const budgetScrapeTimeout = 2 * time.Second

// BudgetMetrics is a Prometheus collector of how much of its monthly budget
// each project has used this calendar month (UTC), read from the usage
// roll-up with one store query per scrape. A project without a budget, or
// with a budget of 0 (nothing to divide by: it refuses every priced
// request), has no series. When the store fails or is slow, the scrape
// goes without the series and the failure is logged at warn.
type BudgetMetrics struct {
	store   budgetStore
	log     zerolog.Logger
	now     func() time.Time
	timeout time.Duration
	desc    *prometheus.Desc
}

// NewBudgetMetrics registers the collector with reg and returns it.
func NewBudgetMetrics(s budgetStore, reg prometheus.Registerer, log zerolog.Logger) *BudgetMetrics {
	return metric.Register(reg, &BudgetMetrics{
		store: s, log: log, now: time.Now, timeout: budgetScrapeTimeout,
		desc: prometheus.NewDesc("llm_proxy_budget_used_ratio",
			"This calendar month's (UTC) spend of a project divided by its monthly budget, for projects with a budget, "+
				"read from the usage roll-up when scraped. It lags by LLM_PROXY_USAGE_FLUSH_INTERVAL and leaves out "+
				"background work not yet settled: the limiter's own count (in Redis, when configured) is what budgets enforce.",
			[]string{"project_id"}, nil),
	})
}

// Describe sends the one series' description.
func (b *BudgetMetrics) Describe(ch chan<- *prometheus.Desc) { ch <- b.desc }

// Collect reads the month's spend of every project with a budget.
func (b *BudgetMetrics) Collect(ch chan<- prometheus.Metric) {
	// A scrape carries no context to derive from; the timeout is the bound.
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	defer cancel()
	now := b.now().UTC()
	first := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	last := first.AddDate(0, 1, -1)
	uses, err := b.store.BudgetUses(ctx, first.Format(store.DayLayout), last.Format(store.DayLayout))
	if err != nil {
		b.log.Warn().Err(err).Msg("budget use not read; llm_proxy_budget_used_ratio is left out of this scrape")
		return
	}
	for _, u := range uses {
		if u.BudgetMicroUSD <= 0 {
			continue
		}
		ch <- prometheus.MustNewConstMetric(b.desc, prometheus.GaugeValue,
			float64(u.CostMicroUSD)/float64(u.BudgetMicroUSD), u.ProjectID)
	}
}
