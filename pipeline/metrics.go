package pipeline

import "github.com/prometheus/client_golang/prometheus"

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
	if reg != nil {
		reg.MustRegister(m.Records, m.Bytes, m.Files, m.Stage, m.Enriched)
	}
	return m
}
