package cli

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/spf13/cobra"
)

// defaultProxyURL is where Envoy's listener serves /v1/ in envoy/envoy.yaml.
const defaultProxyURL = "http://127.0.0.1:10000"

// newChatCmd is `llm-proxy chat`: one request through Envoy with the
// official SDK, the smoke test after a deploy.
func newChatCmd(e *env) *cobra.Command {
	var (
		token, proxyURL, model string
		stream                 bool
	)
	cmd := &cobra.Command{
		Use:   "chat --token llmp_… [flags] MESSAGE",
		Short: "Send one chat completion through Envoy and print the answer",
		Long: `Send one chat completion through Envoy (--url, default $LLM_PROXY_PROXY_URL, else
` + defaultProxyURL + `) with a proxy token, using the official openai-go SDK, and print
the answer on standard output; the request id, the x-ratelimit-* headers and the
cache status go to standard error. The smoke test after every deploy.`,
		Example: `  llm-proxy chat --token "$TOKEN" "Say hello"
  llm-proxy chat --token "$TOKEN" --stream --model gpt-4.1-mini "Count to five"
  llm-proxy chat --token "$TOKEN" --url https://llm.example.com "ping"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if token == "" {
				token = e.getenv("LLM_PROXY_TOKEN")
			}
			if token == "" {
				return usageErrorf("give the proxy token with --token or $LLM_PROXY_TOKEN")
			}
			base := proxyURL
			if base == "" {
				base = e.getenv("LLM_PROXY_PROXY_URL")
			}
			if base == "" {
				base = defaultProxyURL
			}
			var resp *http.Response
			client := openai.NewClient(
				option.WithBaseURL(strings.TrimRight(base, "/")+"/v1/"),
				option.WithAPIKey(token),
				option.WithMaxRetries(0),
				option.WithRequestTimeout(5*time.Minute),
				option.WithResponseInto(&resp),
			)
			params := openai.ChatCompletionNewParams{
				Model:    model,
				Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(args[0])},
			}
			ctx := cmd.Context()
			var err error
			if stream {
				s := client.Chat.Completions.NewStreaming(ctx, params)
				for s.Next() {
					if c := s.Current(); len(c.Choices) > 0 {
						fmt.Fprint(e.stdout, c.Choices[0].Delta.Content)
					}
				}
				err = s.Err()
				s.Close()
			} else {
				var res *openai.ChatCompletion
				if res, err = client.Chat.Completions.New(ctx, params); err == nil && len(res.Choices) > 0 {
					fmt.Fprint(e.stdout, res.Choices[0].Message.Content)
				}
			}
			var apiErr *openai.Error
			if errors.As(err, &apiErr) {
				resp = apiErr.Response
			}
			if err == nil {
				fmt.Fprintln(e.stdout)
			}
			printResponseHeaders(e.stderr, resp)
			if apiErr != nil {
				return fmt.Errorf("%s (HTTP %d, %s)", apiErr.Message, apiErr.StatusCode, apiErr.Code)
			}
			return err
		},
	}
	cmd.Flags().StringVar(&token, "token", "", "proxy token (default $LLM_PROXY_TOKEN)")
	cmd.Flags().StringVar(&proxyURL, "url", "", "Envoy's base URL, without /v1 (default $LLM_PROXY_PROXY_URL, else "+defaultProxyURL+")")
	cmd.Flags().StringVar(&model, "model", "gpt-4o-mini", "model")
	cmd.Flags().BoolVar(&stream, "stream", false, "stream the answer as it comes")
	return cmd
}

// printResponseHeaders prints what an operator checks after a request: the
// request id, the rate-limit headers and the cache status.
func printResponseHeaders(w io.Writer, resp *http.Response) {
	if resp == nil {
		return
	}
	fmt.Fprintf(w, "status: %s\n", resp.Status)
	var names []string
	for name := range resp.Header {
		lower := strings.ToLower(name)
		if lower == "x-request-id" || strings.HasPrefix(lower, "x-ratelimit-") || lower == "cache-status" || lower == "retry-after" {
			names = append(names, lower)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		fmt.Fprintf(w, "%s: %s\n", name, resp.Header.Get(name))
	}
}
