package monitoring

import (
	"encoding/json"
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/heatmap"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// The Grafana dashboard, built with Grafana's foundation SDK, so that
// dashboard.json is what Grafana's schema says a dashboard is (the test
// decodes it strictly) and what this file says (the test builds it again
// and compares; go test ./monitoring -run TestDashboardIsBuilt -update
// writes it). Every panel reads the data source of the variable
// "datasource" and the servers of the variable "instance"; rates are over
// Grafana's $__rate_interval.

// query is one of a panel's queries and its legend.
type query struct{ expr, legend string }

// spec is a panel.
type spec struct {
	kind, title, description, unit string
	w, h                           uint32
	queries                        []query
}

// rows are the dashboard's rows, top to bottom, each panel left to right.
var rows = []struct {
	title  string
	panels []spec
}{
	{title: "Overview", panels: []spec{
		{kind: "stat", title: "Up", unit: "short", w: 4, h: 4,
			description: "Instances Prometheus scrapes (1) or cannot (0).",
			queries: []query{
				{`up{job="flatfiler", instance=~"$instance"}`, "{{instance}}"}}},
		{kind: "stat", title: "Files and batches applied (1h)", unit: "short", w: 5, h: 4,
			description: "Jobs that ended success or partial-success in the last hour.",
			queries: []query{
				{`sum(increase(flatfiler_jobs_finished_total{status=~"success|partial-success", instance=~"$instance"}[1h]))`, "applied"}}},
		{kind: "stat", title: "Not applied (1h)", unit: "short", w: 5, h: 4,
			description: "Jobs that ended in error in the last hour: nothing of them was applied (alert FlatfilerFileNotApplied).",
			queries: []query{
				{`sum(increase(flatfiler_jobs_finished_total{status="error", instance=~"$instance"}[1h]))`, "error"}}},
		{kind: "stat", title: "Oldest queued job", unit: "s", w: 5, h: 4,
			description: "How long the oldest job waiting to run has waited (alert FlatfilerJobsWaitingTooLong over 30 minutes).",
			queries: []query{
				{`max(flatfiler_job_oldest_queued_seconds{instance=~"$instance"})`, "oldest"}}},
		{kind: "stat", title: "Data directory free", unit: "percentunit", w: 5, h: 4,
			description: "Share of the data directory's file system free.",
			queries: []query{
				{`min(flatfiler_data_free_bytes{instance=~"$instance"} / flatfiler_data_size_bytes{instance=~"$instance"})`, "free"}}},
	}},
	{title: "Ingest", panels: []spec{
		{kind: "timeseries", title: "Ingest MB/s", unit: "MBs", w: 8, h: 8,
			description: "Megabytes of flat files and batches parsed a second.",
			queries: []query{
				{`sum by (instance) (rate(flatfiler_ingest_bytes_total{instance=~"$instance"}[$__rate_interval])) / 1e6`, "{{instance}}"}}},
		{kind: "timeseries", title: "Records/s by kind and outcome", unit: "ops", w: 8, h: 8,
			description: "Users, accounts and transactions read a second: success, error (refused with a located error), skipped (older than the file's window).",
			queries: []query{
				{`sum by (kind, outcome) (rate(flatfiler_ingest_records_total{instance=~"$instance"}[$__rate_interval]))`, "{{kind}} {{outcome}}"}}},
		{kind: "timeseries", title: "Files by status", unit: "short", w: 8, h: 8,
			description: "Files applied, by status, per interval.",
			queries: []query{
				{`sum by (status) (increase(flatfiler_ingest_files_total{instance=~"$instance"}[$__rate_interval]))`, "{{status}}"}}},
		{kind: "timeseries", title: "Enrichment sources", unit: "ops", w: 8, h: 8,
			description: "Transactions enriched a second, by what decided their tag: partner rule, dictionary, keyword, check, or nothing (unmatched).",
			queries: []query{
				{`sum by (source) (rate(flatfiler_enrich_transactions_total{instance=~"$instance"}[$__rate_interval]))`, "{{source}}"}}},
		{kind: "heatmap", title: "Load stage duration", unit: "short", w: 8, h: 8,
			description: "Time per staging batch loaded into DuckDB.",
			queries: []query{
				{`sum by (le) (increase(flatfiler_ingest_stage_duration_seconds_bucket{stage="load", instance=~"$instance"}[$__rate_interval]))`, "{{le}}"}}},
		{kind: "heatmap", title: "Commit duration", unit: "short", w: 8, h: 8,
			description: "Time per file's commit (resolve actions, apply, the atomic COMMIT).",
			queries: []query{
				{`sum by (le) (increase(flatfiler_ingest_stage_duration_seconds_bucket{stage="commit", instance=~"$instance"}[$__rate_interval]))`, "{{le}}"}}},
		{kind: "timeseries", title: "Stage p99 by stage", unit: "s", w: 12, h: 8,
			description: "99th percentile of each pipeline stage's unit of work: validate per chunk, load per batch, commit and file per file.",
			queries: []query{
				{`histogram_quantile(0.99, sum by (stage, le) (rate(flatfiler_ingest_stage_duration_seconds_bucket{instance=~"$instance"}[$__rate_interval])))`, "{{stage}}"}}},
		{kind: "timeseries", title: "Commit and job retries", unit: "short", w: 12, h: 8,
			description: "File commits run again with reads held off (DuckDB out of memory), and jobs retried for the server's storage (alert FlatfilerCommitRetries).",
			queries: []query{
				{`sum(increase(flatfiler_commit_retries_total{instance=~"$instance"}[$__rate_interval]))`, "commit retries"},
				{`sum(increase(flatfiler_job_retries_total{instance=~"$instance"}[$__rate_interval]))`, "job retries"},
				{`sum(increase(flatfiler_warehouse_reopens_total{instance=~"$instance"}[$__rate_interval]))`, "warehouse reopens"}}},
	}},
	{title: "Jobs and queue", panels: []spec{
		{kind: "timeseries", title: "Queue depth", unit: "short", w: 8, h: 8,
			description: "Jobs waiting to run.",
			queries: []query{
				{`sum by (instance) (flatfiler_job_queue_depth{instance=~"$instance"})`, "{{instance}}"}}},
		{kind: "timeseries", title: "Jobs by state", unit: "short", w: 8, h: 8,
			description: "Jobs kept (within retention), by state.",
			queries: []query{
				{`sum by (state) (flatfiler_jobs{instance=~"$instance"})`, "{{state}}"}}},
		{kind: "timeseries", title: "Jobs finished by status", unit: "short", w: 8, h: 8,
			description: "Jobs (files and batches) finished per interval, by status.",
			queries: []query{
				{`sum by (status) (increase(flatfiler_jobs_finished_total{instance=~"$instance"}[$__rate_interval]))`, "{{status}}"}}},
		{kind: "heatmap", title: "Queue wait", unit: "short", w: 12, h: 8,
			description: "Time jobs waited in the queue before they started.",
			queries: []query{
				{`sum by (le) (increase(flatfiler_job_queue_wait_seconds_bucket{instance=~"$instance"}[$__rate_interval]))`, "{{le}}"}}},
		{kind: "heatmap", title: "Job duration", unit: "short", w: 12, h: 8,
			description: "Time from a job's start to its end.",
			queries: []query{
				{`sum by (le) (increase(flatfiler_job_duration_seconds_bucket{instance=~"$instance"}[$__rate_interval]))`, "{{le}}"}}},
	}},
	{title: "SFTP", panels: []spec{
		{kind: "timeseries", title: "SFTP sessions", unit: "short", w: 8, h: 8,
			description: "Sessions open now, and sessions started a second.",
			queries: []query{
				{`sum(flatfiler_sftp_sessions_active{instance=~"$instance"})`, "active"},
				{`sum(rate(flatfiler_sftp_sessions_total{instance=~"$instance"}[$__rate_interval]))`, "started/s"}}},
		{kind: "timeseries", title: "SFTP bytes", unit: "Bps", w: 8, h: 8,
			description: "Bytes received (uploads) and sent a second.",
			queries: []query{
				{`sum(rate(flatfiler_sftp_received_bytes_total{instance=~"$instance"}[$__rate_interval]))`, "received"},
				{`sum(rate(flatfiler_sftp_sent_bytes_total{instance=~"$instance"}[$__rate_interval]))`, "sent"}}},
		{kind: "timeseries", title: "SFTP uploads, failures and bans", unit: "short", w: 8, h: 8,
			description: "Uploads by outcome, failed logins by method, bans and refused logins per interval (alerts FlatfilerSFTPAuthFailures, FlatfilerSFTPBans).",
			queries: []query{
				{`sum by (outcome) (increase(flatfiler_sftp_uploads_total{instance=~"$instance"}[$__rate_interval]))`, "upload {{outcome}}"},
				{`sum by (method) (increase(flatfiler_sftp_auth_failures_total{instance=~"$instance"}[$__rate_interval]))`, "auth failure {{method}}"},
				{`sum(increase(flatfiler_sftp_bans_total{instance=~"$instance"}[$__rate_interval]))`, "bans"},
				{`sum(increase(flatfiler_sftp_refused_logins_total{instance=~"$instance"}[$__rate_interval]))`, "refused logins"}}},
	}},
	{title: "Reporting API", panels: []spec{
		{kind: "timeseries", title: "Requests/s by handler", unit: "reqps", w: 8, h: 8,
			description: "API requests a second, by handler.",
			queries: []query{
				{`sum by (handler) (rate(flatfiler_http_requests_total{instance=~"$instance"}[$__rate_interval]))`, "{{handler}}"}}},
		{kind: "timeseries", title: "Errors by handler and code", unit: "reqps", w: 8, h: 8,
			description: "API answers 4xx and 5xx a second (5xx of the reporting API's reads burn the error budget).",
			queries: []query{
				{`sum by (handler, code) (rate(flatfiler_http_requests_total{code=~"4..|5..", instance=~"$instance"}[$__rate_interval]))`, "{{handler}} {{code}}"}}},
		{kind: "timeseries", title: "Latency p50 and p99 by handler", unit: "s", w: 8, h: 8,
			description: "Quantiles of the API's answer time, by handler; the reporting API's target is 50 ms at p99.",
			queries: []query{
				{`histogram_quantile(0.99, sum by (handler, le) (rate(flatfiler_http_request_duration_seconds_bucket{instance=~"$instance"}[$__rate_interval])))`, "p99 {{handler}}"},
				{`histogram_quantile(0.5, sum by (handler, le) (rate(flatfiler_http_request_duration_seconds_bucket{instance=~"$instance"}[$__rate_interval])))`, "p50 {{handler}}"}}},
		{kind: "timeseries", title: "SLO: reads failed", unit: "percentunit", w: 12, h: 8,
			description: "Share of the reporting API's reads answered with a 5xx, over 5 minutes and 1 hour (SLO: 99.9% succeed).",
			queries: []query{
				{`job:flatfiler_reporting_api_errors:ratio_rate5m`, "5m {{job}}"},
				{`job:flatfiler_reporting_api_errors:ratio_rate1h`, "1h {{job}}"}}},
		{kind: "timeseries", title: "SLO: reads over 50 ms", unit: "percentunit", w: 12, h: 8,
			description: "Share of the reporting API's reads slower than 50 ms, over 5 minutes and 1 hour (SLO: 99% within).",
			queries: []query{
				{`job:flatfiler_reporting_api_slow:ratio_rate5m`, "5m {{job}}"},
				{`job:flatfiler_reporting_api_slow:ratio_rate1h`, "1h {{job}}"}}},
	}},
	{title: "Delivery: notifications, batches, callbacks, harvests, partners", panels: []spec{
		{kind: "timeseries", title: "Upload notifications by outcome", unit: "ops", w: 8, h: 8,
			description: "Notifications a second: accepted, duplicate, or refused (rejected, invalid, unauthorized, failed; alert FlatfilerNotificationsRejected).",
			queries: []query{
				{`sum by (outcome) (rate(flatfiler_notifications_total{instance=~"$instance"}[$__rate_interval]))`, "{{outcome}}"}}},
		{kind: "timeseries", title: "Push batches", unit: "short", w: 8, h: 8,
			description: "Push batches known by status, and batch bytes accepted a second.",
			queries: []query{
				{`sum by (status) (flatfiler_batches{instance=~"$instance"})`, "{{status}}"},
				{`sum(rate(flatfiler_batch_bytes_total{instance=~"$instance"}[$__rate_interval]))`, "bytes/s"}}},
		{kind: "timeseries", title: "Callbacks", unit: "short", w: 8, h: 8,
			description: "Callbacks pending, the oldest's age, and attempts by outcome per interval (alert FlatfilerCallbacksFailing).",
			queries: []query{
				{`sum(flatfiler_batch_callbacks_pending{instance=~"$instance"})`, "pending"},
				{`max(flatfiler_batch_callback_oldest_pending_seconds{instance=~"$instance"})`, "oldest pending (s)"},
				{`sum by (outcome) (increase(flatfiler_batch_callback_attempts_total{instance=~"$instance"}[$__rate_interval]))`, "{{outcome}}"}}},
		{kind: "timeseries", title: "Harvests by outcome", unit: "short", w: 8, h: 8,
			description: "Pull harvests of a user per interval, by outcome, and requests to partners' endpoints a second (alert FlatfilerHarvestsFailing).",
			queries: []query{
				{`sum by (outcome) (increase(flatfiler_harvests_total{instance=~"$instance"}[$__rate_interval]))`, "{{outcome}}"},
				{`sum(rate(flatfiler_harvest_requests_total{instance=~"$instance"}[$__rate_interval]))`, "requests/s"}}},
		{kind: "timeseries", title: "Harvest p99", unit: "s", w: 8, h: 8,
			description: "99th percentile of a user's harvest.",
			queries: []query{
				{`histogram_quantile(0.99, sum by (le) (rate(flatfiler_harvest_duration_seconds_bucket{instance=~"$instance"}[$__rate_interval])))`, "p99"}}},
		{kind: "table", title: "Partners: time since last delivery", unit: "s", w: 8, h: 8,
			description: "Per partner, the time since its last file, batch or harvest was applied, and the interval expected (partner set --expect-ingest-every; alert FlatfilerPartnerIngestOverdue).",
			queries: []query{
				{`time() - max by (partner) (flatfiler_partner_last_ingest_timestamp_seconds{instance=~"$instance"})`, "{{partner}}"},
				{`max by (partner) (flatfiler_partner_expected_ingest_interval_seconds{instance=~"$instance"})`, "{{partner}} expected"}}},
	}},
	{title: "Cluster and object storage", panels: []spec{
		{kind: "stat", title: "Shards without a leader", unit: "short", w: 6, h: 6,
			description: "Shards no node writes (alert FlatfilerShardWithoutLeader after 2 minutes); always 0 for a single server.",
			queries: []query{
				{`max(flatfiler_cluster_shards) - sum(flatfiler_cluster_leader)`, "without a leader"}}},
		{kind: "timeseries", title: "Leading, by node", unit: "short", w: 9, h: 6,
			description: "Shards the node writes (a single server: 1); a takeover shows as one node's line falling and another's rising.",
			queries: []query{
				{`flatfiler_cluster_leader{instance=~"$instance"}`, "{{instance}}"}}},
		{kind: "timeseries", title: "Archive offloads", unit: "short", w: 9, h: 6,
			description: "Processed files sent to object storage (--archive-store), per interval: ok, or failed (kept on disk, tried again).",
			queries: []query{
				{`sum by (outcome) (increase(flatfiler_archive_offloads_total{instance=~"$instance"}[$__rate_interval]))`, "{{outcome}}"}}},
	}},
	{title: "Process and disk", panels: []spec{
		{kind: "timeseries", title: "Memory", unit: "bytes", w: 8, h: 8,
			description: "Resident memory of the process, Go's heap in use, and DuckDB's buffer pool in use.",
			queries: []query{
				{`process_resident_memory_bytes{job="flatfiler", instance=~"$instance"}`, "resident {{instance}}"},
				{`go_memstats_heap_inuse_bytes{job="flatfiler", instance=~"$instance"}`, "Go heap {{instance}}"},
				{`flatfiler_duckdb_memory_bytes{instance=~"$instance"}`, "DuckDB {{instance}}"}}},
		{kind: "timeseries", title: "CPU and goroutines", unit: "short", w: 8, h: 8,
			description: "CPU seconds a second (cores in use), and goroutines.",
			queries: []query{
				{`rate(process_cpu_seconds_total{job="flatfiler", instance=~"$instance"}[$__rate_interval])`, "cores {{instance}}"},
				{`go_goroutines{job="flatfiler", instance=~"$instance"}`, "goroutines {{instance}}"}}},
		{kind: "timeseries", title: "Data directory space", unit: "bytes", w: 8, h: 8,
			description: "Free and total bytes of the data directory's file system, and the free space under which the server is not ready.",
			queries: []query{
				{`flatfiler_data_free_bytes{instance=~"$instance"}`, "free {{instance}}"},
				{`flatfiler_data_size_bytes{instance=~"$instance"}`, "size {{instance}}"},
				{`flatfiler_data_min_free_bytes{instance=~"$instance"}`, "min free {{instance}}"}}},
	}},
}

var source = common.DataSourceRef{Type: cog.ToPtr("prometheus"), Uid: cog.ToPtr("${datasource}")}

// panelBuilder is what the SDK's panel builders of each kind offer.
type panelBuilder[T any] interface {
	*T
	cog.Builder[dashboard.Panel]
	Title(string) *T
	Description(string) *T
	Datasource(common.DataSourceRef) *T
	Unit(string) *T
	Height(uint32) *T
	Span(uint32) *T
	WithTarget(cog.Builder[variants.Dataquery]) *T
}

func configure[T any, B panelBuilder[T]](b B, s spec, format prometheus.PromQueryFormat) cog.Builder[dashboard.Panel] {
	b.Title(s.title)
	b.Description(s.description)
	b.Datasource(source)
	b.Unit(s.unit)
	b.Height(s.h)
	b.Span(s.w)
	for i, q := range s.queries {
		b.WithTarget(prometheus.NewDataqueryBuilder().
			RefId(string(rune('A' + i))).Datasource(source).Expr(q.expr).LegendFormat(q.legend).Format(format))
	}
	return b
}

func panel(s spec) (cog.Builder[dashboard.Panel], error) {
	switch s.kind {
	case "timeseries":
		return configure(timeseries.NewPanelBuilder(), s, prometheus.PromQueryFormatTimeSeries), nil
	case "stat":
		return configure(stat.NewPanelBuilder(), s, prometheus.PromQueryFormatTimeSeries), nil
	case "table":
		// The SDK's default footer has a null reducer, which its own
		// strict decoding (and Grafana's schema) refuses.
		footer := common.NewTableFooterOptionsBuilder().Reducer([]string{})
		return configure(table.NewPanelBuilder().Footer(footer), s, prometheus.PromQueryFormatTable), nil
	case "heatmap":
		return configure(heatmap.NewPanelBuilder().Calculate(false), s, prometheus.PromQueryFormatHeatmap), nil
	}
	return nil, fmt.Errorf("panel %q: no kind %q", s.title, s.kind)
}

// BuildDashboard builds the dashboard.
func BuildDashboard() (dashboard.Dashboard, error) {
	b := dashboard.NewDashboardBuilder("flatfiler").
		Uid("flatfiler").
		Description("flatfiler: ingest, jobs, SFTP, the reporting API, deliveries and the process. From monitoring/dashboard.go, tested against a real Prometheus.").
		Tags([]string{"flatfiler"}).
		Timezone("utc").
		Editable().
		Refresh("30s").
		Time("now-6h", "now").
		WithVariable(dashboard.NewDatasourceVariableBuilder("datasource").Label("Data source").Type("prometheus")).
		WithVariable(dashboard.NewQueryVariableBuilder("instance").Label("Instance").
			Datasource(source).
			Query(dashboard.StringOrMap{String: cog.ToPtr("label_values(flatfiler_data_size_bytes, instance)")}).
			Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
			Multi(true).IncludeAll(true).AllValue(".*"))
	for _, r := range rows {
		b.WithRow(dashboard.NewRowBuilder(r.title))
		for _, s := range r.panels {
			p, err := panel(s)
			if err != nil {
				return dashboard.Dashboard{}, err
			}
			b.WithPanel(p)
		}
	}
	return b.Build()
}

// DashboardFile is dashboard.json as BuildDashboard builds it.
func DashboardFile() ([]byte, error) {
	d, err := BuildDashboard()
	if err != nil {
		return nil, err
	}
	data, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}
