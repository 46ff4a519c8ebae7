package main

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flatfiler/flatfiler/fixtures/harvestsim"
	"github.com/flatfiler/flatfiler/intake/harvest"
)

const simKey = "c70b5dd9ebfb6f51d09d4132b7170c9d20750a7852f00680f65658f0310e810056e6763c34c9a00b0e940076f54495c169fc2302cceb312039271c43469507dc"

// send makes an API request with a JSON body and the key.
func (ts *testServer) send(method, path, body, key string) (int, map[string]any) {
	ts.t.Helper()
	req, _ := http.NewRequest(method, ts.base+path, strings.NewReader(body))
	req.SetBasicAuth(key, "")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		ts.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return res.StatusCode, out
}

// TestHarvestEndToEnd is the README's harvest demo: a partner's endpoint
// (the simulator over the spec's example, dates moved to today), set on a
// running server; a user created, harvested, and read back.
func TestHarvestEndToEnd(t *testing.T) {
	dir := t.TempDir()
	ts := startTestServer(t, dir, func(c *serveConfig) { c.HarvestAllowPrivate = true })
	key := ts.demo.APIKey
	user := "/api/v2/users/322079353"

	// Before an endpoint is set: 409, naming the fix.
	if code, _ := ts.send("POST", "/api/v2/users", `{"user": {"id": "322079353", "email": "rita@williams.us", "first_name": "Rita", "last_name": "Williams"}}`, key); code != 201 {
		t.Fatalf("POST users: %d", code)
	}
	if code, body := ts.send("POST", user+"/harvest", "", key); code != 409 || !strings.Contains(jsonText(body), "--harvest-url") {
		t.Fatalf("harvest without an endpoint: %d %v", code, body)
	}

	k, _ := harvest.ParseKey(simKey)
	sim, err := harvestsim.Open("../../fixtures/spec/combined.xml", k, harvestsim.Options{ShiftTo: time.Now(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	endpoint := httptest.NewServer(sim)
	defer endpoint.Close()
	if code, _, errOut := runCLI(t, "partner", "set", "demo", "--data", dir, "--harvest-url", endpoint.URL, "--harvest-key", simKey); code != 0 {
		t.Fatalf("partner set: %s", errOut)
	}
	if code, _, errOut := runCLI(t, "partner", "set", "demo", "--data", dir, "--harvest-key", "abcd"); code == 0 || !strings.Contains(errOut, "128 hex digits") {
		t.Errorf("a short key: %d %s", code, errOut)
	}

	code, body := ts.send("POST", user+"/harvest", "", key)
	runs, _ := body["harvests"].([]any)
	if code != 201 || len(runs) != 1 || !strings.HasSuffix(runs[0].(map[string]any)["href"].(string), user+"/harvest") {
		t.Fatalf("POST harvest: %d %v", code, body)
	}
	run := ts.waitHarvest(user, key)
	// The spec's example has one account without an AccountType: rejected.
	if errs, _ := run["errors"].([]any); run["status"] != "complete" || run["outcome"] != "partial-success" || len(errs) != 1 ||
		!strings.Contains(jsonText(errs[0]), "AccountType") {
		t.Fatalf("harvest: %v", run)
	}
	_, body = ts.send("GET", user+"/accounts", "", key)
	if accts, _ := body["accounts"].([]any); len(accts) != 12 {
		t.Errorf("accounts after the harvest: %d, want 12", len(accts))
	}
	_, body = ts.send("GET", user+"/transactions", "", key)
	if txns, _ := body["transactions"].([]any); len(txns) != 6 {
		t.Errorf("transactions after the harvest: %d, want the 6 of the spec's example on its non-investment accounts", len(txns))
	}
	if got := ts.query("SELECT count(*) FROM ingests WHERE file = 'harvest-322079353.xml'"); !strings.Contains(got, "1") {
		t.Errorf("the harvest's ingest row: %s", got)
	}
	if code, _ := ts.send("POST", "/api/v2/users/nobody/harvest", "", key); code != 404 {
		t.Errorf("harvest of an unknown user: %d", code)
	}
	if code, _, errOut := runCLI(t, "partner", "set", "demo", "--data", dir, "--harvest-schedule", "daily 02:00-04:00"); code != 0 {
		t.Fatalf("partner set --harvest-schedule: %s", errOut)
	}
	if code, body := ts.send("GET", "/api/v2/partners/current/harvest", "", key); code != 200 ||
		!strings.Contains(jsonText(body), `"schedule":"daily 02:00-04:00"`) || !strings.Contains(jsonText(body), endpoint.URL) {
		t.Errorf("the partner's harvest: %d %v", code, body)
	}
}

// waitHarvest polls the user's harvest until it is complete (or a minute
// passed) and returns it.
func (ts *testServer) waitHarvest(user, key string) map[string]any {
	ts.t.Helper()
	var run map[string]any
	deadline := time.Now().Add(time.Minute)
	for {
		_, body := ts.send("GET", user+"/harvest", "", key)
		if runs, _ := body["harvests"].([]any); len(runs) == 1 {
			run = runs[0].(map[string]any)
		}
		if run["status"] == "complete" || time.Now().After(deadline) {
			return run
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestHarvestExactlyOnceAcrossKill: a server killed at the harvest's commit
// (before it, or right after) settles the run at its next start, from the
// warehouse: run again, or found applied, and applied once either way.
func TestHarvestExactlyOnceAcrossKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes")
	}
	k, _ := harvest.ParseKey(simKey)
	sim, err := harvestsim.Open("../../fixtures/spec/combined.xml", k, harvestsim.Options{ShiftTo: time.Now(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	endpoint := httptest.NewServer(sim)
	defer endpoint.Close()
	for _, point := range []string{"load/before-commit", "load/committed"} {
		t.Run(point, func(t *testing.T) {
			dir := t.TempDir()
			// The second load is the harvest's: the first creates the user.
			first := startChildEnv(t, dir, []string{faultsEnv + "=" + point + "=crash@2"}, "--harvest-allow-private")
			creds := *first.creds
			if code, _, errOut := runCLI(t, "partner", "set", "demo", "--data", dir, "--harvest-url", endpoint.URL, "--harvest-key", simKey); code != 0 {
				t.Fatalf("partner set: %s", errOut)
			}
			ts := first.client(t, creds)
			if code, body := ts.send("POST", "/api/v2/users", `{"user": {"id": "322079353", "email": "rita@williams.us", "first_name": "Rita", "last_name": "Williams"}}`, creds.APIKey); code != 201 {
				t.Fatalf("POST users: %d %v", code, body)
			}
			if code, body := ts.send("POST", "/api/v2/users/322079353/harvest", "", creds.APIKey); code != 201 {
				t.Fatalf("POST harvest: %d %v", code, body)
			}
			if !killedBySIGKILL(first.cmd.Wait()) {
				t.Fatalf("the server was not killed at %s:\n%s", point, first.stderr.String())
			}

			second := startChild(t, dir, "--harvest-allow-private")
			ts = second.client(t, creds)
			run := ts.waitHarvest("/api/v2/users/322079353", creds.APIKey)
			if run["status"] != "complete" || run["outcome"] != "partial-success" {
				t.Fatalf("the harvest after the restart: %v", run)
			}
			db := filepath.Join(dir, "warehouse.duckdb")
			if code, out, errOut := runCLI(t, "sql", "--db", db, "--format", "csv",
				"SELECT (SELECT count(*) FROM ingests WHERE file = 'harvest-322079353.xml') || '/' || (SELECT count(*) FROM transactions) AS n"); code != 0 || out != "n\n1/6\n" {
				t.Errorf("after the restart: exit %d, %q %s (want one harvest applied, 6 transactions)", code, out, errOut)
			}
			_ = second.cmd.Process.Signal(syscall.SIGTERM)
			_ = second.cmd.Wait()
		})
	}
}

// TestExportThroughServer: flatfiler export works while serve holds the
// warehouse, through it, and says what it wrote.
func TestExportThroughServer(t *testing.T) {
	dir := t.TempDir()
	ts := startTestServer(t, dir)
	if code, _ := ts.send("POST", "/api/v2/users", `{"user": {"id": "42", "email": "a@example.com", "first_name": "A", "last_name": "B", "login": "ab"}}`, ts.demo.APIKey); code != 201 {
		t.Fatalf("POST users: %d", code)
	}
	out := filepath.Join(t.TempDir(), "lake")
	db := filepath.Join(dir, "warehouse.duckdb")
	code, stdout, errOut := runCLI(t, "export", "--db", db, "--out", out)
	if code != 0 || !strings.Contains(stdout, "1 files, 1 rows") || !strings.Contains(stdout, "no export in this folder yet") {
		t.Fatalf("export: %d %q %s", code, stdout, errOut)
	}
	if code, stdout, _ := runCLI(t, "export", "--db", db, "--out", out); code != 0 || !strings.Contains(stdout, "nothing changed") {
		t.Errorf("second export: %d %q", code, stdout)
	}
	if code, _, errOut := runCLI(t, "export", "--db", db, "--out", out, "--since", "July"); code != 2 || !strings.Contains(errOut, "not a date") {
		t.Errorf("a bad --since: %d %s", code, errOut)
	}
}
