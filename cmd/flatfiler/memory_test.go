package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5"

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

// TestAnalystResultKeepsMemoryFlat: two million sorted rows of 200 bytes
// leave the SQL endpoint for a real client (pgx) while the server's peak
// RSS stays flat. Held whole (as the driver holds a result), they took
// the server to 531 MB. Through the result spool: 166 MB at 200,000 rows
// (the sort fits DuckDB's 128 MB pool), 228 to 243 MB at two million and 250 MB
// at five million (953 MB of text): the pool, full, spills.
func TestAnalystResultKeepsMemoryFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes")
	}
	const rows, budget = 2_000_000, 300
	dir := t.TempDir()
	// The pool at 128 MB, as the figures above: DuckDB sorts in all of it
	// before spilling (at the default 1 GB the peak was 592 MB).
	c := startChildEnv(t, dir, []string{peakEnv + "=1"}, "--read-memory-limit", "128MB")
	code, out, errOut := runCLI(t, "analyst", "add", "ana", "--data", dir, "--all-partners", "--json")
	var creds struct{ Name, Password string }
	if code != 0 || json.Unmarshal([]byte(out), &creds) != nil {
		t.Fatalf("analyst add: %d %q %s", code, out, errOut)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, fmt.Sprintf("postgres://ana:%s@%s/warehouse?sslmode=disable", creds.Password, c.sql))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	result, err := conn.Query(ctx, "SELECT range AS i, repeat(chr(97 + (range % 26)::INT), 200) AS pad FROM range($1::BIGINT) ORDER BY i", rows)
	if err != nil {
		t.Fatal(err)
	}
	n, bytes := 0, 0
	for result.Next() {
		var i int64
		var pad string
		if err := result.Scan(&i, &pad); err != nil {
			t.Fatal(err)
		}
		if i != int64(n) || len(pad) != 200 || pad[0] != byte('a'+n%26) {
			t.Fatalf("row %d: %d %q", n, i, pad[:1])
		}
		n++
		bytes += len(pad)
	}
	if result.Err() != nil || n != rows {
		t.Fatalf("%d rows, %v", n, result.Err())
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	if err := c.cmd.Wait(); err != nil {
		t.Fatalf("server exit: %v", err)
	}
	peak := childPeak(t, c.stderr.String())
	t.Logf("%d rows, %d MB of text: server peak RSS %d MB", n, bytes>>20, peak)
	if peak > budget {
		t.Errorf("server peak RSS %d MB for a %d MB result, over the %d MB budget", peak, bytes>>20, budget)
	}
	if left, _ := os.ReadDir(filepath.Join(dir, "warehouse.duckdb.results")); len(left) != 0 {
		t.Errorf("the result spool keeps %d files", len(left))
	}
}
