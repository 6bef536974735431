// Command dashboard-schema checks Grafana dashboard JSON files against Grafana's published
// dashboard schema, through the typed models of the Grafana Foundation SDK (generated from that
// schema). For each file it reports every error and exits non-zero if there was any.
//
//	go run . DASHBOARD.json...
//
// What is checked, and what the SDK cannot check:
//   - the dashboard, its panels and rows, templating variables, annotations, links and time
//     settings are decoded strictly: an unknown field, a missing required field or a value of the
//     wrong type is an error, and so are the SDK's validation constraints (Validate);
//   - a panel's `options` and `fieldConfig.defaults.custom` are decoded strictly by that panel
//     type's model; a panel type the SDK has no model for is an error here (the SDK itself would
//     accept its options unchecked);
//   - `fieldConfig` itself is decoded strictly as well (the SDK's panel decoder reads it
//     leniently), but the values of overrides' properties are free-form in the schema;
//   - every query must name the prometheus data source type and decode strictly as a Prometheus
//     query (the SDK keeps queries of other or unnamed data sources as untyped maps, which would
//     check nothing).
//
// The SDK's strict decoders (v0.0.22) report the errors inside a panel or a query but then drop
// the panel or query even when it had none (their error list comes back as a non-nil interface
// holding an empty list), so the panels and queries are decoded once more here, one by one, to be
// validated and inspected.
//
// The PromQL inside the queries is not parsed here: tests/monitoring/check.sh runs it through
// promtool.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: dashboard-schema DASHBOARD.json...")
		os.Exit(2)
	}
	plugins.RegisterDefaultPlugins()
	failed := false
	for _, path := range os.Args[1:] {
		problems, summary := check(path)
		if len(problems) > 0 {
			failed = true
			fmt.Printf("%s: %d schema error(s)\n", path, len(problems))
			for _, p := range problems {
				fmt.Printf("  %s\n", p)
			}
			continue
		}
		fmt.Printf("%s: %s\n", path, summary)
	}
	if failed {
		os.Exit(1)
	}
}

// rawPanel is what this program reads of a panel besides the SDK's model: the parts the SDK
// decodes leniently.
type rawPanel struct {
	Type        string          `json:"type"`
	Title       string          `json:"title"`
	FieldConfig json.RawMessage `json:"fieldConfig"`
	Panels      []rawPanel      `json:"panels"`
}

func check(path string) ([]string, string) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return []string{err.Error()}, ""
	}
	var problems []string
	add := func(where string, err error) {
		if err == nil {
			return
		}
		if errs, ok := err.(cog.BuildErrors); ok {
			for _, e := range errs {
				problems = append(problems, strings.TrimPrefix(where+" "+e.Error(), " "))
			}
			return
		}
		problems = append(problems, strings.TrimPrefix(where+" "+err.Error(), " "))
	}

	var dash dashboard.Dashboard
	add("", dash.UnmarshalJSONStrict(raw))
	add("", dash.Validate())

	var top struct {
		Panels []json.RawMessage `json:"panels"`
	}
	if err := json.Unmarshal(raw, &top); err != nil {
		add("", err)
		return problems, ""
	}
	panels, queries := 0, 0
	var walk func(prefix string, list []json.RawMessage)
	walk = func(prefix string, list []json.RawMessage) {
		for i, item := range list {
			panels++
			var head struct {
				Type        string            `json:"type"`
				Title       string            `json:"title"`
				FieldConfig json.RawMessage   `json:"fieldConfig"`
				Targets     []json.RawMessage `json:"targets"`
				Panels      []json.RawMessage `json:"panels"`
			}
			if err := json.Unmarshal(item, &head); err != nil {
				add(fmt.Sprintf("%s[%d]:", prefix, i), err)
				continue
			}
			where := fmt.Sprintf("%s[%d] (%s %q):", prefix, i, head.Type, head.Title)
			if head.Type == "row" {
				var row dashboard.RowPanel
				_ = row.UnmarshalJSONStrict(item) // errors already reported with the dashboard's
				add(where, row.Validate())
				walk(fmt.Sprintf("%s[%d].panels", prefix, i), head.Panels)
				continue
			}
			var panel dashboard.Panel
			_ = panel.UnmarshalJSONStrict(item) // errors already reported with the dashboard's
			add(where, panel.Validate())
			config, found := cog.ConfigForPanelcfgVariant(head.Type)
			if !found || config.StrictOptionsUnmarshaler == nil {
				add(where, fmt.Errorf("panel type %q has no model in the SDK: its options would go unchecked", head.Type))
			}
			if len(head.FieldConfig) > 0 {
				var fc dashboard.FieldConfigSource
				add(where+" fieldConfig:", fc.UnmarshalJSONStrict(head.FieldConfig))
			}
			for t, target := range head.Targets {
				queries++
				at := fmt.Sprintf("%s targets[%d]:", where, t)
				var ref struct {
					Datasource struct {
						Type string `json:"type"`
					} `json:"datasource"`
				}
				_ = json.Unmarshal(target, &ref)
				if ref.Datasource.Type != "prometheus" {
					add(at, fmt.Errorf("data source type %q, expected prometheus", ref.Datasource.Type))
					continue
				}
				var query prometheus.Dataquery
				_ = query.UnmarshalJSONStrict(target) // errors already reported with the dashboard's
				add(at, query.Validate())
				if query.Expr == "" {
					add(at, fmt.Errorf("no expr"))
				}
			}
		}
	}
	walk("panels", top.Panels)

	return problems, fmt.Sprintf("valid against the dashboard schema (schemaVersion %d): %d panels, %d queries, %d variables",
		dash.SchemaVersion, panels, queries, len(dash.Templating.List))
}
