package warehouse_test

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/duckdb/duckdb-go/v2"
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
	var out []string
	for rows.Next() {
		out = append(out, fmtAny(rows.Values()[0]))
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
			n = fmtAny(rows.Values()[0])
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

// TestAnalystResultsKeepTheirValues: a SELECT's rows come back from the
// result spool (a Parquet file) as the driver would have given them, type
// by type, in order, across row groups, with NULLs, duplicate names and
// no rows at all.
func TestAnalystResultsKeepTheirValues(t *testing.T) {
	ctx := context.Background()
	store := analystStore(t)
	a, err := store.AnalystSession(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	values := func(t *testing.T, q string, args ...any) [][]any {
		t.Helper()
		st, err := a.Prepare(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := a.Query(ctx, st, args...)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out [][]any
		for rows.Next() {
			out = append(out, slices.Clone(rows.Values()))
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	big38, _ := new(big.Int).SetString("170141183460469231731687303715884105727", 10)
	var uuid duckdb.UUID
	uuid.Scan("0191a2b3-c4d5-7e6f-8a9b-0c1d2e3f4a5b")
	for _, tt := range []struct {
		expr string
		want any
	}{
		{"true", true},
		{"42::TINYINT", int8(42)},
		{"-7::SMALLINT", int16(-7)},
		{"2147483647", int32(2147483647)},
		{"9223372036854775807", int64(9223372036854775807)},
		{"250::UTINYINT", uint8(250)},
		{"18446744073709551615::UBIGINT", uint64(18446744073709551615)},
		{"1.5::FLOAT", float32(1.5)},
		{"0.1::DOUBLE", 0.1},
		{"'-10.00'::DECIMAL(18,2)", duckdb.Decimal{Width: 18, Scale: 2, Value: big.NewInt(-1000)}},
		{"'12345678901234567890.123456'::DECIMAL(38,6)", duckdb.Decimal{Width: 38, Scale: 6, Value: func() *big.Int { n, _ := new(big.Int).SetString("12345678901234567890123456", 10); return n }()}},
		{"170141183460469231731687303715884105727::HUGEINT", big38},
		{"DATE '2016-07-07'", time.Date(2016, 7, 7, 0, 0, 0, 0, time.UTC)},
		{"TIMESTAMPTZ '2016-07-07 12:34:56.123456+00'", time.Date(2016, 7, 7, 12, 34, 56, 123456000, time.UTC)},
		{"TIMESTAMP '2016-07-07 12:34:56.123456'", time.Date(2016, 7, 7, 12, 34, 56, 123456000, time.UTC)},
		{"TIME '23:59:58.000001'", time.Time{}.Add(23*time.Hour + 59*time.Minute + 58*time.Second + time.Microsecond)},
		{"INTERVAL '1 year 2 months 3 days 04:05:06.000007'", duckdb.Interval{Months: 14, Days: 3, Micros: 4*3600e6 + 5*60e6 + 6e6 + 7}},
		{"-INTERVAL '36 hours'", duckdb.Interval{Micros: -36 * 3600e6}},
		{"'0191a2b3-c4d5-7e6f-8a9b-0c1d2e3f4a5b'::UUID", uuid},
		{"'\\xAA\\x00'::BLOB", []byte{0xaa, 0}},
		{"'café'", "café"},
		{"['a', 'b']", `["a","b"]`},
		{"{'name': 'Food', 'amount': 1.5}", `{"name":"Food","amount":1.5}`},
		{"MAP {'k': 1}", `{"k":1}`},
		{"'Food'::ENUM('Food', 'Travel')", "Food"},
		{"NULL::DECIMAL(18,2)", nil},
		{"NULL::INTERVAL", nil},
	} {
		got := values(t, "SELECT "+tt.expr)
		if len(got) != 1 || len(got[0]) != 1 || !reflect.DeepEqual(got[0][0], tt.want) {
			t.Errorf("%s: %#v, want %#v", tt.expr, got, tt.want)
		}
	}
	// Order across many row groups; names that repeat; a trailing comment.
	got := values(t, "SELECT range AS i, range AS i FROM range(100000) WHERE range % 3 = 0 AND range >= $1 ORDER BY range DESC -- newest first", int64(0))
	if len(got) != 33334 || got[0][0] != int64(99999) || got[len(got)-1][1] != int64(0) {
		t.Errorf("ordered rows: %d, first %v, last %v", len(got), got[0], got[len(got)-1])
	}
	for i := 1; i < len(got); i++ {
		if got[i][0].(int64) >= got[i-1][0].(int64) {
			t.Fatalf("row %d: %v after %v", i, got[i][0], got[i-1][0])
		}
	}
	if got := values(t, "SELECT amount FROM transactions WHERE false"); len(got) != 0 {
		t.Errorf("no rows: %v", got)
	}
	// The spool is empty once the rows are read.
	if left, _ := os.ReadDir(store.ResultSpool()); len(left) != 0 {
		t.Errorf("the spool keeps %d files", len(left))
	}
}

// TestAnalystSessionLeavesNoViews: a session's connection is not given
// back to the pool the API reads from with its scoped views on it (they
// shadow the tables: the API's queries would see one partner's rows, or
// miss columns).
func TestAnalystSessionLeavesNoViews(t *testing.T) {
	ctx := context.Background()
	store := analystStore(t)
	for range 3 {
		scoped, err := store.AnalystSession(ctx, []string{"demo"})
		if err != nil {
			t.Fatal(err)
		}
		if err := scoped.Close(); err != nil {
			t.Fatal(err)
		}
	}
	for range 5 {
		var partners int
		if err := store.DB().QueryRowContext(ctx, "SELECT count(DISTINCT partner_id) FROM transactions WHERE account_key IS NOT NULL").Scan(&partners); err != nil || partners != 2 {
			t.Fatalf("the API's read after sessions closed: %d partners, %v", partners, err)
		}
	}
}
