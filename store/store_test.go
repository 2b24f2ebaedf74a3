package store_test

import (
	"path/filepath"
	"testing"

	"github.com/llm-proxy/llm-proxy/store"
	"github.com/llm-proxy/llm-proxy/store/storetest"
	"github.com/llm-proxy/llm-proxy/tests/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestSQLite(t *testing.T) {
	storetest.Run(t, func(t *testing.T) *store.Store {
		// A directory that does not exist yet: Open creates it.
		return open(t, filepath.Join(t.TempDir(), "data", "llm-proxy.db"))
	})
}

func TestPostgres(t *testing.T) {
	testenv.Postgres(t) // skip (or fail, in CI) once, not in every subtest
	storetest.Run(t, func(t *testing.T) *store.Store {
		return open(t, testenv.NewPostgresDB(t))
	})
}

func open(t *testing.T, url string) *store.Store {
	t.Helper()
	s, err := store.Open(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}
