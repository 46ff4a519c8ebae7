package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestIngestJSONAndSQL(t *testing.T) {
	db := filepath.Join(t.TempDir(), "w.duckdb")
	code, out, errOut := runCLI(t, "ingest", "--db", db, "--json", "--as-of", "2026-11-20", "../../fixtures/spec/combined.xml")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var rep struct {
		Status string `json:"status"`
		Totals map[string]struct{ Total, Success, Error int64 }
		Errors []map[string]any `json:"errors"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if rep.Status != "partial-success" || rep.Totals["accounts"].Error != 1 || rep.Errors[0]["field"] != "AccountType" {
		t.Errorf("report %s", out)
	}

	code, out, errOut = runCLI(t, "sql", "--db", db, "--format", "csv", "SELECT transaction_id, amount FROM transactions WHERE transaction_id IN ('83', '85') ORDER BY 1")
	if code != 0 || out != "transaction_id,amount\n83,-10.00\n85,20.00\n" {
		t.Errorf("exit %d, output %q %s", code, out, errOut)
	}
	code, _, errOut = runCLI(t, "sql", "--db", db, "DELETE FROM users")
	if code == 0 || !strings.Contains(strings.ToLower(errOut), "read-only") {
		t.Errorf("sql must be read-only: exit %d, %s", code, errOut)
	}
}

func TestExitStatusOnlyWhenNotApplied(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "w.duckdb")
	bad := filepath.Join(dir, "cut.xml")
	data, _ := os.ReadFile("../../fixtures/spec/combined.xml")
	os.WriteFile(bad, data[:len(data)/2], 0o644)

	// Every record rejected is still an applied file.
	code, out, _ := runCLI(t, "ingest", "--db", db, "../../fixtures/spec/transactions.xml")
	if code != 0 || !strings.Contains(out, "unknown account") {
		t.Errorf("exit %d: %s", code, out)
	}
	code, out, _ = runCLI(t, "ingest", "--db", db, bad, "../../fixtures/spec/users.xml")
	if code != 1 || !strings.Contains(out, "cut.xml: NOT APPLIED") || !strings.Contains(out, "users.xml: success") {
		t.Errorf("exit %d: %s", code, out)
	}
	if code, _, _ := runCLI(t, "ingest", "--type", "bogus", "--db", db, bad); code != 2 {
		t.Errorf("a bad flag must exit 2, got %d", code)
	}
}

func TestGenIsDeterministic(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.xml"), filepath.Join(dir, "b.xml")
	for _, f := range []string{a, b} {
		if code, _, errOut := runCLI(t, "gen", "--users", "50", "--seed", "9", "--bad-rate", "0.05", "-o", f); code != 0 {
			t.Fatal(errOut)
		}
	}
	da, _ := os.ReadFile(a)
	db, _ := os.ReadFile(b)
	if len(da) < 10000 || !bytes.Equal(da, db) {
		t.Errorf("same seed gave different files (%d and %d bytes)", len(da), len(db))
	}
	if code, _, errOut := runCLI(t, "gen", "--size", "300KB", "-o", a); code != 0 {
		t.Fatal(errOut)
	}
	if st, _ := os.Stat(a); st.Size() < 300_000 || st.Size() > 400_000 {
		t.Errorf("--size 300KB wrote %d bytes", st.Size())
	}
}
