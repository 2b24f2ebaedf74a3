package adminui

import (
	"encoding/json"
	"strconv"
	"strings"
)

// micro reads a cost the API wrote exactly (a JSON number with at most six
// decimals) as integer micro-USD, so sums stay exact.
func micro(n json.Number) int64 {
	s := string(n)
	whole, frac, _ := strings.Cut(s, ".")
	w, _ := strconv.ParseInt(whole, 10, 64)
	frac = (frac + "000000")[:6]
	f, _ := strconv.ParseInt(frac, 10, 64)
	return w*1_000_000 + f
}

// dollars formats micro-USD as dollars: cents, or more digits below a cent.
func dollars(m int64) string {
	switch {
	case m == 0:
		return "$0.00"
	case m < 10_000:
		return "$" + strconv.FormatFloat(float64(m)/1e6, 'f', 6, 64)
	}
	return "$" + strconv.FormatFloat(float64(m)/1e6, 'f', 2, 64)
}
