// Package stages turns parsed records into validated, typed rows ready for the
// warehouse: validation against the spec's tag tables, and the terms of
// action resolution (Action, Seq).
//
// Validation is per record and runs on the parser's worker pool. Resolution of
// actions over the whole file and against what is already stored (last
// occurrence wins, Delete cascades) is set-based and runs in the warehouse, so
// memory stays flat whatever the file's size.
package stages

import (
	"time"
)

// Action is what a record asks for. New, Update and a missing <Action> all
// mean upsert: the record as sent replaces the stored one.
type Action uint8

const (
	Upsert Action = iota
	Delete
)

// Seq orders every row of a file: when a key occurs more than once, the row
// with the highest Seq wins, and a Delete cascades only to rows before it.
type Seq = int64

// User is a validated <User>.
type User struct {
	Seq               Seq
	Line              int
	Action            Action
	PartnerCustomerID string
	FirstName         string
	LastName          string
	Email             string
	ZipCode           string
	UserExperience    string
}

// Account is a validated <Account> with its balance snapshot and properties.
type Account struct {
	Seq               Seq
	Line              int
	Action            Action
	PartnerCustomerID string
	AccountID         string
	AccountNumber     string
	FiName            string
	Nickname          string
	AccountType       string // lower case, from AccountTypes
	AccountClass      string // deposit or credit
	Experience        string
	Balances          []Balance
	Properties        []Property
	// NeedsUser is set when the file does not carry the account's user
	// (accounts files), so the warehouse must already know it.
	NeedsUser bool
}

// Balance is one balance of an account's snapshot.
type Balance struct {
	BalanceType  string // canonical case, e.g. Current
	Cents        int64
	CurrencyCode string
}

// Property is one <Property> of an account.
type Property struct {
	Type  string
	Value string
}

// Transaction is a validated <Transaction>. Amounts are signed cents: debits negative.
type Transaction struct {
	Seq             Seq
	Line            int
	Action          Action
	AccountID       string
	TransactionID   string
	TransactionType string // debit or credit
	PostedAt        time.Time
	PostedOn        time.Time // the calendar date as written, at 00:00 UTC
	OriginatedAt    time.Time // zero when absent
	OriginatedOn    time.Time
	Cents           int64
	Memo            string // trimmed
	OriginalName    string // the memo exactly as sent
	CheckNumber     string
	// EnrichmentID is set by the enrichment stage: the number of the row's
	// result (nickname, tag, reason, merchant key) in the file's
	// enrich.Results, shared by rows enriched alike; 0 when off.
	EnrichmentID uint32
	// UserNickname is the user's own name for the transaction (a push
	// batch's nickname), kept as the user's edit; Hidden hides it from the
	// user's lists (the batch's hide).
	UserNickname string
	Hidden       bool
	// NeedsAccount is set when the file does not carry the account
	// (transactions files), so the warehouse must already know it; it also
	// decides there whether the account is an investment one (skipped).
	NeedsAccount bool
}

// Batch holds rows in file order within each kind.
type Batch struct {
	Users        []User
	Accounts     []Account
	Transactions []Transaction
}

// Rows counts the rows of the batch, balances included.
func (b *Batch) Rows() int {
	n := len(b.Users) + len(b.Transactions)
	for _, a := range b.Accounts {
		n += 1 + len(a.Balances)
	}
	return n
}

// Rejection says why a record was not applied, in the vocabulary of the
// spec's push batch callbacks.
type Rejection struct {
	Context    string `json:"context"` // user, account or transaction
	Identifier string `json:"identifier"`
	Field      string `json:"field"`
	Message    string `json:"message"`
	Line       int    `json:"line"`
	// Path places it in a push batch: users[0].accounts[1].transactions[4].
	Path string `json:"path,omitempty"`
}

// Count is the outcome of the records of one kind.
type Count struct {
	Total   int64 `json:"total"`
	Success int64 `json:"success"`
	Error   int64 `json:"error"`
}

// Totals counts records per kind, as the spec's batch callback does.
type Totals struct {
	Users        Count `json:"users"`
	Accounts     Count `json:"accounts"`
	Transactions Count `json:"transactions"`
}

// Add adds o to t.
func (t *Totals) Add(o Totals) {
	for _, p := range [][2]*Count{{&t.Users, &o.Users}, {&t.Accounts, &o.Accounts}, {&t.Transactions, &o.Transactions}} {
		p[0].Total += p[1].Total
		p[0].Success += p[1].Success
		p[0].Error += p[1].Error
	}
}

// Of returns the count of a context (user, account, transaction).
func (t *Totals) Of(context string) *Count {
	switch context {
	case "user":
		return &t.Users
	case "account":
		return &t.Accounts
	}
	return &t.Transactions
}
