package monitoring

import (
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

// TestDashboard: dashboard.json decodes strictly into the model above,
// picks its data source from a variable, and rates over Grafana's
// $__rate_interval.
func TestDashboard(t *testing.T) {
	d, err := LoadDashboard()
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]Variable{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v
	}
	if v := vars["datasource"]; v.Type != "datasource" || v.Query != "prometheus" {
		t.Errorf("no Prometheus data source variable: %+v", v)
	}
	ids := map[int]bool{}
	targets := 0
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d twice", p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.X+p.GridPos.W > 24 || p.GridPos.W <= 0 || p.GridPos.H <= 0 {
			t.Errorf("panel %q: gridPos %+v", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" || p.Description == "" || len(p.Targets) == 0 {
			t.Errorf("panel %q: data source %+v, %d targets, description %q", p.Title, p.Datasource, len(p.Targets), p.Description)
		}
		for _, tg := range p.Targets {
			targets++
			if tg.Datasource == nil || tg.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q, %s: data source %+v", p.Title, tg.RefID, tg.Datasource)
			}
			for _, m := range rateRange.FindAllStringSubmatch(tg.Expr, -1) {
				if m[1] != "$__rate_interval" {
					t.Errorf("panel %q, %s: rate over [%s], not $__rate_interval", p.Title, tg.RefID, m[1])
				}
			}
		}
	}
	if targets < 40 {
		t.Errorf("%d queries", targets)
	}
}
