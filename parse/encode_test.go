package parse

import (
	"bytes"
	"context"
	"os"
	"reflect"
	"testing"
)

// TestEncoderRoundTrip: what Encoder writes, Decoder reads back as the
// same records, with and without <Details>.
func TestEncoderRoundTrip(t *testing.T) {
	for _, file := range []string{"combined.xml", "users.xml", "accounts.xml", "transactions.xml"} {
		f, err := os.Open("../fixtures/spec/" + file)
		if err != nil {
			t.Fatal(err)
		}
		want, root, err := Collect(context.Background(), f, Options{})
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, details := range []bool{true, false} {
			var buf bytes.Buffer
			enc := NewEncoder(&buf)
			enc.Details = details
			enc.Open(map[FileType]string{Combined: "Users", Users: "Users", Accounts: "Accounts", Transactions: "Transactions"}[root])
			for i := range want {
				switch r := want[i]; {
				case r.User != nil:
					enc.User(r.User)
				case r.Account != nil:
					enc.Account(r.Account)
				case r.Transaction != nil:
					enc.Transaction(r.Transaction)
				}
			}
			if err := enc.Close(); err != nil {
				t.Fatal(err)
			}
			got, _, err := Collect(context.Background(), &buf, Options{})
			if err != nil {
				t.Fatalf("%s: %v in\n%s", file, err, buf.String())
			}
			if a, b := stripLocations(got), stripLocations(want); !reflect.DeepEqual(a, b) {
				t.Errorf("%s (details %v): read back\n%+v\nwant\n%+v", file, details, a, b)
			}
		}
	}
}

// stripLocations blanks where each record was, which differs by layout.
func stripLocations(recs []Record) []Record {
	out := make([]Record, len(recs))
	for i, r := range recs {
		switch {
		case r.User != nil:
			u := *r.User
			u.Location = Location{}
			u.Accounts = stripAccounts(u.Accounts)
			out[i].User = &u
		case r.Account != nil:
			a := stripAccounts([]Account{*r.Account})[0]
			out[i].Account = &a
		case r.Transaction != nil:
			tx := *r.Transaction
			tx.Location = Location{}
			out[i].Transaction = &tx
		}
	}
	return out
}

func stripAccounts(as []Account) []Account {
	var out []Account
	for _, a := range as {
		a.Location = Location{}
		var bs []Balance
		for _, b := range a.Balances {
			b.Line = 0
			bs = append(bs, b)
		}
		a.Balances = bs
		var ps []Property
		for _, p := range a.Properties {
			p.Line = 0
			ps = append(ps, p)
		}
		a.Properties = ps
		var ts []Transaction
		for _, tx := range a.Transactions {
			tx.Location = Location{}
			ts = append(ts, tx)
		}
		a.Transactions = ts
		out = append(out, a)
	}
	return out
}
