// Package deferred charges work that OpenAI finishes after answering the
// request that created it: background Responses (`"background": true`,
// answered `queued`) and batches (usage only in their output file, hours
// later).
//
// The ext_proc server reserves such work against the budget when it is
// created and hands the reservation to a [Reconciler] ([Reconciler.Track]),
// which keeps it, durably, in the store until OpenAI's own record says what
// the work cost. The record is read
//
//   - when a client reads the object in a terminal state through the gateway
//     ([Reconciler.Observe]): a background response carries its usage, and is
//     settled at once; a batch is handed to the poll loop, which reads its
//     output file off the request path;
//   - by the poll loop ([Reconciler.Run]), which asks OpenAI, with the
//     project's key and at a bounded rate, about every charge that is due,
//     so work nobody asks about again is charged too.
//
// Settling is exactly once across replicas (the store's settled mark): the
// usage roll-up gets the real usage and cost, the budget the difference from
// the reservation ([ratelimit.Limiter.SettleTicket]), and a usage event with
// outcome "settled" carries the cost. A response OpenAI no longer knows (404:
// deleted before it was settled) keeps its reservation as its cost.
package deferred

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/protobuf/types/known/timestamppb"

	llmproxyv1 "github.com/llm-proxy/llm-proxy/proto/llmproxy/v1"
	"github.com/llm-proxy/llm-proxy/ratelimit"
	"github.com/llm-proxy/llm-proxy/store"
	"github.com/llm-proxy/llm-proxy/upstream"
	"github.com/llm-proxy/llm-proxy/usage"
)

// chargeStore is what the Reconciler keeps outstanding charges in.
type chargeStore interface {
	AddDeferred(ctx context.Context, d store.Deferred) error
	GetDeferred(ctx context.Context, id string) (store.Deferred, error)
	DueDeferred(ctx context.Context, now time.Time, limit int) ([]store.Deferred, error)
	PostponeDeferred(ctx context.Context, id string, next time.Time) error
	SettleDeferred(ctx context.Context, id string, at time.Time, cost int64, usage []store.UsageRecord) (bool, error)
}

// keySource gives a project's OpenAI key, to ask OpenAI about its work.
type keySource interface {
	ProjectKey(ctx context.Context, projectID string) (string, error)
}

// ticketSettler settles a kept reservation (package ratelimit).
type ticketSettler interface {
	SettleTicket(ctx context.Context, t ratelimit.Ticket, tokens, cost int64) error
}

// fetcher reads OpenAI's objects and files (package upstream).
type fetcher interface {
	Get(ctx context.Context, key, path string, limit int64) ([]byte, error)
	Open(ctx context.Context, key, path string) (io.ReadCloser, error)
}

// eventEmitter takes usage events; it must never block.
type eventEmitter interface {
	Emit(ev *llmproxyv1.UsageEvent)
}

var (
	_ chargeStore   = (*store.Store)(nil)
	_ ticketSettler = (*ratelimit.Limiter)(nil)
	_ fetcher       = (*upstream.Client)(nil)
)

// Options configures a [Reconciler]. Store, Keys, Upstream and Prices are
// required.
type Options struct {
	Store    chargeStore
	Keys     keySource
	Limiter  ticketSettler // nil: no budgets to settle
	Upstream fetcher
	Prices   *usage.Prices
	Events   eventEmitter // nil: no events
	// Interval is the wait before a charge's first poll and between two;
	// default 30s.
	Interval time.Duration
	// Rate bounds polls of OpenAI per second; default 5.
	Rate int
	// MaxLine bounds one line of a batch output file; default 16 MiB.
	MaxLine int
	Now     func() time.Time
	Logger  zerolog.Logger
}

// Reconciler settles outstanding deferred charges. Track and Observe are safe
// for concurrent use; Run is called once, by its owner (serve), and returns
// when its context ends.
type Reconciler struct {
	o     Options
	nudge chan string // ids whose object was seen terminal; buffered, never blocks a sender
}

// New returns a Reconciler.
func New(o Options) *Reconciler {
	if o.Interval <= 0 {
		o.Interval = 30 * time.Second
	}
	if o.Rate <= 0 {
		o.Rate = 5
	}
	if o.MaxLine <= 0 {
		o.MaxLine = 16 << 20
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Reconciler{o: o, nudge: make(chan string, 256)}
}

// Track keeps a charge outstanding until it is settled; its first poll is
// one Interval from now.
func (r *Reconciler) Track(ctx context.Context, d store.Deferred) error {
	now := r.o.Now()
	d.CreatedAt, d.NextCheckAt = now, now.Add(r.o.Interval)
	if err := r.o.Store.AddDeferred(ctx, d); err != nil {
		return fmt.Errorf("track %s %s: %w", d.Kind, d.ID, err)
	}
	return nil
}

// Observe looks at an object a client of projectID received from OpenAI. A
// background response in a terminal state is settled now from the usage it
// carries; a terminal batch is handed to the poll loop (its output file is
// read off the request path). Anything else, or an object not tracked, is
// left alone. Errors are logged: the poll loop settles what this could not.
func (r *Reconciler) Observe(ctx context.Context, projectID string, job usage.Job) {
	if job.ID == "" || !job.Terminal() {
		return
	}
	d, err := r.o.Store.GetDeferred(ctx, job.ID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return
	case err != nil:
		r.o.Logger.Warn().Err(err).Str("id", job.ID).Msg("look up deferred charge")
		return
	case d.SettledAt != nil || d.ProjectID != projectID:
		return
	}
	if d.Kind == store.DeferredBatch {
		select {
		case r.nudge <- d.ID:
		default: // the loop is busy; it reaches the charge when due
		}
		return
	}
	r.settleResponse(ctx, d, job)
}

// Run polls due charges until ctx ends. It never returns an error: a failed
// poll is retried one Interval later.
func (r *Reconciler) Run(ctx context.Context) error {
	// At most Rate polls a second: each waits for the pacer's next tick.
	pacer := time.NewTicker(time.Second / time.Duration(r.o.Rate))
	defer pacer.Stop()
	tick := time.NewTicker(r.o.Interval)
	defer tick.Stop()
	for {
		due, err := r.o.Store.DueDeferred(ctx, r.o.Now(), 100)
		if err != nil && ctx.Err() == nil {
			r.o.Logger.Warn().Err(err).Msg("list due deferred charges")
		}
		for _, d := range due {
			select {
			case <-ctx.Done():
				return nil
			case <-pacer.C:
			}
			r.check(ctx, d)
		}
		if len(due) == 100 {
			continue // more are due
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case id := <-r.nudge:
			if d, err := r.o.Store.GetDeferred(ctx, id); err == nil && d.SettledAt == nil {
				r.check(ctx, d)
			}
		}
	}
}

// check asks OpenAI about one charge and settles it when the work has ended.
func (r *Reconciler) check(ctx context.Context, d store.Deferred) {
	log := r.o.Logger.With().Str("kind", d.Kind).Str("id", d.ID).Str("project_id", d.ProjectID).Logger()
	postpone := func(err error) {
		log.Warn().Err(err).Msg("deferred charge not settled; will retry")
		if err := r.o.Store.PostponeDeferred(ctx, d.ID, r.o.Now().Add(r.o.Interval)); err != nil && ctx.Err() == nil {
			log.Warn().Err(err).Msg("postpone deferred charge")
		}
	}
	key, err := r.o.Keys.ProjectKey(ctx, d.ProjectID)
	if err != nil {
		postpone(fmt.Errorf("project key: %w", err))
		return
	}
	path := objectPath(d)
	body, err := r.o.Upstream.Get(ctx, key, path, 16<<20)
	if upstream.NotFound(err) {
		// Deleted before anyone read its end: what was reserved is its cost.
		r.settle(ctx, d, []charge{{model: d.Model, cost: d.ReservedMicroUSD}}, string(usage.SourceEstimated))
		return
	}
	if err != nil {
		postpone(err)
		return
	}
	job, ok := usage.ParseJob(body)
	if !ok {
		postpone(fmt.Errorf("GET %s: not a %s object", path, d.Kind))
		return
	}
	if !job.Terminal() {
		if err := r.o.Store.PostponeDeferred(ctx, d.ID, r.o.Now().Add(r.o.Interval)); err != nil && ctx.Err() == nil {
			log.Warn().Err(err).Msg("postpone deferred charge")
		}
		return
	}
	if d.Kind == store.DeferredResponse {
		r.settleResponse(ctx, d, job)
		return
	}
	byModel, err := r.batchUsage(ctx, key, job)
	if err != nil {
		postpone(err)
		return
	}
	charges := make([]charge, 0, len(byModel))
	for _, model := range slices.Sorted(maps.Keys(byModel)) {
		c, _ := r.o.Prices.BatchCost(model, byModel[model])
		charges = append(charges, charge{model: model, usage: byModel[model], cost: c})
	}
	r.settle(ctx, d, charges, string(usage.SourceProvider))
}

// batchUsage sums a finished batch's output file per model.
func (r *Reconciler) batchUsage(ctx context.Context, key string, job usage.Job) (map[string]usage.Usage, error) {
	if job.OutputFileID == "" {
		return map[string]usage.Usage{}, nil // failed, expired or cancelled before any line ran
	}
	body, err := r.o.Upstream.Open(ctx, key, "/v1/files/"+job.OutputFileID+"/content")
	if err != nil {
		return nil, fmt.Errorf("batch output file: %w", err)
	}
	defer body.Close()
	byModel, err := usage.ReadBatchOutput(body, r.o.MaxLine)
	if err != nil {
		return nil, fmt.Errorf("batch output file %s: %w", job.OutputFileID, err)
	}
	return byModel, nil
}

func (r *Reconciler) settleResponse(ctx context.Context, d store.Deferred, job usage.Job) {
	model := d.Model
	if job.Model != "" {
		model = job.Model
	}
	u := job.Usage
	if !job.HasUsage {
		u = usage.Usage{}
	}
	cost, _ := r.o.Prices.Cost(model, u)
	r.settle(ctx, d, []charge{{model: model, usage: u, cost: cost}}, string(usage.SourceProvider))
}

// charge is what one model's part of a deferred work used and cost.
type charge struct {
	model string
	usage usage.Usage
	cost  int64
}

// settle records the final usage and cost once, then moves the budget from
// the reservation to the cost and emits the settlement's event.
func (r *Reconciler) settle(ctx context.Context, d store.Deferred, charges []charge, source string) {
	now := r.o.Now()
	day := now.UTC().Format(store.DayLayout)
	records := make([]store.UsageRecord, 0, len(charges))
	var total usage.Usage
	var cost int64
	for _, c := range charges {
		records = append(records, store.UsageRecord{
			ProjectID: d.ProjectID, Day: day, Model: c.model, PriceVersion: r.o.Prices.Version, Requests: 1,
			PromptTokens: c.usage.PromptTokens, CompletionTokens: c.usage.CompletionTokens,
			CachedTokens: c.usage.CachedTokens, ReasoningTokens: c.usage.ReasoningTokens, CostMicroUSD: c.cost,
		})
		total.PromptTokens += c.usage.PromptTokens
		total.CompletionTokens += c.usage.CompletionTokens
		total.CachedTokens += c.usage.CachedTokens
		total.ReasoningTokens += c.usage.ReasoningTokens
		cost += c.cost
	}
	total.TotalTokens = total.PromptTokens + total.CompletionTokens
	log := r.o.Logger.With().Str("kind", d.Kind).Str("id", d.ID).Str("project_id", d.ProjectID).Logger()
	first, err := r.o.Store.SettleDeferred(ctx, d.ID, now, cost, records)
	if err != nil {
		log.Warn().Err(err).Msg("settle deferred charge; will retry")
		return
	}
	if !first {
		return // another replica, or an earlier call, settled it
	}
	if len(d.Ticket) > 0 && r.o.Limiter != nil {
		t, err := ratelimit.UnmarshalTicket(d.Ticket)
		if err == nil {
			tokens := total.TotalTokens
			if d.Kind == store.DeferredBatch {
				tokens = t.Tokens // batch tokens do not count against tokens per minute
			}
			err = r.o.Limiter.SettleTicket(ctx, t, tokens, cost)
		}
		if err != nil {
			// The roll-up is right; the budget keeps the reservation until the
			// month's counter is next seeded from it.
			log.Warn().Err(err).Msg("settle deferred budget reservation")
		}
	}
	log.Info().Int64("cost_micro_usd", cost).Int64("reserved_micro_usd", d.ReservedMicroUSD).Msg("deferred charge settled")
	if r.o.Events != nil {
		r.o.Events.Emit(&llmproxyv1.UsageEvent{
			Time: timestamppb.New(now), RequestId: "settle-" + d.ID, ProjectId: d.ProjectID, TokenId: d.TokenID,
			Method: "SETTLE", Path: objectPath(d), Model: d.Model,
			Outcome: "settled", Usage: &llmproxyv1.Usage{
				PromptTokens: total.PromptTokens, CompletionTokens: total.CompletionTokens,
				CachedTokens: total.CachedTokens, ReasoningTokens: total.ReasoningTokens, TotalTokens: total.TotalTokens,
			},
			UsageSource: source, CostMicroUsd: cost, CostUsd: float64(cost) / 1e6, PriceVersion: r.o.Prices.Version,
		})
	}
}

// objectPath is where OpenAI shows the work behind a charge.
func objectPath(d store.Deferred) string {
	if d.Kind == store.DeferredBatch {
		return "/v1/batches/" + d.ID
	}
	return "/v1/responses/" + d.ID
}
