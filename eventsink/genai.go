package eventsink

import "strings"

// GenAIOperation is the OpenTelemetry GenAI semantic conventions'
// gen_ai.operation.name of a request path: "chat" for chat completions and
// the Responses API (OpenAI's chat interface, whose conventions name both
// chat), "text_completion" for the legacy completions API, "embeddings";
// ok is false for a path that is no GenAI operation of the conventions
// (files, batches, images, audio, models…). Metrics and spans both name
// operations with it, so a dashboard joins them.
func GenAIOperation(path string) (name string, ok bool) {
	switch strings.TrimSuffix(path, "/") {
	case "/v1/chat/completions", "/v1/responses":
		return "chat", true
	case "/v1/completions":
		return "text_completion", true
	case "/v1/embeddings":
		return "embeddings", true
	}
	return "", false
}

// GenAIProvider is gen_ai.provider.name (formerly gen_ai.system) for every
// request llm-proxy forwards.
const GenAIProvider = "openai"
