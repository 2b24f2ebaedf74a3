package authz

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
)

// DefaultInvalidationChannel is the Redis pub/sub channel replicas share.
const DefaultInvalidationChannel = "llm-proxy:authz:invalidate"

// cacheInvalidator is what a Broadcast drives on each replica.
type cacheInvalidator interface {
	InvalidateToken(tokenID string)
	InvalidateProject(projectID string)
	InvalidateAll()
}

var _ cacheInvalidator = (*Authorizer)(nil)

// Broadcast makes an invalidation on one replica reach every replica that
// shares the Redis: the management API calls its Invalidate methods, which
// apply locally at once and publish; [Broadcast.Run] applies what the others
// publish. Messages carry public ids only ("token:tok_…", "project:proj_…").
//
// Pub/sub delivers at most once: while a replica is disconnected it misses
// messages. So whenever its subscription is (re)established after the first
// time, it drops its whole validation cache: every token is re-read from the
// store on its next use, and nothing revoked meanwhile survives. Between a
// disconnection and that moment, staleness is bounded by the cache TTL.
type Broadcast struct {
	client  redis.UniversalClient
	channel string
	local   cacheInvalidator
	log     zerolog.Logger
}

// NewBroadcast returns a Broadcast over client for the local cache.
func NewBroadcast(client redis.UniversalClient, channel string, local cacheInvalidator, log zerolog.Logger) *Broadcast {
	if channel == "" {
		channel = DefaultInvalidationChannel
	}
	return &Broadcast{client: client, channel: channel, local: local, log: log}
}

// InvalidateToken drops the token here and on every other replica.
func (b *Broadcast) InvalidateToken(tokenID string) {
	b.local.InvalidateToken(tokenID)
	b.publish("token:" + tokenID)
}

// InvalidateProject drops the project's tokens here and on every other replica.
func (b *Broadcast) InvalidateProject(projectID string) {
	b.local.InvalidateProject(projectID)
	b.publish("project:" + projectID)
}

// publish is best effort: the change is already in the store, and a replica
// that misses it re-reads within the cache TTL. A failure is logged.
func (b *Broadcast) publish(msg string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := b.client.Publish(ctx, b.channel, msg).Err(); err != nil {
		b.log.Warn().Err(err).Str("message", msg).Msg("publish cache invalidation failed; other replicas catch up within the cache TTL")
	}
}

// Run applies other replicas' invalidations until ctx ends.
func (b *Broadcast) Run(ctx context.Context) error {
	sub := b.client.Subscribe(ctx, b.channel)
	defer sub.Close()
	subscribed := 0
	ch := sub.ChannelWithSubscriptions()
	for {
		select {
		case <-ctx.Done():
			return nil
		case m, ok := <-ch:
			if !ok {
				return fmt.Errorf("invalidation subscription closed")
			}
			switch m := m.(type) {
			case *redis.Subscription:
				if m.Kind != "subscribe" {
					continue
				}
				subscribed++
				if subscribed > 1 {
					b.local.InvalidateAll()
					b.log.Info().Msg("invalidation subscription re-established; validation cache dropped")
				}
			case *redis.Message:
				b.apply(m.Payload)
			}
		}
	}
}

func (b *Broadcast) apply(payload string) {
	kind, id, ok := strings.Cut(payload, ":")
	switch {
	case !ok || id == "":
		b.log.Warn().Str("message", payload).Msg("ignoring malformed invalidation")
	case kind == "token":
		b.local.InvalidateToken(id)
	case kind == "project":
		b.local.InvalidateProject(id)
	default:
		b.log.Warn().Str("message", payload).Msg("ignoring malformed invalidation")
	}
}
