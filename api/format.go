package api

import (
	"encoding/json"
	"time"

	"github.com/flatfiler/flatfiler/stages/money"
)

// The spec prints amounts three ways, and clients parse them that way:
// account balances and expenses as strings with cents ("300.54"), networth
// as strings with at least one decimal ("1000.0"), and transaction
// balances as JSON numbers (12.69). All come from integer cents, through
// package money.

// cents2 formats cents as "1234.56".
func cents2(c int64) string { return money.Format(c) }

// centsShort formats cents as the spec's networth does: "1000.0",
// "1291.96", "0.5".
func centsShort(c int64) string { return money.FormatShort(c) }

// centsNumber is a JSON number with cents, exact: 12.69.
func centsNumber(c int64) json.RawMessage { return json.RawMessage(money.Format(c)) }

// Timestamps: accounts use RFC 3339 in UTC ("2013-03-05T12:00:00Z"),
// transactions milliseconds and an offset ("2016-02-19T00:00:00.000+00:00").
const transactionTime = "2006-01-02T15:04:05.000-07:00"

func accountTime(t time.Time) string      { return t.UTC().Format(time.RFC3339) }
func transactionStamp(t time.Time) string { return t.UTC().Format(transactionTime) }

// parseCents reads a JSON number of money ("3", "2.50", "-10.5") as cents,
// refusing more than two decimals rather than rounding.
func parseCents(n json.Number) (int64, bool) {
	c, err := money.Parse(string(n))
	return c, err == nil
}
