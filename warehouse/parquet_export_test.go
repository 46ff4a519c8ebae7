package warehouse_test

import (
	"bytes"
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flatfiler/flatfiler/fixtures/gen"
	"github.com/flatfiler/flatfiler/pipeline"
	"github.com/flatfiler/flatfiler/warehouse"
)

// TestParquetExport: the export reads back, with DuckDB and with arrow-go's
// Parquet reader, as the tables it came from; run again, it writes only the
// partners changed since.
func TestParquetExport(t *testing.T) {
	ctx := context.Background()
	tmp := t.TempDir()
	store, err := warehouse.Open(ctx, filepath.Join(tmp, "w.duckdb"), warehouse.Options{AccountDirectory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	engine, err := pipeline.LoadEnrichment(ctx, store, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := &pipeline.Pipeline{Store: store, Enrich: engine, Metrics: pipeline.NewMetrics(prometheus.NewRegistry())}
	asOf := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	ingest := func(partner, path string) {
		t.Helper()
		if _, err := p.IngestFile(ctx, path, pipeline.Options{Partner: partner, AsOf: asOf}); err != nil {
			t.Fatal(err)
		}
	}
	genFile := func(seed uint64) string {
		path := filepath.Join(tmp, "gen.xml")
		var buf bytes.Buffer
		if _, err := gen.Write(&buf, gen.Options{Users: 40, Seed: seed}); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(path, buf.Bytes(), 0o644)
		return path
	}
	ingest("demo", "../fixtures/spec/combined.xml")
	ingest("gen", genFile(1))

	out := filepath.Join(tmp, "export")
	m, err := store.Export(ctx, warehouse.ExportOptions{Dir: out})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Rewritten) != 1 || !strings.Contains(m.Rewritten[0], "no export") || m.LastIngest == nil {
		t.Errorf("first export: %v", m.Rewritten)
	}
	// DuckDB reads the files back as the tables.
	reader, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	totals := func(db *sql.DB, from string) string {
		t.Helper()
		var s string
		q := `SELECT string_agg(partner_id || ':' || n || '/' || total, ' ' ORDER BY partner_id) FROM (
			SELECT partner_id, count(*) AS n, sum(amount) AS total FROM ` + from + ` GROUP BY ALL)`
		if err := db.QueryRow(q).Scan(&s); err != nil {
			t.Fatalf("%s: %v", from, err)
		}
		return s
	}
	want := totals(store.DB(), "enriched_transactions")
	got := totals(reader, "read_parquet('"+out+"/transactions/**/*.parquet', hive_partitioning = true)")
	if got != want || !strings.Contains(want, "demo:6/") {
		t.Errorf("transactions read back: %s\nwant %s", got, want)
	}
	if got, want := totals(reader, "read_parquet('"+out+"/balances/**/*.parquet', hive_partitioning = true)"), totals(store.DB(), "balances"); got != want {
		t.Errorf("balances read back: %s\nwant %s", got, want)
	}
	var users, accounts int
	reader.QueryRow("SELECT count(*) FROM read_parquet('" + out + "/users/**/*.parquet')").Scan(&users)
	reader.QueryRow("SELECT count(*) FROM read_parquet('" + out + "/accounts/**/*.parquet')").Scan(&accounts)
	var wantUsers, wantAccounts int
	store.DB().QueryRow("SELECT count(*) FROM users").Scan(&wantUsers)
	store.DB().QueryRow("SELECT count(*) FROM accounts").Scan(&wantAccounts)
	if users != wantUsers || accounts != wantAccounts {
		t.Errorf("users %d, accounts %d read back; want %d, %d", users, accounts, wantUsers, wantAccounts)
	}

	// arrow-go's reader, apart from DuckDB: each file's rows as the
	// manifest says, and the transactions' amounts to the cent.
	var rows, cents int64
	for _, f := range m.Files {
		path := filepath.Join(out, filepath.FromSlash(f.Path))
		r, err := file.OpenParquetFile(path, false)
		if err != nil {
			t.Fatal(err)
		}
		if r.NumRows() != f.Rows {
			t.Errorf("%s: %d rows, the manifest says %d", f.Path, r.NumRows(), f.Rows)
		}
		if f.Table == "transactions" {
			fr, err := pqarrow.NewFileReader(r, pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
			if err != nil {
				t.Fatal(err)
			}
			tbl, err := fr.ReadTable(ctx)
			if err != nil {
				t.Fatal(err)
			}
			idx := tbl.Schema().FieldIndices("amount")[0]
			for _, chunk := range tbl.Column(idx).Data().Chunks() {
				d := chunk.(*array.Decimal128)
				for i := range d.Len() {
					cents += int64(d.Value(i).LowBits()) // scale 2: cents; amounts fit 64 bits
				}
			}
			rows += tbl.NumRows()
			tbl.Release()
		}
		r.Close()
	}
	var wantRows, wantCents int64
	store.DB().QueryRow("SELECT count(*), sum(amount * 100)::BIGINT FROM transactions").Scan(&wantRows, &wantCents)
	if rows != wantRows || cents != wantCents {
		t.Errorf("arrow-go read %d transactions, %d cents; want %d, %d", rows, cents, wantRows, wantCents)
	}

	// Nothing changed: nothing written.
	demoFile := filepath.Join(out, filepath.FromSlash(m.Files[0].Path))
	before, _ := os.Stat(demoFile)
	m2, err := store.Export(ctx, warehouse.ExportOptions{Dir: out})
	if err != nil {
		t.Fatal(err)
	}
	if len(m2.Rewritten) != 0 || len(m2.Files) != len(m.Files) {
		t.Errorf("export of an unchanged warehouse wrote %v (%d files, was %d)", m2.Rewritten, len(m2.Files), len(m.Files))
	}
	// gen's next file: only gen is written again.
	ingest("gen", genFile(2))
	m3, err := store.Export(ctx, warehouse.ExportOptions{Dir: out})
	if err != nil {
		t.Fatal(err)
	}
	if len(m3.Rewritten) != 1 || !strings.HasPrefix(m3.Rewritten[0], "gen: changed") {
		t.Errorf("after gen's file: %v", m3.Rewritten)
	}
	if after, err := os.Stat(demoFile); err != nil || !after.ModTime().Equal(before.ModTime()) {
		t.Errorf("demo's file was written again: %v", err)
	}
	if got, want := totals(reader, "read_parquet('"+out+"/transactions/**/*.parquet', hive_partitioning = true)"), totals(store.DB(), "enriched_transactions"); got != want {
		t.Errorf("after the second export: %s\nwant %s", got, want)
	}
	// Other options: everything again, said so; --since keeps the months from it.
	m4, err := store.Export(ctx, warehouse.ExportOptions{Dir: out, Since: time.Date(2016, 7, 1, 0, 0, 0, 0, time.UTC), Tables: []string{"transactions"}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(m4.Rewritten, " "), "differ") {
		t.Errorf("another --since: %v", m4.Rewritten)
	}
	var old int
	reader.QueryRow("SELECT count(*) FROM read_parquet('" + out + "/transactions/**/*.parquet', hive_partitioning = true) WHERE month < '2016-07'").Scan(&old)
	if old != 0 {
		t.Errorf("--since 2016-07-01 exported %d older transactions", old)
	}
	if _, err := store.Export(ctx, warehouse.ExportOptions{Dir: out, Tables: []string{"secrets"}}); err == nil {
		t.Error("an unknown table was exported")
	}
}
