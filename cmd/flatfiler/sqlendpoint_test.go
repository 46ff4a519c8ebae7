package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestPsqlOnTheSQLEndpoint: psql, the real client, lists the tables,
// describes one and runs a query, as an analyst added with the CLI.
func TestPsqlOnTheSQLEndpoint(t *testing.T) {
	if _, err := exec.LookPath("psql"); err != nil {
		t.Fatalf("psql not installed (make test installs postgresql-client): %v", err)
	}
	dir := t.TempDir()
	ts := startTestServer(t, dir, func(c *serveConfig) { c.SQLAddr = "127.0.0.1:0" })
	if code, _ := ts.send("POST", "/api/v2/users", `{"user": {"id": "42", "email": "a@example.com", "first_name": "Ann", "last_name": "B"}}`, ts.demo.APIKey); code != 201 {
		t.Fatalf("POST users: %d", code)
	}
	code, out, errOut := runCLI(t, "analyst", "add", "ana", "--data", dir, "--all-partners", "--json")
	var creds struct{ Name, Password string }
	if code != 0 || json.Unmarshal([]byte(out), &creds) != nil || creds.Password == "" {
		t.Fatalf("analyst add: %d %q %s", code, out, errOut)
	}
	if code, _, _ := runCLI(t, "analyst", "add", "ana", "--data", dir, "--all-partners"); code == 0 {
		t.Error("an analyst added twice")
	}
	url := "postgres://ana@" + ts.sqlLn.Addr().String() + "/warehouse?sslmode=disable"
	psql := func(command string) (string, error) {
		cmd := exec.Command("psql", url, "-X", "-c", command)
		cmd.Env = append(os.Environ(), "PGPASSWORD="+creds.Password, "PGCONNECT_TIMEOUT=10")
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	for command, wants := range map[string][]string{
		`\l`:              {"warehouse", "UTF8"},
		`\dt`:             {"public | users        | table", "transactions"},
		`\d transactions`: {`Table "public.transactions"`, "amount", "numeric(18,2)", "timestamp with time zone"},
		"SELECT first_name, login IS NULL AS no_login FROM users": {"Ann", " t", "(1 row)"},
	} {
		got, err := psql(command)
		for _, w := range wants {
			if err != nil || !strings.Contains(got, w) {
				t.Errorf("psql -c %q: %v\n%s\nwant %q", command, err, got, w)
				break
			}
		}
	}
	if got, err := psql("DELETE FROM users"); err == nil || !strings.Contains(got, "read-only") {
		t.Errorf("psql DELETE: %v %s", err, got)
	}
	// A parameterized query as psql 15 makes one: PREPARE, then EXECUTE, in one session.
	cmd := exec.Command("psql", url, "-X", "-c", "PREPARE byid (text) AS SELECT first_name FROM users WHERE partner_customer_id = $1",
		"-c", "EXECUTE byid('42')")
	cmd.Env = append(os.Environ(), "PGPASSWORD="+creds.Password)
	if got, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(got), "Ann") {
		t.Errorf("psql PREPARE and EXECUTE: %v\n%s", err, got)
	}

	// psycopg2 (Debian's python3-psycopg2, which make test installs) reads
	// text: a timestamptz with its zone, a numeric as a Decimal, a
	// parameter bound client-side.
	host, port, _ := strings.Cut(ts.sqlLn.Addr().String(), ":")
	script := `import psycopg2, sys
c = psycopg2.connect(host=sys.argv[1], port=int(sys.argv[2]), dbname="warehouse", user="ana", password=sys.argv[3])
cur = c.cursor()
cur.execute("SELECT TIMESTAMPTZ '2016-07-07 12:34:56.5+00', 1234.50::DECIMAL(18,2), first_name FROM users WHERE partner_customer_id = %s", ("42",))
print(repr(cur.fetchone()))`
	got, err := exec.Command("/usr/bin/python3", "-c", script, host, port, creds.Password).CombinedOutput()
	want := "(datetime.datetime(2016, 7, 7, 12, 34, 56, 500000, tzinfo=datetime.timezone.utc), Decimal('1234.50'), 'Ann')"
	if err != nil || strings.TrimSpace(string(got)) != want {
		t.Errorf("psycopg2: %v\n%s\nwant %s", err, got, want)
	}
}

// TestJDBCOnTheSQLEndpoint: pgjdbc (Debian's libpostgresql-jdbc-java, the
// driver DBeaver and Metabase use), run by Java as a tool would: connect,
// read the database's metadata, list the tables and a table's columns
// (queries of pg_catalog the endpoint answers), a typed parameterized
// query, a cursor's fetch size, and a refused write.
func TestJDBCOnTheSQLEndpoint(t *testing.T) {
	const driver = "/usr/share/java/postgresql.jar"
	if _, err := os.Stat(driver); err != nil {
		t.Fatalf("pgjdbc not installed (make test installs libpostgresql-jdbc-java): %v", err)
	}
	java, err := exec.LookPath("java")
	if err != nil {
		t.Fatalf("java not installed (make test installs default-jdk-headless: java runs the check from its source): %v", err)
	}
	dir := t.TempDir()
	if code, _, errOut := runCLI(t, "ingest", "--db", filepath.Join(dir, "warehouse.duckdb"), "--as-of", "2016-07-08", "../../fixtures/spec/combined.xml"); code != 0 {
		t.Fatalf("ingest: %s", errOut)
	}
	ts := startTestServer(t, dir, func(c *serveConfig) { c.SQLAddr = "127.0.0.1:0" })
	code, out, errOut := runCLI(t, "analyst", "add", "ana", "--data", dir, "--all-partners", "--json")
	var creds struct{ Name, Password string }
	if code != 0 || json.Unmarshal([]byte(out), &creds) != nil {
		t.Fatalf("analyst add: %d %q %s", code, out, errOut)
	}
	url := "jdbc:postgresql://" + ts.sqlLn.Addr().String() + "/warehouse?sslmode=disable"
	cmd := exec.Command(java, "-cp", driver, "testdata/jdbc/JdbcCheck.java", url, "ana", creds.Password, "demo", "83")
	got, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("java: %v\n%s", err, got)
	}
	for _, want := range []string{
		"product PostgreSQL ",
		"schemas information_schema pg_catalog public",
		"tables accounts balances transactions users",
		"columns partner_id:text account_id:text", "amount:numeric(18,2)", "posted_at:timestamptz", "source_line:int4",
		"keys\n",
		"row -10.00 2016-07-07T00:00Z Dunkin Donuts numeric timestamptz",
		"count 100000",
		"refused 42501",
	} {
		if !strings.Contains(string(got), want) {
			t.Errorf("JDBC: want %q in\n%s", want, got)
		}
	}
}
