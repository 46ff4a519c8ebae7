package api

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics of the HTTP API, on a registry the caller owns.
type Metrics struct {
	Notifications *prometheus.CounterVec // outcome
	Requests      *prometheus.CounterVec // handler, code, method
	Duration      *prometheus.HistogramVec
	AuthFailures  prometheus.Counter // reporting API requests refused with 401
}

// Notification outcomes.
var notificationOutcomes = []string{"accepted", "duplicate", "rejected", "invalid", "unauthorized", "failed"}

// NewMetrics creates the API metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Notifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flatfiler_notifications_total",
			Help: "Upload notifications by outcome: accepted, duplicate (returned the earlier jobs), rejected (missing file or MD5 mismatch), invalid (malformed), unauthorized, failed (server error).",
		}, []string{"outcome"}),
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flatfiler_http_requests_total", Help: "HTTP requests by handler, method and status code.",
		}, []string{"handler", "code", "method"}),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "flatfiler_http_request_duration_seconds", Help: "HTTP request latency by handler.",
			Buckets: prometheus.DefBuckets,
		}, []string{"handler"}),
		AuthFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flatfiler_api_auth_failures_total",
			Help: "Reporting API requests refused for their credentials: bad or missing API key, or a JWT that does not verify.",
		}),
	}
	for _, o := range notificationOutcomes {
		m.Notifications.WithLabelValues(o)
	}
	if reg != nil {
		reg.MustRegister(m.Notifications, m.Requests, m.Duration, m.AuthFailures)
	}
	return m
}

func (m *Metrics) instrument(name string, h http.Handler) http.Handler {
	labels := prometheus.Labels{"handler": name}
	return promhttp.InstrumentHandlerDuration(m.Duration.MustCurryWith(labels),
		promhttp.InstrumentHandlerCounter(m.Requests.MustCurryWith(labels), h))
}
