package sftpd

import "github.com/prometheus/client_golang/prometheus"

// Metrics of the SFTP server, on a registry the caller owns.
type Metrics struct {
	Sessions      prometheus.Counter
	Active        prometheus.Gauge
	AuthFailures  *prometheus.CounterVec // method
	Bans          prometheus.Counter
	Refused       prometheus.Counter // login attempts refused while banned
	BytesReceived prometheus.Counter
	BytesSent     prometheus.Counter
	Uploads       *prometheus.CounterVec // outcome: published, aborted, refused
}

// NewMetrics creates the SFTP metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Sessions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flatfiler_sftp_sessions_total", Help: "SFTP sessions authenticated.",
		}),
		Active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "flatfiler_sftp_sessions_active", Help: "SFTP sessions open now.",
		}),
		AuthFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flatfiler_sftp_auth_failures_total", Help: "Failed SFTP authentication attempts, by method (password, publickey).",
		}, []string{"method"}),
		Bans: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flatfiler_sftp_bans_total", Help: "Bans of an address and user name for repeated authentication failures.",
		}),
		Refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flatfiler_sftp_refused_logins_total", Help: "Login attempts refused at once because their address and user name are banned.",
		}),
		BytesReceived: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flatfiler_sftp_received_bytes_total", Help: "File bytes received over SFTP.",
		}),
		BytesSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flatfiler_sftp_sent_bytes_total", Help: "File bytes sent over SFTP.",
		}),
		Uploads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flatfiler_sftp_uploads_total", Help: "SFTP uploads by outcome: published, aborted (connection lost) or refused (limits, names, I/O).",
		}, []string{"outcome"}),
	}
	for _, method := range []string{"password", "publickey"} {
		m.AuthFailures.WithLabelValues(method)
	}
	for _, outcome := range []string{"published", "aborted", "refused"} {
		m.Uploads.WithLabelValues(outcome)
	}
	if reg != nil {
		reg.MustRegister(m.Sessions, m.Active, m.AuthFailures, m.Bans, m.Refused, m.BytesReceived, m.BytesSent, m.Uploads)
	}
	return m
}
