// Package money reads and writes amounts as integer cents, never through a
// float: the one place flatfiler parses and formats money, for files,
// batches, the API and the CLI.
package money

import (
	"errors"
	"strconv"
	"strings"
)

// ErrSyntax: the text is not an amount of the form asked for.
var ErrSyntax = errors.New("not an amount")

// Parse reads an amount with at most two decimals ("3", "2.5", "-10.05",
// "+1.20") as cents, refusing more decimals rather than rounding.
func Parse(s string) (int64, error) {
	return parse(s, false)
}

// ParseExact reads an amount with exactly two decimals ("505.12",
// "-1110.56"), as the flat file spec writes them.
func ParseExact(s string) (int64, error) {
	return parse(s, true)
}

// maxWhole keeps cents within int64 with room for sums: 16 digits.
const maxWhole = 16

func parse(s string, exact bool) (int64, error) {
	neg := false
	switch {
	case strings.HasPrefix(s, "-"):
		neg, s = true, s[1:]
	case strings.HasPrefix(s, "+") && !exact:
		s = s[1:]
	}
	whole, frac, dotted := strings.Cut(s, ".")
	switch {
	case whole == "" || len(whole) > maxWhole || !digits(whole) || !digits(frac):
		return 0, ErrSyntax
	case exact && len(frac) != 2, !exact && dotted && (frac == "" || len(frac) > 2):
		return 0, ErrSyntax
	}
	for len(frac) < 2 {
		frac += "0"
	}
	w, _ := strconv.ParseInt(whole, 10, 64) // 16 digits fit
	f, _ := strconv.ParseInt(frac, 10, 64)
	c := w*100 + f
	if neg {
		c = -c
	}
	return c, nil
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// Format writes cents as the spec's amounts: "1234.56", "-112.03", "0.00".
func Format(c int64) string {
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

// FormatShort writes cents as the spec's networth does, with at least one
// decimal: "1000.0", "1291.96", "0.5", "-3.0".
func FormatShort(c int64) string {
	return strings.TrimSuffix(Format(c), "0")
}
