package warehouse

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// A warehouse of the first enrichment build kept enrichments in four
// columns of transactions: opening it moves them to enrichments, whole.
func TestOpenMovesEnrichmentColumns(t *testing.T) {
	s := reopened(t, []string{
		"ALTER TABLE transactions ADD COLUMN nickname VARCHAR",
		"ALTER TABLE transactions ADD COLUMN tag VARCHAR",
		"ALTER TABLE transactions ADD COLUMN tag_reason VARCHAR",
		"ALTER TABLE transactions ADD COLUMN merchant_key VARCHAR",
		`INSERT INTO transactions (partner_id, account_id, transaction_id, transaction_type, posted_at, posted_on,
			amount, memo, original_name, updated_at, nickname, tag, tag_reason, merchant_key) VALUES
			('p', 'a', '1', 'Debit', now(), current_date, -1, 'DUNKIN #1', 'DUNKIN #1', now(), 'Dunkin', 'Diningout', 'dictionary:dunkin', 'dunkin'),
			('p', 'a', '2', 'Debit', now(), current_date, -2, 'DUNKIN #2', 'DUNKIN #2', now(), 'Dunkin', 'Diningout', 'dictionary:dunkin', 'dunkin'),
			('p', 'a', '3', 'Debit', now(), current_date, -3, 'JOES', 'JOES', now(), 'Joes', NULL, 'unmatched', 'JOES'),
			('p', 'a', '4', 'Debit', now(), current_date, -4, 'OFF', 'OFF', now(), NULL, NULL, NULL, NULL)`,
	})
	defer s.Close()
	var got string
	err := s.DB().QueryRow(`SELECT string_agg(transaction_id || ':' || coalesce(nickname, '-') || '/' || coalesce(tag, '-') || '/' ||
		coalesce(tag_reason, '-') || '/' || coalesce(merchant_key, '-'), ' ' ORDER BY transaction_id) FROM enriched_transactions`).Scan(&got)
	if err != nil {
		t.Fatal(err)
	}
	want := "1:Dunkin/Diningout/dictionary:dunkin/dunkin 2:Dunkin/Diningout/dictionary:dunkin/dunkin 3:Joes/-/unmatched/JOES 4:-/-/-/-"
	if got != want {
		t.Errorf("after the move:\n got %s\nwant %s", got, want)
	}
	var rows, columns int
	if err := s.DB().QueryRow("SELECT count(*) FROM enrichments").Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 2 {
		t.Errorf("%d enrichments, want 2 (one per distinct decision)", rows)
	}
	if err := s.DB().QueryRow("SELECT count(*) FROM duckdb_columns() WHERE table_name = 'transactions' AND column_name = 'nickname'").Scan(&columns); err != nil {
		t.Fatal(err)
	}
	if columns != 0 {
		t.Error("transactions still has its nickname column")
	}
}

// The pool opens connections as API requests come in, also after a load
// has spilled to the temporary directory, which DuckDB then refuses to
// switch: new connections must not set it again.
func TestNewConnectionsAfterSpill(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "w.duckdb"), Options{MemoryLimit: "32MB", Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// A sort beyond the memory limit spills.
	var n int64
	if err := s.db().QueryRowContext(ctx, `SELECT count(*) FROM (SELECT range, md5(range::VARCHAR) AS h FROM range(3000000) ORDER BY h)`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	s.db().SetMaxIdleConns(0) // every query below opens a new connection
	conns := make([]*sql.Conn, 4)
	for i := range conns {
		c, err := s.db().Conn(ctx)
		if err != nil {
			t.Fatalf("connection %d after a spill: %v", i, err)
		}
		defer c.Close()
		conns[i] = c
	}
}

// A warehouse of a build before account_key gets keys when opened: unique
// per account, numbered where the account's transactions first lie in the
// table, copied to its balances and transactions; keys given before stay.
func TestOpenAssignsAccountKeys(t *testing.T) {
	s := reopened(t, []string{
		`INSERT INTO accounts (partner_id, partner_customer_id, account_id, fi_name, account_type, account_class, state, updated_at, account_key) VALUES
			('p', 'u1', 'kept', 'FI', 'checking', 'deposit', 'open', now(), 7),
			('p', 'u1', 'b', 'FI', 'checking', 'deposit', 'open', now(), NULL),
			('p', 'u1', 'b2', 'FI', 'checking', 'deposit', 'open', now(), NULL),
			('p', 'u2', 'a', 'FI', 'checking', 'deposit', 'open', now(), NULL),
			('q', 'u1', 'a', 'FI', 'savings', 'deposit', 'open', now(), NULL),
			('p', 'u3', 'idle', 'FI', 'savings', 'deposit', 'open', now(), NULL)`,
		`INSERT INTO balances (partner_id, account_id, balance_type, amount, currency_code, as_of, updated_at) VALUES
			('p', 'a', 'Current', 1, 'USD', current_date, now()), ('q', 'a', 'Current', 2, 'USD', current_date, now()),
			('p', 'idle', 'Current', 3, 'USD', current_date, now())`,
		// Transactions lie in the order a (of p), b, a (of q).
		`INSERT INTO transactions (partner_id, account_id, transaction_id, transaction_type, posted_at, posted_on,
			amount, memo, original_name, updated_at) VALUES
			('p', 'a', '1', 'debit', now(), current_date, -1, 'm', 'm', now()),
			('p', 'b', '1', 'debit', now(), current_date, -1, 'm', 'm', now()),
			('p', 'a', '2', 'debit', now(), current_date, -1, 'm', 'm', now()),
			('q', 'a', '1', 'debit', now(), current_date, -1, 'm', 'm', now())`,
	})
	defer s.Close()
	var got string
	err := s.DB().QueryRow(`SELECT string_agg(partner_id || '/' || account_id || '=' || account_key, ' ' ORDER BY account_key) FROM accounts`).Scan(&got)
	if err != nil {
		t.Fatal(err)
	}
	// b2 has no transactions: it goes with its owner's first (b's), idle
	// (whose owner has none) last.
	if want := "p/kept=7 p/a=8 p/b=9 p/b2=10 q/a=11 p/idle=12"; got != want {
		t.Errorf("account keys:\n got %s\nwant %s", got, want)
	}
	var wrong int
	err = s.DB().QueryRow(`SELECT
		(SELECT count(*) FROM transactions t LEFT JOIN accounts a USING (partner_id, account_id) WHERE t.account_key IS DISTINCT FROM a.account_key) +
		(SELECT count(*) FROM balances b LEFT JOIN accounts a USING (partner_id, account_id) WHERE b.account_key IS DISTINCT FROM a.account_key)`).Scan(&wrong)
	if err != nil {
		t.Fatal(err)
	}
	if wrong != 0 {
		t.Errorf("%d balances or transactions without their account's key", wrong)
	}
}

// Keys far apart are read in scans of their own, none lost.
func TestByAccountKeyRuns(t *testing.T) {
	scan := func(keys string) string { return "[" + keys + "]" }
	for _, c := range []struct {
		keys []int64
		want string
	}{
		{[]int64{5}, "[5]"},
		{[]int64{3, 1, 2}, "[1, 2, 3]"},
		{[]int64{1, 1 + keyRunGap}, "[1, 257]"},
		{[]int64{900, 1, 2 + keyRunGap}, "[1]\nUNION ALL\n[258]\nUNION ALL\n[900]"},
	} {
		var accts []Account
		for _, k := range c.keys {
			accts = append(accts, Account{Key: k})
		}
		if got := byAccountKey(accts, scan); got != c.want {
			t.Errorf("keys %v: got %q, want %q", c.keys, got, c.want)
		}
	}
}

// DuckDB 1.4.5 corrupted ART indexes when a load deleted indexed rows while
// API reads ran; a warehouse, new or opened from a build that had them, has
// none.
func TestNoARTIndexes(t *testing.T) {
	s := reopened(t, []string{"CREATE INDEX accounts_by_owner ON accounts (partner_customer_id)"})
	defer s.Close()
	var n int
	if err := s.DB().QueryRow("SELECT count(*) FROM duckdb_indexes() WHERE database_name = current_database()").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d indexes after open, want none", n)
	}
}

// reopened makes a warehouse, runs stmts on it (the state an earlier build
// left), and opens it again, as an upgrade does.
func reopened(t *testing.T, stmts []string) *Store {
	t.Helper()
	return reopenedWith(t, stmts, Options{})
}

func reopenedWith(t *testing.T, stmts []string, opts Options) *Store {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "w.duckdb")
	s, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, stmt := range stmts {
		if _, err := s.DB().Exec(stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	s.Close()
	if s, err = Open(ctx, path, opts); err != nil {
		t.Fatal(err)
	}
	return s
}

// The API skips the edits and manual networth queries for accounts and
// users without rows there; after a restart it must still know which have.
func TestOpenKnowsEditsAndManualAccounts(t *testing.T) {
	s := reopened(t, []string{
		`INSERT INTO transaction_edits VALUES ('p', 'a', 't1', 'Mine', NULL, now())`,
		`INSERT INTO networth_accounts VALUES ('p', 'u', 1, 'House', 'asset', 100, now(), now())`,
	})
	defer s.Close()
	ctx := context.Background()
	edits, err := s.edits(ctx, "p", []Account{{ID: "b"}, {ID: "a"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := edits[[2]string{"a", "t1"}].nickname; got != "Mine" {
		t.Errorf("edit after open: nickname %q, want Mine", got)
	}
	manual, err := s.NetworthAccounts(ctx, "p", "u")
	if err != nil {
		t.Fatal(err)
	}
	if len(manual) != 1 {
		t.Errorf("%d manual networth accounts after open, want 1", len(manual))
	}
	// Another partner's account or user of the same id has none.
	if edits, _ := s.edits(ctx, "q", []Account{{ID: "a"}}); len(edits) != 0 {
		t.Errorf("partner q sees partner p's edits: %v", edits)
	}
}

// Serve reads a user's accounts from memory; after a restart they must be
// there, each owner's own, in id order, and told apart by partner.
func TestOpenKnowsAccountsByOwner(t *testing.T) {
	account := func(partner, owner, id string, key int) string {
		return fmt.Sprintf(`INSERT INTO accounts (partner_id, partner_customer_id, account_id, fi_name, nickname, account_type,
			account_class, state, updated_at, account_key, owner_hash) VALUES ('%s', '%s', '%s', 'Bank', NULL, 'checking',
			'deposit', 'open', '2026-01-02 03:04:05+00', %d, 0)`, partner, owner, id, key)
	}
	s := reopenedWith(t, []string{
		account("p", "u", "b", 2), account("p", "u", "a", 1), account("p", "v", "c", 3), account("q", "u", "d", 4),
		`INSERT INTO users (partner_id, partner_customer_id, updated_at) VALUES ('p', 'w', now())`,
	}, Options{AccountDirectory: true})
	defer s.Close()
	ctx := context.Background()
	accts, err := s.Accounts(ctx, "p", "u")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range accts {
		got = append(got, fmt.Sprintf("%s %d %s %s %s %s", a.ID, a.Key, a.Owner, a.Type, a.FIName, a.UpdatedAt.Format(time.RFC3339)))
	}
	want := []string{"a 1 u checking Bank 2026-01-02T03:04:05Z", "b 2 u checking Bank 2026-01-02T03:04:05Z"}
	if !slices.Equal(got, want) {
		t.Errorf("accounts of p/u after open:\n got %q\nwant %q", got, want)
	}
	for _, tt := range []struct {
		partner, user string
		exists        bool
	}{{"p", "u", true}, {"p", "w", true}, {"q", "u", true}, {"q", "v", false}, {"p", "x", false}} {
		if ok, err := s.UserExists(ctx, tt.partner, tt.user); err != nil || ok != tt.exists {
			t.Errorf("UserExists(%s, %s) = %v, %v; want %v", tt.partner, tt.user, ok, err, tt.exists)
		}
	}
}

// Loads of earlier builds left their Arrow views in the warehouse, with
// streams long freed: reading one crashed the process. Opening drops them,
// and nothing else.
func TestOpenDropsStaleArrowViews(t *testing.T) {
	s := reopened(t, []string{`CREATE VIEW arrow_v_users AS SELECT 1 AS x`, `CREATE VIEW arrow_views_of_mine AS SELECT 1 AS x`})
	defer s.Close()
	var views string
	if err := s.DB().QueryRow(`SELECT string_agg(view_name, ',' ORDER BY view_name) FROM duckdb_views() WHERE NOT internal`).Scan(&views); err != nil {
		t.Fatal(err)
	}
	if views != "arrow_views_of_mine,enriched_transactions,transaction_tags" {
		t.Errorf("views after open: %s", views)
	}
}

// TestAdmitRead: at most MaxConcurrentReads reads at once, one while a
// file commits; a read whose request ended gives up its wait.
func TestAdmitRead(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "w.duckdb"), Options{MaxConcurrentReads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	admitted := func(ctx context.Context) (func(), bool) {
		ctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond) // a request that gives up
		defer cancel()
		return s.AdmitRead(ctx)
	}
	r1, ok1 := s.AdmitRead(ctx)
	r2, ok2 := s.AdmitRead(ctx)
	if !ok1 || !ok2 {
		t.Fatal("two reads of two places refused")
	}
	if _, ok := admitted(ctx); ok {
		t.Fatal("a third read admitted with two places")
	}
	r1()
	r3, ok := admitted(ctx)
	if !ok {
		t.Fatal("a read refused after one ended")
	}
	r2()
	r3()
	// While a file commits, one at a time.
	s.committing.Add(1)
	c1, ok := s.AdmitRead(ctx)
	if !ok {
		t.Fatal("a read refused during a commit")
	}
	if _, ok := admitted(ctx); ok {
		t.Fatal("a second read admitted during a commit")
	}
	c1()
	c2, ok := admitted(ctx)
	if !ok {
		t.Fatal("a read refused after the commit's one read ended")
	}
	c2()
	s.committing.Add(-1)
}

// TestReadOnlyOpenOfAnEarlierWarehouse: a warehouse last written by a build
// before user_profiles and account_edits opens read-only (flatfiler sql and
// export offline) with them empty.
func TestReadOnlyOpenOfAnEarlierWarehouse(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "w.duckdb")
	s, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for name := range lateTables {
		if _, err := s.DB().Exec("DROP TABLE " + name); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	ro, err := Open(ctx, path, Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("read-only open of an earlier warehouse: %v", err)
	}
	defer ro.Close()
	if _, err := ro.Export(ctx, ExportOptions{Dir: t.TempDir()}); err != nil {
		t.Errorf("export: %v", err)
	}
	var n int
	if err := ro.DB().QueryRow("SELECT count(*) FROM user_profiles").Scan(&n); err != nil || n != 0 {
		t.Errorf("user_profiles: %d, %v", n, err)
	}
}
