package warehouse_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/flatfiler/flatfiler/warehouse"
)

// TestReadPoolWhileNoLoad: DuckDB's limit is the read pool's while no file
// loads, the loads' from the first load's begin to the last one's end.
func TestReadPoolWhileNoLoad(t *testing.T) {
	ctx := context.Background()
	store, err := warehouse.Open(ctx, filepath.Join(t.TempDir(), "w.duckdb"), warehouse.Options{MemoryLimit: "128MiB", ReadMemoryLimit: "1GiB"})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	limit := func() string {
		t.Helper()
		var s string
		if err := store.DB().QueryRow("SELECT current_setting('memory_limit')").Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	if got := limit(); got != "1.0 GiB" {
		t.Errorf("no load: %s", got)
	}
	opts := warehouse.LoadOptions{Partner: "demo", AsOf: time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)}
	first, err := store.Begin(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	second, err := store.Begin(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := limit(); got != "128.0 MiB" {
		t.Errorf("two loads: %s", got)
	}
	first.Rollback()
	if got := limit(); got != "128.0 MiB" {
		t.Errorf("one load left: %s", got)
	}
	if err := second.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if got := limit(); got != "1.0 GiB" {
		t.Errorf("after the loads: %s", got)
	}
}
