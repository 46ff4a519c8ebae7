package main

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flatfiler/flatfiler/fixtures/gen"
	"github.com/flatfiler/flatfiler/internal/failpoint"
)

// deliveryFiles are two small generated files and what one clean
// application of both gives.
type deliveryFiles struct {
	names []string
	data  [][]byte
	want  string // fingerprint of a clean run
}

func newDeliveryFiles(t *testing.T) deliveryFiles {
	t.Helper()
	work := t.TempDir()
	f := deliveryFiles{names: []string{"first.xml", "second.xml"}}
	var paths []string
	for i, name := range f.names {
		var buf bytes.Buffer
		if _, err := gen.Write(&buf, gen.Options{Bytes: 3 << 20, Seed: uint64(40 + i), BadRate: 0.001}); err != nil {
			t.Fatal(err)
		}
		f.data = append(f.data, buf.Bytes())
		p := filepath.Join(work, name)
		if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	clean := filepath.Join(work, "clean.duckdb")
	if code, _, errOut := runCLI(t, append([]string{"ingest", "--db", clean, "--partner", "demo"}, paths...)...); code != 0 {
		t.Fatalf("clean ingest: %s", errOut)
	}
	f.want = fingerprint(t, clean)
	return f
}

// deliver uploads the files over SFTP and notifies them. The answer is
// nil if the server died before answering.
func (f deliveryFiles) deliver(t *testing.T, c *child) *apiAnswer {
	t.Helper()
	sc, conn, err := dialChildSFTP(c.sftp, *c.creds)
	if err != nil {
		t.Fatal(err)
	}
	for i, name := range f.names {
		upload(t, sc, name, f.data[i])
	}
	sc.Close()
	conn.Close()
	return c.client(t, *c.creds).tryNotify(c.creds.APIKey, f.names, f.sums())
}

// waitExit waits for a child that is expected to kill itself and reports
// how it ended.
func waitExit(t *testing.T, c *child, within time.Duration) (killed bool) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- c.cmd.Wait() }()
	select {
	case err := <-done:
		return killedBySIGKILL(err)
	case <-time.After(within):
		t.Fatalf("server did not reach its fault point within %s:\n%s", within, c.stderr.String())
		return false
	}
}

// checkSettled stops the server gracefully and checks what the crash test
// promises: the warehouse is one clean application of the jobs' files or
// batches, with one ingests row each, and nothing is left in the spool or
// the spill directory.
func checkSettled(t *testing.T, dir string, c *child, want string, jobs int) {
	t.Helper()
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	if err := c.cmd.Wait(); err != nil {
		t.Errorf("server exit after SIGTERM: %v", err)
	}
	db := filepath.Join(dir, "warehouse.duckdb")
	if got := fingerprint(t, db); got != want {
		t.Errorf("warehouse:\n%s\nwant, as after one clean run:\n%s", got, want)
	}
	if code, out, errOut := runCLI(t, "sql", "--db", db, "--format", "csv", "SELECT count(*) AS n, count(DISTINCT job_id) AS jobs FROM ingests"); code != 0 || out != fmt.Sprintf("n,jobs\n%d,%[1]d\n", jobs) {
		t.Errorf("ingests: exit %d, %q %s, want one row per job", code, out, errOut)
	}
	for _, leftovers := range []string{filepath.Join(dir, "jobs", "spool"), db + ".tmp"} {
		entries, _ := os.ReadDir(leftovers)
		for _, e := range entries {
			t.Errorf("left in %s: %s", leftovers, e.Name())
		}
	}
}

// TestCrashAtEveryFaultPoint crashes a real server (SIGKILL, from inside,
// at the named moment) at every fault point between "notification
// accepted" and "archived", restarts it, notifies again as a partner that
// got no answer would, and checks the warehouse equals one clean
// application of the files, every job ends applied, and nothing is left
// behind.
func TestCrashAtEveryFaultPoint(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes")
	}
	files := newDeliveryFiles(t)
	var crashed []string
	for _, point := range failpoint.Points {
		t.Run(point, func(t *testing.T) {
			dir := t.TempDir()
			first := startChildEnv(t, dir, []string{faultsEnv + "=" + point + "=crash"}, "--shutdown-grace", "0s")
			creds := *first.creds
			files.deliver(t, first)
			if !waitExit(t, first, time.Minute) {
				t.Fatalf("server did not die by SIGKILL at %s:\n%s", point, first.stderr.String())
			}
			if !strings.Contains(first.stderr.String(), "failpoint "+point+": crash") {
				t.Fatalf("server died, but not at %s:\n%s", point, first.stderr.String())
			}
			crashed = append(crashed, point)
			plantSpillLeftover(t, filepath.Join(dir, "warehouse.duckdb"))

			second := startChild(t, dir)
			second.creds = &creds
			ts := second.client(t, creds)
			// A partner that got no answer, or a 202, notifies again; files
			// of a notification never answered are back in its folder.
			a := files.deliverAgain(t, second)
			for _, id := range jobIDs(t, *a) {
				if j := ts.waitJob(creds.APIKey, id); j["status"] != "success" && j["status"] != "partial-success" {
					t.Errorf("job %s after restart: %v", id, j)
				}
			}
			checkSettled(t, dir, second, files.want, len(files.names))
		})
	}
	t.Logf("crashed at %d points: %s", len(crashed), strings.Join(crashed, ", "))
	if !slices.Equal(crashed, failpoint.Points) {
		t.Errorf("crashed at %v, want every point %v", crashed, failpoint.Points)
	}
}

// deliverAgain notifies the files once more after a restart. Each file is
// back in the partner's folder (a notification never answered is rolled
// back) or in the spool (the notification stands: a duplicate).
func (f deliveryFiles) deliverAgain(t *testing.T, c *child) *apiAnswer {
	t.Helper()
	a := c.client(t, *c.creds).tryNotify(c.creds.APIKey, f.names, f.sums())
	if a == nil || a.Status != http.StatusAccepted {
		t.Fatalf("notification after restart: %+v", a)
	}
	return a
}

func (f deliveryFiles) sums() []string {
	var out []string
	for _, d := range f.data {
		sum := md5.Sum(d)
		out = append(out, hex.EncodeToString(sum[:]))
	}
	return out
}

// TestIngestCrashAtEveryLoadPoint does the same for `flatfiler ingest`:
// killed at each of the load's points, the warehouse holds none of the
// file or all of it, and running the same command again gives one clean
// application.
func TestIngestCrashAtEveryLoadPoint(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	work := t.TempDir()
	file := filepath.Join(work, "nightly.xml")
	var buf bytes.Buffer
	if _, err := gen.Write(&buf, gen.Options{Bytes: 3 << 20, Seed: 77, BadRate: 0.001}); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(file, buf.Bytes(), 0o644)
	clean := filepath.Join(work, "clean.duckdb")
	if code, _, errOut := runCLI(t, "ingest", "--db", clean, file); code != 0 {
		t.Fatal(errOut)
	}
	want := fingerprint(t, clean)
	for _, tt := range []struct {
		point   string
		applied bool // the crash comes after the file is durable
	}{
		{failpoint.LoadStaged, false},
		{failpoint.LoadBeforeCommit, false},
		{failpoint.LoadCommitted, true},
	} {
		t.Run(tt.point, func(t *testing.T) {
			db := filepath.Join(t.TempDir(), "w.duckdb")
			killed, stderr := runChild(t, []string{faultsEnv + "=" + tt.point + "=crash"}, "ingest", "--db", db, "--memory-limit", "32MB", file)
			if !killed || !strings.Contains(stderr, "failpoint "+tt.point+": crash") {
				t.Fatalf("ingest did not crash at %s: %s", tt.point, stderr)
			}
			var after string
			if _, err := os.Stat(db); err == nil {
				after = fingerprint(t, db)
			}
			switch {
			case tt.applied && after != want:
				t.Errorf("crash after COMMIT: warehouse\n%s\nwant the whole file:\n%s", after, want)
			case !tt.applied && after != "" && after != emptyFingerprint:
				t.Errorf("crash before COMMIT: warehouse holds part of the file:\n%s", after)
			}
			plantSpillLeftover(t, db)
			if code, _, errOut := runCLI(t, "ingest", "--db", db, file); code != 0 {
				t.Fatalf("ingest again: %s", errOut)
			}
			if got := fingerprint(t, db); got != want {
				t.Errorf("after running ingest again:\n%s\nwant:\n%s", got, want)
			}
			entries, _ := os.ReadDir(db + ".tmp")
			for _, e := range entries {
				t.Errorf("left in the spill directory: %s", e.Name())
			}
		})
	}
}

// plantSpillLeftover leaves in the warehouse's spill directory what a
// process killed while DuckDB spilled leaves there (DuckDB's own names);
// small test files do not spill by themselves.
func plantSpillLeftover(t *testing.T, db string) {
	t.Helper()
	if err := os.MkdirAll(db+".tmp", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(db+".tmp", "duckdb_temp_storage_DEFAULT-0.tmp"), make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
}

// emptyFingerprint is an empty warehouse's fingerprint.
const emptyFingerprint = "users,accounts,balances,properties,transactions,total,distinct_transactions\n0,0,0,0,0,,0\n"
