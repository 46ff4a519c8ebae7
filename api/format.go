package api

import (
	"encoding/json"
	"github.com/flatfiler/flatfiler/stages"
	"strconv"
	"time"
)

// The spec prints amounts three ways, and clients parse them that way:
// account balances and expenses as strings with cents ("300.54"), networth
// as strings with at least one decimal ("1000.0"), and transaction
// balances as JSON numbers (12.69). All come from integer cents.

// cents2 formats cents as "1234.56".
func cents2(c int64) string { return stages.FormatCents(c) }

// centsShort formats cents as the spec's networth does: "1000.0",
// "1291.96", "0.5".
func centsShort(c int64) string {
	s := cents2(c)
	if s[len(s)-1] == '0' {
		s = s[:len(s)-1]
	}
	return s
}

// centsNumber is a JSON number with cents, exact: 12.69.
func centsNumber(c int64) json.RawMessage { return json.RawMessage(cents2(c)) }

// Timestamps: accounts use RFC 3339 in UTC ("2013-03-05T12:00:00Z"),
// transactions milliseconds and an offset ("2016-02-19T00:00:00.000+00:00").
const transactionTime = "2006-01-02T15:04:05.000-07:00"

func accountTime(t time.Time) string      { return t.UTC().Format(time.RFC3339) }
func transactionStamp(t time.Time) string { return t.UTC().Format(transactionTime) }

// parseCents reads a JSON number of money ("3", "2.50", "-10.5") as cents,
// refusing more than two decimals rather than rounding.
func parseCents(n json.Number) (int64, bool) {
	s := string(n)
	neg := false
	if s != "" && s[0] == '-' {
		neg, s = true, s[1:]
	}
	whole, frac := s, ""
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			whole, frac = s[:i], s[i+1:]
			break
		}
	}
	if whole == "" || len(frac) > 2 || len(whole) > 15 {
		return 0, false
	}
	for len(frac) < 2 {
		frac += "0"
	}
	w, err1 := strconv.ParseUint(whole, 10, 64)
	f, err2 := strconv.ParseUint(frac, 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	c := int64(w*100 + f)
	if neg {
		c = -c
	}
	return c, true
}
