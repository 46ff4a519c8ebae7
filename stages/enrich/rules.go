package enrich

import (
	"fmt"
	"github.com/flatfiler/flatfiler/stages/money"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

// Direction limits a rule to money out (debit) or in (credit).
type Direction string

const (
	AnyDirection Direction = ""
	Debits       Direction = "debit"
	Credits      Direction = "credit"
)

func (d Direction) fits(credit bool) bool {
	return d == AnyDirection || d == Credits && credit || d == Debits && !credit
}

// PartnerRule is one line of a partner's rules file: memos naming Match get
// Tag, and Nickname unless it is empty.
type PartnerRule struct {
	Match     string
	Nickname  string
	Tag       string
	Direction Direction
	Source    string // file:line, the reason recorded with what it tags
}

// ParsePartnerRules reads a partner's rules file: tab-separated lines of
//
//	match  nickname  tag  [direction]
//
// match is words as printed on statements, matched like dictionary aliases;
// nickname may be empty to keep the dictionary's or the cleaned memo;
// direction is debit, credit or empty for both. Lines starting with # are
// comments. The first rule whose match is found leftmost-longest wins.
func ParsePartnerRules(r io.Reader, name string) ([]PartnerRule, error) {
	var rules []PartnerRule
	err := eachLine(r, name, func(line int, f []string) error {
		if len(f) < 3 || len(f) > 4 {
			return fmt.Errorf("want 3 or 4 tab-separated fields (match, nickname, tag, direction), got %d", len(f))
		}
		r := PartnerRule{Match: strings.TrimSpace(f[0]), Nickname: strings.TrimSpace(f[1]), Tag: strings.TrimSpace(f[2]),
			Source: fmt.Sprintf("%s:%d", name, line)}
		if len(f) == 4 {
			r.Direction = Direction(strings.ToLower(strings.TrimSpace(f[3])))
		}
		if r.Direction != AnyDirection && r.Direction != Debits && r.Direction != Credits {
			return fmt.Errorf("direction %q: want debit, credit or empty", f[3])
		}
		if r.Match == "" {
			return fmt.Errorf("match is empty")
		}
		if err := CheckTagName(r.Tag); err != nil {
			return err
		}
		rules = append(rules, r)
		return nil
	})
	return rules, err
}

// CheckTagName accepts a default tag or a custom one: printable, at most
// 255 characters, no leading or trailing space.
func CheckTagName(tag string) error {
	switch {
	case tag == "":
		return fmt.Errorf("tag is empty")
	case utf8.RuneCountInString(tag) > 255:
		return fmt.Errorf("tag %.20q... is longer than 255 characters", tag)
	case strings.TrimSpace(tag) != tag:
		return fmt.Errorf("tag %q has leading or trailing space", tag)
	case strings.ContainsAny(tag, "\t\r\n"):
		return fmt.Errorf("tag %q contains a control character", tag)
	}
	return nil
}

// UserRule is a user's "tag similar transactions" rule (the spec's PUT
// transaction with tagging.repeat): transactions of the user whose merchant
// key is MatchKey get Nickname and Tag.
type UserRule struct {
	ID      string
	Partner string
	User    string // partner_customer_id
	// Account limits the rule to one account (current_account); empty for
	// all the user's accounts (all_accounts).
	Account  string
	MatchKey string
	Nickname string
	Tag      string
	// PostedFrom limits the rule to transactions posted on or after it
	// (future_date); zero for any date.
	PostedFrom time.Time
	CreatedAt  time.Time
}

// Check validates a rule as an API would before storing it.
func (r *UserRule) Check() error {
	switch {
	case r.ID == "":
		return fmt.Errorf("rule id is empty")
	case r.Partner == "" || r.User == "":
		return fmt.Errorf("rule %s: partner and user are required", r.ID)
	case r.MatchKey == "":
		return fmt.Errorf("rule %s: match key is empty", r.ID)
	case r.Nickname == "":
		return fmt.Errorf("rule %s: nickname is empty", r.ID)
	}
	if err := CheckTagName(r.Tag); err != nil {
		return fmt.Errorf("rule %s: %w", r.ID, err)
	}
	return nil
}

// outranks reports whether r takes precedence over o for the same
// transaction: a rule on this account beats one on all accounts; then the
// newer rule wins. The warehouse orders rules the same way (see
// warehouse.rankUserRules).
func (r *UserRule) outranks(o *UserRule) bool {
	if (r.Account != "") != (o.Account != "") {
		return r.Account != ""
	}
	if !r.CreatedAt.Equal(o.CreatedAt) {
		return r.CreatedAt.After(o.CreatedAt)
	}
	return r.ID > o.ID
}

// TagAmount is one tag of a transaction and the part of its amount it
// carries, in cents, always positive.
type TagAmount struct {
	Name  string
	Cents int64
}

// CheckSplit validates a user's split of a transaction of amount cents
// (signed): every part positive and named, no tag twice, and the parts
// totalling the absolute amount to the cent.
func CheckSplit(cents int64, parts []TagAmount) error {
	if len(parts) == 0 {
		return fmt.Errorf("split: no tags")
	}
	abs := cents
	if abs < 0 {
		abs = -abs
	}
	seen := map[string]bool{}
	var total int64
	for i, p := range parts {
		if err := CheckTagName(p.Name); err != nil {
			return fmt.Errorf("split[%d]: %w", i, err)
		}
		if seen[p.Name] {
			return fmt.Errorf("split[%d]: tag %q appears twice", i, p.Name)
		}
		seen[p.Name] = true
		if p.Cents <= 0 {
			return fmt.Errorf("split[%d]: %s: amount must be positive, got %s", i, p.Name, money.Format(p.Cents))
		}
		total += p.Cents
	}
	if total != abs {
		return fmt.Errorf("split: tags total %s, the transaction's amount is %s", money.Format(total), money.Format(abs))
	}
	return nil
}
