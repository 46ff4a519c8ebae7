package api

import (
	"net/http"

	"github.com/flatfiler/flatfiler/internal/health"
)

// healthz answers that the process is alive: it serves HTTP.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) { health.Alive(w, r) }

// readyz answers whether the server takes work (health.Checker).
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) { s.Health.ServeHTTP(w, r) }
