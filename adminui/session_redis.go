package adminui

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisSessions keeps sessions in Redis, so that every replica knows every
// session and a sign-out ends it everywhere. A session is a hash under
// prefix + hex(SHA-256(id)) — Redis never holds the id a cookie carries —
// with its CSRF token, sign-in and last-request times (µs) and notice; it
// expires in Redis when it would expire anyway.
type redisSessions struct {
	rdb    redis.UniversalClient
	prefix string
	life   lifetime
}

var _ sessionStore = (*redisSessions)(nil)

// Fields of a session's hash.
const (
	fieldCSRF    = "csrf"
	fieldCreated = "created"
	fieldSeen    = "seen"
	fieldFlash   = "flash"
)

func (s *redisSessions) key(id string) string {
	sum := sha256.Sum256([]byte(id))
	return s.prefix + hex.EncodeToString(sum[:])
}

func (s *redisSessions) create(ctx context.Context, now time.Time) (*session, error) {
	sess := newSession(now)
	key := s.key(sess.id)
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, key, fieldCSRF, sess.csrf, fieldCreated, now.UnixMicro(), fieldSeen, now.UnixMicro())
		p.PExpire(ctx, key, s.life.left(now, now))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("create admin session: %w", err)
	}
	return sess, nil
}

func (s *redisSessions) get(ctx context.Context, id string, now time.Time) (*session, error) {
	if id == "" {
		return nil, nil
	}
	key := s.key(id)
	vals, err := s.rdb.HMGet(ctx, key, fieldCSRF, fieldCreated, fieldSeen, fieldFlash).Result()
	if err != nil {
		return nil, fmt.Errorf("read admin session: %w", err)
	}
	csrf, _ := vals[0].(string)
	created, err1 := micros(vals[1])
	seen, err2 := micros(vals[2])
	if csrf == "" || err1 != nil || err2 != nil {
		return nil, nil // none, or not one of ours
	}
	if s.life.expired(created, seen, now) {
		return nil, s.end(ctx, id)
	}
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, key, fieldSeen, now.UnixMicro())
		p.PExpire(ctx, key, s.life.left(created, now))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("mark admin session seen: %w", err)
	}
	flash, _ := vals[3].(string)
	return &session{id: id, csrf: csrf, created: created, lastSeen: now, flash: flash}, nil
}

// micros reads a time stored as Unix microseconds.
func micros(v any) (time.Time, error) {
	s, ok := v.(string)
	if !ok {
		return time.Time{}, errors.New("missing")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return time.UnixMicro(n).UTC(), err
}

func (s *redisSessions) end(ctx context.Context, id string) error {
	if err := s.rdb.Del(ctx, s.key(id)).Err(); err != nil {
		return fmt.Errorf("end admin session: %w", err)
	}
	return nil
}

// setFlashScript sets the notice of a session that still exists: a notice
// must not leave behind a key (without expiry) for a session that ended.
var setFlashScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
return 0`)

func (s *redisSessions) setFlash(ctx context.Context, sess *session, msg string) error {
	if err := setFlashScript.Run(ctx, s.rdb, []string{s.key(sess.id)}, fieldFlash, msg).Err(); err != nil {
		return fmt.Errorf("set admin session notice: %w", err)
	}
	return nil
}

func (s *redisSessions) takeFlash(ctx context.Context, sess *session) (string, error) {
	if sess.flash == "" {
		return "", nil // read with the session: nothing waiting
	}
	if err := s.rdb.HDel(ctx, s.key(sess.id), fieldFlash).Err(); err != nil {
		return "", fmt.Errorf("take admin session notice: %w", err)
	}
	msg := sess.flash
	sess.flash = ""
	return msg, nil
}
