package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flatfiler/flatfiler/parse"
)

// writeRecordFile writes a combined file of users records, each one user
// with one account whose transactions take it to size bytes, or with
// text of a single field of size bytes when text is set.
func writeRecordFile(t *testing.T, path string, users, size int, text bool) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	w.WriteString("<Users>\n")
	for u := range users {
		if text {
			w.WriteString("<User><Details><PartnerCustomerId>")
			w.WriteString(strings.Repeat("x", size))
			w.WriteString("</PartnerCustomerId></Details></User>\n")
			continue
		}
		head := fmt.Sprintf(`<User><Details><PartnerCustomerId>U%d</PartnerCustomerId><ZipCode>06000</ZipCode></Details>
<Account><Details><PartnerCustomerId>U%[1]d</PartnerCustomerId><AccountId>A%[1]d</AccountId><AccountFiName>FI</AccountFiName><AccountType>checking</AccountType><AccountBalances><AccountBalance><BalanceType>Current</BalanceType><BalanceAmount>1.00</BalanceAmount><CurrencyCode>USD</CurrencyCode></AccountBalance></AccountBalances></Details>
`, u)
		const tail = "</Account></User>"
		w.WriteString(head)
		for n, i := len(head)+len(tail), 0; ; i++ {
			txn := fmt.Sprintf("<Transaction><TransactionId>T%d</TransactionId><AccountId>A%d</AccountId><TransactionType>Debit</TransactionType><PostedDate>2016-07-07</PostedDate><Amount>-%d.00</Amount><Memo>POS DEBIT DUNKIN #%d BOSTON MA</Memo></Transaction>\n", i, u, i%1000, i)
			if n+len(txn) > size {
				break
			}
			w.WriteString(txn)
			n += len(txn)
		}
		w.WriteString(tail + "\n")
	}
	w.WriteString("</Users>\n")
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

// TestLargestAllowedRecordStaysInMemoryBudget ingests, in a child process,
// a record as large as the limit allows, and a text node far beyond the
// text limit, and holds the process's peak RSS to what README states.
func TestLargestAllowedRecordStaysInMemoryBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	limit := parse.DefaultLimits.MaxRecordBytes
	for _, tt := range []struct {
		name    string
		users   int
		size    int
		text    bool
		applied bool
		maxRSS  int64 // MB
	}{
		// Measured 236 MB (README, Reliability).
		{"a record at the limit", 1, limit, false, true, 300},
		{"a record past the limit", 1, limit + 4096, false, false, 200},
		// Refused at the splitter's text bound: measured 66 MB.
		{"a 64 MB text node", 1, 64 << 20, true, false, 150},
	} {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-")+".xml")
			writeRecordFile(t, file, tt.users, tt.size, tt.text)
			cmd := childCommand([]string{peakEnv + "=1"}, "ingest", "--db", filepath.Join(dir, tt.name+".duckdb"), file)
			out, err := cmd.CombinedOutput()
			if applied := err == nil; applied != tt.applied {
				t.Fatalf("applied %v, want %v: %v\n%s", applied, tt.applied, err, out)
			}
			if !tt.applied && !strings.Contains(string(out), "limit") {
				t.Errorf("refusal does not name the limit: %s", out)
			}
			rss := childPeak(t, string(out))
			t.Logf("peak RSS %d MB", rss)
			if rss > tt.maxRSS {
				t.Errorf("peak RSS %d MB, over the %d MB this case is held to", rss, tt.maxRSS)
			}
		})
	}
}
