// Package parse decodes partner flat files (the XML formats of the partner API
// documentation, "Flat File" section) from a stream into records, in file order,
// without ever holding the whole file in memory.
//
// The byte stream is cut at top-level record boundaries by a small scanner
// (split.go); chunks of whole records are decoded with encoding/xml on a bounded
// pool of goroutines and handed back in file order (decode.go).
package parse

import (
	"fmt"
	"strings"
)

// FileType is the shape of a flat file.
type FileType string

const (
	Combined     FileType = "combined"     // Users/User/Details with nested Account and Transaction
	Users        FileType = "users"        // Users/User/Details
	Accounts     FileType = "accounts"     // Accounts/Account/Details
	Transactions FileType = "transactions" // Transactions/Transaction
)

// ParseFileType accepts the names the upload notification uses, singular or plural, any case.
func ParseFileType(s string) (FileType, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "combined":
		return Combined, nil
	case "users", "user":
		return Users, nil
	case "accounts", "account":
		return Accounts, nil
	case "transactions", "transaction":
		return Transactions, nil
	}
	return "", fmt.Errorf("unknown file type %q: want combined, users, accounts or transactions", s)
}

// Holds reports whether a file with this root type can carry records of the
// declared type: a Users file nests accounts and transactions, an Accounts
// file may nest transactions. Combined and empty declarations are always held.
func (root FileType) Holds(declared FileType) bool {
	switch declared {
	case Users, Accounts:
		return root == declared || root == Combined
	}
	return true
}

// Location places a record in its file: the line of its start tag (1-based) and
// the byte offset of its '<' in the UTF-8 stream the parser read. For files
// declared in another encoding the offset is in the transcoded stream. In a
// JSON batch they are those of the record's '{', and Path names it the way
// a partner's JSON tools do: users[3].accounts[0].transactions[12].
type Location struct {
	Line   int
	Offset int64
	Path   string
}

// Record is one top-level element of a file; exactly one field is set, and
// which one follows from the root element: Users -> User, Accounts -> Account,
// Transactions -> Transaction.
type Record struct {
	User        *User
	Account     *Account
	Transaction *Transaction
}

// Location of the record's start tag.
func (r Record) Location() Location {
	switch {
	case r.User != nil:
		return r.User.Location
	case r.Account != nil:
		return r.Account.Location
	case r.Transaction != nil:
		return r.Transaction.Location
	}
	return Location{}
}

// User is a <User> element. Field values are exactly as sent (untrimmed);
// validation decides what they mean.
type User struct {
	Location
	Action            string
	PartnerCustomerID string
	FirstName         string
	LastName          string
	Email             string
	ZipCode           string
	UserExperience    string
	Accounts          []Account
	// DraftSpelling: a push batch's user written with the 000 draft's
	// names (posted_date, transaction_id, amount, account_fi_name, ...), so
	// that rejections name the fields as sent.
	DraftSpelling bool
}

// Account is an <Account> element, nested in a User in combined files.
type Account struct {
	Location
	Action            string
	PartnerCustomerID string
	AccountID         string
	AccountNumber     string
	AccountFiName     string
	AccountNickname   string
	AccountType       string
	AccountExperience string
	// HasBalances reports whether the <AccountBalances> container was present.
	HasBalances  bool
	Balances     []Balance
	Properties   []Property
	Transactions []Transaction
}

// Balance is an <AccountBalance> element.
type Balance struct {
	Line          int
	BalanceType   string
	BalanceAmount string
	CurrencyCode  string
}

// Property is a <Property> element of an account's <Properties>.
type Property struct {
	Line  int
	Type  string
	Value string
}

// Transaction is a <Transaction> element.
type Transaction struct {
	Location
	Action          string
	TransactionID   string
	AccountID       string
	TransactionType string
	PostedDate      string
	OriginationDate string
	Amount          string
	Memo            string
	CheckNumber     string
	// Signed: Amount carries the sign (a push batch's balance: credits
	// positive, debits negative) and TransactionType may be left out.
	Signed bool
	// Nickname is the user's name for the transaction, and Hide whether
	// to hide it (push batches only).
	Nickname string
	Hide     string
}

// SyntaxError is a fatal error in the file: the file cannot be applied.
type SyntaxError struct {
	Line   int
	Column int
	Msg    string
}

func (e *SyntaxError) Error() string {
	if e.Column > 0 {
		return fmt.Sprintf("line %d, column %d: %s", e.Line, e.Column, e.Msg)
	}
	return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
}

// Limits bound what one hostile file can make the parser hold.
type Limits struct {
	MaxDepth       int // element nesting, the root counting as 1
	MaxRecordBytes int // one top-level record, e.g. a <User> with all its accounts and transactions
	MaxTextBytes   int // the text of one field
}

// DefaultLimits are generous for real files: spec fields are String(255),
// and a record of 16 MiB is a user with some 75,000 transactions nested in
// a combined file (a larger history goes as a transactions file, where each
// transaction is a record). Memory follows the record limit: a file of
// nothing but records at it peaked at 382 MB, one alone at 236 MB; at 64
// MiB those were 656 MB and 355 MB (README, Reliability).
var DefaultLimits = Limits{MaxDepth: 32, MaxRecordBytes: 16 << 20, MaxTextBytes: 64 << 10}
