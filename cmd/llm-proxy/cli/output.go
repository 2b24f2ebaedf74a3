package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"go.yaml.in/yaml/v3"
)

// render prints an API answer in the chosen format: json is the API's own
// object (indented), yaml the same object as YAML with its members in the
// same order, and table what people read, drawn by table from the object.
func render[T any](w io.Writer, format string, raw []byte, table func(tw *tabwriter.Writer, v T)) error {
	switch format {
	case "json":
		var buf bytes.Buffer
		if err := json.Indent(&buf, raw, "", "  "); err != nil {
			return fmt.Errorf("the API's answer is not JSON: %w", err)
		}
		buf.WriteByte('\n')
		_, err := w.Write(buf.Bytes())
		return err
	case "yaml":
		return writeYAML(w, raw)
	}
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		return fmt.Errorf("read the API's answer: %w", err)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	table(tw, v)
	return tw.Flush()
}

// writeYAML re-encodes a JSON document as block-style YAML. JSON is YAML,
// so the document is parsed as a YAML node tree, which keeps the member
// order, and its flow and quoting styles are cleared; the encoder quotes
// whatever would otherwise read as another type.
func writeYAML(w io.Writer, raw []byte) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return fmt.Errorf("the API's answer is not JSON: %w", err)
	}
	var plain func(n *yaml.Node)
	plain = func(n *yaml.Node) {
		n.Style = 0
		for _, c := range n.Content {
			plain(c)
		}
	}
	plain(&doc)
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return err
	}
	return enc.Close()
}

// row writes one tab-separated table row.
func row(tw io.Writer, cells ...string) {
	fmt.Fprintln(tw, strings.Join(cells, "\t"))
}

// orDash shows an absent value as "-".
func orDash(s *string) string {
	if s == nil || *s == "" {
		return "-"
	}
	return *s
}

// num shows an optional count, "-" for none.
func num(n *int64) string {
	if n == nil {
		return "-"
	}
	return strconv.FormatInt(*n, 10)
}

// yesNo shows a flag as people read it.
func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// money shows a JSON number of dollars as written by the API, "-" for none.
func money(n *json.Number) string {
	if n == nil {
		return "-"
	}
	return "$" + n.String()
}
