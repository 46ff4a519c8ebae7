package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flatfiler/flatfiler/internal/failpoint"
	"github.com/flatfiler/flatfiler/internal/failpoint/smalldisk"
)

// waitUntil polls the job until ok says so.
func waitUntil(t *testing.T, ts *testServer, key, id string, what string, ok func(job map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		a, err := ts.tryCall(http.MethodGet, "/api/v2/uploads/"+id, nil, key)
		if err == nil && a.Status == http.StatusOK {
			if job := a.Body["upload"].(map[string]any); ok(job) {
				return job
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("job %s: never %s", id, what)
	return nil
}

func waitingForRetry(job map[string]any) bool {
	msg, _ := job["message"].(string)
	return job["status"] == "queued" && job["next_attempt_at"] != nil && strings.Contains(msg, "disk is full")
}

// servedIngests asks the running server (flatfiler sql goes to it) how many
// files its warehouse serves.
func servedIngests(t *testing.T, dir string) string {
	t.Helper()
	code, out, errOut := runCLI(t, "sql", "--db", filepath.Join(dir, "warehouse.duckdb"), "--format", "csv", "SELECT count(*) AS n FROM ingests")
	if code != 0 {
		t.Fatalf("sql: %s", errOut)
	}
	return strings.TrimPrefix(out, "n\n")
}

// TestDiskFullAtEveryWrite fills the server's data disk (a small tmpfs) at
// each write a delivery makes: the notification's record, the warehouse
// before and after COMMIT, and the job's final record. Every time, nothing
// is served before it is durable, the job says why it waits, and once the
// space is freed each file is applied exactly once, without a new upload;
// also across a kill -9 while the disk is full.
func TestDiskFullAtEveryWrite(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes")
	}
	files := newDeliveryFiles(t)
	for _, tt := range []struct {
		point string
		kill  bool   // kill -9 the server while the disk is full, then free it and restart
		log   string // what the server must have logged: the case happened
	}{
		{failpoint.NotifyAccepting, false, "notification failed: disk full"},
		{failpoint.JobClaimed, false, "job attempt failed for the server's storage"},
		{failpoint.LoadBeforeCommit, false, "job attempt failed for the server's storage"},
		{failpoint.LoadBeforeCommit, true, "job finished"},
		// The checkpoint after COMMIT fails: DuckDB invalidates the database.
		{failpoint.LoadCommitted, false, "warehouse reopened"},
		{failpoint.JobIngested, false, "job state saved"},
		{failpoint.JobIngested, true, "job committed before the process stopped; finished from the warehouse"},
	} {
		name := tt.point
		if tt.kill {
			name += "+kill"
		}
		t.Run(name, func(t *testing.T) {
			dir := smalldisk.Mount(t, 96<<20)
			ballast := filepath.Join(dir, "ballast")
			c := startChildEnv(t, dir, []string{faultsEnv + "=" + tt.point + "=fill(" + ballast + ")"}, "--retry-after", "100ms", "--checkpoint-after", "1")
			creds := *c.creds
			ts := c.client(t, creds)
			a := files.deliver(t, c)
			if a == nil {
				t.Fatalf("no answer to the notification:\n%s", c.stderr.String())
			}
			if tt.point == failpoint.NotifyAccepting {
				// Nothing can be recorded: refused whole, files left in the
				// partner's folder, then accepted once there is room.
				if a.Status != http.StatusServiceUnavailable || !strings.Contains(a.Raw, "disk is full") {
					t.Fatalf("notification on a full disk: %d %s", a.Status, a.Raw)
				}
				os.Remove(ballast)
				a = files.deliverAgain(t, c)
			} else if a.Status != http.StatusAccepted {
				t.Fatalf("notify: %d %s", a.Status, a.Raw)
			}
			ids := jobIDs(t, *a)
			switch tt.point {
			case failpoint.JobClaimed, failpoint.LoadBeforeCommit:
				job := waitUntil(t, ts, creds.APIKey, ids[0], "waiting for a retry on a full disk", waitingForRetry)
				t.Logf("while full: %s", job["message"])
				if n := servedIngests(t, dir); n != "0\n" {
					t.Errorf("while the disk is full the server serves %s files, want none", n)
				}
			case failpoint.LoadCommitted, failpoint.JobIngested:
				// The file is durable (its COMMIT synced the log); the job is
				// done, whatever could not be written after.
				job := ts.waitJob(creds.APIKey, ids[0])
				if job["status"] != "success" && job["status"] != "partial-success" {
					t.Fatalf("job with a full disk after its commit: %v", job)
				}
			}
			if tt.kill {
				_ = c.cmd.Process.Kill()
				_ = c.cmd.Wait()
				os.Remove(ballast)
				c = startChild(t, dir)
				c.creds = &creds
				ts = c.client(t, creds)
			} else {
				os.Remove(ballast)
			}
			for _, id := range ids {
				if j := ts.waitJob(creds.APIKey, id); j["status"] != "success" && j["status"] != "partial-success" {
					t.Errorf("job %s after space was freed: %v", id, j)
				}
			}
			// A final record that could not be written is written once
			// there is room, and only then is the file archived.
			deadline := time.Now().Add(30 * time.Second)
			for spooled(dir) > 0 && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
			checkSettled(t, dir, c, files.want, len(files.names))
			if !strings.Contains(c.stderr.String(), tt.log) {
				t.Errorf("the server never logged %q: the case did not happen", tt.log)
			}
			if strings.Contains(c.stderr.String(), "spooled file") {
				t.Errorf("a job lost its spooled file:\n%s", c.stderr.String())
			}
		})
	}
}

func spooled(dir string) int {
	entries, _ := os.ReadDir(filepath.Join(dir, "jobs", "spool"))
	return len(entries)
}
