package adminapi

import (
	"bytes"
	"encoding/json"
	"testing"
)

// TestExportedTypesRoundTrip: what the server answers decodes strictly into
// the exported types a Go client uses (no member left over) and encodes
// back to the same document.
func TestExportedTypesRoundTrip(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	pid := h.createProject("A", rawKey1)
	wantStatus(t, h.do(req{method: "PATCH", path: "/manage/projects/" + pid,
		body: `{"monthly_budget_usd":12.000345,"limits":{"requests_per_minute":5}}`}), 200)
	created := h.createToken(map[string]any{"project_id": pid, "max_requests": 7, "expires_in": "1h"})
	for _, tc := range []struct {
		path string
		into any
	}{
		{"/manage/projects/" + pid, new(Project)},
		{"/manage/projects", new(List[Project])},
		{"/manage/tokens/" + created.body["id"].(string), new(Token)},
		{"/manage/tokens?project_id=" + pid, new(List[Token])},
		{"/manage/projects/" + pid + "/usage", new(UsageReport)},
	} {
		out := h.do(req{method: "GET", path: tc.path})
		wantStatus(t, out, 200)
		dec := json.NewDecoder(bytes.NewReader(out.raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(tc.into); err != nil {
			t.Errorf("%s: %v", tc.path, err)
			continue
		}
		again, err := json.Marshal(tc.into)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(append(again, '\n'), out.raw) {
			t.Errorf("%s:\n got %s\nwant %s", tc.path, again, out.raw)
		}
	}
	var u USD
	if err := json.Unmarshal([]byte("0.000001"), &u); err != nil || u != 1 || u.String() != "0.000001" {
		t.Errorf("0.000001 → %d %q, %v", u, u.String(), err)
	}
	if err := json.Unmarshal([]byte("0.0000001"), &u); err == nil {
		t.Error("seven decimals decoded")
	}
}
