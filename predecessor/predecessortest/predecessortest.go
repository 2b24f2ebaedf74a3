// Package predecessortest builds databases shaped like the standalone
// predecessor proxy's, from the facts of its schema, for the import's tests
// (unit and end-to-end).
package predecessortest

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"testing"
	"time"
)

// Variant chooses among the predecessor's schema versions and settings.
type Variant struct {
	// KeyColumn is the projects' key column: "openai_api_key" (early
	// migrations) or "api_key" (after the rename).
	KeyColumn string
	// EncryptionKey, when set (32 bytes), stores keys as "enc:v1:" values.
	EncryptionKey []byte
	// HashTokens stores tokens as the hex SHA-256 of their secret.
	HashTokens bool
	// Postgres writes PostgreSQL column types; else SQLite's.
	Postgres bool
}

// Project is a predecessor project as built.
type Project struct {
	ID, Name, Key string
	Active        bool
}

// Token is a predecessor token as built, with its secret.
type Token struct {
	ID, ProjectID, Secret string
	Active                bool
	ExpiresAt             *time.Time
	RequestCount          int64
	MaxRequests           *int64
	CacheHits             int64
	LastUsedAt            *time.Time
	CreatedAt             time.Time
}

// Data is what Build wrote.
type Data struct {
	Projects []Project
	Tokens   []Token
	Events   int
}

// T0 is when the predecessor's records were made.
var T0 = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)

// Build creates the predecessor's tables in db (empty) and fills them:
// two active projects and an inactive one; per project an active token
// with an expiry, counts and a cap, a revoked one, one that never expires;
// and audit events.
func Build(t testing.TB, db *sql.DB, v Variant) Data {
	t.Helper()
	ts, boolean := "DATETIME", "BOOLEAN"
	if v.Postgres {
		ts = "TIMESTAMP"
	}
	for _, q := range []string{
		`CREATE TABLE projects (id TEXT PRIMARY KEY, name TEXT NOT NULL, ` + v.KeyColumn + ` TEXT NOT NULL,
		  is_active ` + boolean + ` NOT NULL DEFAULT TRUE, created_at ` + ts + ` NOT NULL, updated_at ` + ts + ` NOT NULL, deactivated_at ` + ts + `)`,
		`CREATE TABLE tokens (token TEXT PRIMARY KEY, id TEXT, project_id TEXT NOT NULL REFERENCES projects(id),
		  expires_at ` + ts + `, is_active ` + boolean + ` NOT NULL DEFAULT TRUE, deactivated_at ` + ts + `,
		  request_count INTEGER NOT NULL DEFAULT 0, max_requests INTEGER, created_at ` + ts + ` NOT NULL,
		  last_used_at ` + ts + `, cache_hit_count INTEGER NOT NULL DEFAULT 0)`,
		`CREATE TABLE audit_events (id TEXT PRIMARY KEY, timestamp ` + ts + ` NOT NULL, action TEXT NOT NULL, actor TEXT NOT NULL,
		  project_id TEXT, request_id TEXT, correlation_id TEXT, client_ip TEXT, method TEXT, path TEXT, user_agent TEXT,
		  outcome TEXT NOT NULL, reason TEXT, token_id TEXT, metadata TEXT)`,
	} {
		mustExec(t, db, q)
	}

	var d Data
	for i, p := range []Project{
		{ID: "6f1c2a9e-0b7d-4c3e-9a51-2d8f7e6b1a01", Name: "team-a", Key: "sk-proj-teamAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAaaaa", Active: true},
		{ID: "6f1c2a9e-0b7d-4c3e-9a51-2d8f7e6b1a02", Name: "team-b", Key: "sk-proj-teamBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBbbbb", Active: true},
		{ID: "6f1c2a9e-0b7d-4c3e-9a51-2d8f7e6b1a03", Name: "gone", Key: "sk-proj-goneCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCcccc", Active: false},
	} {
		stored := p.Key
		if v.EncryptionKey != nil {
			stored = Encrypt(t, v.EncryptionKey, p.Key)
		}
		created := T0.Add(time.Duration(i) * time.Hour)
		var deactivated *time.Time
		if !p.Active {
			deactivated = &created
		}
		mustExec(t, db, `INSERT INTO projects (id, name, `+v.KeyColumn+`, is_active, created_at, updated_at, deactivated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`, p.ID, p.Name, stored, p.Active, created, created.Add(time.Minute), deactivated)
		d.Projects = append(d.Projects, p)

		expires := time.Now().UTC().Add(365 * 24 * time.Hour).Truncate(time.Second)
		used := T0.Add(48 * time.Hour)
		for j, tok := range []Token{
			{Active: true, ExpiresAt: &expires, RequestCount: 41, MaxRequests: ptr(int64(1000)), CacheHits: 3, LastUsedAt: &used},
			{Active: false},
			{Active: true},
		} {
			tok.ID = p.ID[:len(p.ID)-2] + string(rune('a'+i)) + string(rune('0'+j))
			tok.ProjectID, tok.Secret, tok.CreatedAt = p.ID, NewSecret(), created
			stored := tok.Secret
			if v.HashTokens {
				sum := sha256.Sum256([]byte(tok.Secret))
				stored = hex.EncodeToString(sum[:])
			}
			var deactivatedAt *time.Time
			if !tok.Active {
				deactivatedAt = &used
			}
			mustExec(t, db, `INSERT INTO tokens (token, id, project_id, expires_at, is_active, deactivated_at, request_count,
				max_requests, created_at, last_used_at, cache_hit_count) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
				stored, tok.ID, tok.ProjectID, tok.ExpiresAt, tok.Active, deactivatedAt, tok.RequestCount, tok.MaxRequests,
				tok.CreatedAt, tok.LastUsedAt, tok.CacheHits)
			d.Tokens = append(d.Tokens, tok)
		}
		mustExec(t, db, `INSERT INTO audit_events (id, timestamp, action, actor, project_id, request_id, correlation_id,
			client_ip, method, path, user_agent, outcome, reason, token_id, metadata)
			VALUES ($1, $2, 'token_create', 'management', $3, $4, 'corr-1', '203.0.113.7', 'POST', '/manage/tokens', 'curl/8',
			'success', '', $5, '{"token":"sk-a...wxyz"}')`,
			"evt-"+p.Name, created.Add(time.Second), p.ID, "req-"+p.Name, d.Tokens[len(d.Tokens)-3].ID)
		d.Events++
	}
	mustExec(t, db, `INSERT INTO audit_events (id, timestamp, action, actor, outcome, reason, client_ip)
		VALUES ('evt-denied', $1, 'proxy_request', 'anonymous', 'failure', 'invalid token', '198.51.100.2')`, T0.Add(72*time.Hour))
	d.Events++
	return d
}

// NewSecret is a token as the predecessor made them: "sk-" and base64url
// of about 74 random bits.
func NewSecret() string {
	b := make([]byte, 10)
	rand.Read(b)
	return "sk-" + base64.RawURLEncoding.EncodeToString(b)
}

// Encrypt seals a key as the predecessor did: "enc:v1:" and base64 of the
// nonce and the AES-256-GCM ciphertext, no additional data.
func Encrypt(t testing.TB, key []byte, plain string) string {
	t.Helper()
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	nonce := make([]byte, aead.NonceSize())
	rand.Read(nonce)
	return "enc:v1:" + base64.StdEncoding.EncodeToString(aead.Seal(nonce, nonce, []byte(plain), nil))
}

func mustExec(t testing.TB, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%v\n%s", err, q)
	}
}

func ptr[T any](v T) *T { return &v }
