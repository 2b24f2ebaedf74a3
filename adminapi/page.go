package adminapi

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/llm-proxy/llm-proxy/store"
)

// Listings whose pages a cursor continues; a cursor is bound to one.
const (
	listProjects = "projects"
	listTokens   = "tokens"
	listAudit    = "audit"
)

// cursorMACLen is how much of the HMAC-SHA-256 a cursor carries: 128 bits.
const cursorMACLen = 16

// cursorSigner signs the store's keyset cursors, so that the API accepts
// only cursors it returned: a forged or garbled one is a 400, never a
// query. The key is derived from the management token, so a cursor stays
// valid across restarts and replicas that share the token.
type cursorSigner struct {
	key [sha256.Size]byte
}

func newCursorSigner(tokenDigest [sha256.Size]byte) cursorSigner {
	m := hmac.New(sha256.New, tokenDigest[:])
	m.Write([]byte("llm-proxy adminapi cursor key v1"))
	var c cursorSigner
	copy(c.key[:], m.Sum(nil))
	return c
}

func (c cursorSigner) mac(list, position string) []byte {
	m := hmac.New(sha256.New, c.key[:])
	m.Write([]byte(list))
	m.Write([]byte{0})
	m.Write([]byte(position))
	return m.Sum(nil)[:cursorMACLen]
}

// seal returns the API cursor for the store's position in list: the
// position, '.', and its MAC, all URL-safe; "" stays "" (no next page).
func (c cursorSigner) seal(list, position string) string {
	if position == "" {
		return ""
	}
	return position + "." + base64.RawURLEncoding.EncodeToString(c.mac(list, position))
}

// open returns the store's position in a cursor that seal made for list,
// or false.
func (c cursorSigner) open(list, cursor string) (string, bool) {
	position, sig, ok := strings.Cut(cursor, ".")
	if !ok || position == "" {
		return "", false
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || len(got) != cursorMACLen {
		return "", false
	}
	return position, hmac.Equal(got, c.mac(list, position))
}

// errBadCursor is the 400 for a cursor this API did not return.
func errBadCursor() error {
	return invalid(codeInvalidValue, "cursor", "cursor is not a next_cursor this API returned; list again without it.")
}

// listError maps a store error of the listing op to what the client sees:
// a cursor the store refuses is the client's 400, anything else a 500.
func listError(op string, err error) error {
	if errors.Is(err, store.ErrInvalidCursor) {
		return errBadCursor()
	}
	return fmt.Errorf("%s: %w", op, err)
}

// pageParams reads the limit and cursor query parameters of a listing,
// with defaultLimit and maxLimit as the page sizes; "" or absent cursor is
// the first page.
func (s *Server) pageParams(r *http.Request, list string, defaultLimit, maxLimit int) (limit int, cursor string, err error) {
	v := r.URL.Query()
	limit = defaultLimit
	if v.Has("limit") {
		n, err := strconv.Atoi(v.Get("limit"))
		if err != nil || n < 1 || n > maxLimit {
			return 0, "", invalid(codeInvalidValue, "limit", "limit must be an integer from 1 to %d.", maxLimit)
		}
		limit = n
	}
	if c := v.Get("cursor"); c != "" {
		var ok bool
		if cursor, ok = s.cursors.open(list, c); !ok {
			return 0, "", errBadCursor()
		}
	}
	return limit, cursor, nil
}

// List is the envelope of a page of projects or tokens; Data is never
// null, and NextCursor is null on the last page.
type List[T any] struct {
	Object     string  `json:"object"`
	Data       []T     `json:"data"`
	NextCursor *string `json:"next_cursor"`
}

func listView[S, T any](items []S, next string, view func(S) T) List[T] {
	data := make([]T, 0, len(items))
	for _, it := range items {
		data = append(data, view(it))
	}
	out := List[T]{Object: "list", Data: data}
	if next != "" {
		out.NextCursor = &next
	}
	return out
}

// pageQuery reads a project or token listing's page parameters.
func (s *Server) pageQuery(r *http.Request, list string) (store.PageQuery, error) {
	limit, cursor, err := s.pageParams(r, list, store.DefaultPageLimit, store.MaxPageLimit)
	return store.PageQuery{Limit: limit, Cursor: cursor}, err
}
