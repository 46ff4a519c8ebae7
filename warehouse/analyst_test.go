package warehouse_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flatfiler/flatfiler/pipeline"
	"github.com/flatfiler/flatfiler/warehouse"
)

func analystStore(t *testing.T) *warehouse.Store {
	t.Helper()
	ctx := context.Background()
	store, err := warehouse.Open(ctx, filepath.Join(t.TempDir(), "w.duckdb"), warehouse.Options{AccountDirectory: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	p := &pipeline.Pipeline{Store: store, Metrics: pipeline.NewMetrics(prometheus.NewRegistry())}
	for _, partner := range []string{"demo", "other"} {
		if _, err := p.IngestFile(ctx, "../fixtures/spec/combined.xml", pipeline.Options{Partner: partner, AsOf: time.Date(2016, 7, 8, 0, 0, 0, 0, time.UTC)}); err != nil {
			t.Fatal(err)
		}
	}
	return store
}

func queryOne(t *testing.T, a *warehouse.AnalystSession, q string) (string, error) {
	t.Helper()
	ctx := context.Background()
	st, err := a.Prepare(ctx, q)
	if err != nil {
		return "", err
	}
	rows, err := a.Query(ctx, st)
	if err != nil {
		return "", err
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out []string
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return "", err
		}
		out = append(out, fmtAny(vals[0]))
	}
	return strings.Join(out, ","), rows.Err()
}

func fmtAny(v any) string {
	if v == nil {
		return "NULL"
	}
	return fmt.Sprint(v)
}

// TestAnalystScopeAndRefusals: a scoped analyst sees only its partners'
// rows, by any SQL tried; statements that write or read outside are refused.
func TestAnalystScopeAndRefusals(t *testing.T) {
	store := analystStore(t)
	ctx := context.Background()
	scoped, err := store.AnalystSession(ctx, []string{"demo"})
	if err != nil {
		t.Fatal(err)
	}
	defer scoped.Close()
	all, err := store.AnalystSession(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer all.Close()
	for _, c := range []struct{ q, scoped, all string }{
		{"SELECT count(DISTINCT partner_id) FROM transactions", "1", "2"},
		{"SELECT string_agg(DISTINCT partner_id, '+' ORDER BY partner_id) FROM accounts", "demo", "demo+other"},
		{"WITH t AS (SELECT * FROM transactions) SELECT count(DISTINCT partner_id) FROM t", "1", "2"},
		{"SELECT count(*) FROM (SELECT partner_id FROM users UNION ALL SELECT partner_id FROM balances) WHERE partner_id = 'other'", "0", "13"},
		{"EXPLAIN SELECT count(*) FROM transactions", "", ""},
	} {
		got, err := queryOne(t, scoped, c.q)
		if err != nil || (c.scoped != "" && got != c.scoped) {
			t.Errorf("scoped %q: %q, %v; want %q", c.q, got, err, c.scoped)
		}
		got, err = queryOne(t, all, c.q)
		if err != nil || (c.all != "" && got != c.all) {
			t.Errorf("all partners %q: %q, %v; want %q", c.q, got, err, c.all)
		}
	}
	for _, q := range []string{
		"SELECT * FROM main.transactions",
		`SELECT * FROM "w".main.transactions`,
		"SELECT * FROM enriched_transactions",
		"SELECT * FROM ingests",
		"SELECT * FROM read_csv('/etc/passwd')",
		"SELECT * FROM '/etc/passwd'",
		"SELECT * FROM glob('/*')",
		"SELECT * FROM query('SELECT * FROM main.transactions')",
		"SELECT getenv('HOME')",
		"SELECT 1 FROM transactions WHERE partner_id IN (SELECT partner_id FROM main.accounts)",
		"DELETE FROM transactions",
		"INSERT INTO users SELECT * FROM users",
		"COPY transactions TO '/tmp/x.csv'",
		"ATTACH '/tmp/x.duckdb'",
		"INSTALL httpfs",
		"LOAD httpfs",
		"PRAGMA database_list",
		"CREATE TABLE x AS SELECT 1",
		"DROP VIEW transactions",
		"SET memory_limit = '10GB'",
		"SELECT 1; DELETE FROM users",
		"EXPLAIN ANALYZE SELECT * FROM main.users",
	} {
		if _, err := queryOne(t, scoped, q); !errors.Is(err, warehouse.ErrRefused) {
			t.Errorf("%q: %v, want refused", q, err)
		}
	}
	// psql's parameterized query: PREPARE and EXECUTE, the body and the
	// arguments held to the same rules.
	ctx2 := context.Background()
	if ok, err := scoped.PrepareNamed(ctx2, "PREPARE q (text) AS SELECT count(*) FROM transactions WHERE partner_id = $1"); !ok || err != nil {
		t.Fatalf("PREPARE: %v %v", ok, err)
	}
	for args, want := range map[string]string{"('demo')": "6", "('other')": "0"} {
		st, ok, err := scoped.Execute(ctx2, "EXECUTE q"+args)
		if !ok || err != nil {
			t.Fatalf("EXECUTE q%s: %v %v", args, ok, err)
		}
		rows, err := scoped.Query(ctx2, st)
		if err != nil {
			t.Fatal(err)
		}
		var n string
		for rows.Next() {
			rows.Scan(&n)
		}
		rows.Close()
		if n != want {
			t.Errorf("EXECUTE q%s: %s, want %s", args, n, want)
		}
	}
	for _, q := range []string{
		"EXECUTE q((SELECT partner_id FROM main.accounts LIMIT 1))",
		"EXECUTE q('demo'); DELETE FROM users",
		"EXECUTE q(1); DROP VIEW users; SELECT (1)",
		"PREPARE p AS SELECT * FROM main.users",
		"PREPARE p AS DELETE FROM users",
	} {
		_, ok1, err1 := scoped.Execute(ctx2, q)
		ok2, err2 := scoped.PrepareNamed(ctx2, q)
		refused := (ok1 && err1 != nil) || (ok2 && err2 != nil)
		if !refused {
			if _, err := queryOne(t, scoped, q); err == nil {
				t.Errorf("%q ran", q)
			}
		}
	}
	if _, ok, err := scoped.Execute(ctx2, "EXECUTE nope('x')"); !ok || err == nil {
		t.Errorf("EXECUTE of a statement never prepared: %v %v", ok, err)
	}

	// The session's views are its own: another connection sees the tables.
	var n int
	store.DB().QueryRow("SELECT count(DISTINCT partner_id) FROM transactions").Scan(&n)
	if n != 2 {
		t.Errorf("the warehouse's own transactions: %d partners", n)
	}
}
