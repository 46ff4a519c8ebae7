package parse

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"testing/iotest"
)

func collectBatch(t *testing.T, body string) ([]Record, *Decoder, error) {
	t.Helper()
	d := NewBatchDecoder(strings.NewReader(body), Options{Workers: 2, ChunkBytes: 64})
	var all []Record
	err := Each(context.Background(), d, func(r []Record) []Record { return r }, func(r []Record) error {
		all = append(all, r...)
		return nil
	})
	return all, d, err
}

func TestBatchSpecSample(t *testing.T) {
	body, err := os.ReadFile("testdata/batches/spec-sample.json")
	if err != nil {
		t.Fatal(err)
	}
	recs, d, err := collectBatch(t, string(body))
	if err != nil {
		t.Fatal(err)
	}
	if d.Callback() != "https://url.to.post.to/" {
		t.Errorf("callback %q", d.Callback())
	}
	if len(recs) != 1 || recs[0].User == nil {
		t.Fatalf("records %+v", recs)
	}
	u := recs[0].User
	if u.PartnerCustomerID != "1234" || u.Email != "flastname@geezeo.com" || u.Path != "users[0]" || u.Line != 4 {
		t.Errorf("user %+v", u)
	}
	a := u.Accounts[0]
	if a.AccountID != "13579" || a.AccountFiName != "Savings" || a.AccountType != "savings" || !a.HasBalances ||
		a.Balances[0].BalanceType != "current" || a.Balances[0].BalanceAmount != "2591.71" {
		t.Errorf("account %+v", a)
	}
	tx := a.Transactions[0]
	if tx.TransactionID != "4567" || tx.Amount != "-112.03" || !tx.Signed || tx.PostedDate != "2009-03-19T11:40:50-04:00" ||
		tx.AccountID != "13579" || tx.Path != "users[0].accounts[0].transactions[0]" {
		t.Errorf("transaction %+v", tx)
	}
}

func TestBatchDraftSample(t *testing.T) {
	body, err := os.ReadFile("testdata/batches/draft-sample.json")
	if err != nil {
		t.Fatal(err)
	}
	recs, _, err := collectBatch(t, string(body))
	if err != nil {
		t.Fatal(err)
	}
	a := recs[0].User.Accounts[0]
	if a.AccountFiName != "JOHN Q PUBLIC" || a.AccountNickname != "John’s Savings" || a.Balances[0].CurrencyCode != "USD" {
		t.Errorf("account %+v", a)
	}
	tx := a.Transactions[0]
	if tx.TransactionID != "12345" || tx.Amount != "112.03" || tx.Signed || tx.TransactionType != "Debit" ||
		tx.PostedDate != "2009-03-19T11:40:50-04:00" || tx.OriginationDate != "2009-03-19T15:31:36-04:00" || tx.AccountID != "999" {
		t.Errorf("transaction %+v", tx)
	}
}

func TestBatchErrors(t *testing.T) {
	for _, c := range []struct {
		name, body string
		empty      bool
		shape      string // a *ShapeError containing this
		syntax     string // a *SyntaxError containing this
	}{
		{name: "empty", body: "  \n", empty: true},
		{name: "empty object", body: "{}", empty: true},
		{name: "empty users", body: `{"users": []}`, empty: true},
		{name: "null users", body: `{"users": null, "callback": "https://x/"}`, empty: true},
		{name: "array", body: `[{"users": []}]`, shape: "the body is an array"},
		{name: "users not array", body: `{"users": {"a": 1}}`, shape: "users is an array of users; this is an object"},
		{name: "user not object", body: `{"users": [1]}`, shape: "users[0] at line 1 (byte 11): a user is a JSON object; this is a number"},
		{name: "accounts not array", body: `{"users": [{"accounts": "x"}]}`, shape: "users[0].accounts"},
		{name: "object for a field", body: `{"users": [{"partner_customer_id": {"id": 1}}]}`, shape: "users[0].partner_customer_id"},
		{name: "callback number", body: `{"callback": 5, "users": [{}]}`, shape: "callback is a URL string"},
		{name: "not json", body: `users=1`, syntax: `not JSON: it starts with "users=1"`},
		{name: "truncated", body: `{"users": [{"partner_customer_id": "1"`, syntax: "truncated"},
		{name: "bad inside user", body: "{\"users\": [\n{\"partner_customer_id\": 1 2}]}", syntax: "line 2: users[0] (byte 38)"},
		{name: "mismatched", body: `{"users": [{"accounts": [}]}`, syntax: `'}' closes '['`},
		{name: "trailing", body: `{"users": [{}]} x`, syntax: "content after"},
		{name: "missing comma", body: `{"users": [{} {}]}`, syntax: "want ',' or ']' after users[0]"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := collectBatch(t, c.body)
			var shape *ShapeError
			var syn *SyntaxError
			switch {
			case c.empty:
				if !errors.Is(err, ErrEmptyBatch) {
					t.Fatalf("got %v, want ErrEmptyBatch", err)
				}
			case c.shape != "":
				if !errors.As(err, &shape) || !strings.Contains(err.Error(), c.shape) {
					t.Fatalf("got %T %v, want a ShapeError with %q", err, err, c.shape)
				}
			default:
				if !errors.As(err, &syn) || !strings.Contains(err.Error(), c.syntax) {
					t.Fatalf("got %T %v, want a SyntaxError with %q", err, err, c.syntax)
				}
			}
		})
	}
}

func TestBatchManyUsersInOrder(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"users": [`)
	for i := range 500 {
		if i > 0 {
			b.WriteString(",\n")
		}
		b.WriteString(`{"partner_customer_id": "u` + strings.Repeat("x", i%7) + `", "first_name": "a\"b}", "accounts": []}`)
	}
	b.WriteString(`], "callback": "https://cb/"}`)
	recs, d, err := collectBatch(t, b.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 500 || recs[499].User.Path != "users[499]" || recs[499].User.Line != 500 || recs[3].User.FirstName != `a"b}` {
		t.Fatalf("%d records, last %+v", len(recs), recs[len(recs)-1].User)
	}
	if d.Callback() != "https://cb/" {
		t.Errorf("callback %q", d.Callback())
	}
}

// A leading UTF-8 byte order mark, which RFC 8259 lets a parser ignore, is
// skipped, even read a byte at a time; elsewhere it is not JSON.
func TestBatchByteOrderMark(t *testing.T) {
	body, err := os.ReadFile("testdata/batches/spec-sample.json")
	if err != nil {
		t.Fatal(err)
	}
	withBOM := append(bytes.Clone(utf8BOM), body...)
	d := NewBatchDecoder(iotest.OneByteReader(bytes.NewReader(withBOM)), Options{Workers: 1, ChunkBytes: 64})
	var recs []Record
	err = Each(context.Background(), d, func(r []Record) []Record { return r }, func(r []Record) error {
		recs = append(recs, r...)
		return nil
	})
	plain, _, _ := collectBatch(t, string(body))
	if err != nil || len(recs) != 1 || recs[0].User.PartnerCustomerID != "1234" || recs[0].User.Offset != plain[0].User.Offset+3 {
		t.Fatalf("with a byte order mark: %v, %d records %+v", err, len(recs), recs)
	}
	var syn *SyntaxError
	if _, _, err := collectBatch(t, " \xef\xbb\xbf{}"); !errors.As(err, &syn) {
		t.Errorf("a byte order mark after white space: %v, want a syntax error", err)
	}
}

// Any body either decodes, with every record placed, or fails with one of
// the batch errors, never a panic; a body the scanner accepts is valid
// JSON for encoding/json too.
func FuzzBatch(f *testing.F) {
	for _, name := range []string{"testdata/batches/spec-sample.json", "testdata/batches/draft-sample.json"} {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"users": [{}], "x": [1, {"a": "]"}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		d := NewBatchDecoder(strings.NewReader(string(body)), Options{Workers: 2, ChunkBytes: 128})
		var recs []Record
		err := Each(context.Background(), d, func(r []Record) []Record { return r }, func(r []Record) error {
			recs = append(recs, r...)
			return nil
		})
		var shape *ShapeError
		var syn *SyntaxError
		switch {
		case err == nil:
			if !json.Valid(bytes.TrimPrefix(body, utf8BOM)) {
				t.Fatalf("accepted invalid JSON %q", body)
			}
			for _, r := range recs {
				if r.User == nil || !strings.HasPrefix(r.User.Path, "users[") {
					t.Fatalf("record %+v", r)
				}
			}
		case errors.Is(err, ErrEmptyBatch), errors.Is(err, ErrRecordTooLarge), errors.As(err, &shape), errors.As(err, &syn):
		default:
			t.Fatalf("unexpected error %T %v", err, err)
		}
	})
}

// A JSON number cannot keep a trailing zero: an amount sent as one is the
// amount it denotes, written with the spec's two decimals, when it has at
// most two; the decoder leaves any other number, and every string, as sent
// for the validator to judge as it judges a file's amounts. Each case runs
// on the fast path and on encoding/json.
func TestBatchNumberAmounts(t *testing.T) {
	for _, tt := range []struct{ sent, want string }{
		{`-4.75`, "-4.75"},
		{`1520.5`, "1520.50"},
		{`4`, "4.00"},
		{`-0`, "-0.00"},
		{`1.005`, "1.005"},
		{`1e2`, "1e2"},
		{`"1520.5"`, "1520.5"},
		{`"-112.03"`, "-112.03"},
	} {
		for _, stdlib := range []bool{false, true} {
			body := `{"users": [{"partner_customer_id": "u", "accounts": [{"reference_id": "a", "account_type": "checking",
"account_balances": [{"balance_type": "current", "balance_amount": ` + tt.sent + `}],
"transactions": [{"reference_id": "t", "balance": ` + tt.sent + `}, {"reference_id": "d", "amount": ` + tt.sent + `, "transaction_type": "debit"}]}]}]}`
			d := NewBatchDecoder(strings.NewReader(body), Options{Workers: 1})
			d.stdlibOnly = stdlib
			var recs []Record
			err := Each(context.Background(), d, func(r []Record) []Record { return r }, func(r []Record) error {
				recs = append(recs, r...)
				return nil
			})
			if err != nil {
				t.Fatalf("%s: %v", tt.sent, err)
			}
			a := recs[0].User.Accounts[0]
			got := []string{a.Balances[0].BalanceAmount, a.Transactions[0].Amount, a.Transactions[1].Amount}
			for _, g := range got {
				if g != tt.want {
					t.Errorf("%s (encoding/json only: %v): read as %q, want %q", tt.sent, stdlib, got, tt.want)
					break
				}
			}
		}
	}
}
