package parse

import (
	"bufio"
	"encoding/xml"
	"io"
	"strings"
)

// Encoder writes records as the flat file spec's XML, the inverse of
// Decoder: a document that Decoder reads back as the same records, values
// as given (escaped, not trimmed). A pull harvest composes a partner's
// three answers into one combined document with it, and the harvest
// simulator writes its answers.
type Encoder struct {
	w *bufio.Writer
	// Details wraps each record's fields in <Details>, as flat files do;
	// the spec's harvest answers leave it out. Decoder reads both.
	Details bool
	root    string
}

// NewEncoder writes to w.
func NewEncoder(w io.Writer) *Encoder { return &Encoder{w: bufio.NewWriter(w), Details: true} }

// Open starts the document's root element: Users, Accounts or Transactions.
func (e *Encoder) Open(root string) {
	e.root = root
	e.w.WriteString("<" + root + ">\n")
}

// Close ends the root element and flushes.
func (e *Encoder) Close() error {
	e.w.WriteString("</" + e.root + ">\n")
	return e.w.Flush()
}

// User writes a <User> with its nested accounts.
func (e *Encoder) User(u *User) {
	e.w.WriteString("  <User>\n")
	e.details("    ", func(in string) {
		e.fields(in, "Action", u.Action, "PartnerCustomerId", u.PartnerCustomerID, "FirstName", u.FirstName,
			"LastName", u.LastName, "Email", u.Email, "ZipCode", u.ZipCode, "UserExperience", u.UserExperience)
	})
	for i := range u.Accounts {
		e.account("    ", &u.Accounts[i])
	}
	e.w.WriteString("  </User>\n")
}

// Account writes an <Account> with its nested transactions.
func (e *Encoder) Account(a *Account) { e.account("  ", a) }

func (e *Encoder) account(indent string, a *Account) {
	e.w.WriteString(indent + "<Account>\n")
	e.details(indent+"  ", func(in string) {
		e.fields(in, "Action", a.Action, "PartnerCustomerId", a.PartnerCustomerID, "AccountId", a.AccountID,
			"AccountNumber", a.AccountNumber, "AccountFiName", a.AccountFiName, "AccountNickname", a.AccountNickname,
			"AccountType", a.AccountType)
		if a.HasBalances || len(a.Balances) > 0 {
			e.w.WriteString(in + "<AccountBalances>\n")
			for _, b := range a.Balances {
				e.w.WriteString(in + "  <AccountBalance>\n")
				e.fields(in+"    ", "BalanceType", b.BalanceType, "BalanceAmount", b.BalanceAmount, "CurrencyCode", b.CurrencyCode)
				e.w.WriteString(in + "  </AccountBalance>\n")
			}
			e.w.WriteString(in + "</AccountBalances>\n")
		}
		if len(a.Properties) > 0 {
			e.w.WriteString(in + "<Properties>\n")
			for _, p := range a.Properties {
				e.w.WriteString(in + "  <Property>\n")
				e.fields(in+"    ", "PropertyType", p.Type, "PropertyValue", p.Value)
				e.w.WriteString(in + "  </Property>\n")
			}
			e.w.WriteString(in + "</Properties>\n")
		}
		e.fields(in, "AccountExperience", a.AccountExperience)
	})
	for i := range a.Transactions {
		e.transaction(indent+"  ", &a.Transactions[i])
	}
	e.w.WriteString(indent + "</Account>\n")
}

// Transaction writes a <Transaction>.
func (e *Encoder) Transaction(t *Transaction) { e.transaction("  ", t) }

func (e *Encoder) transaction(indent string, t *Transaction) {
	e.w.WriteString(indent + "<Transaction>\n")
	e.fields(indent+"  ", "Action", t.Action, "TransactionId", t.TransactionID, "AccountId", t.AccountID,
		"TransactionType", t.TransactionType, "PostedDate", t.PostedDate, "OriginationDate", t.OriginationDate,
		"Amount", t.Amount, "Memo", t.Memo, "CheckNumber", t.CheckNumber)
	e.w.WriteString(indent + "</Transaction>\n")
}

func (e *Encoder) details(indent string, fields func(indent string)) {
	if !e.Details {
		fields(indent)
		return
	}
	e.w.WriteString(indent + "<Details>\n")
	fields(indent + "  ")
	e.w.WriteString(indent + "</Details>\n")
}

// fields writes name, value pairs as elements, leaving out values that
// are empty (the decoder reads an absent element as empty).
func (e *Encoder) fields(indent string, pairs ...string) {
	for i := 0; i < len(pairs); i += 2 {
		if pairs[i+1] == "" {
			continue
		}
		e.w.WriteString(indent + "<" + pairs[i] + ">")
		_ = xml.EscapeText(e.w, []byte(strings.ToValidUTF8(pairs[i+1], "\uFFFD")))
		e.w.WriteString("</" + pairs[i] + ">\n")
	}
}
