// Package api is flatfiler's HTTP surface: upload notifications and jobs
// (the spec's /api/v2/uploads), the reporting API on the warehouse (users,
// accounts, transactions, expenses, networth, tags) with API-key and JWT
// authentication, Prometheus metrics, and SQL for operators of the running
// server. Errors have the spec's shape:
// {"error": {"message": ..., "data": [...]}}.
package api

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/flatfiler/flatfiler/intake/batches"
	"github.com/flatfiler/flatfiler/intake/jobs"
	"github.com/flatfiler/flatfiler/intake/partner"
	"github.com/flatfiler/flatfiler/intake/pull"
	"github.com/flatfiler/flatfiler/internal/backup"
	"github.com/flatfiler/flatfiler/internal/health"
	"github.com/flatfiler/flatfiler/pipeline"
	"github.com/flatfiler/flatfiler/stages/enrich"
	"github.com/flatfiler/flatfiler/warehouse"
)

// Server holds what the handlers need.
type Server struct {
	Partners *partner.Registry
	Jobs     *jobs.Manager
	// Batches is the Push Data Source; nil: /api/v2/batches answers 404.
	Batches *batches.Service
	// Pipeline applies the API's user and account writes as files are
	// applied; nil: they answer 503.
	Pipeline *pipeline.Pipeline
	// Harvests runs pull harvests (users/:user_id:/harvest); nil: none.
	Harvests *pull.Runs
	Store    *warehouse.Store
	Gatherer prometheus.Gatherer
	// AdminToken guards /admin/sql; empty disables it.
	AdminToken string
	Logger     *slog.Logger
	Metrics    *Metrics
	// Enrich receives the rules users add (PUT transaction with
	// tagging.repeat), so the files to come follow them; nil: stored only.
	Enrich *enrich.Engine
	// Now is the clock for JWT checks and default date ranges; nil: time.Now.
	Now func() time.Time
	// Health holds the readiness checks of GET /readyz; nil: none, ready.
	Health *health.Checker
	// DataDir is the server's data directory, which /admin/backup copies;
	// empty: no backup.
	DataDir string
}

// Handler routes requests.
func (s *Server) Handler() http.Handler {
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	if s.Metrics == nil {
		s.Metrics = NewMetrics(nil)
	}
	mux := http.NewServeMux()
	route := func(pattern, name string, h http.HandlerFunc) {
		mux.Handle(pattern, s.Metrics.instrument(name, h))
	}
	countRefused := func() { s.Metrics.Notifications.WithLabelValues("unauthorized").Inc() }
	route("POST /api/v2/uploads/received", "uploads_received", s.partnerOnly(s.uploadsReceived, countRefused))
	route("GET /api/v2/uploads/{job_id}", "upload", s.partnerOnly(s.upload, nil))
	route("GET /api/v2/uploads", "uploads", s.partnerOnly(s.uploads, nil))
	s.reportRoutes(route)
	s.userWriteRoutes(route)
	s.accountRoutes(route)
	s.harvestRoutes(route)
	s.batchRoutes(route)
	route("POST /admin/sql", "admin_sql", s.adminSQL)
	route("POST /admin/export", "admin_export", s.adminExport)
	route("POST /admin/backup", "admin_backup", s.adminBackup)
	// Probes, unauthenticated and not counted as API requests: an
	// orchestrator asks every few seconds, and a 503 of /readyz is an
	// answer, not an error of the API's.
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.Gatherer, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(s.Logger.Handler(), slog.LevelError)}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if allow := allowedMethods(mux, r); len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s is not supported on %s", r.Method, r.URL.Path),
				[]string{"method: " + r.Method + " is not one of " + strings.Join(allow, ", ")})
			return
		}
		writeError(w, http.StatusNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path,
			[]string{"path: " + r.URL.Path + " is not an endpoint of this API"})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// partnerHandler is a handler for an authenticated partner.
type partnerHandler func(w http.ResponseWriter, r *http.Request, p *partner.Partner)

// partnerOnly authenticates the partner by API key: the api_key query
// parameter, as the spec's examples send it, or HTTP Basic with the key as
// the user name, as its curl examples do. refused, if set, counts refusals.
func (s *Server) partnerOnly(h partnerHandler, refused func()) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		key := r.URL.Query().Get("api_key")
		if user, _, ok := r.BasicAuth(); ok && key == "" {
			key = user
		}
		p, ok := s.Partners.ByAPIKey(key)
		if !ok {
			if refused != nil {
				refused()
			}
			s.Logger.Info("api request refused: bad API key", "path", r.URL.Path, "remote", r.RemoteAddr, "key_given", key != "")
			w.Header().Set("WWW-Authenticate", `Basic realm="flatfiler"`)
			writeError(w, http.StatusUnauthorized, "invalid or missing API key (api_key query parameter or HTTP Basic user name)", nil)
			return
		}
		h(w, r, p)
	}
}

func (s *Server) upload(w http.ResponseWriter, r *http.Request, p *partner.Partner) {
	j, ok := s.Jobs.Get(p.ID, r.PathValue("job_id"))
	if !ok {
		writeError(w, http.StatusNotFound, "no upload job "+r.PathValue("job_id"), nil)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"upload": j})
}

func (s *Server) uploads(w http.ResponseWriter, r *http.Request, p *partner.Partner) {
	writeJSON(w, http.StatusOK, map[string]any{"uploads": s.Jobs.List(p.ID, 100)})
}

// adminSQL runs a query for `flatfiler sql` while the server holds the
// warehouse open. The token is in the data directory: whoever can read it
// can read the warehouse file anyway.
func (s *Server) adminSQL(w http.ResponseWriter, r *http.Request) {
	if !s.admin(w, r) {
		return
	}
	var req struct {
		Query  string `json:"query"`
		Format string `json:"format"`
	}
	if !readBody(w, r, 1<<20, "invalid query request", &req) {
		return
	}
	// A read never begins while a file commits (see Store.Reading).
	defer s.Store.Reading()()
	// Rows are written as they come; an error midway can only be appended.
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	rw := &trackingWriter{w: w}
	if err := s.Store.Query(r.Context(), req.Query, req.Format, rw); err != nil {
		if !rw.wrote {
			writeError(w, http.StatusBadRequest, err.Error(), nil)
			return
		}
		_, _ = w.Write([]byte("\nerror: " + err.Error() + "\n"))
	}
}

// adminExport writes a Parquet export for `flatfiler export` while the
// server holds the warehouse; the folder is on the server's machine.
func (s *Server) adminExport(w http.ResponseWriter, r *http.Request) {
	if !s.admin(w, r) {
		return
	}
	var req warehouse.ExportRequest
	if !readBody(w, r, 1<<20, "invalid export request", &req) {
		return
	}
	opts, err := req.Options()
	if err != nil {
		invalid(w, "invalid export request", []string{err.Error()})
		return
	}
	m, err := s.Store.Export(r.Context(), opts)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), nil)
		return
	}
	writeJSON(w, http.StatusOK, m)
}

// adminBackup copies the data directory while the server runs (flatfiler
// backup): {"out": "/absolute/new/dir"}.
func (s *Server) adminBackup(w http.ResponseWriter, r *http.Request) {
	if !s.admin(w, r) {
		return
	}
	var req struct {
		Out string `json:"out"`
	}
	if !readBody(w, r, 1<<16, "invalid backup request", &req) {
		return
	}
	if s.DataDir == "" || !filepath.IsAbs(req.Out) {
		invalid(w, "invalid backup request", []string{"out: an absolute path of a new directory"})
		return
	}
	rep, err := backup.Run(r.Context(), s.DataDir, req.Out, s.Store)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), nil)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

// admin checks the admin token of `flatfiler sql`, `export` and `backup`.
func (s *Server) admin(w http.ResponseWriter, r *http.Request) bool {
	token, ok := bearerToken(r)
	if s.AdminToken == "" || !ok || subtle.ConstantTimeCompare([]byte(token), []byte(s.AdminToken)) != 1 {
		writeError(w, http.StatusUnauthorized, "admin token required", []string{"Authorization: the server's admin token (DATA/admin.json)"})
		return false
	}
	return true
}

type trackingWriter struct {
	w     http.ResponseWriter
	wrote bool
}

func (t *trackingWriter) Write(p []byte) (int, error) {
	t.wrote = true
	return t.w.Write(p)
}

// v2 prefixes the partner API's routes.
const v2 = "/api/v2"
