package health

import (
	"encoding/json"
	"net/http"
)

// Alive answers GET /healthz: the process serves HTTP.
func Alive(w http.ResponseWriter, _ *http.Request) {
	writeStatus(w, http.StatusOK, map[string]string{"status": "ok"})
}

// ServeHTTP answers GET /readyz: 200 when every check holds, else 503,
// with each check's outcome. A nil Checker has no checks: ready.
func (c *Checker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ready, results := true, []Result{}
	if c != nil {
		ready, results = c.Ready(r.Context())
	}
	status, code := "ready", http.StatusOK
	if !ready {
		status, code = "not ready", http.StatusServiceUnavailable
	}
	writeStatus(w, code, map[string]any{"status": status, "checks": results})
}

func writeStatus(w http.ResponseWriter, code int, body any) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(body)
}
