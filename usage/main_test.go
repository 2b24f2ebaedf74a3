package usage

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
)

// networkCalls counts requests through http.DefaultTransport, which is what
// tiktoken-go's default loader would use to download BPE ranks.
var networkCalls atomic.Int64

type refuseTransport struct{}

func (refuseTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	networkCalls.Add(1)
	return nil, errors.New("usage tests: network access refused")
}

// tiktokenCacheDir is where tiktoken-go's default loader would cache
// downloaded rank files; it must stay empty.
var tiktokenCacheDir string

func TestMain(m *testing.M) {
	http.DefaultTransport = refuseTransport{}
	dir, err := os.MkdirTemp("", "usage-tiktoken-cache")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	tiktokenCacheDir = dir
	os.Setenv("TIKTOKEN_CACHE_DIR", dir)
	code := m.Run()
	if n := networkCalls.Load(); n > 0 {
		fmt.Fprintf(os.Stderr, "usage tests: %d network requests\n", n)
		code = 1
	}
	if entries, _ := os.ReadDir(dir); len(entries) > 0 {
		fmt.Fprintf(os.Stderr, "usage tests: tiktoken cache dir written: %v\n", entries)
		code = 1
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// sharedTokenizer is built once: loading the encodings takes half a second.
var sharedTokenizer = sync.OnceValue(NewTokenizer)

func testTokenizer(tb testing.TB) *Tokenizer {
	tb.Helper()
	return sharedTokenizer()
}
