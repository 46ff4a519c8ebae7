package parse

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// FuzzWalkUser: the fast path never changes a user. Whatever walkUser
// accepts, encoding/json accepts too and decodes to the same batchUser.
func FuzzWalkUser(f *testing.F) {
	for _, name := range []string{"testdata/batches/spec-sample.json", "testdata/batches/draft-sample.json", "testdata/batches/varied.json"} {
		body, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		var batch struct{ Users []json.RawMessage }
		if err := json.Unmarshal(bytes.TrimPrefix(body, utf8BOM), &batch); err != nil {
			f.Fatal(err)
		}
		for _, u := range batch.Users {
			f.Add([]byte(u))
		}
	}
	for _, s := range walkCases {
		f.Add([]byte(s.user))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var fast batchUser
		if !walkUser(data, &fast) {
			return
		}
		var ref batchUser
		if err := json.Unmarshal(data, &ref); err != nil {
			t.Fatalf("walkUser accepted what encoding/json refuses (%v): %q", err, data)
		}
		if !reflect.DeepEqual(fast, ref) {
			t.Fatalf("decoded differently from %q:\nwalkUser:      %+v\nencoding/json: %+v", data, fast, ref)
		}
	})
}

// walkCases are users on either side of what walkUser takes.
var walkCases = []struct {
	name  string
	user  string
	taken bool
}{
	{"plain", `{"partner_customer_id": "1", "accounts": [{"reference_id": 7, "account_balances": [], "transactions": [{"balance": -1.5e2, "hide": true}, null]}]}`, true},
	{"unknown members", `{"x": {"a": [1, "\u00e9", {"é": null}]}, "accounts": null, "y": false}`, true},
	{"escapes and UTF-8", `{"first_name": "Zo\u00eb \"Z\"", "last_name": "Ørsted"}`, true},
	{"a wrong type kept as the field's", `{"email": {"a": 1}, "zip_code": [1]}`, true},
	{"no balances", `{"accounts": [{"account_balances": null}]}`, true},
	{"a key in another case", `{"Email": "a@b.c"}`, false},
	{"a field twice", `{"email": "a@b.c", "email": "d@e.f"}`, false},
	{"an escaped key", `{"em\u0061il": "a@b.c"}`, false},
	{"accounts not an array", `{"accounts": "none"}`, false},
	{"a bad number", `{"zip_code": 01}`, false},
	{"a trailing comma", `{"zip_code": "1",}`, false},
	{"a control character", "{\"memo\": \"a\tb\"}", false},
}

func TestWalkUser(t *testing.T) {
	for _, tt := range walkCases {
		t.Run(tt.name, func(t *testing.T) {
			var fast batchUser
			if got := walkUser([]byte(tt.user), &fast); got != tt.taken {
				t.Fatalf("walkUser took it: %v, want %v", got, tt.taken)
			}
			if !tt.taken {
				return
			}
			var ref batchUser
			if err := json.Unmarshal([]byte(tt.user), &ref); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(fast, ref) {
				t.Fatalf("walkUser %+v\nencoding/json %+v", fast, ref)
			}
		})
	}
}

// The fast path must take batches as partners send them, or FuzzWalkUser
// proves nothing about it.
func TestWalkUserTakesBatches(t *testing.T) {
	for _, name := range []string{"testdata/batches/spec-sample.json", "testdata/batches/draft-sample.json", "testdata/batches/varied.json"} {
		t.Run(name, func(t *testing.T) {
			body, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			decode := func(stdlibOnly bool) ([]Record, *Decoder) {
				d := NewBatchDecoder(bytes.NewReader(body), Options{})
				d.stdlibOnly = stdlibOnly
				var all []Record
				if err := Each(context.Background(), d, func(r []Record) []Record { return r }, func(r []Record) error {
					all = append(all, r...)
					return nil
				}); err != nil {
					t.Fatal(err)
				}
				return all, d
			}
			fast, d := decode(false)
			if n := d.fallbacks.Load(); n > 0 {
				t.Errorf("%d users left to encoding/json", n)
			}
			if ref, _ := decode(true); !reflect.DeepEqual(fast, ref) {
				t.Errorf("records differ:\nfast path:     %+v\nencoding/json: %+v", fast, ref)
			}
			if len(fast) == 0 || !strings.HasPrefix(fast[0].User.Path, "users[0]") {
				t.Errorf("records %+v", fast)
			}
		})
	}
}

// benchUser is a user as the generator writes them: 3 accounts of 100
// transactions.
func benchUser() []byte {
	var b strings.Builder
	b.WriteString(`{"partner_customer_id": "300000000","first_name": "PATRICIA   ","last_name": "JOHNSON","email": "user0@example.com","zip_code": "37435-1135","accounts": [`)
	for a := range 3 {
		if a > 0 {
			b.WriteString(",")
		}
		b.WriteString(`{"reference_id": "0000000000-L0000","name": "LOANS ACCOUNT ","account_type": "loans","account_balances": [{"balance_type": "current","balance_amount": "14979.12"}],"transactions": [`)
		for t := range 100 {
			if t > 0 {
				b.WriteString(",\n")
			}
			b.WriteString(`{"reference_id": "` + strconv.Itoa(t) + `","balance": "-125.47","transaction_type": "debit","posted_at": "2026-09-12T17:17:03-04:00","memo": "TST* FLORIDA BLUE 8014 DALLAS TX "}`)
		}
		b.WriteString("]}")
	}
	b.WriteString("]}")
	return []byte(b.String())
}

func BenchmarkDecodeUser(b *testing.B) {
	data := benchUser()
	b.Run("walkUser", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			var u batchUser
			if !walkUser(data, &u) {
				b.Fatal("not taken")
			}
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			var u batchUser
			if err := json.Unmarshal(data, &u); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkBatchDecode decodes a batch of 100 users as the PUT does.
func BenchmarkBatchDecode(b *testing.B) {
	user := benchUser()
	var body bytes.Buffer
	body.WriteString(`{"callback": "https://example.com/cb", "users": [`)
	for i := range 100 {
		if i > 0 {
			body.WriteString(",\n")
		}
		body.Write(user)
	}
	body.WriteString("]}")
	b.SetBytes(int64(body.Len()))
	for b.Loop() {
		d := NewBatchDecoder(bytes.NewReader(body.Bytes()), Options{})
		if err := Each(context.Background(), d, func(r []Record) int { return len(r) }, func(int) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
}
