package predecessor

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/llm-proxy/llm-proxy/adminapi"
	"github.com/llm-proxy/llm-proxy/authz"
	"github.com/llm-proxy/llm-proxy/ids"
	"github.com/llm-proxy/llm-proxy/store"
)

// Target is what the import needs of llm-proxy's store (a *store.Store).
type Target interface {
	GetProject(ctx context.Context, id string) (store.Project, error)
	CreateProject(ctx context.Context, p store.Project) error
	GetToken(ctx context.Context, id string) (store.Token, error)
	CreateToken(ctx context.Context, t store.Token) error
	AddAudit(ctx context.Context, events []store.AuditEvent) error
	GetAudit(ctx context.Context, id string) (store.AuditEvent, error)
}

var _ Target = (*store.Store)(nil)

// Options configures an [Import].
type Options struct {
	// From is the predecessor's database: a postgres:// URL or a SQLite file.
	From string
	// EncryptionKey is the predecessor's ENCRYPTION_KEY (32 bytes), needed
	// when its projects' keys are stored "enc:v1:"; nil when they are not.
	EncryptionKey []byte
	// DryRun reads and checks everything and reports what would change,
	// writing nothing.
	DryRun bool
	// ExpireLegacyAfter, if positive, makes every imported token expire at
	// the latest that long after the import.
	ExpireLegacyAfter time.Duration
	// Keys seals the projects' keys; Hasher stores secrets imported in clear.
	Keys   *authz.Keyring
	Hasher authz.Hasher
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Counts is how many rows of one kind were imported and skipped, and why.
type Counts struct {
	Imported int
	Skipped  map[string]int // by reason
}

func (c *Counts) skip(reason string) {
	if c.Skipped == nil {
		c.Skipped = map[string]int{}
	}
	c.Skipped[reason]++
}

// Summary is what an import did (or, in a dry run, would do).
type Summary struct {
	DryRun                   bool
	Projects, Tokens, Events Counts
}

// Write prints the summary for people.
func (s Summary) Write(w io.Writer) {
	verb := "imported"
	if s.DryRun {
		verb = "would import"
	}
	for _, k := range []struct {
		name string
		c    Counts
	}{{"projects", s.Projects}, {"tokens", s.Tokens}, {"audit events", s.Events}} {
		fmt.Fprintf(w, "%-13s %s %d", k.name+":", verb, k.c.Imported)
		for _, reason := range sortedKeys(k.c.Skipped) {
			fmt.Fprintf(w, ", skipped %d (%s)", k.c.Skipped[reason], reason)
		}
		fmt.Fprintln(w)
	}
}

// Reasons a row is skipped, as the summary names them.
const (
	skipExists        = "already imported"
	skipBadID         = "id not usable"
	skipNoProject     = "project not imported"
	skipSecretTaken   = "same secret already stored"
	skipUnreadableTok = "token value neither an sk- token nor a SHA-256"
)

// legacyShown is how many characters of a legacy secret its prefix shows:
// fewer than of ours (4), since the secret has less entropy to spare.
const legacyShown = 2

// encPrefix starts a key the predecessor encrypted.
const encPrefix = "enc:v1:"

// Import copies the predecessor's projects, tokens and audit events into
// dst. Every project key is opened first: if one cannot be, Import returns
// an error naming the project and has written nothing. Rows that exist
// already (same id) are skipped, so a second run imports nothing.
func Import(ctx context.Context, dst Target, o Options) (Summary, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	now := o.Now().UTC()
	sum := Summary{DryRun: o.DryRun}
	src, err := openSource(ctx, o.From)
	if err != nil {
		return sum, err
	}
	defer src.Close()

	projectRows, err := src.rows(ctx, "projects", true)
	if err != nil {
		return sum, err
	}
	tokenRows, err := src.rows(ctx, "tokens", true)
	if err != nil {
		return sum, err
	}
	auditRows, err := src.rows(ctx, "audit_events", false)
	if err != nil {
		return sum, err
	}

	// First everything is read and converted, keys opened: a failure here
	// leaves the store untouched.
	projects, err := convertProjects(projectRows, o)
	if err != nil {
		return sum, err
	}
	tokens, err := convertTokens(tokenRows, o, now, &sum.Tokens)
	if err != nil {
		return sum, err
	}
	events, err := convertEvents(auditRows, &sum.Events)
	if err != nil {
		return sum, err
	}

	known := map[string]bool{} // project ids present in dst after the import
	for _, p := range projects {
		if !ids.Valid(p.ID) {
			sum.Projects.skip(skipBadID)
			continue
		}
		switch _, err := dst.GetProject(ctx, p.ID); {
		case err == nil:
			known[p.ID] = true
			sum.Projects.skip(skipExists)
			continue
		case !errors.Is(err, store.ErrNotFound):
			return sum, fmt.Errorf("check project %s: %w", p.ID, err)
		}
		if !o.DryRun {
			if err := dst.CreateProject(ctx, p); err != nil {
				return sum, fmt.Errorf("import project %s: %w", p.ID, err)
			}
		}
		known[p.ID] = true
		sum.Projects.Imported++
	}
	for _, t := range tokens {
		if !known[t.ProjectID] {
			if _, err := dst.GetProject(ctx, t.ProjectID); err != nil {
				sum.Tokens.skip(skipNoProject)
				continue
			}
			known[t.ProjectID] = true
		}
		switch _, err := dst.GetToken(ctx, t.ID); {
		case err == nil:
			sum.Tokens.skip(skipExists)
			continue
		case !errors.Is(err, store.ErrNotFound):
			return sum, fmt.Errorf("check token %s: %w", t.ID, err)
		}
		if !o.DryRun {
			err := dst.CreateToken(ctx, t)
			if errors.Is(err, store.ErrConflict) {
				sum.Tokens.skip(skipSecretTaken)
				continue
			}
			if err != nil {
				return sum, fmt.Errorf("import token %s: %w", t.ID, err)
			}
		}
		sum.Tokens.Imported++
	}
	var fresh []store.AuditEvent
	for _, e := range events {
		switch _, err := dst.GetAudit(ctx, e.ID); {
		case err == nil:
			sum.Events.skip(skipExists)
			continue
		case !errors.Is(err, store.ErrNotFound):
			return sum, fmt.Errorf("check audit event %s: %w", e.ID, err)
		}
		fresh = append(fresh, e)
	}
	if o.DryRun {
		sum.Events.Imported = len(fresh)
		return sum, nil
	}
	// In batches, each all or nothing; AddAudit skips ids it has.
	for batch := range slices.Chunk(fresh, 500) {
		if err := dst.AddAudit(ctx, batch); err != nil {
			return sum, fmt.Errorf("import audit events: %w", err)
		}
		sum.Events.Imported += len(batch)
	}
	return sum, nil
}

// convertProjects turns source rows into projects with their keys opened
// and sealed anew. An unreadable key is an error naming its project.
func convertProjects(rows []row, o Options) ([]store.Project, error) {
	var out []store.Project
	for _, r := range rows {
		id, name := r.str("id"), r.str("name")
		key := r.str("api_key", "openai_api_key")
		what := fmt.Sprintf("project %s (%q)", id, name)
		if strings.HasPrefix(key, encPrefix) {
			var err error
			if key, err = decrypt(key, o.EncryptionKey); err != nil {
				return nil, fmt.Errorf("%s: %w", what, err)
			}
		}
		if key == "" {
			return nil, fmt.Errorf("%s: no OpenAI key", what)
		}
		created, err := r.when("created_at")
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		updated, err := r.when("updated_at")
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		sealed, keyID := o.Keys.Seal(key)
		p := store.Project{
			ID: id, Name: name, KeyCiphertext: sealed, KeyID: keyID, KeyHint: adminapi.MaskKey(key),
			Active: r.boolean("is_active", true),
			// The predecessor had no per-project policy: it allowed both.
			AllowBackground: true, AllowBatches: true,
		}
		if created != nil {
			p.CreatedAt = *created
		}
		p.UpdatedAt = p.CreatedAt
		if updated != nil {
			p.UpdatedAt = *updated
		}
		out = append(out, p)
	}
	return out, nil
}

// decrypt opens an "enc:v1:" value: base64 of nonce ‖ AES-256-GCM
// ciphertext and tag, no additional data.
func decrypt(value string, key []byte) (string, error) {
	if len(key) == 0 {
		return "", errors.New("its OpenAI key is encrypted (enc:v1:); give the predecessor's ENCRYPTION_KEY with --encryption-key")
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return "", fmt.Errorf("predecessor encryption key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return "", err
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(value, encPrefix))
	if err != nil || len(raw) < aead.NonceSize()+aead.Overhead() {
		return "", errors.New("its encrypted OpenAI key is malformed")
	}
	plain, err := aead.Open(nil, raw[:aead.NonceSize()], raw[aead.NonceSize():], nil)
	if err != nil {
		return "", errors.New("its OpenAI key cannot be decrypted with the encryption key given")
	}
	return string(plain), nil
}

// sha256Hex is how the predecessor stored a hashed token.
var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

// convertTokens turns source rows into legacy tokens.
func convertTokens(rows []row, o Options, now time.Time, counts *Counts) ([]store.Token, error) {
	var deadline *time.Time
	if o.ExpireLegacyAfter > 0 {
		d := now.Add(o.ExpireLegacyAfter).Truncate(time.Second)
		deadline = &d
	}
	var out []store.Token
	for _, r := range rows {
		value := r.str("token")
		t := store.Token{ProjectID: r.str("project_id"), Name: "imported", Legacy: true}
		switch {
		case sha256Hex.MatchString(value):
			t.Hash, t.Prefix = store.LegacySHA256Prefix+value, authz.LegacyTokenPrefix
		case strings.HasPrefix(value, authz.LegacyTokenPrefix) && len(value) > len(authz.LegacyTokenPrefix)+legacyShown:
			t.Hash, t.Prefix = o.Hasher.Hash(value), value[:len(authz.LegacyTokenPrefix)+legacyShown]
		default:
			counts.skip(skipUnreadableTok)
			continue
		}
		// The id is the predecessor's when it has a usable one, else one
		// derived from the stored value, the same every run.
		t.ID = r.str("id")
		if !ids.Valid(t.ID) || t.ID == value {
			sum := sha256.Sum256([]byte("llm-proxy predecessor token\x00" + value))
			t.ID = "tok_" + hex.EncodeToString(sum[:10])
		}
		what := "token " + t.ID
		var err error
		if t.ExpiresAt, err = r.when("expires_at"); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		if deadline != nil && (t.ExpiresAt == nil || t.ExpiresAt.After(*deadline)) {
			t.ExpiresAt = deadline
		}
		if t.LastUsedAt, err = r.when("last_used_at"); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		created, err := r.when("created_at")
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		if created != nil {
			t.CreatedAt, t.UpdatedAt = *created, *created
		}
		t.Active = r.boolean("is_active", true)
		if !t.Active {
			// The predecessor revoked by deactivating; when it recorded the
			// time, the revocation is kept as one (permanent).
			if t.RevokedAt, err = r.when("deactivated_at"); err != nil {
				return nil, fmt.Errorf("%s: %w", what, err)
			}
		}
		if n := r.integer("request_count"); n != nil && *n > 0 {
			t.RequestCount = *n
		}
		if n := r.integer("cache_hit_count"); n != nil && *n > 0 {
			t.CacheHitCount = *n
		}
		if n := r.integer("max_requests"); n != nil && *n > 0 {
			t.MaxRequests = n
		}
		out = append(out, t)
	}
	return out, nil
}

// maxDetail bounds the detail of an imported event.
const maxDetail = 1000

// convertEvents turns source rows into audit events. A token_id that is not
// an id (an obfuscated token, say) and the metadata are left behind: they
// may hold what must not be copied.
func convertEvents(rows []row, counts *Counts) ([]store.AuditEvent, error) {
	var out []store.AuditEvent
	for _, r := range rows {
		orig := r.str("id")
		e := store.AuditEvent{
			Action:        store.AuditPredecessorEvent,
			Actor:         r.str("actor"),
			ProjectID:     r.str("project_id"),
			RequestID:     r.str("request_id"),
			ClientAddress: r.str("client_ip"),
			Outcome:       store.AuditOutcomeDenied,
		}
		if orig == "" {
			counts.skip(skipBadID)
			continue
		}
		e.ID = "aud_" + orig
		if !ids.Valid(e.ID) {
			sum := sha256.Sum256([]byte("llm-proxy predecessor event\x00" + orig))
			e.ID = "aud_" + hex.EncodeToString(sum[:10])
		}
		at, err := r.when("timestamp")
		if err != nil {
			return nil, fmt.Errorf("audit event %s: %w", orig, err)
		}
		if at == nil {
			return nil, fmt.Errorf("audit event %s: no timestamp", orig)
		}
		e.Time = *at
		outcome := r.str("outcome", "result")
		if outcome == "success" || outcome == "" {
			e.Outcome = store.AuditOutcomeSuccess
		}
		if tok := r.str("token_id"); ids.Valid(tok) {
			e.TargetType, e.TargetID = store.AuditTargetToken, tok
		}
		var detail []string
		for _, kv := range [][2]string{
			{"action", r.str("action")}, {"outcome", outcome}, {"reason", r.str("reason")},
			{"method", r.str("method")}, {"path", r.str("path")}, {"correlation_id", r.str("correlation_id")},
		} {
			if kv[1] != "" {
				detail = append(detail, kv[0]+"="+kv[1])
			}
		}
		e.Detail = "imported from the standalone proxy: " + strings.Join(detail, ", ")
		if len(e.Detail) > maxDetail {
			e.Detail = strings.ToValidUTF8(e.Detail[:maxDetail], "")
		}
		out = append(out, e)
	}
	return out, nil
}
