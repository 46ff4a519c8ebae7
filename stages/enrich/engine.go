// Package enrich gives every transaction a clean nickname ("DUNKINDONUTS*100094"
// -> "Dunkin Donuts"), spending tags and the reason for them. Precedence,
// first match wins:
//
//	user rule on this account > user rule on all accounts > partner rule >
//	merchant dictionary > keyword and direction rules > untagged
//
// The rules in force are an immutable Snapshot; changing them builds a new
// one and swaps it atomically, so enriching never takes a lock. An
// Enricher, one per goroutine, holds the scratch buffers that keep a
// dictionary hit free of allocations.
package enrich

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/text/cases"
	"golang.org/x/text/language"
)

// Input is what enrichment reads of a transaction.
type Input struct {
	Memo        string
	Cents       int64  // signed: credits positive, debits negative
	CheckNumber string // as sent, if any
	// User, Account and PostedOn select user rules. The ingest pipeline
	// leaves User empty and applies user rules in the warehouse, after
	// the file's actions are resolved and each account's owner is known.
	User     string
	Account  string
	PostedOn time.Time
}

// Result is what enrichment decided.
type Result struct {
	Nickname string
	Tag      string // empty: untagged
	// Reason names what set the tag (or, untagged, the nickname):
	// user-rule:ID, partner-rule:FILE:LINE, dictionary:ID, keyword:NAME,
	// check or unmatched.
	Reason string
	// MerchantKey identifies the merchant for user rules: the dictionary
	// id, else the cleaned memo in upper case.
	MerchantKey string
	// CheckNumber is set for checks: as sent, else as read from the memo.
	CheckNumber string
}

// Snapshot is one immutable set of rules.
type Snapshot struct {
	merchants []merchantEntry
	dict      matcher
	partners  map[string]*partnerRules
	users     map[string][]*UserRule // partner \x00 user -> rules, highest precedence first
	Version   int64
}

type merchantEntry struct {
	Merchant
	// What a hit returns when its tag is the dictionary's: shared, so a
	// hit allocates nothing and rows carry one pointer.
	debit, credit Result
}

type partnerRules struct {
	rules  []PartnerRule
	groups [][]int // rules sharing one match, in file order
	m      matcher
	reason []string
}

// Build makes a snapshot from a dictionary, partners' rules and users' rules.
func Build(dict *Dictionary, partners map[string][]PartnerRule, users []UserRule) (*Snapshot, error) {
	s := &Snapshot{partners: map[string]*partnerRules{}, users: map[string][]*UserRule{}}
	e := &Enricher{}
	describe := func(i int32) string { return "merchant " + dict.Merchants[i].ID }
	for i, m := range dict.Merchants {
		reason := "dictionary:" + m.ID
		s.merchants = append(s.merchants, merchantEntry{Merchant: m,
			debit:  Result{Nickname: m.Nickname, Tag: m.DebitTag, Reason: reason, MerchantKey: m.ID},
			credit: Result{Nickname: m.Nickname, Tag: m.CreditTag, Reason: reason, MerchantKey: m.ID}})
		for _, a := range m.Aliases {
			if err := s.dict.add(e, a, int32(i), describe); err != nil {
				return nil, fmt.Errorf("merchants line %d: %w", m.Line, err)
			}
		}
	}
	for partner, rules := range partners {
		pr := &partnerRules{rules: rules}
		byKey := map[string]int32{}
		for i, r := range rules {
			key, _ := e.squash(r.Match)
			g, ok := byKey[string(key)]
			if !ok {
				g = int32(len(pr.groups))
				byKey[string(key)] = g
				pr.groups = append(pr.groups, nil)
				if err := pr.m.add(e, r.Match, g, func(int32) string { return r.Source }); err != nil {
					return nil, fmt.Errorf("%s: %w", r.Source, err)
				}
			}
			pr.groups[g] = append(pr.groups[g], i)
			pr.reason = append(pr.reason, "partner-rule:"+r.Source)
		}
		s.partners[partner] = pr
	}
	for i := range users {
		r := users[i]
		if err := r.Check(); err != nil {
			return nil, err
		}
		k := r.Partner + "\x00" + r.User
		s.users[k] = append(s.users[k], &r)
	}
	for _, rules := range s.users {
		sort.SliceStable(rules, func(i, j int) bool { return rules[i].outranks(rules[j]) })
	}
	return s, nil
}

// UserRules returns the rules of every user, for rebuilding a snapshot.
func (s *Snapshot) UserRules() []UserRule {
	var out []UserRule
	for _, rules := range s.users {
		for _, r := range rules {
			out = append(out, *r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Engine holds the snapshot in force. Reads are lock-free; changes are
// serialized and replace the snapshot whole.
type Engine struct {
	dict     *Dictionary
	cur      atomic.Pointer[Snapshot]
	mu       sync.Mutex // serializes changes
	partners map[string][]PartnerRule
}

// NewEngine starts an engine with dict and no rules.
func NewEngine(dict *Dictionary) (*Engine, error) {
	e := &Engine{dict: dict, partners: map[string][]PartnerRule{}}
	s, err := Build(dict, nil, nil)
	if err != nil {
		return nil, err
	}
	e.cur.Store(s)
	return e, nil
}

// Snapshot returns the rules in force.
func (e *Engine) Snapshot() *Snapshot { return e.cur.Load() }

// update rebuilds the snapshot with changed rules and swaps it in.
func (e *Engine) update(change func(partners map[string][]PartnerRule, users []UserRule) []UserRule) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	old := e.cur.Load()
	partners := make(map[string][]PartnerRule, len(e.partners))
	for k, v := range e.partners {
		partners[k] = v
	}
	users := change(partners, old.UserRules())
	s, err := Build(e.dict, partners, users)
	if err != nil {
		return err
	}
	s.Version = old.Version + 1
	e.partners = partners
	e.cur.Store(s)
	return nil
}

// SetPartnerRules replaces a partner's rules.
func (e *Engine) SetPartnerRules(partner string, rules []PartnerRule) error {
	return e.update(func(p map[string][]PartnerRule, users []UserRule) []UserRule {
		if len(rules) == 0 {
			delete(p, partner)
		} else {
			p[partner] = rules
		}
		return users
	})
}

// SetUserRules replaces every user rule (as loaded from the warehouse).
func (e *Engine) SetUserRules(rules []UserRule) error {
	return e.update(func(map[string][]PartnerRule, []UserRule) []UserRule { return rules })
}

// AddUserRule adds one user rule.
func (e *Engine) AddUserRule(r UserRule) error {
	if err := r.Check(); err != nil {
		return err
	}
	return e.update(func(_ map[string][]PartnerRule, users []UserRule) []UserRule { return append(users, r) })
}

// Enricher enriches transactions of one partner under one snapshot. It is
// not safe for concurrent use: give each goroutine its own.
type Enricher struct {
	snap    *Snapshot
	partner *partnerRules
	user    map[string][]*UserRule
	pkey    string

	upper   []byte
	tokens  []token
	key     []byte
	scratch []byte
	// cleaned caches the nickname of memos no dictionary names: a partner's
	// long tail repeats, and title-casing allocates.
	cleaned map[string]cleanName
	title   cases.Caser
	// results interns what is not a plain dictionary hit, so equal results
	// share one pointer.
	results map[Result]*Result
}

type cleanName struct{ key, nickname string }

const cleanedCacheSize = 1 << 14

// Enricher returns an enricher for partner's transactions under this snapshot.
func (s *Snapshot) Enricher(partner string) *Enricher {
	return &Enricher{snap: s, partner: s.partners[partner], pkey: partner + "\x00",
		cleaned: map[string]cleanName{}, title: cases.Title(language.English), results: map[Result]*Result{}}
}

// Enrich decides nickname, tag and reason for one transaction. The result
// is shared and must not be changed. On a dictionary hit it allocates nothing.
func (e *Enricher) Enrich(in Input) *Result {
	e.tokenize(in.Memo)
	credit := in.Cents > 0
	r, shared := e.enrich(in, credit)
	if in.User != "" && len(e.snap.users) > 0 {
		if rule := e.userRule(in, r.MerchantKey); rule != nil {
			return &Result{Nickname: rule.Nickname, Tag: rule.Tag, Reason: "user-rule:" + rule.ID, MerchantKey: r.MerchantKey}
		}
	}
	if shared != nil {
		return shared
	}
	if p, ok := e.results[r]; ok {
		return p
	}
	if len(e.results) >= cleanedCacheSize {
		clear(e.results)
	}
	p := new(Result) // not &r: r would then escape on every path
	*p = r
	e.results[r] = p
	return p
}

// enrich returns the result, and a shared copy of it when it has one.
func (e *Enricher) enrich(in Input, credit bool) (Result, *Result) {
	r := Result{CheckNumber: in.CheckNumber}
	if len(e.tokens) == 0 {
		r.Nickname, r.Reason, r.MerchantKey, r.CheckNumber = strings.TrimSpace(in.Memo), "unmatched", "", ""
		return r, nil
	}
	if e.check(&r) {
		return r, nil
	}
	r.CheckNumber = ""
	from := 0
	if e.tokens[0].flags&beforeStar != 0 && processors[string(e.word(0))] && len(e.tokens) > 1 {
		from = 1 // SQ *, TST*, PAYPAL *: the merchant follows
	}
	var hit *Result // the dictionary's shared result, if it names the merchant
	if target, _, _, ok := e.find(&e.snap.dict, from, len(e.tokens)); ok {
		m := &e.snap.merchants[target]
		hit = &m.debit
		if credit {
			hit = &m.credit
		}
		r = *hit
	} else {
		r.MerchantKey, r.Nickname = e.cleanedName()
	}
	if p := e.partner; p != nil {
		if g, _, _, ok := e.find(&p.m, 0, len(e.tokens)); ok {
			for _, i := range p.groups[g] {
				rule := &p.rules[i]
				if rule.Direction.fits(credit) {
					r.Tag, r.Reason = rule.Tag, p.reason[i]
					if rule.Nickname != "" {
						r.Nickname = rule.Nickname
					}
					return r, nil
				}
			}
		}
	}
	if hit != nil && hit.Tag != "" {
		return r, hit
	}
	if tag, reason, nickname := e.keywords(credit); tag != "" {
		r.Tag, r.Reason = tag, reason
		if nickname != "" && hit == nil {
			r.Nickname = nickname
		}
		return r, nil
	}
	if hit == nil {
		r.Reason = "unmatched"
	}
	return r, nil
}

// check recognizes checks (CHECK 1021, CHECK #1021, Check 00 0 Disbursed):
// a check number and no merchant.
func (e *Enricher) check(r *Result) bool {
	w := string(e.word(0))
	if w != "CHECK" && w != "CHK" && w != "CHEQUE" {
		return false
	}
	if len(e.tokens) > 1 {
		switch string(e.word(1)) {
		case "CARD", "CRD", "PURCHASE", "REFUND", "ORDER", "ORDERS", "FEE", "PRINTING":
			return false
		}
	}
	num := e.scratch[:0]
	for i := 1; i < len(e.tokens); i++ {
		t := e.tokens[i]
		wi := e.word(i)
		if t.flags&hasLetter != 0 {
			if len(num) == 0 && (string(wi) == "NO" || string(wi) == "NUMBER" || string(wi) == "NUM") {
				continue
			}
			break
		}
		num = append(num, wi...)
	}
	for len(num) > 0 && num[0] == '0' {
		num = num[1:]
	}
	e.scratch = num
	if r.CheckNumber == "" && len(num) > 0 {
		r.CheckNumber = string(num)
	}
	r.Nickname, r.Reason, r.MerchantKey = "Check", "check", "CHECK"
	if r.CheckNumber != "" {
		r.Nickname = "Check " + r.CheckNumber
	}
	return true
}

// Keyword and direction rules, for what no dictionary names.
const (
	kwFee = 1 << iota
	kwCharge
	kwChargeKind // SERVICE, FINANCE, INTEREST, LATE: with CHARGE, a fee
	kwOverdraft
	kwATM
	kwTransfer
	kwPayroll
	kwDir
	kwDep
	kwInterest
	kwPayment
	kwThank
	kwAutopay
	kwAuto
	kwPay
)

var keywordBits = map[string]uint32{
	"FEE": kwFee, "FEES": kwFee, "CHARGE": kwCharge, "CHRG": kwCharge, "CHG": kwCharge,
	"SERVICE": kwChargeKind, "FINANCE": kwChargeKind, "INTEREST": kwChargeKind | kwInterest, "LATE": kwChargeKind,
	"MAINTENANCE": kwChargeKind, "OVERDRAFT": kwOverdraft, "NSF": kwOverdraft, "INSUFFICIENT": kwOverdraft, "OD": kwOverdraft,
	"ATM": kwATM, "TRANSFER": kwTransfer, "XFER": kwTransfer, "ZELLE": kwTransfer, "TFR": kwTransfer, "TRNSFR": kwTransfer,
	"TRANSFERS": kwTransfer, "PAYROLL": kwPayroll, "PAYRLL": kwPayroll, "SALARY": kwPayroll, "DIRDEP": kwPayroll,
	"DIR": kwDir, "DIRECT": kwDir, "DEP": kwDep, "DEPOSIT": kwDep, "PAYMENT": kwPayment, "PYMT": kwPayment,
	"PMT": kwPayment, "THANK": kwThank, "AUTOPAY": kwAutopay, "EPAYMENT": kwAutopay, "EPAY": kwAutopay,
	"AUTO": kwAuto, "PAY": kwPay,
}

// keywords returns the tag, reason and, for some, a nickname.
func (e *Enricher) keywords(credit bool) (tag, reason, nickname string) {
	var b uint32
	for i := range e.tokens {
		if e.tokens[i].flags&hasLetter != 0 {
			b |= keywordBits[string(e.word(i))]
		}
	}
	has := func(bits uint32) bool { return b&bits == bits }
	switch {
	case b == 0:
		return "", "", ""
	case !credit && (has(kwFee) || has(kwCharge|kwChargeKind)):
		return "Fees", "keyword:fee", ""
	case has(kwTransfer):
		return "Transfer", "keyword:transfer", ""
	case !credit && has(kwOverdraft):
		return "Fees", "keyword:overdraft", ""
	case !credit && has(kwATM):
		return "Fees", "keyword:atm", "ATM Withdrawal"
	case credit && (has(kwPayroll) || has(kwDir|kwDep)):
		return "Income", "keyword:payroll", ""
	case credit && has(kwInterest):
		return "Income", "keyword:interest", ""
	case has(kwPayment|kwThank) || has(kwAutopay) || has(kwAuto|kwPay):
		return "Payment", "keyword:payment", ""
	}
	return "", "", ""
}

// cleanedName returns the memo's payee words, upper case as the merchant
// key and title case as the nickname: "JOE'S PIZZA 1234 BROOKLYN NY" ->
// "Joe's Pizza".
func (e *Enricher) cleanedName() (key, nickname string) {
	first, last := e.nameSpan()
	words := e.scratch[:0]
	for i := first; i < last; i++ {
		t := e.tokens[i]
		w := e.word(i)
		if t.flags&(hasDigit|domain|afterHash) != 0 || len(w) == 1 && !isAlnum(w[0]) && w[0] != '&' {
			continue
		}
		if len(words) > 0 {
			words = append(words, ' ')
		}
		words = append(words, w...)
	}
	if len(words) == 0 { // nothing but ids and noise: keep its words
		for i := range e.tokens {
			if e.tokens[i].flags&hasDigit != 0 {
				continue
			}
			if len(words) > 0 {
				words = append(words, ' ')
			}
			words = append(words, e.word(i)...)
		}
	}
	e.scratch = words
	if c, ok := e.cleaned[string(words)]; ok {
		return c.key, c.nickname
	}
	c := cleanName{key: string(words)}
	c.nickname = e.titleCase(c.key)
	if len(e.cleaned) >= cleanedCacheSize {
		clear(e.cleaned)
	}
	e.cleaned[c.key] = c
	return c.key, c.nickname
}

// Acronyms stay upper case in a title-cased nickname.
var acronyms = set("ATM", "ACH", "IRS", "DMV", "USA", "LLC", "HOA", "IRA", "USPS", "UPS", "CVS", "BP", "KFC", "TJ",
	"BBQ", "ABC", "NYC", "LA", "DC", "II", "III", "IV", "PC", "TV", "US", "DDS", "MD", "DMD", "DVM", "CPA", "NSF", "HVAC",
	"LLP", "YMCA", "AMC", "ESPN", "HBO")

func (e *Enricher) titleCase(upper string) string {
	out := e.title.String(upper)
	if !strings.ContainsAny(out, " ") && !acronyms[upper] {
		return out
	}
	words := strings.Split(out, " ")
	for i, w := range strings.Split(upper, " ") {
		if acronyms[w] {
			words[i] = w
		}
	}
	return strings.Join(words, " ")
}

// userRule returns the user's rule that wins the transaction, if any.
func (e *Enricher) userRule(in Input, merchantKey string) *UserRule {
	for _, rule := range e.snap.users[e.pkey+in.User] {
		if rule.MatchKey != merchantKey || rule.Account != "" && rule.Account != in.Account {
			continue
		}
		if !rule.PostedFrom.IsZero() && in.PostedOn.Before(rule.PostedFrom) {
			continue
		}
		return rule
	}
	return nil
}
