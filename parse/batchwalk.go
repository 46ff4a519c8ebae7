package parse

import (
	"encoding/json"
	"unicode/utf8"
)

// The fast path of a batch's users. encoding/json decodes a user through
// reflection after checking its syntax in a separate pass, about 50 MB/s a
// core, and a batch is decoded twice (the PUT checks it, the job applies
// it). walkUser reads the spec's shape directly, checking the syntax as it
// goes. It gives up (false) on whatever it does not treat exactly as
// encoding/json does: malformed JSON, a wrong type, a key that matches a
// field only case-insensitively, a field sent twice, an escaped key. The
// user is then decoded by encoding/json, which also words any error.
// FuzzWalkUser holds the two to the same result.

// walkMaxDepth bounds the nesting walkUser follows: deeper values are
// encoding/json's to judge (its limit is 10,000).
const walkMaxDepth = 512

type jsonWalker struct {
	b     []byte
	p     int
	depth int
}

// walkUser decodes one element of the users array into u; data is the
// whole element. On false, u is in an unspecified state.
func walkUser(data []byte, u *batchUser) bool {
	w := jsonWalker{b: data}
	w.space()
	if !w.user(u) {
		return false
	}
	w.space()
	return w.p == len(w.b)
}

func (w *jsonWalker) space() {
	for w.p < len(w.b) {
		switch w.b[w.p] {
		case ' ', '\t', '\n', '\r':
			w.p++
		default:
			return
		}
	}
}

func (w *jsonWalker) peek() byte {
	if w.p < len(w.b) {
		return w.b[w.p]
	}
	return 0
}

// open enters the object at p.
func (w *jsonWalker) open() bool {
	if w.peek() != '{' {
		return false
	}
	if w.depth++; w.depth > walkMaxDepth {
		return false
	}
	w.p++
	return true
}

// member moves to the open object's next member, past its key and ':',
// and returns the key; end reports that the object's '}' was passed
// instead. first is true before the object's first member.
func (w *jsonWalker) member(first, skipping bool) (key []byte, end, ok bool) {
	w.space()
	switch c := w.peek(); {
	case c == '}':
		w.p++
		w.depth--
		return nil, true, true
	case !first && c != ',':
		return nil, false, false
	case !first:
		w.p++
		w.space()
	}
	if key, ok = w.key(skipping); !ok {
		return nil, false, false
	}
	w.space()
	if w.peek() != ':' {
		return nil, false, false
	}
	w.p++
	w.space()
	return key, false, true
}

// key reads a member name: plain ASCII without escapes, the only kind the
// walker can match as encoding/json does, or when skipping (a value the
// batch does not use) any string, returned empty.
func (w *jsonWalker) key(skipping bool) ([]byte, bool) {
	if w.peek() != '"' {
		return nil, false
	}
	if skipping {
		return nil, w.skip()
	}
	start := w.p + 1
	for i := start; i < len(w.b); i++ {
		c := w.b[i]
		switch {
		case c == '"':
			w.p = i + 1
			return w.b[start:i], true
		case c < 0x20 || c == '\\' || c >= utf8.RuneSelf:
			return nil, false
		}
	}
	return nil, false
}

// other reports whether key, not one of known, is still one encoding/json
// would match to one of them (it folds case).
func other(key []byte, known []string) bool {
	for _, k := range known {
		if len(k) == len(key) && equalFoldASCII(k, key) {
			return false
		}
	}
	return true
}

func equalFoldASCII(a string, b []byte) bool {
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// once marks field i of an object as read; a second time gives up, since
// encoding/json's handling of repeated members depends on the type.
func once(seen *uint32, i int) bool {
	if *seen&(1<<i) != 0 {
		return false
	}
	*seen |= 1 << i
	return true
}

var (
	userFields    = []string{"partner_customer_id", "first_name", "last_name", "email", "zip_code", "accounts"}
	accountFields = []string{"reference_id", "name", "account_fi_name", "account_nickname", "account_type", "account_balances", "transactions", "account_number"}
	balanceFields = []string{"balance_type", "balance_amount", "currency_code"}
	txnFields     = []string{"reference_id", "transaction_id", "balance", "amount", "transaction_type", "posted_at", "posted_date",
		"origination_date", "memo", "nickname", "check_number", "hide"}
)

// field finds key among known: its index, or -1 for a member to skip, or
// false when encoding/json would match it case-insensitively.
func field(key []byte, known []string) (int, bool) {
	for i, k := range known {
		if k == string(key) {
			return i, true
		}
	}
	return -1, other(key, known)
}

// fields walks the object at p whose fields, by their names in known, are
// read by value(i); other members are skipped.
func (w *jsonWalker) fields(known []string, value func(i int) bool) bool {
	if !w.open() {
		return false
	}
	var seen uint32
	for first := true; ; first = false {
		key, end, ok := w.member(first, false)
		switch {
		case !ok:
			return false
		case end:
			return true
		}
		i, ok := field(key, known)
		switch {
		case !ok:
			return false
		case i < 0:
			ok = w.skip()
		default:
			ok = once(&seen, i) && value(i)
		}
		if !ok {
			return false
		}
	}
}

func (w *jsonWalker) user(u *batchUser) bool {
	texts := [...]*jsonText{&u.PartnerCustomerID, &u.FirstName, &u.LastName, &u.Email, &u.ZipCode}
	return w.fields(userFields, func(i int) bool {
		if i < len(texts) {
			return w.text(texts[i])
		}
		return array(w, &u.Accounts, (*jsonWalker).account)
	})
}

func (w *jsonWalker) account(a *batchAccount) bool {
	texts := [...]*jsonText{&a.ReferenceID, &a.Name, &a.AccountFiName, &a.AccountNickname, &a.AccountType, nil, nil, &a.AccountNumber}
	return w.fields(accountFields, func(i int) bool {
		switch accountFields[i] {
		case "transactions":
			return array(w, &a.Transactions, (*jsonWalker).txn)
		case "account_balances":
			// A pointer, so that [] is told from absent.
			if w.literal("null") {
				return true
			}
			a.Balances = new([]batchBal)
			return array(w, a.Balances, (*jsonWalker).balance)
		}
		return w.text(texts[i])
	})
}

func (w *jsonWalker) balance(b *batchBal) bool {
	texts := [...]*jsonText{&b.BalanceType, &b.BalanceAmount, &b.CurrencyCode}
	return w.fields(balanceFields, func(i int) bool { return w.text(texts[i]) })
}

func (w *jsonWalker) txn(t *batchTxn) bool {
	texts := [...]*jsonText{&t.ReferenceID, &t.TransactionID, &t.Balance, &t.Amount, &t.TransactionType, &t.PostedAt,
		&t.PostedDate, &t.OriginationDate, &t.Memo, &t.Nickname, &t.CheckNumber, &t.Hide}
	return w.fields(txnFields, func(i int) bool { return w.text(texts[i]) })
}

// array decodes a JSON array of objects into *s as encoding/json does: null
// leaves a nil slice, [] an empty one, a null element a zero one.
func array[T any](w *jsonWalker, s *[]T, elem func(*jsonWalker, *T) bool) bool {
	if w.literal("null") {
		return true
	}
	if w.peek() != '[' {
		return false
	}
	w.p++
	*s = make([]T, 0, 4)
	w.space()
	if w.peek() == ']' {
		w.p++
		return true
	}
	for {
		w.space()
		var zero T
		*s = append(*s, zero)
		if !w.literal("null") && !elem(w, &(*s)[len(*s)-1]) {
			return false
		}
		w.space()
		switch w.peek() {
		case ',':
			w.p++
		case ']':
			w.p++
			return true
		default:
			return false
		}
	}
}

// text reads a scalar into t as jsonText.UnmarshalJSON would; an object or
// an array is the field's type error, kept in t.bad.
func (w *jsonWalker) text(t *jsonText) bool {
	start := w.p
	switch c := w.peek(); {
	case c == '"':
		end, escaped, ok := w.stringEnd()
		if !ok {
			return false
		}
		w.p = end
		if !escaped {
			t.s = string(w.b[start+1 : end-1])
			return true
		}
		return json.Unmarshal(w.b[start:end], &t.s) == nil
	case c == '{':
		t.bad = "an object"
		return w.skip()
	case c == '[':
		t.bad = "an array"
		return w.skip()
	case c == 'n':
		return w.literal("null")
	case c == 't' || c == 'f':
		if !w.literal("true") && !w.literal("false") {
			return false
		}
	default:
		if !w.number() {
			return false
		}
		t.num = true
	}
	t.s = string(w.b[start:w.p])
	return true
}

// stringEnd finds the end of the string at p (just past its closing
// quote), checking its characters; escaped reports a backslash in it.
func (w *jsonWalker) stringEnd() (end int, escaped, ok bool) {
	for i := w.p + 1; i < len(w.b); i++ {
		switch c := w.b[i]; {
		case c == '"':
			return i + 1, escaped, true
		case c == '\\':
			escaped = true
			i++ // the escaped character; encoding/json checks the escape
		case c < 0x20:
			return 0, false, false
		}
	}
	return 0, false, false
}

func (w *jsonWalker) literal(lit string) bool {
	if len(w.b)-w.p >= len(lit) && string(w.b[w.p:w.p+len(lit)]) == lit {
		w.p += len(lit)
		return true
	}
	return false
}

// number reads a JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (w *jsonWalker) number() bool {
	if w.peek() == '-' {
		w.p++
	}
	switch c := w.peek(); {
	case c == '0':
		w.p++
	case '1' <= c && c <= '9':
		w.digits()
	default:
		return false
	}
	if w.peek() == '.' {
		w.p++
		if !w.digits() {
			return false
		}
	}
	if c := w.peek(); c == 'e' || c == 'E' {
		w.p++
		if c := w.peek(); c == '+' || c == '-' {
			w.p++
		}
		if !w.digits() {
			return false
		}
	}
	return true
}

func (w *jsonWalker) digits() bool {
	start := w.p
	for w.p < len(w.b) && '0' <= w.b[w.p] && w.b[w.p] <= '9' {
		w.p++
	}
	return w.p > start
}

// skip passes over a value the batch does not use, checking its syntax.
func (w *jsonWalker) skip() bool {
	switch c := w.peek(); {
	case c == '"':
		end, escaped, ok := w.stringEnd()
		if !ok {
			return false
		}
		if escaped && !json.Valid(w.b[w.p:end]) {
			return false
		}
		w.p = end
		return true
	case c == '{':
		if !w.open() {
			return false
		}
		for first := true; ; first = false {
			_, end, ok := w.member(first, true)
			if !ok || !end && !w.skip() {
				return false
			}
			if end {
				return true
			}
		}
	case c == '[':
		if w.depth++; w.depth > walkMaxDepth {
			return false
		}
		w.p++
		w.space()
		if w.peek() == ']' {
			w.p++
			w.depth--
			return true
		}
		for {
			w.space()
			if !w.skip() {
				return false
			}
			w.space()
			switch w.peek() {
			case ',':
				w.p++
			case ']':
				w.p++
				w.depth--
				return true
			default:
				return false
			}
		}
	case c == 'n':
		return w.literal("null")
	case c == 't':
		return w.literal("true")
	case c == 'f':
		return w.literal("false")
	}
	return w.number()
}
