package store

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/llm-proxy/llm-proxy/tests/testenv"
)

// BenchmarkAuditSearch measures ListAudit on PostgreSQL over an audit log of
// a million events (LLM_PROXY_AUDIT_BENCH_ROWS overrides the count): one
// sub-benchmark per search filter, each logging the EXPLAIN ANALYZE of the
// exact statement ListAudit sent, so the plan shows which index answers it.
// It is a benchmark, so go test runs it only when asked (-v adds the seeding
// time):
//
//	go test -run '^$' -bench BenchmarkAuditSearch -benchtime 200x -v ./store/
//
// The log is seeded by one INSERT … SELECT over generate_series, shaped
// like a year of a busy gateway: 80% security denials (most from a few
// addresses hammering with unknown tokens, the rest naming tokens, skewed
// to the busiest), 20% management changes by a few dozen actors, over
// 50,000 tokens in 2,000 projects. The rows fill every column at its real
// width, seq included, but are not a valid hash chain: prev_hash and hash
// are 64 hex digits that do not link (computing SHA-256 over Go's JSON
// encoding, one row after another, would cost minutes). No search filter
// reads those columns, so the plans and page reads are those of a chained
// log; VerifyAudit would report the first link broken.
func BenchmarkAuditSearch(b *testing.B) {
	rows := 1_000_000
	if v := os.Getenv("LLM_PROXY_AUDIT_BENCH_ROWS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1000 {
			b.Fatalf("LLM_PROXY_AUDIT_BENCH_ROWS=%q: want a number of at least 1000", v)
		}
		rows = n
	}
	ctx := context.Background()
	tracer := &lastQuery{}
	s := openTraced(b, testenv.NewPostgresDB(b), tracer)
	if err := s.Migrate(ctx, "up", nil); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	seedAudit(b, s, rows)
	b.Logf("seeded %d audit events in %s (INSERT … SELECT generate_series, the indexes built after, then VACUUM ANALYZE)",
		rows, time.Since(start).Round(time.Millisecond))

	// The values searched for: the busiest and a rare one of each kind,
	// named as seedAudit names them.
	busyToken, rareToken := benchID("tok", "t", 0), benchID("tok", "t", 40_000)
	busyProject := benchID("proj", "p", 0)
	deep := benchCursor(b, s, int64(rows/10)) // 90% of the log is newer
	end := time.UnixMicro(benchEnd).UTC()
	day := end.Add(-180 * 24 * time.Hour)
	for _, c := range []struct {
		name string
		q    AuditQuery
	}{
		{"first_page", AuditQuery{}},
		{"first_page_1000", AuditQuery{Limit: MaxAuditLimit}},
		{"deep_cursor", AuditQuery{Cursor: deep}},
		{"action_common", AuditQuery{Action: AuditAuthUnknownToken}},
		{"action_rare", AuditQuery{Action: AuditProjectDelete}},
		{"action_rare_deep_cursor", AuditQuery{Action: AuditProjectDelete, Cursor: deep}},
		{"action_common_deep_cursor", AuditQuery{Action: AuditAuthUnknownToken, Cursor: deep}},
		{"actor_common", AuditQuery{Actor: "client"}},
		{"actor_rare", AuditQuery{Actor: benchActor(24)}},
		{"project", AuditQuery{ProjectID: busyProject}},
		{"project_deep_cursor", AuditQuery{ProjectID: busyProject, Cursor: deep}},
		{"token_busy", AuditQuery{TokenID: busyToken}},
		{"token_rare", AuditQuery{TokenID: rareToken}},
		{"outcome_success", AuditQuery{Outcome: AuditOutcomeSuccess}},
		{"outcome_denied_deep_cursor", AuditQuery{Outcome: AuditOutcomeDenied, Cursor: deep}},
		{"client_address_busy", AuditQuery{ClientAddress: benchAddress(0)}},
		{"client_address_rare", AuditQuery{ClientAddress: benchAddress(2_000)}},
		{"time_range_day", AuditQuery{From: day, To: day.Add(24 * time.Hour)}},
		{"combined_project_action_30d", AuditQuery{ProjectID: busyProject, Action: AuditAuthRevokedToken, From: end.Add(-30 * 24 * time.Hour)}},
		{"combined_token_outcome", AuditQuery{TokenID: busyToken, Outcome: AuditOutcomeSuccess}},
		{"combined_address_action_day", AuditQuery{ClientAddress: benchAddress(0), Action: AuditAuthUnknownToken, From: day, To: day.Add(24 * time.Hour)}},
	} {
		b.Run(c.name, func(b *testing.B) {
			events, _, err := s.ListAudit(ctx, c.q)
			if err != nil {
				b.Fatal(err)
			}
			if len(events) == 0 {
				b.Fatalf("%+v found nothing: the seed does not cover this filter", c.q)
			}
			b.Logf("%d events on the page; the plan of the statement ListAudit sent:\n%s", len(events), explain(b, s, tracer))
			for b.Loop() {
				if _, _, err := s.ListAudit(ctx, c.q); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/query")
		})
	}
	// An append takes the chain's end (seq index, newest first) and writes
	// ten indexes: at a million rows it must stay as cheap as at ten.
	b.Run("append_one", func(b *testing.B) {
		i := 0
		for b.Loop() {
			i++
			err := s.AddAudit(ctx, []AuditEvent{{ID: fmt.Sprintf("aud_bench_append_%d", i), Action: AuditTokenCreate,
				Actor: "admin-ui", TargetType: AuditTargetToken, TargetID: busyToken, ProjectID: busyProject}})
			if err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/append")
	})
}

// benchEnd is the newest time of the seeded log (unix microseconds); the
// oldest is a year before.
const benchEnd = int64(1_796_205_600_000_000) // 2026-12-02 10:00 UTC

// seedAudit inserts rows audit events in one statement. Every choice is a
// deterministic function of the row number and setseed, so two runs seed
// the same log.
func seedAudit(b *testing.B, s *Store, rows int) {
	b.Helper()
	ctx := context.Background()
	conn, err := s.db.Conn(ctx) // setseed holds for its session only
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `SELECT setseed(0.16)`); err != nil {
		b.Fatal(err)
	}
	// Bulk loading is faster into a table without its secondary indexes,
	// which are then built once each from the definitions the migrations
	// left (pg_indexes), so they are exactly the migrations' indexes.
	var names, defs []string
	rs, err := conn.QueryContext(ctx, `SELECT indexname, indexdef FROM pg_indexes
		WHERE tablename = 'audit_events' AND indexname <> 'audit_events_pkey' ORDER BY indexname`)
	if err != nil {
		b.Fatal(err)
	}
	for rs.Next() {
		var name, def string
		if err := rs.Scan(&name, &def); err != nil {
			b.Fatal(err)
		}
		names, defs = append(names, name), append(defs, def)
	}
	if err := rs.Err(); err != nil {
		b.Fatal(err)
	}
	rs.Close() // the connection is free for the next statement only then
	for _, name := range names {
		if _, err := conn.ExecContext(ctx, `DROP INDEX `+pgx.Identifier{name}.Sanitize()); err != nil {
			b.Fatal(err)
		}
	}
	const year = int64(365 * 24 * time.Hour / time.Microsecond)
	if _, err := conn.ExecContext(ctx, seedSQL, rows, benchEnd, year/int64(rows)); err != nil {
		b.Fatalf("seed: %v", err)
	}
	for _, def := range defs {
		if _, err := conn.ExecContext(ctx, def); err != nil {
			b.Fatalf("%s: %v", def, err)
		}
	}
	if _, err := conn.ExecContext(ctx, `VACUUM ANALYZE audit_events`); err != nil {
		b.Fatal(err)
	}
}

// seedSQL fills audit_events with $1 events over the year before $2, one
// every $3 microseconds on average. The inner query draws the random
// numbers (OFFSET 0 keeps it from being flattened, so each is drawn once
// per row); the outer one turns them into an event:
//
//   - 80% denials by "client": unknown token 45%, missing 15%, quota 13%,
//     revoked 12%, expired 8%, inactive project 5%, wrong management token
//     2%; the ones that name a token name it and its project. Addresses
//     come from 20,000, the busiest making 8% of the denials.
//   - 20% management changes by 25 actors ("admin-ui" the busiest), from
//     40 office addresses: token create/update/revoke, project
//     create/update/delete/tokens_revoke, cache purge, console sign-in/out.
//
// Tokens are 50,000, token t in project t % 2,000, the busiest naming 3% of
// the events that name one. Ids, tokens, projects and actors are named as
// [benchID], [benchActor] and [benchAddress] name them.
const seedSQL = `
INSERT INTO audit_events (id, time, action, actor, project_id, target_type, target_id,
	request_id, client_address, outcome, detail, seq, prev_hash, hash)
SELECT
	'aud_' || substr(md5('e' || i), 1, 20),
	$2::bigint - ($1::bigint - i) * $3::bigint - floor(r_time * $3)::bigint,
	action,
	CASE WHEN denial THEN 'client'
		WHEN actor_k = 0 THEN 'admin-ui'
		ELSE 'management:' || substr(md5('a' || actor_k), 1, 12) END,
	CASE WHEN names_token OR action LIKE 'project.%' THEN 'proj_' || substr(md5('p' || (tok % 2000)), 1, 20) END,
	CASE WHEN denial OR action LIKE 'token.%' THEN 'token'
		WHEN action LIKE 'project.%' THEN 'project'
		WHEN action = 'cache.purge' THEN 'cache'
		ELSE 'admin' END,
	CASE WHEN names_token OR action LIKE 'token.%' THEN 'tok_' || substr(md5('t' || tok), 1, 20)
		WHEN action LIKE 'project.%' THEN 'proj_' || substr(md5('p' || (tok % 2000)), 1, 20)
		ELSE '' END,
	'req_' || substr(md5('r' || i), 1, 20),
	CASE WHEN denial THEN '203.0.' || (addr_k / 256) || '.' || (addr_k % 256)
		ELSE '198.51.100.' || (addr_k % 40) END,
	CASE WHEN denial THEN 'denied' ELSE 'success' END,
	CASE WHEN denial THEN 'POST /v1/chat/completions'
		ELSE '{"name":"app ' || i || '","limits":{"requests_per_minute":600}}' END,
	i,
	md5('h' || (i - 1)) || md5('H' || (i - 1)),
	md5('h' || i) || md5('H' || i)
FROM (
	SELECT i, r_time, denial, tok, addr_k, actor_k, action,
		denial AND action IN ('auth.revoked_token', 'auth.expired_token', 'auth.project_inactive', 'auth.quota_exhausted') AS names_token
	FROM (
		SELECT i, r_time, denial, tok, addr_k, actor_k,
			CASE WHEN denial THEN CASE
					WHEN r_kind < 0.45 THEN 'auth.unknown_token'
					WHEN r_kind < 0.60 THEN 'auth.missing_token'
					WHEN r_kind < 0.73 THEN 'auth.quota_exhausted'
					WHEN r_kind < 0.85 THEN 'auth.revoked_token'
					WHEN r_kind < 0.93 THEN 'auth.expired_token'
					WHEN r_kind < 0.98 THEN 'auth.project_inactive'
					ELSE 'auth.management_token' END
				ELSE CASE
					WHEN r_kind < 0.30 THEN 'token.create'
					WHEN r_kind < 0.45 THEN 'token.update'
					WHEN r_kind < 0.55 THEN 'token.revoke'
					WHEN r_kind < 0.70 THEN 'project.update'
					WHEN r_kind < 0.75 THEN 'project.create'
					WHEN r_kind < 0.76 THEN 'project.delete'
					WHEN r_kind < 0.77 THEN 'project.tokens_revoke'
					WHEN r_kind < 0.80 THEN 'cache.purge'
					WHEN r_kind < 0.95 THEN 'admin.sign_in'
					ELSE 'admin.sign_out' END
				END AS action
		FROM (
			SELECT i, random() AS r_time, random() < 0.8 AS denial, random() AS r_kind,
				floor(50000 * power(random(), 3))::int AS tok,
				floor(20000 * power(random(), 4))::int AS addr_k,
				floor(25 * power(random(), 2))::int AS actor_k
			FROM generate_series(1, $1::int) AS i
			OFFSET 0
		) AS draws
	) AS kinds
) AS events`

// benchID names seeded record n of a kind as seedSQL does: kind, '_' and
// the first 20 hex digits of md5(prefix || n).
func benchID(kind, prefix string, n int) string {
	sum := md5.Sum([]byte(prefix + strconv.Itoa(n)))
	return kind + "_" + hex.EncodeToString(sum[:])[:20]
}

// benchActor names seeded management actor k (1 to 24) as seedSQL does.
func benchActor(k int) string {
	sum := md5.Sum([]byte("a" + strconv.Itoa(k)))
	return "management:" + hex.EncodeToString(sum[:])[:12]
}

// benchAddress names the client address of seeded denials from address k.
func benchAddress(k int) string { return fmt.Sprintf("203.0.%d.%d", k/256, k%256) }

// benchCursor is the cursor of a page ending at the event at position seq.
func benchCursor(b *testing.B, s *Store, seq int64) string {
	b.Helper()
	var (
		micros int64
		id     string
	)
	if err := s.db.QueryRow(`SELECT time, id FROM audit_events WHERE seq = $1`, seq).Scan(&micros, &id); err != nil {
		b.Fatal(err)
	}
	return encodeCursor(micros, id)
}

// openTraced opens a PostgreSQL store whose connections report each
// statement to tracer, so the benchmark can explain the one ListAudit sent.
func openTraced(b *testing.B, url string, tracer pgx.QueryTracer) *Store {
	b.Helper()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		b.Fatal(err)
	}
	cfg.Tracer = tracer
	db := stdlib.OpenDB(*cfg)
	b.Cleanup(func() { db.Close() })
	return &Store{db: db, dialect: DialectPostgres, now: time.Now}
}

// lastQuery is a pgx tracer keeping the last statement sent and its
// arguments.
type lastQuery struct {
	mu   sync.Mutex
	sql  string
	args []any
}

func (q *lastQuery) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.sql, q.args = d.SQL, d.Args
	return ctx
}

func (q *lastQuery) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// explain runs EXPLAIN ANALYZE of the last statement the tracer saw and
// returns its plan nodes with their index conditions and filters, one line
// each (go test prints at most ten lines of a benchmark's log).
func explain(b *testing.B, s *Store, q *lastQuery) string {
	b.Helper()
	q.mu.Lock()
	query, args := q.sql, q.args
	q.mu.Unlock()
	rows, err := s.db.Query(`EXPLAIN (ANALYZE, COSTS OFF) `+query, args...)
	if err != nil {
		b.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			b.Fatal(err)
		}
		switch f := strings.Fields(line); {
		case len(f) == 0, f[0] == "Planning", f[0] == "Recheck", f[0] == "Heap", f[0] == "Sort" && f[1] != "(actual":
			continue // Sort Key and Sort Method repeat the query; times and heap blocks are in the numbers
		}
		plan = append(plan, "    "+line)
	}
	if err := rows.Err(); err != nil {
		b.Fatal(err)
	}
	return strings.Join(plan, "\n")
}
