package testenv

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { Main(m) }

func TestNewPostgresDB(t *testing.T) {
	base := Postgres(t)
	var names []string
	for i := range 2 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			dbURL := NewPostgresDB(t)
			u, err := url.Parse(dbURL)
			if err != nil {
				t.Fatal(err)
			}
			names = append(names, strings.TrimPrefix(u.Path, "/"))
			conn, err := pgx.Connect(t.Context(), dbURL)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(context.Background())
			var n int
			if err := conn.QueryRow(t.Context(),
				`SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 0 {
				t.Errorf("new database has %d tables, want none", n)
			}
			if _, err := conn.Exec(t.Context(), `CREATE TABLE t (x int)`); err != nil {
				t.Fatal(err)
			}
		})
	}
	if len(names) != 2 || names[0] == names[1] {
		t.Fatalf("databases %v, want two distinct", names)
	}
	// Both were dropped when their tests ended.
	conn, err := pgx.Connect(t.Context(), base)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var left int
	if err := conn.QueryRow(t.Context(),
		`SELECT count(*) FROM pg_database WHERE datname = ANY($1)`, names).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Errorf("%d of %v not dropped", left, names)
	}
}

func TestRedis(t *testing.T) {
	u, err := url.Parse(Redis(t))
	if err != nil {
		t.Fatal(err)
	}
	if u.Scheme != "redis" {
		t.Errorf("scheme %q, want redis", u.Scheme)
	}
	if err := pingRedis(t.Context(), u.Host); err != nil {
		t.Fatal(err)
	}
}

// recorder is a testing.TB that records Fatalf and Skipf instead of
// stopping the test.
type recorder struct {
	testing.TB
	fatal, skip string
}

func (r *recorder) Helper()                        {}
func (r *recorder) Fatalf(format string, a ...any) { r.fatal = fmt.Sprintf(format, a...) }
func (r *recorder) Skipf(format string, a ...any)  { r.skip = fmt.Sprintf(format, a...) }
func (r *recorder) Logf(string, ...any)            {}

func TestMissingService(t *testing.T) {
	for _, tc := range []struct {
		ci        string
		wantFatal bool
	}{
		{"true", true},
		{"1", true},
		{"", false},
		{"false", false},
	} {
		t.Run("CI="+tc.ci, func(t *testing.T) {
			t.Setenv("CI", tc.ci)
			s := &service{
				name: "Thing", envVar: "THING_URL", install: "thing-server",
				discover: func() (instance, error) {
					return instance{}, &missingError{tried: []string{"no thing-server on PATH"}}
				},
			}
			r := &recorder{TB: t}
			s.url(r)
			msg := r.skip
			if tc.wantFatal {
				msg = r.fatal
			}
			if msg == "" || (r.fatal != "" && r.skip != "") {
				t.Fatalf("fatal=%q skip=%q; want only a %s", r.fatal, r.skip, map[bool]string{true: "failure", false: "skip"}[tc.wantFatal])
			}
			for _, want := range []string{"THING_URL", "Docker", "thing-server"} {
				if !strings.Contains(msg, want) {
					t.Errorf("message %q does not mention %s", msg, want)
				}
			}
		})
	}
}

func TestBrokenServiceFails(t *testing.T) {
	t.Setenv("CI", "")
	s := &service{name: "Thing", discover: func() (instance, error) {
		return instance{}, fmt.Errorf("thing-server exited\nFATAL: bad config")
	}}
	r := &recorder{TB: t}
	s.url(r)
	if r.fatal == "" || r.skip != "" || !strings.Contains(r.fatal, "bad config") {
		t.Errorf("fatal=%q skip=%q; want a failure with the log", r.fatal, r.skip)
	}
}

func TestDiscoverRedisWithoutBinaries(t *testing.T) {
	// No engine either: DOCKER_HOST names a socket nobody listens on.
	t.Setenv("DOCKER_HOST", "unix://"+filepath.Join(t.TempDir(), "no-engine.sock"))
	if dockerEngine() == nil {
		t.Fatal("an engine answers at a socket that does not exist")
	}
	t.Setenv("PATH", t.TempDir())
	t.Setenv(RedisEnv, "")
	_, err := discoverRedis()
	if _, ok := err.(*missingError); !ok {
		t.Fatalf("discoverRedis() err = %v, want a *missingError", err)
	}
}

func TestCompareVersions(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int // sign
	}{
		{"15", "9.6", 1},
		{"9.6", "10", -1},
		{"16", "16", 0},
		{"16.1", "16", 1},
	} {
		if got := compareVersions(tc.a, tc.b); sign(got) != tc.want {
			t.Errorf("compareVersions(%q, %q) = %d, want sign %d", tc.a, tc.b, got, tc.want)
		}
	}
	if got := versionOf("/usr/lib/postgresql/15/bin"); got != "15" {
		t.Errorf("versionOf Debian dir = %q", got)
	}
	if got := versionOf("/usr/pgsql-16/bin"); got != "16" {
		t.Errorf("versionOf RPM dir = %q", got)
	}
}

func sign(n int) int {
	switch {
	case n > 0:
		return 1
	case n < 0:
		return -1
	}
	return 0
}

func TestDatabaseName(t *testing.T) {
	long := strings.Repeat("VeryLongTestName/With Spaces-", 10)
	a, b := databaseName(long), databaseName(long)
	if a == b {
		t.Errorf("two names for one test are equal: %s", a)
	}
	if len(a) > 63 {
		t.Errorf("name %q is %d bytes, over PostgreSQL's 63", a, len(a))
	}
	if (pgx.Identifier{a}).Sanitize() != `"`+a+`"` || strings.ToLower(a) != a {
		t.Errorf("name %q needs quoting or has upper case", a)
	}
}

func TestOwnedRedisStopsAndRestartsOnTheSameAddress(t *testing.T) {
	r := NewOwnedRedis(t)
	addr := strings.TrimSuffix(strings.TrimPrefix(r.URL(), "redis://"), "/0")
	ctx := context.Background()
	if err := pingRedis(ctx, addr); err != nil {
		t.Fatal(err)
	}
	r.Stop()
	if err := pingRedis(ctx, addr); err == nil {
		t.Fatal("stopped server still answers")
	}
	r.Start()
	if err := pingRedis(ctx, addr); err != nil {
		t.Fatalf("restarted server: %v", err)
	}
}
