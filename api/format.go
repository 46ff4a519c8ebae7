package api

import (
	"encoding/json"
	"hash/fnv"
	"strconv"
	"time"

	"github.com/google/uuid"
)

// The spec prints amounts three ways, and clients parse them that way:
// account balances and expenses as strings with cents ("300.54"), networth
// as strings with at least one decimal ("1000.0"), and transaction
// balances as JSON numbers (12.69). All come from integer cents.

// cents2 formats cents as "1234.56".
func cents2(c int64) string {
	sign := ""
	if c < 0 {
		sign, c = "-", -c
	}
	frac := strconv.FormatInt(c%100, 10)
	if len(frac) == 1 {
		frac = "0" + frac
	}
	return sign + strconv.FormatInt(c/100, 10) + "." + frac
}

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

// accountNumber is the integer id the API shows for an account (the spec's
// ids are numbers; the partner's own account id is reference_id). It is
// derived from the partner and account ids, so it is stable across files,
// restarts and builds without a stored sequence, and it stays below 2^53
// so JavaScript clients read it exactly.
func accountNumber(partnerID, accountID string) int64 {
	h := fnv.New64a()
	h.Write([]byte(partnerID))
	h.Write([]byte{0})
	h.Write([]byte(accountID))
	n := int64(h.Sum64() & (1<<53 - 1))
	if n == 0 {
		n = 1
	}
	return n
}

// transactionNamespace scopes flatfiler's transaction UUIDs.
var transactionNamespace = uuid.MustParse("6f0c5a4e-2d0b-4c1e-9a55-0b7e1f3d2c90")

// transactionUUID is the id the API shows for a transaction (the spec's ids
// are UUIDs; the partner's transaction id is reference_id): a name-based
// UUID of partner, account and transaction, so it never changes.
func transactionUUID(partnerID, accountID, transactionID string) string {
	name := make([]byte, 0, len(partnerID)+len(accountID)+len(transactionID)+2)
	name = append(append(append(append(append(name, partnerID...), 0), accountID...), 0), transactionID...)
	return uuid.NewMD5(transactionNamespace, name).String()
}

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
