package pipeline

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flatfiler/flatfiler/stages/enrich"
)

// Metrics of the ingest pipeline, registered on a registry the caller owns
// (no global registry, as in Prometheus itself).
type Metrics struct {
	Records *prometheus.CounterVec   // kind, outcome
	Bytes   prometheus.Counter       // bytes of flat files parsed
	Files   *prometheus.CounterVec   // status
	Stage   *prometheus.HistogramVec // stage
	// Enriched counts transactions by what set their tag or nickname.
	Enriched *prometheus.CounterVec // source
}

// NewMetrics creates the pipeline's metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flatfiler_ingest_records_total",
			Help: "Records read from flat files, by kind (user, account, transaction) and outcome (success, error, skipped).",
		}, []string{"kind", "outcome"}),
		Bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flatfiler_ingest_bytes_total",
			Help: "Bytes of flat files parsed.",
		}),
		Files: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flatfiler_ingest_files_total",
			Help: "Flat files ingested, by status (success, partial-success, error).",
		}, []string{"status"}),
		Stage: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "flatfiler_ingest_stage_duration_seconds",
			Help:    "Time spent per unit of work in each pipeline stage: decode and validate per chunk, load per batch, commit and file per file.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}, []string{"stage"}),
		Enriched: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flatfiler_enrich_transactions_total",
			Help: "Transactions enriched, by what decided their tag (partner-rule, dictionary, keyword, check; unmatched: a cleaned memo and no tag). User rules are applied at commit and not counted here.",
		}, []string{"source"}),
	}
	// Every series of the closed label sets exists from the first scrape,
	// so that a rate over it is 0, not absent, and an operator's query
	// of a label renamed fails at once (monitoring/).
	for _, kind := range []string{"user", "account", "transaction"} {
		for _, outcome := range []string{"success", "error"} {
			m.Records.WithLabelValues(kind, outcome)
		}
	}
	m.Records.WithLabelValues("transaction", "skipped")
	for _, status := range []string{StatusSuccess, StatusPartialSuccess, StatusError} {
		m.Files.WithLabelValues(status)
	}
	for _, stage := range []string{"validate", "load", "commit", "file"} {
		m.Stage.WithLabelValues(stage)
	}
	for s := range enrich.NumSources {
		if s != enrich.SourceUserRule { // applied at commit, not counted
			m.Enriched.WithLabelValues(s.String())
		}
	}
	if reg != nil {
		reg.MustRegister(m.Records, m.Bytes, m.Files, m.Stage, m.Enriched)
	}
	return m
}
