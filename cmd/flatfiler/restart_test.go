package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/flatfiler/flatfiler/fixtures/gen"
	"github.com/flatfiler/flatfiler/intake/partner"
	"github.com/flatfiler/flatfiler/warehouse"
)

// childEnv makes the test binary run flatfiler itself, so tests can kill a
// real server process.
const childEnv = "FLATFILER_TEST_CHILD_ARGS"

func TestMain(m *testing.M) {
	if args := os.Getenv(childEnv); args != "" {
		limitGoMemory()
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := run(ctx, strings.Split(args, "\x1f"), os.Stdout, os.Stderr)
		stop()
		if os.Getenv(peakEnv) != "" {
			reportPeak(os.Stderr)
		}
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// peakEnv makes a child report its own peak RSS when it ends. The rusage
// of a child the test waits for is no good: Go starts children with vfork,
// the child shares the test's memory until exec, and ru_maxrss keeps that
// peak too (a test that had just built a 64 MB string read 157 MB for a
// child that used 66). VmHWM is the peak of the memory the child has since
// exec.
const peakEnv = "FLATFILER_TEST_REPORT_PEAK"

func reportPeak(w io.Writer) {
	status, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			fmt.Fprintf(w, "\npeak: %s\n", strings.TrimSpace(strings.TrimPrefix(line, "VmHWM:")))
		}
	}
}

// childPeak reads the peak a child reported (see peakEnv), in MB.
func childPeak(t *testing.T, stderr string) int64 {
	t.Helper()
	i := strings.LastIndex(stderr, "\npeak: ")
	var kb int64
	if i < 0 {
		t.Fatalf("the child reported no peak:\n%s", stderr)
	}
	if _, err := fmt.Sscanf(stderr[i:], "\npeak: %d kB", &kb); err != nil {
		t.Fatalf("peak: %v in %q", err, stderr[i:])
	}
	return kb / 1024
}

// child is a flatfiler serve process.
type child struct {
	cmd    *exec.Cmd
	sftp   string
	http   string
	sql    string // host:port of the SQL endpoint
	creds  *partner.Credentials
	stderr *syncWriter
}

func startChild(t *testing.T, dir string, extra ...string) *child {
	t.Helper()
	return startChildEnv(t, dir, nil, extra...)
}

// childCommand runs flatfiler with args in a child process, with env added
// to the test's environment.
func childCommand(env []string, args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), env...), childEnv+"="+strings.Join(args, "\x1f"))
	return cmd
}

// runChild runs a flatfiler command in a child process and reports
// whether it was killed by SIGKILL, and what it printed on stderr.
func runChild(t *testing.T, env []string, args ...string) (killed bool, stderr string) {
	t.Helper()
	cmd := childCommand(env, args...)
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	return killedBySIGKILL(cmd.Run()), errOut.String()
}

// killedBySIGKILL reports whether a child's Wait error says SIGKILL ended it.
func killedBySIGKILL(err error) bool {
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		return false
	}
	ws, ok := exit.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// startChildEnv starts flatfiler serve in a child process, with env added
// to the test's environment.
func startChildEnv(t *testing.T, dir string, env []string, extra ...string) *child {
	t.Helper()
	args := append([]string{"serve", "--data", dir, "--sftp-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--sql-addr", "127.0.0.1:0"}, extra...)
	c, stdout := launch(t, env, "server", args...)
	// The banner ends with the partners line, then on a first start the
	// demo partner's secrets.
	fresh := firstStart(dir)
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		var creds partner.Credentials
		signalled := false
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			c.readBanner(f, &creds)
			done := c.creds != nil || !fresh && len(f) > 0 && f[0] == "partners:"
			if done && !signalled {
				signalled = true
				close(ready)
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(60 * time.Second):
		t.Fatalf("server did not start: %s", c.stderr.String())
	}
	return c
}

// readBanner takes what a banner line says of the server: its addresses,
// and the demo partner's secrets, which are whole with the password line.
func (c *child) readBanner(f []string, creds *partner.Credentials) {
	switch {
	case len(f) == 2 && f[0] == "SFTP":
		c.sftp = f[1]
	case len(f) >= 2 && f[0] == "HTTP":
		c.http = f[1]
	case len(f) >= 2 && f[0] == "SQL":
		if u, err := url.Parse(f[1]); err == nil {
			c.sql = u.Host
		}
	case len(f) == 3 && f[0] == "API" && f[1] == "key":
		creds.APIKey = f[2]
	case len(f) == 3 && f[0] == "SFTP" && f[1] == "user":
		creds.SFTPUser = f[2]
	case len(f) == 3 && f[0] == "SFTP" && f[1] == "password":
		creds.SFTPPassword = f[2]
		c.creds = creds
	}
}

// launch starts flatfiler with args in a child process, and returns it
// with its standard output. At the test's end the child is killed, and its
// log shown if the test failed.
func launch(t *testing.T, env []string, label string, args ...string) (*child, io.Reader) {
	t.Helper()
	cmd := childCommand(env, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, stderr: &syncWriter{w: &bytes.Buffer{}}}
	cmd.Stderr = c.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("%s (pid %d) log:\n%s", label, cmd.Process.Pid, c.stderr.String())
		}
	})
	return c, stdout
}

// firstStart: the demo partner is created, and its secrets printed, only
// when the data directory has no partner yet.
func firstStart(dir string) bool {
	entries, _ := os.ReadDir(filepath.Join(dir, "partners"))
	return len(entries) == 0
}

// client lets the in-process test helpers talk to a child over HTTP.
func (c *child) client(t *testing.T, creds partner.Credentials) *testServer {
	return &testServer{t: t, base: c.http, demo: creds}
}

func fingerprint(t *testing.T, db string) string {
	t.Helper()
	store, err := warehouse.Open(context.Background(), db, warehouse.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	var out bytes.Buffer
	err = store.Query(context.Background(), `SELECT
		(SELECT count(*) FROM users) AS users, (SELECT count(*) FROM accounts) AS accounts,
		(SELECT count(*) FROM balances) AS balances, (SELECT count(*) FROM account_properties) AS properties,
		(SELECT count(*) FROM transactions) AS transactions, (SELECT sum(amount) FROM transactions) AS total,
		(SELECT count(DISTINCT (account_id, transaction_id)) FROM transactions) AS distinct_transactions`, "csv", &out)
	if err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// TestRestartCompletesJobsExactlyOnce kills the server while one job runs
// and another waits, restarts it, and checks the warehouse equals one clean
// run of each file.
func TestRestartCompletesJobsExactlyOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes")
	}
	work := t.TempDir()
	var files [2][]byte
	for i := range files {
		var buf bytes.Buffer
		if _, err := gen.Write(&buf, gen.Options{Bytes: 24 << 20, Seed: uint64(10 + i), BadRate: 0.001}); err != nil {
			t.Fatal(err)
		}
		files[i] = buf.Bytes()
	}
	// What one clean run of the two files gives.
	clean := filepath.Join(work, "clean.duckdb")
	var paths []string
	for i, data := range files {
		p := filepath.Join(work, []string{"first.xml", "second.xml"}[i])
		os.WriteFile(p, data, 0o644)
		paths = append(paths, p)
	}
	if code, _, errOut := runCLI(t, append([]string{"ingest", "--db", clean, "--partner", "demo"}, paths...)...); code != 0 {
		t.Fatalf("clean ingest: %s", errOut)
	}
	want := fingerprint(t, clean)

	for _, how := range []struct {
		name   string
		signal os.Signal
	}{{"kill -9", os.Kill}, {"SIGTERM", syscall.SIGTERM}} {
		t.Run(how.name, func(t *testing.T) {
			dir := t.TempDir()
			first := startChild(t, dir, "--shutdown-grace", "0s")
			creds := *first.creds
			ts := first.client(t, creds)
			c, conn, err := dialChildSFTP(first.sftp, creds)
			if err != nil {
				t.Fatal(err)
			}
			var sums []string
			for i, data := range files {
				sums = append(sums, upload(t, c, []string{"first.xml", "second.xml"}[i], data))
			}
			c.Close()
			conn.Close()
			a := ts.notify(creds.APIKey, []string{"first.xml", "second.xml"}, sums)
			if a.Status != http.StatusAccepted {
				t.Fatalf("notify: %s", a.Raw)
			}
			ids := jobIDs(t, a)
			// Wait until the first job is well into its file, the second queued.
			deadline := time.Now().Add(time.Minute)
			for {
				j := ts.call(http.MethodGet, "/api/v2/uploads/"+ids[0], nil, creds.APIKey).Body["upload"].(map[string]any)
				if j["status"] == "processing" && j["bytes_done"].(float64) > 0 {
					break
				}
				if j["status"] != "queued" && j["status"] != "processing" || time.Now().After(deadline) {
					t.Fatalf("first job ended before the signal: %v", j)
				}
				time.Sleep(5 * time.Millisecond)
			}
			if err := first.cmd.Process.Signal(how.signal); err != nil {
				t.Fatal(err)
			}
			_ = first.cmd.Wait()
			if how.signal == syscall.SIGTERM && !strings.Contains(first.stderr.String(), "queued again") {
				t.Errorf("graceful stop did not return the running job to the queue")
			}

			second := startChild(t, dir)
			ts = second.client(t, creds)
			for _, id := range ids {
				if j := ts.waitJob(creds.APIKey, id); j["status"] == "error" {
					t.Errorf("job %s after restart: %v", id, j)
				}
			}
			if a := ts.notify(creds.APIKey, []string{"first.xml", "second.xml"}, sums); a.Body["duplicate"] != true {
				t.Errorf("notification after restart not recognised: %s", a.Raw)
			}
			// `flatfiler sql` reaches the server that holds the warehouse,
			// and only reads.
			db := filepath.Join(dir, "warehouse.duckdb")
			if code, out, errOut := runCLI(t, "sql", "--db", db, "--format", "csv", "SELECT count(*) AS n FROM ingests"); code != 0 || out != "n\n2\n" {
				t.Errorf("sql while serving: exit %d, %q %s", code, out, errOut)
			}
			if code, _, errOut := runCLI(t, "sql", "--db", db, "DELETE FROM users"); code == 0 || !strings.Contains(errOut, "read-only") {
				t.Errorf("sql while serving must be read-only: exit %d, %s", code, errOut)
			}
			_ = second.cmd.Process.Signal(syscall.SIGTERM)
			if err := second.cmd.Wait(); err != nil {
				t.Errorf("server exit after SIGTERM: %v", err)
			}
			if got := fingerprint(t, db); got != want {
				t.Errorf("warehouse after restart:\n%s\nwant, as after one clean run:\n%s", got, want)
			}
			store, _ := warehouse.Open(context.Background(), db, warehouse.Options{ReadOnly: true})
			var out bytes.Buffer
			store.Query(context.Background(), "SELECT count(*) FROM ingests", "csv", &out)
			store.Close()
			if out.String() != "count_star()\n2\n" {
				t.Errorf("ingests rows: %q, want one per job", out.String())
			}
		})
	}
}

func dialChildSFTP(addr string, creds partner.Credentials) (*sftp.Client, *ssh.Client, error) {
	// The child's host keys are fresh; other tests check host keys.
	return dialSFTP(addr, creds.SFTPUser, ssh.Password(creds.SFTPPassword), ssh.InsecureIgnoreHostKey())
}

// TestDeliverScript walks the quickstart with the OpenSSH sftp client and
// curl, as the README shows it.
func TestDeliverScript(t *testing.T) {
	for _, tool := range []string{"sftp", "curl", "md5sum"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed (make test installs openssh-client and curl): %v", tool, err)
		}
	}
	ts := startTestServer(t, t.TempDir())
	_, port, _ := strings.Cut(ts.sftpLn.Addr().String(), ":")
	cmd := exec.Command("../../scripts/deliver.sh", "../../fixtures/spec/combined.xml")
	cmd.Env = append(os.Environ(),
		"FLATFILER_API_KEY="+ts.demo.APIKey, "FLATFILER_SFTP_PASSWORD="+ts.demo.SFTPPassword,
		"FLATFILER_SFTP_PORT="+port, "FLATFILER_URL="+ts.base,
		"FLATFILER_KNOWN_HOSTS="+filepath.Join(t.TempDir(), "known_hosts"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("deliver.sh: %v\n%s\n%s", err, stdout.String(), stderr.String())
	}
	if !strings.Contains(stdout.String(), `"status": "partial-success"`) || !strings.Contains(stdout.String(), "AccountType") {
		t.Errorf("deliver.sh printed:\n%s", stdout.String())
	}
	if got := ts.query("SELECT count(*) FROM accounts"); got != "count_star()\n12\n" {
		t.Errorf("accounts: %q", got)
	}
	// A wrong MD5 is refused by name.
	data := specFile(t, "users.xml")
	sum := md5.Sum(append(data, 'x'))
	c := ts.mustSFTP(ts.demo)
	upload(t, c, "users.xml", data)
	a := ts.notify(ts.demo.APIKey, []string{"users.xml"}, []string{hex.EncodeToString(sum[:])})
	if a.Status != http.StatusUnprocessableEntity || !strings.Contains(a.Raw, "users.xml") {
		t.Errorf("wrong MD5: %d %s", a.Status, a.Raw)
	}
}
