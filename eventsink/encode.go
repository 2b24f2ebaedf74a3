package eventsink

import (
	"errors"
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/timestamppb"

	llmproxyv1 "github.com/llm-proxy/llm-proxy/proto/llmproxy/v1"
)

// appendEvent appends the [MarshalEvent] encoding of ev to b.
//
// It is written out by hand rather than with protojson: every request emits
// an event, and protojson's reflection made up a tenth of the sidecar's CPU.
// The output is what protojson writes with the options MarshalEvent
// documents (proto field names, in field-number order, zero values included,
// unset messages left out, int64 as strings, Timestamp as RFC 3339 in UTC),
// and TestAppendEventMatchesProtoJSON keeps it so for every field of
// event.proto — a field added there fails that test until it is added here.
// One difference: where protojson refuses a string that is not valid UTF-8,
// each invalid byte is written as U+FFFD, so a client's odd model name cannot
// cost its request's event.
func appendEvent(b []byte, ev *llmproxyv1.UsageEvent) ([]byte, error) {
	start := len(b)
	b = append(b, `{"id":`...)
	b = appendString(b, ev.GetId())
	if t := ev.GetTime(); t != nil {
		var err error
		b = append(b, `,"time":`...)
		if b, err = appendTimestamp(b, t); err != nil {
			return b[:start], err
		}
	}
	b = appendStringField(b, "request_id", ev.GetRequestId())
	b = appendStringField(b, "project_id", ev.GetProjectId())
	b = appendStringField(b, "token_id", ev.GetTokenId())
	b = appendStringField(b, "method", ev.GetMethod())
	b = appendStringField(b, "path", ev.GetPath())
	b = appendStringField(b, "model", ev.GetModel())
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(ev.GetStatus()), 10)
	b = append(b, `,"stream":`...)
	b = strconv.AppendBool(b, ev.GetStream())
	b = appendStringField(b, "cache_status", ev.GetCacheStatus())
	b = appendStringField(b, "outcome", ev.GetOutcome())
	b = appendDoubleField(b, "latency_ms", ev.GetLatencyMs())
	b = appendDoubleField(b, "ttfb_ms", ev.GetTtfbMs())
	if u := ev.GetUsage(); u != nil {
		b = append(b, `,"usage":{"prompt_tokens":`...)
		b = appendInt64(b, u.GetPromptTokens())
		b = append(b, `,"completion_tokens":`...)
		b = appendInt64(b, u.GetCompletionTokens())
		b = append(b, `,"cached_tokens":`...)
		b = appendInt64(b, u.GetCachedTokens())
		b = append(b, `,"reasoning_tokens":`...)
		b = appendInt64(b, u.GetReasoningTokens())
		b = append(b, `,"total_tokens":`...)
		b = appendInt64(b, u.GetTotalTokens())
		b = append(b, '}')
	}
	b = appendStringField(b, "usage_source", ev.GetUsageSource())
	b = appendDoubleField(b, "cost_usd", ev.GetCostUsd())
	b = append(b, `,"cost_micro_usd":`...)
	b = appendInt64(b, ev.GetCostMicroUsd())
	b = appendStringField(b, "price_version", ev.GetPriceVersion())
	b = appendStringField(b, "client_address", ev.GetClientAddress())
	b = append(b, `,"aborted":`...)
	b = strconv.AppendBool(b, ev.GetAborted())
	b = appendStringField(b, "error_code", ev.GetErrorCode())
	b = appendStringField(b, "response_model", ev.GetResponseModel())
	b = append(b, `,"finish_reasons":[`...)
	for i, r := range ev.GetFinishReasons() {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, r)
	}
	b = append(b, ']')
	b = appendStringField(b, "end_user", ev.GetEndUser())
	b = appendStringField(b, "trace_id", ev.GetTraceId())
	b = appendStringField(b, "span_id", ev.GetSpanId())
	b = appendStringField(b, "parent_span_id", ev.GetParentSpanId())
	b = appendStringField(b, "limit_decision", ev.GetLimitDecision())
	if c := ev.GetCapture(); c != nil {
		b = append(b, `,"capture":{"request":`...)
		b = appendString(b, c.GetRequest())
		b = append(b, `,"request_truncated":`...)
		b = strconv.AppendBool(b, c.GetRequestTruncated())
		b = appendStringField(b, "response", c.GetResponse())
		b = append(b, `,"response_truncated":`...)
		b = strconv.AppendBool(b, c.GetResponseTruncated())
		b = appendStringField(b, "request_content_type", c.GetRequestContentType())
		b = append(b, `,"request_bytes":`...)
		b = appendInt64(b, c.GetRequestBytes())
		b = appendStringField(b, "response_content_type", c.GetResponseContentType())
		b = append(b, `,"response_bytes":`...)
		b = appendInt64(b, c.GetResponseBytes())
		b = append(b, '}')
	}
	return append(b, '}'), nil
}

func appendStringField(b []byte, name, v string) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return appendString(b, v)
}

func appendDoubleField(b []byte, name string, v float64) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	switch {
	case math.IsNaN(v):
		return append(b, `"NaN"`...)
	case math.IsInf(v, 1):
		return append(b, `"Infinity"`...)
	case math.IsInf(v, -1):
		return append(b, `"-Infinity"`...)
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}

// appendInt64 writes an int64 as the proto3 JSON mapping does: a string.
func appendInt64(b []byte, v int64) []byte {
	b = append(b, '"')
	b = strconv.AppendInt(b, v, 10)
	return append(b, '"')
}

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			b = append(b, c)
			i++
			continue
		}
		if c < utf8.RuneSelf {
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b = utf8.AppendRune(b, utf8.RuneError)
		} else {
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return append(b, '"')
}

// The range of a google.protobuf.Timestamp: 0001-01-01 to 9999-12-31.
const (
	minTimestampSeconds = -62135596800
	maxTimestampSeconds = 253402300799
)

var errBadTimestamp = errors.New("encode usage event: time out of the range of google.protobuf.Timestamp")

// appendTimestamp writes t as the proto3 JSON mapping does: RFC 3339 in UTC,
// with 0, 3, 6 or 9 fractional digits.
func appendTimestamp(b []byte, t *timestamppb.Timestamp) ([]byte, error) {
	secs, nanos := t.GetSeconds(), t.GetNanos()
	if secs < minTimestampSeconds || secs > maxTimestampSeconds || nanos < 0 || nanos >= 1e9 {
		return b, errBadTimestamp
	}
	b = append(b, '"')
	b = time.Unix(secs, 0).UTC().AppendFormat(b, "2006-01-02T15:04:05")
	if nanos > 0 {
		var frac [10]byte
		s := strconv.AppendInt(frac[:0], int64(nanos)+1e9, 10)[1:] // nine digits
		switch {
		case nanos%1e6 == 0:
			s = s[:3]
		case nanos%1e3 == 0:
			s = s[:6]
		}
		b = append(b, '.')
		b = append(b, s...)
	}
	return append(b, 'Z', '"'), nil
}
