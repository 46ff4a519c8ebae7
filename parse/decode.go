package parse

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/sourcegraph/conc/stream"
)

// Options tune a Decoder. Zero values take defaults.
type Options struct {
	// Type is what the file was declared as, if anything: a root element
	// that cannot hold it (a <Transactions> file declared as users) fails the file.
	Type       FileType
	Workers    int // goroutines decoding chunks; default GOMAXPROCS
	ChunkBytes int // whole records per chunk handed to a worker; default 256 KiB
	Limits     Limits
}

// Decoder reads records from a flat file. Like encoding/csv's Reader it never
// holds more than a bounded window of the input: at most Workers+2 chunks are
// in flight at once.
type Decoder struct {
	in    io.Reader
	opts  Options
	split *splitter
}

// NewDecoder returns a Decoder reading from r.
func NewDecoder(r io.Reader, opts Options) *Decoder {
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	if opts.ChunkBytes <= 0 {
		opts.ChunkBytes = 256 << 10
	}
	if opts.Limits == (Limits{}) {
		opts.Limits = DefaultLimits
	}
	return &Decoder{in: r, opts: opts}
}

// Root reports the file type the root element implies (Users -> Combined,
// Accounts, Transactions), once the root has been read.
func (d *Decoder) Root() (FileType, bool) {
	if d.split == nil {
		return "", false
	}
	switch d.split.root {
	case "Users":
		return Combined, true
	case "Accounts":
		return Accounts, true
	case "Transactions":
		return Transactions, true
	}
	return "", false
}

type chunk struct {
	data []byte
	recs []chunkRecord
}

type chunkRecord struct {
	start   int // offset in data
	relLine int // line of start within data, 1-based
	loc     Location
}

// Each decodes the file, runs work on every chunk of records on the worker
// pool (so per-record work such as validation is parallel too), then calls
// deliver with each result in file order. The first error stops everything.
func Each[T any](ctx context.Context, d *Decoder, work func([]Record) T, deliver func(T) error) error {
	in, _, err := utf8Reader(d.in)
	if err != nil {
		return err
	}
	d.split = newSplitter(in, d.opts.Limits)

	s := stream.New().WithMaxGoroutines(d.opts.Workers)
	var (
		mu       sync.Mutex
		firstErr error
		failed   atomic.Bool // lets the reader stop early without taking mu
	)
	setErr := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if firstErr == nil {
			firstErr = err
			failed.Store(true)
		}
	}
	// Errors found while splitting go through the stream too, so that the
	// error reported is always the first one in file order.
	submitErr := func(err error) {
		s.Go(func() stream.Callback { return func() { setErr(err) } })
	}
	submit := func(c *chunk) {
		s.Go(func() stream.Callback {
			if failed.Load() {
				return func() {}
			}
			var out T
			recs, err := d.decodeChunk(c)
			if err == nil {
				out = work(recs)
			}
			return func() {
				// Callbacks run one at a time, in submission order.
				if failed.Load() {
					return
				}
				if err == nil {
					err = deliver(out)
				}
				if err != nil {
					setErr(err)
				}
			}
		})
	}

	cur := &chunk{}
	rootChecked := false
	for !failed.Load() {
		if err := ctx.Err(); err != nil {
			submitErr(err)
			break
		}
		raw, loc, err := d.split.next()
		if errors.Is(err, io.EOF) {
			if len(cur.recs) > 0 {
				submit(cur)
			}
			if d.split.root != "" {
				if err := d.checkRoot(); err != nil {
					submitErr(err)
				}
			}
			break
		}
		if err != nil {
			if len(cur.recs) > 0 {
				submit(cur)
			}
			submitErr(err)
			break
		}
		if !rootChecked {
			if err := d.checkRoot(); err != nil {
				submitErr(err)
				break
			}
			rootChecked = true
		}
		relLine := 1
		if len(cur.recs) > 0 {
			last := cur.recs[len(cur.recs)-1]
			relLine = last.relLine + bytes.Count(cur.data[last.start:], []byte{'\n'})
		}
		cur.recs = append(cur.recs, chunkRecord{start: len(cur.data), relLine: relLine, loc: loc})
		cur.data = append(cur.data, raw...)
		if len(cur.data) >= d.opts.ChunkBytes {
			submit(cur)
			cur = &chunk{}
		}
	}
	s.Wait()
	return firstErr
}

// checkRoot refuses a root element the format does not define, or one that
// cannot hold the declared type.
func (d *Decoder) checkRoot() error {
	root, ok := d.Root()
	if !ok {
		return &SyntaxError{Line: d.split.rootLine, Msg: fmt.Sprintf("unknown root element <%s>: want <Users>, <Accounts> or <Transactions>", d.split.root)}
	}
	if !root.Holds(d.opts.Type) {
		return &SyntaxError{Line: d.split.rootLine, Msg: fmt.Sprintf("the file is declared as %s but its root element <%s> holds no %s records", d.opts.Type, d.split.root, d.opts.Type)}
	}
	return nil
}

// decodeChunk decodes the records of one chunk with encoding/xml.
func (d *Decoder) decodeChunk(c *chunk) ([]Record, error) {
	x := &xmlReader{
		dec:   xml.NewDecoder(bytes.NewReader(c.data)),
		lim:   d.opts.Limits,
		chunk: c,
	}
	x.dec.Strict = true
	recs := make([]Record, 0, len(c.recs))
	for i := range c.recs {
		x.rec = i
		start, err := x.startOfRecord()
		if err != nil {
			return nil, err
		}
		loc := c.recs[i].loc
		var rec Record
		switch d.split.root {
		case "Users":
			if start.Name.Local != "User" {
				return nil, x.errorf("unexpected element <%s> in <Users>: want <User>", start.Name.Local)
			}
			rec.User, err = x.user(loc)
		case "Accounts":
			if start.Name.Local != "Account" {
				return nil, x.errorf("unexpected element <%s> in <Accounts>: want <Account>", start.Name.Local)
			}
			rec.Account, err = x.account(loc)
		case "Transactions":
			if start.Name.Local != "Transaction" {
				return nil, x.errorf("unexpected element <%s> in <Transactions>: want <Transaction>", start.Name.Local)
			}
			rec.Transaction, err = x.transaction(loc)
		}
		if err != nil {
			return nil, err
		}
		recs = append(recs, rec)
	}
	return recs, nil
}

// xmlReader walks the tokens of one chunk, checking what RawToken does not:
// that end tags match start tags, and the depth and text limits.
type xmlReader struct {
	dec   *xml.Decoder
	lim   Limits
	chunk *chunk
	rec   int
	stack []xml.Name
	text  []byte
}

// line maps the decoder's chunk-relative line to the file's.
func (x *xmlReader) line() (line, col int) {
	l, c := x.dec.InputPos()
	r := x.chunk.recs[x.rec]
	return r.loc.Line + l - r.relLine, c
}

func (x *xmlReader) errorf(format string, args ...any) error {
	line, col := x.line()
	return &SyntaxError{Line: line, Column: col, Msg: fmt.Sprintf(format, args...)}
}

func (x *xmlReader) token() (xml.Token, error) {
	tok, err := x.dec.RawToken()
	if err != nil {
		var se *xml.SyntaxError
		if errors.As(err, &se) {
			return nil, x.errorf("%s", se.Msg)
		}
		if errors.Is(err, io.EOF) {
			return nil, x.errorf("unexpected end of record")
		}
		return nil, x.errorf("%v", err)
	}
	switch t := tok.(type) {
	case xml.StartElement:
		x.stack = append(x.stack, t.Name)
		if len(x.stack)+1 > x.lim.MaxDepth {
			return nil, x.errorf("elements nested deeper than %d levels", x.lim.MaxDepth)
		}
	case xml.EndElement:
		top := x.stack[len(x.stack)-1]
		if top != t.Name {
			return nil, x.errorf("element <%s> closed by </%s>", qname(top), qname(t.Name))
		}
		x.stack = x.stack[:len(x.stack)-1]
	case xml.Directive:
		return nil, x.errorf("DOCTYPE and entity declarations are not allowed")
	}
	return tok, nil
}

func qname(n xml.Name) string {
	if n.Space != "" {
		return n.Space + ":" + n.Local
	}
	return n.Local
}

func (x *xmlReader) startOfRecord() (xml.StartElement, error) {
	for {
		tok, err := x.token()
		if err != nil {
			return xml.StartElement{}, err
		}
		if se, ok := tok.(xml.StartElement); ok {
			return se, nil
		}
	}
}

// children calls fn for each child element of the element just opened, until its end tag.
func (x *xmlReader) children(fn func(xml.StartElement) error) error {
	depth := len(x.stack)
	for {
		tok, err := x.token()
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if err := fn(t); err != nil {
				return err
			}
		case xml.EndElement:
			if len(x.stack) < depth {
				return nil
			}
		}
	}
}

// skip consumes the rest of an element the format does not define.
func (x *xmlReader) skip() error {
	return x.children(func(xml.StartElement) error { return x.skip() })
}

// textOf reads the text content of a field element.
func (x *xmlReader) textOf(field xml.StartElement) (string, error) {
	x.text = x.text[:0]
	for {
		tok, err := x.token()
		if err != nil {
			return "", err
		}
		switch t := tok.(type) {
		case xml.CharData:
			x.text = append(x.text, t...)
			if len(x.text) > x.lim.MaxTextBytes {
				return "", x.errorf("text of <%s> is longer than the limit of %d bytes", field.Name.Local, x.lim.MaxTextBytes)
			}
		case xml.StartElement:
			return "", x.errorf("unexpected element <%s> inside field <%s>", t.Name.Local, field.Name.Local)
		case xml.EndElement:
			return string(x.text), nil
		}
	}
}

// setField stores the text of a field element in dst.
func (x *xmlReader) setField(dst *string, el xml.StartElement) error {
	s, err := x.textOf(el)
	*dst = s
	return err
}

func (x *xmlReader) here() Location {
	line, _ := x.line()
	r := x.chunk.recs[x.rec]
	return Location{Line: line, Offset: r.loc.Offset + x.dec.InputOffset() - int64(r.start)}
}

func (x *xmlReader) user(loc Location) (*User, error) {
	u := &User{Location: loc}
	var onChild func(el xml.StartElement) error
	onChild = func(el xml.StartElement) error {
		switch el.Name.Local {
		case "Details":
			return x.children(onChild)
		case "Account":
			a, err := x.account(x.here())
			if err != nil {
				return err
			}
			u.Accounts = append(u.Accounts, *a)
			return nil
		}
		if dst := userField(u, el.Name.Local); dst != nil {
			return x.setField(dst, el)
		}
		return x.skip()
	}
	return u, x.children(onChild)
}

func userField(u *User, name string) *string {
	switch name {
	case "Action":
		return &u.Action
	case "PartnerCustomerId":
		return &u.PartnerCustomerID
	case "FirstName":
		return &u.FirstName
	case "LastName":
		return &u.LastName
	case "Email":
		return &u.Email
	case "ZipCode":
		return &u.ZipCode
	case "UserExperience":
		return &u.UserExperience
	}
	return nil
}

func (x *xmlReader) account(loc Location) (*Account, error) {
	a := &Account{Location: loc}
	var onChild func(el xml.StartElement) error
	onChild = func(el xml.StartElement) error {
		switch el.Name.Local {
		case "Details":
			return x.children(onChild)
		case "AccountBalances":
			a.HasBalances = true
			return x.children(func(el xml.StartElement) error {
				if el.Name.Local != "AccountBalance" {
					return x.skip()
				}
				b := Balance{Line: x.here().Line}
				err := x.children(func(f xml.StartElement) error {
					switch f.Name.Local {
					case "BalanceType":
						return x.setField(&b.BalanceType, f)
					case "BalanceAmount":
						return x.setField(&b.BalanceAmount, f)
					case "CurrencyCode":
						return x.setField(&b.CurrencyCode, f)
					}
					return x.skip()
				})
				a.Balances = append(a.Balances, b)
				return err
			})
		case "Properties":
			return x.children(func(el xml.StartElement) error {
				if el.Name.Local != "Property" {
					return x.skip()
				}
				p := Property{Line: x.here().Line}
				err := x.children(func(f xml.StartElement) error {
					switch f.Name.Local {
					case "PropertyType":
						return x.setField(&p.Type, f)
					case "PropertyValue":
						return x.setField(&p.Value, f)
					}
					return x.skip()
				})
				a.Properties = append(a.Properties, p)
				return err
			})
		case "Transaction":
			t, err := x.transaction(x.here())
			if err != nil {
				return err
			}
			a.Transactions = append(a.Transactions, *t)
			return nil
		}
		if dst := accountField(a, el.Name.Local); dst != nil {
			return x.setField(dst, el)
		}
		return x.skip()
	}
	return a, x.children(onChild)
}

func accountField(a *Account, name string) *string {
	switch name {
	case "Action":
		return &a.Action
	case "PartnerCustomerId":
		return &a.PartnerCustomerID
	case "AccountId":
		return &a.AccountID
	case "AccountNumber":
		return &a.AccountNumber
	case "AccountFiName":
		return &a.AccountFiName
	case "AccountNickname":
		return &a.AccountNickname
	case "AccountType":
		return &a.AccountType
	case "AccountExperience":
		return &a.AccountExperience
	}
	return nil
}

func (x *xmlReader) transaction(loc Location) (*Transaction, error) {
	t := &Transaction{Location: loc}
	return t, x.children(func(el xml.StartElement) error {
		if dst := transactionField(t, el.Name.Local); dst != nil {
			return x.setField(dst, el)
		}
		return x.skip()
	})
}

func transactionField(t *Transaction, name string) *string {
	switch name {
	case "Action":
		return &t.Action
	case "TransactionId":
		return &t.TransactionID
	case "AccountId":
		return &t.AccountID
	case "TransactionType":
		return &t.TransactionType
	case "PostedDate":
		return &t.PostedDate
	case "OriginationDate":
		return &t.OriginationDate
	case "Amount":
		return &t.Amount
	case "Memo":
		return &t.Memo
	case "CheckNumber":
		return &t.CheckNumber
	}
	return nil
}

// Collect decodes a whole file into memory. For tests and small files only.
func Collect(ctx context.Context, r io.Reader, opts Options) ([]Record, FileType, error) {
	d := NewDecoder(r, opts)
	var all []Record
	err := Each(ctx, d, func(recs []Record) []Record { return recs }, func(recs []Record) error {
		all = append(all, recs...)
		return nil
	})
	ft, _ := d.Root()
	return all, ft, err
}
