package pull

import (
	"context"
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flatfiler/flatfiler/intake/harvest"
)

// Metrics of pull harvests.
type Metrics struct {
	Runs        *prometheus.CounterVec // outcome: success, partial-success, error
	Requests    *prometheus.CounterVec // outcome: see requestOutcome
	Duration    prometheus.Histogram
	LastSuccess *prometheus.GaugeVec // partner
}

// NewMetrics creates the harvest metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flatfiler_harvests_total", Help: "Harvests of a user from a partner's pull endpoint, by outcome (success, partial-success, error).",
		}, []string{"outcome"}),
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flatfiler_harvest_requests_total",
			Help: "Requests to partners' pull endpoints, by outcome: ok, signature (a bad signature), request_id (an answer to another request), malformed, http (an answer other than 200), timeout, error (the connection).",
		}, []string{"outcome"}),
		Duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "flatfiler_harvest_duration_seconds", Help: "Time a harvest of a user took, requests and commit.",
			Buckets: prometheus.ExponentialBuckets(0.05, 3, 10),
		}),
		LastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "flatfiler_harvest_last_success_timestamp_seconds", Help: "When a harvest of the partner last applied, as Unix time.",
		}, []string{"partner"}),
	}
	for _, o := range []string{"success", "partial-success", "error"} {
		m.Runs.WithLabelValues(o)
	}
	for _, o := range []string{"ok", "signature", "request_id", "malformed", "http", "timeout", "error"} {
		m.Requests.WithLabelValues(o)
	}
	if reg != nil {
		reg.MustRegister(m.Runs, m.Requests, m.Duration, m.LastSuccess)
	}
	return m
}

// requestOutcome names a request's end for flatfiler_harvest_requests_total.
func requestOutcome(err error) string {
	var status errStatus
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, harvest.ErrSignature):
		return "signature"
	case errors.Is(err, harvest.ErrRequestID):
		return "request_id"
	case errors.Is(err, harvest.ErrMalformed):
		return "malformed"
	case errors.As(err, &status):
		return "http"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	return "error"
}
