package parse

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

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
	// stdlibOnly turns the fast paths off (encoding/xml or encoding/json
	// only): tests compare both ways.
	stdlibOnly bool
	// fallbacks counts chunks the fast path left to encoding/xml, or a
	// batch's users left to encoding/json.
	fallbacks atomic.Int64
	// batch is set when the input is a JSON push batch (NewBatchDecoder).
	batch *batchScanner
}

// recordScanner cuts the input into its top-level records.
type recordScanner interface {
	// next returns the next record's bytes, valid until the following
	// call, or io.EOF after the input ended cleanly.
	next() ([]byte, Location, error)
	// handOver keeps the last record's bytes valid for good (see window).
	handOver()
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
	text, err := sniff(d.in)
	if err != nil {
		return err
	}
	var scan recordScanner
	if d.batch != nil {
		d.batch.window = newWindow(text, d.opts.Limits.MaxRecordBytes)
		scan = d.batch
	} else {
		in, _, err := utf8Reader(text)
		if err != nil {
			return err
		}
		d.split = newSplitter(in, d.opts.Limits)
		scan = d.split
	}
	// The XML root is checked at the first record, or at the end of a file
	// with a root and no records; a batch has none.
	checkRoot := func(atEOF bool) error {
		if d.split == nil || (atEOF && d.split.root == "") {
			return nil
		}
		return d.checkRoot()
	}

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
	// Raw bytes in flight are bounded, not only chunks: four chunks of the
	// largest records allowed would be four times 16 MiB, each with its
	// decoded records. A chunk's bytes are given back once delivered.
	budget := newByteBudget(max(d.opts.Limits.MaxRecordBytes, (d.opts.Workers+2)*d.opts.ChunkBytes))
	submit := func(c *chunk) {
		taken := budget.take(len(c.data))
		s.Go(func() stream.Callback {
			if failed.Load() {
				return func() { budget.give(taken) }
			}
			var out T
			recs, err := d.decodeChunk(c)
			c.data = nil // the records hold copies: free the bytes before work
			if err == nil {
				out = work(recs)
			}
			return func() {
				defer budget.give(taken)
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
		raw, loc, err := scan.next()
		if errors.Is(err, io.EOF) {
			if len(cur.recs) > 0 {
				submit(cur)
			}
			if err := checkRoot(true); err != nil {
				submitErr(err)
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
			if err := checkRoot(false); err != nil {
				submitErr(err)
				break
			}
			rootChecked = true
		}
		if len(raw) >= d.opts.ChunkBytes {
			// A large record is a chunk of its own, in the splitter's buffer.
			if len(cur.recs) > 0 {
				submit(cur)
				cur = &chunk{}
			}
			scan.handOver()
			submit(&chunk{data: raw, recs: []chunkRecord{{relLine: 1, loc: loc}}})
			continue
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

// decodeChunk decodes the records of one chunk: on the fast path if the
// chunk is plain XML, else (or to report an error) with encoding/xml.
func (d *Decoder) decodeChunk(c *chunk) ([]Record, error) {
	if d.batch != nil {
		return d.decodeBatchChunk(c)
	}
	// No copy: a chunk's bytes never change once submitted, and the
	// records copy the text they keep (textOf).
	s := unsafe.String(unsafe.SliceData(c.data), len(c.data))
	if !d.stdlibOnly {
		if recs, err := d.walkChunk(c, newPlainTokens(s, d.opts.Limits.MaxDepth)); err == nil {
			return recs, nil
		}
		d.fallbacks.Add(1)
	}
	x := &xmlTokens{dec: xml.NewDecoder(strings.NewReader(s)), maxDepth: d.opts.Limits.MaxDepth}
	x.dec.Strict = true
	return d.walkChunk(c, x)
}

func (d *Decoder) walkChunk(c *chunk, src tokenSource) ([]Record, error) {
	x := &xmlReader{src: src, lim: d.opts.Limits, chunk: c}
	if xt, ok := src.(*xmlTokens); ok {
		xt.errorf = x.errorf
	}
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
			if start != "User" {
				return nil, x.errorf("unexpected element <%s> in <Users>: want <User>", start)
			}
			rec.User, err = x.user(loc)
		case "Accounts":
			if start != "Account" {
				return nil, x.errorf("unexpected element <%s> in <Accounts>: want <Account>", start)
			}
			rec.Account, err = x.account(loc)
		case "Transactions":
			if start != "Transaction" {
				return nil, x.errorf("unexpected element <%s> in <Transactions>: want <Transaction>", start)
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

// xmlReader walks the tokens of one chunk into records, checking the text limit.
type xmlReader struct {
	src   tokenSource
	lim   Limits
	chunk *chunk
	rec   int
}

// line maps the source's chunk-relative line to the file's.
func (x *xmlReader) line() (line, col int) {
	l, c, _ := x.src.pos()
	r := x.chunk.recs[x.rec]
	return r.loc.Line + l - r.relLine, c
}

func (x *xmlReader) errorf(format string, args ...any) error {
	line, col := x.line()
	return &SyntaxError{Line: line, Column: col, Msg: fmt.Sprintf(format, args...)}
}

// startOfRecord returns the name of the record's element.
func (x *xmlReader) startOfRecord() (string, error) {
	for {
		tok, err := x.src.next()
		if err != nil {
			return "", err
		}
		if tok.kind == tokStart {
			return tok.name, nil
		}
	}
}

// children calls fn with the name of each child element of the element just
// opened, until its end tag; fn consumes the child.
func (x *xmlReader) children(fn func(name string) error) error {
	for {
		tok, err := x.src.next()
		if err != nil {
			return err
		}
		switch tok.kind {
		case tokStart:
			if err := fn(tok.name); err != nil {
				return err
			}
		case tokEnd:
			return nil
		}
	}
}

// skip consumes the rest of an element the format does not define.
func (x *xmlReader) skip() error {
	return x.children(func(string) error { return x.skip() })
}

// textOf reads the text content of a field element.
func (x *xmlReader) textOf(field string) (string, error) {
	var out string
	pieces := 0
	for {
		tok, err := x.src.next()
		if err != nil {
			return "", err
		}
		switch tok.kind {
		case tokText:
			// One piece is the usual case. It is copied out of the chunk so
			// that rows kept until their batch is loaded do not pin whole
			// chunks in memory.
			if pieces++; pieces == 1 {
				out = strings.Clone(tok.text)
			} else {
				out += tok.text
			}
			if len(out) > x.lim.MaxTextBytes {
				return "", x.errorf("text of <%s> is longer than the limit of %d bytes", field, x.lim.MaxTextBytes)
			}
		case tokStart:
			return "", x.errorf("unexpected element <%s> inside field <%s>", tok.name, field)
		case tokEnd:
			return out, nil
		}
	}
}

// setField stores the text of a field element in dst.
func (x *xmlReader) setField(dst *string, field string) error {
	s, err := x.textOf(field)
	*dst = s
	return err
}

func (x *xmlReader) here() Location {
	line, _ := x.line()
	_, _, off := x.src.pos()
	r := x.chunk.recs[x.rec]
	return Location{Line: line, Offset: r.loc.Offset + off - int64(r.start)}
}

func (x *xmlReader) user(loc Location) (*User, error) {
	u := &User{Location: loc}
	var onChild func(name string) error
	onChild = func(name string) error {
		switch name {
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
		if dst := userField(u, name); dst != nil {
			return x.setField(dst, name)
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
	var onChild func(name string) error
	onChild = func(name string) error {
		switch name {
		case "Details":
			return x.children(onChild)
		case "AccountBalances":
			a.HasBalances = true
			return x.children(func(name string) error {
				if name != "AccountBalance" {
					return x.skip()
				}
				b := Balance{Line: x.here().Line}
				err := x.children(func(f string) error {
					switch f {
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
			return x.children(func(name string) error {
				if name != "Property" {
					return x.skip()
				}
				p := Property{Line: x.here().Line}
				err := x.children(func(f string) error {
					switch f {
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
		if dst := accountField(a, name); dst != nil {
			return x.setField(dst, name)
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
	return t, x.children(func(name string) error {
		if dst := transactionField(t, name); dst != nil {
			return x.setField(dst, name)
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

// byteBudget bounds the bytes of chunks in flight. A chunk larger than the
// whole budget takes all of it.
type byteBudget struct {
	mu    sync.Mutex
	freed *sync.Cond
	left  int
	total int
}

func newByteBudget(total int) *byteBudget {
	b := &byteBudget{left: total, total: total}
	b.freed = sync.NewCond(&b.mu)
	return b
}

// take waits until n bytes (at most the whole budget) are free, and
// returns what it took.
func (b *byteBudget) take(n int) int {
	n = min(n, b.total)
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.left < n {
		b.freed.Wait()
	}
	b.left -= n
	return n
}

func (b *byteBudget) give(n int) {
	b.mu.Lock()
	b.left += n
	b.mu.Unlock()
	b.freed.Broadcast()
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
