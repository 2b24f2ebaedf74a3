package adminapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"

	"github.com/llm-proxy/llm-proxy/eventsink"
	"github.com/llm-proxy/llm-proxy/store"
)

// auditWriter stores the record of a management operation before the
// operation is acknowledged; *eventsink.AuditLog provides it.
type auditWriter interface {
	Write(ctx context.Context, ev store.AuditEvent) error
}

// auditReader is what GET /manage/audit and /manage/audit/{id} need of the
// store.
type auditReader interface {
	ListAudit(ctx context.Context, q store.AuditQuery) ([]store.AuditEvent, string, error)
	GetAudit(ctx context.Context, id string) (store.AuditEvent, error)
	VerifyAudit(ctx context.Context) (store.AuditVerification, error)
}

var _ auditReader = (*store.Store)(nil)

// DefaultTrustedHops is the [Options.TrustedHops] for llm-proxy's own
// deployment: Envoy, with use_remote_address, in front of the management API.
const DefaultTrustedHops = 1

// auditWriteTimeout bounds the wait for an audit event to be stored.
const auditWriteTimeout = 5 * time.Second

// Log field names of audit failures.
const (
	logClientAddress = "client_address"
	logAuditAction   = "audit_action"
	logAuditTarget   = "audit_target_id"
)

// requestInfo is what ServeHTTP learns about a request that the audit
// record of an operation needs.
type requestInfo struct {
	id            string // the x-request-id sent back
	clientAddress string // see clientAddress, or the in-process [Caller]'s
	actor         string // the in-process [Caller]'s actor; "" for the server's own
}

// Caller names who is behind a request that a program in the same process
// (the admin web UI) hands to [Server.ServeHTTP] on behalf of someone else:
// the audit log records Actor instead of "management:<fingerprint>", and
// ClientAddress instead of the address read from the request, which is the
// caller's own. A Caller travels only in the request's context, which no
// network client can set; the request must still carry the management
// token, and failed logins are throttled by ClientAddress.
type Caller struct {
	Actor         string // e.g. "admin-ui"; "" keeps the server's own actor
	ClientAddress string // the client's address as the caller learnt it; "" keeps the request's
}

type callerKey struct{}

// WithCaller returns a copy of ctx under which [Server.ServeHTTP] audits as c.
func WithCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

func callerFrom(ctx context.Context) Caller {
	c, _ := ctx.Value(callerKey{}).(Caller)
	return c
}

type requestInfoKey struct{}

func withRequestInfo(ctx context.Context, info requestInfo) context.Context {
	return context.WithValue(ctx, requestInfoKey{}, info)
}

func requestInfoFrom(ctx context.Context) requestInfo {
	info, _ := ctx.Value(requestInfoKey{}).(requestInfo)
	return info
}

// ClientAddress returns the IP address of the client that sent r as the
// trustedHops proxies in front of the server saw it, read exactly as the
// API reads it for its audit log and login throttle (see [Options.TrustedHops]).
func ClientAddress(r *http.Request, trustedHops int) string { return clientAddress(r, trustedHops) }

// clientAddress returns the IP address of the client that sent r, as the
// trusted proxies in front of the server saw it.
//
// Each of the trustedHops proxies appends the address of its peer to
// X-Forwarded-For (Envoy does with use_remote_address: true), so the
// trustedHops-th entry from the right is the one the outermost trusted
// proxy wrote, and whatever is left of it came from the client and is
// ignored: a client cannot choose its recorded address by sending the
// header itself. With trustedHops 0, or when the header has fewer entries
// than trusted hops or the entry is not an IP address (a proxy that did not
// append), the address is the connection's peer, r.RemoteAddr.
func clientAddress(r *http.Request, trustedHops int) string {
	peer := r.RemoteAddr
	if host, _, err := net.SplitHostPort(peer); err == nil {
		peer = host
	}
	if trustedHops <= 0 {
		return peer
	}
	var hops []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		for h := range strings.SplitSeq(v, ",") {
			hops = append(hops, strings.TrimSpace(h))
		}
	}
	if len(hops) < trustedHops {
		return peer
	}
	if addr, ok := parseHop(hops[len(hops)-trustedHops]); ok {
		return addr
	}
	return peer
}

// parseHop reads an X-Forwarded-For entry: an IP address, possibly with a
// port, and returns it in canonical form.
func parseHop(s string) (string, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap().String(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().String(), true
	}
	return "", false
}

// audit records a management operation that has taken effect, before its
// response is written. A failure to store the record does not fail the
// operation — it has happened, and answering 500 would invite a retry of
// something already done. It is logged here at error, with the request id,
// and counted by the audit log (llm_proxy_audit_store_errors_total), which
// keeps the event and stores it at its next flush.
func (s *Server) audit(r *http.Request, ev store.AuditEvent) {
	if s.auditLog == nil {
		return
	}
	info := requestInfoFrom(r.Context())
	ev.Time = s.now().UTC()
	ev.Actor = s.actor
	if info.actor != "" {
		ev.Actor = info.actor
	}
	ev.RequestID = info.id
	ev.ClientAddress = info.clientAddress
	ev.Outcome = store.AuditOutcomeSuccess
	// Detached from the request: a client that hangs up once the change is
	// made must not cancel its record.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), auditWriteTimeout)
	defer cancel()
	if err := s.auditLog.Write(ctx, ev); err != nil {
		zerolog.Ctx(r.Context()).Error().Err(err).
			Str(logAuditAction, ev.Action).Str(logAuditTarget, ev.TargetID).
			Msg("audit record of a management operation not stored; the operation stands")
	}
}

// auditField is one request field for an audit event's detail.
type auditField struct {
	name string
	set  bool
}

// flagField names a switch (active, allow_background, …) with its new
// value, the part of a change an auditor needs to tell enabling from
// disabling.
func flagField(name string, o optional[bool]) auditField {
	return auditField{name: name + "=" + strconv.FormatBool(o.Value), set: o.has()}
}

// auditFields renders the fields a request set as an audit event's detail,
// e.g. "fields: name, active=false, limits". It shows names, not values, so
// neither a key nor a name's content reaches the audit log; "" if none.
func auditFields(fields ...auditField) string {
	var names []string
	for _, f := range fields {
		if f.set {
			names = append(names, f.name)
		}
	}
	if len(names) == 0 {
		return ""
	}
	return "fields: " + strings.Join(names, ", ")
}

// auditListJSON is a page of the audit log; NextCursor is null on the last page.
type auditListJSON struct {
	Object     string                `json:"object"`
	Data       []eventsink.AuditJSON `json:"data"`
	NextCursor *string               `json:"next_cursor"`
}

// listAudit answers GET /manage/audit?project_id=&action=&actor=&token_id=
// &outcome=&client_address=&from=&to=&limit=&cursor=: a page of JSON, or
// every matching event as JSON lines (see exportAudit).
func (s *Server) listAudit(w http.ResponseWriter, r *http.Request) {
	q, err := s.auditQuery(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	jsonl, err := wantsJSONL(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if jsonl {
		s.exportAudit(w, r, q)
		return
	}
	events, next, err := s.auditEvents.ListAudit(r.Context(), q)
	if err != nil {
		writeError(w, r, listError("list audit", err))
		return
	}
	page := auditListJSON{Object: "list", Data: make([]eventsink.AuditJSON, 0, len(events))}
	for _, e := range events {
		page.Data = append(page.Data, eventsink.AuditView(e))
	}
	if next != "" {
		next = s.cursors.seal(listAudit, next)
		page.NextCursor = &next
	}
	writeJSON(w, http.StatusOK, page)
}

// ndjson is the media type of the audit log's JSON lines export.
const ndjson = "application/x-ndjson"

// wantsJSONL reports whether the audit listing is asked for as JSON lines:
// format=jsonl, or an Accept header naming application/x-ndjson (and
// format absent). format=json asks for the page whatever Accept says.
func wantsJSONL(r *http.Request) (bool, error) {
	switch f := r.URL.Query().Get("format"); f {
	case "jsonl":
		return true, nil
	case "json":
		return false, nil
	case "":
	default:
		return false, invalid(codeInvalidValue, "format", "format must be json or jsonl, not %q.", f)
	}
	for _, v := range r.Header.Values("Accept") {
		for part := range strings.SplitSeq(v, ",") {
			mt, _, _ := strings.Cut(part, ";")
			if strings.EqualFold(strings.TrimSpace(mt), ndjson) {
				return true, nil
			}
		}
	}
	return false, nil
}

// exportAudit writes every event q selects, newest first, one JSON object
// (the page's event shape) per line, reading the store a page at a time
// and flushing each page, so an export of a million rows holds one page in
// memory. It starts at q.Cursor when given and ignores q.Limit. Once the
// first line is out the status is sent: a store error after it aborts the
// response (the client sees a cut connection, never a short export that
// looks complete).
func (s *Server) exportAudit(w http.ResponseWriter, r *http.Request, q store.AuditQuery) {
	q.Limit = store.MaxAuditLimit
	flusher, _ := w.(http.Flusher)
	started := false
	for {
		events, next, err := s.auditEvents.ListAudit(r.Context(), q)
		if err != nil {
			if !started {
				writeError(w, r, listError("export audit", err))
				return
			}
			// net/http's way to end a response as failed once its status is
			// out: the connection is cut, and nothing is logged as a crash.
			zerolog.Ctx(r.Context()).Error().Err(err).Msg("audit export cut short")
			panic(http.ErrAbortHandler)
		}
		if !started {
			w.Header().Set("Content-Type", ndjson)
			w.WriteHeader(http.StatusOK)
			started = true
		}
		var buf []byte
		for _, e := range events {
			b, _ := json.Marshal(eventsink.AuditView(e)) // strings only: it always marshals
			buf = append(append(buf, b...), '\n')
		}
		if _, err := w.Write(buf); err != nil {
			return // the client went away
		}
		if flusher != nil {
			flusher.Flush()
		}
		if next == "" {
			return
		}
		q.Cursor = next
	}
}

// AuditVerification is the answer of GET /manage/audit/verify: whether the
// audit log's hash chain holds, and if not its first broken link.
type AuditVerification struct {
	Object      string      `json:"object"` // "audit.verification"
	Intact      bool        `json:"intact"`
	Checked     int64       `json:"checked"`
	Unchained   int64       `json:"unchained"`
	Head        string      `json:"head"`
	FirstBroken *AuditBreak `json:"first_broken"`
}

// AuditBreak is the first link of the audit chain that does not hold.
type AuditBreak struct {
	Seq    int64  `json:"seq"`
	ID     string `json:"id"`
	Reason string `json:"reason"`
}

// verifyAudit answers GET /manage/audit/verify.
func (s *Server) verifyAudit(w http.ResponseWriter, r *http.Request) {
	v, err := s.auditEvents.VerifyAudit(r.Context())
	if err != nil {
		writeError(w, r, fmt.Errorf("verify audit: %w", err))
		return
	}
	out := AuditVerification{Object: "audit.verification", Intact: v.Broken == nil,
		Checked: v.Checked, Unchained: v.Unchained, Head: v.Head}
	if b := v.Broken; b != nil {
		out.FirstBroken = &AuditBreak{Seq: b.Seq, ID: b.ID, Reason: b.Reason}
	}
	writeJSON(w, http.StatusOK, out)
}

// getAudit answers GET /manage/audit/{id}: one event.
func (s *Server) getAudit(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, "audit event")
	if !ok {
		return
	}
	e, err := s.auditEvents.GetAudit(r.Context(), id)
	if err != nil {
		writeError(w, r, storeError("audit event", id, "get audit event", err))
		return
	}
	writeJSON(w, http.StatusOK, eventsink.AuditView(e))
}

// auditQuery reads the audit listing's query parameters. Empty project_id,
// action and cursor do not filter; from, to and limit, when present, must
// be valid, and a cursor must be one this API returned.
func (s *Server) auditQuery(r *http.Request) (store.AuditQuery, error) {
	v := r.URL.Query()
	q := store.AuditQuery{ProjectID: v.Get("project_id"), Action: v.Get("action"), Actor: v.Get("actor")}
	if err := checkIDParam("project_id", q.ProjectID); err != nil {
		return q, err
	}
	if len(q.Actor) > maxActorLen || !utf8.ValidString(q.Actor) || hasControl(q.Actor) {
		return q, invalid(codeInvalidValue, "actor", "actor must be at most %d characters of UTF-8 text without control characters, e.g. admin-ui.", maxActorLen)
	}
	q.TokenID = v.Get("token_id")
	if q.TokenID != "" && !validID(q.TokenID) {
		return q, invalid(codeInvalidValue, "token_id", "token_id must be a token id: letters, digits, '_' and '-', at most %d characters.", maxIDLen)
	}
	switch q.Outcome = v.Get("outcome"); q.Outcome {
	case "", store.AuditOutcomeSuccess, store.AuditOutcomeDenied:
	default:
		return q, invalid(codeInvalidValue, "outcome", "outcome must be %s or %s.", store.AuditOutcomeSuccess, store.AuditOutcomeDenied)
	}
	if a := v.Get("client_address"); a != "" {
		// Stored addresses are canonical (see clientAddress): match any
		// spelling of the same address.
		ip, err := netip.ParseAddr(a)
		if err != nil {
			return q, invalid(codeInvalidValue, "client_address", "client_address must be an IP address such as 203.0.113.7 or 2001:db8::1.")
		}
		q.ClientAddress = ip.Unmap().String()
	}
	if q.Action != "" && !slices.Contains(store.AuditActions(), q.Action) {
		return q, invalid(codeInvalidValue, "action", "action %q is not an audit action; use one of %s.",
			q.Action, strings.Join(store.AuditActions(), ", "))
	}
	var err error
	if v.Has("from") {
		if q.From, err = parseTimestamp("from", v.Get("from")); err != nil {
			return q, err
		}
	}
	if v.Has("to") {
		if q.To, err = parseTimestamp("to", v.Get("to")); err != nil {
			return q, err
		}
	}
	if !q.From.IsZero() && !q.To.IsZero() && q.From.After(q.To) {
		return q, invalid(codeInvalidValue, "from", "from (%s) must not be after to (%s).",
			q.From.Format(time.RFC3339Nano), q.To.Format(time.RFC3339Nano))
	}
	q.Limit, q.Cursor, err = s.pageParams(r, listAudit, store.DefaultAuditLimit, store.MaxAuditLimit)
	return q, err
}

// maxActorLen bounds the actor filter; actors are short ("admin-ui",
// "management:0a1b2c3d", a token id).
const maxActorLen = 128

// parseTimestamp reads a query parameter holding an RFC 3339 time.
func parseTimestamp(param, v string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, invalid(codeInvalidValue, param, "%s must be an RFC 3339 timestamp such as 2025-03-31T12:00:00Z.", param)
	}
	return t, nil
}
