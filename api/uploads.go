package api

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"syscall"

	"github.com/flatfiler/flatfiler/intake/inbox"
	"github.com/flatfiler/flatfiler/intake/jobs"
	"github.com/flatfiler/flatfiler/intake/partner"
	"github.com/flatfiler/flatfiler/parse"
)

var md5Pattern = regexp.MustCompile(`^[0-9A-Fa-f]{32}$`)

// list reads a list parameter under any of its names: comma-separated, as
// the spec writes it, or repeated.
func list(form url.Values, names ...string) ([]string, bool) {
	var out []string
	present := false
	for _, name := range names {
		for _, v := range form[name] {
			present = true
			for _, item := range strings.Split(v, ",") {
				out = append(out, strings.TrimSpace(item))
			}
		}
	}
	return out, present
}

// parseNotification reads the spec's notification parameters: filenames,
// hashes (or hash) and optional types, comma-separated lists in the same
// order. invalidList says why the lists themselves cannot be read; else
// problems name each file's, and with none files is the notification.
func parseNotification(form url.Values) (files []jobs.File, problems []jobs.Problem, invalidList string) {
	names, _ := list(form, "filenames", "filename")
	hashes, _ := list(form, "hashes", "hash")
	types, typed := list(form, "types", "type")
	switch {
	case len(names) == 0:
		return nil, nil, "filenames is required: a comma-separated list of the files you uploaded"
	case len(hashes) != len(names):
		return nil, nil, fmt.Sprintf("%d filenames but %d hashes: give one MD5 per file, in the same order", len(names), len(hashes))
	case typed && len(types) != len(names):
		return nil, nil, fmt.Sprintf("%d filenames but %d types: give one type per file, in the same order, or none", len(names), len(types))
	}
	files = make([]jobs.File, len(names))
	seen := map[string]bool{}
	for i, name := range names {
		files[i] = jobs.File{Name: name, MD5: hashes[i]}
		switch {
		case strings.ContainsAny(name, `/\`) || strings.Contains(name, ".."):
			problems = append(problems, jobs.Problem{Filename: name, Field: "filenames",
				Message: fmt.Sprintf("%s: a file name, not a path: no '/', '\\' or '..'", name)})
		case !inbox.ValidName(name):
			problems = append(problems, jobs.Problem{Filename: name, Field: "filenames",
				Message: fmt.Sprintf("%s: %v", name, inbox.ErrBadName)})
		case seen[name]:
			problems = append(problems, jobs.Problem{Filename: name, Field: "filenames",
				Message: fmt.Sprintf("%s: listed twice", name)})
		}
		seen[name] = true
		if !md5Pattern.MatchString(hashes[i]) {
			problems = append(problems, jobs.Problem{Filename: name, Field: "hashes", Expected: hashes[i],
				Message: fmt.Sprintf("%s: hash %q is not an MD5 (32 hexadecimal digits)", name, hashes[i])})
		}
		if typed {
			t, err := parse.ParseFileType(types[i])
			if err != nil {
				problems = append(problems, jobs.Problem{Filename: name, Field: "types", Message: fmt.Sprintf("%s: %v", name, err)})
			}
			files[i].Type = t
		}
	}
	return files, problems, ""
}

// uploadsReceived is POST /api/v2/uploads/received: the partner says which
// files it uploaded and their MD5s; each becomes a job.
func (s *Server) uploadsReceived(w http.ResponseWriter, r *http.Request, p *partner.Partner) {
	if err := r.ParseForm(); err != nil {
		s.reject(w, p, "invalid", http.StatusBadRequest, "malformed parameters: "+err.Error(), nil)
		return
	}
	files, problems, invalidList := parseNotification(r.Form)
	switch {
	case invalidList != "":
		s.reject(w, p, "invalid", http.StatusBadRequest, invalidList, nil)
		return
	case len(problems) > 0:
		s.reject(w, p, "invalid", http.StatusBadRequest, summary(problems), problems)
		return
	}
	names := make([]string, len(files))
	for i, f := range files {
		names[i] = f.Name
	}

	accepted, duplicate, err := s.Jobs.Accept(r.Context(), p.ID, files)
	var rejected *jobs.RejectedError
	switch {
	case errors.As(err, &rejected):
		status := http.StatusNotFound
		for _, pr := range rejected.Problems {
			if !pr.NotFound {
				status = http.StatusUnprocessableEntity
			}
		}
		s.reject(w, p, "rejected", status, summary(rejected.Problems), rejected.Problems)
		return
	case errors.Is(err, syscall.ENOSPC):
		s.Metrics.Notifications.WithLabelValues("failed").Inc()
		s.Logger.Error("notification failed: disk full", "partner", p.ID, "files", len(names), "err", err)
		w.Header().Set("Retry-After", "60")
		writeError(w, http.StatusServiceUnavailable, "the server's disk is full, so the notification could not be recorded: nothing was queued and your files are still in your SFTP folder; send the notification again later", nil)
		return
	case err != nil:
		s.Metrics.Notifications.WithLabelValues("failed").Inc()
		s.Logger.Error("notification failed", "partner", p.ID, "files", len(names), "err", err)
		writeError(w, http.StatusInternalServerError, "the notification could not be recorded; nothing was queued, send it again", nil)
		return
	}
	outcome := "accepted"
	if duplicate {
		outcome = "duplicate"
	}
	ids := make([]string, len(accepted))
	for i, j := range accepted {
		ids[i] = j.ID
	}
	s.Metrics.Notifications.WithLabelValues(outcome).Inc()
	s.Logger.Info("notification "+outcome, "partner", p.ID, "files", names, "job_ids", ids)
	writeJSON(w, http.StatusAccepted, map[string]any{
		"notification_id": accepted[0].NotificationID,
		"duplicate":       duplicate,
		"uploads":         accepted,
	})
}

func summary(problems []jobs.Problem) string {
	return "notification rejected, nothing was queued: " + jobs.Summarize(problems)
}

func (s *Server) reject(w http.ResponseWriter, p *partner.Partner, outcome string, status int, message string, problems []jobs.Problem) {
	s.Metrics.Notifications.WithLabelValues(outcome).Inc()
	s.Logger.Info("notification "+outcome, "partner", p.ID, "status", status, "message", message)
	var data any
	if problems != nil {
		data = problems
	}
	writeError(w, status, message, data)
}
