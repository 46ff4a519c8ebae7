package pipeline

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/flatfiler/flatfiler/fixtures/gen"
	"github.com/flatfiler/flatfiler/parse"
	"github.com/flatfiler/flatfiler/stages"
	"github.com/flatfiler/flatfiler/warehouse"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

var asOf = time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)

type harness struct {
	t        *testing.T
	store    *warehouse.Store
	pipeline *Pipeline
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	store, err := warehouse.Open(context.Background(), filepath.Join(t.TempDir(), "warehouse.duckdb"), warehouse.Options{AccountDirectory: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	engine, err := LoadEnrichment(context.Background(), store, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, store: store, pipeline: &Pipeline{Store: store, Metrics: NewMetrics(prometheus.NewRegistry()), Enrich: engine}}
}

func (h *harness) ingest(path string, opts Options) *Report {
	h.t.Helper()
	if opts.Partner == "" {
		opts.Partner = "demo"
	}
	if opts.AsOf.IsZero() {
		opts.AsOf = asOf
	}
	rep, err := h.pipeline.IngestFile(context.Background(), path, opts)
	if err != nil {
		h.t.Fatalf("ingest %s: %v", path, err)
	}
	return rep
}

func (h *harness) ingestString(doc string, opts Options) *Report {
	h.t.Helper()
	path := filepath.Join(h.t.TempDir(), "file.xml")
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		h.t.Fatal(err)
	}
	return h.ingest(path, opts)
}

// dump renders every table but the audit log, sorted, without ingest times.
func (h *harness) dump() string {
	h.t.Helper()
	var b bytes.Buffer
	// Transactions as analysts read them: enrichment ids depend on what
	// the warehouse held before, the enrichments they stand for do not.
	for _, table := range []string{"users", "accounts", "balances", "account_properties", "enriched_transactions"} {
		fmt.Fprintf(&b, "-- %s\n", strings.TrimPrefix(table, "enriched_"))
		// hidden is a push batch's; files leave it false. updated_at and
		// edited_at are the wall clock's: two warehouses built a second
		// apart differ there and nowhere else, so an edit shows as "set".
		q := fmt.Sprintf("SELECT * EXCLUDE (updated_at) FROM %s ORDER BY ALL", table)
		if table == "enriched_transactions" {
			q = "SELECT * EXCLUDE (updated_at, hidden) REPLACE (if(edited_at IS NULL, NULL, 'set') AS edited_at) FROM enriched_transactions ORDER BY ALL"
		}
		if err := h.store.Query(context.Background(), q, "csv", &b); err != nil {
			h.t.Fatal(err)
		}
	}
	return b.String()
}

func (h *harness) count(query string) int {
	h.t.Helper()
	var n int
	if err := h.store.DB().QueryRow(query).Scan(&n); err != nil {
		h.t.Fatalf("%s: %v", query, err)
	}
	return n
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./pipeline -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from %s:\n%s", name, path, got)
	}
}

func reportJSON(r *Report) string {
	c := *r
	c.Seconds = 0
	c.File = filepath.Base(c.File)
	b, _ := json.MarshalIndent(c, "", "  ")
	return string(b) + "\n"
}

const spec = "../fixtures/spec/"

// The spec's four example files, alone and in sequence, with their exact
// warehouse contents and reports.
func TestSpecExamples(t *testing.T) {
	tests := []struct {
		name  string
		files []string
	}{
		{"combined", []string{"combined.xml"}},
		{"users", []string{"users.xml"}},
		{"accounts-without-users", []string{"accounts.xml"}},
		{"combined-then-accounts-then-transactions", []string{"combined.xml", "accounts.xml", "transactions.xml"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			var reports strings.Builder
			for _, f := range tt.files {
				reports.WriteString(reportJSON(h.ingest(spec+f, Options{})))
			}
			golden(t, tt.name, reports.String()+h.dump())
		})
	}
}

// The acceptance: one user, the last occurrence, trimmed; 13
// accounts of which COVERDELL ESA is rejected on AccountType; signed amounts.
func TestCombinedExampleAcceptance(t *testing.T) {
	h := newHarness(t)
	rep := h.ingest(spec+"combined.xml", Options{})
	if rep.Status != StatusPartialSuccess || rep.Totals.Accounts.Total != 13 || rep.Totals.Accounts.Error != 1 || rep.Skipped != 8 {
		t.Fatalf("report %+v", rep)
	}
	if e := rep.Errors[0]; e.Identifier != "0000173112-S0122" || e.Field != "AccountType" || e.Line != 314 || e.Context != "account" {
		t.Errorf("error %+v", e)
	}
	var first, last string
	if err := h.store.DB().QueryRow(`SELECT first_name, last_name FROM users WHERE partner_customer_id = '322079353'`).Scan(&first, &last); err != nil {
		t.Fatal(err)
	}
	if first != "KOBE" || last != "BRYANT" || h.count("SELECT count(*) FROM users") != 1 {
		t.Errorf("user %q %q", first, last)
	}
	if n := h.count("SELECT count(*) FROM accounts"); n != 12 {
		t.Errorf("%d accounts stored, want 12 (13 sent, 1 rejected)", n)
	}
	if n := h.count("SELECT count(*) FROM transactions WHERE transaction_id = '83' AND amount = -10.00 AND transaction_type = 'debit'"); n != 1 {
		t.Error("the debit of -10.00 must be stored as -10.00")
	}
	if n := h.count("SELECT count(*) FROM transactions WHERE transaction_id = '85' AND amount = 20.00"); n != 1 {
		t.Error("the credit of 20.00 must be stored as 20.00")
	}
}

func TestActions(t *testing.T) {
	h := newHarness(t)
	h.ingest(spec+"combined.xml", Options{})
	before := h.dump()

	t.Run("running a file twice changes nothing", func(t *testing.T) {
		h.ingest(spec+"combined.xml", Options{})
		if after := h.dump(); after != before {
			t.Errorf("second run changed the warehouse:\n%s", after)
		}
	})
	t.Run("update replaces the record as sent", func(t *testing.T) {
		rep := h.ingestString(`<Users><User><Details><Action>Update</Action><PartnerCustomerId>322079353</PartnerCustomerId>
<FirstName>KOBE</FirstName><ZipCode>90001</ZipCode></Details></User></Users>`, Options{})
		if rep.Status != StatusSuccess {
			t.Fatalf("%+v", rep)
		}
		if n := h.count(`SELECT count(*) FROM users WHERE zip_code = '90001' AND last_name IS NULL AND email IS NULL`); n != 1 {
			t.Error("fields left out of an update must be cleared: the record as sent replaces the stored one")
		}
	})
	t.Run("transaction delete", func(t *testing.T) {
		h.ingestString(`<Transactions><Transaction><Action>delete</Action><TransactionId>83</TransactionId><AccountId>0000129251-S0011</AccountId></Transaction></Transactions>`, Options{})
		if n := h.count(`SELECT count(*) FROM transactions WHERE transaction_id = '83'`); n != 0 {
			t.Error("transaction 83 still there")
		}
	})
	t.Run("unknown account", func(t *testing.T) {
		rep := h.ingestString(`<Transactions><Transaction><TransactionId>1</TransactionId><AccountId>NOPE</AccountId>
<TransactionType>Credit</TransactionType><PostedDate>2016-07-07</PostedDate><Amount>1.00</Amount><Memo>X</Memo></Transaction></Transactions>`, Options{})
		if rep.Totals.Transactions != (stages.Count{Total: 1, Error: 1}) || rep.Status != StatusError {
			t.Fatalf("%+v", rep)
		}
		if e := rep.Errors[0]; e.Field != "AccountId" || !strings.Contains(e.Message, "unknown account NOPE") || e.Line != 1 {
			t.Errorf("%+v", e)
		}
	})
	t.Run("transactions of an investment account known only to the warehouse are skipped", func(t *testing.T) {
		rep := h.ingestString(`<Transactions><Transaction><TransactionId>9</TransactionId><AccountId>0000173112-S0029</AccountId>
<TransactionType>Credit</TransactionType><PostedDate>2016-07-07</PostedDate><Amount>1.00</Amount><Memo>X</Memo></Transaction></Transactions>`, Options{})
		if rep.Skipped != 1 || rep.Totals.Transactions.Total != 0 || h.count(`SELECT count(*) FROM transactions WHERE transaction_id = '9'`) != 0 {
			t.Errorf("%+v", rep)
		}
	})
	t.Run("delete cascades from user to accounts, balances and transactions", func(t *testing.T) {
		doc := `<Users><User><Details><Action>DELETE</Action><PartnerCustomerId>322079353</PartnerCustomerId></Details></User></Users>`
		h.ingestString(doc, Options{})
		for _, table := range []string{"users", "accounts", "balances", "transactions"} {
			if n := h.count("SELECT count(*) FROM " + table); n != 0 {
				t.Errorf("%d rows left in %s", n, table)
			}
		}
		// Deleting what does not exist is a no-op.
		if rep := h.ingestString(doc, Options{}); rep.Status != StatusSuccess {
			t.Errorf("%+v", rep)
		}
	})
}

func TestTypeLimitsWhatIsImported(t *testing.T) {
	h := newHarness(t)
	h.ingest(spec+"users.xml", Options{}) // ends with a Delete: nothing stored
	h.ingestString(`<Users><User><Details><PartnerCustomerId>322079353</PartnerCustomerId><ZipCode>06000</ZipCode></Details></User></Users>`, Options{})
	rep := h.ingest(spec+"combined.xml", Options{Type: parse.Accounts})
	if rep.Type != parse.Accounts || rep.Totals.Users.Total != 0 || rep.Totals.Transactions.Total != 0 || rep.Totals.Accounts.Total != 13 {
		t.Fatalf("%+v", rep)
	}
	if h.count("SELECT count(*) FROM transactions") != 0 || h.count("SELECT count(*) FROM users WHERE first_name IS NULL") != 1 {
		t.Error("a file typed accounts must import only accounts")
	}
	if _, err := h.pipeline.IngestFile(context.Background(), spec+"transactions.xml", Options{Partner: "demo", Type: parse.Users}); err == nil {
		t.Error("a transactions file declared as users must be refused")
	}
}

func TestBalanceSnapshotsBuildHistory(t *testing.T) {
	h := newHarness(t)
	day1, day2 := asOf, asOf.AddDate(0, 0, 1)
	h.ingest(spec+"combined.xml", Options{AsOf: day1})
	h.ingest(spec+"combined.xml", Options{AsOf: day2})
	h.ingest(spec+"combined.xml", Options{AsOf: day2})
	if n := h.count(`SELECT count(DISTINCT as_of) FROM balances WHERE account_id = '0000129251-S0011'`); n != 2 {
		t.Errorf("%d snapshots, want 2", n)
	}
	if n := h.count(`SELECT count(*) FROM balances WHERE account_id = '0000129251-S0011'`); n != 2 {
		t.Errorf("%d balance rows, want 2: the same (account, as_of) again replaces its snapshot", n)
	}
}

func generate(t *testing.T, opts gen.Options) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "generated.xml")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := gen.Write(f, opts); err != nil {
		t.Fatal(err)
	}
	return path
}

// Parallel parsing and batching must not change the outcome: the last
// occurrence of a key in file order wins whatever the workers and batches.
func TestParallelEqualsSerial(t *testing.T) {
	path := generate(t, gen.Options{Users: 400, Seed: 3, BadRate: 0.02})
	serial := newHarness(t)
	repSerial := serial.ingest(path, Options{Workers: 1, BatchRows: 1 << 30})
	parallel := newHarness(t)
	repParallel := parallel.ingest(path, Options{Workers: 4, BatchRows: 997})
	if repSerial.Totals != repParallel.Totals || repSerial.Skipped != repParallel.Skipped {
		t.Errorf("totals differ: %+v vs %+v", repSerial.Totals, repParallel.Totals)
	}
	if repSerial.Totals.Transactions.Error == 0 || repSerial.Totals.Users.Total <= int64(serial.count("SELECT count(*) FROM users")) {
		t.Fatal("the generated file must hold invalid records and repeated users for this test to mean anything")
	}
	if a, b := serial.dump(), parallel.dump(); a != b {
		t.Error("warehouse differs between one worker in one batch and four workers in many batches")
	}
}

// A file that fails late (truncated) leaves the warehouse exactly as it was.
func TestFatalErrorLeavesNothing(t *testing.T) {
	path := generate(t, gen.Options{Users: 300, Seed: 5})
	data, _ := os.ReadFile(path)
	truncated := filepath.Join(t.TempDir(), "truncated.xml")
	os.WriteFile(truncated, data[:len(data)-200], 0o644)

	h := newHarness(t)
	h.ingest(spec+"combined.xml", Options{})
	before := h.dump()
	rep, err := h.pipeline.IngestFile(context.Background(), truncated, Options{Partner: "demo", BatchRows: 1000})
	if err == nil || rep.Applied || rep.Status != StatusError {
		t.Fatalf("a truncated file must not be applied: %+v", rep)
	}
	if !strings.Contains(rep.Fatal, "truncated.xml") || !strings.Contains(rep.Fatal, "line ") {
		t.Errorf("the error must name the file and the line: %s", rep.Fatal)
	}
	if after := h.dump(); after != before {
		t.Error("a file that failed changed the warehouse")
	}
	if n := h.count("SELECT count(*) FROM ingests"); n != 1 {
		t.Errorf("%d ingests recorded, want only the applied one", n)
	}
}

// Operators read the outcome of every file from the registry passed in.
func TestMetricsCountRecordsBytesAndFiles(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := newHarness(t)
	h.pipeline.Metrics = NewMetrics(reg)
	rep := h.ingest(spec+"combined.xml", Options{})
	truncated := "<Users><User>"
	if _, err := h.pipeline.Ingest(context.Background(), "truncated.xml", strings.NewReader(truncated), Options{Partner: "demo"}); err == nil {
		t.Fatal("a truncated file must not be applied")
	}

	tests := []struct {
		name string
		got  float64
		want float64
	}{
		{"accounts applied", testutil.ToFloat64(h.pipeline.Metrics.Records.WithLabelValues("account", "success")), 12},
		{"accounts rejected", testutil.ToFloat64(h.pipeline.Metrics.Records.WithLabelValues("account", "error")), 1},
		{"transactions skipped", testutil.ToFloat64(h.pipeline.Metrics.Records.WithLabelValues("transaction", "skipped")), 8},
		{"partial-success files", testutil.ToFloat64(h.pipeline.Metrics.Files.WithLabelValues(StatusPartialSuccess)), 1},
		{"files not applied", testutil.ToFloat64(h.pipeline.Metrics.Files.WithLabelValues(StatusError)), 1},
		{"bytes of both files", testutil.ToFloat64(h.pipeline.Metrics.Bytes), float64(rep.Bytes + int64(len(truncated)))},
		{"transactions the dictionary tagged", testutil.ToFloat64(h.pipeline.Metrics.Enriched.WithLabelValues("dictionary")), 4},
		{"transactions nothing named", testutil.ToFloat64(h.pipeline.Metrics.Enriched.WithLabelValues("unmatched")), 2},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, tt.got, tt.want)
		}
	}
	if n := testutil.CollectAndCount(reg, "flatfiler_ingest_stage_duration_seconds"); n < 4 {
		t.Errorf("%d stage series, want validate, load, commit and file at least", n)
	}
}

// A gzip file applies as the XML it holds; its report counts the bytes
// read, as uploaded.
func TestGzipFileAppliesAsPlain(t *testing.T) {
	plain, err := os.ReadFile("../fixtures/spec/combined.xml")
	if err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	w.Write(plain)
	w.Close()
	a, b := newHarness(t), newHarness(t)
	repPlain := a.ingestString(string(plain), Options{})
	repGzip := b.ingestString(gz.String(), Options{})
	if a.dump() != b.dump() || repGzip.Status != repPlain.Status || repGzip.Bytes != int64(gz.Len()) {
		t.Errorf("gzip: status %s, %d bytes (file %d); plain: %s", repGzip.Status, repGzip.Bytes, gz.Len(), repPlain.Status)
	}
}
