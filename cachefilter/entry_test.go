package cachefilter_test

import (
	"maps"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/cachefilter"
)

func TestImmediateHeaders(t *testing.T) {
	t.Parallel()
	stored := time.Unix(1_700_000_000, 0)
	for _, tc := range []struct {
		name   string
		e      cachefilter.Entry
		now    time.Time
		wantCT string
		age    string
		status string
	}{
		{"json", cachefilter.Entry{Header: map[string]string{"content-type": "application/json; charset=utf-8"}, TTL: time.Minute, StoredAt: stored},
			stored.Add(18 * time.Second), "application/json; charset=utf-8", "18", "llm-proxy; hit; ttl=42"},
		{"stream", cachefilter.Entry{Stream: true, Header: map[string]string{"content-type": "application/json"}, TTL: time.Minute, StoredAt: stored},
			stored.Add(1500 * time.Millisecond), "text/event-stream", "1", "llm-proxy; hit; ttl=58"},
		{"stream charset kept", cachefilter.Entry{Stream: true, Header: map[string]string{"content-type": "text/event-stream; charset=utf-8"}, TTL: time.Minute, StoredAt: stored},
			stored, "text/event-stream; charset=utf-8", "0", "llm-proxy; hit; ttl=60"},
		{"no content type", cachefilter.Entry{TTL: time.Minute, StoredAt: stored},
			stored.Add(-time.Second), "application/json", "0", "llm-proxy; hit; ttl=60"},
		{"stale", cachefilter.Entry{TTL: time.Second, StoredAt: stored},
			stored.Add(time.Hour), "application/json", "3600", "llm-proxy; hit; ttl=0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.e.ImmediateHeaders(tc.now)
			if h["content-type"] != tc.wantCT || h["age"] != tc.age || h["cache-status"] != tc.status {
				t.Fatalf("headers %v", h)
			}
		})
	}
}

func TestMissStatus(t *testing.T) {
	t.Parallel()
	if got := cachefilter.MissStatus(false); got != "llm-proxy; fwd=miss" {
		t.Error(got)
	}
	if got := cachefilter.MissStatus(true); got != "llm-proxy; fwd=miss; stored" {
		t.Error(got)
	}
}

func TestStoredHeaders(t *testing.T) {
	t.Parallel()
	got := cachefilter.StoredHeaders(maps.All(map[string]string{
		"content-type": "application/json", "openai-model": "m", "set-cookie": "s=1",
		"authorization": "Bearer x", "x-request-id": "r", "x-ratelimit-remaining-requests": "1", "date": "now",
	}))
	if len(got) != 2 || got["content-type"] != "application/json" || got["openai-model"] != "m" {
		t.Fatalf("StoredHeaders = %v", got)
	}
}
