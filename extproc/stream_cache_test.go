package extproc

import (
	"strconv"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

const fileJSON = `{"id":"file-1","object":"file","bytes":3,"filename":"a.jsonl","purpose":"batch"}`

// fill stores body as the cached response of a GET of tokFree, which
// names its lifetime (the route is not immutable).
func (h *harness) fill(path, body string) {
	h.t.Helper()
	h.do(
		exchange{reqHeaders("GET", path, tokFree), answer{headers: swapped, mode: modeHeadersOnly}},
		exchange{respHeaders(200, "content-type", "application/json", "content-length", strconv.Itoa(len(body)), "cache-control", "max-age=60"),
			answer{headers: map[string]string{"x-request-id": "rid-1", "cache-status": "llm-proxy; fwd=miss"}, mode: modeBufferedBody}},
		exchange{respBody(body, true), answer{}},
	)
}

// cached reports whether a GET of tokFree is answered from the cache.
func (h *harness) cached(path string) bool {
	h.t.Helper()
	c := h.open()
	resp := c.send(reqHeaders("GET", path, tokFree))
	c.end()
	return resp.GetImmediateResponse() != nil
}

func TestCachePurgeOnWrite(t *testing.T) {
	for _, tc := range []struct {
		name, method, path string
		status             int
		purged             bool
	}{
		{"delete", "DELETE", "/v1/files/file-1", 200, true},
		{"failed delete", "DELETE", "/v1/files/file-1", 404, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.fill("/v1/files/file-1", fileJSON)
			h.fill("/v1/files", `{"object":"list","data":[`+fileJSON+`]}`)
			if !h.cached("/v1/files/file-1") || !h.cached("/v1/files") {
				t.Fatal("not stored")
			}
			c := h.open()
			c.send(reqHeaders(tc.method, tc.path, tokFree))
			c.send(respHeaders(tc.status, "content-type", "application/json"))
			c.end()
			if h.cached("/v1/files/file-1") == tc.purged || h.cached("/v1/files") == tc.purged {
				t.Errorf("purged: resource %v, collection %v; want %v", !h.cached("/v1/files/file-1"), !h.cached("/v1/files"), tc.purged)
			}
		})
	}
	t.Run("a response cancelled", func(t *testing.T) {
		h := newHarness(t)
		h.fill("/v1/responses/resp_1", queuedJSON)
		h.do(
			exchange{reqHeaders("POST", "/v1/responses/resp_1/cancel", tokFree), answer{headers: swapped, mode: modeHeadersOnly}},
			exchange{respHeaders(200, "content-type", "application/json", "content-length", strconv.Itoa(len(completedJSON))),
				answer{headers: map[string]string{"x-request-id": "rid-1"}, mode: modeBufferedBody}},
			exchange{respBody(completedJSON, true), answer{}},
		)
		if h.cached("/v1/responses/resp_1") {
			t.Error("a cancelled response is still answered from the cache")
		}
	})
}

// TestCacheFollowers: identical concurrent misses wait for the first one's
// answer, and are let go as soon as it will not be stored.
func TestCacheFollowers(t *testing.T) {
	for _, tc := range []struct {
		name string
		// The leader's answer; status 0: it goes away before one.
		status int
		kv     []string
		body   string
		// Whether the follower is answered from the cache.
		hit bool
	}{
		{"the leader stores: the follower gets its answer", 200, []string{"content-type", "application/json"}, modelsJSON, true},
		{"an error is not stored", 500, []string{"content-type", "application/json"}, "", false},
		{"no-store", 200, []string{"content-type", "application/json", "cache-control", "no-store"}, "", false},
		{"an encoded body is not stored", 200, []string{"content-type", "application/json", "content-encoding", "gzip"}, "", false},
		{"larger than an entry may be", 200, []string{"content-type", "application/json"}, modelsJSON + modelsJSON, false},
		{"the leader goes away first", 0, nil, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, func(_ *harness, o *Options) { o.CacheMaxEntry = len(modelsJSON) })
			leader := h.open()
			checkAnswer(t, 0, leader.send(reqHeaders("GET", "/v1/models", tokFree)), answer{headers: swapped, mode: modeHeadersOnly})

			follower := h.open()
			if err := follower.ps.Send(reqHeaders("GET", "/v1/models", tokFree)); err != nil {
				t.Fatal(err)
			}
			// Before it waits, the follower asks Envoy for more time.
			interim, err := follower.ps.Recv()
			if err != nil || interim.GetOverrideMessageTimeout().AsDuration() != 31*time.Second {
				t.Fatalf("interim answer %v, %v", interim, err)
			}
			start := time.Now()
			answers := make(chan *extprocv3.ProcessingResponse, 1)
			go func() {
				resp, _ := follower.ps.Recv()
				answers <- resp
			}()

			switch {
			case tc.status == 0:
				leader.abort()
			case tc.body != "":
				leader.send(respHeaders(tc.status, tc.kv...))
				leader.send(respBody(tc.body, true))
			default:
				leader.send(respHeaders(tc.status, tc.kv...))
			}
			resp := <-answers
			if waited := time.Since(start); waited > 10*time.Second {
				t.Errorf("the follower waited %v", waited)
			}
			if status, _, body := immediate(resp); (status == 200 && body == modelsJSON) != tc.hit {
				t.Errorf("follower answered %v, want a hit: %v", resp, tc.hit)
			}
			if tc.status != 0 {
				leader.end()
			}
			follower.end()
			if got, want := h.auth.hits("tok_free"), map[bool]int{true: 1}[tc.hit]; got != want {
				t.Errorf("%d cache hits counted, want %d", got, want)
			}
		})
	}
}
