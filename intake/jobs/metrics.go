package jobs

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics of the job queue. The per-state gauges are read from the
// manager at scrape time, so they cannot drift from the jobs themselves.
type Metrics struct {
	Finished *prometheus.CounterVec // status
	Duration prometheus.Histogram
	Wait     prometheus.Histogram
	// Retries counts attempts that failed for the server's storage and
	// were scheduled again.
	Retries prometheus.Counter
	// Offloads counts archived files sent to object storage, by outcome
	// (ok, failed: kept on disk and tried again).
	Offloads *prometheus.CounterVec
	manager  *Manager

	states *prometheus.Desc
	depth  *prometheus.Desc
	oldest *prometheus.Desc
}

// NewMetrics creates the job metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	buckets := prometheus.ExponentialBuckets(0.05, 3, 12) // 50 ms to 2.5 h
	m := &Metrics{
		Finished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flatfiler_jobs_finished_total", Help: "Upload jobs finished, by status (success, partial-success, error).",
		}, []string{"status"}),
		Duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "flatfiler_job_duration_seconds", Help: "Time from a job's start to its end.", Buckets: buckets,
		}),
		Wait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "flatfiler_job_queue_wait_seconds", Help: "Time a job waited in the queue before it started.", Buckets: buckets,
		}),
		Retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flatfiler_job_retries_total", Help: "Job attempts that failed for the server's storage (full disk, I/O, memory) and were scheduled again; the file is kept.",
		}),
		Offloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flatfiler_archive_offloads_total", Help: "Processed files sent from the archive folder to object storage (--archive-store), by outcome: ok, or failed (kept on disk, tried again).",
		}, []string{"outcome"}),
		states: prometheus.NewDesc("flatfiler_jobs", "Upload jobs kept (within retention), by state.", []string{"state"}, nil),
		depth:  prometheus.NewDesc("flatfiler_job_queue_depth", "Upload jobs waiting to run.", nil, nil),
		oldest: prometheus.NewDesc("flatfiler_job_oldest_queued_seconds",
			"Age of the oldest job waiting to run (since it was accepted; a retried job since then too); 0 when none waits.", nil, nil),
	}
	for _, s := range []string{Success, PartialSuccess, Error} {
		m.Finished.WithLabelValues(s)
	}
	for _, o := range []string{"ok", "failed"} {
		m.Offloads.WithLabelValues(o)
	}
	if reg != nil {
		reg.MustRegister(m.Finished, m.Duration, m.Wait, m.Retries, m.Offloads, m)
	}
	return m
}

// Describe implements prometheus.Collector for the state gauges.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.states
	ch <- m.depth
	ch <- m.oldest
}

// Collect implements prometheus.Collector for the state gauges.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	counts, oldest := map[string]int{}, time.Duration(0)
	if m.manager != nil {
		counts, oldest = m.manager.counts(time.Now())
	}
	for _, s := range States {
		ch <- prometheus.MustNewConstMetric(m.states, prometheus.GaugeValue, float64(counts[s]), s)
	}
	ch <- prometheus.MustNewConstMetric(m.depth, prometheus.GaugeValue, float64(counts[Queued]))
	ch <- prometheus.MustNewConstMetric(m.oldest, prometheus.GaugeValue, oldest.Seconds())
}
