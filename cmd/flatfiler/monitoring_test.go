package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/flatfiler/flatfiler/monitoring"
)

// TestMonitoringBundleAgainstPrometheus: a real Prometheus (Debian's
// prometheus package, which make test installs), started on loopback,
// scrapes a real server with the bundle's rules and alerts loaded (each
// alert's "for" shortened to 0s). After a good file and a bad one,
// delivered over SFTP and notified, with the data directory short of
// --min-free-space and a partner expected every second that sent nothing:
//   - the alerts for those fire, and not for the partner that delivered;
//   - every metric the bundle names is in a live scrape (a metric renamed
//     in the code fails here);
//   - every dashboard query and recording rule parses and returns series,
//     and every alert's expression parses, as Prometheus evaluates them.
func TestMonitoringBundleAgainstPrometheus(t *testing.T) {
	prometheus, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatalf("prometheus not installed (make test installs Debian's prometheus): %v", err)
	}
	dir := t.TempDir()
	// The data directory "short of space": its free space under a
	// --min-free-space no disk has.
	srv := startChild(t, dir, "--min-free-space", "1000000GiB") // flatfiler serve, a process of its own
	creds := *srv.creds
	ts := srv.client(t, creds)
	// demo delivers within its day; quiet, expected every second, never.
	for _, args := range [][]string{
		{"partner", "set", "demo", "--data", dir, "--expect-ingest-every", "24h"},
		{"partner", "add", "quiet", "--data", dir},
		{"partner", "set", "quiet", "--data", dir, "--expect-ingest-every", "1s"},
	} {
		if code, _, errOut := runCLI(t, args...); code != 0 {
			t.Fatalf("%v: %s", args, errOut)
		}
	}
	// Prometheus, scraping every second, evaluating every second.
	promDir := t.TempDir()
	shortFor := regexp.MustCompile(`(?m)^(\s+for:) .*$`).ReplaceAll(monitoring.AlertsYAML, []byte("$1 0s"))
	os.WriteFile(filepath.Join(promDir, "alerts.yaml"), shortFor, 0o644)
	os.WriteFile(filepath.Join(promDir, "rules.yaml"), monitoring.RulesYAML, 0o644)
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [rules.yaml, alerts.yaml]
scrape_configs:
  - job_name: flatfiler
    static_configs:
      - targets: [%q]
`, strings.TrimPrefix(srv.http, "http://"))
	os.WriteFile(filepath.Join(promDir, "prometheus.yml"), []byte(config), 0o644)
	addr := freeLoopbackAddr(t)
	cmd := exec.Command(prometheus, "--config.file="+filepath.Join(promDir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(promDir, "data"), "--web.listen-address="+addr, "--log.level=warn")
	promLog := &syncWriter{w: &bytes.Buffer{}}
	cmd.Stdout, cmd.Stderr = promLog, promLog
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus log:\n%s", promLog.String())
		}
	})
	api := "http://" + addr
	promQuery := func(path string, params url.Values) (json.RawMessage, error) {
		resp, err := http.Get(api + path + "?" + params.Encode())
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		var body struct {
			Status string          `json:"status"`
			Data   json.RawMessage `json:"data"`
			Error  string          `json:"error"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			return nil, err
		}
		if body.Status != "success" {
			return nil, fmt.Errorf("%s", body.Error)
		}
		return body.Data, nil
	}
	waitFor := func(what string, limit time.Duration, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(limit); !ok(); time.Sleep(250 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %s", what, limit)
			}
		}
	}
	waitFor("prometheus ready", 30*time.Second, func() bool {
		resp, err := http.Get(api + "/-/ready")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == http.StatusOK
	})

	// The files come once Prometheus watches: their counters' increase is
	// what the alert sees, as on a server scraped since it started.
	waitFor("a first scrape", 30*time.Second, func() bool {
		data, err := promQuery("/api/v1/query", url.Values{"query": {`up{job="flatfiler"} == 1`}})
		return err == nil && strings.Contains(string(data), `"job":"flatfiler"`)
	})
	c, conn, err := dialChildSFTP(srv.sftp, creds)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	good := upload(t, c, "combined.xml", specFile(t, "combined.xml"))
	bad := upload(t, c, "broken.xml", []byte("<Users>\n  <User>\n    <Id>1</Id>\n"))
	a := ts.call(http.MethodPost, "/api/v2/uploads/received", url.Values{"filenames": {"combined.xml,broken.xml"}, "hashes": {good + "," + bad}}, creds.APIKey)
	if a.Status != http.StatusAccepted {
		t.Fatalf("notify: %d %s", a.Status, a.Raw)
	}
	ids := jobIDs(t, a)
	for i, want := range []string{"partial-success", "error"} {
		if job := ts.waitJob(creds.APIKey, ids[i]); job["status"] != want {
			t.Fatalf("job %d: %v, want %s", i, job["status"], want)
		}
	}
	// Reads of the reporting API, for its series.
	for _, path := range []string{"/api/v2/users", "/api/v2/ping", "/api/v2/users/42/networth"} {
		ts.call(http.MethodGet, path, nil, creds.APIKey)
	}

	// The alerts for the failures fire: the bad file, the disk, the quiet
	// partner (and not demo, which delivered).
	want := []string{"FlatfilerFileNotApplied", "FlatfilerDataDiskLow", "FlatfilerDataDiskFull", "FlatfilerPartnerIngestOverdue"}
	var firing map[string]string // alert name: the partners it fires for
	waitFor(fmt.Sprintf("%v firing", want), 60*time.Second, func() bool {
		data, err := promQuery("/api/v1/alerts", nil)
		if err != nil {
			return false
		}
		var alerts struct {
			Alerts []struct {
				Labels map[string]string
				State  string
			}
		}
		json.Unmarshal(data, &alerts)
		firing = map[string]string{}
		for _, a := range alerts.Alerts {
			if a.State == "firing" {
				firing[a.Labels["alertname"]] += a.Labels["partner"]
			}
		}
		for _, name := range want {
			if _, ok := firing[name]; !ok {
				return false
			}
		}
		return true
	})
	if p := firing["FlatfilerPartnerIngestOverdue"]; p != "quiet" {
		t.Errorf("partners overdue: %q, want quiet alone", p)
	}

	// Every metric the bundle names is in a live scrape.
	scrape := ts.call(http.MethodGet, "/metrics", nil, "")
	exported := map[string]bool{"up": true}
	sc := bufio.NewScanner(strings.NewReader(scrape.Raw))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if line := sc.Text(); line != "" && !strings.HasPrefix(line, "#") {
			exported[strings.FieldsFunc(line, func(r rune) bool { return r == '{' || r == ' ' })[0]] = true
		}
	}
	rules, err := monitoring.Rules(monitoring.RulesYAML)
	if err != nil {
		t.Fatal(err)
	}
	alerts, err := monitoring.Rules(monitoring.AlertsYAML)
	if err != nil {
		t.Fatal(err)
	}
	dash, err := monitoring.DashboardQueries()
	if err != nil {
		t.Fatal(err)
	}
	type query struct{ where, expr string }
	var series, parses []query
	for _, r := range rules {
		series = append(series, query{"rule " + r.Record, r.Expr})
	}
	for _, r := range alerts {
		parses = append(parses, query{"alert " + r.Alert, r.Expr})
	}
	for _, q := range dash {
		expr := strings.NewReplacer("$__rate_interval", "1m", "$instance", ".*").Replace(q.Expr)
		series = append(series, query{fmt.Sprintf("panel %q %s", q.Panel, q.RefID), expr})
	}
	recorded := regexp.MustCompile(`[a-z_]+:[a-z0-9_]+:[a-z0-9_]+`) // the rules' own series
	metricName := regexp.MustCompile(`\b(?:flatfiler|process|go)_[a-z0-9_]+\b`)
	for _, q := range append(series, parses...) {
		for _, name := range metricName.FindAllString(recorded.ReplaceAllString(q.expr, ""), -1) {
			if !exported[name] {
				t.Errorf("%s names %s, which the server does not export", q.where, name)
			}
		}
	}
	// As Prometheus evaluates them: rates need two scrapes, recorded
	// series an evaluation.
	for _, q := range series {
		var last error
		ok := func() bool {
			data, err := promQuery("/api/v1/query", url.Values{"query": {q.expr}})
			if err != nil {
				last = err
				return false
			}
			var v struct{ Result []json.RawMessage }
			json.Unmarshal(data, &v)
			last = fmt.Errorf("no series")
			return len(v.Result) > 0
		}
		for deadline := time.Now().Add(20 * time.Second); !ok() && time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		}
		if last != nil && !ok() {
			t.Errorf("%s: %v\n%s", q.where, last, q.expr)
		}
	}
	for _, q := range parses {
		if _, err := promQuery("/api/v1/query", url.Values{"query": {q.expr}}); err != nil {
			t.Errorf("%s: %v\n%s", q.where, err, q.expr)
		}
	}
}

// freeLoopbackAddr is a loopback address no one listens on now.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
