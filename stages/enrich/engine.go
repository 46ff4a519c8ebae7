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
	Source      Source // what decided: the reason's kind
	// ID numbers the result within its file's Results, so rows carry a
	// number rather than a pointer; 0: not numbered (user-rule results).
	ID uint32
}

// Source is the kind of rule that decided a result.
type Source uint8

const (
	SourceUnmatched Source = iota
	SourceDictionary
	SourceKeyword
	SourcePartnerRule
	SourceUserRule
	SourceCheck
	NumSources
)

// String returns the source as reasons name it: unmatched, dictionary, ...
func (s Source) String() string {
	return [...]string{"unmatched", "dictionary", "keyword", "partner-rule", "user-rule", "check"}[s]
}

// Snapshot is one immutable set of rules.
type Snapshot struct {
	merchants []merchantEntry
	dict      matcher
	partners  map[string]*partnerRules
	users     map[string][]*UserRule // partner \x00 user -> rules, highest precedence first
	Version   int64
	// unnumberedCheck is the result of checks without a number.
	unnumberedCheck Result
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
	s := &Snapshot{partners: map[string]*partnerRules{}, users: map[string][]*UserRule{},
		unnumberedCheck: Result{Nickname: "Check", Reason: "check", MerchantKey: "CHECK", Source: SourceCheck}}
	e := &Enricher{}
	describe := func(i int32) string { return "merchant " + dict.Merchants[i].ID }
	for i, m := range dict.Merchants {
		reason := "dictionary:" + m.ID
		s.merchants = append(s.merchants, merchantEntry{Merchant: m,
			debit: Result{Nickname: m.Nickname, Tag: m.DebitTag, Reason: reason, MerchantKey: m.ID, Source: SourceDictionary,
				ID: merchantResultID(i, false)},
			credit: Result{Nickname: m.Nickname, Tag: m.CreditTag, Reason: reason, MerchantKey: m.ID, Source: SourceDictionary,
				ID: merchantResultID(i, true)}})
		for _, a := range m.Aliases {
			if err := s.dict.add(e, a, int32(i), describe); err != nil {
				return nil, fmt.Errorf("merchants line %d: %w", m.Line, err)
			}
		}
	}
	s.dict.seal()
	s.unnumberedCheck.ID = merchantResultID(len(s.merchants), false)
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
		pr.m.seal()
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
	scratch []byte
	// kinds are the tokens' vocabulary bits, once classified.
	kinds      []uint64
	classified bool
	// cleaned caches the names of memos no dictionary names: a partner's
	// long tail repeats, and title-casing allocates.
	cleaned map[string]*cleanName
	title   cases.Caser
	// Results that are not a plain dictionary hit are interned, so equal
	// results share one pointer: by what decided them, which is cheaper
	// to hash than their strings, and checks and blank memos by their text.
	decided  map[decision]*Result
	checks   map[string]*Result
	blanks   map[string]*Result
	numbered *Results
}

type cleanName struct{ key, nickname string }

// decision is what a result was made of: a merchant or a cleaned name,
// and the rule that set its tag.
type decision struct {
	merchant *merchantEntry
	name     *cleanName
	// partner rule i+1, or keyword rule -(k+1); 0: none set the tag
	rule int32
}

const cacheSize = 1 << 14 // of each cache; a full one is emptied

// Results numbers the results a file's enrichers hand out: the snapshot's
// own (dictionary hits) have fixed numbers, and those made while enriching
// (cleaned names, keyword and partner-rule tags, checks) are numbered as
// they are made. Rows then carry a number, which the warehouse stages
// without looking anything up; it takes the made results as they pile up,
// so they do not grow with the file. Enrichers sharing one may run on
// several goroutines.
type Results struct {
	snap *Snapshot
	mu   sync.Mutex
	next uint32
	made []*Result // since the last Take
}

// NewResults starts the numbering of one file's results.
func (s *Snapshot) NewResults() *Results { return &Results{snap: s, next: s.unnumberedCheck.ID + 1} }

// add numbers a result an enricher made.
func (rs *Results) add(r *Result) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	r.ID = rs.next
	rs.next++
	rs.made = append(rs.made, r)
}

// Made returns how many results were made since the last Take.
func (rs *Results) Made() int {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return len(rs.made)
}

// Take returns the results made since the last Take.
func (rs *Results) Take() []*Result {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	made := rs.made
	rs.made = nil
	return made
}

// Fixed returns the snapshot's result numbered id, or nil if id numbers
// a made one (or none).
func (rs *Results) Fixed(id uint32) *Result {
	s := rs.snap
	switch {
	case id == 0 || id > s.unnumberedCheck.ID:
		return nil
	case id == s.unnumberedCheck.ID:
		return &s.unnumberedCheck
	}
	i := int(id-1) / 2
	if id == merchantResultID(i, false) { // arithmetic: the loader asks for every row
		return &s.merchants[i].debit
	}
	return &s.merchants[i].credit
}

// merchantResultID numbers the snapshot's own results: merchant i's debit
// and credit results, then the unnumbered check (i past the last merchant).
func merchantResultID(i int, credit bool) uint32 {
	if credit {
		return uint32(2*i + 2)
	}
	return uint32(2*i + 1)
}

// Enricher returns an enricher for partner's transactions under this
// snapshot, numbering its results on its own.
func (s *Snapshot) Enricher(partner string) *Enricher { return s.EnricherFor(partner, s.NewResults()) }

// EnricherFor returns an enricher for partner's transactions that numbers
// the results it makes in results.
func (s *Snapshot) EnricherFor(partner string, results *Results) *Enricher {
	return &Enricher{snap: s, partner: s.partners[partner], pkey: partner + "\x00", numbered: results,
		cleaned: map[string]*cleanName{}, title: cases.Title(language.English),
		decided: map[decision]*Result{}, checks: map[string]*Result{}, blanks: map[string]*Result{}}
}

// Enrich decides nickname, tag and reason for one transaction. The result
// is shared and must not be changed. On a dictionary hit it allocates nothing.
func (e *Enricher) Enrich(in Input) *Result {
	e.tokenize(in.Memo)
	r := e.enrich(in, in.Cents > 0)
	if in.User != "" && len(e.snap.users) > 0 {
		if rule := e.userRule(in, r.MerchantKey); rule != nil {
			return &Result{Nickname: rule.Nickname, Tag: rule.Tag, Reason: "user-rule:" + rule.ID, MerchantKey: r.MerchantKey, Source: SourceUserRule}
		}
	}
	return r
}

func (e *Enricher) enrich(in Input, credit bool) *Result {
	if len(e.tokens) == 0 {
		return e.blank(strings.TrimSpace(in.Memo))
	}
	if r, ok := e.check(in.CheckNumber); ok {
		return r
	}
	from := 0
	if e.tokens[0].flags&beforeStar != 0 && processors[string(e.word(0))] && len(e.tokens) > 1 {
		from = 1 // SQ *, TST*, PAYPAL *: the merchant follows
	}
	var d decision
	if target, _, _, ok := e.find(&e.snap.dict, from, len(e.tokens)); ok {
		d.merchant = &e.snap.merchants[target]
	} else {
		d.name = e.cleanedName()
	}
	if p := e.partner; p != nil {
		if g, _, _, ok := e.find(&p.m, 0, len(e.tokens)); ok {
			for _, i := range p.groups[g] {
				if p.rules[i].Direction.fits(credit) {
					d.rule = int32(i) + 1
					return e.result(d)
				}
			}
		}
	}
	var hit *Result // the dictionary's shared result, if it names the merchant
	if m := d.merchant; m != nil {
		hit = &m.debit
		if credit {
			hit = &m.credit
		}
		if hit.Tag != "" {
			return hit
		}
	}
	if k := e.keywords(credit); k >= 0 {
		d.rule = -int32(k) - 1
	} else if hit != nil {
		return hit // the merchant, untagged this way
	}
	return e.result(d)
}

// result returns the interned result of d.
func (e *Enricher) result(d decision) *Result {
	if r, ok := e.decided[d]; ok {
		return r
	}
	r := new(Result)
	if m := d.merchant; m != nil {
		*r = Result{Nickname: m.Nickname, Reason: m.debit.Reason, MerchantKey: m.ID, Source: SourceDictionary}
	} else {
		*r = Result{Nickname: d.name.nickname, Reason: "unmatched", MerchantKey: d.name.key}
	}
	switch {
	case d.rule > 0:
		i := d.rule - 1
		rule := &e.partner.rules[i]
		r.Tag, r.Reason, r.Source = rule.Tag, e.partner.reason[i], SourcePartnerRule
		if rule.Nickname != "" {
			r.Nickname = rule.Nickname
		}
	case d.rule < 0:
		k := keywordRules[-d.rule-1]
		r.Tag, r.Reason, r.Source = k.tag, k.reason, SourceKeyword
		if k.nickname != "" && d.merchant == nil {
			r.Nickname = k.nickname
		}
	}
	e.numbered.add(r)
	if len(e.decided) >= cacheSize {
		clear(e.decided)
	}
	e.decided[d] = r
	return r
}

// blank returns the result of a memo without words: itself, untagged.
func (e *Enricher) blank(memo string) *Result {
	if r, ok := e.blanks[memo]; ok {
		return r
	}
	r := &Result{Nickname: memo, Reason: "unmatched"}
	e.numbered.add(r)
	if len(e.blanks) >= cacheSize {
		clear(e.blanks)
	}
	e.blanks[memo] = r
	return r
}

// check recognizes checks (CHECK 1021, CHECK #1021, Check 00 0 Disbursed):
// a check number, as sent or else as read, and no merchant.
func (e *Enricher) check(sent string) (*Result, bool) {
	w := string(e.word(0))
	if w != "CHECK" && w != "CHK" && w != "CHEQUE" {
		return nil, false
	}
	if len(e.tokens) > 1 {
		switch string(e.word(1)) {
		case "CARD", "CRD", "PURCHASE", "REFUND", "ORDER", "ORDERS", "FEE", "PRINTING":
			return nil, false
		}
	}
	num := e.scratch[:0]
	if sent != "" {
		num = append(num, sent...)
	} else {
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
	}
	e.scratch = num
	if len(num) == 0 {
		return &e.snap.unnumberedCheck, true
	}
	if r, ok := e.checks[string(num)]; ok {
		return r, true
	}
	nickname := "Check " + string(num)
	r := &Result{Nickname: nickname, Reason: "check", MerchantKey: "CHECK", CheckNumber: nickname[len("Check "):], Source: SourceCheck}
	e.numbered.add(r)
	if len(e.checks) >= cacheSize {
		clear(e.checks)
	}
	e.checks[r.CheckNumber] = r
	return r, true
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

// keywordRules are what keywords can decide.
var keywordRules = []struct{ tag, reason, nickname string }{
	kwRuleFee:       {"Fees", "keyword:fee", ""},
	kwRuleTransfer:  {"Transfer", "keyword:transfer", ""},
	kwRuleOverdraft: {"Fees", "keyword:overdraft", ""},
	kwRuleATM:       {"Fees", "keyword:atm", "ATM Withdrawal"},
	kwRulePayroll:   {"Income", "keyword:payroll", ""},
	kwRuleInterest:  {"Income", "keyword:interest", ""},
	kwRulePayment:   {"Payment", "keyword:payment", ""},
}

const (
	kwRuleFee = iota
	kwRuleTransfer
	kwRuleOverdraft
	kwRuleATM
	kwRulePayroll
	kwRuleInterest
	kwRulePayment
)

// keywords returns the keyword rule that tags the memo, or -1.
func (e *Enricher) keywords(credit bool) int {
	e.classify()
	var b uint32
	for _, k := range e.kinds {
		b |= uint32(k) // the keyword bits
	}
	has := func(bits uint32) bool { return b&bits == bits }
	switch {
	case b == 0:
		return -1
	case !credit && (has(kwFee) || has(kwCharge|kwChargeKind)):
		return kwRuleFee
	case has(kwTransfer):
		return kwRuleTransfer
	case !credit && has(kwOverdraft):
		return kwRuleOverdraft
	case !credit && has(kwATM):
		return kwRuleATM
	case credit && (has(kwPayroll) || has(kwDir|kwDep)):
		return kwRulePayroll
	case credit && has(kwInterest):
		return kwRuleInterest
	case has(kwPayment|kwThank) || has(kwAutopay) || has(kwAuto|kwPay):
		return kwRulePayment
	}
	return -1
}

// cleanedName returns the memo's payee words, upper case as the merchant
// key and title case as the nickname: "JOE'S PIZZA 1234 BROOKLYN NY" ->
// "Joe's Pizza".
func (e *Enricher) cleanedName() *cleanName {
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
		return c
	}
	c := &cleanName{key: string(words)}
	c.nickname = e.titleCase(c.key)
	if len(e.cleaned) >= cacheSize {
		clear(e.cleaned)
	}
	e.cleaned[c.key] = c
	return c
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
