package pgwire_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flatfiler/flatfiler/api/pgwire"
	"github.com/flatfiler/flatfiler/pipeline"
	"github.com/flatfiler/flatfiler/warehouse"
)

type endpoint struct {
	store *warehouse.Store
	addr  string
	pw    map[string]string
}

// start serves a warehouse holding the spec's example for partners demo
// and other, with analysts ana (all partners) and dee (demo only).
func start(t *testing.T, timeout time.Duration, tweaks ...func(*pgwire.Config)) *endpoint {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	store, err := warehouse.Open(ctx, filepath.Join(dir, "warehouse.duckdb"), warehouse.Options{AccountDirectory: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	p := &pipeline.Pipeline{Store: store, Metrics: pipeline.NewMetrics(prometheus.NewRegistry())}
	for _, partner := range []string{"demo", "other"} {
		if _, err := p.IngestFile(ctx, "../../fixtures/spec/combined.xml", pipeline.Options{Partner: partner, AsOf: time.Date(2016, 7, 8, 0, 0, 0, 0, time.UTC)}); err != nil {
			t.Fatal(err)
		}
	}
	analysts, err := pgwire.OpenAnalysts(filepath.Join(dir, "analysts"))
	if err != nil {
		t.Fatal(err)
	}
	e := &endpoint{store: store, pw: map[string]string{}}
	if e.pw["ana"], err = analysts.Add("ana", nil, true); err != nil {
		t.Fatal(err)
	}
	if e.pw["dee"], err = analysts.Add("dee", []string{"demo"}, false); err != nil {
		t.Fatal(err)
	}
	cfg := pgwire.Config{Store: store, Analysts: analysts, StatementTimeout: timeout, MaxQueries: 2, Logger: slog.New(slog.DiscardHandler)}
	for _, tweak := range tweaks {
		tweak(&cfg)
	}
	srv, err := pgwire.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	e.addr = ln.Addr().String()
	return e
}

func (e *endpoint) connect(t *testing.T, user string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), fmt.Sprintf("postgres://%s:%s@%s/warehouse?sslmode=disable", user, e.pw[user], e.addr))
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

func TestPgxTypedQueries(t *testing.T) {
	ctx := context.Background()
	e := start(t, time.Minute)
	c := e.connect(t, "ana")

	var n int64
	if err := c.QueryRow(ctx, "SELECT count(*) FROM transactions").Scan(&n); err != nil || n != 12 {
		t.Fatalf("count: %d, %v", n, err)
	}
	// A parameterized query, extended protocol, binary results: to the cent and the microsecond.
	var amount pgtype.Numeric
	var postedAt, postedOn time.Time
	var memo string
	err := c.QueryRow(ctx, `SELECT amount, posted_at, posted_on, memo FROM transactions WHERE partner_id = $1 AND transaction_id = $2`,
		"demo", "83").Scan(&amount, &postedAt, &postedOn, &memo)
	if err != nil {
		t.Fatal(err)
	}
	f, _ := amount.Float64Value()
	if f.Float64 != -10 || amount.Exp != -2 || !postedAt.Equal(time.Date(2016, 7, 7, 0, 0, 0, 0, time.UTC)) ||
		!postedOn.Equal(time.Date(2016, 7, 7, 0, 0, 0, 0, time.UTC)) || memo != "Dunkin Donuts" {
		t.Errorf("transaction 83: %v (exp %d) %s %s %q", f.Float64, amount.Exp, postedAt, postedOn, memo)
	}
	var sum pgtype.Numeric
	if err := c.QueryRow(ctx, "SELECT sum(amount) FROM transactions WHERE partner_id = 'demo'").Scan(&sum); err != nil {
		t.Fatal(err)
	}
	var want string
	e.store.DB().QueryRow("SELECT sum(amount)::VARCHAR FROM transactions WHERE partner_id = 'demo'").Scan(&want)
	if got, _ := sum.Value(); got != want {
		t.Errorf("sum: %v, the warehouse %s", got, want)
	}
	// Microseconds survive.
	var ts time.Time
	if err := c.QueryRow(ctx, "SELECT TIMESTAMPTZ '2016-07-07 12:34:56.123456+00'").Scan(&ts); err != nil || ts.Nanosecond() != 123456000 {
		t.Errorf("timestamp: %s, %v", ts, err)
	}
	// Lists come as JSON text.
	var tags string
	if err := c.QueryRow(ctx, "SELECT ['a', 'b']").Scan(&tags); err != nil || tags != `["a","b"]` {
		t.Errorf("a list: %q, %v", tags, err)
	}
	// What clients send on connect.
	if _, err := c.Exec(ctx, "SET application_name = 'dbeaver'"); err != nil {
		t.Errorf("SET: %v", err)
	}
	var version string
	if err := c.QueryRow(ctx, "SHOW server_version").Scan(&version); err != nil || version == "" {
		t.Errorf("SHOW server_version: %q %v", version, err)
	}
	// A million rows stream through (the server's memory: see
	// TestAnalystResultKeepsMemoryFlat), described before the parameter
	// that sizes them is bound.
	rows, err := c.Query(ctx, "SELECT range AS i FROM range($1::BIGINT)", 1_000_000)
	if err != nil {
		t.Fatal(err)
	}
	count := 0
	for rows.Next() {
		count++
	}
	if rows.Err() != nil || count != 1_000_000 {
		t.Errorf("streamed %d rows, %v", count, rows.Err())
	}
}

func TestRefusedAndScoped(t *testing.T) {
	ctx := context.Background()
	e := start(t, 300*time.Millisecond)
	dee := e.connect(t, "dee")
	for _, q := range []string{
		"DELETE FROM users", "COPY transactions TO '/tmp/x.csv'", "SELECT * FROM read_csv('/etc/passwd')",
		"ATTACH '/tmp/x.duckdb'", "SELECT * FROM main.transactions", "INSTALL httpfs",
	} {
		_, err := dee.Exec(ctx, q)
		if sqlState(err) != "42501" {
			t.Errorf("%q: %v (SQLSTATE %q), want 42501", q, err, sqlState(err))
		}
	}
	var partners int
	if err := dee.QueryRow(ctx, "SELECT count(DISTINCT partner_id) FROM transactions").Scan(&partners); err != nil || partners != 1 {
		t.Errorf("dee sees %d partners, %v", partners, err)
	}
	// The statement timeout ends a long query.
	_, err := dee.Exec(ctx, "SELECT count(*) FROM range(100000000000)")
	if sqlState(err) != "57014" {
		t.Errorf("a long query: %v (SQLSTATE %q), want 57014", err, sqlState(err))
	}
	// Wrong password, wrong database.
	if _, err := pgx.Connect(ctx, fmt.Sprintf("postgres://dee:nope@%s/warehouse?sslmode=disable", e.addr)); sqlState(err) != "28P01" {
		t.Errorf("a wrong password: %v", err)
	}
	if _, err := pgx.Connect(ctx, fmt.Sprintf("postgres://dee:%s@%s/postgres?sslmode=disable", e.pw["dee"], e.addr)); sqlState(err) != "3D000" {
		t.Errorf("another database: %v", err)
	}
}

// TestTLSAndAddresses: with a certificate, clients connect over TLS; without
// one, the endpoint refuses to listen off loopback.
func TestTLSAndAddresses(t *testing.T) {
	ctx := context.Background()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	e := start(t, time.Minute)
	analysts, _ := pgwire.OpenAnalysts(filepath.Join(t.TempDir(), "analysts"))
	pw, _ := analysts.Add("tls", nil, true)
	srv, err := pgwire.New(pgwire.Config{Store: e.store, Analysts: analysts, TLS: &tls.Config{Certificates: []tls.Certificate{cert}},
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.Serve(ln)
	defer srv.Close()
	c, err := pgx.Connect(ctx, fmt.Sprintf("postgres://tls:%s@%s/warehouse?sslmode=require", pw, ln.Addr()))
	if err != nil {
		t.Fatalf("TLS connect: %v", err)
	}
	defer c.Close(ctx)
	if !c.PgConn().Conn().(*tls.Conn).ConnectionState().HandshakeComplete {
		t.Error("not over TLS")
	}
	var n int64
	if err := c.QueryRow(ctx, "SELECT count(*) FROM users").Scan(&n); err != nil || n == 0 {
		t.Errorf("over TLS: %d %v", n, err)
	}

	plain, _ := pgwire.New(pgwire.Config{Store: e.store, Analysts: analysts, Logger: slog.New(slog.DiscardHandler)})
	wide, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Skipf("no wildcard listener here: %v", err)
	}
	defer wide.Close()
	if err := plain.Serve(wide); err == nil || !strings.Contains(err.Error(), "--sql-tls-cert") {
		t.Errorf("clear text off loopback: %v", err)
	}
}

// TestSessionsEndWithTheirConnections: a client gone gives back its
// warehouse connection.
func TestSessionsEndWithTheirConnections(t *testing.T) {
	ctx := context.Background()
	e := start(t, time.Minute)
	before := e.store.DB().Stats().InUse
	for range 5 {
		c, err := pgx.Connect(ctx, fmt.Sprintf("postgres://ana:%s@%s/warehouse?sslmode=disable", e.pw["ana"], e.addr))
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		if err := c.QueryRow(ctx, "SELECT count(*) FROM users").Scan(&n); err != nil {
			t.Fatal(err)
		}
		c.Close(ctx)
	}
	deadline := time.Now().Add(5 * time.Second)
	for e.store.DB().Stats().InUse > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // the server notices the close on its own goroutine
	}
	if inUse := e.store.DB().Stats().InUse; inUse > before {
		t.Errorf("%d warehouse connections still held after 5 sessions ended (%d before)", inUse, before)
	}
}

// TestCatalogForClients: what JDBC drivers and BI tools read of pg_catalog
// and information_schema describes the analyst's four tables, with
// Postgres's types, functions and casts, and nothing of the warehouse's
// own tables; the catalog's database is not an analyst's to read.
func TestCatalogForClients(t *testing.T) {
	ctx := context.Background()
	e := start(t, time.Minute)
	c := e.connect(t, "dee")
	for _, tt := range []struct{ query, want string }{
		{"SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_catalog.pg_class", "accounts,balances,transactions,users"},
		{"SELECT string_agg(table_name, ',' ORDER BY table_name) FROM information_schema.tables", "accounts,balances,transactions,users"},
		{"SELECT count(*)::VARCHAR FROM pg_class WHERE relname IN ('ingests', 'enrichments')", "0"},
		{`SELECT pg_catalog.format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a
			JOIN pg_catalog.pg_class c ON a.attrelid = c.oid WHERE c.relname = 'transactions' AND a.attname = 'amount'`, "numeric(18,2)"},
		{"SELECT t.typname FROM pg_attribute a JOIN pg_type t ON a.atttypid = t.oid WHERE a.attrelid = 'transactions'::regclass AND a.attname = 'posted_at'", "timestamptz"},
		{"SELECT (pg_catalog.current_schemas(false))[1]", "public"},
		{"SELECT version()", "PostgreSQL 16.0 (flatfiler, DuckDB)"},
		{"SELECT current_setting('server_version_num')", "160000"},
		{"SELECT pg_catalog.current_setting('DateStyle')", "ISO, MDY"},
		{"SELECT nspname FROM pg_namespace WHERE nspname ~ 'pub'", "public"},
	} {
		var got string
		if err := c.QueryRow(ctx, tt.query).Scan(&got); err != nil || got != tt.want {
			t.Errorf("%s: %q %v, want %q", tt.query, got, err, tt.want)
		}
	}
	if _, err := c.Exec(ctx, "SELECT * FROM flatfiler_pg.main.pg_class"); sqlState(err) != "42501" {
		t.Errorf("the catalog's database read directly: %v", err)
	}
}

// TestResultSizeCap: a result past --sql-max-result-size is refused with
// SQLSTATE 54000 and the way around it, and leaves nothing in the spool; a
// smaller one is answered.
func TestResultSizeCap(t *testing.T) {
	ctx := context.Background()
	e := start(t, time.Minute, func(c *pgwire.Config) { c.MaxResultBytes = 1 << 20 })
	c := e.connect(t, "ana")
	_, err := c.Exec(ctx, "SELECT md5(range::VARCHAR) || md5((range * 7)::VARCHAR) FROM range(500000)")
	if sqlState(err) != "54000" || !strings.Contains(err.Error(), "flatfiler export") {
		t.Errorf("a 30 MB result under a 1 MB cap: %v", err)
	}
	var n int64
	if err := c.QueryRow(ctx, "SELECT count(*) FROM transactions").Scan(&n); err != nil || n != 12 {
		t.Errorf("a small result after: %d %v", n, err)
	}
	if left, _ := os.ReadDir(e.store.ResultSpool()); len(left) != 0 {
		t.Errorf("the spool keeps %d files", len(left))
	}
}

// TestREADMEQueries: the example queries README gives analysts run on the
// endpoint as printed, scoped, and answer rows where the spec's example
// data has them.
func TestREADMEQueries(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(readme), "Questions analysts ask")
	_, block, ok2 := strings.Cut(after, "```sql\n")
	block, _, ok3 := strings.Cut(block, "```")
	if !ok || !ok2 || !ok3 {
		t.Fatal("README has no block of analysts' example queries")
	}
	var queries []string
	for _, q := range strings.Split(block, ";\n") {
		if strings.TrimSpace(q) != "" {
			queries = append(queries, q)
		}
	}
	if len(queries) != 4 {
		t.Fatalf("%d queries in README's block", len(queries))
	}
	ctx := context.Background()
	e := start(t, time.Minute)
	c := e.connect(t, "dee")
	for i, q := range queries {
		rows, err := c.Query(ctx, q)
		if err != nil {
			t.Fatalf("README query %d: %v\n%s", i+1, err, q)
		}
		n, partners := 0, map[any]bool{}
		for rows.Next() {
			v, _ := rows.Values()
			partners[v[0]] = true
			n++
		}
		if err := rows.Err(); err != nil {
			t.Errorf("README query %d: %v", i+1, err)
		}
		// The active users' query asks for the last 30 days; the example
		// data is of 2016.
		if wantRows := i != 2; wantRows && n == 0 || len(partners) > 1 || n > 0 && !partners["demo"] {
			t.Errorf("README query %d: %d rows, partners %v", i+1, n, partners)
		}
	}
}
