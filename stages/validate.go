package stages

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/flatfiler/flatfiler/parse"
	"github.com/flatfiler/flatfiler/stages/money"
)

// AccountTypes is the closed list of account types (the union of the spec's
// "Account Types" tables) and the balance class each belongs to.
var AccountTypes = map[string]string{
	"checking": "deposit", "savings": "deposit", "cd": "deposit", "money_market": "deposit",
	"investment": "deposit", "asset": "deposit",
	"cards": "credit", "student_loans": "credit", "loans": "credit", "loan": "credit",
	"autos": "credit", "home": "credit", "creditline": "credit",
}

// BalanceTypes lists the balance types of each class; the first is required.
var BalanceTypes = map[string][]string{
	"deposit": {"Current", "Available"},
	"credit": {"Outstanding", "CurrentLimit", "AvailableCredit", "CashAdvanceLimit",
		"MinimumPaymentDue", "PreviousAmountDue", "PastDueAmount", "FinanceCharges"},
}

// BatchAccountTypes adds the push batch's account types (the Push Data
// Source's "Account Types" table) to AccountTypes: a bill is money owed, a
// certificate of deposit is a cd.
var BatchAccountTypes = map[string]string{"bill": "credit", "certificates": "deposit"}

// AccountClass is the class of an account type of either list (the API
// takes both), and whether it is one.
func AccountClass(typ string) (class string, ok bool) {
	if class, ok = AccountTypes[typ]; !ok {
		class, ok = BatchAccountTypes[typ]
	}
	return class, ok
}

// AllAccountTypes lists the types AccountClass knows, for messages.
func AllAccountTypes() string {
	types := slices.Sorted(maps.Keys(AccountTypes))
	types = append(types, slices.Sorted(maps.Keys(BatchAccountTypes))...)
	slices.Sort(types)
	return strings.Join(types, ", ")
}

// batchBalanceTypes maps a push batch's balance_type (current, available,
// any case) to the flat file's balance type of the account's class.
var batchBalanceTypes = map[string]map[string]string{
	"deposit": {"current": "Current", "available": "Available"},
	"credit":  {"current": "Outstanding", "available": "AvailableCredit"},
}

// CurrencyCodes is the spec's closed list.
var CurrencyCodes = []string{"USD", "CAD"}

const maxString = 255

var (
	emailPattern = regexp.MustCompile(`^[^@\s]+@[^@\s]+\.[^@\s]+$`)
	zipPattern   = regexp.MustCompile(`^[0-9]{5}(-?[0-9]{4})?$`)
	decimalValue = regexp.MustCompile(`^-?[0-9]+(\.[0-9]+)?$`)
)

// Validator checks parsed records against the spec's tag tables. It is
// stateless across records, so chunks validate in parallel.
type Validator struct {
	// Type is what the file was declared as (--type, or the notification's
	// types); empty when detected, in which case every kind present is imported.
	Type parse.FileType
	// Batch applies the push batch's property tables instead of the flat
	// file's: its required fields, signed amounts, balance types and
	// account types; rejections name its fields (BatchFields).
	Batch bool
	// PostedFrom, if set, is the earliest posting date kept of an
	// account's transactions (zero: any): one posted before is skipped. A
	// pull harvest keeps 90 days of a new user and never touches what is
	// older than 180 days.
	PostedFrom func(accountID string) time.Time
	draft      bool // the user at hand is spelled as the 000 draft spells it
}

// Fields names each field as a source spells it, so that a rejection
// names what the partner sent.
type Fields struct {
	Action, PartnerCustomerID, FirstName, LastName, Email, ZipCode, UserExperience string

	AccountID, AccountNumber, FiName, Nickname, AccountType, AccountExperience string
	Balances, BalanceType, BalanceAmount, CurrencyCode                         string

	TransactionID, TransactionAccountID, TransactionType, PostedDate, OriginationDate string
	Amount, Memo, CheckNumber, TransactionNickname, Hide                              string
}

// FlatFileFields are the flat file's tags.
var FlatFileFields = Fields{
	Action: "Action", PartnerCustomerID: "PartnerCustomerId", FirstName: "FirstName", LastName: "LastName",
	Email: "Email", ZipCode: "ZipCode", UserExperience: "UserExperience",
	AccountID: "AccountId", AccountNumber: "AccountNumber", FiName: "AccountFiName", Nickname: "AccountNickname",
	AccountType: "AccountType", AccountExperience: "AccountExperience",
	Balances: "AccountBalances", BalanceType: "BalanceType", BalanceAmount: "BalanceAmount", CurrencyCode: "CurrencyCode",
	TransactionID: "TransactionId", TransactionAccountID: "AccountId", TransactionType: "TransactionType",
	PostedDate: "PostedDate", OriginationDate: "OriginationDate", Amount: "Amount", Memo: "Memo", CheckNumber: "CheckNumber",
}

// BatchFields are the push batch's properties (001); a user written in the
// draft's spellings is reported under DraftBatchFields.
var BatchFields = Fields{
	PartnerCustomerID: "partner_customer_id", FirstName: "first_name", LastName: "last_name",
	Email: "email", ZipCode: "zip_code",
	AccountID: "reference_id", AccountNumber: "account_number", FiName: "name", Nickname: "name",
	AccountType: "account_type",
	Balances:    "account_balances", BalanceType: "balance_type", BalanceAmount: "balance_amount", CurrencyCode: "currency_code",
	TransactionID: "reference_id", TransactionAccountID: "reference_id", TransactionType: "transaction_type",
	PostedDate: "posted_at", OriginationDate: "origination_date", Amount: "balance", Memo: "memo", CheckNumber: "check_number",
	TransactionNickname: "nickname", Hide: "hide",
}

// DraftBatchFields are the 000 draft's spellings, for a batch's user
// written with them (parse.User.DraftSpelling).
var DraftBatchFields = func() Fields {
	f := BatchFields
	f.FiName, f.Nickname, f.TransactionID, f.PostedDate, f.Amount = "account_fi_name", "account_nickname", "transaction_id", "posted_date", "amount"
	return f
}()

func (v Validator) names() *Fields {
	switch {
	case v.Batch && v.draft:
		return &DraftBatchFields
	case v.Batch:
		return &BatchFields
	}
	return &FlatFileFields
}

func (v Validator) imports(kind parse.FileType) bool {
	return v.Type == "" || v.Type == parse.Combined || v.Type == kind
}

// Validated is the outcome of validating one chunk of records.
type Validated struct {
	Batch      Batch
	Rejections []Rejection
	Totals     Totals
	Skipped    int64
	// Nested reports whether a Users file nested accounts (a combined file).
	Nested bool
}

// recordCheck gathers the rejections of one record; they are reported only if
// the record's kind is imported (commit).
type recordCheck struct {
	out     *Validated
	context string
	id      string
	line    int
	path    string // in a push batch: users[0].accounts[1]
	failed  bool
	found   []Rejection
}

func (c *recordCheck) fail(line int, field, format string, args ...any) {
	c.failed = true
	if line == 0 {
		line = c.line
	}
	c.found = append(c.found, Rejection{
		Context: c.context, Identifier: c.id, Field: field, Message: fmt.Sprintf(format, args...), Line: line, Path: c.path,
	})
}

// text trims a field and checks the String(255) limit and presence.
func (c *recordCheck) text(field, raw string, required bool) string {
	s := strings.TrimSpace(raw)
	switch {
	case s == "" && required:
		c.fail(0, field, "%s is required", field)
	case !utf8.ValidString(s):
		c.fail(0, field, "%s is not valid UTF-8", field)
	case utf8.RuneCountInString(s) > maxString:
		c.fail(0, field, "%s is %d characters long; the limit is %d", field, utf8.RuneCountInString(s), maxString)
	}
	return s
}

func (c *recordCheck) action(raw string) Action {
	switch strings.ToLower(strings.TrimSpace(raw)) {
	case "", "new", "update":
		return Upsert
	case "delete":
		return Delete
	}
	c.fail(0, "Action", "Action %q is not one of New, Update, Delete", strings.TrimSpace(raw))
	return Upsert
}

// flag reads a push batch's boolean (true, false, or their strings).
func (c *recordCheck) flag(field, raw string) bool {
	switch strings.ToLower(strings.TrimSpace(raw)) {
	case "", "false":
		return false
	case "true":
		return true
	}
	c.fail(0, field, "%s %q is not true or false", field, strings.TrimSpace(raw))
	return false
}

// commit counts the record and reports its rejections.
func (c *recordCheck) commit() {
	c.out.Rejections = append(c.out.Rejections, c.found...)
	n := c.out.Totals.Of(c.context)
	n.Total++
	if c.failed {
		n.Error++
	} else {
		n.Success++
	}
}

// Validate checks a chunk of records in file order. Seq numbers are local to
// the chunk (0, 1, ...); the caller shifts them into file order.
func (v Validator) Validate(recs []parse.Record) Validated {
	var out Validated
	var seq Seq
	next := func() Seq { seq++; return seq - 1 }
	for _, r := range recs {
		switch {
		case r.User != nil:
			v.user(&out, r.User, next)
		case r.Account != nil:
			v.account(&out, r.Account, nil, next)
		case r.Transaction != nil:
			v.transaction(&out, r.Transaction, nil, next)
		}
	}
	return out
}

// parentState is what nested records need to know of their enclosing record.
type parentState struct {
	context  string // user or account
	id       string
	line     int
	imported bool // the parent's kind is imported by this file's type
	rejected bool
	deleted  bool
	typ      string // account type, for accounts
}

func (v Validator) user(out *Validated, u *parse.User, next func() Seq) {
	v.draft = u.DraftSpelling // v is this user's copy: its accounts and transactions see it
	n := v.names()
	c := recordCheck{out: out, context: "user", id: strings.TrimSpace(u.PartnerCustomerID), line: u.Line, path: u.Path}
	row := User{Line: u.Line, Action: c.action(u.Action)}
	row.PartnerCustomerID = c.text(n.PartnerCustomerID, u.PartnerCustomerID, true)
	if row.Action == Upsert {
		// The push batch requires names and email, the flat file the ZIP code.
		row.FirstName = c.text(n.FirstName, u.FirstName, v.Batch)
		row.LastName = c.text(n.LastName, u.LastName, v.Batch)
		row.Email = c.text(n.Email, u.Email, v.Batch)
		if row.Email != "" && !emailPattern.MatchString(row.Email) {
			c.fail(0, n.Email, "%s %q is not a valid email address", n.Email, row.Email)
		}
		row.ZipCode = c.text(n.ZipCode, u.ZipCode, !v.Batch)
		if row.ZipCode != "" && !zipPattern.MatchString(row.ZipCode) {
			c.fail(0, n.ZipCode, "%s %q is not a US ZIP code (12345 or 12345-6789)", n.ZipCode, row.ZipCode)
		}
		row.UserExperience = c.text(n.UserExperience, u.UserExperience, false)
	}
	imported := v.imports(parse.Users)
	if imported {
		c.commit()
		if !c.failed {
			row.Seq = next()
			out.Batch.Users = append(out.Batch.Users, row)
		}
	}
	if len(u.Accounts) > 0 {
		out.Nested = true
	}
	parent := &parentState{context: "user", id: row.PartnerCustomerID, line: u.Line, imported: imported,
		rejected: c.failed, deleted: row.Action == Delete}
	for i := range u.Accounts {
		v.account(out, &u.Accounts[i], parent, next)
	}
}

func (v Validator) account(out *Validated, a *parse.Account, parent *parentState, next func() Seq) {
	n := v.names()
	c := recordCheck{out: out, context: "account", id: strings.TrimSpace(a.AccountID), line: a.Line, path: a.Path}
	row := Account{Line: a.Line, Action: c.action(a.Action)}
	row.AccountID = c.text(n.AccountID, a.AccountID, true)
	row.PartnerCustomerID = c.text(n.PartnerCustomerID, a.PartnerCustomerID, row.Action == Upsert)
	if row.Action == Upsert {
		v.accountDetails(&c, a, &row)
	}
	if parent != nil && parent.imported {
		switch {
		case parent.rejected:
			c.fail(0, n.PartnerCustomerID, "the enclosing user %s (line %d) was rejected", parent.id, parent.line)
		case row.PartnerCustomerID != "" && row.PartnerCustomerID != parent.id:
			c.fail(0, n.PartnerCustomerID, "%s %s does not match the enclosing user %s", n.PartnerCustomerID, row.PartnerCustomerID, parent.id)
		}
	}
	imported := v.imports(parse.Accounts)
	// Children of a deleted user go with it: the cascade removes them.
	if imported && !(parent != nil && parent.imported && parent.deleted) {
		c.commit()
		if !c.failed {
			row.NeedsUser = parent == nil || !parent.imported
			row.Seq = next()
			out.Batch.Accounts = append(out.Batch.Accounts, row)
		}
	}
	me := &parentState{context: "account", id: row.AccountID, line: a.Line, imported: imported,
		rejected: c.failed, deleted: row.Action == Delete || (parent != nil && parent.deleted), typ: row.AccountType}
	for i := range a.Transactions {
		v.transaction(out, &a.Transactions[i], me, next)
	}
}

func (v Validator) accountDetails(c *recordCheck, a *parse.Account, row *Account) {
	n := v.names()
	row.AccountNumber = c.text(n.AccountNumber, a.AccountNumber, false)
	if looksLikeFullCardNumber(row.AccountNumber) {
		c.fail(0, n.AccountNumber, "%s looks like a full card number; send a masked number (e.g. last four digits)", n.AccountNumber)
	}
	// A batch's name is optional, and is both names (see parse.batchAccount).
	row.FiName = c.text(n.FiName, a.AccountFiName, !v.Batch)
	if row.FiName == "" && v.Batch {
		row.FiName = row.AccountID // an account without a name shows its reference_id
	}
	if nick := c.text(n.Nickname, a.AccountNickname, false); nick != row.FiName || !v.Batch {
		row.Nickname = nick
	}
	row.Experience = c.text(n.AccountExperience, a.AccountExperience, false)
	typ := c.text(n.AccountType, a.AccountType, true)
	if typ != "" {
		row.AccountType = strings.ToLower(typ)
		row.AccountClass = AccountTypes[row.AccountType]
		list := accountTypeList
		if v.Batch {
			if class, ok := BatchAccountTypes[row.AccountType]; ok {
				row.AccountClass = class
			}
			list = batchAccountTypeList
		}
		if row.AccountClass == "" {
			c.fail(0, n.AccountType, "%s %q is not in the closed list (%s)", n.AccountType, typ, list)
			row.AccountType = ""
		}
	}
	if !a.HasBalances {
		c.fail(0, n.Balances, "%s is required", n.Balances)
	}
	seen := map[string]bool{}
	for _, b := range a.Balances {
		bal, ok := v.balance(c, b, row.AccountClass)
		if !ok {
			continue
		}
		if seen[bal.BalanceType] {
			c.fail(b.Line, n.BalanceType, "%s %s occurs more than once", n.BalanceType, strings.TrimSpace(b.BalanceType))
			continue
		}
		seen[bal.BalanceType] = true
		row.Balances = append(row.Balances, bal)
	}
	// The push batch requires balances but names no balance type as required.
	if row.AccountClass != "" && a.HasBalances && !v.Batch {
		if required := BalanceTypes[row.AccountClass][0]; !seen[required] {
			c.fail(0, "BalanceType", "a %s account (%s) needs a %s balance", row.AccountClass, row.AccountType, required)
		}
	}
	for _, p := range a.Properties {
		if prop, ok := property(c, p); ok {
			row.Properties = append(row.Properties, prop)
		}
	}
}

func property(c *recordCheck, p parse.Property) (Property, bool) {
	typ, val := strings.TrimSpace(p.Type), strings.TrimSpace(p.Value)
	switch {
	case typ == "":
		c.fail(p.Line, "PropertyType", "PropertyType is required")
	case val == "":
		c.fail(p.Line, "PropertyValue", "PropertyValue of %s is required", typ)
	case utf8.RuneCountInString(typ) > maxString || utf8.RuneCountInString(val) > maxString:
		c.fail(p.Line, "PropertyValue", "Property %s is longer than %d characters", typ, maxString)
	case typ == "PurchasesApr" && !decimalValue.MatchString(val):
		c.fail(p.Line, "PropertyValue", "PurchasesApr %q is not a decimal number", val)
	case typ == "PaymentDueDate" && dateError(val) != nil:
		c.fail(p.Line, "PropertyValue", "PaymentDueDate %q: %v", val, dateError(val))
	default:
		return Property{Type: typ, Value: val}, true
	}
	return Property{}, false
}

func dateError(s string) error {
	_, _, err := parseDateTime(s)
	return err
}

// The closed lists as messages name them: a flat file's, and a push
// batch's (which takes both tables).
var (
	accountTypeList      = strings.Join(slices.Sorted(maps.Keys(AccountTypes)), ", ")
	batchAccountTypeList = AllAccountTypes()
)

func (v Validator) balance(c *recordCheck, b parse.Balance, class string) (Balance, bool) {
	n := v.names()
	ok := true
	var bal Balance
	typ := strings.TrimSpace(b.BalanceType)
	switch {
	case typ == "":
		c.fail(b.Line, n.BalanceType, "%s is required", n.BalanceType)
		ok = false
	case class != "" && v.Batch:
		bal.BalanceType = batchBalanceTypes[class][strings.ToLower(typ)]
		if bal.BalanceType == "" {
			c.fail(b.Line, n.BalanceType, "%s %q is not current or available", n.BalanceType, typ)
			ok = false
		}
	case class != "":
		bal.BalanceType = canonical(typ, BalanceTypes[class])
		if bal.BalanceType == "" {
			c.fail(b.Line, n.BalanceType, "%s %q is not valid for a %s account (%s)", n.BalanceType, typ, class, strings.Join(BalanceTypes[class], ", "))
			ok = false
		}
	}
	amount := strings.TrimSpace(b.BalanceAmount)
	if amount == "" {
		c.fail(b.Line, n.BalanceAmount, "%s is required", n.BalanceAmount)
		ok = false
	} else if cents, neg, err := parseAmount(amount); err != nil {
		c.fail(b.Line, n.BalanceAmount, "%s %q: %v", n.BalanceAmount, amount, err)
		ok = false
	} else {
		bal.Cents = cents
		if neg {
			bal.Cents = -cents
		}
	}
	cur := strings.TrimSpace(b.CurrencyCode)
	switch {
	case cur == "" && v.Batch:
		bal.CurrencyCode = "USD" // the push batch has no currency; the draft's is optional
	case cur == "":
		c.fail(b.Line, n.CurrencyCode, "%s is required", n.CurrencyCode)
		ok = false
	default:
		if bal.CurrencyCode = canonical(cur, CurrencyCodes); bal.CurrencyCode == "" {
			c.fail(b.Line, n.CurrencyCode, "%s %q is not USD or CAD", n.CurrencyCode, cur)
			ok = false
		}
	}
	return bal, ok && class != ""
}

func (v Validator) transaction(out *Validated, t *parse.Transaction, parent *parentState, next func() Seq) {
	n := v.names()
	c := recordCheck{out: out, context: "transaction", id: strings.TrimSpace(t.TransactionID), line: t.Line, path: t.Path}
	row := Transaction{Line: t.Line, Action: c.action(t.Action)}
	row.TransactionID = c.text(n.TransactionID, t.TransactionID, true)
	row.AccountID = c.text(n.TransactionAccountID, t.AccountID, true)
	if row.Action == Upsert {
		v.transactionDetails(&c, t, &row)
	}
	skip := false
	if parent != nil {
		switch {
		case parent.imported && parent.rejected:
			c.fail(0, n.TransactionAccountID, "the enclosing account %s (line %d) was rejected", parent.id, parent.line)
		case row.AccountID != "" && row.AccountID != parent.id:
			c.fail(0, n.TransactionAccountID, "%s %s does not match the enclosing account %s", n.TransactionAccountID, row.AccountID, parent.id)
		case parent.typ == "investment":
			// Spec: positions/transactions of investment accounts are not created.
			skip = true
		}
	}
	if v.PostedFrom != nil && row.Action == Upsert && !row.PostedOn.IsZero() && row.PostedOn.Before(v.PostedFrom(row.AccountID)) {
		skip = true
	}
	if !v.imports(parse.Transactions) || (parent != nil && parent.imported && parent.deleted) {
		return
	}
	if skip && !c.failed {
		out.Skipped++
		return
	}
	c.commit()
	if !c.failed {
		row.NeedsAccount = parent == nil || !parent.imported
		row.Seq = next()
		out.Batch.Transactions = append(out.Batch.Transactions, row)
	}
}

func (v Validator) transactionDetails(c *recordCheck, t *parse.Transaction, row *Transaction) {
	n := v.names()
	typ := strings.TrimSpace(t.TransactionType)
	switch strings.ToLower(typ) {
	case "debit":
		row.TransactionType = "debit"
	case "credit":
		row.TransactionType = "credit"
	case "":
		if !t.Signed {
			c.fail(0, n.TransactionType, "%s is required", n.TransactionType)
		}
	default:
		c.fail(0, n.TransactionType, "%s %q is not Debit or Credit", n.TransactionType, typ)
	}
	if posted := strings.TrimSpace(t.PostedDate); posted == "" {
		c.fail(0, n.PostedDate, "%s is required", n.PostedDate)
	} else if at, on, err := parseDateTime(posted); err != nil {
		c.fail(0, n.PostedDate, "%s %q: %v", n.PostedDate, posted, err)
	} else {
		row.PostedAt, row.PostedOn = at, on
	}
	if orig := strings.TrimSpace(t.OriginationDate); orig != "" {
		if at, on, err := parseDateTime(orig); err != nil {
			c.fail(0, n.OriginationDate, "%s %q: %v", n.OriginationDate, orig, err)
		} else {
			row.OriginatedAt, row.OriginatedOn = at, on
		}
	}
	amountName := n.Amount
	if !t.Signed && v.Batch {
		amountName = "amount" // the draft's absolute amount
	}
	if amount := strings.TrimSpace(t.Amount); amount == "" {
		c.fail(0, amountName, "%s is required", amountName)
	} else if cents, neg, err := parseAmount(amount); err != nil {
		c.fail(0, amountName, "%s %q: %v", amountName, amount, err)
	} else if t.Signed {
		// Credits positive, debits negative; transaction_type, when given,
		// must say the same.
		signed := cents
		if neg {
			signed = -cents
		}
		row.Cents = signed
		want, sign := "credit", "positive"
		if signed < 0 {
			want, sign = "debit", "negative"
		}
		switch {
		case row.TransactionType == "":
			row.TransactionType = want
		case signed != 0 && row.TransactionType != want:
			c.fail(0, n.TransactionType, "%s is %s but %s %s is %s; send debits negative and credits positive",
				n.TransactionType, typ, n.Amount, amount, sign)
		}
	} else {
		// The spec asks for absolute values but its own example sends debits
		// as "-10.00": a minus is accepted on a Debit, never on a Credit.
		switch row.TransactionType {
		case "debit":
			row.Cents = -cents
		case "credit":
			if neg && cents != 0 {
				c.fail(0, amountName, "%s %q is negative on a Credit; send the absolute value", amountName, amount)
			}
			row.Cents = cents
		}
	}
	row.OriginalName = t.Memo
	row.Memo = c.text(n.Memo, t.Memo, !v.Batch)
	row.CheckNumber = c.text(n.CheckNumber, t.CheckNumber, false)
	if v.Batch {
		row.UserNickname = c.text(n.TransactionNickname, t.Nickname, false)
		row.Hidden = c.flag(n.Hide, t.Hide)
	}
}

// parseAmount reads a decimal with exactly two decimals into absolute
// cents and its sign, so that "-0.00" is still seen to carry one.
func parseAmount(s string) (cents int64, negative bool, err error) {
	c, err := money.ParseExact(s)
	if err != nil {
		return 0, false, fmt.Errorf("want a decimal with exactly two decimals, e.g. 505.12 or -1110.56")
	}
	return max(c, -c), strings.HasPrefix(s, "-"), nil
}

// Dates outside [minDate, maxDate] are refused: a year 0001 or 9999 in a
// bank export is a placeholder or a typo, not a posting date, and the zero
// time (0001-01-01) is what the warehouse reads as "no date".
var (
	minDate = time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)
	maxDate = time.Date(2199, 12, 31, 0, 0, 0, 0, time.UTC)
)

// parseDateTime accepts YYYY-MM-DD or RFC 3339 with an offset. It returns the
// instant (UTC) and the calendar date as written (at 00:00 UTC).
func parseDateTime(s string) (at, on time.Time, err error) {
	if len(s) == len(time.DateOnly) {
		d, err := time.Parse(time.DateOnly, s)
		if err != nil {
			return at, on, fmt.Errorf("want YYYY-MM-DD or RFC 3339 with an offset")
		}
		return d, d, inRange(d)
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return at, on, fmt.Errorf("want YYYY-MM-DD or RFC 3339 with an offset, e.g. 2009-03-19T11:40:50-04:00")
	}
	// Go reads +24:00; RFC 3339's time-numoffset has hours 00 to 23.
	if _, offset := t.Zone(); offset <= -24*3600 || offset >= 24*3600 {
		return at, on, fmt.Errorf("offset %s is outside -23:59 to +23:59", t.Format("-07:00"))
	}
	on = time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	return t.UTC(), on, inRange(on)
}

func inRange(d time.Time) error {
	if d.Before(minDate) || d.After(maxDate) {
		return fmt.Errorf("the date is outside %s to %s", minDate.Format(time.DateOnly), maxDate.Format(time.DateOnly))
	}
	return nil
}

// canonical returns the entry of list equal to s ignoring case, or "".
func canonical(s string, list []string) string {
	for _, v := range list {
		if strings.EqualFold(s, v) {
			return v
		}
	}
	return ""
}

// looksLikeFullCardNumber reports a 13 to 19 digit number passing the Luhn check.
func looksLikeFullCardNumber(s string) bool {
	digits := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			digits = append(digits, c-'0')
		case c == ' ' || c == '-':
		default:
			return false
		}
	}
	if len(digits) < 13 || len(digits) > 19 {
		return false
	}
	sum := 0
	for i := range digits {
		d := int(digits[len(digits)-1-i])
		if i%2 == 1 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return sum%10 == 0
}
