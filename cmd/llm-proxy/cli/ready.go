package cli

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/llm-proxy/llm-proxy/redisclient"
)

// pinger is the store as readiness sees it.
type pinger interface {
	Ping(ctx context.Context) error
}

// readiness answers /readyz with one line per dependency after "ok" or
// "not ready". The replica is not ready while the store is unreachable, or
// while Redis answers as another kind of deployment than its URL names (a
// cluster node or a sentinel behind a plain URL): then every limit, cache
// and event call would fail while Redis looks healthy. An unreachable Redis
// is reported but leaves the replica ready: each limit follows its failure
// mode meanwhile (LLM_PROXY_LIMIT_FAILURE_MODES, llm_proxy_ratelimit_degraded),
// and taking every replica out of service with it would turn a degraded
// fleet into an outage.
func readiness(st pinger, rdb redis.UniversalClient, mode redisclient.Mode, log zerolog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		ready := true
		lines := []string{"store: ok"}
		if err := st.Ping(ctx); err != nil {
			log.Warn().Err(err).Msg("readiness: store unreachable")
			ready, lines[0] = false, "store: unreachable"
		}
		if rdb != nil {
			switch err := redisclient.Check(ctx, rdb); {
			case err == nil:
				lines = append(lines, fmt.Sprintf("redis: ok (%s)", mode))
			case errors.Is(err, redisclient.ErrWrongKind):
				log.Error().Err(err).Msg("readiness: LLM_PROXY_REDIS_URL names the wrong kind of Redis")
				ready = false
				lines = append(lines, "redis: "+err.Error())
			default:
				log.Warn().Err(err).Msg("readiness: redis unreachable; limits follow their failure modes")
				lines = append(lines, fmt.Sprintf("redis: unreachable (%s; limits follow LLM_PROXY_LIMIT_FAILURE_MODES)", mode))
			}
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !ready {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready")
		} else {
			fmt.Fprintln(w, "ok")
		}
		fmt.Fprintln(w, strings.Join(lines, "\n"))
	}
}
