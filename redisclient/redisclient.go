// Package redisclient builds and checks the Redis clients llm-proxy uses, so
// that every component bounds its Redis calls the same way: a client must
// honour its callers' context deadlines (ContextTimeoutEnabled), or a hung
// Redis stalls a call for the client's own read timeout instead of the
// component's (LLM_PROXY_REDIS_TIMEOUT).
//
// One URL names any of the three deployments go-redis knows ([New]):
//
//	redis://host:6379/0                                one server (rediss:// for TLS)
//	redis://host1:7000?addr=host2:7001&addr=host3:7002 Redis Cluster: seed nodes, each addr= one more
//	redis://host1:7000?cluster=true                    Redis Cluster from a single seed node
//	redis://sentinel1:26379/0?master_name=mymaster&addr=sentinel2:26379
//	                                                   Sentinel: the sentinels, and the master's name
//
// The query takes go-redis's own option names (dial_timeout, pool_size, …;
// see its ParseURL, ParseClusterURL and ParseFailoverURL); an unknown one is
// refused. With Sentinel the URL's user and password are the sentinels'; the
// master's are the username= and password= parameters.
package redisclient

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Mode is the kind of Redis deployment a URL names.
type Mode string

// The deployments [New] connects to.
const (
	Single   Mode = "single"
	Cluster  Mode = "cluster"
	Sentinel Mode = "sentinel"
)

// clusterParam forces cluster mode for a URL naming one seed node; it is
// llm-proxy's own parameter, removed before go-redis parses the rest.
const clusterParam = "cluster"

// ModeOf tells which deployment url names: Sentinel when it has a
// master_name parameter, Cluster when it has addr parameters (several seed
// nodes) or cluster=true, else Single.
func ModeOf(rawURL string) (Mode, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		// Not url.Error's text: it quotes the URL, password and all.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return "", fmt.Errorf("redis URL: %w", err)
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return "", fmt.Errorf("redis URL: scheme must be redis or rediss, got %q", u.Scheme)
	}
	if u.Host == "" {
		return "", errors.New("redis URL: no host")
	}
	q := u.Query()
	forced := false
	if v := q.Get(clusterParam); v != "" {
		if forced, err = strconv.ParseBool(v); err != nil {
			return "", fmt.Errorf("redis URL: cluster=%q is not a boolean", v)
		}
	}
	switch {
	case q.Has("master_name"):
		if forced {
			return "", errors.New("redis URL: master_name (Sentinel) and cluster=true exclude each other")
		}
		if q.Get("master_name") == "" {
			return "", errors.New("redis URL: master_name is empty")
		}
		return Sentinel, nil
	case forced || q.Has("addr"):
		return Cluster, nil
	}
	return Single, nil
}

// New returns a client for url (see the package doc for its three forms)
// that honours context deadlines. It does not connect: see [Check].
func New(rawURL string) (redis.UniversalClient, error) {
	build, err := parse(rawURL)
	if err != nil {
		return nil, err
	}
	return build(), nil
}

// Validate returns the error [New] would return for url, building nothing.
func Validate(rawURL string) error {
	_, err := parse(rawURL)
	return err
}

// parse checks url completely and returns what builds its client.
func parse(rawURL string) (func() redis.UniversalClient, error) {
	mode, err := ModeOf(rawURL)
	if err != nil {
		return nil, err
	}
	switch mode {
	case Sentinel:
		opts, err := redis.ParseFailoverURL(rawURL)
		if err != nil {
			return nil, fmt.Errorf("redis Sentinel URL: %w", err)
		}
		opts.ContextTimeoutEnabled = true
		return func() redis.UniversalClient { return redis.NewFailoverClient(opts) }, nil
	case Cluster:
		u, _ := url.Parse(rawURL) // parsed by ModeOf
		if p := strings.Trim(u.Path, "/"); p != "" && p != "0" {
			return nil, fmt.Errorf("redis Cluster URL: database %q: a cluster has only database 0", p)
		}
		u.Path = ""
		q := u.Query()
		q.Del(clusterParam)
		u.RawQuery = q.Encode()
		opts, err := redis.ParseClusterURL(u.String())
		if err != nil {
			return nil, fmt.Errorf("redis Cluster URL: %w", err)
		}
		opts.ContextTimeoutEnabled = true
		return func() redis.UniversalClient { return redis.NewClusterClient(opts) }, nil
	}
	opts, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("redis URL: %w", err)
	}
	opts.ContextTimeoutEnabled = true
	return func() redis.UniversalClient { return redis.NewClient(opts) }, nil
}

// ContextTimeoutEnabled reports whether c honours context deadlines; known
// is false for a client type it cannot inspect.
func ContextTimeoutEnabled(c redis.UniversalClient) (enabled, known bool) {
	switch c := c.(type) {
	case *redis.Client:
		return c.Options().ContextTimeoutEnabled, true
	case *redis.ClusterClient:
		return c.Options().ContextTimeoutEnabled, true
	case *redis.Ring:
		return c.Options().ContextTimeoutEnabled, true
	}
	return false, false
}

// ErrWrongKind is wrapped by [Check]'s error when Redis answers but is not
// the kind of deployment the URL names — one node of a cluster, or a
// sentinel, named as a single server. Unlike an unreachable Redis it does
// not pass: every call would fail (MOVED, unknown command) while the server
// looks healthy.
var ErrWrongKind = errors.New("redis is not the kind of deployment its URL names")

// Check pings the deployment behind c — every master of a cluster — and,
// for a single-server client, asks the server whether it is really one:
// a cluster node or a sentinel behind a plain URL fails with [ErrWrongKind].
func Check(ctx context.Context, c redis.UniversalClient) error {
	switch c := c.(type) {
	case *redis.ClusterClient:
		return c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			if err := m.Ping(ctx).Err(); err != nil {
				return fmt.Errorf("cluster master %s: %w", m.Options().Addr, err)
			}
			return nil
		})
	case *redis.Client:
		info := c.InfoMap(ctx, "server")
		if err := info.Err(); err != nil {
			return err
		}
		// A Sentinel client's calls reach its master, which reports standalone.
		switch info.Item("Server", "redis_mode") {
		case "cluster":
			return fmt.Errorf("%w: %s is a Redis Cluster node: name the cluster (?addr=host:port for each more seed node, or ?cluster=true)", ErrWrongKind, c.Options().Addr)
		case "sentinel":
			return fmt.Errorf("%w: %s is a Sentinel: add ?master_name=<name of the monitored master>", ErrWrongKind, c.Options().Addr)
		}
		return nil
	}
	return c.Ping(ctx).Err()
}
