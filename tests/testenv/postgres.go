package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/testcontainers/testcontainers-go"
)

const (
	// PostgresEnv names the variable that may hold the URL of a PostgreSQL
	// server the tests can use as a superuser (they create databases).
	PostgresEnv = "LLM_PROXY_TEST_POSTGRES_URL"

	postgresImage = "postgres:17-alpine"
)

// Settings for a throw-away server: durability is traded for speed, and
// parallel tests each hold a small pool of connections.
var postgresFlags = []string{
	"-c", "fsync=off",
	"-c", "synchronous_commit=off",
	"-c", "full_page_writes=off",
	"-c", "max_connections=200",
}

var postgresService = &service{
	name:     "PostgreSQL",
	envVar:   PostgresEnv,
	install:  "postgres and initdb (Debian: apt-get install postgresql)",
	discover: discoverPostgres,
}

// Postgres returns the URL of a PostgreSQL server on which the caller may
// create databases, or skips (fails, under CI) tb when there is none. Tests
// that need a database of their own should use [NewPostgresDB].
func Postgres(tb testing.TB) string {
	tb.Helper()
	return postgresService.url(tb)
}

// NewPostgresDB creates an empty database for this test on the [Postgres]
// server, drops it when the test ends, and returns its URL.
func NewPostgresDB(tb testing.TB) string {
	tb.Helper()
	base := Postgres(tb)
	u, err := url.Parse(base)
	if err != nil {
		// The parse error would quote the URL, password included.
		tb.Fatalf("testenv: %s is not a postgres:// URL", PostgresEnv)
	}
	name := databaseName(tb.Name())
	ident := pgx.Identifier{name}.Sanitize()
	if err := execOnce(base, "CREATE DATABASE "+ident); err != nil {
		tb.Fatalf("testenv: create database %s: %v", name, err)
	}
	tb.Cleanup(func() {
		// FORCE ends sessions a test left open, so the drop cannot hang.
		if err := execOnce(base, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
			tb.Errorf("testenv: drop database %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	return u.String()
}

// databaseName returns a unique database name that still says which test
// it belongs to: "test_<test name>_<random>", within PostgreSQL's 63 bytes.
func databaseName(testName string) string {
	var b strings.Builder
	b.WriteString("test_")
	for _, r := range strings.ToLower(testName) {
		if b.Len() >= 40 {
			break
		}
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	var random [6]byte
	_, _ = rand.Read(random[:]) // crypto/rand.Read never fails
	b.WriteByte('_')
	b.WriteString(hex.EncodeToString(random[:]))
	return b.String()
}

// execOnce runs one statement on its own connection.
func execOnce(connURL, sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, connURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

// pingPostgres succeeds once the server accepts a connection and a query.
func pingPostgres(ctx context.Context, connURL string) error {
	conn, err := pgx.Connect(ctx, connURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return conn.Ping(ctx)
}

func discoverPostgres() (instance, error) {
	if u := os.Getenv(PostgresEnv); u != "" {
		return instance{url: u, source: "$" + PostgresEnv}, nil
	}
	var tried []string
	var containerErr error
	if err := dockerEngine(); err != nil {
		tried = append(tried, err.Error())
	} else if inst, err := postgresContainer(); err == nil {
		return inst, nil
	} else {
		containerErr = err
	}
	postgresBin, initdbBin := findPostgres()
	if postgresBin == "" {
		if containerErr != nil {
			// An engine was there but the container failed: that is a
			// broken setup, not a missing service.
			return instance{}, containerErr
		}
		tried = append(tried, "no postgres and initdb on PATH or in "+strings.Join(postgresDirs, ", "))
		return instance{}, &missingError{tried: tried}
	}
	inst, err := postgresLocal(postgresBin, initdbBin)
	if err != nil {
		return instance{}, errors.Join(err, containerErr)
	}
	if containerErr != nil {
		inst.source += fmt.Sprintf(" (container failed: %v)", containerErr)
	}
	return inst, nil
}

func postgresContainer() (instance, error) {
	ctx, cancel := context.WithTimeout(context.Background(), containerStartTimeout)
	defer cancel()
	args := append([]string{"postgres"}, postgresFlags...)
	c, addr, err := runContainer(ctx, postgresImage, "5432/tcp",
		testcontainers.WithEnv(map[string]string{"POSTGRES_PASSWORD": "postgres"}),
		testcontainers.WithCmd(args...))
	if err != nil {
		return instance{}, err
	}
	connURL := "postgres://postgres:postgres@" + addr + "/postgres?sslmode=disable"
	if err := waitReady(nil, func(ctx context.Context) error { return pingPostgres(ctx, connURL) }); err != nil {
		log := containerLogTail(c)
		terminate(c)()
		return instance{}, fmt.Errorf("container %s: %w\n%s", postgresImage, err, log)
	}
	return instance{url: connURL, source: "container " + postgresImage, stop: terminate(c)}, nil
}

// postgresDirs are where distributions install PostgreSQL's server
// binaries, one directory per major version, off PATH.
var postgresDirs = []string{
	"/usr/lib/postgresql/*/bin", // Debian, Ubuntu
	"/usr/pgsql-*/bin",          // RHEL and the PGDG RPMs
	"/usr/local/pgsql/bin",      // built from source
}

// findPostgres returns the paths of the postgres and initdb binaries to
// use: from PATH if there, else from the highest version installed in
// [postgresDirs]. Both are "" if there are none.
func findPostgres() (postgresBin, initdbBin string) {
	if p, i := lookPath("postgres"), lookPath("initdb"); p != "" && i != "" {
		return p, i
	}
	var dirs []string
	for _, pattern := range postgresDirs {
		matches, _ := filepath.Glob(pattern) // the patterns are valid
		for _, dir := range matches {
			if isFile(filepath.Join(dir, "postgres")) && isFile(filepath.Join(dir, "initdb")) {
				dirs = append(dirs, dir)
			}
		}
	}
	if len(dirs) == 0 {
		return "", ""
	}
	dir := slices.MaxFunc(dirs, func(a, b string) int {
		return compareVersions(versionOf(a), versionOf(b))
	})
	return filepath.Join(dir, "postgres"), filepath.Join(dir, "initdb")
}

func isFile(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}

// versionOf returns the version in a server binary directory's path:
// "15" for /usr/lib/postgresql/15/bin, "16" for /usr/pgsql-16/bin.
func versionOf(binDir string) string {
	v := filepath.Base(filepath.Dir(binDir))
	return strings.TrimPrefix(v, "pgsql-")
}

// compareVersions compares dotted version numbers numerically, so that
// "10" > "9.6"; a part that is not a number counts as 0.
func compareVersions(a, b string) int {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := range max(len(as), len(bs)) {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			return x - y
		}
	}
	return 0
}

// postgresLocal initialises a cluster in a new temporary directory and runs
// postgres on it, listening on a free loopback port with trust
// authentication and its unix socket in the same directory.
func postgresLocal(postgresBin, initdbBin string) (inst instance, err error) {
	as, err := unprivileged()
	if err != nil {
		return instance{}, err
	}
	dir, err := os.MkdirTemp("", "llm-proxy-testenv-postgres-")
	if err != nil {
		return instance{}, err
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(dir)
		}
	}()
	// os.MkdirTemp made it 0700, so only the server's account may own it.
	if err := chownAll(dir, as); err != nil {
		return instance{}, fmt.Errorf("hand %s to %s: %w", dir, as.name, err)
	}
	data := filepath.Join(dir, "data")
	initdb := command(as, initdbBin, "-D", data, "-U", "postgres", "-A", "trust",
		"-E", "UTF8", "--locale=C", "--no-sync")
	if out, err := initdb.CombinedOutput(); err != nil {
		return instance{}, fmt.Errorf("%s: %w\n%s", initdbBin, err, tail(out))
	}
	source := "local " + postgresBin
	if as != nil {
		source += " as " + as.name
	}
	// The free port can be taken before postgres binds it; try a few.
	for attempt := 1; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return instance{}, err
		}
		args := append([]string{"-D", data, "-p", strconv.Itoa(port), "-h", "127.0.0.1", "-k", dir}, postgresFlags...)
		p, err := start(command(as, postgresBin, args...), filepath.Join(dir, fmt.Sprintf("postgres-%d.log", attempt)))
		if err != nil {
			return instance{}, err
		}
		connURL := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
		err = waitReady(p.done, func(ctx context.Context) error { return pingPostgres(ctx, connURL) })
		if err == nil {
			stop := func() {
				p.stop(os.Interrupt) // SIGINT is postgres's fast shutdown
				_ = os.RemoveAll(dir)
			}
			return instance{url: connURL, source: source, stop: stop}, nil
		}
		p.stop(os.Kill)
		log := p.logTail()
		if errors.Is(err, errExited) && strings.Contains(log, "already in use") && attempt < 3 {
			continue
		}
		return instance{}, fmt.Errorf("%s on port %d: %w\n%s", postgresBin, port, err, log)
	}
}
