package parse

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/text/encoding/charmap"
)

func collect(t *testing.T, doc string, opts Options) ([]Record, FileType, error) {
	t.Helper()
	return Collect(context.Background(), strings.NewReader(doc), opts)
}

func TestSpecExamples(t *testing.T) {
	tests := []struct {
		file         string
		root         FileType
		records      int
		firstLine    int
		accounts     int
		transactions int
	}{
		{"combined", Combined, 2, 3, 13, 14},
		{"users", Combined, 3, 3, 0, 0},
		{"accounts", Accounts, 1, 4, 1, 0},
		{"transactions", Transactions, 1, 3, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			data, err := os.ReadFile("../fixtures/spec/" + tt.file + ".xml")
			if err != nil {
				t.Fatal(err)
			}
			// Tiny chunks: every record boundary is also a chunk boundary.
			for _, chunk := range []int{1, 1 << 20} {
				recs, root, err := collect(t, string(data), Options{ChunkBytes: chunk, Workers: 3})
				if err != nil {
					t.Fatal(err)
				}
				if root != tt.root || len(recs) != tt.records {
					t.Fatalf("root %s with %d records, want %s with %d", root, len(recs), tt.root, tt.records)
				}
				if got := recs[0].Location().Line; got != tt.firstLine {
					t.Errorf("first record at line %d, want %d", got, tt.firstLine)
				}
				accounts, txns := 0, 0
				for _, r := range recs {
					if r.User != nil {
						accounts += len(r.User.Accounts)
						for _, a := range r.User.Accounts {
							txns += len(a.Transactions)
						}
					}
					if r.Account != nil {
						accounts++
					}
					if r.Transaction != nil {
						txns++
					}
				}
				if accounts != tt.accounts || txns != tt.transactions {
					t.Errorf("%d accounts and %d transactions, want %d and %d", accounts, txns, tt.accounts, tt.transactions)
				}
			}
		})
	}
}

func TestCombinedFieldsAndLocations(t *testing.T) {
	data, _ := os.ReadFile("../fixtures/spec/combined.xml")
	recs, _, err := collect(t, string(data), Options{})
	if err != nil {
		t.Fatal(err)
	}
	kobe := recs[1].User
	if kobe.FirstName != "KOBE" || kobe.LastName != "BRYANT                                    " {
		t.Errorf("values must come as sent, untrimmed: %q %q", kobe.FirstName, kobe.LastName)
	}
	a := kobe.Accounts[0]
	if a.AccountID != "0000173112-S0000" || a.Line != 132 || !a.HasBalances || len(a.Balances) != 1 {
		t.Errorf("account %+v", a)
	}
	if a.Balances[0].BalanceAmount != "15.00" || a.Balances[0].Line != 139 {
		t.Errorf("balance %+v", a.Balances[0])
	}
	if tx := a.Transactions[1]; tx.TransactionID != "67" || tx.Line != 156 || tx.Memo != "TEST                                      " {
		t.Errorf("transaction %+v", tx)
	}
	if recs[1].User.Offset != int64(bytes.Index(data, []byte("<User>\n    <Details>\n      <PartnerCustomerId>322079353</PartnerCustomerId>\n      <FirstName>KOBE"))) {
		t.Errorf("offset %d", recs[1].User.Offset)
	}
}

func TestAccountFieldsWithoutDetailsAndProperties(t *testing.T) {
	doc := `<Accounts><Account><AccountId>1</AccountId><AccountType>cards</AccountType>
<AccountBalances><AccountBalance><BalanceType>Outstanding</BalanceType><BalanceAmount>1.00</BalanceAmount><CurrencyCode>USD</CurrencyCode></AccountBalance></AccountBalances>
<Properties><Property><PropertyType>PurchasesApr</PropertyType><PropertyValue>24.5</PropertyValue></Property></Properties>
<Unknown><Nested>ignored</Nested></Unknown></Account></Accounts>`
	recs, root, err := collect(t, doc, Options{})
	if err != nil || root != Accounts {
		t.Fatal(root, err)
	}
	a := recs[0].Account
	if a.AccountID != "1" || a.AccountType != "cards" || len(a.Properties) != 1 || a.Properties[0].Value != "24.5" {
		t.Errorf("%+v", a)
	}
}

func TestEncodings(t *testing.T) {
	body := "<Transactions>\r\n<Transaction><TransactionId>1</TransactionId><Memo>CAF\u00c9 M\u00dcNCHEN &amp; CO</Memo></Transaction>\r\n</Transactions>\r\n"
	latin1, err := charmap.ISO8859_1.NewEncoder().String(body)
	if err != nil {
		t.Fatal(err)
	}
	win1252, _ := charmap.Windows1252.NewEncoder().String(strings.Replace(body, "CO", "CO \u20ac", 1))
	tests := []struct {
		name, doc, memo string
	}{
		{"utf-8 with BOM and CRLF", "\xEF\xBB\xBF<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n" + body, "CAF\u00c9 M\u00dcNCHEN & CO"},
		{"iso-8859-1", `<?xml version="1.0" encoding="ISO-8859-1"?>` + "\n" + latin1, "CAF\u00c9 M\u00dcNCHEN & CO"},
		{"windows-1252", `<?xml version='1.0' encoding='windows-1252'?>` + "\n" + win1252, "CAF\u00c9 M\u00dcNCHEN & CO \u20ac"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recs, _, err := collect(t, tt.doc, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if got := recs[0].Transaction.Memo; got != tt.memo {
				t.Errorf("memo %q, want %q", got, tt.memo)
			}
			if recs[0].Transaction.Line != 3 {
				t.Errorf("line %d, want 3", recs[0].Transaction.Line)
			}
		})
	}
}

func TestBoundariesIgnoreMarkupInComments(t *testing.T) {
	doc := `<?xml version="1.0"?>
<!-- a comment with <User> inside -->
<Users>
  <?partner-tool generated="yes" ?>
  <User a="x>y"><Details><PartnerCustomerId>1</PartnerCustomerId><FirstName><![CDATA[<not a tag>]]></FirstName></Details></User>
  <!-- </Users> -->
  <User><Details><PartnerCustomerId>2</PartnerCustomerId></Details></User>
</Users>
<!-- trailing -->
`
	recs, _, err := collect(t, doc, Options{ChunkBytes: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[0].User.FirstName != "<not a tag>" || recs[1].User.PartnerCustomerID != "2" || recs[1].User.Line != 7 {
		t.Fatalf("%d records: %+v", len(recs), recs)
	}
}

// Hostile and broken input fails the file with a located error.
func TestFatalErrors(t *testing.T) {
	deep := "<Users><User>" + strings.Repeat("<a>", 40) + strings.Repeat("</a>", 40) + "</User></Users>"
	tests := []struct {
		name string
		doc  string
		opts Options
		line int
		want string
	}{
		{"doctype", "<?xml version=\"1.0\"?>\n<!DOCTYPE Users [<!ENTITY x \"y\">]>\n<Users/>", Options{}, 2, "DOCTYPE"},
		{"entity declaration inside a record", "<Users>\n<User><!ENTITY x \"boom\"></User></Users>", Options{}, 2, "DOCTYPE and entity"},
		{"undefined entity", "<Users>\n<User>\n<Details><FirstName>&lol;</FirstName></Details></User></Users>", Options{}, 3, "entity"},
		{"nesting depth", deep, Options{}, 1, "nested deeper"},
		{"record size", "<Users><User><Details><FirstName>" + strings.Repeat("x", 2000) + "</FirstName></Details></User></Users>",
			Options{Limits: Limits{MaxDepth: 32, MaxRecordBytes: 1000, MaxTextBytes: 100000}}, 1, "larger than the limit"},
		{"text size", "<Users><User><Details>\n<FirstName>" + strings.Repeat("x", 2000) + "</FirstName></Details></User></Users>",
			Options{Limits: Limits{MaxDepth: 32, MaxRecordBytes: 100000, MaxTextBytes: 1000}}, 2, "FirstName"},
		// Past eight times the text limit the splitter refuses the text before
		// reading it whole (a 200 MB text node once took 457 MB to refuse).
		{"text run read no further", "<Users><User><Details>\n<Email>" + strings.Repeat("x", 9000) + "</Email></Details></User></Users>",
			Options{Limits: Limits{MaxDepth: 32, MaxRecordBytes: 1 << 20, MaxTextBytes: 1000}}, 2, "text near <Email> is longer than 8000 bytes"},
		// Markup is measured while it runs past what was read (the buffer).
		{"long comment read no further", "<Users><User>\n<!--" + strings.Repeat("x", 3<<20) + "--></User></Users>",
			Options{Limits: Limits{MaxDepth: 32, MaxRecordBytes: 1 << 20, MaxTextBytes: 1000}}, 2, "markup (an unclosed comment"},
		{"long CDATA read no further", "<Users><User><Details><Email>\n<![CDATA[" + strings.Repeat("x", 3<<20) + "]]></Email></Details></User></Users>",
			Options{Limits: Limits{MaxDepth: 32, MaxRecordBytes: 1 << 20, MaxTextBytes: 1000}}, 2, "longer than 8000 bytes"},
		{"invalid utf-8", "<Users>\n<User><Details>\n<FirstName>\xff\xfe</FirstName></Details></User></Users>", Options{}, 3, "UTF-8"},
		{"mismatched tags", "<Users>\n<User>\n<Details>\n<FirstName>A</LastName></Details></User></Users>", Options{}, 4, "closed by"},
		{"truncated in a record", "<Users>\n<User>\n<Details><FirstName>A</FirstName>", Options{}, 3, "end of file"},
		{"truncated after a record", "<Users>\n<User></User>\n", Options{}, 3, "not closed"},
		{"wrong root", "<Customers>\n<User></User></Customers>", Options{}, 1, "unknown root"},
		{"wrong record", "<Users>\n<Account></Account></Users>", Options{}, 2, "want <User>"},
		{"text between records", "<Users>\n<User></User>\nstray\n</Users>", Options{}, 3, "unexpected text"},
		{"content after root", "<Users></Users>\n<Users></Users>", Options{}, 2, "after the root"},
		{"empty file", "", Options{}, 1, "no root element"},
		{"unsupported encoding", `<?xml version="1.0" encoding="x-unknown-9"?><Users/>`, Options{}, 1, "unsupported encoding"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := collect(t, tt.doc, tt.opts)
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("error %v (%T), want a *SyntaxError", err, err)
			}
			if se.Line != tt.line || !strings.Contains(se.Msg, tt.want) {
				t.Errorf("got %q at line %d, want %q at line %d", se.Msg, se.Line, tt.want, tt.line)
			}
		})
	}
}

// The first error in file order is reported, whatever the parallelism.
func TestFirstErrorInFileOrder(t *testing.T) {
	var b strings.Builder
	b.WriteString("<Transactions>\n")
	for i := 0; i < 2000; i++ {
		fmt.Fprintf(&b, "<Transaction><TransactionId>%d</TransactionId></Transaction>\n", i)
		if i == 500 {
			b.WriteString("<Transaction><Memo>A</Amount></Transaction>\n")
		}
	}
	b.WriteString("<!DOCTYPE x>\n</Transactions>")
	for range 5 {
		_, _, err := collect(t, b.String(), Options{ChunkBytes: 64, Workers: 4})
		var se *SyntaxError
		if !errors.As(err, &se) || se.Line != 503 {
			t.Fatalf("got %v, want the mismatched tag at line 503", err)
		}
	}
}

// addSpecExamples seeds a fuzz test with the spec's four example files.
func addSpecExamples(f *testing.F) {
	for _, name := range []string{"combined", "users", "accounts", "transactions"} {
		data, err := os.ReadFile("../fixtures/spec/" + name + ".xml")
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
}

func FuzzDecode(f *testing.F) {
	addSpecExamples(f)
	f.Add([]byte("<Users><User a='>'><!-- <x> --><![CDATA[</User>]]></User></Users>"))
	f.Fuzz(func(t *testing.T, data []byte) {
		opts := Options{ChunkBytes: 64, Workers: 2, Limits: Limits{MaxDepth: 16, MaxRecordBytes: 4096, MaxTextBytes: 1024}}
		recs, _, err := Collect(context.Background(), bytes.NewReader(data), opts)
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("error %v is not a located SyntaxError", err)
			}
			if se.Line < 1 {
				t.Fatalf("error without a line: %v", err)
			}
			return
		}
		for _, r := range recs {
			if loc := r.Location(); loc.Line < 1 || loc.Offset < 0 || loc.Offset >= int64(len(data))+1 {
				t.Fatalf("record outside the file: %+v", loc)
			}
		}
	})
}

// FuzzPlainTokens: the fast path never changes the outcome. Whatever the
// input, decoding with it and with encoding/xml alone gives the same records
// or the same error.
func FuzzPlainTokens(f *testing.F) {
	addSpecExamples(f)
	for _, s := range []string{
		"<Transactions><Transaction><Memo>AT&amp;T &#65;&#x42; &lt;&gt;&apos;&quot;</Memo></Transaction></Transactions>",
		"<Transactions>\r\n<Transaction>\r\n<Memo>two\r\nlines\rhere</Memo>\r\n</Transaction>\r\n</Transactions>",
		"<Transactions><Transaction><Memo/><Amount >1.00</Amount ><CheckNumber\n/></Transaction></Transactions>",
		"<Transactions><Transaction><Memo>bad &foo; &#0; &#xD800; &#; ]]></Memo></Transaction></Transactions>",
		"<Transactions><Transaction><Memo>caf\u00e9 \xff</Memo><x:Amount>1</x:Amount></Transaction></Transactions>",
		"<Users><User><Details><PartnerCustomerId a=\"1\">1</PartnerCustomerId></Details></User></Users>",
		"<Users><User><Details><1Bad>1</1Bad><Good>\x01</Good></Details></User></Users>",
		"<Accounts><Account><Details><AccountId>1</AccountId></Detail></Account></Accounts>",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		opts := Options{ChunkBytes: 64, Workers: 1, Limits: Limits{MaxDepth: 8, MaxRecordBytes: 4096, MaxTextBytes: 64}}
		decode := func(stdlibOnly bool) ([]Record, error) {
			d := NewDecoder(bytes.NewReader(data), opts)
			d.stdlibOnly = stdlibOnly
			var all []Record
			err := Each(context.Background(), d, func(recs []Record) []Record { return recs }, func(recs []Record) error {
				all = append(all, recs...)
				return nil
			})
			return all, err
		}
		fast, fastErr := decode(false)
		ref, refErr := decode(true)
		if fmt.Sprint(fastErr) != fmt.Sprint(refErr) {
			t.Fatalf("errors differ:\nfast path:    %v\nencoding/xml: %v", fastErr, refErr)
		}
		if !reflect.DeepEqual(fast, ref) {
			t.Fatalf("records differ:\nfast path:    %+v\nencoding/xml: %+v", fast, ref)
		}
	})
}

// The fast path must take what bank exports look like, or FuzzPlainTokens
// proves nothing about it.
func TestFastPathTakesPlainFiles(t *testing.T) {
	tests := []struct {
		name      string
		data      string
		fallbacks bool
	}{
		{"combined example", "../fixtures/spec/combined.xml", false},
		{"users example", "../fixtures/spec/users.xml", false},
		{"accounts example", "../fixtures/spec/accounts.xml", false},
		{"transactions example", "../fixtures/spec/transactions.xml", false},
		{"entities and CRLF", "<Transactions>\r\n<Transaction><Memo>AT&amp;T\r\n</Memo></Transaction>\r\n</Transactions>", false},
		{"an attribute", `<Transactions><Transaction><Memo lang="en">x</Memo></Transaction></Transactions>`, true},
		{"a comment inside a record", `<Transactions><Transaction><!-- x --><Memo>x</Memo></Transaction></Transactions>`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := []byte(tt.data)
			if strings.HasSuffix(tt.data, ".xml") {
				var err error
				if data, err = os.ReadFile(tt.data); err != nil {
					t.Fatal(err)
				}
			}
			d := NewDecoder(bytes.NewReader(data), Options{})
			err := Each(context.Background(), d, func(r []Record) int { return len(r) }, func(int) error { return nil })
			if err != nil {
				t.Fatal(err)
			}
			if got := d.fallbacks.Load() > 0; got != tt.fallbacks {
				t.Errorf("fell back to encoding/xml: %v, want %v", got, tt.fallbacks)
			}
		})
	}
}
