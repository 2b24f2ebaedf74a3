package testenv

import "testing"

func TestCheckJSONLog(t *testing.T) {
	for _, tc := range []struct {
		log string
		ok  bool
	}{
		{`{"a":1,"b":{"a":2}}` + "\n\nGenerated management token (saved in x):\n\n    tok\n", true},
		{`{"a":1,"a":2}`, false},
		{`{"a":{"b":1,"b":2}}`, false},
		{`{"a":[{"b":1,"b":2}]}`, false},
		{`not json`, false},
		{`{"a":1}{"b":2}`, false},
	} {
		if err := CheckJSONLog(tc.log); (err == nil) != tc.ok {
			t.Errorf("%q: %v, want ok=%v", tc.log, err, tc.ok)
		}
	}
}
