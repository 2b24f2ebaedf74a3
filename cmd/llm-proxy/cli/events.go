package cli

import (
	"fmt"
	"io"

	"github.com/redis/go-redis/v9"

	"github.com/llm-proxy/llm-proxy/config"
	"github.com/llm-proxy/llm-proxy/eventsink"
	llmproxyv1 "github.com/llm-proxy/llm-proxy/proto/llmproxy/v1"
)

// eventSinks builds the configured usage-event sinks.
func eventSinks(cfg config.Config, rdb redis.UniversalClient, stdout io.Writer) ([]eventsink.Sink, error) {
	var sinks []eventsink.Sink
	for _, name := range cfg.EventSinks {
		switch name {
		case "file":
			f, err := eventsink.NewFileSink(cfg.EventsFile, cfg.EventsFileMaxBytes, 5)
			if err != nil {
				return nil, fmt.Errorf("LLM_PROXY_EVENTS_FILE: %w", err)
			}
			sinks = append(sinks, f)
		case "redis":
			sinks = append(sinks, eventsink.NewRedisStreamSink(rdb, cfg.EventsStream, cfg.EventsStreamMaxLen))
		case "stdout":
			sinks = append(sinks, eventsink.NewStdoutSink(stdout))
		}
	}
	return sinks, nil
}

// eventsOrNil keeps a nil *Emitter from becoming a non-nil interface.
func eventsOrNil(e *eventsink.Emitter) interface{ Emit(*llmproxyv1.UsageEvent) } {
	if e == nil {
		return nil
	}
	return e
}
