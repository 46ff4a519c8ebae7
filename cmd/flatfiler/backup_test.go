package main

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flatfiler/flatfiler/fixtures/gen"
)

// TestBackupWhileServingThenRestore: a backup taken through a running
// server, with a second file delivered after it, restores (served as the
// data directory) to the state of the backup: the first file applied once,
// the second not; the partner's credentials, jobs and keys as they were;
// ready. Then a backup of a stopped server's directory, made directly.
func TestBackupWhileServingThenRestore(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes")
	}
	dir, backupDir := t.TempDir(), filepath.Join(t.TempDir(), "backup")
	first := startChild(t, dir)
	creds := *first.creds
	ts := first.client(t, creds)
	deliver := func(ts *testServer, sftpAddr, name string) string {
		t.Helper()
		c, conn, err := dialChildSFTP(sftpAddr, creds)
		if err != nil {
			t.Fatal(err)
		}
		sum := upload(t, c, name, specFile(t, name))
		c.Close()
		conn.Close()
		a := ts.notify(creds.APIKey, []string{name}, []string{sum})
		if a.Status != http.StatusAccepted {
			t.Fatalf("notify %s: %s", name, a.Raw)
		}
		id := jobIDs(t, a)[0]
		if j := ts.waitJob(creds.APIKey, id); j["status"] == "error" {
			t.Fatalf("%s: %v", name, j)
		}
		return id
	}
	kept := deliver(ts, first.sftp, "combined.xml")
	code, out, errOut := runCLI(t, "backup", "--data", dir, "--out", backupDir)
	if code != 0 || !strings.Contains(out, "backed up to") {
		t.Fatalf("backup while serving: %d %s %s", code, out, errOut)
	}
	lost := deliver(ts, first.sftp, "accounts.xml")
	if code, _, _ := runCLI(t, "backup", "--data", dir, "--out", backupDir); code == 0 {
		t.Error("a backup over a directory not empty")
	}
	first.cmd.Process.Kill()
	first.cmd.Wait()
	if _, err := os.Stat(filepath.Join(backupDir, "admin.json")); err == nil {
		t.Error("the backup holds the running server's admin token")
	}

	restored := startChild(t, backupDir)
	if restored.creds != nil {
		t.Fatal("the restored server made a new demo partner: the partners were not restored")
	}
	ts = restored.client(t, creds)
	if a := ts.call(http.MethodGet, "/readyz", nil, ""); a.Status != http.StatusOK {
		t.Errorf("restored server not ready: %s", a.Raw)
	}
	if a := ts.call(http.MethodGet, "/api/v2/uploads/"+kept, nil, creds.APIKey); a.Status != http.StatusOK {
		t.Errorf("the job before the backup: %d %s", a.Status, a.Raw)
	}
	if a := ts.call(http.MethodGet, "/api/v2/uploads/"+lost, nil, creds.APIKey); a.Status != http.StatusNotFound {
		t.Errorf("the job after the backup: %d %s", a.Status, a.Raw)
	}
	restored.cmd.Process.Kill()
	restored.cmd.Wait()
	db := filepath.Join(backupDir, "warehouse.duckdb")
	for q, want := range map[string]string{
		"SELECT string_agg(file, ',') AS files FROM ingests": "files\ncombined.xml\n", // once; not accounts.xml
		"SELECT count(*) AS n FROM transactions":             "n\n6\n",
	} {
		if code, got, errOut := runCLI(t, "sql", "--db", db, "--format", "csv", q); code != 0 || got != want {
			t.Errorf("%s: %q %s, want %q", q, got, errOut, want)
		}
	}
	// The SFTP host keys came along: partners' clients keep trusting them.
	for _, f := range []string{"host_keys", "partners"} {
		if _, err := os.Stat(filepath.Join(backupDir, f)); err != nil {
			t.Errorf("%s not in the backup: %v", f, err)
		}
	}

	// No server: the command makes the copy itself.
	offline := filepath.Join(t.TempDir(), "offline")
	if code, out, errOut := runCLI(t, "backup", "--data", backupDir, "--out", offline); code != 0 {
		t.Fatalf("backup of a stopped server: %d %s %s", code, out, errOut)
	}
	if code, got, _ := runCLI(t, "sql", "--db", filepath.Join(offline, "warehouse.duckdb"), "--format", "csv", "SELECT count(*) AS n FROM transactions"); code != 0 || got != "n\n6\n" {
		t.Errorf("offline backup: %q", got)
	}
}

// TestBackupDuringAJobRestoresItOnce: a backup taken while a job applies a
// file restores to a server that ends with the file applied exactly once,
// whether the snapshot caught its commit or not.
func TestBackupDuringAJobRestoresItOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes")
	}
	var buf bytes.Buffer
	if _, err := gen.Write(&buf, gen.Options{Bytes: 16 << 20, Seed: 21}); err != nil {
		t.Fatal(err)
	}
	dir, backupDir := t.TempDir(), filepath.Join(t.TempDir(), "backup")
	srv := startChild(t, dir)
	creds := *srv.creds
	ts := srv.client(t, creds)
	c, conn, err := dialChildSFTP(srv.sftp, creds)
	if err != nil {
		t.Fatal(err)
	}
	sum := upload(t, c, "big.xml", buf.Bytes())
	c.Close()
	conn.Close()
	a := ts.notify(creds.APIKey, []string{"big.xml"}, []string{sum})
	id := jobIDs(t, a)[0]
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(5 * time.Millisecond) {
		j := ts.call(http.MethodGet, "/api/v2/uploads/"+id, nil, creds.APIKey).Body["upload"].(map[string]any)
		if j["status"] == "processing" || time.Now().After(deadline) {
			break
		}
	}
	if code, out, errOut := runCLI(t, "backup", "--data", dir, "--out", backupDir); code != 0 {
		t.Fatalf("backup: %s %s", out, errOut)
	}
	srv.cmd.Process.Kill()
	srv.cmd.Wait()
	restored := startChild(t, backupDir)
	if j := restored.client(t, creds).waitJob(creds.APIKey, id); j["status"] == "error" {
		t.Fatalf("the job on the restored server: %v", j)
	}
	restored.cmd.Process.Signal(syscall.SIGTERM)
	restored.cmd.Wait()
	q := "SELECT count(*) AS n FROM ingests WHERE job_id = '" + id + "'"
	if code, got, errOut := runCLI(t, "sql", "--db", filepath.Join(backupDir, "warehouse.duckdb"), "--format", "csv", q); code != 0 || got != "n\n1\n" {
		t.Errorf("the file applied %q times on the restored server (%s)", got, errOut)
	}
}
