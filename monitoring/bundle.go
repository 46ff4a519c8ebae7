// Package monitoring is flatfiler's monitoring bundle, as plain files an
// operator loads without editing: rules.yaml (recording rules),
// alerts.yaml, rules_test.yaml (promtool test rules) and dashboard.json
// (Grafana). The Go here reads them for the tests that hold them to what
// the server exports: a real Prometheus scraping a real server
// (cmd/flatfiler) and promtool (this package).
package monitoring

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"

	"go.yaml.in/yaml/v3"
)

var (
	//go:embed rules.yaml
	RulesYAML []byte
	//go:embed alerts.yaml
	AlertsYAML []byte
	//go:embed dashboard.json
	DashboardJSON []byte
)

// Rule is a recording or alerting rule.
type Rule struct {
	Record      string            `yaml:"record"`
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

// Rules are the rules of a rule file, in order.
func Rules(file []byte) ([]Rule, error) {
	var f struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []Rule `yaml:"rules"`
		} `yaml:"groups"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(file))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, err
	}
	var rules []Rule
	for _, g := range f.Groups {
		rules = append(rules, g.Rules...)
	}
	return rules, nil
}

// Dashboard is the part of Grafana's dashboard model the bundle uses;
// decoding refuses any other field, so that the file is what this says.
type Dashboard struct {
	Title         string   `json:"title"`
	UID           string   `json:"uid"`
	Description   string   `json:"description"`
	Tags          []string `json:"tags"`
	Timezone      string   `json:"timezone"`
	SchemaVersion int      `json:"schemaVersion"`
	Version       int      `json:"version"`
	Editable      bool     `json:"editable"`
	Refresh       string   `json:"refresh"`
	Time          struct{ From, To string }
	Templating    struct{ List []Variable }
	Annotations   struct{ List []json.RawMessage }
	Panels        []Panel `json:"panels"`
}

// Variable is a dashboard variable.
type Variable struct {
	Name       string      `json:"name"`
	Label      string      `json:"label"`
	Type       string      `json:"type"`
	Query      string      `json:"query"`
	Datasource *Datasource `json:"datasource,omitempty"`
	Refresh    int         `json:"refresh,omitempty"`
	IncludeAll bool        `json:"includeAll,omitempty"`
	Multi      bool        `json:"multi,omitempty"`
	AllValue   string      `json:"allValue,omitempty"`
	Current    struct{}    `json:"current"`
	Hide       int         `json:"hide"`
}

// Datasource names a data source; the bundle's panels name the variable.
type Datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// Panel is a row or a panel.
type Panel struct {
	ID          int         `json:"id"`
	Type        string      `json:"type"`
	Title       string      `json:"title"`
	Description string      `json:"description,omitempty"`
	Collapsed   bool        `json:"collapsed,omitempty"`
	Datasource  *Datasource `json:"datasource,omitempty"`
	GridPos     struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets     []Target        `json:"targets,omitempty"`
	FieldConfig json.RawMessage `json:"fieldConfig,omitempty"`
	Options     json.RawMessage `json:"options,omitempty"`
	Panels      []Panel         `json:"panels,omitempty"`
}

// Target is one query of a panel.
type Target struct {
	RefID        string      `json:"refId"`
	Datasource   *Datasource `json:"datasource"`
	Expr         string      `json:"expr"`
	LegendFormat string      `json:"legendFormat"`
	Format       string      `json:"format,omitempty"`
}

// LoadDashboard decodes dashboard.json strictly.
func LoadDashboard() (*Dashboard, error) {
	dec := json.NewDecoder(bytes.NewReader(DashboardJSON))
	dec.DisallowUnknownFields()
	var d Dashboard
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("dashboard.json: %w", err)
	}
	return &d, nil
}
