package api

import (
	"net/http"

	"github.com/flatfiler/flatfiler/internal/health"
)

// healthz answers that the process is alive: it serves HTTP.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readyz answers whether the server takes work: 200 when every check
// holds, else 503, with each check's outcome.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	ready, results := true, []health.Result{}
	if s.Health != nil {
		ready, results = s.Health.Ready(r.Context())
	}
	status, code := "ready", http.StatusOK
	if !ready {
		status, code = "not ready", http.StatusServiceUnavailable
	}
	writeJSON(w, code, map[string]any{"status": status, "checks": results})
}
