package adminui

import "strconv"

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
