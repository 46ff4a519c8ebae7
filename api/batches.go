package api

import (
	"errors"
	"fmt"
	"net/http"
	"os"

	"github.com/flatfiler/flatfiler/intake/batches"
	"github.com/flatfiler/flatfiler/parse"
)

// The Push Data Source: PUT /api/v2/batches, its status and its content.
// The API key or a user's JWT may push; a user's JWT only that user's data,
// and only its own batches are visible to it.
func (s *Server) batchRoutes(route func(pattern, name string, h http.HandlerFunc)) {
	if s.Batches == nil {
		return
	}
	route("PUT "+v2+"/batches", "batch_put", s.authorized(keyOrToken, s.putBatch))
	route("GET "+v2+"/batches/{batch_id}", "batch", s.authorized(keyOrToken, s.batchStatus))
	route("GET "+v2+"/batches/{batch_id}/content", "batch_content", s.authorized(keyOrToken, s.batchContent))
}

func (s *Server) putBatch(w http.ResponseWriter, r *http.Request, c caller) {
	if r.ContentLength > s.Batches.MaxBytes() {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the batch is %d bytes; the limit is %d (send it in parts)", r.ContentLength, s.Batches.MaxBytes()), nil)
		return
	}
	j, dup, err := s.Batches.Receive(r.Context(), c.partner, c.user, r.Header.Get("Idempotency-Key"), r.Body)
	var syn *parse.SyntaxError
	var shape *parse.ShapeError
	var cb *batches.CallbackError
	var forbidden *batches.ForbiddenError
	var limit *parse.LimitError
	switch {
	case errors.As(err, &limit):
		writeError(w, http.StatusRequestEntityTooLarge, "the batch was refused whole: "+limit.Error(), nil)
	case errors.Is(err, batches.ErrTooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the batch is larger than the server's limit; the limit is %d bytes (send it in parts)", s.Batches.MaxBytes()), nil)
	case errors.Is(err, parse.ErrEmptyBatch):
		writeError(w, http.StatusBadRequest, err.Error(), nil)
	case errors.As(err, &syn):
		writeError(w, http.StatusBadRequest, "malformed JSON: "+syn.Error(), nil)
	case errors.As(err, &shape):
		writeError(w, http.StatusUnprocessableEntity, "not a batch: "+shape.Error(), nil)
	case errors.As(err, &cb):
		writeError(w, http.StatusUnprocessableEntity, cb.Error(), nil)
	case errors.As(err, &forbidden):
		writeError(w, http.StatusForbidden, "the batch was refused whole: "+forbidden.Error(), forbidden.Others)
	case err != nil:
		s.internalError(w, r, err)
	default:
		s.Logger.Info("batch received", "partner", c.partner.ID, "batch_id", j.ID, "bytes", j.BytesTotal, "duplicate", dup)
		writeJSON(w, http.StatusOK, map[string]string{"batch_id": j.ID})
	}
}

func (s *Server) batchStatus(w http.ResponseWriter, r *http.Request, c caller) {
	j, ok := s.Batches.Get(c.partner.ID, c.user, r.PathValue("batch_id"))
	if !ok {
		writeError(w, http.StatusNotFound, "no batch "+r.PathValue("batch_id"), nil)
		return
	}
	writeJSON(w, http.StatusOK, batches.Status(j))
}

func (s *Server) batchContent(w http.ResponseWriter, r *http.Request, c caller) {
	j, ok := s.Batches.Get(c.partner.ID, c.user, r.PathValue("batch_id"))
	if !ok {
		writeError(w, http.StatusNotFound, "no batch "+r.PathValue("batch_id"), nil)
		return
	}
	if j.Batch.Content == nil {
		writeError(w, http.StatusNotFound, fmt.Sprintf("batch %s has not completed (status %s)", j.ID, batches.Status(j).Status), nil)
		return
	}
	f, err := os.Open(j.Batch.Content.Path)
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	http.ServeContent(w, r, "", j.Batch.Content.At, f)
}
