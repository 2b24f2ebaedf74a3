package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// defaultManageURL is where serve's management API listens by default
// (LLM_PROXY_HTTP_ADDR's default).
const defaultManageURL = "http://127.0.0.1:8081"

// APIError is a refusal by the management API: its status and the message of
// its OpenAI-shaped error body. The binary exits with [ExitFailure].
type APIError struct {
	Status  int
	Code    string
	Param   string
	Message string
}

func (e *APIError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	if e.Param != "" {
		return fmt.Sprintf("%s (HTTP %d, %s, param %s)", msg, e.Status, e.Code, e.Param)
	}
	if e.Code != "" {
		return fmt.Sprintf("%s (HTTP %d, %s)", msg, e.Status, e.Code)
	}
	return fmt.Sprintf("%s (HTTP %d)", msg, e.Status)
}

// connection is the management API flags every operator command shares.
type connection struct {
	url       string
	tokenFile string
	output    string
}

// bind adds the connection flags to a command group, for all its
// subcommands.
func (c *connection) bind(cmd *cobra.Command) {
	fs := cmd.PersistentFlags()
	fs.StringVar(&c.url, "url", "", "management API base URL (default $LLM_PROXY_URL, else http://$LLM_PROXY_HTTP_ADDR, else "+defaultManageURL+")")
	fs.StringVar(&c.tokenFile, "token-file", "", "file holding the management token (default $LLM_PROXY_MANAGEMENT_TOKEN, else <data dir>/management-token)")
	fs.StringVarP(&c.output, "output", "o", "table", "output format: table, json or yaml")
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"table", "json", "yaml"}, cobra.ShellCompDirectiveNoFileComp))
	cmd.PersistentPreRunE = func(*cobra.Command, []string) error {
		switch c.output {
		case "table", "json", "yaml":
			return nil
		}
		return usageErrorf("--output must be table, json or yaml, not %q", c.output)
	}
}

// client is a client of the management REST API (adminapi/openapi.yaml).
type client struct {
	base  string
	token string
	http  *http.Client
}

// client builds the API client from the flags and the environment.
func (c *connection) client(e *env) (*client, error) {
	base := c.url
	if base == "" {
		base = e.getenv("LLM_PROXY_URL")
	}
	if base == "" && e.getenv("LLM_PROXY_HTTP_ADDR") != "" {
		base = "http://" + e.getenv("LLM_PROXY_HTTP_ADDR")
	}
	if base == "" {
		base = defaultManageURL
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usageErrorf("--url %q is not an http(s) URL", base)
	}
	token, err := c.managementToken(e)
	if err != nil {
		return nil, err
	}
	return &client{base: strings.TrimRight(base, "/"), token: token, http: &http.Client{Timeout: 30 * time.Second}}, nil
}

func (c *connection) managementToken(e *env) (string, error) {
	file := c.tokenFile
	if file == "" {
		if t := e.getenv("LLM_PROXY_MANAGEMENT_TOKEN"); t != "" {
			return t, nil
		}
		// The embedded default keeps a generated token in the data dir.
		dir := e.getenv("LLM_PROXY_DATA_DIR")
		if dir == "" {
			dir = "data"
		}
		file = filepath.Join(dir, "management-token")
		if _, err := os.Stat(file); err != nil {
			return "", usageErrorf("no management token: set LLM_PROXY_MANAGEMENT_TOKEN or pass --token-file")
		}
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("read management token: %w", err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("management token file %s is empty", file)
	}
	return t, nil
}

// do sends one request and returns the response body of a 2xx answer. A
// JSON body is sent when in is non-nil. Any other status is an [*APIError]
// carrying the API's message.
func (c *client) do(ctx context.Context, method, path string, query url.Values, in any) ([]byte, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	u := c.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("management API at %s: %w", c.base, errors.Unwrap(err))
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode/100 == 2 {
		return out, nil
	}
	apiErr := &APIError{Status: resp.StatusCode}
	var shape struct {
		Error struct {
			Message string  `json:"message"`
			Code    *string `json:"code"`
			Param   *string `json:"param"`
		} `json:"error"`
	}
	if json.Unmarshal(out, &shape) == nil {
		apiErr.Message = shape.Error.Message
		if shape.Error.Code != nil {
			apiErr.Code = *shape.Error.Code
		}
		if shape.Error.Param != nil {
			apiErr.Param = *shape.Error.Param
		}
	}
	return nil, apiErr
}

// list walks a paged list (projects, tokens, audit) from its first page and
// returns the API's list object holding every item seen, up to limit items
// (0: all); next_cursor is that of the last page read.
func (c *client) list(ctx context.Context, path string, query url.Values, limit int) ([]byte, error) {
	if query == nil {
		query = url.Values{}
	}
	all := []json.RawMessage{}
	var next *string
	for {
		if limit > 0 {
			query.Set("limit", fmt.Sprint(min(limit-len(all), 1000)))
		}
		b, err := c.do(ctx, http.MethodGet, path, query, nil)
		if err != nil {
			return nil, err
		}
		var page struct {
			Data       []json.RawMessage `json:"data"`
			NextCursor *string           `json:"next_cursor"`
		}
		if err := json.Unmarshal(b, &page); err != nil {
			return nil, fmt.Errorf("GET %s: %w", path, err)
		}
		all = append(all, page.Data...)
		next = page.NextCursor
		if next == nil || (limit > 0 && len(all) >= limit) {
			break
		}
		query.Set("cursor", *next)
	}
	return json.Marshal(struct {
		Object     string            `json:"object"`
		Data       []json.RawMessage `json:"data"`
		NextCursor *string           `json:"next_cursor"`
	}{"list", all, next})
}

// fetch sends one request with the connection's settings and returns the
// answer's body.
func (c *connection) fetch(cmd *cobra.Command, e *env, method, path string, body any) ([]byte, error) {
	cl, err := c.client(e)
	if err != nil {
		return nil, err
	}
	return cl.do(cmd.Context(), method, path, nil, body)
}

// show sends one request and prints the object it answers; detail draws
// its table.
func show[T any](cmd *cobra.Command, e *env, c *connection, method, path string, body any, detail func(*tabwriter.Writer, T)) error {
	raw, err := c.fetch(cmd, e, method, path, body)
	if err != nil {
		return err
	}
	return render(e.stdout, c.output, raw, detail)
}

// showList walks a paged list (see [client.list]) and prints it; table
// draws its table.
func showList[T any](cmd *cobra.Command, e *env, c *connection, path string, query url.Values, limit int, table func(*tabwriter.Writer, listOut[T])) error {
	cl, err := c.client(e)
	if err != nil {
		return err
	}
	raw, err := cl.list(cmd.Context(), path, query, limit)
	if err != nil {
		return err
	}
	return render(e.stdout, c.output, raw, table)
}
