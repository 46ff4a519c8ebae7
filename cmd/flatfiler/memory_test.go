package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/flatfiler/flatfiler/fixtures/gen"
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

// TestLargeBatchKeepsMemoryFlat pushes a 100 MB batch (about 600k
// records) to a real server, through PUT, the load, the content and its
// callback, and holds the server's peak RSS to the 512 MB a 4 GiB flat
// file is held to. The body is streamed to disk, decoded a user at a time,
// loaded in bounded staging batches and read back a group of users at a
// time; holding it whole would take several times its size. Measured
// (README, Push batches): 219 MB at 10 MB, 323 at 30, 414 to 431 at 100,
// 409 at 250: the plateau the flat file's pipeline reaches too.
func TestLargeBatchKeepsMemoryFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes")
	}
	const size, budget = 100e6, 512
	recv := newCallbackReceiver(t, 0)
	var body bytes.Buffer
	if _, err := gen.Write(&body, gen.Options{Bytes: size, Seed: 9, BadRate: 0.001, Batch: true, Callback: recv.URL + "/cb"}); err != nil {
		t.Fatal(err)
	}
	c := startChildEnv(t, t.TempDir(), []string{peakEnv + "=1"}, callbackFlags(recv)...)
	ts := c.client(t, *c.creds)
	a := ts.putBatch(body.Bytes(), c.creds.APIKey)
	id, _ := a.Body["batch_id"].(string)
	if a.Status != http.StatusOK || id == "" {
		t.Fatalf("PUT %d bytes: %d %s", body.Len(), a.Status, a.Raw)
	}
	body = bytes.Buffer{}
	st := ts.waitBatch(c.creds.APIKey, id)
	if st["status"] != "partial-success" {
		t.Fatalf("batch: %v", st)
	}
	if got := recv.wait(t); got.header.Get("webhook-id") != id || len(got.body) < size {
		t.Fatalf("callback for %s of %d bytes, want batch %s's whole content", got.header.Get("webhook-id"), len(got.body), id)
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	if err := c.cmd.Wait(); err != nil {
		t.Fatalf("server exit: %v", err)
	}
	peak := childPeak(t, c.stderr.String())
	t.Logf("%d MB batch, %v records: server peak RSS %d MB", int64(size/1e6), st["totals"], peak)
	if peak > budget {
		t.Errorf("server peak RSS %d MB for a %d MB batch, over the %d MB budget", peak, int64(size/1e6), budget)
	}
}
