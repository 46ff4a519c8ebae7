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
	"errors"
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
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

// Query is one of the dashboard's queries.
type Query struct {
	Panel, RefID, Expr string
}

// DashboardQueries decodes dashboard.json strictly, as Grafana's schema
// has it (the foundation SDK's UnmarshalJSONStrict: no field missing,
// unknown or mistyped), and returns its Prometheus queries.
func DashboardQueries() ([]Query, error) {
	plugins.RegisterDefaultPlugins()
	var d dashboard.Dashboard
	if err := buildErrors(d.UnmarshalJSONStrict(DashboardJSON)); err != nil {
		return nil, fmt.Errorf("dashboard.json: %w", err)
	}
	// The strict decoding checks the panels but leaves them out of d (the
	// SDK v0.0.22 decodes panels and rows only in its plain decoding).
	if err := json.Unmarshal(DashboardJSON, &d); err != nil {
		return nil, fmt.Errorf("dashboard.json: %w", err)
	}
	if err := buildErrors(d.Validate()); err != nil {
		return nil, fmt.Errorf("dashboard.json: %w", err)
	}
	var queries []Query
	for _, p := range d.Panels {
		if p.Panel == nil {
			continue
		}
		for _, t := range p.Panel.Targets {
			q, ok := t.(*prometheus.Dataquery)
			if !ok {
				return nil, fmt.Errorf("dashboard.json: panel %q: a query not Prometheus's: %T", *p.Panel.Title, t)
			}
			queries = append(queries, Query{Panel: *p.Panel.Title, RefID: *q.RefId, Expr: q.Expr})
		}
	}
	return queries, nil
}

// buildErrors is err, or nil for the SDK's empty list of errors, which
// some of its functions return as a non-nil error.
func buildErrors(err error) error {
	var list cog.BuildErrors
	if errors.As(err, &list) && len(list) == 0 {
		return nil
	}
	return err
}
