package monitoring

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// TestPromtool: promtool (Debian's prometheus package, which make test
// installs) accepts the rule files, and its unit tests (rules_test.yaml)
// show each alert firing on the failure it names.
func TestPromtool(t *testing.T) {
	if _, err := exec.LookPath("promtool"); err != nil {
		t.Fatalf("promtool not installed (make test installs prometheus): %v", err)
	}
	for _, args := range [][]string{{"check", "rules", "rules.yaml", "alerts.yaml"}, {"test", "rules", "rules_test.yaml"}} {
		if out, err := exec.Command("promtool", args...).CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// TestAlertsAreDocumented: every alert has a severity, a summary, a
// description and a runbook link to its own section of README.
func TestAlertsAreDocumented(t *testing.T) {
	alerts, err := Rules(AlertsYAML)
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if len(alerts) < 15 {
		t.Errorf("%d alerts", len(alerts))
	}
	for _, a := range alerts {
		if a.Alert == "" {
			t.Errorf("a recording rule among the alerts: %s", a.Record)
			continue
		}
		if s := a.Labels["severity"]; s != "critical" && s != "warning" {
			t.Errorf("%s: severity %q", a.Alert, s)
		}
		if a.Annotations["summary"] == "" || a.Annotations["description"] == "" {
			t.Errorf("%s: no summary or description", a.Alert)
		}
		if want := "https://github.com/flatfiler/flatfiler/blob/main/README.md#" + strings.ToLower(a.Alert); a.Annotations["runbook_url"] != want {
			t.Errorf("%s: runbook %q, want %q", a.Alert, a.Annotations["runbook_url"], want)
		}
		if !regexp.MustCompile(`(?m)^#### ` + a.Alert + `$`).Match(readme) {
			t.Errorf("%s: README has no runbook section (#### %s)", a.Alert, a.Alert)
		}
	}
}

var rateRange = regexp.MustCompile(`\brate\([^\[]*\[([^\]]+)\]`)

var update = flag.Bool("update", false, "write dashboard.json from dashboard.go")

// TestDashboardIsBuilt: dashboard.json is what dashboard.go builds with
// Grafana's foundation SDK; -update writes it.
func TestDashboardIsBuilt(t *testing.T) {
	built, err := DashboardFile()
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile("dashboard.json", built, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if !bytes.Equal(built, DashboardJSON) {
		t.Error("dashboard.json is not what dashboard.go builds: go test ./monitoring -run TestDashboardIsBuilt -update")
	}
}

// TestDashboard: dashboard.json decodes strictly as Grafana's schema has
// it, picks its data source from a variable, and rates over Grafana's
// $__rate_interval.
func TestDashboard(t *testing.T) {
	queries, err := DashboardQueries()
	if err != nil {
		t.Fatal(err)
	}
	if len(queries) < 40 {
		t.Errorf("%d queries", len(queries))
	}
	for _, q := range queries {
		for _, m := range rateRange.FindAllStringSubmatch(q.Expr, -1) {
			if m[1] != "$__rate_interval" {
				t.Errorf("panel %q, %s: rate over [%s], not $__rate_interval", q.Panel, q.RefID, m[1])
			}
		}
	}
	var d struct {
		Templating struct {
			List []struct{ Name, Type, Query string }
		}
		Panels []struct {
			Title      string
			Type       string
			Datasource *struct{ UID string }
			Targets    []struct{ Datasource *struct{ UID string } }
		}
	}
	if err := json.Unmarshal(DashboardJSON, &d); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, v := range d.Templating.List {
		found = found || v.Name == "datasource" && v.Type == "datasource" && v.Query == "prometheus"
	}
	if !found {
		t.Error("no Prometheus data source variable")
	}
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: data source %+v", p.Title, p.Datasource)
		}
		for _, tg := range p.Targets {
			if tg.Datasource == nil || tg.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q: a query's data source %+v", p.Title, tg.Datasource)
			}
		}
	}
}
