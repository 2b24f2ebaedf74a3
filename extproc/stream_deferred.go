package extproc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/llm-proxy/llm-proxy/config"
	"github.com/llm-proxy/llm-proxy/deferred"
	"github.com/llm-proxy/llm-proxy/ratelimit"
	"github.com/llm-proxy/llm-proxy/store"
	"github.com/llm-proxy/llm-proxy/usage"
)

// Work that OpenAI finishes after answering — a background response
// ("background": true, answered "queued") and a batch — is reserved when it
// is created like any request, but the reservation is not settled at the end
// of the response: it is handed, as a ratelimit.Ticket, to package deferred,
// which settles it from OpenAI's own record when the work has ended. Answers
// that show such work in a terminal state (GET /v1/responses/{id}, cancel,
// GET /v1/batches/{id}: routes charged "settles") are shown to it too.

// deferredWork keeps and settles charges of work that ends after its
// response (package deferred).
type deferredWork interface {
	Track(ctx context.Context, d store.Deferred) error
	Observe(ctx context.Context, projectID string, job usage.Job)
}

// fileReader reads a file's content from OpenAI with a project's key
// (package upstream): a batch's input file, to reserve its cost.
type fileReader interface {
	Open(ctx context.Context, key, path string) (io.ReadCloser, error)
}

// usageDeferred is the usage_source of a request whose cost is settled
// later, by package deferred (its event carries no cost; the settlement's
// event does).
const usageDeferred usage.Source = "deferred"

// errBackgroundRefused and errBatchRefused: the project does not allow work
// that is charged after its response.
var (
	errBackgroundRefused = errors.New("background responses are disabled for this project")
	errBatchRefused      = errors.New("batches are disabled for this project")
	errBatchUnavailable  = errors.New("the batch input file could not be read to reserve its cost")
	errBatchTooLarge     = errors.New("the batch input file is larger than this proxy reads to reserve its cost")
)

// charge is the charging rule of the request's route ("" before a route
// matched).
func (st *stream) charge() string {
	if st.route == nil {
		return ""
	}
	return st.route.Charge
}

// checkDeferredPolicy refuses background responses and batches to projects
// that do not allow them.
func (st *stream) checkDeferredPolicy() error {
	switch {
	case st.charge() == config.ChargeTokens && st.req.Background && !st.principal.AllowBackground:
		return errBackgroundRefused
	case st.charge() == config.ChargeBatch && !st.principal.AllowBatches:
		return errBatchRefused
	}
	return nil
}

// defersWork reports whether this request creates work charged later.
func (st *stream) defersWork() bool {
	return st.srv.deferred != nil &&
		(st.charge() == config.ChargeBatch || (st.charge() == config.ChargeTokens && st.req.Background))
}

// estimateBatch is the reservation of a batch: what every line of its input
// file may cost at the Batch API's price. The file is read from OpenAI with
// the project's key, within Envoy's (extended) message timeout. Under a
// model allowlist each line's model is checked as it is read
// (checkBatchLine).
func (st *stream) estimateBatch() (int64, error) {
	if st.srv.files == nil || st.req.InputFileID == "" {
		return 0, &badRequestError{err: errors.New("input_file_id is required")}
	}
	st.extendTimeout(batchEstimateTimeout + time.Second)
	ctx, cancel := context.WithTimeout(st.ctx, batchEstimateTimeout)
	defer cancel()
	body, err := st.srv.files.Open(ctx, st.principal.OpenAIKey, "/v1/files/"+st.req.InputFileID+"/content")
	if err != nil {
		return 0, fmt.Errorf("%w: %w", errBatchUnavailable, err)
	}
	defer body.Close()
	// Reading one byte past the limit tells a file that is too large from
	// one that fits exactly: a cut file would reserve too little.
	lr := &io.LimitedReader{R: body, N: st.srv.maxBatchInput + 1}
	var check func(int, string, usage.Request) error
	if st.principal.Rules.RestrictsModels() {
		check = st.checkBatchLine
	}
	cost, lines, err := deferred.EstimateBatch(lr, maxBatchLine, st.srv.tokenizer, st.srv.prices, st.srv.defaultMaxTokens, check)
	var re *ruleError
	switch {
	case errors.As(err, &re):
		return 0, err
	case lr.N <= 0:
		return 0, errBatchTooLarge
	}
	if err != nil {
		return 0, &badRequestError{err: err}
	}
	st.rules.linesChecked = check != nil
	st.logger().Debug().Int("lines", lines).Int64("cost_micro_usd", cost).Msg("batch reserved")
	return cost, nil
}

// batchEstimateTimeout bounds reading a batch input file; Envoy's
// max_message_timeout (10s in envoy.yaml) bounds it too.
const batchEstimateTimeout = 8 * time.Second

// maxBatchLine is the longest batch input line read (OpenAI's limit on one
// request body is of this order).
const maxBatchLine = 16 << 20

// deferSettlement hands the reservation of work that has not ended to
// package deferred and reports whether it did; the request is then settled
// later, not now.
func (st *stream) deferSettlement(ctx context.Context) bool {
	if !st.defersWork() || st.status != http.StatusOK || !st.usage.complete || st.usage.truncated {
		return false
	}
	job, ok := usage.ParseJob(st.usage.body)
	if !ok || job.ID == "" || job.Terminal() {
		return false
	}
	d := store.Deferred{ID: job.ID, Kind: store.DeferredResponse, ProjectID: st.principal.ProjectID,
		TokenID: st.principal.TokenID, Model: st.req.Model}
	if st.charge() == config.ChargeBatch {
		d.Kind = store.DeferredBatch
	}
	if t, ok := st.limits.reservation.Ticket(); ok {
		b, err := ratelimit.MarshalTicket(t)
		if err != nil {
			st.logger().Error().Err(err).Msg("keep reservation")
		}
		d.Ticket, d.ReservedMicroUSD = b, t.Cost
	}
	if err := st.srv.deferred.Track(ctx, d); err != nil {
		// Nothing will settle it later: settle it now, from what the answer
		// says (the prompt estimate), like any request.
		st.logger().Error().Err(err).Msg("deferred charge not tracked: settled now at the estimate")
		return false
	}
	st.limits.reservation.Keep() // the stored ticket settles it
	return true
}

// observeJob shows package deferred an answer that may show work ending.
func (st *stream) observeJob(ctx context.Context) {
	if st.srv.deferred == nil || st.charge() != config.ChargeSettles || st.status != http.StatusOK || !st.usage.complete {
		return
	}
	if job, ok := usage.ParseJob(st.usage.body); ok {
		st.srv.deferred.Observe(ctx, st.principal.ProjectID, job)
	}
}
