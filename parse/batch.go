package parse

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
)

// A push batch (the spec's "Push Data Source": PUT /api/v2/batches) is one
// JSON object, {"callback": "https://...", "users": [user, ...]}, each user
// nesting its accounts and each account its transactions. It decodes like a
// combined flat file: the scanner cuts the users array into its elements
// without decoding them, and the workers decode each element into a User
// record (walkUser, or encoding/json for what it leaves). Memory follows
// the largest user (up to Limits.MaxRecordBytes of JSON), never the batch.

// ErrEmptyBatch is the error of a body with nothing in it, or a batch with
// no users.
var ErrEmptyBatch = errors.New("no batch content: the body holds no users")

// ShapeError is a body that is JSON but not a batch: the top level is not
// an object, users is not an array of objects, a field has the wrong JSON
// type. Malformed JSON is a *SyntaxError instead; both name the byte offset.
type ShapeError struct {
	Offset int64
	Line   int
	Path   string // users[2].accounts[0]; empty at the top level
	Msg    string
}

func (e *ShapeError) Error() string {
	where := fmt.Sprintf("line %d (byte %d)", e.Line, e.Offset)
	if e.Path != "" {
		where = e.Path + " at " + where
	}
	return where + ": " + e.Msg
}

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// ErrRecordTooLarge is what a *LimitError matches: one user of a batch is
// more JSON than Limits.MaxRecordBytes.
var ErrRecordTooLarge = errors.New("a user is larger than the limit")

// LimitError is a batch's user, or another value, over the record limit.
// The batch is refused whole: its memory bound is the largest user.
type LimitError struct {
	Offset int64 // where the value starts
	Line   int
	Path   string // users[3]; empty for a value outside the users
	Limit  int    // bytes
}

func (e *LimitError) Error() string {
	limit := fmt.Sprintf("%d bytes", e.Limit)
	if e.Limit%(1<<20) == 0 {
		limit = fmt.Sprintf("%d MiB (%d bytes)", e.Limit>>20, e.Limit)
	}
	if e.Path == "" {
		return fmt.Sprintf("a value at line %d (byte %d) is larger than the limit of %s", e.Line, e.Offset, limit)
	}
	return fmt.Sprintf("%s at line %d (byte %d) is larger than the limit of %s a user may take: send a user's history in more than one batch",
		e.Path, e.Line, e.Offset, limit)
}

func (e *LimitError) Unwrap() error { return ErrRecordTooLarge }

// NewBatchDecoder returns a Decoder of a JSON push batch. Its records are
// users with their accounts and transactions, as in a combined file; the
// accounts' transactions are Signed. Callback gives the batch's callback
// URL once decoded.
func NewBatchDecoder(r io.Reader, opts Options) *Decoder {
	opts.Type = Combined
	d := NewDecoder(r, opts)
	d.batch = &batchScanner{maxDepth: d.opts.Limits.MaxDepth}
	return d
}

// Callback is the batch's callback URL ("" when it has none), once Each
// has read past it.
func (d *Decoder) Callback() string {
	if d.batch == nil {
		return ""
	}
	d.batch.mu.Lock()
	defer d.batch.mu.Unlock()
	return d.batch.callback
}

// batchScanner finds the elements of the batch's users array. It checks
// the top level itself (an object of keys and values) and, inside values,
// only the nesting of brackets and strings: encoding/json checks each
// element whole on a worker, and its errors are moved to the batch's offsets.
type batchScanner struct {
	window
	maxDepth int

	state     batchState
	users     int  // elements of users seen
	sawUsers  bool // a users key was read
	needComma bool // inside users: an element was read, a ',' or ']' is due
	objLine   int
	bomSeen   bool       // a leading byte order mark was looked at
	mu        sync.Mutex // callback is read by the caller while Each runs
	callback  string
}

type batchState int

const (
	batchStart batchState = iota
	batchKeys             // inside the top-level object, before a key
	batchUsers            // inside the users array
	batchEnd              // after the top-level object
)

func (s *batchScanner) shapeError(p int, path, format string, args ...any) error {
	return &ShapeError{Offset: s.base + int64(p), Line: s.lineAt(p), Path: path, Msg: fmt.Sprintf(format, args...)}
}

// skipSpace moves pos past white space, reading more as needed; it reports
// false at the end of the input.
func (s *batchScanner) skipSpace() (bool, error) {
	for {
		for s.pos < s.end && isSpace(s.buf[s.pos]) {
			s.pos++
		}
		if s.pos < s.end {
			return true, nil
		}
		more, err := s.fill(s.pos)
		if err != nil || !more {
			return false, err
		}
	}
}

func (s *batchScanner) truncated() error {
	return s.errorAt(s.pos, "unexpected end of the body inside the batch (truncated?)")
}

// jsonKind names what a JSON value starting with c is, for messages.
func jsonKind(c byte) string {
	switch c {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	if c == '-' || (c >= '0' && c <= '9') {
		return "a number"
	}
	return ""
}

func (s *batchScanner) next() ([]byte, Location, error) {
	for {
		ok, err := s.skipSpace()
		if err != nil {
			return nil, Location{}, err
		}
		if !ok {
			switch s.state {
			case batchStart:
				return nil, Location{}, ErrEmptyBatch
			case batchEnd:
				if s.users == 0 {
					return nil, Location{}, ErrEmptyBatch
				}
				return nil, Location{}, io.EOF
			}
			return nil, Location{}, s.truncated()
		}
		c := s.buf[s.pos]
		switch s.state {
		case batchStart:
			if c == 0xEF && s.base+int64(s.pos) == 0 && !s.bomSeen {
				// A UTF-8 byte order mark: RFC 8259 lets a parser ignore it,
				// and Windows tools write one.
				s.bomSeen = true
				for s.end-s.pos < len(utf8BOM) {
					if more, err := s.fill(s.pos); err != nil || !more {
						break
					}
				}
				if bytes.HasPrefix(s.buf[s.pos:s.end], utf8BOM) {
					s.pos += len(utf8BOM)
					continue
				}
			}
			if c != '{' {
				if kind := jsonKind(c); kind != "" {
					return nil, Location{}, s.shapeError(s.pos, "", "a batch is a JSON object with a users array; the body is %s", kind)
				}
				return nil, Location{}, s.errorAt(s.pos, "the body is not JSON: it starts with %q", s.buf[s.pos:min(s.end, s.pos+20)])
			}
			s.objLine = s.lineAt(s.pos)
			s.pos++
			s.state = batchKeys
			if err := s.afterValue(true); err != nil {
				return nil, Location{}, err
			}
		case batchKeys:
			if err := s.keyValue(); err != nil {
				return nil, Location{}, err
			}
		case batchUsers:
			if c == ']' {
				s.pos++
				s.state = batchKeys
				if err := s.afterValue(false); err != nil {
					return nil, Location{}, err
				}
				continue
			}
			if s.needComma {
				if c != ',' {
					return nil, Location{}, s.errorAt(s.pos, "want ',' or ']' after users[%d], found %q", s.users-1, c)
				}
				s.pos++
				s.needComma = false
				continue
			}
			path := "users[" + strconv.Itoa(s.users) + "]"
			if c != '{' {
				kind := jsonKind(c)
				if kind == "" {
					return nil, Location{}, s.errorAt(s.pos, "unexpected %q in users", c)
				}
				return nil, Location{}, s.shapeError(s.pos, path, "a user is a JSON object; this is %s", kind)
			}
			start, err := s.value()
			var limit *LimitError
			if errors.As(err, &limit) {
				limit.Path = path
			}
			if err != nil {
				return nil, Location{}, err
			}
			loc := Location{Line: s.lineAt(start), Offset: s.base + int64(start), Path: path}
			s.users++
			s.needComma = true
			return s.buf[start:s.pos], loc, nil
		case batchEnd:
			return nil, Location{}, s.errorAt(s.pos, "content after the batch's closing '}'")
		}
	}
}

// afterValue expects, after a top-level value (or the object's '{' when
// first), a ',' and a key, or the object's end.
func (s *batchScanner) afterValue(first bool) error {
	ok, err := s.skipSpace()
	if err != nil {
		return err
	}
	if !ok {
		return s.truncated()
	}
	switch c := s.buf[s.pos]; {
	case c == '}':
		s.pos++
		s.state = batchEnd
	case c == ',' && !first:
		s.pos++
	case c == '"' && first:
	default:
		return s.errorAt(s.pos, "want ',' or '}' in the batch object, found %q", c)
	}
	return nil
}

// keyValue reads one key of the top-level object and its value: users
// starts the array, callback is kept, other keys are skipped.
func (s *batchScanner) keyValue() error {
	if s.buf[s.pos] != '"' {
		return s.errorAt(s.pos, "want a key (a string) in the batch object, found %q", s.buf[s.pos])
	}
	start, err := s.value()
	if err != nil {
		return err
	}
	var key string
	if err := json.Unmarshal(s.buf[start:s.pos], &key); err != nil {
		return s.errorAt(start, "key: %v", err)
	}
	ok, err := s.skipSpace()
	if err != nil {
		return err
	}
	if !ok {
		return s.truncated()
	}
	if s.buf[s.pos] != ':' {
		return s.errorAt(s.pos, "want ':' after the key %q, found %q", key, s.buf[s.pos])
	}
	s.pos++
	if ok, err = s.skipSpace(); err != nil {
		return err
	} else if !ok {
		return s.truncated()
	}
	at := s.pos
	switch key {
	case "users":
		if c := s.buf[s.pos]; c != '[' {
			if c == 'n' {
				// "users": null is no content, as a missing key is.
				if _, err := s.value(); err != nil {
					return err
				}
				return s.afterValue(false)
			}
			return s.shapeError(at, "users", "users is an array of users; this is %s", jsonKind(c))
		}
		s.pos++
		s.sawUsers = true
		s.state = batchUsers
		s.needComma = false
		return nil
	case "callback":
		start, err := s.value()
		if err != nil {
			return err
		}
		var url *string
		if err := json.Unmarshal(s.buf[start:s.pos], &url); err != nil {
			return s.shapeError(at, "callback", "callback is a URL string; this is %s", jsonKind(s.buf[start]))
		}
		if url != nil {
			s.mu.Lock()
			s.callback = *url
			s.mu.Unlock()
		}
	default:
		start, err := s.value()
		if err != nil {
			return err
		}
		if !json.Valid(s.buf[start:s.pos]) {
			return s.errorAt(start, "the value of %q is not valid JSON", key)
		}
	}
	return s.afterValue(false)
}

// value scans the JSON value at pos, leaving pos after it, and returns
// where it starts (a position in buf, which may have moved). It runs on
// the reader's goroutine, ahead of every worker: the inner loop does as
// little as it can per byte.
func (s *batchScanner) value() (int, error) {
	start := s.pos
	scan := start
	var closers []byte
	inString, escaped := false, false
	for {
		if scan-start > s.maxRecord {
			return 0, &LimitError{Offset: s.base + int64(start), Line: s.lineAt(start), Limit: s.maxRecord}
		}
		if scan == s.end {
			delta := start
			more, err := s.fill(start)
			if err != nil {
				return 0, err
			}
			start, scan = start-delta, scan-delta
			if !more {
				s.pos = scan
				return 0, s.truncated()
			}
			continue
		}
		// Up to the end of the buffer or just past the limit, whichever is first.
		end := min(s.end, start+s.maxRecord+1)
		for scan < end {
			c := s.buf[scan]
			if inString {
				switch {
				case escaped:
					escaped = false
				case c == '\\':
					escaped = true
				case c == '"':
					inString = false
					if len(closers) == 0 {
						s.pos = scan + 1
						return start, nil
					}
				default:
					// The rest of a string's bytes cannot end it: skip to the next quote or backslash.
					scan += quoteOrBackslash(s.buf[scan:end])
					continue
				}
				scan++
				continue
			}
			switch c {
			case '"':
				inString = true
			case '{', '[':
				if len(closers) >= s.maxDepth {
					return 0, s.errorAt(scan, "values nested deeper than %d levels", s.maxDepth)
				}
				closers = append(closers, c+2) // '{'+2 is '}', '['+2 is ']'
			case '}', ']':
				if len(closers) == 0 {
					s.pos = scan
					return start, nil // the end of a scalar
				}
				if closers[len(closers)-1] != c {
					return 0, s.errorAt(scan, "%q closes %q", c, closers[len(closers)-1]-2)
				}
				closers = closers[:len(closers)-1]
				if len(closers) == 0 {
					s.pos = scan + 1
					return start, nil
				}
			case ',', ':', ' ', '\t', '\n', '\r':
				if len(closers) == 0 {
					s.pos = scan
					return start, nil // the end of a scalar
				}
			}
			scan++
		}
	}
}

// quoteOrBackslash is the number of bytes of b before its first '"' or
// '\\' (all of b when it has none). A loop: the strings are short, and
// bytes.IndexAny builds its set at every call.
func quoteOrBackslash(b []byte) int {
	for i, c := range b {
		if c == '"' || c == '\\' {
			return i
		}
	}
	return len(b)
}

// The JSON of one user, as the spec's property tables and the 000 draft
// spell it. Every value is read as a jsonText, so that a number sent for
// an id or an amount is taken as written, and a wrong type is the field's
// error, not the whole batch's.
type batchUser struct {
	PartnerCustomerID jsonText       `json:"partner_customer_id"`
	FirstName         jsonText       `json:"first_name"`
	LastName          jsonText       `json:"last_name"`
	Email             jsonText       `json:"email"`
	ZipCode           jsonText       `json:"zip_code"`
	Accounts          []batchAccount `json:"accounts"`
}

type batchAccount struct {
	ReferenceID     jsonText    `json:"reference_id"`
	Name            jsonText    `json:"name"`
	AccountFiName   jsonText    `json:"account_fi_name"`
	AccountNickname jsonText    `json:"account_nickname"`
	AccountType     jsonText    `json:"account_type"`
	Balances        *[]batchBal `json:"account_balances"`
	Transactions    []batchTxn  `json:"transactions"`
	AccountNumber   jsonText    `json:"account_number"`
}

type batchBal struct {
	BalanceType   jsonText `json:"balance_type"`
	BalanceAmount jsonText `json:"balance_amount"`
	CurrencyCode  jsonText `json:"currency_code"`
}

type batchTxn struct {
	ReferenceID     jsonText `json:"reference_id"`
	TransactionID   jsonText `json:"transaction_id"` // the draft's reference_id
	Balance         jsonText `json:"balance"`
	Amount          jsonText `json:"amount"` // the draft's: absolute, with transaction_type
	TransactionType jsonText `json:"transaction_type"`
	PostedAt        jsonText `json:"posted_at"`
	PostedDate      jsonText `json:"posted_date"` // the draft's posted_at
	OriginationDate jsonText `json:"origination_date"`
	Memo            jsonText `json:"memo"`
	Nickname        jsonText `json:"nickname"`
	CheckNumber     jsonText `json:"check_number"`
	Hide            jsonText `json:"hide"`
}

// jsonText is a scalar as written: a string's value, or a number's or a
// boolean's literal. An object or array is kept as a type error.
type jsonText struct {
	s   string
	bad string // what was sent instead of a scalar
	num bool   // s is a JSON number's literal
}

func (t *jsonText) UnmarshalJSON(b []byte) error {
	switch b[0] {
	case '"':
		if bytes.IndexByte(b, '\\') < 0 {
			t.s = string(b[1 : len(b)-1])
			return nil
		}
		return json.Unmarshal(b, &t.s)
	case 'n':
		return nil
	case '{':
		t.bad = "an object"
	case '[':
		t.bad = "an array"
	default:
		t.s, t.num = string(b), b[0] == '-' || '0' <= b[0] && b[0] <= '9'
	}
	return nil
}

// amountOf is an amount's text as the spec writes amounts, with two
// decimals. A JSON number cannot keep a trailing zero (a serializer writes
// 1520.50 as 1520.5, and 4.00 as 4), so a number with at most two decimals
// is read as the amount it is; anything else is left as sent, for the
// validator to refuse as it refuses a file's.
func (t jsonText) amountOf() string {
	if !t.num {
		return t.s
	}
	whole, frac, _ := strings.Cut(t.s, ".")
	if len(frac) > 2 || strings.ContainsAny(t.s, "eE") {
		return t.s
	}
	return whole + "." + frac + "00"[len(frac):]
}

// or is t, or when t was not sent, o: the 001 spelling wins over the draft's.
func (t jsonText) or(o jsonText) jsonText {
	if !t.sent() {
		return o
	}
	return t
}

// sent reports whether the field holds anything, right or wrong.
func (t jsonText) sent() bool { return t.s != "" || t.bad != "" }

// decodeBatchChunk decodes a chunk of users arrays' elements, each on the
// fast path (walkUser) when it can, else with encoding/json.
func (d *Decoder) decodeBatchChunk(c *chunk) ([]Record, error) {
	recs := make([]Record, 0, len(c.recs))
	for i, r := range c.recs {
		end := len(c.data)
		if i+1 < len(c.recs) {
			end = c.recs[i+1].start
		}
		var u batchUser
		if d.stdlibOnly || !walkUser(c.data[r.start:end], &u) {
			if !d.stdlibOnly {
				d.fallbacks.Add(1)
			}
			u = batchUser{}
			if err := json.Unmarshal(c.data[r.start:end], &u); err != nil {
				return nil, batchDecodeError(err, r.loc, c.data[r.start:end])
			}
		}
		user, err := u.record(r.loc)
		if err != nil {
			return nil, err
		}
		recs = append(recs, Record{User: user})
	}
	return recs, nil
}

// batchDecodeError places encoding/json's error in the batch.
func batchDecodeError(err error, loc Location, data []byte) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		// encoding/json's offset is past the offending byte.
		at := max(syn.Offset-1, 0)
		line := loc.Line + bytes.Count(data[:min(int(at), len(data))], []byte{'\n'})
		return &SyntaxError{Line: line, Msg: fmt.Sprintf("%s (byte %d): %v", loc.Path, loc.Offset+at, syn)}
	case errors.As(err, &typ):
		path := loc.Path
		if typ.Field != "" {
			path += "." + typ.Field
		}
		line := loc.Line + bytes.Count(data[:min(int(typ.Offset), len(data))], []byte{'\n'})
		return &ShapeError{Offset: loc.Offset + typ.Offset, Line: line, Path: path,
			Msg: fmt.Sprintf("want %s, found a JSON %s", wantOf(typ.Type.Kind().String()), typ.Value)}
	}
	return &ShapeError{Offset: loc.Offset, Line: loc.Line, Path: loc.Path, Msg: err.Error()}
}

func wantOf(kind string) string {
	switch kind {
	case "slice":
		return "an array"
	case "struct", "ptr":
		return "an object"
	}
	return kind
}

// record maps a user's JSON to the record a combined file would give, in
// the spec's vocabulary; a field sent as an object or array is refused here,
// named by its path.
func (u *batchUser) record(loc Location) (*User, error) {
	out := &User{Location: loc}
	var bad error
	// The field's path is spelled out only for an error: a batch's
	// transactions are read by the million.
	text := func(t jsonText, path, field string) string {
		if t.bad != "" && bad == nil {
			bad = &ShapeError{Offset: loc.Offset, Line: loc.Line, Path: path + "." + field, Msg: "want a string, found " + t.bad}
		}
		return t.s
	}
	amount := func(t jsonText, path, field string) string {
		text(t, path, field)
		return t.amountOf()
	}
	out.PartnerCustomerID = text(u.PartnerCustomerID, loc.Path, "partner_customer_id")
	out.FirstName = text(u.FirstName, loc.Path, "first_name")
	out.LastName = text(u.LastName, loc.Path, "last_name")
	out.Email = text(u.Email, loc.Path, "email")
	out.ZipCode = text(u.ZipCode, loc.Path, "zip_code")
	out.Accounts = make([]Account, len(u.Accounts))
	for i := range u.Accounts {
		a, o := &u.Accounts[i], &out.Accounts[i]
		path := loc.Path + ".accounts[" + strconv.Itoa(i) + "]"
		o.Location = Location{Line: loc.Line, Offset: loc.Offset, Path: path}
		o.PartnerCustomerID = out.PartnerCustomerID
		o.AccountID = text(a.ReferenceID, path, "reference_id")
		o.AccountFiName = text(a.AccountFiName.or(a.Name), path, "account_fi_name")
		o.AccountNickname = text(a.AccountNickname.or(a.Name), path, "account_nickname")
		out.DraftSpelling = out.DraftSpelling || a.AccountFiName.sent() || a.AccountNickname.sent()
		o.AccountNumber = text(a.AccountNumber, path, "account_number")
		o.AccountType = text(a.AccountType, path, "account_type")
		if a.Balances != nil {
			o.HasBalances = true
			for j, b := range *a.Balances {
				bp := path + ".account_balances[" + strconv.Itoa(j) + "]"
				o.Balances = append(o.Balances, Balance{
					BalanceType:   text(b.BalanceType, bp, "balance_type"),
					BalanceAmount: amount(b.BalanceAmount, bp, "balance_amount"),
					CurrencyCode:  text(b.CurrencyCode, bp, "currency_code"),
				})
			}
		}
		o.Transactions = make([]Transaction, len(a.Transactions))
		for j := range a.Transactions {
			t, ot := &a.Transactions[j], &o.Transactions[j]
			tp := path + ".transactions[" + strconv.Itoa(j) + "]"
			ot.Location = Location{Line: loc.Line, Offset: loc.Offset, Path: tp}
			ot.AccountID = o.AccountID
			ot.TransactionID = text(t.ReferenceID.or(t.TransactionID), tp, "reference_id")
			ot.TransactionType = text(t.TransactionType, tp, "transaction_type")
			// balance is signed; the draft's amount is absolute, its sign in transaction_type.
			if t.Balance.s != "" || t.Balance.bad != "" || t.Amount.s == "" {
				ot.Amount, ot.Signed = amount(t.Balance, tp, "balance"), true
			} else {
				ot.Amount = amount(t.Amount, tp, "amount")
			}
			ot.PostedDate = text(t.PostedAt.or(t.PostedDate), tp, "posted_at")
			out.DraftSpelling = out.DraftSpelling || !ot.Signed || !t.ReferenceID.sent() && t.TransactionID.sent() ||
				!t.PostedAt.sent() && t.PostedDate.sent()
			ot.OriginationDate = text(t.OriginationDate, tp, "origination_date")
			ot.Memo = text(t.Memo, tp, "memo")
			ot.Nickname = text(t.Nickname, tp, "nickname")
			ot.CheckNumber = text(t.CheckNumber, tp, "check_number")
			ot.Hide = text(t.Hide, tp, "hide")
		}
	}
	if bad != nil {
		return nil, bad
	}
	return out, nil
}
