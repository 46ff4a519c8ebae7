package api

import (
	"fmt"
	"net/http"
	"time"

	"github.com/flatfiler/flatfiler/intake/pull"
	"github.com/flatfiler/flatfiler/stages"
)

// The spec's Harvests section: a pull harvest of one user from the
// partner's endpoint (partner set --harvest-url --harvest-key), started by
// POST and watched by GET.

func (s *Server) harvestRoutes(route func(pattern, name string, h http.HandlerFunc)) {
	route("POST "+v2+"/users/{user_id}/harvest", "harvest_create", s.authorized(keyOrToken, s.forUser(s.startHarvest)))
	route("GET "+v2+"/users/{user_id}/harvest", "harvest", s.authorized(keyOrToken, s.forUser(s.harvestStatus)))
	route("GET "+v2+"/partners/current/harvest", "partner_harvest", s.authorized(keyOnly, s.partnerHarvest))
}

// partnerHarvestJSON is the partner's scheduled harvest: its schedule, the
// next run and the last one.
type partnerHarvestJSON struct {
	URL        string `json:"url"`
	Schedule   string `json:"schedule"`
	NextAt     string `json:"next_at,omitempty"`
	Status     string `json:"status,omitempty"` // working or complete; none: never ran
	Users      int    `json:"users"`
	Applied    int    `json:"applied"`
	Failed     int    `json:"failed"`
	StartedAt  string `json:"started_at,omitempty"`
	FinishedAt string `json:"finished_at,omitempty"`
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// partnerHarvest answers the partner's pull endpoint and scheduled runs.
func (s *Server) partnerHarvest(w http.ResponseWriter, r *http.Request, c caller) {
	p := c.partner
	if p.Harvest == nil {
		noEndpoint(w, http.StatusNotFound, p.ID)
		return
	}
	v := partnerHarvestJSON{URL: p.Harvest.URL, Schedule: p.Harvest.Schedule}
	if s.Harvests != nil {
		if run, ok := s.Harvests.PartnerRun(p.ID); ok {
			v.NextAt, v.Status, v.Users, v.Applied, v.Failed = stamp(run.NextAt), run.Status, run.Users, run.Applied, run.Failed
			v.StartedAt, v.FinishedAt = stamp(run.StartedAt), stamp(run.FinishedAt)
		}
	}
	writeJSON(w, http.StatusOK, map[string]partnerHarvestJSON{"harvest": v})
}

type harvestJSON struct {
	Status string `json:"status"` // working or complete
	Href   string `json:"href"`
	// What became of it, once complete: success, partial-success, or
	// error (nothing applied; message says why).
	Outcome string `json:"outcome,omitempty"`
	Message string `json:"message,omitempty"`
	// Errors are the records the answers held that were rejected, as a
	// file's report lists them.
	Errors         []stages.Rejection `json:"errors,omitempty"`
	Requests       int                `json:"requests,omitempty"`
	ClosedAccounts []string           `json:"closed_accounts,omitempty"`
	StartedAt      string             `json:"started_at"`
	FinishedAt     string             `json:"finished_at,omitempty"`
}

func harvestView(r *http.Request, run pull.Run) harvestJSON {
	v := harvestJSON{Status: run.Status, Href: userHref(r, run.User) + "/harvest", Outcome: run.Outcome, Message: run.Message,
		Requests: run.Requests, ClosedAccounts: run.Closed, StartedAt: run.StartedAt.Format(time.RFC3339)}
	if !run.FinishedAt.IsZero() {
		v.FinishedAt = run.FinishedAt.Format(time.RFC3339)
	}
	if run.Report != nil {
		v.Errors = run.Report.Errors
	}
	return v
}

// startHarvest starts a harvest of the user, or answers the one under way:
// a new harvest does not start while one is in progress.
func (s *Server) startHarvest(w http.ResponseWriter, r *http.Request, u userRequest) {
	p := u.partner
	if p.Harvest == nil || s.Harvests == nil {
		noEndpoint(w, http.StatusConflict, p.ID)
		return
	}
	run, _, err := s.Harvests.Start(p.ID, p.Harvest, u.user)
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string][]harvestJSON{"harvests": {harvestView(r, run)}})
}

// harvestStatus answers the user's latest harvest; none yet: an empty list.
func (s *Server) harvestStatus(w http.ResponseWriter, r *http.Request, u userRequest) {
	out := []harvestJSON{}
	if s.Harvests != nil {
		if run, ok := s.Harvests.Get(u.partnerID(), u.user); ok {
			out = append(out, harvestView(r, run))
		}
	}
	writeJSON(w, http.StatusOK, map[string][]harvestJSON{"harvests": out})
}

// noEndpoint answers for a partner without a pull endpoint, naming the fix.
func noEndpoint(w http.ResponseWriter, status int, partnerID string) {
	writeError(w, status, fmt.Sprintf("partner %s has no harvest endpoint", partnerID),
		[]string{"partner: no pull endpoint is configured; flatfiler partner set " + partnerID + " --harvest-url URL --harvest-key HEX"})
}
