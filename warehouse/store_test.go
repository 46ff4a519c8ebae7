package warehouse

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
)

// A warehouse of the first enrichment build kept enrichments in four
// columns of transactions: opening it moves them to enrichments, whole.
func TestOpenMovesEnrichmentColumns(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "w.duckdb")
	s, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, stmt := range []string{
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
	} {
		if _, err := s.DB().Exec(stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	s.Close()

	s, err = Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var got string
	err = s.DB().QueryRow(`SELECT string_agg(transaction_id || ':' || coalesce(nickname, '-') || '/' || coalesce(tag, '-') || '/' ||
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
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM (SELECT range, md5(range::VARCHAR) AS h FROM range(3000000) ORDER BY h)`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	s.db.SetMaxIdleConns(0) // every query below opens a new connection
	conns := make([]*sql.Conn, 4)
	for i := range conns {
		c, err := s.db.Conn(ctx)
		if err != nil {
			t.Fatalf("connection %d after a spill: %v", i, err)
		}
		defer c.Close()
		conns[i] = c
	}
}
